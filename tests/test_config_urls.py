"""Every URL a client library would read differently from what was written fails `config validate`
(exit 2, file:line key: reason), instead of falling back to a default at run time."""

from __future__ import annotations

from pathlib import Path

import pytest

from storagectl.config import parse_config

HINT = "percent-encode / ? # @ : in a user name or password"


def backend(kind: str, **fields: str) -> str:
    body = "".join(f"    {key}: '{value}'\n" for key, value in fields.items())
    return f"backends:\n  x:\n    kind: {kind}\n{body}"


def destination(**fields: str) -> str:
    body = "".join(f"    {key}: '{value}'\n" for key, value in fields.items())
    return f"destinations:\n  x:\n    kind: s3\n    bucket: b\n{body}"


def hook(url: str) -> str:
    return (f"backends:\n  a: {{kind: sqlite, path: a.db}}\ndestinations:\n  d: {{kind: local, path: b}}\n"
            f"jobs:\n  j:\n    backends: [a]\n    destination: d\n    on_failure: '{url}'\n")


INVALID = {
    # Redis: redis-py reads /13x and /abc as db 0, /1/3 as db 13, and lets ?db= win over the path.
    "redis-db-13x": (backend("redis", url="redis://127.0.0.1:6379/13x"), ":4 backends.x.url",
                     "the db (the path) must be a number such as /0 or /3; redis-py would quietly use db 0"),
    "redis-db-abc": (backend("redis", url="redis://127.0.0.1:6379/abc"), ":4 backends.x.url", "the db (the path)"),
    "redis-db-slashes": (backend("redis", url="redis://h/1/3"), ":4 backends.x.url", "the db (the path)"),
    "redis-db-negative": (backend("redis", url="redis://h/-1"), ":4 backends.x.url", "the db (the path)"),
    "redis-db-query": (backend("redis", url="redis://h/3?db=5"), ":4 backends.x.url",
                       "query parameters (db) are not supported; write the db as the path (/N)"),
    "redis-query": (backend("redis", url="redis://h/0?socket_timeout=1&foo=2"), ":4 backends.x.url",
                    "query parameters (foo, socket_timeout) are not supported"),
    "redis-port-text": (backend("redis", url="redis://h:notaport/0"), ":4 backends.x.url",
                        f"the port is not a number from 1 to 65535; {HINT}"),
    "redis-port-0": (backend("redis", url="redis://h:0/0"), ":4 backends.x.url", "the port is not a number"),
    "redis-port-big": (backend("redis", url="redis://h:65536/0"), ":4 backends.x.url", "the port is not a number"),
    "redis-fragment": (backend("redis", url="redis://:pa#ss@h/0"), ":4 backends.x.url", "has a #fragment"),
    "redis-scheme": (backend("redis", url="http://h:6379/0"), ":4 backends.x.url",
                     "must start with redis:// or rediss:// or unix://"),
    "redis-no-slashes": (backend("redis", url="redis:h"), ":4 backends.x.url", "must start with redis://"),
    "redis-unix-db": (backend("redis", url="unix:///run/redis.sock?db=x"), ":4 backends.x.url",
                      "the db (?db=) must be a number"),
    "redis-unix-query": (backend("redis", url="unix:///run/redis.sock?db=1&timeout=3"), ":4 backends.x.url",
                         "only ?db=N is read from a unix:// url"),
    "redis-unix-no-path": (backend("redis", url="unix://"), ":4 backends.x.url", "needs the socket path"),
    "redis-port-field": (backend("redis", port="70000"), ":4 backends.x.port", "less than or equal to 65535"),
    "redis-databases-negative": ("backends:\n  x: {kind: redis, databases: [0, -1]}\n", ":2 backends.x.databases.1",
                                 "greater than or equal to 0"),
    "redis-databases-twice": ("backends:\n  x: {kind: redis, databases: [1, 1]}\n", ":2 backends.x.databases",
                              "a db is listed twice"),
    "redis-two-passwords": (backend("redis", url="redis://:a@h/0", password="b"), ":2 backends.x",
                            "url has a password and password/password_file gives another"),
    # PostgreSQL / TimescaleDB: libpq accepts these when parsing and fails only when connecting.
    "postgres-port-text": (backend("postgres", url="postgresql://h:notaport/db"), ":4 backends.x.url",
                           "the port is not a number from 1 to 65535"),
    "postgres-port-0": (backend("postgres", url="postgresql://h:0/db"), ":4 backends.x.url", "the port is not"),
    "postgres-port-query": (backend("postgres", url="postgresql://h/db?port=abc"), ":4 backends.x.url",
                            "the port is not"),
    "postgres-second-host-port": (backend("timescaledb", url="postgresql://h1:5432,h2:99999/db"),
                                  ":4 backends.x.url", "the port is not"),
    "postgres-sslmode": (backend("postgres", url="postgresql://h/db?sslmode=bogus"), ":4 backends.x.url",
                         "sslmode in the url must be one of disable, allow"),
    "postgres-unknown-param": (backend("postgres", url="postgresql://h/db?foo=1"), ":4 backends.x.url",
                               'cannot be parsed: invalid URI query parameter: "foo"'),
    "postgres-scheme": (backend("postgres", url="mysql://h/db"), ":4 backends.x.url",
                        "must start with postgresql:// or postgres://"),
    "postgres-port-field": (backend("postgres", port="0"), ":4 backends.x.port", "greater than or equal to 1"),
    "postgres-two-passwords": (backend("postgres", url="postgresql://u:a@h/db", password="b"), ":2 backends.x",
                               "url has a password and password/password_file gives another"),
    # Neo4j: the driver accepts these and fails (or ignores the path) only when connecting.
    "neo4j-port": (backend("neo4j", uri="bolt://h:notaport"), ":4 backends.x.uri", "the port is not a number"),
    "neo4j-port-big": (backend("neo4j", uri="neo4j://h:70000"), ":4 backends.x.uri", "the port is not a number"),
    "neo4j-path": (backend("neo4j", uri="bolt://h:7687/graph"), ":4 backends.x.uri",
                   "has a path, which the driver ignores; choose the database with `database:`"),
    "neo4j-bolt-query": (backend("neo4j", uri="bolt://h:7687?policy=eu"), ":4 backends.x.uri",
                         "only neo4j:// uris take routing parameters"),
    "neo4j-no-host": (backend("neo4j", uri="bolt://:7687"), ":4 backends.x.uri", "has no host name"),
    # S3 endpoint (backend and destination) and webhook URLs.
    "s3-endpoint-port": (backend("s3", bucket="b", endpoint_url="http://minio:notaport"), ":5 backends.x.endpoint_url",
                         "the port is not a number"),
    "s3-endpoint-scheme": (backend("s3", bucket="b", endpoint_url="minio:9000"), ":5 backends.x.endpoint_url",
                           "must start with http:// or https://"),
    "s3-destination-no-host": (destination(endpoint_url="https://:9000"), ":5 destinations.x.endpoint_url",
                               "has no host name"),
    "s3-destination-query": (destination(endpoint_url="https://minio?x=1"), ":5 destinations.x.endpoint_url",
                             "query parameters (x) are not supported"),
    "hook-port": (hook("https://hooks.example:80x/T0KEN"), ":9 jobs.j.on_failure", "the port is not a number"),
}


