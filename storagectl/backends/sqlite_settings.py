"""The settings of a ``sqlite`` backend: the pydantic model, apart from storagectl.backends.sqlite so
that module loads without pydantic (a config-cache hit hands the backend the plain form, see
storagectl.config.cache)."""

from __future__ import annotations

from typing import ClassVar, Literal

from storagectl.backends.sqlite import SQLITE_CHECKS, SQLiteSettingsMethods
from storagectl.config.models import BackendSettings
from storagectl.config.types import ConfigPath


class SQLiteSettings(SQLiteSettingsMethods, BackendSettings):
    kind: Literal["sqlite"] = "sqlite"
    path: ConfigPath
    create_if_missing: bool = False
    migrations: ConfigPath | None = None

    check_names: ClassVar[tuple[str, ...]] = tuple(SQLITE_CHECKS)
