"""The destination registry: where backups are stored, one module per kind.

Each kind is a class implementing :class:`storagectl.destinations.base.Destination`, registered
under its YAML ``kind``; nothing outside this module branches on the kind.
"""

from __future__ import annotations

from difflib import get_close_matches
from importlib import import_module
from typing import Any

from storagectl.destinations.base import Destination, StoredObject, UnfinishedUpload
from storagectl.errors import ConfigError

BUILTIN_KINDS: dict[str, str] = {
    "local": "storagectl.destinations.local:LocalDestination",
    "s3": "storagectl.destinations.s3:S3Destination",
}


def destination_class(kind: str) -> Any:
    if kind not in BUILTIN_KINDS:
        close = get_close_matches(kind, list(BUILTIN_KINDS), n=1)
        suggestion = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(
            f"unknown destination kind {kind!r}{suggestion}; valid kinds: {', '.join(sorted(BUILTIN_KINDS))}"
        )
    module_name, _, attribute = BUILTIN_KINDS[kind].partition(":")
    return getattr(import_module(module_name), attribute)


def open_destination(name: str, settings: Any) -> Destination:
    """The destination ``name`` built from its validated settings."""
    return destination_class(settings.kind)(name, settings)


__all__ = ["Destination", "StoredObject", "UnfinishedUpload", "destination_class", "open_destination"]