@pytest.mark.parametrize(("text", "where", "reason"), INVALID.values(), ids=INVALID.keys())
def test_invalid_url_is_a_config_error(cli, write_config, text, where, reason):
    path = write_config(text)
    result = cli("-c", path, "config", "validate")
    assert result.exit_code == 2, result.stdout
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"error: {path}{where}: ") and reason in first, first


def test_hook_url_is_never_echoed(cli, write_config):
    path = write_config(hook("https://hooks.example:80x/T0KEN"))
    assert "T0KEN" not in cli("-c", path, "config", "validate").stderr


VALID = {
    "redis-db": (backend("redis", url="redis://127.0.0.1:6379/13"), [13]),
    "redis-no-db": (backend("redis", url="rediss://u:p@h:6380/"), [0]),
    "redis-no-path": (backend("redis", url="redis://h"), [0]),
    "redis-ipv6": (backend("redis", url="redis://[::1]:6379/2"), [2]),
    "redis-unix-db": (backend("redis", url="unix:///run/redis.sock?db=3"), [3]),
    "redis-unix": (backend("redis", url="unix:///run/redis.sock"), [0]),
    "redis-fields": (backend("redis", host="h", port="6380", db="4"), [4]),
}


@pytest.mark.parametrize(("text", "databases"), VALID.values(), ids=VALID.keys())
def test_valid_redis_urls_select_the_db_written(text, databases):
    """The db that validation accepted is the db backups read and restores write."""
    assert parse_config(text, Path("c.yaml"), {}).backend("x").selected_databases() == databases


@pytest.mark.parametrize("text", [
    backend("postgres", url="postgresql://u@h1:5432,h2:5433/db?sslmode=require&application_name=x"),
    backend("postgres", url="postgresql://u@h1:5432,h2/db"),
    backend("postgres", url="postgresql://[::1]:5432/db"),
    backend("timescaledb", url="postgres:///db?host=/run/postgresql"),
    backend("neo4j", uri="neo4j+s://h:7687?policy=eu"),
    backend("neo4j", uri="bolt://h/"),
    backend("s3", bucket="b", endpoint_url="http://127.0.0.1:9000"),
    destination(endpoint_url="https://s3.eu-central-1.amazonaws.com"),
    hook("https://hooks.example/T0KEN?x=1"),
], ids=["pg-multi-host", "pg-multi-host-default-port", "pg-ipv6", "tsdb-socket", "neo4j-routing", "bolt-slash",
        "s3-endpoint", "s3-destination", "hook"])
