"""The canonical encoding of a mapped row, the same whichever side computes it.

Every column has a *kind* (the class of its target type). A row's canonical text joins one field
per column with ``|``; a row hash is the first 8 bytes of the md5 of that text, read as a signed
64-bit integer; a chunk's checksum is the sum of its row hashes mod 2**64, so row order does not
matter. PostgreSQL computes the same text in SQL (:func:`pg_field_sql`), on the server; SQLite
values are converted to their mapped value (:func:`converter`) and encoded in Python
(:func:`canon_field`). So a SQLite 0/1 and a PostgreSQL boolean both encode as ``true``/``false``,
an epoch integer and its timestamptz both as microseconds since 1970, a REAL and a float8 both as
the 8 bytes of the IEEE double.

Between two PostgreSQL servers of one major version whose columns have the same types, both sides
hash the row on the server in the servers' own terms instead (:func:`server_scheme`): its typed
fields (:func:`pg_typed_row_hash_sql`, PostgreSQL 14 or later, a table with an integer key) or its
text (:func:`pg_row_text_hash_sql`); both cheaper on the server than the canonical fields.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

KINDS = ("int", "bool", "float", "float4", "numeric", "text", "bytes", "timestamptz", "timestamp", "date", "json",
         "uuid", "other")
# SQLite → SQLite, no cast: a value as stored, tagged by its storage class (spec.ColumnSpec.verbatim)
VERBATIM = "verbatim"
TEXT_KINDS = ("json", "uuid", "other")  # read from PostgreSQL as text, stored in SQLite as TEXT
NULL_FIELD = r"\N"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_NAIVE = datetime(1970, 1, 1)
ONE_MICROSECOND = timedelta(microseconds=1)
# Julian day numbers of 0001-01-01 and 9999-12-31: a REAL in a date column between them is a Julian day
JULIAN_MIN, JULIAN_MAX = 1721425.5, 5373484.5
JULIAN_EPOCH_MS = 210866760000000  # 1970-01-01 as SQLite's Julian day in milliseconds
_TRUE = {"1", "t", "true", "y", "yes", "on"}
_FALSE = {"0", "f", "false", "n", "no", "off"}
_JUNK_DATES = {"", "0", "0000-00-00", "0000-00-00 00:00:00"}
INFINITIES = ("infinity", "-infinity")  # PostgreSQL's endless dates and times, as text in SQLite


class Rejected(ValueError):
    """A value its target column cannot hold; the message is the reason, for the rejects file."""


class NumericLoss(Rejected):
    """A number a ``numeric(p,s)`` column would round (``loss``: "rounded") or cannot hold ("overflow")."""

    def __init__(self, message: str, loss: str) -> None:
        super().__init__(message)
        self.loss = loss


class RejectedValue(str):
    """A source value its column rejects, hashed as this text whatever the column's kind: it never
    equals the field of a value the target holds, so its chunk shows as a mismatch."""


class StoredText(bytes):
    """A SQLite text that is not valid UTF-8, as its bytes: written back as text, not as a blob."""


# -- SQLite value → mapped value -----------------------------------------------------------------
INT64_LIMIT = 2**63  # SQLite's INTEGER and PostgreSQL's bigint: -limit ≤ n < limit


def to_int(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return _int64(int(value), value)
    if isinstance(value, str):
        try:
            return _int64(int(value.strip()), value)
        except ValueError:
            pass
    raise Rejected(f"not an integer: {_show(value)}")


def _int64(number: int, value: Any) -> int:
    """A SQLite integer is stored in 64 bits: a REAL or text beyond them is no integer any column holds."""
    if -INT64_LIMIT <= number < INT64_LIMIT:
        return number
    raise Rejected(f"integer out of 64-bit range: {_show(value)}")


def to_bool(value: Any) -> bool:
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    if isinstance(value, float) and value in (0.0, 1.0):
        return bool(value)
    raise Rejected(f"not a boolean: {_show(value)}")


def to_float(value: Any) -> float:
    if isinstance(value, float):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise Rejected(f"not a number: {_show(value)}")


def to_numeric(value: Any) -> Decimal | int:
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isinf(value):
            raise Rejected(f"infinite number: {value}")
        return Decimal(format(value, ".15g"))  # a REAL's digits as SQLite's own text form has them
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            pass
    raise Rejected(f"not a number: {_show(value)}")


def to_text(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected(f"invalid UTF-8: {_show(value)}") from None
    elif not isinstance(value, str):
        value = repr(value) if isinstance(value, float) else str(value)
    if "\x00" in value:
        raise Rejected(f"NUL character in text: {_show(value)}")
    return value


def to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return (repr(value) if isinstance(value, float) else str(value)).encode("utf-8")


def to_json(value: Any) -> str:
    """JSON text as PostgreSQL's jsonb prints it: keys deduplicated (the last wins) and ordered as
    jsonb orders them (shorter first, then by bytes), ``", "`` and ``": "`` between items."""
    text = to_text(value)
    try:
        parsed = json.loads(text, parse_float=Decimal, parse_int=Decimal, parse_constant=_no_constant)
    except ValueError:
        raise Rejected(f"not JSON: {_show(value)}") from None
    return _jsonb_text(parsed)


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def _jsonb_text(value: Any) -> str:
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode("utf-8")), k.encode("utf-8")))
        return "{" + ", ".join(f"{_jsonb_text(k)}: {_jsonb_text(value[k])}" for k in keys) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_jsonb_text(item) for item in value) + "]"
    if isinstance(value, Decimal):
        text = format(value, "f")
        return text[1:] if value == 0 and text.startswith("-") else text
    return json.dumps(value, ensure_ascii=False)  # strings, true, false, null


def to_uuid(value: Any) -> str:
    try:
        return str(uuid.UUID(to_text(value).strip()))
    except ValueError:
        raise Rejected(f"not a UUID: {_show(value)}") from None


def infinity(value: Any) -> str | None:
    """``'infinity'``/``'-infinity'`` for such a date or time (any case), else None."""
    if isinstance(value, str) and (word := value.strip().lower()) in INFINITIES:
        return word
    return None


def to_timestamptz(value: Any) -> datetime | str:
    if endless := infinity(value):
        return endless
    moment = _moment(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def to_timestamp(value: Any) -> datetime | str:
    if endless := infinity(value):
        return endless
    moment = _moment(value)
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def to_date(value: Any) -> date | str:
    if endless := infinity(value):
        return endless
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    moment = _moment(value)
    return (moment.astimezone(UTC) if moment.tzinfo else moment).date()


def _moment(value: Any) -> datetime:
    """A SQLite date: ISO text, a Julian day (REAL) or Unix seconds (INTEGER); ``0`` is junk."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        text = value.strip()
        if text in _JUNK_DATES:
            raise Rejected(f"junk date: {_show(value)}")
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
        try:
            value = float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:
            raise Rejected(f"not a date: {_show(value)}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or value == 0:
        raise Rejected(f"junk date: {_show(value)}")
    try:
        if isinstance(value, int):
            return EPOCH + timedelta(seconds=value)
        # REALs to the millisecond, rounded as SQLite's date functions do (what the COPY sends)
        if JULIAN_MIN <= value <= JULIAN_MAX:
            milliseconds = int(value * 86400000.0 + 0.5) - JULIAN_EPOCH_MS
        else:
            milliseconds = int(value * 1000.0 + JULIAN_EPOCH_MS + 0.5) - JULIAN_EPOCH_MS
        return EPOCH + timedelta(milliseconds=milliseconds)
    except (OverflowError, ValueError):
        raise Rejected(f"date out of range: {_show(value)}") from None


def keep_stored(value: Any) -> Any:
    """A SQLite value moved to SQLite as it is stored; a text that is not UTF-8 (read with its bytes
    kept as surrogates) as :class:`StoredText`, which Python's sqlite3 could not bind as a str."""
    if type(value) is str and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return StoredText(value.encode("utf-8", "surrogateescape"))
    return value


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "int": to_int, "bool": to_bool, "float": to_float, "float4": to_float, "numeric": to_numeric, "text": to_text,
    "bytes": to_bytes, "timestamptz": to_timestamptz, "timestamp": to_timestamp, "date": to_date,
    "json": to_json, "uuid": to_uuid, "other": to_text, VERBATIM: keep_stored,
}


