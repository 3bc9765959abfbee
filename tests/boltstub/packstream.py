"""PackStream v1, the value encoding inside Bolt messages.

Written from the PackStream spec (and checked against the official driver's codec) rather than
imported from the driver, so that the stub tests the driver instead of agreeing with it by
construction. Every value is a marker byte, for small values carrying the size in its low nibble,
followed by a big-endian size and payload:

    null C0 | false C2 | true C3 | float C1 + 8-byte double
    int: F0..7F tiny, C8/C9/CA/CB for 8/16/32/64-bit
    string 8x/D0/D1/D2 | bytes CC/CD/CE | list 9x/D4/D5/D6 | map Ax/D8/D9/DA
    structure Bx (x = field count, at most 15) + one tag byte + fields

The encoder always picks the smallest form, as real servers do.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_STRUCT_FIELDS = 15

# (tiny marker or None, 8-bit, 16-bit, 32-bit marker) per sized type.
_STRING_MARKERS = (0x80, 0xD0, 0xD1, 0xD2)
_BYTES_MARKERS = (None, 0xCC, 0xCD, 0xCE)
_LIST_MARKERS = (0x90, 0xD4, 0xD5, 0xD6)
_MAP_MARKERS = (0xA0, 0xD8, 0xD9, 0xDA)
_SIZE_FORMATS = {1: ">B", 2: ">H", 4: ">I"}


class PackStreamError(ValueError):
    """Raised for values that cannot be encoded and for malformed input."""


@dataclass(frozen=True)
class Structure:
    """A tagged structure: the form of every Bolt message and of graph/temporal values."""

    tag: int
    fields: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.tag <= 0xFF:
            raise PackStreamError(f"structure tag {self.tag!r} is not a byte")
        if len(self.fields) > MAX_STRUCT_FIELDS:
            raise PackStreamError(f"structure has {len(self.fields)} fields, at most 15 allowed")


# Turns a value the encoder does not know (a Node, a datetime) into one it does.
Default = Callable[[Any], Any]
# Turns a decoded Structure into a friendlier Python value, or returns it unchanged.
StructureHook = Callable[[Structure], Any]


def pack(value: Any, default: Default | None = None) -> bytes:
    """Encode one value; `default` converts types PackStream has no marker for."""
    out = bytearray()
    _Packer(out, default).pack(value)
    return bytes(out)


def unpack(data: bytes, structure_hook: StructureHook | None = None) -> Any:
    """Decode exactly one value occupying all of `data`."""
    reader = _Unpacker(data, structure_hook)
    value = reader.unpack()
    if reader.offset != len(data):
        raise PackStreamError(f"{len(data) - reader.offset} trailing bytes after value")
    return value


def unpack_structure(data: bytes, structure_hook: StructureHook | None = None) -> Structure:
    """Decode a top-level structure (a Bolt message), applying the hook to its fields only.

    Message tags share the byte space of value tags (TELEMETRY and Time are both 0x54), so the
    message itself must never be handed to a value hook.
    """
    reader = _Unpacker(data, structure_hook)
    marker = reader.read_marker()
    if marker & 0xF0 != 0xB0:
        raise PackStreamError(f"expected a structure, found marker 0x{marker:02X}")
    value = reader.read_structure_fields(marker & 0x0F)
    if reader.offset != len(data):
        raise PackStreamError(f"{len(data) - reader.offset} trailing bytes after message")
    return value


class _Packer:
    def __init__(self, out: bytearray, default: Default | None) -> None:
        self._out = out
        self._default = default

    def pack(self, value: Any) -> None:
        # bool before int: True is an int in Python but has its own marker.
        if value is None:
            self._out.append(0xC0)
        elif isinstance(value, bool):
            self._out.append(0xC3 if value else 0xC2)
        elif isinstance(value, int):
            self._pack_int(value)
        elif isinstance(value, float):
            self._out += b"\xc1" + struct.pack(">d", value)
        elif isinstance(value, str):
            encoded = value.encode("utf-8")
            self._pack_header(_STRING_MARKERS, len(encoded))
            self._out += encoded
        elif isinstance(value, bytes | bytearray | memoryview):
            self._pack_header(_BYTES_MARKERS, len(value))
            self._out += value
        elif isinstance(value, list | tuple):
            self._pack_list(value)
        elif isinstance(value, Mapping):
            self._pack_map(value)
        elif isinstance(value, Structure):
            self._pack_structure(value)
        else:
            self._pack_other(value)

    def _pack_int(self, value: int) -> None:
        if -0x10 <= value <= 0x7F:
            self._out += struct.pack(">b", value)
        elif -0x80 <= value <= 0x7F:
            self._out += b"\xc8" + struct.pack(">b", value)
        elif -0x8000 <= value <= 0x7FFF:
            self._out += b"\xc9" + struct.pack(">h", value)
        elif -0x8000_0000 <= value <= 0x7FFF_FFFF:
            self._out += b"\xca" + struct.pack(">i", value)
        elif INT64_MIN <= value <= INT64_MAX:
            self._out += b"\xcb" + struct.pack(">q", value)
        else:
            raise PackStreamError(f"integer {value} does not fit in 64 bits")

    def _pack_header(self, markers: tuple[int | None, int, int, int], size: int) -> None:
        tiny, marker8, marker16, marker32 = markers
        if tiny is not None and size <= 0x0F:
            self._out.append(tiny | size)
        elif size <= 0xFF:
            self._out += bytes((marker8, size))
        elif size <= 0xFFFF:
            self._out += bytes((marker16,)) + struct.pack(">H", size)
        elif size <= 0xFFFF_FFFF:
            self._out += bytes((marker32,)) + struct.pack(">I", size)
        else:
            raise PackStreamError(f"size {size} does not fit in 32 bits")

    def _pack_list(self, items: list | tuple) -> None:
        self._pack_header(_LIST_MARKERS, len(items))
        for item in items:
            self.pack(item)

    def _pack_map(self, mapping: Mapping) -> None:
        self._pack_header(_MAP_MARKERS, len(mapping))
        for key, item in mapping.items():
            if not isinstance(key, str):
                raise PackStreamError(f"map keys must be strings, not {type(key).__name__}")
            self.pack(key)
            self.pack(item)

    def _pack_structure(self, value: Structure) -> None:
        self._out += bytes((0xB0 | len(value.fields), value.tag))
        for item in value.fields:
            self.pack(item)

    def _pack_other(self, value: Any) -> None:
        converted = self._default(value) if self._default else NotImplemented
        if converted is NotImplemented or converted is value:
            raise PackStreamError(f"cannot encode {type(value).__name__} as PackStream")
        self.pack(converted)


class _Unpacker:
    def __init__(self, data: bytes, structure_hook: StructureHook | None) -> None:
        self._data = memoryview(data)
        self._hook = structure_hook
        self.offset = 0

    def read_marker(self) -> int:
        return self._read(1)[0]

    def read_structure_fields(self, size: int) -> Structure:
        tag = self._read(1)[0]
        return Structure(tag, tuple(self.unpack() for _ in range(size)))

    def unpack(self) -> Any:
        marker = self.read_marker()
        if marker <= 0x7F or marker >= 0xF0:
            return marker if marker <= 0x7F else marker - 0x100
        high = marker & 0xF0
        if high in (0x80, 0x90, 0xA0, 0xB0):
            return self._unpack_tiny(high, marker & 0x0F)
        return self._unpack_marked(marker)

    def _unpack_tiny(self, high: int, size: int) -> Any:
        if high == 0x80:
            return self._read_string(size)
        if high == 0x90:
            return self._read_list(size)
        if high == 0xA0:
            return self._read_map(size)
        return self._read_structure(size)

    def _unpack_marked(self, marker: int) -> Any:
        simple = {0xC0: None, 0xC2: False, 0xC3: True}
        if marker in simple:
            return simple[marker]
        if marker == 0xC1:
            return struct.unpack(">d", self._read(8))[0]
        int_formats = {0xC8: ">b", 0xC9: ">h", 0xCA: ">i", 0xCB: ">q"}
        if marker in int_formats:
            fmt = int_formats[marker]
            return struct.unpack(fmt, self._read(struct.calcsize(fmt)))[0]
        for markers, read in (
            (_STRING_MARKERS, self._read_string),
            (_BYTES_MARKERS, lambda size: bytes(self._read(size))),
            (_LIST_MARKERS, self._read_list),
            (_MAP_MARKERS, self._read_map),
        ):
            if marker in markers[1:]:
                width = 1 << markers[1:].index(marker)
                return read(self._read_size(width))
        raise PackStreamError(f"unknown PackStream marker 0x{marker:02X}")

    def _read(self, n: int) -> memoryview:
        end = self.offset + n
        if end > len(self._data):
            raise PackStreamError("truncated PackStream value")
        chunk = self._data[self.offset : end]
        self.offset = end
        return chunk

    def _read_size(self, width: int) -> int:
        return struct.unpack(_SIZE_FORMATS[width], self._read(width))[0]

    def _read_string(self, size: int) -> str:
        return str(self._read(size), "utf-8")

    def _read_list(self, size: int) -> list:
        return [self.unpack() for _ in range(size)]

    def _read_map(self, size: int) -> dict:
        result = {}
        for _ in range(size):
            key = self.unpack()
            if not isinstance(key, str):
                raise PackStreamError(f"map key {key!r} is not a string")
            result[key] = self.unpack()
        return result

    def _read_structure(self, size: int) -> Any:
        value = self.read_structure_fields(size)
        return self._hook(value) if self._hook else value
