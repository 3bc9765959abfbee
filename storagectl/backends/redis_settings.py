"""The settings of a ``redis`` backend: the pydantic model, apart from storagectl.backends.redis so
that module loads without pydantic (a config-cache hit hands the backend the plain form, see
storagectl.config.cache)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from storagectl.backends.redis import (
    CLUSTER_CHECKS,
    MAX_DB,
    REDIS_CHECKS,
    RedisSettingsMethods,
    is_cluster_url,
    seed_address,
    url_db,
)
from storagectl.config.models import BackendSettings, PasswordMixin
from storagectl.config.types import Port


class RedisSettings(RedisSettingsMethods, PasswordMixin, BackendSettings):
    kind: Literal["redis"] = "redis"
    url: str | None = None
    url_replaces: ClassVar[tuple[str, ...]] = ("host", "port", "db", "username")
    host: str = "localhost"
    port: Port = 6379
    db: int = Field(0, ge=0, le=MAX_DB)
    databases: list[Annotated[int, Field(ge=0, le=MAX_DB)]] | None = Field(
        None, description="dbs to back up (default: db)")
    username: str | None = None
    staging_db: int | None = Field(
        None, ge=0, le=MAX_DB,
        description="an empty db reserved for storagectl: restore --yes loads a single-db backup into it and "
        "SWAPDBs it with the target when complete, so a failed restore leaves the target as it was")
    cluster: bool = Field(False, description="a Redis Cluster: url, nodes or host/port are seeds from which "
                          "the topology is read; a redis+cluster:// url implies it")
    nodes: list[str] | None = Field(None, min_length=1, description="cluster seed nodes as host:port")
    read_from_replicas: bool = Field(
        False, description="a cluster: backup and inspect read each primary's slots from one of its replicas "
        "(connected, not failing; the primary when it has none); restore and its checks always use primaries")
    backup_method: Literal["auto", "rdb", "dump"] = Field(
        "auto", description="rdb: the server's snapshot read over the replication protocol (SYNC, as redis-cli "
        "--rdb; every db of the instance, one fork); dump: DUMP of every key (SCAN, no fork); auto: rdb where the "
        "server sends it without waiting (repl-diskless-sync-delay 0) and the backed-up dbs hold most keys, else "
        "dump. A cluster and a --pattern/--type selection always use dump")
    nat_map: dict[str, str] | None = Field(
        None, description="a cluster whose nodes announce addresses this host cannot reach (cluster-announce-ip/"
        "port behind Docker, Kubernetes, NAT): announced host:port -> the host:port to connect to instead")

    check_names: ClassVar[tuple[str, ...]] = (*REDIS_CHECKS, *CLUSTER_CHECKS)

    @field_validator("url")
    @classmethod
    def _valid_url(cls, url: str | None) -> str | None:
        if url is not None:
            url_db(url)
        return url

    @field_validator("databases")
    @classmethod
    def _distinct_databases(cls, databases: list[int] | None) -> list[int] | None:
        if databases is not None and len(set(databases)) != len(databases):
            raise ValueError("a db is listed twice")
        return databases

    @model_validator(mode="after")
    def _url_or_fields(self) -> RedisSettings:
        if self.url is None:
            return self
        self.refuse_fields_beside_url(urlsplit(self.url).password is not None)
        return self

    @field_validator("nodes")
    @classmethod
    def _valid_nodes(cls, nodes: list[str] | None) -> list[str] | None:
        for node in nodes or []:
            seed_address(node)
        return nodes

    @field_validator("nat_map")
    @classmethod
    def _valid_nat_map(cls, nat_map: dict[str, str] | None) -> dict[str, str] | None:
        for announced, reachable in (nat_map or {}).items():
            for text in (announced, reachable):
                try:
                    seed_address(text)
                except ValueError:
                    raise ValueError(f"nat_map entry {text!r} is not host:port (e.g. 10.0.0.5:6379)") from None
        return nat_map

    @model_validator(mode="after")
    def _cluster_shape(self) -> RedisSettings:
        """A cluster has one db (0) and no SWAPDB; its seeds come from exactly one of url, nodes, host/port."""
        by_url = self.url is not None and is_cluster_url(self.url)
        if by_url and "cluster" in self.model_fields_set and not self.cluster:
            raise ValueError("url is a redis+cluster:// url but cluster is false; drop one of them")
        if not self.is_cluster:
            if self.nodes is not None:
                raise ValueError("nodes lists cluster seeds: set cluster: true (or give url/host/port)")
            if self.read_from_replicas:
                raise ValueError("read_from_replicas applies to a Redis Cluster: set cluster: true or remove it")
            if self.nat_map is not None:
                raise ValueError("nat_map translates the addresses a Redis Cluster announces: set cluster: true "
                                 "or remove it")
            return self
        if self.url is not None and urlsplit(self.url).scheme.lower() == "unix":
            raise ValueError("a cluster is reached over TCP: use redis+cluster://host:port or nodes")
        if self.nodes is not None and (self.url is not None or {"host", "port"} & self.model_fields_set):
            raise ValueError("give the cluster seeds as either nodes or url/host/port, not both")
        if self.selected_databases() != [0]:
            raise ValueError("a Redis Cluster has only db 0: remove db/databases or the url's /N")
        if self.staging_db is not None:
            raise ValueError("staging_db needs SWAPDB, which a Redis Cluster does not have: remove it")
        if self.backup_method == "rdb":
            raise ValueError("a Redis Cluster is backed up key by key (backup_method dump): remove backup_method")
        return self

    @model_validator(mode="after")
    def _staging_db_is_spare(self) -> RedisSettings:
        if self.staging_db is not None and self.staging_db in self.selected_databases():
            raise ValueError(f"staging_db {self.staging_db} is one of the backend's own dbs; choose a spare db")
        return self