def converter(kind: str) -> Callable[[Any], Any]:
    return CONVERTERS[kind]


# PostgreSQL integer types → 2**(bits-1): the values they hold are -limit ≤ n < limit
PG_INT_LIMITS = {"smallint": 2**15, "int2": 2**15, "smallserial": 2**15, "integer": 2**31, "int": 2**31,
                 "int4": 2**31, "serial": 2**31, "bigint": 2**63, "int8": 2**63, "bigserial": 2**63}


def pg_converter(kind: str, target_type: str) -> Callable[[Any], Any]:
    """:func:`converter` that also rejects what a PostgreSQL column of ``target_type`` cannot hold
    (an integer out of its range), as the server would."""
    convert = CONVERTERS[kind]
    type_name = re.sub(r"\(.*", "", target_type.lower()).strip()
    if kind == "numeric" and (bounds := numeric_bounds(target_type)):
        return lambda value: check_numeric(convert(value), *bounds)
    limit = PG_INT_LIMITS.get(type_name) if kind == "int" else None
    if limit is None:
        return convert

    def in_range(value: Any) -> Any:
        number = convert(value)
        if not -limit <= number < limit:
            raise Rejected(f'value "{number}" is out of range for type {type_name}')
        return number

    return in_range


def numeric_bounds(target_type: str) -> tuple[int, int] | None:
    """(precision, scale) of ``numeric(p,s)`` / ``numeric(p)`` / ``decimal(p,s)``; None: unbounded."""
    found = re.fullmatch(r"\s*(?:numeric|decimal)\s*\(\s*(\d+)\s*(?:,\s*(-?\d+)\s*)?\)\s*", target_type.lower())
    return (int(found.group(1)), int(found.group(2) or 0)) if found else None


