"""TimescaleDB: PostgreSQL plus the timescaledb extension, detected through its catalog."""

from __future__ import annotations

from typing import Any

from storagectl.backends.postgres.backend import PostgresBackend, timescaledb_version
from storagectl.health import Check, Status


class TimescaleBackend(PostgresBackend):
    kind = "timescaledb"

    def timescale_checks(self, connection: Any) -> list[Check]:
        version = timescaledb_version(connection)
        if version is None:
            return [Check("timescaledb", Status.WARNING, None, "not installed",
                          "kind is timescaledb but the extension is not in this database")]
        hypertables = connection.execute(
            "SELECT count(*) FROM timescaledb_information.hypertables"
        ).fetchone()[0]
        return [self.info("timescaledb", version, f"{version} ({hypertables} hypertables)")]


# -- backup and restore (Timescale's documented logical procedure) -------------------------------
# The backup itself needs nothing special: pg_dump writes the extension and the hypertable
# schema, and the catalog tables (_timescaledb_catalog.*, marked by pg_extension_config_dump) are
# copied like any table with pg_dump's filter. Restore must create the same extension version,
# call timescaledb_pre_restore() first and timescaledb_post_restore() last, so that the catalog
# rows, chunks and compressed chunks are loaded as-is and hypertables come back as hypertables.
def prepare_restore(connection: Any, version: str) -> None:
    """Create TimescaleDB ``version`` in the target (or check it is there) and enter restoring mode."""
    from psycopg import sql

    from storagectl.errors import OperationFailed, ToolMissing

    installed = timescaledb_version(connection)
    if installed is not None and installed != version:
        raise OperationFailed(
            f"the target has TimescaleDB {installed} but the backup was taken with {version}",
            hint=f"Try: restore into a database with TimescaleDB {version}, then ALTER EXTENSION timescaledb UPDATE",
        )
    if installed is None and not _version_available(connection, version):
        raise ToolMissing(
            f"TimescaleDB {version} is not available on the target server (the backup needs it)",
            hint="Try: install that TimescaleDB version and add timescaledb to shared_preload_libraries",
        )
    connection.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS timescaledb VERSION {}").format(sql.Literal(version)))
    _call(connection, "timescaledb_pre_restore")


def finish_restore(connection: Any) -> None:
    """Leave restoring mode and restart the background workers (also after a failed restore)."""
    if timescaledb_version(connection) is not None:  # else rolled back with pre-data: nothing to reset
        _call(connection, "timescaledb_post_restore")


def _version_available(connection: Any, version: str) -> bool:
    row = connection.execute(
        "SELECT 1 FROM pg_available_extension_versions WHERE name = 'timescaledb' AND version = %s", [version]
    ).fetchone()
    return row is not None


def _call(connection: Any, function: str) -> None:
    """Call an extension function schema-qualified: pg_dump's SQL leaves search_path empty."""
    from psycopg import sql

    schema = connection.execute(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'timescaledb'"
    ).fetchone()[0]
    connection.execute(sql.SQL("SELECT {}.{}()").format(sql.Identifier(schema), sql.Identifier(function)))
