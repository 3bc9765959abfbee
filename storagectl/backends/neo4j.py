"""Neo4j backend through the official driver (Bolt)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import field_validator

from storagectl.backends.base import Backend, classify_connection_error
from storagectl.config.models import BackendSettings, PasswordMixin
from storagectl.config.types import ConfigPath
from storagectl.config.urls import reject_query, require_host, split_url
from storagectl.errors import AuthenticationFailed, StoragectlError
from storagectl.health import Check, CheckSpec, Status
from storagectl.redact import redact_url

NEO4J_CHECKS = {
    spec.name: spec
    for spec in (
        CheckSpec("edition", "Neo4j edition"),
        CheckSpec("databases", "every database whose requested status is online is online"),
    )
}
_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")


class Neo4jSettings(PasswordMixin, BackendSettings):
    kind: Literal["neo4j"] = "neo4j"
    uri: str = "bolt://localhost:7687"
    user: str = "neo4j"
    database: str | None = None
    migrations: ConfigPath | None = None

    check_names: ClassVar[tuple[str, ...]] = tuple(NEO4J_CHECKS)

    @field_validator("uri")
    @classmethod
    def _valid_uri(cls, value: str) -> str:
        """The driver accepts ``bolt://h:notaport`` or ``bolt://h/db`` and fails (or ignores the
        path) only when connecting."""
        parts = split_url(value, _SCHEMES)
        require_host(parts)
        if parts.path not in ("", "/"):
            raise ValueError("has a path, which the driver ignores; choose the database with `database:`")
        if not parts.scheme.startswith("neo4j"):
            reject_query(parts, "only neo4j:// uris take routing parameters")
        return value


class Neo4jBackend(Backend):
    kind = "neo4j"
    Settings = Neo4jSettings
    CHECKS = NEO4J_CHECKS
    settings: Neo4jSettings
    replace_method = ("in place: the target's constraints, indexes and graph are deleted first, so a restore "
                      "that fails leaves it empty")

    def endpoint(self) -> str:
        return redact_url(self.settings.uri)

    def driver(self) -> Any:
        from neo4j import GraphDatabase

        s = self.settings
        auth = (s.user, s.password.get_secret_value()) if s.password is not None else None
        options: dict[str, Any] = {
            "connection_timeout": s.timeouts.connect,
            "max_connection_pool_size": s.pool.max_size,
            "connection_acquisition_timeout": s.pool.acquisition_timeout,
            "max_transaction_retry_time": s.retry.max * s.retry.attempts,
        }
        if "+" not in urlsplit(s.uri).scheme and s.tls.enabled:
            options["encrypted"] = True
        return GraphDatabase.driver(s.uri, auth=auth, **options)

    def _open(self) -> Any:
        driver = self.driver()
        try:
            driver.verify_connectivity()
        except Exception:
            driver.close()
            raise
        return driver

    def _close(self, connection: Any) -> None:
        connection.close()

    def translate_error(self, exc: BaseException) -> StoragectlError:
        from neo4j.exceptions import AuthError

        if isinstance(exc, AuthError):
            return AuthenticationFailed(
                f"{self.label}: authentication failed for user {self.settings.user!r}",
                hint="Try: check user and password / password_file in the config",
            )
        return classify_connection_error(self, exc)

    def session(self, driver: Any, database: str | None = None) -> Any:
        return driver.session(database=database or self.settings.database)

    def ping(self, connection: Any) -> None:
        with self.session(connection) as session:
            session.run("RETURN 1").consume()

    def server_version(self, connection: Any) -> str:
        return connection.get_server_info().agent

    def diagnose(self, connection: Any) -> list[Check]:
        with self.session(connection) as session:
            components = session.run(
                "CALL dbms.components() YIELD name, versions, edition RETURN name, versions, edition"
            ).data()
        edition = components[0]["edition"] if components else "unknown"
        return [self.info("edition", edition), self._database_states(connection)]

    def _database_states(self, connection: Any) -> Check:
        with connection.session(database="system") as session:
            rows = session.run(
                "SHOW DATABASES YIELD name, currentStatus, requestedStatus "
                "RETURN name, currentStatus, requestedStatus"
            ).data()
        wrong = [r for r in rows if r["requestedStatus"] == "online" and r["currentStatus"] != "online"]
        states = {r["name"]: r["currentStatus"] for r in rows}
        display = ", ".join(f"{name}: {state}" for name, state in states.items())
        if wrong:
            detail = ", ".join(f"{r['name']} is {r['currentStatus']}" for r in wrong)
            return Check("databases", Status.CRITICAL, states, display, detail)
        return Check("databases", Status.OK, states, display)

    # -- backup / restore (storagectl.archive.api.BackupCapable; engine in neo4j_archive) ----
    def backup(self, archive: Any, options: Any) -> None:
        from storagectl.backends.neo4j_archive import backup_graph

        backup_graph(self, archive)

    def restore(self, archive: Any, options: Any) -> Any:
        from storagectl.backends.neo4j_archive import restore_graph

        return restore_graph(self, archive, options.replace_existing)

    def is_empty(self) -> bool:
        from storagectl.backends.neo4j_archive import graph_is_empty

        with self.connect() as driver:
            return graph_is_empty(self, driver)

    def content_summary(self, like: Any = None) -> Any:
        from storagectl.backends.neo4j_archive import graph_summary

        with self.connect() as driver:
            return graph_summary(self, driver)
