"""The effective configuration as plain data, every secret masked (for `config show`)."""

from __future__ import annotations

from typing import Any

from storagectl.config.models import Config
from storagectl.redact import MASK, redact_url

_URL_KEYS = ("url", "uri", "endpoint_url")
_SECRET_MARKERS = ("password", "secret", "token")


def public_config(config: Config) -> dict[str, Any]:
    def dump(section: dict[str, Any]) -> dict[str, Any]:
        return {name: _mask(model.model_dump(mode="json")) for name, model in section.items()}

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
