"""A scripted Bolt 5 server for testing code that uses the official neo4j driver without Neo4j.

See server.py for the entry point and script.py for how answers are scripted.
"""

from .connection import ClientMessage
from .packstream import PackStreamError, Structure, pack, unpack
from .script import Failure, Records, Responder, Response, Rule, normalise_query
from .server import (
    SUPPORTED_VERSIONS,
    BoltStubError,
    BoltStubServer,
    ConnectionInfo,
    Received,
)
from .values import Node, Path, Relationship

__all__ = [
    "SUPPORTED_VERSIONS",
    "BoltStubError",
    "BoltStubServer",
    "ClientMessage",
    "ConnectionInfo",
    "Failure",
    "Node",
    "PackStreamError",
    "Path",
    "Received",
    "Records",
    "Relationship",
    "Responder",
    "Response",
    "Rule",
    "Structure",
    "normalise_query",
    "pack",
    "unpack",
]
