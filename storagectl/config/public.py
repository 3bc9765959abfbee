"""The effective configuration as plain data, every secret masked (for `config show`)."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel

from storagectl.config.models import Config
from storagectl.config.types import Duration, parse_duration
from storagectl.redact import MASK, redact_url
from storagectl.units import format_duration

_URL_KEYS = ("url", "uri", "endpoint_url")
_SECRET_MARKERS = ("password", "secret", "token")


def public_config(config: Config, *, readable: bool = False) -> dict[str, Any]:
    """``readable``: durations as written in a config (``5m``), not as seconds (``300.0``)."""
    def dump(section: dict[str, Any]) -> dict[str, Any]:
        return {name: _mask(_dump(model, readable)) for name, model in section.items()}

    return {
        "path": str(config.path) if config.path else None,
        "backends": dump(config.backends),
        "destinations": dump(config.destinations),
        "jobs": dump(config.jobs),
        "tools": _mask(config.tools.model_dump(mode="json")),
    }


def _mask(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(item, key) for item in value]
    if isinstance(value, str):
        if key in _URL_KEYS:
            return redact_url(value)
        if any(marker in key.lower() for marker in _SECRET_MARKERS) and not key.endswith("_file"):
            return MASK
    return value


def _dump(model: BaseModel, readable: bool) -> dict[str, Any]:
    data = model.model_dump(mode="json")
    if getattr(model, "url", None):  # the url's host, port, database...: not the unused defaults
        for name in getattr(model, "url_replaces", ()):
            data.pop(name, None)
    return _readable_durations(model, data) if readable else data


def _readable_durations(model: BaseModel, data: dict[str, Any]) -> dict[str, Any]:
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel) and isinstance(data.get(name), dict):
            data[name] = _readable_durations(value, data[name])
        elif value is not None and name in data and _is_duration(field):
            data[name] = format_duration(value)
    return data


def _is_duration(field: Any) -> bool:
    """``Duration`` or ``Duration | None`` (pydantic keeps the validator in one or the other place)."""
    return (any(getattr(m, "func", None) is parse_duration for m in field.metadata)
            or Duration in get_args(field.annotation))
