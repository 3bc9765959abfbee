"""The selection model without servers: globs, table picking, pg_dump entry filtering, config checks."""

from __future__ import annotations

import pytest

from storagectl.backends.postgres.subset import filter_schema_sql, select_tables
from storagectl.errors import NotFound, UsageError
from storagectl.selection import Selection, glob_regex

PRE_DATA = """SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);

--
-- Name: app; Type: SCHEMA; Schema: -; Owner: postgres
--

CREATE SCHEMA app;

--
-- Name: f(); Type: FUNCTION; Schema: public; Owner: postgres
--

CREATE FUNCTION public.f() RETURNS trigger LANGUAGE plpgsql AS $$ begin return new; end $$;

SET default_tablespace = '';

--
-- Name: orders; Type: TABLE; Schema: app; Owner: postgres
--

CREATE TABLE app.orders (id bigint NOT NULL, customer_id integer);

--
-- Name: orders_id_seq; Type: SEQUENCE; Schema: app; Owner: postgres
--

ALTER TABLE app.orders ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME app.orders_id_seq
);

--
-- Name: odd name; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public."odd name" (id integer NOT NULL);

--
-- Name: odd name_id_seq; Type: SEQUENCE; Schema: public; Owner: postgres
--

CREATE SEQUENCE public."odd name_id_seq" AS integer;

--
-- Name: odd name_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: postgres
--

ALTER SEQUENCE public."odd name_id_seq" OWNED BY public."odd name".id;

--
-- Name: TABLE "odd name"; Type: COMMENT; Schema: public; Owner: postgres
--

--
-- Name: COLUMN orders.customer_id; Type: COMMENT; Schema: app; Owner: postgres
--

COMMENT ON COLUMN app.orders.customer_id IS 'who';
"""
POST_DATA = """SET default_tablespace = '';

--
-- Name: orders orders_pkey; Type: CONSTRAINT; Schema: app; Owner: postgres
--

ALTER TABLE ONLY app.orders ADD CONSTRAINT orders_pkey PRIMARY KEY (id);

--
-- Name: orders_note_idx; Type: INDEX; Schema: app; Owner: postgres
--

CREATE INDEX orders_note_idx ON app.orders USING btree (id);

--
-- Name: INDEX orders_note_idx; Type: COMMENT; Schema: app; Owner: postgres
--

COMMENT ON INDEX app.orders_note_idx IS 'i';

--
-- Name: other_idx; Type: INDEX; Schema: public; Owner: postgres
--

CREATE INDEX other_idx ON public.other USING btree (x);

--
-- Name: orders orders_customer_id_fkey; Type: FK CONSTRAINT; Schema: app; Owner: postgres
--

ALTER TABLE ONLY app.orders ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id)
    REFERENCES public.customers(id);
"""


@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("user:*", "user:1", True), ("user:?", "user:12", False), ("h[ae]llo", "hallo", True),
    ("h[^e]llo", "hello", False), ("h[!e]llo", "hallo", True), ("a\\*", "a*", True), ("a\\*", "ab", False),
    ("[a-c]x", "bx", True), ("*.log", "x.log", True), ("*.log", "xlog", False),
])
def test_glob_follows_redis_rules(pattern, name, matches):
    assert bool(glob_regex(pattern).fullmatch(name)) is matches


TABLES = [("public", "customers"), ("app", "orders"), ("app", "audit_2025"), ("app", "audit_2026"),
          ("public", "orders")]


@pytest.mark.parametrize(("selection", "picked"), [
    (Selection(tables=("orders",)), [("app", "orders"), ("public", "orders")]),
    (Selection(tables=("app.orders",)), [("app", "orders")]),
    (Selection(schemas=("app",), exclude_tables=("audit_*",)), [("app", "orders")]),
    (Selection(tables=("orders",), schemas=("public",)), [("public", "orders")]),
    (Selection(exclude_tables=("app.*",)), [("public", "customers"), ("public", "orders")]),
])
def test_tables_are_picked_as_pg_restore_combines_options(selection, picked):
    assert select_tables(TABLES, selection, "db") == picked


def test_a_table_or_schema_matching_nothing_is_an_error():
    with pytest.raises(NotFound, match="--table 'ordrs' matches no table in db"):
        select_tables(TABLES, Selection(tables=("ordrs",)), "db")
    with pytest.raises(NotFound, match="--schema 'ap' matches no table"):
        select_tables(TABLES, Selection(schemas=("ap",)), "db")
    with pytest.raises(NotFound, match="selects no table"):
        select_tables(TABLES, Selection(tables=("orders",), exclude_tables=("*",)), "db")


def test_schema_sql_keeps_only_the_entries_of_the_selected_tables():
    subset = filter_schema_sql(PRE_DATA, {("app", "orders")})
    assert "CREATE TABLE app.orders" in subset.sql and "SEQUENCE NAME app.orders_id_seq" in subset.sql
    assert "COMMENT ON COLUMN app.orders.customer_id" in subset.sql
    assert "CREATE SCHEMA" not in subset.sql and "FUNCTION" not in subset.sql and "odd name" not in subset.sql
    assert "SET default_tablespace = '';" in subset.sql  # settings of dropped entries stay for the next
    assert subset.sequences == {("app", "orders_id_seq")}
    odd = filter_schema_sql(PRE_DATA, {("public", "odd name")})
    assert odd.sequences == {("public", "odd name_id_seq")} and 'OWNED BY public."odd name".id' in odd.sql
    post = filter_schema_sql(POST_DATA, {("app", "orders")})
    assert "orders_pkey" in post.sql and "CREATE INDEX orders_note_idx" in post.sql
    assert "COMMENT ON INDEX app.orders_note_idx" in post.sql and "other_idx" not in post.sql
    assert post.references == {("public", "customers")}


def test_selection_options_and_types_are_checked():
    with pytest.raises(UsageError, match="--type 'str' is not a Redis type"):
        Selection(types=("str",))
    with pytest.raises(UsageError, match=r"--pattern does not apply to backend 'x' \(sqlite\); it selects with"):
        Selection(patterns=("a*",)).require_fields(("tables",), "backend 'x' (sqlite)")
    assert Selection(tables=("a",)).narrowed_by(Selection(tables=("b",))) == Selection(tables=("b",))
    assert Selection(schemas=("app",)).narrowed_by(Selection(tables=("b",))) == Selection(tables=("b",),
                                                                                          schemas=("app",))


@pytest.mark.parametrize(("select", "problem"), [
    ("{types: [hashes]}", "jobs.j.select.types: 'hashes' is not a Redis type"),
    ("{}", "jobs.j.select: select is empty"),
    ("{tabels: [x]}", "jobs.j.select.tabels: unknown key (did you mean tables?)"),
    ("{labels: [Person]}", "jobs.j.select.labels: does not apply to backend 'db' (sqlite); a sqlite backend takes "
                           "tables"),
])
def test_job_select_problems_name_file_line_and_key(cli, write_config, tmp_path, select, problem):
    config = write_config(f"""
        version: 1
        backends:
          db: {{kind: sqlite, path: {tmp_path / "a.db"}}}
        destinations:
          local: {{kind: local, path: {tmp_path}}}
        jobs:
          j:
            backends: [db]
            destination: local
            select: {select}
    """)
    result = cli("-c", config, "config", "validate")
    assert result.exit_code == 2 and problem in result.stderr, result.stderr
    assert "storagectl.yaml:" in result.stderr
