"""Typed configuration objects. Parsed once by :mod:`storagectl.config.loader` and passed explicitly.

Backend and destination settings are polymorphic: each kind's module defines its own ``Settings``
subclass of :class:`BackendSettings` / :class:`DestinationSettings` and the loader validates each
entry against the class registered for its ``kind``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from storagectl.config.methods import (
    PARTIAL_AFTER_DEFAULT,
    JobSettingsMethods,
    SelectSettingsMethods,
    default_parallel,
)
from storagectl.config.source import NamedEntries
from storagectl.config.types import ConfigPath, Duration, Secret, read_secret_file
from storagectl.config.urls import check_http_url

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
_NAME = re.compile(NAME_PATTERN)


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo must never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class PoolSettings(StrictModel):
    max_size: int = Field(5, ge=1, le=10_000, description="Most connections open at once.")
    min_idle: int = Field(0, ge=0, le=10_000, description="Connections kept open while idle.")
    idle_timeout: Duration = Field(300.0, description="Close a connection idle this long.")
    acquisition_timeout: Duration = Field(10.0, description="Wait this long for a free connection.")

    @model_validator(mode="after")
    def _min_le_max(self) -> PoolSettings:
        if self.min_idle > self.max_size:
            raise ValueError(f"min_idle ({self.min_idle}) cannot exceed max_size ({self.max_size})")
        return self


class RetrySettings(StrictModel):
    """Exponential backoff for transient errors (connection refused, timeouts, throttling)."""

    attempts: int = Field(3, ge=1, le=100, description="Tries in all, the first included.")
    initial: Duration = Field(0.2, description="Wait before the second try; doubles each time.")
    max: Duration = Field(5.0, description="Longest single wait.")


class TimeoutSettings(StrictModel):
    connect: Duration = Field(5.0, gt=0, description="Give up connecting after this long.")
    statement: Duration | None = Field(None, description="Cancel one statement/command after this long.")


class TLSSettings(StrictModel):
    enabled: bool = False
    verify: bool = Field(True, description="Verify the server certificate and host name.")
    ca_file: ConfigPath | None = None
    cert_file: ConfigPath | None = None
    key_file: ConfigPath | None = None


class Threshold(StrictModel):
    warning: float
    critical: float


class BackendSettings(StrictModel):
    """Settings every backend kind shares. Kinds subclass this and add their own fields."""

    kind: str
    description: str = ""
    production: bool = Field(False, description="Serves production: `storagectl bench` refuses it without --yes.")
    pool: PoolSettings = PoolSettings()
    retry: RetrySettings = RetrySettings()
    timeouts: TimeoutSettings = TimeoutSettings()
    tls: TLSSettings = TLSSettings()
    thresholds: dict[str, Threshold] = Field(
        default_factory=dict, description="diag thresholds overriding the kind's defaults."
    )

    # Names of the diag checks this kind knows; used to validate ``thresholds`` keys.
    check_names: ClassVar[tuple[str, ...]] = ()
    # Fields a ``url`` gives (kinds that take one): never set beside it, not shown beside it (config show)
    url_replaces: ClassVar[tuple[str, ...]] = ()

    def refuse_fields_beside_url(self, url_has_password: bool) -> None:
        """A validator's check for kinds with a ``url``: the fields it gives are not also set, and a
        password in it is not given again by ``password``/``password_file``."""
        clash = sorted(set(self.url_replaces) & self.model_fields_set)
        if clash:
            raise ValueError(f"give either url or {', '.join(clash)}, not both")
        if url_has_password and getattr(self, "password", None) is not None:
            raise ValueError("url has a password and password/password_file gives another; give one")

    @field_validator("thresholds")
    @classmethod
    def _known_checks(cls, value: dict[str, Threshold]) -> dict[str, Threshold]:
        unknown = sorted(set(value) - set(cls.check_names))
        if unknown:
            known = ", ".join(cls.check_names) or "none"
            raise ValueError(f"unknown diag check {', '.join(unknown)} (known: {known})")
        return value


class PasswordMixin(BaseModel):
    """``password`` inline (usually ``${VAR}``) or ``password_file`` read at load time."""

    password: Secret | None = None
    password_file: ConfigPath | None = None

    @field_validator("password_file")
    @classmethod
    def _readable(cls, path: Path | None) -> Path | None:
        if path is not None:
            read_secret_file(path)
        return path

    @model_validator(mode="after")
    def _read_password_file(self) -> Any:
        if self.password_file is not None:
            if self.password is not None:
                raise ValueError("give either password or password_file, not both")
            object.__setattr__(self, "password", read_secret_file(self.password_file))
        return self


class DestinationSettings(StrictModel):
    """Settings every destination kind shares."""

    kind: str
    description: str = ""
    retry: RetrySettings = RetrySettings()


class RetentionPolicy(StrictModel):
    """What to keep; semantics of restic's ``forget`` (see README "Retention")."""

    keep_last: int | None = Field(None, ge=1)
    keep_hourly: int | None = Field(None, ge=1)
    keep_daily: int | None = Field(None, ge=1)
    keep_weekly: int | None = Field(None, ge=1)
    keep_monthly: int | None = Field(None, ge=1)
    keep_yearly: int | None = Field(None, ge=1)
    keep_within: Duration | None = Field(None, gt=0)
    partial_after: Duration = Field(
        PARTIAL_AFTER_DEFAULT, description="Remove backups without a manifest older than this."
    )

    @model_validator(mode="after")
    def _keeps_something(self) -> RetentionPolicy:
        rules = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly",
                 "keep_yearly", "keep_within")
        if all(getattr(self, rule) is None for rule in rules):
            raise ValueError(
                "retention keeps nothing; set at least one of " + ", ".join(rules)
            )
        return self


