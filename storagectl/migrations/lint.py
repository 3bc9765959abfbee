"""Migration lint: pure functions that flag statements which lock tables or lose data.

Two views of a revision are linted with the same rules: the SQL Alembic renders for it in offline
mode (exactly what will run, for the backend's dialect), and, when a revision cannot be rendered
offline (it reads from the database while upgrading), its Python source.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass

_FLAGS = re.IGNORECASE | re.DOTALL
_CREATE_TABLE = re.compile(r"^\s*CREATE\s+(?:TEMP\w*\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\S+)", _FLAGS)
_CREATE_INDEX = re.compile(r"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\b(?P<rest>.*)", _FLAGS)
_INDEX_TABLE = re.compile(r"\bON\s+(?:ONLY\s+)?([^\s(]+)", _FLAGS)
_DROP_TABLE = re.compile(r"^\s*DROP\s+TABLE\b", _FLAGS)
_DROP_COLUMN = re.compile(r"\bALTER\s+TABLE\b.*\bDROP\s+COLUMN\b", _FLAGS)
_COLUMN_TYPE = re.compile(r"\bALTER\s+COLUMN\s+\S+\s+(?:SET\s+DATA\s+)?TYPE\b", _FLAGS)
_ADD_COLUMN = re.compile(r"\bALTER\s+TABLE\b.*\bADD\s+(?:COLUMN\b)?(?!\s*CONSTRAINT\b)", _FLAGS)
_NOT_NULL = re.compile(r"\bNOT\s+NULL\b", _FLAGS)
_DEFAULT = re.compile(r"\bDEFAULT\b", _FLAGS)
_SET_NOT_NULL = re.compile(r"\bALTER\s+COLUMN\s+\S+\s+SET\s+NOT\s+NULL\b", _FLAGS)
_STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")

MESSAGES = {
    "drop-table": "drops a table and all its rows",
    "drop-column": "drops a column and its data",
    "column-type": "changes a column type: may rewrite the table under an exclusive lock",
    "not-null": "adds NOT NULL without a default: fails on existing NULL rows, scans under an exclusive lock",
    "index-not-concurrent": "CREATE INDEX without CONCURRENTLY blocks writes to the table while it builds",
}


@dataclass(frozen=True)
class LintFinding:
    revision: str
    rule: str
    statement: str

    @property
    def message(self) -> str:
        return MESSAGES[self.rule]

    def __str__(self) -> str:
        return f"revision {self.revision}: {self.rule}: {self.message}: {self.statement}"

    def to_dict(self) -> dict[str, str]:
        return {"revision": self.revision, "rule": self.rule, "message": self.message,
                "statement": self.statement}


def split_statements(sql: str) -> list[str]:
    """Statements of a script whose statements end with ``;`` at the end of a line; comments dropped."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith(("--", "//"))]
    parts = _STATEMENT_END.split("\n".join(lines))
    return [part.strip() for part in parts if part.strip()]


def one_line(statement: str, limit: int = 160) -> str:
    text = " ".join(statement.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def lint_sql(revision: str, sql: str, dialect: str = "postgresql") -> list[LintFinding]:
    """Findings for the SQL of one revision, in statement order."""
    created: set[str] = set()
    findings = []
    for statement in split_statements(sql):
        table = _CREATE_TABLE.match(statement)
        if table:
            created.add(_bare_name(table[1]))
            continue
        findings += [LintFinding(revision, rule, one_line(statement))
                     for rule in _statement_rules(statement, dialect, created)]
    return findings


def _statement_rules(statement: str, dialect: str, created: set[str]) -> Iterator[str]:
    if _DROP_TABLE.match(statement):
        yield "drop-table"
    if _DROP_COLUMN.search(statement):
        yield "drop-column"
    if _COLUMN_TYPE.search(statement):
        yield "column-type"
    adds_not_null = _ADD_COLUMN.search(statement) and _NOT_NULL.search(statement)
    if (adds_not_null and not _DEFAULT.search(statement)) or _SET_NOT_NULL.search(statement):
        yield "not-null"
    index = _CREATE_INDEX.match(statement)
    if index and dialect == "postgresql" and not index["rest"].lstrip().upper().startswith("CONCURRENTLY"):
        on_table = _INDEX_TABLE.search(index["rest"])
        if not on_table or _bare_name(on_table[1]) not in created:
            yield "index-not-concurrent"


def _bare_name(name: str) -> str:
    return name.rsplit(".", 1)[-1].strip('"`[]').lower()


# -- the Python source of an Alembic revision --------------------------------------------------
_OP_RULES = {"drop_table": "drop-table", "drop_column": "drop-column"}


def lint_source(revision: str, source: str, dialect: str = "postgresql") -> list[LintFinding]:
    """Findings for the ``upgrade()`` function of a revision file (op.* calls and literal SQL)."""
    upgrade = _upgrade_function(source)
    if upgrade is None:
        return []
    findings: list[LintFinding] = []
    created: set[str] = set()
    for call in _calls_in_order(upgrade):
        name = _call_name(call)
        if name == "create_table" and call.args and isinstance(call.args[0], ast.Constant):
            created.add(str(call.args[0].value).lower())
        for rule in _call_rules(name, call, dialect, created):
            findings.append(LintFinding(revision, rule, one_line(ast.unparse(call))))
        if name in ("execute", "text") and call.args and isinstance(call.args[0], ast.Constant):
            findings += lint_sql(revision, str(call.args[0].value), dialect)
    return findings


def _upgrade_function(source: str) -> ast.FunctionDef | None:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    return next((node for node in tree.body
                 if isinstance(node, ast.FunctionDef) and node.name == "upgrade"), None)


def _calls_in_order(function: ast.FunctionDef) -> list[ast.Call]:
    calls = [node for node in ast.walk(function) if isinstance(node, ast.Call)]
    return sorted(calls, key=lambda call: (call.lineno, call.col_offset))


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _is_false(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _call_rules(name: str, call: ast.Call, dialect: str, created: set[str]) -> Iterator[str]:
    if name in _OP_RULES:
        yield _OP_RULES[name]
    if name == "alter_column" and _keyword(call, "type_") is not None:
        yield "column-type"
    if name == "alter_column" and _is_false(_keyword(call, "nullable")) and _keyword(call, "server_default") is None:
        yield "not-null"
    if name == "add_column" and any(_column_needs_default(arg) for arg in call.args):
        yield "not-null"
    if name == "create_index" and dialect == "postgresql":
        table = call.args[1] if len(call.args) > 1 else _keyword(call, "table_name")
        table_name = str(table.value).lower() if isinstance(table, ast.Constant) else ""
        if not _is_true(_keyword(call, "postgresql_concurrently")) and table_name not in created:
            yield "index-not-concurrent"


def _column_needs_default(node: ast.expr) -> bool:
    if not (isinstance(node, ast.Call) and _call_name(node) == "Column"):
        return False
    return _is_false(_keyword(node, "nullable")) and _keyword(node, "server_default") is None
