"""Bolt transport: version negotiation and chunked message framing.

Handshake (client first): magic 60 60 B0 17, then four 4-byte proposals in preference order,
each [reserved, range, minor, major] meaning major.minor down to major.(minor - range).
The proposal 00 00 01 FF is not a version but "I speak handshake manifest v1" (sent first by
drivers since 5.28/6.x). A legacy server answers with one chosen version ([0, 0, minor, major],
or zeros for none). A manifest server instead answers 00 00 01 FF, a varint count, that many
offered versions (same 4-byte form), and a varint capability mask; the client then replies with
its chosen version and capabilities.

Framing: each message is sent as chunks of [2-byte big-endian size][payload], ending with an
empty chunk 00 00. An empty chunk on its own is a NOOP keep-alive and carries no message.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass

MAGIC = b"\x60\x60\xb0\x17"
MANIFEST_V1 = b"\x00\x00\x01\xff"
NO_VERSION = b"\x00\x00\x00\x00"
MAX_CHUNK_SIZE = 0xFFFF
END_OF_MESSAGE = b"\x00\x00"

Version = tuple[int, int]


class ConnectionClosed(Exception):
    """The peer closed the socket (or the server is shutting down)."""


class HandshakeError(Exception):
    """The client sent something that is not a Bolt handshake."""


@dataclass(frozen=True)
class Proposal:
    """One 4-byte version slot from the client's handshake."""

    major: int
    minor: int
    range: int

    @classmethod
    def parse(cls, slot: bytes) -> Proposal:
        return cls(major=slot[3], minor=slot[2], range=slot[1])

    def covers(self, version: Version) -> bool:
        major, minor = version
        return major == self.major and self.minor - self.range <= minor <= self.minor


@dataclass(frozen=True)
class Negotiated:
    version: Version
    handshake: str  # "manifest" or "legacy"


class BoltSocket:
    """Exact reads and chunked message framing over a connected socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def read_exact(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self._sock.recv(n - len(data))
            if not chunk:
                raise ConnectionClosed()
            data += chunk
        return bytes(data)

    def read_varint(self) -> int:
        """Little-endian base-128 integer, as used by handshake manifest v1."""
        value, shift = 0, 0
        while True:
            byte = self.read_exact(1)[0]
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    def read_message(self) -> bytes:
        """Join chunks up to the end marker; NOOP keep-alives are skipped."""
        message = bytearray()
        while True:
            size = int.from_bytes(self.read_exact(2), "big")
            if size:
                message += self.read_exact(size)
            elif message:
                return bytes(message)

    def send(self, data: bytes) -> None:
        self._sock.sendall(data)


def frame(message: bytes) -> bytes:
    """Split one encoded message into chunks followed by the end marker."""
    out = bytearray()
    for start in range(0, len(message), MAX_CHUNK_SIZE):
        chunk = message[start : start + MAX_CHUNK_SIZE]
        out += len(chunk).to_bytes(2, "big") + chunk
    return bytes(out + END_OF_MESSAGE)


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def choose_version(proposals: Iterable[Proposal], supported: Iterable[Version]) -> Version | None:
    """First proposal (client preference) that overlaps ours wins; take its highest version."""
    supported = sorted(supported)
    for proposal in proposals:
        matching = [version for version in supported if proposal.covers(version)]
        if matching:
            return matching[-1]
    return None


def negotiate(
    bolt: BoltSocket, supported: Iterable[Version], allow_manifest: bool
) -> Negotiated | None:
    """Run the server side of the handshake; None means no common version (connection ends)."""
    if bolt.read_exact(4) != MAGIC:
        raise HandshakeError("client did not open with the Bolt magic preamble")
    slots = [bolt.read_exact(4) for _ in range(4)]
    supported = sorted(supported)
    if allow_manifest and MANIFEST_V1 in slots:
        return _negotiate_manifest(bolt, supported)
    proposals = [Proposal.parse(slot) for slot in slots if slot != MANIFEST_V1]
    version = choose_version(proposals, supported)
    bolt.send(_version_bytes(version) if version else NO_VERSION)
    return Negotiated(version, "legacy") if version else None


def _negotiate_manifest(bolt: BoltSocket, supported: list[Version]) -> Negotiated | None:
    offer = b"".join(_version_bytes(version) for version in supported)
    no_capabilities = encode_varint(0)
    bolt.send(MANIFEST_V1 + encode_varint(len(supported)) + offer + no_capabilities)
    chosen = bolt.read_exact(4)
    bolt.read_varint()  # the client's capabilities; none are defined that the stub could honour
    version = (chosen[3], chosen[2])
    if chosen == NO_VERSION:
        return None
    if version not in supported:
        raise HandshakeError(f"client chose Bolt {version}, which was not offered")
    return Negotiated(version, "manifest")


def _version_bytes(version: Version) -> bytes:
    major, minor = version
    return bytes((0, 0, minor, major))