class CompressionSettings(StrictModel):
    codec: Literal["brotli", "none"] = "brotli"
    level: int = Field(1, ge=0, le=11, description="brotli quality, 0 (fast) to 11 (small); 1 measured best.")


class EncryptionSettings(StrictModel):
    """age encryption: backups are encrypted to ``recipients``; restore needs ``identity_file``."""

    recipients: list[str] = Field(min_length=1)
    identity_file: ConfigPath | None = None

    @field_validator("recipients")
    @classmethod
    def _valid_recipients(cls, value: list[str]) -> list[str]:
        """A mistyped key must fail `config validate`, not the first scheduled backup."""
        from storagectl.archive.keys import parse_recipients
        from storagectl.errors import UsageError

        try:
            parse_recipients(value)
        except UsageError as exc:
            raise ValueError(f"{exc.message}; use an age1... public key (age-keygen -y KEYFILE) or an ssh-ed25519 key"
                             ) from None
        return value


class LockSettings(StrictModel):
    backend: str | None = Field(None, description="A redis backend for a lock shared by replicas.")
    ttl: Duration = Field(60.0, gt=0, description="Lock lease; renewed while the job runs.")


class SelectSettings(SelectSettingsMethods, StrictModel):
    """A job's selective backup (``select:``); every list is optional, see storagectl.selection."""

    tables: list[str] = Field(default_factory=list, description="PostgreSQL/SQLite: tables (glob).")
    schemas: list[str] = Field(default_factory=list, description="PostgreSQL: schemas (glob).")
    exclude_tables: list[str] = Field(default_factory=list, description="PostgreSQL: tables left out.")
    patterns: list[str] = Field(default_factory=list, description="Redis: key patterns (SCAN MATCH glob).")
    types: list[str] = Field(default_factory=list, description="Redis: key types (string, list, set, ...).")
    labels: list[str] = Field(default_factory=list, description="Neo4j: node labels.")

    @field_validator("types")
    @classmethod
    def _redis_types(cls, value: list[str]) -> list[str]:
        from storagectl.selection import REDIS_TYPES

        unknown = [kind for kind in value if kind not in REDIS_TYPES]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a Redis type; valid: {', '.join(REDIS_TYPES)}")
        return value

    @model_validator(mode="after")
    def _selects_something(self) -> SelectSettings:
        if not any(getattr(self, name) for name in type(self).model_fields):
            raise ValueError("select is empty; give tables, schemas, exclude_tables, patterns, types or labels, "
                             "or remove it for a full backup")
        return self


