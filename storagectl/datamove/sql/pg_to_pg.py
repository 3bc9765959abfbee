"""PostgreSQL → PostgreSQL as the backup does it: the schema from ``pg_dump --section`` (pre-data before
the rows, post-data after), the rows streamed COPY-to-COPY (binary where every column type allows
it, as the backup decides) from one exported snapshot, never through a file."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from storagectl import interrupts
from storagectl.datamove.sql import state
from storagectl.datamove.sql.spec import Chunk, TableSpec
from storagectl.errors import OperationFailed, UsageError

if TYPE_CHECKING:
    from storagectl.backends.postgres.tools import PostData
    from storagectl.datamove.sql.pg_side import PostgresSide

SCHEMA_ROW = "(schema)"  # the state row that records pg_dump's post-data as applied


def uses_pg_dump(source: Any, target: Any, specs: list[TableSpec]) -> bool:
    """Plain table copies between PostgreSQL backends; transforms build their tables from the mapping,
    and so do TimescaleDB backends (a hypertable's schema is not pg_dump's plain SQL to replay)."""
    return source.kind == target.kind == "postgres" and not any(spec.transformed for spec in specs)


DUMPED_SCHEMAS_SQL = r"""
SELECT n.nspname FROM pg_namespace n
WHERE n.nspname NOT LIKE 'pg\_%' AND n.nspname NOT IN ('information_schema', 'public')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid
                  AND d.deptype = 'e')
ORDER BY 1
"""


def dumped_schemas(sconn: Any) -> list[str]:
    """The schemas pg_dump's pre-data of the whole source database creates (``CREATE SCHEMA``, which
    fails on a target that has one already): all but the system's, public and extensions' own."""
    return [row[0] for row in sconn.execute(DUMPED_SCHEMAS_SQL)]


@contextlib.contextmanager
def exported_snapshot(source: PostgresSide) -> Iterator[str]:
    """A REPEATABLE READ transaction held open while the move reads: its snapshot's id."""
    with source.backend.connect() as holder:
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = holder.execute("SELECT pg_export_snapshot()").fetchone()[0]
        source.snapshot = snapshot
        try:
            yield snapshot
        finally:
            source.snapshot = None
            with contextlib.suppress(Exception):
                holder.execute("COMMIT")


def check_creatable(specs: list[TableSpec], missing: list[TableSpec]) -> None:
    """pg_dump's pre-data creates every table or none: some of them existing already is refused."""
    if missing and len(missing) != len(specs):
        names = ", ".join(spec.target for spec in specs if spec not in missing)
        raise UsageError(f"some of the tables exist on the target already ({names}), others do not",
                         hint="Try: --table for the missing ones, or drop the existing ones to copy all")


def dump_section(source: PostgresSide, snapshot: str, section: str, specs: list[TableSpec], whole: bool) -> str:
    """pg_dump's SQL for the section: of the whole database (extensions, types, every table), or of
    the moved tables alone when some were chosen."""
    from storagectl.backends.postgres.archive import strip_psql_restrict
    from storagectl.backends.postgres.schema import server_facts
    from storagectl.backends.postgres.tools import PgDump

    with source.backend.connect() as conn:
        facts = server_facts(conn)
    pg_dump = PgDump.for_server(facts["server_version_num"], facts["server_version"])
    chunks: list[bytes] = []
    tables = [] if whole else [f"--table={spec.source_sql}" for spec in specs]
    pg_dump.dump_section(source.backend, section, snapshot, chunks.append,
                         [*tables, f"--exclude-table={state.STATE_TABLE}"])
    return strip_psql_restrict(b"".join(chunks).decode("utf-8"))


def apply_schema(target: PostgresSide, tconn: Any, sql_text: str, section: str) -> None:
    import psycopg

    try:
        tconn.execute(sql_text.encode("utf-8"))  # one simple-protocol multi-statement query
    except psycopg.Error as exc:
        # no statement here: in an aborted transaction it would fail and hide this error
        raise OperationFailed(f"{target.backend.label}: creating the {section} schema failed: "
                              f"{target.backend.error_line(exc)}",
                              hint="Try: check that the roles and extensions the source uses exist on the target"
                              ) from exc
    tconn.execute("RESET search_path")  # pg_dump's SQL empties it


def create_tables(source: PostgresSide, target: PostgresSide, tconn: Any, snapshot: str,
                  specs: list[TableSpec], missing: list[TableSpec], whole: bool) -> None:
    """pg_dump's pre-data for all of them, in one transaction; only when none exists yet."""
    if not missing:
        return
    check_creatable(specs, missing)
    pre_data = dump_section(source, snapshot, "pre-data", specs, whole)
    with tconn.transaction():
        apply_schema(target, tconn, pre_data, "pre-data")
        # their post-data is owed (an earlier run of other tables may have recorded its own as applied)
        state.start(tconn, target.param, SCHEMA_ROW, "pg_dump", [])


