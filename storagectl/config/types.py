"""Value types used in the configuration: durations, byte sizes, paths relative to the file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, SecretStr, ValidationInfo

from storagectl.units import parse_byte_size, parse_duration


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
