"""Configuration: one YAML file, parsed once into typed objects.

The names below are imported when first used (PEP 562): storagectl.config.cache and
storagectl.config.source run without pydantic or YAML, and importing them imports this package.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOMES = {
    "loader": ("find_config_path", "load_config", "parse_config"),
    "models": ("BackendSettings", "Config", "DestinationSettings", "JobSettings", "PasswordMixin", "RetentionPolicy",
               "RetrySettings"),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "BackendSettings",
    "Config",
    "DestinationSettings",
    "JobSettings",
    "PasswordMixin",
    "RetentionPolicy",
    "RetrySettings",
    "find_config_path",
    "load_config",
    "parse_config",
]