def check_numeric(number: Decimal | int, precision: int, scale: int) -> Decimal | int:
    """``number`` if ``numeric(precision,scale)`` holds it exactly. PostgreSQL would round one with
    more decimals silently (a loss the verify could only report afterwards) and refuse one too large
    for the digits left before the point: both are rejected, with the rows a target cannot hold."""
    from decimal import ROUND_HALF_UP, localcontext

    exact = Decimal(number)
    if exact.is_nan():
        return number  # numeric(p,s) keeps NaN
    with localcontext() as context:
        context.prec = max(exact.adjusted(), 0) + abs(scale) + precision + 5  # room for every digit kept
        rounded = exact.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP) if exact.is_finite() else exact
        if not rounded.is_finite() or abs(rounded) >= Decimal(1).scaleb(precision - scale):
            raise NumericLoss(f"{exact} overflows numeric({precision},{scale}), which holds less than "
                              f"10^{precision - scale}", "overflow")
        if rounded != exact:
            raise NumericLoss(f"{exact} would be rounded to {rounded} by numeric({precision},{scale})", "rounded")
    return number


def date_format(value: Any) -> str:
    """How a SQLite date value is stored, for the plan: ISO text, Julian REAL, Unix INTEGER or junk."""
    if infinity(value):
        return "infinity"
    try:
        _moment(value)
    except Rejected:
        return "junk"
    if isinstance(value, str):
        return "ISO text"
    return "Julian REAL" if isinstance(value, float) and JULIAN_MIN <= value <= JULIAN_MAX else "Unix INTEGER"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- mapped value → canonical field ----------------------------------------------------------------
# A field is the value's text COPY form for the kinds SQLite can write in SQL (int, bool, text,
# bytes, other), ISO text in UTC to the microsecond for dates and times, the 8 IEEE bytes in hex
# for floats, and the normalized decimal for numerics; fields are joined with tabs.
_DOUBLE = struct.Struct(">d")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _canon_int(value: Any) -> str:
    return str(value)


def _canon_bool(value: Any) -> str:
    return "t" if value else "f"


