"""pgbench-style scripts, the form of every SQL workload (built-in and ``sql:FILE``).

A script is ``\\set NAME random(LO, HI)`` (or ``\\set NAME EXPR``) lines followed by statements ending
in ``;``; ``:NAME`` in a statement is a bound parameter. Expressions are integer arithmetic over
numbers and ``:variables``; ``:scale`` (branches) and ``:keyspace`` (accounts) are predefined.
Nothing in a script is ever evaluated as Python.
"""

from __future__ import annotations

import ast
import operator
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from storagectl.errors import UsageError

_VARIABLE = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_SET = re.compile(r"^\\set\s+([A-Za-z_]\w*)\s+(.+?)\s*$")
_RANDOM = re.compile(r"^random\s*\((.+),(.+)\)$")
_OPERATORS: dict[type, Callable[[int, int], int]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
    ast.Div: operator.floordiv, ast.Mod: operator.mod}

TPCB_HEAD = """\\set aid random(1, :keyspace)
\\set bid random(1, :scale)
\\set tid random(1, 10 * :scale)
\\set delta random(-5000, 5000)
"""
BUILTIN_SCRIPTS = {
    "select-pk": "\\set aid random(1, :keyspace)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n",
    "update-pk": TPCB_HEAD + "UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;\n",
    "insert": TPCB_HEAD + "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
              "VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);\n",
    "tpcb-like": TPCB_HEAD + """BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
""",
}


@dataclass(frozen=True)
class Statement:
    text: str  # as written, :variables included
    variables: tuple[str, ...]  # in order of appearance, one parameter each

    def numbered(self, placeholder: Callable[[int], str]) -> str:
        """The text with each :variable replaced by ``placeholder(position)`` ($1 or ?)."""
        counter = iter(range(1, len(self.variables) + 1))
        return _VARIABLE.sub(lambda match: placeholder(next(counter)), self.text)


@dataclass(frozen=True)
class Draw:
    name: str
    low: int
    high: int  # equal to low: a constant


@dataclass(frozen=True)
class Script:
    draws: tuple[Draw, ...]
    statements: tuple[Statement, ...]
    source: str = "script"  # the file of ``sql:FILE``, else the workload's name: errors name it

    def values(self, rng: random.Random) -> dict[str, int]:
        """One value per variable, uniform in its range (``random()`` scaled: randint costs 4x more
        per operation)."""
        draw = rng.random
        return {d.name: d.low + int(draw() * (d.high - d.low + 1)) for d in self.draws}

    def sample_values(self, statement: Statement) -> list[int]:
        """Parameters for ``statement`` from the bottom of each range: enough to compile it."""
        lows = {d.name: d.low for d in self.draws}
        return [lows[name] for name in statement.variables]

    def unpreparable(self, number: int, message: str) -> UsageError:
        """Statement ``number`` (from 1) does not compile: every SQL kind refuses the script with this
        before the run, rather than count each op as an error."""
        return UsageError(f"{self.source}: statement {number} fails to prepare: {message}")

    @property
    def transactional(self) -> bool:
        return bool(self.statements) and self.statements[0].text.upper().startswith(("BEGIN", "START"))


def parse_script(text: str, constants: dict[str, int], source: str = "script") -> Script:
    known = dict(constants)
    drawn: set[str] = set()  # variables drawn at random: an expression cannot use them (one value per script)
    draws: list[Draw] = []
    body: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("\\"):
            draw = _parse_set(stripped, known, f"{source}:{number}", drawn)
            known[draw.name] = draw.high
            if draw.low != draw.high:
                drawn.add(draw.name)
            else:
                drawn.discard(draw.name)
            draws.append(draw)
        elif stripped and not stripped.startswith("--"):
            body.append(line)
    statements = tuple(_statement(part.strip(), known, source) for part in "\n".join(body).split(";")
                       if part.strip())
    if not statements:
        raise UsageError(f"{source}: no SQL statement (statements end with ';')")
    drawn = {draw.name for draw in draws}
    used = {name for statement in statements for name in statement.variables}
    fixed = tuple(Draw(name, value, value) for name, value in constants.items() if name in used - drawn)
    return Script(fixed + tuple(draws), statements, source)


def _statement(text: str, known: dict[str, int], source: str) -> Statement:
    names = tuple(_VARIABLE.findall(text))
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise UsageError(f"{source}: :{unknown[0]} is used but never \\set")
    return Statement(text, names)


def _parse_set(line: str, known: dict[str, int], where: str, drawn: set[str]) -> Draw:
    match = _SET.match(line)
    if not match:
        raise UsageError(f"{where}: expected \\set NAME random(LO, HI) or \\set NAME EXPR, got {line!r}")
    name, expression = match.groups()
    ranged = _RANDOM.match(expression)
    if ranged:
        low, high = (_evaluate(part, known, where, drawn) for part in ranged.groups())
        if low > high:
            raise UsageError(f"{where}: random({low}, {high}) is an empty range")
        return Draw(name, low, high)
    value = _evaluate(expression, known, where, drawn)
    return Draw(name, value, value)


def _evaluate(expression: str, known: dict[str, int], where: str, drawn: set[str]) -> int:
    def substitute(match: re.Match[str]) -> str:
        if match.group(1) in drawn:  # it was evaluated once, at the range's top: every op got that value
            raise UsageError(f"{where}: :{match.group(1)} is drawn at random; a \\set expression takes numbers, "
                             ":scale, :keyspace and fixed \\set values only",
                             hint=f"Try: use :{match.group(1)} in the statement itself (e.g. :{match.group(1)} * 2)")
        if match.group(1) not in known:
            raise UsageError(f"{where}: :{match.group(1)} is not set")
        return f"({known[match.group(1)]})"

    text = _VARIABLE.sub(substitute, expression.strip())
    try:
        return _arithmetic(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError):
        raise UsageError(f"{where}: {expression.strip()!r} is not integer arithmetic") from None


def _arithmetic(node: ast.AST) -> int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _arithmetic(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_arithmetic(node.left), _arithmetic(node.right))
    raise ValueError("not arithmetic")


def load_script(workload: str, script_path: object, constants: dict[str, int], extra: dict[str, str]) -> Script:
    """The script of a built-in workload name, or of ``sql:FILE``."""
    if script_path is not None:
        from pathlib import Path

        path = Path(str(script_path))
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
        return parse_script(text, constants, str(path))
    return parse_script({**BUILTIN_SCRIPTS, **extra}[workload], constants, workload)
