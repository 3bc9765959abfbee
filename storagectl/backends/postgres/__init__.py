"""The PostgreSQL family in one place: the backend and the engines it drives.

- ``backend``: :class:`PostgresBackend` and its settings — connection, health checks, inspect.
- ``timescaledb``: :class:`TimescaleBackend`, PostgreSQL plus the TimescaleDB extension.
- ``archive``: the backup/restore engine (schema sections, table COPY workers, sequences).
- ``copy``: COPY readers and writers (libpq and psql) and the row checksums.
- ``schema``: catalog queries, quoting, user objects; ``roles``: owner and privilege filters.
- ``largeobjects``: large objects, backed up and restored apart.
- ``target``: staged or marked restores; ``swap``: the staged database renamed in;
  ``guard``: advisory-lock guards against concurrent restores.
- ``jobs``: the worker pool; ``tools``: pg_dump/psql choice and ``spawn``.
"""

from storagectl.backends.postgres.backend import PostgresBackend

__all__ = ["PostgresBackend"]