def pending_post_data(source: PostgresSide, target: PostgresSide, tconn: Any, snapshot: str,
                      specs: list[TableSpec], jobs: list[Any], whole: bool, parallel: int) -> PostDataSchema | None:
    """The post-data still to apply: when this run created the tables, or resumes one that did and
    stopped before its post-data was in; None otherwise."""
    created = any(job.create for job in jobs) or not all(job.status == "done" for job in jobs)
    if not created or state.read(tconn, target.param, SCHEMA_ROW).status == "done":
        return None
    return PostDataSchema(source, target, snapshot, specs, whole, parallel)


class PostDataSchema:
    """pg_dump's post-data of a move, applied while the rows copy and after.

    A table's index builds (CREATE INDEX, PRIMARY KEY, UNIQUE) start as soon as all its rows are in
    (:meth:`table_loaded`, called by the copy workers), on up to ``parallel`` connections of their
    own, while the other tables still copy: as ``pgcopydb clone --index-jobs`` and ``pg_restore -j``
    do. The rest (foreign keys, triggers, ...) goes in once every build is done (:meth:`finish`). A
    build runs in its own transaction; a resumed run repeats the builds a crash cut off and skips
    those already there. pg_dump itself runs while the first rows copy.
    """

    def __init__(self, source: PostgresSide, target: PostgresSide, snapshot: str, specs: list[TableSpec],
                 whole: bool, parallel: int) -> None:
        from storagectl.backends.postgres.jobs import BusyConnections

        self.source, self.target, self.snapshot, self.specs, self.whole = source, target, snapshot, specs, whole
        self.parallel = max(1, parallel)
        self.lock = threading.Lock()
        self.post: PostData | None = None  # pg_dump's, once it is read
        self.loaded: set[tuple[str, str] | None] = set()  # tables whose rows are all in
        self.started: set[tuple[str, str] | None] = set()  # tables whose builds were handed to the pool
        self.builds: list[Future[None]] = []
        self.busy = BusyConnections()

    def __enter__(self) -> PostDataSchema:
        self.pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="migrate-index")
        self.dumped = self.pool.submit(self._dump)
        self.dumped.add_done_callback(self._dump_read)
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        if exc_type is not None:  # a failed or interrupted run: no build keeps it waiting
            from storagectl.backends.postgres.tools import kill_spawned

            self.busy.cancel_all()
            kill_spawned()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _dump(self) -> PostData:
        from storagectl.backends.postgres.tools import split_post_data

        return split_post_data(dump_section(self.source, self.snapshot, "post-data", self.specs, self.whole))

    def _dump_read(self, dumped: Future[PostData]) -> None:
        if dumped.cancelled() or dumped.exception() is not None:
            return  # finish() raises it
        with self.lock:
            self.post = dumped.result()
            self._start()

    def dumped_sql(self) -> PostData:
        """pg_dump's post-data, once read."""
        return interrupts.result(self.dumped)

    def table_loaded(self, spec: TableSpec) -> None:
        """All the table's rows are in (called from a copy worker): its builds go to the pool, or as
        soon as pg_dump's text is read."""
        from storagectl.datamove.sql.pg_side import split_name

        with self.lock:
            self.loaded.add(split_name(spec.source))
            self._start()

    def finish(self, tconn: Any) -> None:
        """Every build left (of tables not reported loaded, or whose table pg_dump's text does not name),
        all of them waited for; then the rest, recorded as applied in the same transaction."""
        post = self.dumped_sql()
        with self.lock:
            self.loaded |= {build.table for build in post.index_builds}
            self._start()
        for build in self.builds:
            interrupts.result(build)
        rest = post.rest if self.whole else without_foreign_keys_out(post.rest, self.specs)
        with tconn.transaction():
            apply_schema(self.target, tconn, post.preamble + rest, "post-data")
            state.start(tconn, self.target.param, SCHEMA_ROW, "pg_dump", [])
            state.set_status(tconn, self.target.param, SCHEMA_ROW, "done")

    def _start(self) -> None:
        """Under the lock: the builds of loaded tables not handed to the pool yet."""
        if self.post is None:
            return
        tables = self.loaded - self.started
        self.started |= tables
        self.builds += [self.pool.submit(self._build, self.post.preamble, build.statement)
                        for build in self.post.index_builds if build.table in tables]

    def _build(self, preamble: str, statement: str) -> None:
        import psycopg

        with self.target.backend.connect() as conn, self.busy.running_on(conn):
            try:
                apply_schema(self.target, conn, preamble + statement, "post-data")
            except OperationFailed as exc:
                if not isinstance(exc.__cause__, psycopg.errors.DuplicateTable | psycopg.errors.DuplicateObject
                                  | psycopg.errors.InvalidTableDefinition):
                    raise


