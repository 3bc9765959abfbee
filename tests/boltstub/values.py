"""Bolt 5 value structures: graph entities for scripted results, temporal types both ways.

Scripts put Node/Relationship/Path objects (and Python dates/times) in result rows; the server
encodes them as the Bolt 5 structures the driver hydrates into neo4j.graph / neo4j.time values.
Parameters the driver sends arrive as temporal structures and are decoded back into Python
datetime types so that rules and assertions can compare them with plain values.

Tags (Bolt 5): Node N(0x4E), Relationship R(0x52), UnboundRelationship r(0x72), Path P(0x50),
Date D, Time T, LocalTime t, DateTime I (UTC seconds + offset), DateTimeZoneId i,
LocalDateTime d, Duration E. Points (X, Y) and anything else stay plain Structures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from .packstream import Structure

NODE, RELATIONSHIP, UNBOUND_RELATIONSHIP, PATH = 0x4E, 0x52, 0x72, 0x50
DATE, TIME, LOCAL_TIME, DURATION = 0x44, 0x54, 0x74, 0x45
DATE_TIME, DATE_TIME_ZONE_ID, LOCAL_DATE_TIME = 0x49, 0x69, 0x64

_EPOCH = datetime(1970, 1, 1)
_EPOCH_DATE = date(1970, 1, 1)
_NANOS_PER_SECOND = 1_000_000_000


def _element_id(kind: str, entity_id: int) -> str:
    """Neo4j 5 style element id, stable per id so the driver can de-duplicate entities."""
    return f"{kind}:stub:{entity_id}"


@dataclass(frozen=True)
class Node:
    """A node value for result rows; element_id defaults to one derived from id."""

    id: int
    labels: Sequence[str] = ()
    properties: Mapping[str, Any] = field(default_factory=dict)
    element_id: str | None = None

    @property
    def resolved_element_id(self) -> str:
        return self.element_id or _element_id("4", self.id)

    def to_structure(self) -> Structure:
        fields = (self.id, list(self.labels), dict(self.properties), self.resolved_element_id)
        return Structure(NODE, fields)


@dataclass(frozen=True)
class Relationship:
    """A relationship between two Node values, encoded with the Bolt 5 element ids."""

    id: int
    start: Node
    end: Node
    type: str
    properties: Mapping[str, Any] = field(default_factory=dict)
    element_id: str | None = None

    @property
    def resolved_element_id(self) -> str:
        return self.element_id or _element_id("5", self.id)

    def to_structure(self) -> Structure:
        fields = (
            self.id,
            self.start.id,
            self.end.id,
            self.type,
            dict(self.properties),
            self.resolved_element_id,
            self.start.resolved_element_id,
            self.end.resolved_element_id,
        )
        return Structure(RELATIONSHIP, fields)

    def to_unbound_structure(self) -> Structure:
        fields = (self.id, self.type, dict(self.properties), self.resolved_element_id)
        return Structure(UNBOUND_RELATIONSHIP, fields)


@dataclass(frozen=True)
class Path:
    """nodes[i] and nodes[i + 1] are joined by relationships[i], in either direction."""

    nodes: Sequence[Node]
    relationships: Sequence[Relationship] = ()

    def __post_init__(self) -> None:
        if len(self.nodes) != len(self.relationships) + 1:
            raise ValueError("a path needs exactly one more node than relationships")

    def to_structure(self) -> Structure:
        # Bolt sends each distinct entity once, plus an index sequence walking the path:
        # (relationship index, 1-based and negative when walked backwards; node index) per hop.
        unique_nodes = _unique(self.nodes, lambda node: node.resolved_element_id)
        unique_rels = _unique(self.relationships, lambda rel: rel.resolved_element_id)
        node_index = {node.resolved_element_id: i for i, node in enumerate(unique_nodes)}
        rel_index = {rel.resolved_element_id: i + 1 for i, rel in enumerate(unique_rels)}
        indices: list[int] = []
        for hop, rel in enumerate(self.relationships):
            previous, following = self.nodes[hop], self.nodes[hop + 1]
            forwards = rel.start.resolved_element_id == previous.resolved_element_id
            sign = 1 if forwards else -1
            indices += [sign * rel_index[rel.resolved_element_id]]
            indices += [node_index[following.resolved_element_id]]
        nodes = [node.to_structure() for node in unique_nodes]
        rels = [rel.to_unbound_structure() for rel in unique_rels]
        return Structure(PATH, (nodes, rels, indices))


def _unique(items: Sequence[Any], key: Any) -> list[Any]:
    seen: dict[str, Any] = {}
    for item in items:
        seen.setdefault(key(item), item)
    return list(seen.values())


def encode_value(value: Any) -> Any:
    """PackStream `default` hook: graph values and Python temporal types to Structures."""
    if hasattr(value, "to_structure"):
        return value.to_structure()
    # datetime before date: every datetime is also a date.
    if isinstance(value, datetime):
        return _encode_datetime(value)
    if isinstance(value, date):
        return Structure(DATE, ((value - _EPOCH_DATE).days,))
    if isinstance(value, time):
        return _encode_time(value)
    if isinstance(value, timedelta):
        nanos = value.microseconds * 1000
        return Structure(DURATION, (0, value.days, value.seconds, nanos))
    return NotImplemented


def _seconds_and_nanos(delta: timedelta) -> tuple[int, int]:
    return delta.days * 86400 + delta.seconds, delta.microseconds * 1000


def _encode_datetime(value: datetime) -> Structure:
    if value.tzinfo is None:
        return Structure(LOCAL_DATE_TIME, _seconds_and_nanos(value - _EPOCH))
    seconds, nanos = _seconds_and_nanos(value.astimezone(UTC).replace(tzinfo=None) - _EPOCH)
    if isinstance(value.tzinfo, ZoneInfo):
        return Structure(DATE_TIME_ZONE_ID, (seconds, nanos, value.tzinfo.key))
    offset = value.utcoffset() or timedelta()
    return Structure(DATE_TIME, (seconds, nanos, int(offset.total_seconds())))


def _encode_time(value: time) -> Structure:
    since_midnight = timedelta(
        hours=value.hour, minutes=value.minute, seconds=value.second, microseconds=value.microsecond
    )
    nanos = since_midnight // timedelta(microseconds=1) * 1000
    offset = value.utcoffset()
    if offset is None:
        return Structure(LOCAL_TIME, (nanos,))
    return Structure(TIME, (nanos, int(offset.total_seconds())))


def decode_value(value: Structure) -> Any:
    """PackStream structure hook for parameters: temporal Structures to Python values.

    Python keeps microseconds, so nanoseconds are truncated. A Duration with months has no
    timedelta equivalent and, like every other unknown structure, stays a Structure.
    """
    decoder = _DECODERS.get(value.tag)
    if decoder is None:
        return value
    try:
        return decoder(*value.fields)
    except (TypeError, ValueError, KeyError, OverflowError):
        return value


def _decode_duration(months: int, days: int, seconds: int, nanos: int) -> Any:
    if months:
        return Structure(DURATION, (months, days, seconds, nanos))
    return timedelta(days=days, seconds=seconds, microseconds=nanos // 1000)


def _utc_instant(seconds: int, nanos: int) -> datetime:
    return (_EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)).replace(tzinfo=UTC)


def _time_of_day(nanos: int, tzinfo: Any = None) -> time:
    moment = _EPOCH + timedelta(microseconds=nanos // 1000)
    return moment.time().replace(tzinfo=tzinfo)


_DECODERS: dict[int, Any] = {
    DATE: lambda days: _EPOCH_DATE + timedelta(days=days),
    LOCAL_TIME: _time_of_day,
    TIME: lambda nanos, offset: _time_of_day(nanos, timezone(timedelta(seconds=offset))),
    LOCAL_DATE_TIME: lambda s, ns: _EPOCH + timedelta(seconds=s, microseconds=ns // 1000),
    DATE_TIME: lambda s, ns, offset: _utc_instant(s, ns).astimezone(
        timezone(timedelta(seconds=offset))
    ),
    DATE_TIME_ZONE_ID: lambda s, ns, zone: _utc_instant(s, ns).astimezone(ZoneInfo(zone)),
    DURATION: _decode_duration,
}
