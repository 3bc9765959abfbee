"""PostgreSQL backend (psycopg 3). TimescaleDB builds on it in :mod:`~storagectl.backends.postgres.timescaledb`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any, Literal, get_args
from urllib.parse import urlsplit

from storagectl.archive.progress import Estimate
from storagectl.backends.base import Backend, classify_connection_error
from storagectl.config.methods import SettingsModel
from storagectl.config.urls import check_port_text, check_scheme, parse_postgres_url
from storagectl.errors import AuthenticationFailed, NotFound, StoragectlError
from storagectl.health import Check, CheckSpec
from storagectl.redact import redact_text, redact_url
from storagectl.units import human_bytes

if TYPE_CHECKING:
    from storagectl.archive.api import (
        ArchiveReader,
        ArchiveWriter,
        BackupOptions,
        ContentSummary,
        RestoreOptions,
        RestoreOutcome,
    )
    from storagectl.backends.postgres.settings import PostgresSettings

GiB = 1024**3

POSTGRES_CHECKS = {
    spec.name: spec
    for spec in (
        CheckSpec("connections_used_pct", "connections in use vs max_connections", 80, 95, unit="%"),
        CheckSpec("database_size", "size of the database", None, None, unit="bytes"),
        CheckSpec("cache_hit_ratio", "buffer cache hit ratio", 90, 80, higher_is_worse=False, unit="%"),
        CheckSpec("oldest_transaction_age", "age of the oldest open transaction", 300, 3600, unit="s"),
        CheckSpec("idle_in_transaction", "sessions idle in transaction", 5, 20),
        CheckSpec("wraparound_age", "transaction IDs since the oldest frozen XID", 1.0e9, 1.5e9),
        CheckSpec("timescaledb", "TimescaleDB extension version", None, None),
    )
}


Sslmode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
SSLMODES = get_args(Sslmode)


# age() answers INT_MAX (2147483647) for a special XID: Invalid (0, e.g. every database of PGlite
# but template1) or Frozen (2) has nothing left to wrap around, so only normal XIDs (>= 3) count.
WRAPAROUND_AGE_SQL = ("SELECT coalesce(max(age(datfrozenxid)) FILTER (WHERE datfrozenxid::text::bigint >= 3), 0) "
                      "FROM pg_database")


class PostgresSettingsMethods:
    """What callers ask of a backend's settings beyond its fields: one code for the pydantic model
    (storagectl.backends.postgres.settings) and its plain form read back from the config cache."""

    if TYPE_CHECKING:  # the model's fields; not annotations at run time, which pydantic would read
        url: str | None
        host: str
        port: int
        database: str
        user: str
        password: Any
        application_name: str
        sslmode: str | None
        timeouts: Any
        tls: Any

    def conninfo_params(self, database: str | None = None) -> dict[str, Any]:
        """libpq connection parameters (to ``database`` instead of the configured one, if given),
        secrets included: never print these."""
        from psycopg.conninfo import conninfo_to_dict

        params: dict[str, Any] = conninfo_to_dict(self.url) if self.url else {
            "host": self.host, "port": self.port, "dbname": self.database, "user": self.user,
        }
        if database is not None:
            params["dbname"] = database
        if self.password is not None:
            params["password"] = self.password.get_secret_value()
        params["connect_timeout"] = max(2, round(self.timeouts.connect))
        params.setdefault("application_name", self.application_name)
        if self.timeouts.statement:
            params["options"] = f"-c statement_timeout={int(self.timeouts.statement * 1000)}"
        params.update(self._tls_params())
        return params

    def _tls_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.sslmode:
            params["sslmode"] = self.sslmode
        elif self.tls.enabled:
            params["sslmode"] = "verify-full" if self.tls.verify else "require"
        for key, path in (("sslrootcert", self.tls.ca_file), ("sslcert", self.tls.cert_file),
                          ("sslkey", self.tls.key_file)):
            if path is not None:
                params[key] = str(path)
        return params

    def sqlalchemy_url(self) -> Any:
        """A SQLAlchemy URL for the psycopg 3 dialect. A host list (``postgresql://h1:5432,h2:5433/db``,
        libpq's failover) goes in the query as ``host=h1,h2&port=5432,5433``, the dialect's multi-host
        form: a URL holds one host and one integer port."""
        from sqlalchemy.engine import URL

        params = self.conninfo_params()
        query = {k: str(v) for k, v in params.items()
                 if k not in ("host", "port", "dbname", "user", "password")}
        host, port = params.get("host"), str(params.get("port") or "")
        if host and ("," in host or "," in port):
            hosts = host.split(",")
            ports = port.split(",") if "," in port else [port] * len(hosts)  # libpq: one port for every host
            query.update(host=",".join(hosts), port=",".join(ports))
            host, port = None, ""
        return URL.create(
            "postgresql+psycopg", username=params.get("user"), password=params.get("password"),
            host=host, port=int(port) if port else None, database=params.get("dbname"), query=query,
        )


def url_conninfo(url: str) -> dict[str, str]:
    """libpq's reading of a PostgreSQL URL, or ValueError for what libpq would refuse only when
    connecting (a port ``notaport``, 0 or 70000, an unknown sslmode): that must fail validation.
    Plain URLs are read without loading psycopg (config validation is on every command's path);
    anything else is libpq's to read or refuse, in its words."""
    check_scheme(url, ("postgresql", "postgres"))
    params = parse_postgres_url(url)
    if params is None:
        params = _libpq_url_conninfo(url)
    for port in str(params.get("port", "")).split(","):
        if port:  # an empty entry of a multi-host list means the default port
            check_port_text(port)
    if params.get("sslmode", "disable") not in SSLMODES:
        raise ValueError(f"sslmode in the url must be one of {', '.join(SSLMODES)}")
    return params


def _libpq_url_conninfo(url: str) -> dict[str, str]:
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(url)
    except ProgrammingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "syntax error"
        raise ValueError(f"cannot be parsed: {redact_text(reason, _url_secrets(url))}") from None


def _url_secrets(url: str) -> list[str]:
    """What a libpq message about ``url`` could quote of its password, to mask."""
    userinfo = url.partition("://")[2].rpartition("@")[0]
    return [part for part in (userinfo, userinfo.partition(":")[2]) if part]


class PostgresBackend(Backend):
    kind = "postgres"
    Settings = SettingsModel("storagectl.backends.postgres.settings:PostgresSettings")
    CHECKS = POSTGRES_CHECKS
    settings: PostgresSettings

    def endpoint(self) -> str:
        if self.settings.url:
            return redact_url(self.settings.url)
        s = self.settings
        return f"postgresql://{s.user}@{s.host}:{s.port}/{s.database}"

    database_override: str | None = None  # set by for_database() or learnt by current_database()

    def current_database(self) -> str:
        """The database this backend connects to, as the server names it (the config may leave it to
        libpq defaults: PGDATABASE, a service file, the user name)."""
        if self.database_override is None:
            with self.connect() as conn:
                self.database_override = conn.execute("SELECT current_database()").fetchone()[0]
        return self.database_override

    def for_database(self, database: str) -> PostgresBackend:
        """The same backend (credentials, timeouts, retries) on another database of the server."""
        clone = type(self)(self.name, self.settings)
        clone.database_override = database
        return clone

    def _open(self) -> Any:
        import psycopg

        return psycopg.connect(**self.settings.conninfo_params(self.database_override), autocommit=True)

    @contextmanager
    def connect_admin(self) -> Iterator[Any]:
        """A connection to the maintenance database, for CREATE/ALTER/DROP DATABASE of this one."""
        maintenance = self.settings.maintenance_database
        if maintenance == self.current_database():
            maintenance = "template1"
        with ExitStack() as stack:
            try:
                connection = stack.enter_context(self.for_database(maintenance).connect())
            except NotFound as exc:
                raise NotFound(f"{self.label}: the maintenance database {maintenance!r} does not exist",
                               hint="Try: set maintenance_database to a database the role can connect to") from exc
            yield connection

    def _close(self, connection: Any) -> None:
        connection.close()

    def translate_error(self, exc: BaseException) -> StoragectlError:
        state = getattr(exc, "sqlstate", None)
        text = str(exc)
        if state in ("28P01", "28000") or "password authentication failed" in text:
            return AuthenticationFailed(
                f"{self.label}: authentication failed for user {self._user()!r}",
                hint="Try: check user and password / password_file in the config",
            )
        if 'role "' in text and "does not exist" in text:  # a connection's error has no SQLSTATE in psycopg
            return AuthenticationFailed(f"{self.label}: role {self._user()!r} does not exist on the server",
                                        hint="Try: check user (or the URL's user) in the config")
        if state == "3D000" or ("database" in text and "does not exist" in text):
            return NotFound(
                f"{self.label}: database does not exist",
                hint="Try: check database in the config, or create it",
            )
        return classify_connection_error(self, exc)

    def _user(self) -> str:
        if self.settings.url:
            return urlsplit(self.settings.url).username or "postgres"
        return self.settings.user

    def ping(self, connection: Any) -> None:
        connection.execute("SELECT 1").fetchone()

    def server_version(self, connection: Any) -> str:
        return connection.execute("SHOW server_version").fetchone()[0]

    def query_one(self, connection: Any, sql: str) -> tuple:
        return connection.execute(sql).fetchone()

    def diagnose(self, connection: Any) -> list[Check]:
        q = lambda sql: self.query_one(connection, sql)  # noqa: E731
        used, limit = q(
            "SELECT count(*), current_setting('max_connections')::int FROM pg_stat_activity"
        )
        size = q("SELECT pg_database_size(current_database())")[0]
        hit, read = q(
            "SELECT coalesce(blks_hit, 0), coalesce(blks_read, 0) FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        ratio = 100.0 if hit + read == 0 else round(100.0 * hit / (hit + read), 2)
        oldest = q(
            "SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0)::float "
            "FROM pg_stat_activity WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()"
        )[0]
        idle_tx = q(
            "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'"
        )[0]
        wrap = q(WRAPAROUND_AGE_SQL)[0]
        used_pct = round(100.0 * used / limit, 1)
        return [
            self.graded("connections_used_pct", used_pct, f"{used}/{limit} ({used_pct:g}%)"),
            self.graded("database_size", size, human_bytes(size)),
            self.graded("cache_hit_ratio", ratio, f"{ratio:g}%"),
            self.graded("oldest_transaction_age", round(oldest, 1), f"{oldest:.0f}s"),
            self.graded("idle_in_transaction", idle_tx, str(idle_tx)),
            self.graded("wraparound_age", wrap, f"{wrap:,} ({100.0 * wrap / 2**31:.1f}% of 2^31)"),
            *self.timescale_checks(connection),
        ]

    def timescale_checks(self, connection: Any) -> list[Check]:
        version = timescaledb_version(connection)
        if version is None:
            return []
        return [self.info("timescaledb", version)]

    # -- backup and restore (BackupCapable; the engine is storagectl.backends.postgres.archive) ----------
    archive_family = "postgres"  # timescaledb backends read and write the same archives
    replace_method = ("restored into a new database beside it, swapped in when complete (sessions still on "
                      "the database are disconnected then); a failed restore leaves the target as it was; "
                      "needs CREATEDB")
    # Every restore is staged like a replacement where the role may create databases (target.py).

    def replace_method_for(self, unfinished: str | None) -> str:
        """An unfinished restore is finished the way target.restore will: staged when the role may
        create databases now, else in place again (the partial contents dropped first)."""
        if unfinished is None:
            return self.replace_method
        from storagectl.backends.postgres import swap as pg_swap
        from storagectl.errors import NotFound, PermissionDenied

        try:
            pg_swap.check_replace(self)
        except (PermissionDenied, NotFound) as exc:
            reason = exc.message.removeprefix(f"{self.label}: ").removesuffix("; nothing was changed")
            return (f"in place, as {reason}: the partial contents of the unfinished restore of backup {unfinished} "
                    "are dropped, then the backup is restored into the database itself under a marker; a restore "
                    "cut off again leaves it partial, marked for a rerun of the same backup to finish")
        return (f"the partial contents of the unfinished restore of backup {unfinished} are discarded: "
                f"{self.replace_method}")

    def backup_estimate(self, connection: Any) -> Estimate:
        from storagectl.backends.postgres import schema as pg_schema

        tables, size = pg_schema.backup_estimate(connection)
        return Estimate(size, tables + 2)  # + the pre-data and post-data schema objects

    def backup(self, archive: ArchiveWriter, options: BackupOptions) -> None:
        from storagectl.backends.postgres import archive as pg_archive

        pg_archive.backup(self, archive, options)

    def restore(self, archive: ArchiveReader, options: RestoreOptions) -> RestoreOutcome:
        from storagectl.backends.postgres import archive as pg_archive

        return pg_archive.restore(self, archive, options)

    def stages_replacement(self, metadata: dict[str, Any]) -> bool:
        return True  # swap.py: a new database beside the target

    restores_owners_and_privileges = True

    def restore_preview(self, archive: ArchiveReader, options: RestoreOptions) -> dict[str, Any]:
        from storagectl.backends.postgres import archive as pg_archive

        return pg_archive.roles_preview(self, archive, options)

    def check_replace(self) -> None:
        from storagectl.backends.postgres import swap as pg_swap

        pg_swap.check_replace(self)

    def is_empty(self) -> bool:
        from storagectl.backends.postgres import archive as pg_archive

        return pg_archive.is_empty(self)

    def unfinished_restore(self) -> str | None:
        from storagectl.backends.postgres import target as pg_target

        marker = pg_target.read_state(self).unfinished
        return marker.backup if marker else None

    def content_summary(self, like: ContentSummary | None = None, selection: Any = None) -> ContentSummary:
        from storagectl.backends.postgres import archive as pg_archive

        return pg_archive.content_summary(self, like, selection=selection)

    selection_fields = ("tables", "schemas", "exclude_tables")
    selection_replace_method = ("in place, in one transaction: the selected tables the target has are dropped and "
                                "restored (foreign keys of other tables into them are put back and checked); "
                                "nothing else is touched, and a failure leaves the target as it was")

    def objects_for_selection(self, metadata: dict[str, Any], selection: Any) -> set[str] | None:
        from storagectl.backends.postgres import archive as pg_archive
        from storagectl.backends.postgres.subset import picks

        tables = [entry for entry in metadata.get("tables", []) if picks(selection, (entry["schema"], entry["name"]))]
        return {pg_archive.PRE_DATA, pg_archive.POST_DATA, *(name for entry in tables for name in entry["objects"])}

    def holds_selection(self, selection: Any) -> bool:
        from storagectl.backends.postgres import schema as pg_schema
        from storagectl.backends.postgres.subset import picks

        with self.connect() as conn:
            return any(picks(selection, (table.schema, table.name)) for table in pg_schema.list_tables(conn))


def timescaledb_version(connection: Any) -> str | None:
    """The installed TimescaleDB extension version in this database, or None."""
    row = connection.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    ).fetchone()
    return row[0] if row else None



def __getattr__(name: str) -> Any:
    """``PostgresSettings``, the pydantic model, imported only when asked for (it was defined here)."""
    if name == "PostgresSettings":
        from storagectl.backends.postgres.settings import PostgresSettings

        return PostgresSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
