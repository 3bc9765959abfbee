"""The backend registry: each kind is one module whose class is registered under its YAML ``kind``.

Built-in kinds are imported lazily (their drivers are heavy); third parties add kinds through the
``storagectl.backends`` entry-point group, whose objects are Backend classes. Importing the package
imports nothing else of it: a Redis backup's head start (storagectl.backends.redis_head_start) sends
SYNC before the base class and its imports load (issue 19).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from storagectl.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from storagectl.backends.base import Backend
    from storagectl.config.models import BackendSettings, Config

ENTRY_POINT_GROUP = "storagectl.backends"

BUILTIN_KINDS: dict[str, str] = {
    "postgres": "storagectl.backends.postgres:PostgresBackend",
    "timescaledb": "storagectl.backends.postgres.timescaledb:TimescaleBackend",
    "sqlite": "storagectl.backends.sqlite:SQLiteBackend",
    "redis": "storagectl.backends.redis:RedisBackend",
    "neo4j": "storagectl.backends.neo4j:Neo4jBackend",
    "s3": "storagectl.backends.s3:S3Backend",
}


def _load(target: str) -> type[Backend]:
    module_name, _, attribute = target.partition(":")
    return getattr(import_module(module_name), attribute)


def _plugin_kinds() -> dict[str, object]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_kinds() -> list[str]:
    return sorted({*BUILTIN_KINDS, *_plugin_kinds()})


def backend_class(kind: str) -> type[Backend]:
    """The class registered for ``kind``; an unknown kind lists the valid ones."""
    if kind in BUILTIN_KINDS:
        return _load(BUILTIN_KINDS[kind])
    plugins = _plugin_kinds()
    if kind in plugins:
        return plugins[kind].load()  # type: ignore[attr-defined]
    from difflib import get_close_matches

    kinds = available_kinds()
    close = get_close_matches(kind, kinds, n=1)
    suggestion = f" (did you mean {close[0]}?)" if close else ""
    raise ConfigError(f"unknown backend kind {kind!r}{suggestion}; valid kinds: {', '.join(kinds)}")


def open_backend(name: str, settings: BackendSettings) -> Backend:
    return backend_class(settings.kind).for_settings(settings)(name, settings)


def backend_from_config(config: Config, name: str) -> Backend:
    return open_backend(name, config.backend(name))


def selected_backends(config: Config, names: list[str] | None) -> list[Backend]:
    """The named backends in the order given, or all in config order; unknown names are errors."""
    chosen = names or list(config.backends)
    return [backend_from_config(config, name) for name in chosen]


def only_backend(candidates: list[Backend], what: str, hint: str) -> Backend:
    """The backend a command takes when none is named: the only candidate. None, or several (listed),
    is a usage error; ``what`` names the candidates in the plural ("redis backends")."""
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise UsageError(f"no {what} in the config", hint=hint)
    raise UsageError(f"several {what} ({', '.join(b.name for b in candidates)}); name one", hint=hint)


def __getattr__(name: str) -> Any:
    if name == "Backend":
        from storagectl.backends.base import Backend

        return Backend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Backend",
    "available_kinds",
    "backend_class",
    "backend_from_config",
    "only_backend",
    "open_backend",
    "selected_backends",
]
