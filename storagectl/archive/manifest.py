"""``manifest.json``: what a backup holds, written last. Its presence is what makes a backup."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from storagectl.errors import IntegrityError

FORMAT_NAME = "storagectl-backup"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def new_backup_id(now: datetime | None = None) -> str:
    """``20261121T234501Z-1a2b3c``: UTC start time (so ids sort by time) plus 24 random bits."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{os.urandom(3).hex()}"


def is_backup_id(text: str) -> bool:
    return bool(_ID.match(text))


def backup_prefix(group: str, backup_id: str) -> str:
    """The folder of one backup: ``<job or backend>/<id>/``."""
    return f"{group}/{backup_id}/"


def object_key(prefix: str, sequence: int, name: str, codec: str, encrypted: bool) -> str:
    """Where object ``name`` is stored; the sequence number keeps sanitized names unique."""
    safe = _UNSAFE.sub("_", name).strip("._") or "object"
    suffix = (".br" if codec == "brotli" else "") + (".age" if encrypted else "")
    return f"{prefix}{sequence:05d}-{safe}{suffix}"


@dataclass
class ObjectEntry:
    name: str
    key: str
    size: int  # stored bytes
    sha256: str  # of the stored bytes
    raw_size: int  # bytes the backend wrote
    codec: str
    encryption: str | None  # "age" or None
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class BackupManifest:
    id: str
    group: str
    job: str | None
    backend: dict[str, Any]  # name, kind, archive_family, server_version, endpoint, metadata
    destination: str
    started_at: str
    finished_at: str
    compression: dict[str, Any]
    encryption: dict[str, Any] | None  # {"scheme": "age", "recipients": [...]}
    objects: list[ObjectEntry]
    tool_version: str
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    # A partial (selective) backup: the selection it was taken with (storagectl.selection keys) and
    # ``matched``, what it holds unit by unit (table rows, keys, nodes). None: a full backup. Left out
    # of a full backup's JSON, so older versions read those as before (and refuse partial ones).
    selection: dict[str, Any] | None = None

    @property
    def partial(self) -> bool:
        return self.selection is not None

    def selection_options(self) -> dict[str, Any]:
        """The selection without ``matched``: equal for two backups taken with the same selection."""
        return {key: value for key, value in (self.selection or {}).items() if key != "matched"}

    @property
    def size(self) -> int:
        return sum(entry.size for entry in self.objects)

    @property
    def raw_size(self) -> int:
        return sum(entry.raw_size for entry in self.objects)

    @property
    def prefix(self) -> str:
        return backup_prefix(self.group, self.id)

    def object(self, name: str) -> ObjectEntry:
        for entry in self.objects:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["selection"] is None:
            del data["selection"]
        data["size"] = self.size
        data["raw_size"] = self.raw_size
        return data

    def to_json(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, where: str) -> BackupManifest:
        try:
            raw = json.loads(data)
            if raw.get("format") != FORMAT_NAME:
                raise ValueError("not a storagectl manifest")
            if int(raw["format_version"]) > FORMAT_VERSION:
                raise ValueError(f"format version {raw['format_version']} is newer than this storagectl")
            raw.pop("size", None)
            raw.pop("raw_size", None)
            raw["objects"] = [ObjectEntry(**entry) for entry in raw["objects"]]
            return cls(**raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"{where}: unreadable manifest ({exc})") from exc
