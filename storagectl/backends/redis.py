"""Redis backend (redis-py)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from storagectl.backends.base import Backend, classify_connection_error
from storagectl.backends.postgres import _human_bytes
from storagectl.config.models import BackendSettings, PasswordMixin
from storagectl.diag import Check, CheckSpec, Status
from storagectl.errors import AuthenticationFailed, StoragectlError
from storagectl.redact import redact_url

REDIS_CHECKS = {
    spec.name: spec
    for spec in (
        CheckSpec("memory_used_pct", "used_memory vs maxmemory", 80, 95, unit="%"),
        CheckSpec("evicted_keys", "keys evicted since the server started", 1, None),
        CheckSpec("keyspace_hit_ratio", "keyspace hits / lookups", 50, None, higher_is_worse=False, unit="%"),
        CheckSpec("connected_clients_pct", "connected clients vs maxclients", 80, 95, unit="%"),
        CheckSpec("blocked_clients", "clients blocked on BLPOP etc.", 50, None),
        CheckSpec("persistence", "last RDB save / AOF write status"),
    )
}


class RedisSettings(PasswordMixin, BackendSettings):
    kind: Literal["redis"] = "redis"
    url: str | None = None
    host: str = "localhost"
    port: int = 6379
    db: int = Field(0, ge=0)
    databases: list[int] | None = Field(None, description="dbs to back up (default: db)")
    username: str | None = None

    check_names: ClassVar[tuple[str, ...]] = tuple(REDIS_CHECKS)

    @model_validator(mode="after")
    def _url_or_fields(self) -> RedisSettings:
        if self.url is None:
            return self
        clash = sorted({"host", "port", "db", "username"} & self.model_fields_set)
        if clash:
            raise ValueError(f"give either url or {', '.join(clash)}, not both")
        if urlsplit(self.url).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("url must start with redis://, rediss:// or unix://")
        return self

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for redis.Redis, secrets included: never print these."""
        kwargs: dict[str, Any] = {
            "socket_connect_timeout": self.timeouts.connect,
            "socket_timeout": self.timeouts.statement or max(self.timeouts.connect, 30.0),
            "max_connections": self.pool.max_size,
        }
        if self.url is None:
            kwargs.update(host=self.host, port=self.port, db=self.db, username=self.username)
        if self.password is not None:
            kwargs["password"] = self.password.get_secret_value()
        if self.tls.enabled:
            kwargs.update(ssl=True, ssl_cert_reqs="required" if self.tls.verify else "none",
                          ssl_ca_certs=_str(self.tls.ca_file), ssl_certfile=_str(self.tls.cert_file),
                          ssl_keyfile=_str(self.tls.key_file))
        return kwargs


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


class RedisBackend(Backend):
    kind = "redis"
    Settings = RedisSettings
    CHECKS = REDIS_CHECKS
    settings: RedisSettings

    def endpoint(self) -> str:
        if self.settings.url:
            return redact_url(self.settings.url)
        s = self.settings
        return f"redis://{s.host}:{s.port}/{s.db}"

    def client(self, db: int | None = None, socket_timeout: float | None = None) -> Any:
        """A client; storagectl's own retry policy applies, so redis-py's built-in retry is off."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        kwargs = self.settings.client_kwargs()
        kwargs["retry"] = Retry(NoBackoff(), 0)
        if db is not None:
            kwargs["db"] = db
        if socket_timeout is not None:
            kwargs["socket_timeout"] = socket_timeout
        if self.settings.url:
            return redis.Redis.from_url(self.settings.url, **kwargs)
        return redis.Redis(**kwargs)

    def _open(self) -> Any:
        # The handshake (AUTH, SELECT, PING) must finish within the connect timeout; a server that
        # accepts TCP but never answers would otherwise hang for the whole statement timeout.
        probe = self.client(socket_timeout=self.settings.timeouts.connect)
        try:
            probe.ping()
        finally:
            probe.close()
        return self.client()

    def _close(self, connection: Any) -> None:
        connection.close()

    def translate_error(self, exc: BaseException) -> StoragectlError:
        import redis

        text = str(exc)
        if isinstance(exc, redis.AuthenticationError) or any(
            marker in text for marker in ("WRONGPASS", "NOAUTH", "invalid password", "invalid username")
        ):
            return AuthenticationFailed(
                f"{self.label}: authentication failed",
                hint="Try: check username and password / password_file in the config",
            )
        return classify_connection_error(self, exc)

    def ping(self, connection: Any) -> None:
        connection.ping()

    def server_version(self, connection: Any) -> str:
        return str(connection.info("server")["redis_version"])

    def diagnose(self, connection: Any) -> list[Check]:
        info = connection.info("all")
        maxclients = int(connection.config_get("maxclients").get("maxclients", 0) or 0)
        return [
            self._memory(info),
            self.graded("evicted_keys", info.get("evicted_keys", 0), str(info.get("evicted_keys", 0))),
            self._hit_ratio(info),
            self._clients(info, maxclients),
            self.graded("blocked_clients", info.get("blocked_clients", 0), str(info.get("blocked_clients", 0))),
            self._persistence(info),
        ]

    def _memory(self, info: dict[str, Any]) -> Check:
        used, limit = info.get("used_memory", 0), info.get("maxmemory", 0)
        if not limit:
            return self.info("memory_used_pct", None, f"{_human_bytes(used)} (no maxmemory)",
                             "set maxmemory to bound memory use")
        pct = round(100.0 * used / limit, 1)
        return self.graded("memory_used_pct", pct, f"{_human_bytes(used)}/{_human_bytes(limit)} ({pct:g}%)")

    def _hit_ratio(self, info: dict[str, Any]) -> Check:
        hits, misses = info.get("keyspace_hits", 0), info.get("keyspace_misses", 0)
        ratio = 100.0 if hits + misses == 0 else round(100.0 * hits / (hits + misses), 2)
        return self.graded("keyspace_hit_ratio", ratio, f"{ratio:g}%", f"{hits} hits, {misses} misses")

    def _clients(self, info: dict[str, Any], maxclients: int) -> Check:
        clients = info.get("connected_clients", 0)
        if not maxclients:
            return self.info("connected_clients_pct", None, str(clients))
        pct = round(100.0 * clients / maxclients, 1)
        return self.graded("connected_clients_pct", pct, f"{clients}/{maxclients} ({pct:g}%)")

    def _persistence(self, info: dict[str, Any]) -> Check:
        rdb = info.get("rdb_last_bgsave_status", "ok")
        aof = info.get("aof_last_write_status", "ok") if info.get("aof_enabled") else "off"
        failed = rdb != "ok" or aof not in ("ok", "off")
        return Check("persistence", Status.CRITICAL if failed else Status.OK, {"rdb": rdb, "aof": aof},
                     f"rdb {rdb}, aof {aof}", "last background save or AOF write failed" if failed else "")