def _canon_float(value: Any) -> str:
    return struct.pack(">d", value or 0.0).hex()  # -0.0 is 0 (SQLite's text of it has no sign)


def _canon_float4(value: Any) -> str:
    """A PostgreSQL ``real``: the 4 IEEE bytes of the value rounded to single precision, on both sides."""
    try:
        return struct.pack(">f", value or 0.0).hex()
    except OverflowError:
        return f"beyond real: {value!r}"


def _canon_numeric(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    if not value.is_finite():
        return "NaN" if value.is_nan() else ("Infinity" if value > 0 else "-Infinity")
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def _canon_text(value: Any) -> str:
    return value.translate(_COPY_ESCAPES)


def _canon_bytes(value: Any) -> str:
    return "\\\\x" + value.hex().upper()


def _canon_timestamptz(value: datetime | str) -> str:
    if isinstance(value, str):
        return value  # infinity
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _canon_timestamp(value: datetime | str) -> str:
    if isinstance(value, str):
        return value
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _canon_date(value: date | str) -> str:
    return value if isinstance(value, str) else value.isoformat()


def _canon_stored(value: Any) -> str:
    """A SQLite value by its storage class and exact content: 5 and '5' differ, a REAL by its 8 bytes,
    a text by all its bytes (NULs and invalid UTF-8 too: :func:`text_hash` keeps surrogates' bytes)."""
    kind = type(value)
    if kind is int:
        return "i" + str(value)
    if kind is StoredText:
        value, kind = value.decode("utf-8", "surrogateescape"), str
    if kind is str:
        return "t" + value.translate(_COPY_ESCAPES)
    if kind is float:
        return "r" + _DOUBLE.pack(value).hex()
    return "b" + value.hex()


def stored_row_hash(values: Sequence[Any]) -> int:
    """The row hash of values of :data:`VERBATIM` columns as read (what :func:`row_hasher` gives for
    them after :func:`keep_stored`), without a call per value but the encoding."""
    return text_hash(SEPARATOR.join([NULL_FIELD if value is None else _canon_stored(value) for value in values]))


CANON: dict[str, Callable[[Any], str]] = {
    "int": _canon_int, "bool": _canon_bool, "float": _canon_float, "float4": _canon_float4, "numeric": _canon_numeric,
    "text": _canon_text, "bytes": _canon_bytes, "timestamptz": _canon_timestamptz,
    "timestamp": _canon_timestamp, "date": _canon_date, "json": str, "uuid": str, "other": _canon_text,
    VERBATIM: _canon_stored,
}
SEPARATOR = "\t"
# Kinds whose field SQLite computes in SQL only for common spellings (else Python), and kinds it
# never computes; in the canonical order they come after the others, in this order.
FALLBACK_KINDS = ("timestamptz", "timestamp", "date")
PYTHON_KINDS = ("float", "float4", "numeric", "json", "uuid")


def canonical_order(kinds: Sequence[str]) -> list[int]:
    """Column positions in the order their fields are hashed: SQL-encodable kinds first, then
    :data:`FALLBACK_KINDS`, then :data:`PYTHON_KINDS` (so a SQLite reader builds the first part in SQL)."""
    rank = {kind: 1 for kind in FALLBACK_KINDS} | {kind: 2 for kind in PYTHON_KINDS}
    return sorted(range(len(kinds)), key=lambda i: rank.get(kinds[i], 0))


def row_hasher(kinds: Sequence[str]) -> Callable[[Sequence[Any]], int]:
    """The row hash of mapped values of these kinds (given in column order)."""
    encoders = [(i, CANON[kinds[i]]) for i in canonical_order(kinds)]

    def field(value: Any, encode: Callable[[Any], str]) -> str:
        if value is None:
            return NULL_FIELD
        return value if type(value) is RejectedValue else encode(value)

    def row_hash(values: Sequence[Any]) -> int:
        return text_hash(SEPARATOR.join([field(values[i], enc) for i, enc in encoders]))

    return row_hash


def text_hash(text: str) -> int:
    # surrogateescape: a SQLite text that is not UTF-8 (read with its bytes kept) hashes as those bytes,
    # so its chunk differs from the target's instead of the verify failing; UTF-8 text is unchanged
    return int.from_bytes(hashlib.md5(text.encode("utf-8", "surrogateescape")).digest()[:8], "big", signed=True)


def chunk_sum(hashes: Iterable[int]) -> int:
    return sum(hashes) % 2**64


# -- the same in PostgreSQL ------------------------------------------------------------------------
_PG_ESCAPED = ("replace(replace(replace(replace(({c})::text, '\\', '\\\\'), E'\\n', '\\n'), E'\\r', '\\r'), "
               "E'\\t', '\\t')")
PG_FIELD: dict[str, str] = {
    "int": "({c})::text",
    "bool": "CASE WHEN {c} THEN 't' WHEN NOT {c} THEN 'f' END",
    "float": "encode(float8send(CASE WHEN ({c})::float8 = 0 THEN 0 ELSE ({c})::float8 END), 'hex')",
    "float4": "encode(float4send(CASE WHEN ({c})::float4 = 0 THEN 0 ELSE ({c})::float4 END), 'hex')",
    "numeric": "CASE WHEN ({c})::numeric = 0 THEN '0' ELSE trim_scale(({c})::numeric)::text END",
    "text": _PG_ESCAPED,
    "bytes": "'\\\\x' || upper(encode({c}, 'hex'))",
    # to_char of infinity is NULL: then the text, 'infinity' or '-infinity'
    "timestamptz": "coalesce(to_char(({c}) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), ({c})::text)",
    "timestamp": "coalesce(to_char({c}, 'YYYY-MM-DD HH24:MI:SS.US'), ({c})::text)",
    "date": "coalesce(to_char({c}, 'YYYY-MM-DD'), ({c})::text)",
    "json": "(({c})::jsonb)::text",
    "uuid": "lower(({c})::text)",
    "other": _PG_ESCAPED,
}


def pg_row_hash_sql(expressions: Sequence[str], kinds: Sequence[str]) -> str:
    """A SQL expression: the row hash (bigint) of these column expressions, as :func:`row_hasher`."""
    fields = [f"coalesce({PG_FIELD[kinds[i]].format(c=expressions[i])}, '{NULL_FIELD}')"
              for i in canonical_order(kinds)]
    text = " || E'\\t' || ".join(fields) if fields else "''"
    return f"('x' || substr(md5({text}), 1, 16))::bit(64)::bigint"


# Both sides PostgreSQL, every column of one type on both, one major version: the row text scheme
ROW_TEXT_MIN_VERSION = 11  # hashtextextended


def pg_row_text_hash_sql(expressions: Sequence[str], *, whole_row: str | None = None) -> str:
    """A SQL expression: a row hash (bigint) over the server's text of the row, ``ROW(...)::text``.

    That text is each value's output function (what a text COPY sends) with the record's quoting
    (a NULL is empty, an empty string ``""``, quotes and backslashes doubled), so two rows of the
    same column types have the same text exactly when each value prints the same: a changed value
    changes it. It depends on the session settings :data:`pg_side.SESSION` fixes (time zone, date
    and interval styles, float digits, bytea output) and, for floats, on the server's major version;
    so it compares only PostgreSQL to PostgreSQL of one major version, column types equal.

    The hash is ``hashtextextended`` (PostgreSQL's 64-bit lookup3 hash of the bytes, C collation),
    about 2.5x cheaper on the server than md5 of the canonical fields. Summed per chunk as the md5
    scheme is: a changed row goes unseen only if its two texts hash alike (2**-64 by chance; neither
    scheme resists someone crafting rows, as a sum of 64-bit hashes cannot). Servers of different
    byte orders would hash differently: a false mismatch, never a false match. ``whole_row``: the
    alias of a table whose columns are these, in this order: its whole-row value, the same text.
    """
    row = whole_row or f"ROW({', '.join(expressions)})"
    return f"hashtextextended(({row}::text) COLLATE \"C\", 0)"


# -- the typed fields scheme ------------------------------------------------------------------------
CANONICAL, ROW_TEXT, TYPED_FIELDS = "canonical", "row text", "typed fields"  # the row hash schemes
TYPED_FIELDS_MIN_VERSION = 14  # hash_record_extended
# Types whose own extended hash function takes the whole value (a 4-byte integer or the bytes), and
# whose values have one text each: two values hash alike only when equal, but by a 2**-64 chance
_OWN_HASH_TYPES = frozenset({"smallint", "integer", "boolean", "date", "bytea"})
# Types whose own hash proves less than their text, hashed as their binary send form (a bytea) instead:
# bigint and the timestamps fold their 8 bytes to 4 before hashing (1 and 4294967296 hash alike),
# numeric's hash leaves out the sign and the scale (5 = -5, 1.0 = 1.00)
_SEND_FUNCTIONS = {"bigint": "int8send", "numeric": "numeric_send", "timestamp with time zone": "timestamptz_send",
                   "timestamp without time zone": "timestamp_send"}


def server_scheme(source: Any, target: Any, spec: Any) -> str:
    """How both sides hash the rows of ``spec``: :data:`CANONICAL` unless both are PostgreSQL of one
    major version and every column has the same type on both (so each value's text and binary form
    are the same on both when the values are); then :data:`TYPED_FIELDS` on 14 or later for a table
    cut by an integer key on both sides (the key seeds the row hash), else :data:`ROW_TEXT` (11 or later)."""
    if source.kind != "postgres" or target.kind != "postgres":
        return CANONICAL
    if any(column.source_type != column.target_type for column in spec.columns):
        return CANONICAL
    if source.server_major != target.server_major or source.server_major < ROW_TEXT_MIN_VERSION:
        return CANONICAL
    keyed = spec.key is not None and spec.key_column is not None
    return TYPED_FIELDS if keyed and source.server_major >= TYPED_FIELDS_MIN_VERSION else ROW_TEXT


def pg_typed_field_sql(expression: str, pg_type: str) -> str:
    """The field of a column of ``pg_type`` (as ``format_type`` spells it) in the typed row."""
    base = re.sub(r"\(.*?\)", "", pg_type.lower()).strip()
    if base in _OWN_HASH_TYPES:
        return expression
    if base in _SEND_FUNCTIONS:
        return f"{_SEND_FUNCTIONS[base]}({expression})"
    return f'({expression})::text COLLATE "C"'


def pg_typed_row_hash_sql(expressions: Sequence[str], pg_types: Sequence[str], key: str) -> str:
    """A SQL expression: a row hash (bigint) over its typed fields, ``hash_record_extended(ROW(...), key)``.

    Each field is either the value itself, for the types whose own extended hash takes the whole
    value (:data:`_OWN_HASH_TYPES`), its binary send form (:data:`_SEND_FUNCTIONS`), or its text in
    the C collation (everything else: text and varchar as they are; jsonb, json, arrays, floats,
    enums, intervals, numbers of other types as the row text scheme prints them). So two rows of the
    same column types hash alike exactly when each value prints the same, but by a 2**-64 chance,
    as in the row text scheme: the types whose own hash is weaker than their text (numeric: 5 = -5
    and 1.0 = 1.00; bigint and timestamps fold 64 bits to 32; jsonb's hash ignores where an array
    ends, ``[[1],2]`` = ``[[1,2]]``; an array's ignores its dimensions; float's makes -0 = 0; an
    enum's is its OID, another on each server; a text's in a nondeterministic collation folds case)
    are never hashed by it. The text is that of :data:`pg_side.SESSION`, so of one major version.

    ``hash_record_extended`` hashes each field with the seed and combines them as ``31·h + h_i``, a
    linear sum: summed over a chunk, two rows swapping the values of one column would cancel out. The
    seed is therefore the row's key (unique), so a value hashes differently in each row. A NULL
    field hashes as 0 in any row, a value (an empty text too) as a 64-bit hash of it.
    """
    fields = [pg_typed_field_sql(expression, pg_type) for expression, pg_type in zip(expressions, pg_types,
                                                                                        strict=True)]
    return f"hash_record_extended(ROW({', '.join(fields)}), ({key})::bigint)"
