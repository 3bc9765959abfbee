"""The settings of a ``postgres`` (or ``timescaledb``) backend: the pydantic model, apart from
storagectl.backends.postgres.backend so that module loads without pydantic (a config-cache hit hands
the backend the plain form, see storagectl.config.cache)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from storagectl.backends.postgres.backend import POSTGRES_CHECKS, PostgresSettingsMethods, Sslmode, url_conninfo
from storagectl.config.models import BackendSettings, PasswordMixin
from storagectl.config.types import ConfigPath, Port


class PostgresSettings(PostgresSettingsMethods, PasswordMixin, BackendSettings):
    """Either ``url`` or the ``host``/``port``/``database``/``user`` fields."""

    kind: Literal["postgres", "timescaledb"] = "postgres"
    url: str | None = None
    url_replaces: ClassVar[tuple[str, ...]] = ("host", "port", "database", "user")
    host: str = "localhost"
    port: Port = 5432
    database: str = "postgres"
    user: str = "postgres"
    application_name: str = "storagectl"
    sslmode: Sslmode | None = None
    migrations: ConfigPath | None = None
    maintenance_database: str = Field(
        "postgres", description="database to connect to while creating or renaming the backend's database "
        "(restore --yes over a non-empty database)")

    check_names: ClassVar[tuple[str, ...]] = tuple(POSTGRES_CHECKS)

    @field_validator("url")
    @classmethod
    def _valid_url(cls, url: str | None) -> str | None:
        if url is not None:
            url_conninfo(url)
        return url

    @model_validator(mode="after")
    def _url_or_fields(self) -> PostgresSettings:
        if self.url is None:
            return self
        self.refuse_fields_beside_url("password" in url_conninfo(self.url))
        return self