class JobSettings(JobSettingsMethods, StrictModel):
    backends: list[str] = Field(min_length=1)
    destination: str
    schedule: str | None = None
    timezone: str = "UTC"
    catchup: bool = False
    retention: RetentionPolicy | None = None
    compression: CompressionSettings = CompressionSettings()
    encryption: EncryptionSettings | None = None
    parallel: int = Field(default_factory=default_parallel, ge=1, le=64,
                          description="Tables/objects processed at once (default: 4, at most the CPU count).")
    lock: LockSettings | None = None
    metrics_file: ConfigPath | None = None
    on_success: str | None = None
    on_failure: str | None = None
    select: SelectSettings | None = Field(None, description="Back up only these tables/keys/labels (a partial "
                                          "backup); unset: everything.")

    @field_validator("schedule")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from storagectl.cron import validate_cron

        return validate_cron(value)

    @field_validator("on_success", "on_failure")
    @classmethod
    def _valid_hook_url(cls, value: str | None) -> str | None:
        if value is not None and value.lower().startswith(("http://", "https://")):
            check_http_url(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}; use an IANA name such as Europe/Berlin") from None
        return value


class ToolsSettings(StrictModel):
    pg_bin_dir: ConfigPath | None = Field(
        None, description="Directory of the PostgreSQL client tools (pg_dump) backups use; unset: the one "
        "matching the server found on PATH or in the usual install locations.")


class ColumnMapSettings(StrictModel):
    """One target column of a reshaped table: from a source column (renamed) or a SQL expression
    evaluated on the source, optionally cast to a target type."""

    name: str = Field(min_length=1, description="The target column.")
    source: str | None = Field(None, min_length=1, description="The source column (default: the same name).")
    expression: str | None = Field(None, min_length=1, description="A SQL expression evaluated on the source.")
    cast: str | None = Field(None, min_length=1, description="The target column's type.")

    @model_validator(mode="after")
    def _one_origin(self) -> ColumnMapSettings:
        if self.source is not None and self.expression is not None:
            raise ValueError("give either source or expression, not both")
        return self


class TableMapSettings(StrictModel):
    """One moved table: renamed, reshaped (``columns``) or with columns renamed (``renames``)."""

    source: str = Field(min_length=1)
    target: str | None = Field(None, min_length=1, description="The target table (default: the same name).")
    columns: list[ColumnMapSettings] = Field(default_factory=list,
                                             description="Exactly these target columns (default: all, same names).")
    renames: dict[str, str] = Field(default_factory=dict, description="source column: target column.")
    time_column: str | None = Field(None, description="TimescaleDB target: a hypertable on this column.")

    @model_validator(mode="after")
    def _columns_or_renames(self) -> TableMapSettings:
        if self.columns and self.renames:
            raise ValueError("give either columns or renames, not both (a column's source renames it)")
        return self


def duplicate_sources(tables: list[Any]) -> list[str]:
    """Source tables named by more than one entry of a ``tables:`` list (a name or a mapping)."""
    sources = [entry if isinstance(entry, str) else entry.source for entry in tables]
    return sorted({name for name in sources if sources.count(name) > 1})


def one_entry_per_source(tables: list[Any]) -> list[Any]:
    if duplicates := duplicate_sources(tables):
        raise ValueError(f"table {', '.join(map(repr, duplicates))} listed more than once: give each source "
                         "table one entry")
    return tables


class DataMigrationSettings(StrictModel):
    """A named data move, runnable as ``storagectl migrate data run NAME``."""

    source: str
    target: str
    tables: list[TableMapSettings | str] = Field(default_factory=list,
                                                 description="Table names or mappings (default: every table).")
    exclude: list[str] = Field(default_factory=list)
    batch_rows: int = Field(50_000, ge=1, le=10_000_000, description="Rows per committed chunk.")
    parallel: int = Field(1, ge=1, le=64, description="Chunks copied at the same time.")
    on_error: Literal["stop", "skip"] = "stop"

    @field_validator("tables")
    @classmethod
    def _one_entry_per_source(cls, tables: list[TableMapSettings | str]) -> list[TableMapSettings | str]:
        return one_entry_per_source(tables)


@dataclass(frozen=True)
class Config(NamedEntries):
    """The whole validated configuration."""

    path: Path | None
    backends: dict[str, BackendSettings] = field(default_factory=dict)
    destinations: dict[str, DestinationSettings] = field(default_factory=dict)
    jobs: dict[str, JobSettings] = field(default_factory=dict)
    tools: ToolsSettings = field(default_factory=ToolsSettings)
    data_migrations: dict[str, DataMigrationSettings] = field(default_factory=dict)


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))
