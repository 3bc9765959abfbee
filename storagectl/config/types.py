"""Value types used in the configuration: durations, byte sizes, paths relative to the file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, SecretStr, ValidationInfo

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|d|w)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1024, "ki": 1024,
    "m": 1000**2, "mb": 1000**2, "mib": 1024**2, "mi": 1024**2,
    "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "gi": 1024**3,
    "t": 1000**4, "tb": 1000**4, "tib": 1024**4, "ti": 1024**4,
}


MAX_DURATION = 100 * 365.25 * 86400  # seconds: far beyond any timeout or retention, and safe for time_t
MAX_BYTE_SIZE = 1024**5


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like ``500ms``, ``30s``, ``5m``, ``2h``, ``30d``, ``1w``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m, 2h or 30d")
    try:
        if isinstance(value, int | float):
            seconds = float(value)
        else:
            match = _DURATION.match(str(value))
            if not match:
                raise ValueError(f"{value!r} is not a duration; use a number of seconds or 500ms, 30s, 5m, 2h, 30d, 1w")
            seconds = float(match[1]) * _DURATION_UNITS[match[2]]
    except OverflowError:
        seconds = float("inf")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if not seconds <= MAX_DURATION:  # also NaN and .inf
        raise ValueError("a duration must be finite and at most 100 years")
    return seconds


def parse_byte_size(value: Any) -> int:
    """Bytes from a number or a string like ``64MiB``, ``8MB``, ``512k``."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 64MiB")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a size; use bytes or 512KiB, 64MiB, 1GiB")
        size_float = float(match[1]) * _SIZE_UNITS[(match[2] or "").lower()]
        if not size_float <= MAX_BYTE_SIZE:
            raise ValueError("a size must be at most 1 PiB")
        size = int(size_float)
    if size < 0:
        raise ValueError("a size cannot be negative")
    if size > MAX_BYTE_SIZE:
        raise ValueError("a size must be at most 1 PiB")
    return size


def _relative_to_config(path: Path, info: ValidationInfo) -> Path:
    path = path.expanduser()
    base = (info.context or {}).get("base_dir")
    if base is not None and not path.is_absolute():
        path = Path(base) / path
    return path


Duration = Annotated[float, BeforeValidator(parse_duration)]
ByteSize = Annotated[int, BeforeValidator(parse_byte_size)]
Port = Annotated[int, Field(ge=1, le=65535)]
"""A TCP port."""
ConfigPath = Annotated[Path, AfterValidator(_relative_to_config)]
"""A path; relative paths are taken relative to the directory of the config file."""

Secret = Annotated[SecretStr, PlainSerializer(lambda s: "***", return_type=str, when_used="always")]
"""A secret: never printed; ``model_dump`` gives ``***``. Use ``.get_secret_value()`` to read it."""


def read_secret_file(path: Path) -> SecretStr:
    """The contents of a ``password_file``, without the trailing newline."""
    try:
        return SecretStr(path.read_text(encoding="utf-8").rstrip("\r\n"))
    except OSError as exc:
        raise ValueError(f"cannot read password_file {path}: {exc.strerror or exc}") from None
