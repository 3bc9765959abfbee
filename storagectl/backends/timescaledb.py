"""TimescaleDB: PostgreSQL plus the timescaledb extension, detected through its catalog."""

from __future__ import annotations

from typing import Any

from storagectl.backends.postgres import PostgresBackend, timescaledb_version
from storagectl.diag import Check, Status


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
