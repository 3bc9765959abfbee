"""Pure parts of migrations: lint rules, statement splitting, lock waiting, offline-SQL sections."""

from __future__ import annotations

import textwrap

import pytest

from storagectl.migrations import RunResult, progress_summary
from storagectl.migrations.alembic_runner import split_by_revision
from storagectl.migrations.cypher import parse_version
from storagectl.migrations.lint import lint_source, lint_sql, split_statements
from storagectl.migrations.locking import wait_for


def rules(findings) -> list[str]:
    return [finding.rule for finding in findings]


@pytest.mark.parametrize(("sql", "expected"), [
    ("DROP TABLE users;", ["drop-table"]),
    ("ALTER TABLE users DROP COLUMN email;", ["drop-column"]),
    ("ALTER TABLE users ALTER COLUMN age TYPE BIGINT;", ["column-type"]),
    ("ALTER TABLE users ALTER COLUMN age SET DATA TYPE BIGINT USING age::bigint;", ["column-type"]),
    ("ALTER TABLE users ADD COLUMN email VARCHAR(50) NOT NULL;", ["not-null"]),
    ("ALTER TABLE users ADD COLUMN email VARCHAR(50) NOT NULL DEFAULT '';", []),
    ("ALTER TABLE users ADD COLUMN email VARCHAR(50);", []),
    ("ALTER TABLE users ALTER COLUMN email SET NOT NULL;", ["not-null"]),
    ("CREATE INDEX ix_users_email ON users (email);", ["index-not-concurrent"]),
    ("CREATE UNIQUE INDEX ix_users_email ON users (email);", ["index-not-concurrent"]),
    ("CREATE INDEX CONCURRENTLY ix_users_email ON users (email);", []),
    ("CREATE TABLE users (id INTEGER NOT NULL, PRIMARY KEY (id));", []),
    ("INSERT INTO users (id) VALUES (1);", []),
    ("-- DROP TABLE users;\nSELECT 1;", []),
])
def test_sql_rules(sql, expected):
    assert rules(lint_sql("abc", sql)) == expected


def test_index_on_a_table_created_in_the_same_revision_is_fine():
    sql = "CREATE TABLE orders (id INT);\n\nCREATE INDEX ix_orders_id ON orders (id);\n"
    assert lint_sql("abc", sql) == []
    assert rules(lint_sql("abc", "CREATE INDEX ix ON public.users (id);")) == ["index-not-concurrent"]


def test_index_rule_only_for_postgresql():
    assert lint_sql("abc", "CREATE INDEX ix ON users (id);", dialect="sqlite") == []


def test_finding_text_names_revision_rule_and_statement():
    [finding] = lint_sql("1a2b", "DROP TABLE\n   users;")
    assert str(finding) == "revision 1a2b: drop-table: drops a table and all its rows: DROP TABLE users"
    assert finding.to_dict()["rule"] == "drop-table"


def test_source_rules_look_only_at_upgrade():
    source = textwrap.dedent("""
        def upgrade():
            op.create_table('orders', sa.Column('id', sa.Integer))
            op.create_index('ix_orders', 'orders', ['id'])
            op.create_index('ix_users', 'users', ['email'])
            op.create_index('ix_users2', 'users', ['name'], postgresql_concurrently=True)
            op.add_column('users', sa.Column('email', sa.String(), nullable=False))
            op.add_column('users', sa.Column('flag', sa.Boolean(), nullable=False, server_default='0'))
            op.alter_column('users', 'age', type_=sa.BigInteger())
            op.alter_column('users', 'name', nullable=False)
            op.drop_column('users', 'legacy')
            op.execute("DROP TABLE old_stuff")

        def downgrade():
            op.drop_table('orders')
    """)
    assert rules(lint_source("r1", source)) == [
        "index-not-concurrent", "not-null", "column-type", "not-null", "drop-column", "drop-table",
    ]


def test_source_that_does_not_parse_has_no_findings():
    assert lint_source("r1", "def upgrade(:\n") == []


def test_split_statements_on_semicolons_at_line_end():
    text = "// comment\nCREATE (a {s: 'x;y'});\nMATCH (n)\nRETURN n\n;\n\n-- sql comment\nRETURN 1;"
    assert split_statements(text) == ["CREATE (a {s: 'x;y'})", "MATCH (n)\nRETURN n", "RETURN 1"]


def test_split_by_revision_sections():
    sql = ("CREATE TABLE alembic_version (x);\n-- Running upgrade  -> a1, first\n\nCREATE TABLE t (id INT);\n"
           "-- Running upgrade a1 -> b2, second\n\nDROP TABLE t;\n")
    assert [(rev, text.strip()) for rev, text in split_by_revision(sql)] == [
        ("a1", "CREATE TABLE t (id INT);"), ("b2", "DROP TABLE t;"),
    ]
    down = ("-- Running downgrade b2 -> a1, second\n\nCREATE TABLE t (id INT);\n"
            "-- Running downgrade a1 -> \nDROP TABLE t;\n")
    assert [rev for rev, _ in split_by_revision(down)] == ["b2", "a1"]


def test_wait_for_gives_up_at_the_timeout():
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    assert wait_for(lambda: False, 1.0, clock=lambda: now[0], sleep=sleep) is False
    assert now[0] == pytest.approx(1.0) and all(s <= 0.2 for s in sleeps)
    answers = iter([False, False, True])
    assert wait_for(lambda: next(answers), 5.0, clock=lambda: now[0], sleep=sleep) is True


@pytest.mark.parametrize(("text", "version"), [("3", 3), ("V003", 3), ("v12", 12)])
def test_parse_version(text, version):
    assert parse_version(text) == version


def test_parse_version_rejects_other_text():
    with pytest.raises(Exception, match="not a Cypher migration version"):
        parse_version("head~1")


def test_progress_summary():
    done = [RunResult("lite", "sqlite", "up", ["a", "b"], "b")]
    assert progress_summary(done, ["later"]) == "before the failure lite: 2 applied, now at b; not attempted: later"
    assert progress_summary([], []) == "nothing applied on other backends"
