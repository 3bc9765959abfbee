"""Where the config file is, its text, and looking up its named entries -- without YAML or pydantic:
the validated-config cache (storagectl.config.cache) reads the file through here and parses nothing
when it is unchanged."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from storagectl.errors import ConfigError, UnknownBackendError, UsageError

ENV_CONFIG = "STORAGECTL_CONFIG"
DEFAULT_FILE = "storagectl.yaml"
MAX_FILE_BYTES = 1024 * 1024
"""Largest config file read; the full example config is under 8 KiB."""
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|\$\$")
"""``${NAME}``, ``${NAME:-default}`` or ``$$`` (a literal ``$``) in a config value."""


def user_config_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("storagectl")) / DEFAULT_FILE


def find_config_path(explicit: Path | None) -> Path:
    """``-c`` if given, else ``$STORAGECTL_CONFIG``, else ``./storagectl.yaml``, else the user config dir."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(
                f"config file {explicit} does not exist",
                hint="Try: storagectl config init " + str(explicit),
            )
        return explicit
    from_env = os.environ.get(ENV_CONFIG)
    if from_env:
        path = Path(from_env)
        if not path.is_file():
            raise ConfigError(
                f"config file {path} (from ${ENV_CONFIG}) does not exist",
                hint=f"Try: unset {ENV_CONFIG}, or storagectl config init {path}",
            )
        return path
    candidates = [Path(DEFAULT_FILE), user_config_path()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise ConfigError(
        f"no config file found (looked for -c, ${ENV_CONFIG}, {looked})",
        hint="Try: storagectl config init, or pass -c PATH",
    )


def read_config_bytes(path: Path) -> bytes:
    """The file's bytes: at most :data:`MAX_FILE_BYTES`."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise config_error(f"{path}:1 the file is larger than {MAX_FILE_BYTES // 1024} KiB; is it the config file?")
    return data


def read_config_file(path: Path) -> str:
    """The file's text: at most :data:`MAX_FILE_BYTES` of UTF-8."""
    return decode_config(read_config_bytes(path), path)


def decode_config(data: bytes, path: Path) -> str:
    """The file's text; bytes that are not UTF-8 are a config error naming their line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise config_error(f"{path}:{line} the file is not UTF-8 text (byte 0x{data[exc.start]:02x} "
                           f"at column {column}); save it as UTF-8") from None


def one_line(text: str) -> str:
    """Control characters (a key written as "a\\nb", say) escaped, so each problem stays one line."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def config_error(problem: str) -> ConfigError:
    problem = one_line(problem)
    return ConfigError(problem, problems=[problem])


def lookup_entry(what: str, name: str, table: dict[str, Any]) -> Any:
    """``table[name]``, or an error naming the configured entries and the closest one."""
    if name in table:
        return table[name]
    from difflib import get_close_matches

    close = get_close_matches(name, list(table), n=1)
    known = ", ".join(table) or "none configured"
    suggestion = f" (did you mean {close[0]}?)" if close else ""
    error = UnknownBackendError if what == "backend" else UsageError
    raise error(
        f"unknown {what} {name!r}{suggestion}; configured: {known}",
        hint=f"Try: storagectl config show, or add a {what} named {name!r} to the config file",
    )


class NamedEntries:
    """Lookups by name over a config's sections, with the same errors wherever the config came from
    (validated now, or read back from the cache)."""

    backends: dict[str, Any]
    destinations: dict[str, Any]
    jobs: dict[str, Any]
    data_migrations: dict[str, Any]

    def backend(self, name: str) -> Any:
        return lookup_entry("backend", name, self.backends)

    def destination(self, name: str) -> Any:
        return lookup_entry("destination", name, self.destinations)

    def job(self, name: str) -> Any:
        return lookup_entry("job", name, self.jobs)

    def data_migration(self, name: str) -> Any:
        return lookup_entry("data migration", name, self.data_migrations)

    def ad_hoc_job(self, backend: str, destination: str) -> Any:
        """The settings of a backup outside any job (`backup run --backend B --to D`): a job's defaults."""
        from storagectl.config.models import JobSettings

        return JobSettings(backends=[backend], destination=destination)