def test_valid_urls_pass(text):
    parse_config(text, Path("c.yaml"), {})


# -- PostgreSQL URLs read without libpq: the same parameters as libpq, or libpq is asked ----------
PLAIN_POSTGRES_URLS = [
    "postgresql://h/db", "postgres://u:p@h:5433/db", "postgresql://u:p%40ss%2Fw:rd@h/db",
    "postgresql://u@h1:5432,h2:5433/db?sslmode=require&application_name=x", "postgresql://u@h1:5432,h2/db",
    "postgresql://h1,h2:5/db", "postgresql://h,/db", "postgresql://[::1]:5432/db", "postgresql://[::1],[::2]:5/db",
    "postgres:///db?host=/run/postgresql", "postgresql://%2Frun%2Fpostgresql/db", "postgresql://", "postgresql:///",
    "postgresql://h?", "postgresql://h/db?", "postgresql://h/db?sslmode=require&", "postgresql://h:/db",
    "postgresql://h/d%2Fb", "postgresql://h/db#frag", "postgresql://h/db/extra", "postgresql://u:p:q@h",
    "postgresql://u@v@h/db", "postgresql://h:5432:1/db", "postgresql://h/db?dbname=other", "postgresql://:p@h",
    "postgresql://@h", "postgresql://u:@h", "postgresql://h/?dbname=", "postgresql://h/db?port=",
    "postgresql://h/db?ssl=true", "postgresql://h/db?options=-c%20statement_timeout%3D5s&connect_timeout=3",
    "postgresql://h:notaport/db", "postgresql://us%C3%A9r@h/db", "postgresql://h?x=u@y",
]
LIBPQ_ONLY_URLS = [  # each a case libpq words itself (or a keyword another libpq may not know)
    "postgresql://h/db?foo=1", "postgresql://%zz@h/db", "postgresql://[::1/db", "postgresql://[]/db",
    "postgresql://[::1]x/db", "postgresql://h/db?=x", "postgresql://h/db?a", "postgresql://h/db?a=b=c",
    "postgresql://h/db?&", "postgresql://h/db?user=%00", "postgresql://h/%FF", "postgresql://h/db?ssl=false",
    "POSTGRESQL://h/db", "postgresql://h/db?requiressl=1", "postgresql://h a/db", "postgresql://h/db ",
    "postgresql://h/db?sslnegotiation=direct",
]


@pytest.mark.parametrize("url", PLAIN_POSTGRES_URLS)
def test_plain_postgres_urls_are_read_as_libpq_reads_them(url):
    from psycopg.conninfo import conninfo_to_dict

    from storagectl.config.urls import parse_postgres_url

    assert parse_postgres_url(url) == conninfo_to_dict(url)


@pytest.mark.parametrize("url", LIBPQ_ONLY_URLS)
def test_other_postgres_urls_are_left_to_libpq(url):
    from storagectl.config.urls import parse_postgres_url

    assert parse_postgres_url(url) is None


def test_postgres_urls_pieced_at_random_read_as_libpq_reads_them():
    """Whatever the reader answers (not None) is libpq's answer: same parameters, never accepting
    what libpq refuses."""
    import random

    from psycopg.conninfo import conninfo_to_dict

    from storagectl.config.urls import parse_postgres_url

    pieces = ["u", ":", "@", "p%40ss", "h", ",", "[", "]", "::1", "/", "?", "&", "=", "sslmode", "require", "port",
              "5432", "host", "%2F", "%", "%zz", "%00", "ssl", "true", "dbname", "foo", "", "%FF", "é", "#", " "]
    rng = random.Random(19)
    read = 0
    for _ in range(5000):
        url = rng.choice(["postgresql://", "postgres://"]) + "".join(rng.choices(pieces, k=rng.randint(0, 9)))
        mine = parse_postgres_url(url)
        if mine is not None:
            read += 1
            assert mine == conninfo_to_dict(url), url
    assert read > 1000


def test_postgres_url_keywords_are_libpq_keywords():
    import psycopg

    from storagectl.config.urls import POSTGRES_URL_KEYWORDS

    known = {option.keyword.decode() for option in psycopg.pq.Conninfo.get_defaults()}
    assert known >= POSTGRES_URL_KEYWORDS