def owned_sequences(sconn: Any, specs: list[TableSpec]) -> list[tuple[str, str, int, bool]]:
    """The sequences the moved tables own, as ``sconn`` (in the move's snapshot) sees them."""
    from storagectl.backends.postgres.schema import qualified

    found = []
    rows = sconn.execute("SELECT n.nspname, s.relname FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace "
                         "JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass "
                         "WHERE s.relkind = 'S' AND d.refobjid = ANY (%s::regclass[])",
                         [[spec.source_sql for spec in specs]]).fetchall()
    for schema, name in rows:
        last_value, is_called = sconn.execute(f"SELECT last_value, is_called FROM {qualified(schema, name)}").fetchone()
        found.append((schema, name, last_value, is_called))
    return found


def set_sequences(tconn: Any, sequences: list[tuple[str, str, int, bool]]) -> None:
    """The :func:`owned_sequences` values on the target's sequences of the same names."""
    from storagectl.backends.postgres.schema import qualified

    for schema, name, last_value, is_called in sequences:
        if tconn.execute("SELECT to_regclass(%s)", [qualified(schema, name)]).fetchone()[0] is not None:
            tconn.execute("SELECT pg_catalog.setval(%s::regclass, %s, %s)", [qualified(schema, name), last_value,
                                                                            is_called])


_REFERENCES = re.compile(r"\bREFERENCES\s+(?P<table>(?:\"(?:[^\"]|\"\")+\"|[\w$]+)\.(?:\"(?:[^\"]|\"\")+\"|[\w$]+))")


def without_foreign_keys_out(sql_text: str, specs: list[TableSpec]) -> str:
    """pg_dump's post-data of some tables without the foreign keys to tables not moved with them
    (pg_dump --table keeps them; they could not be created)."""
    from storagectl.backends.postgres.tools import ENTRY_HEADER

    moved = {spec.source_sql.replace('"', "") for spec in specs}
    headers = list(ENTRY_HEADER.finditer(sql_text))
    if not headers:
        return sql_text
    kept = [sql_text[:headers[0].start()]]
    for header, following in zip(headers, [*headers[1:], None], strict=True):
        entry = sql_text[header.start():following.start() if following else len(sql_text)]
        found = _REFERENCES.search(entry) if header["type"] == "FK CONSTRAINT" else None
        if found is None or found["table"].replace('"', "") in moved:
            kept.append(entry)
    return "".join(kept)


def binary_columns(sconn: Any, spec: TableSpec) -> bool:
    """Whether the table's rows can go in binary COPY (the backup's rule for a type read back alike)."""
    from storagectl.backends.postgres.schema import ColumnTypes

    oids = [row[0] for row in sconn.execute(
        "SELECT atttypid FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
        "AND attgenerated = ''", [spec.source_sql])]
    types = ColumnTypes.load(sconn, set(oids))
    return all(types.binary_safe(oid) for oid in oids)


def pipe_chunk(sconn: Any, tconn: Any, spec: TableSpec, chunk: Chunk, binary: bool) -> int:
    """One chunk COPY TO STDOUT on the source straight into COPY FROM STDIN on the target (in the
    caller's transaction); returns the rows."""
    from storagectl.backends.postgres.copy import BINARY_HEADER, BINARY_TRAILER, CopyOut
    from storagectl.datamove.sql.pg_side import quote

    columns = ", ".join(quote(column.name) for column in spec.columns)
    where = _literal_where(spec.key, chunk)
    options = " (FORMAT binary)" if binary else ""
    reader = CopyOut(sconn, f"COPY (SELECT {columns} FROM ONLY {spec.source_sql}{where}) TO STDOUT{options}",
                     binary=binary, checksum=False)  # the target counts what it takes; verify compares
    with tconn.cursor().copy(f"COPY {spec.target_sql} ({columns}) FROM STDIN{options}") as copy:
        if binary:
            copy.write(BINARY_HEADER)
        for piece in reader:
            copy.write(piece)
        if binary:
            copy.write(BINARY_TRAILER)
    return reader.rows


def _literal_where(key: str | None, chunk: Chunk) -> str:
    """COPY takes no parameters: the bounds are integers, written in."""
    if key is None:
        return ""
    parts = [f"{key} >= {int(chunk.lower)}" if chunk.lower is not None else "",
             f"{key} < {int(chunk.upper)}" if chunk.upper is not None else ""]
    parts = [part for part in parts if part]
    return (" WHERE " + " AND ".join(parts)) if parts else ""
