#!/usr/bin/env python3
"""Create the PostgreSQL benchmark database: >= 1.5 M rows of text, jsonb, bytea, numeric,
timestamptz and arrays (~450 MB on disk at --scale 1), generated server-side with generate_series.

Idempotent: a database that already holds the requested scale is left alone (--force rebuilds).
Usage: python bench/pg_dataset.py [--url postgresql://postgres@127.0.0.1:5432/postgres]
                                  [--database stctl_bench] [--scale 1.0] [--force]
"""

from __future__ import annotations

import argparse
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

# Deterministic (setseed) and moderately compressible: real-looking values, not all-random bytes.
SCHEMA = """
SELECT setseed(0.42);
CREATE TYPE order_state AS ENUM ('new', 'paid', 'shipped', 'returned');
CREATE TABLE customers (
    id bigserial PRIMARY KEY, name text NOT NULL, email text NOT NULL, attrs jsonb,
    balance numeric(14, 2), created timestamptz NOT NULL, flags int[]
);
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer_id bigint NOT NULL,
    state order_state NOT NULL, placed timestamptz NOT NULL, total numeric(12, 2),
    lines jsonb, tags text[], note text
);
CREATE TABLE attachments (
    id bigserial PRIMARY KEY, order_id bigint, filename text, body bytea, uploaded timestamptz
);
INSERT INTO customers (name, email, attrs, balance, created, flags)
SELECT 'customer ' || g, 'user' || g || '@example.' || (ARRAY['com','org','net'])[1 + g % 3],
       jsonb_build_object('tier', g % 5, 'city', md5((g % 997)::text), 'newsletter', g % 2 = 0,
                          'score', round((random() * 1000)::numeric, 3)),
       round((random() * 100000)::numeric, 2), now() - g * interval '37 seconds',
       ARRAY[g % 7, g % 11, g % 13]
FROM generate_series(1, {customers}) g;
INSERT INTO orders (customer_id, state, placed, total, lines, tags, note)
SELECT 1 + (g::bigint * 7919) % {customers}, (ARRAY['new','paid','shipped','returned'])[1 + g % 4]::order_state,
       now() - g * interval '11 seconds', round((random() * 5000)::numeric, 2),
       jsonb_build_array(jsonb_build_object('sku', 'SKU-' || (g % 5000), 'qty', 1 + g % 9,
                                            'price', round((random() * 200)::numeric, 2)),
                         jsonb_build_object('sku', 'SKU-' || (g % 3000), 'qty', 1 + g % 4)),
       ARRAY['tag' || (g % 50), 'prio' || (g % 3)],
       CASE WHEN g % 3 = 0 THEN 'delivered to ' || md5(g::text) || ' by courier ' || (g % 40) END
FROM generate_series(1, {orders}) g;
INSERT INTO attachments (order_id, filename, body, uploaded)
SELECT g, 'scan-' || g || '.bin',
       decode(repeat(md5(g::text), 4) || md5(random()::text) || md5(random()::text), 'hex')
         || convert_to(repeat('header line ' || (g % 100) || E'\\n', 12), 'UTF8'),
       now() - g * interval '1 minute'
FROM generate_series(1, {attachments}) g;
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE INDEX orders_placed_idx ON orders (placed);
CREATE INDEX customers_email_idx ON customers (email);
ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id);
ANALYZE;
"""


def row_counts(scale: float) -> dict[str, int]:
    return {"customers": int(200_000 * scale), "orders": int(1_000_000 * scale),
            "attachments": int(350_000 * scale)}


def database_url(admin_url: str, database: str) -> str:
    """The admin URL (postgresql://...) pointing at ``database`` instead."""
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{database}"))


def current_scale(url: str) -> str | None:
    try:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT obj_description('customers'::regclass, 'pg_class')").fetchone()
            return row[0] if row else None
    except psycopg.Error:
        return None


def build(admin_url: str, database: str, scale: float) -> None:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    with psycopg.connect(database_url(admin_url, database), autocommit=True) as conn:
        conn.execute(SCHEMA.format(**row_counts(scale)).encode())
        conn.execute(sql.SQL("COMMENT ON TABLE customers IS {}").format(sql.Literal(f"scale={scale}")))


def ensure_dataset(admin_url: str, database: str, scale: float, force: bool = False) -> str:
    """Build the dataset unless it is already there at this scale; returns its URL."""
    url = database_url(admin_url, database)
    if force or current_scale(url) != f"scale={scale}":
        started = time.perf_counter()
        build(admin_url, database, scale)
        print(f"built {database} at scale {scale} in {time.perf_counter() - started:.1f}s")
    return url


# Narrow shapes (issue 19): one table of two integers, where per-row costs dominate per-byte ones.
INT_PAIR_SHAPES = {"int-pairs-20m": 20_000_000, "int-pairs-1.25m": 1_250_000}


def ensure_int_pairs(admin_url: str, shape: str) -> str:
    """One table ``pairs (a int, b int)`` of the shape's row count in database ``stctl_bench_<shape>``
    (built unless present at that count); returns its URL."""
    rows = INT_PAIR_SHAPES[shape]
    database = "stctl_bench_" + shape.replace("-", "_").replace(".", "_")
    url = database_url(admin_url, database)
    try:
        with psycopg.connect(url) as conn:
            present = conn.execute("SELECT obj_description('pairs'::regclass, 'pg_class')").fetchone()[0]
    except psycopg.Error:
        present = None
    if present != f"rows={rows}":
        started = time.perf_counter()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE pairs (a int, b int)")
            conn.execute("INSERT INTO pairs SELECT g, (g::bigint * 7919 %% 1000003)::int "
                         "FROM generate_series(1, %s) g", [rows])
            conn.execute("VACUUM (FREEZE, ANALYZE) pairs")
            conn.execute(sql.SQL("COMMENT ON TABLE pairs IS {}").format(sql.Literal(f"rows={rows}")))
        print(f"built {database} ({rows:,} rows) in {time.perf_counter() - started:.1f}s")
    return url


def describe(url: str) -> str:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT (SELECT sum(n_live_tup) FROM pg_stat_user_tables), "
            "pg_size_pretty(pg_database_size(current_database()))"
        ).fetchone()
    return f"{rows[0]:,} rows, {rows[1]} on disk"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=ADMIN_URL, help="an admin connection (database is replaced)")
    parser.add_argument("--database", default="stctl_bench")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    args = parser.parse_args()
    url = ensure_dataset(args.url, args.database, args.scale, args.force)
    print(f"{args.database}: {describe(url)}")


if __name__ == "__main__":
    main()
