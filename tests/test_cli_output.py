"""Tables drawn without rich on a pipe (storagectl.cli.output.plain_table) read exactly as rich draws them."""

from __future__ import annotations

import io
import random
import string
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table
from rich.text import Text

from storagectl.cli.appstate import AppState
from storagectl.cli.output import _cell, plain_table


def drawn_by_rich(columns, rows, title, width) -> str:
    """As print_table draws on a piped stdout (AppState.out: soft wrap, no colour)."""
    buffer = io.StringIO()
    console = Console(file=buffer, no_color=True, highlight=False, soft_wrap=True, width=width)
    table = Table(title=title, header_style="bold", show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*[Text(_cell(cell)) for cell in row])
    console.print(table)
    return buffer.getvalue()


def random_table(rng: random.Random):
    letters = string.ascii_letters + string.digits + " -_./@"
    text = lambda: "".join(rng.choice(letters) for _ in range(rng.randint(0, 14)))  # noqa: E731
    cell = lambda: rng.choice([text(), None, rng.randint(-5, 10**12), 2.5, True,  # noqa: E731
                               datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), Path("/srv/b"), "  two  spaces "])
    columns = [rng.choice(["ID", "Job", "Size", "Backend", "Contents", "a b", text() or "x"])
               for _ in range(rng.randint(1, 7))]
    rows = [[cell() for _ in columns] for _ in range(rng.randint(0, 4))]
    return columns, rows, rng.choice([None, "", "validation", "verify 20260101T000000Z-a1b2c3", text()])


def test_a_plain_table_is_what_rich_draws_on_a_pipe():
    rng = random.Random(19)
    drawn = 0
    for _ in range(1500):
        columns, rows, title = random_table(rng)
        width = rng.choice([30, 80, 200])
        plain = plain_table(columns, rows, title, width)
        if plain is not None:
            drawn += 1
            assert plain == drawn_by_rich(columns, rows, title, width), (columns, rows, title, width)
    assert drawn > 400  # the rest (too wide, markup in a title or header) left to rich


@pytest.mark.parametrize("columns, rows, title", [
    (["ID"], [["a" * 300]], None),  # wider than the console: rich folds it
    (["Name"], [["naïve"]], None),  # not ASCII: rich measures it
    (["Name"], [["tab\there"]], None),
    (["[bold]ID"], [], None),  # markup in a header
    (["ID"], [], "over :smile: budget"),  # an emoji code in the title
    (["ID"], [[Text("OK", style="green")]], None),  # a styled cell
    ([], [], None),
])
def test_what_only_rich_draws_is_left_to_rich(columns, rows, title):
    assert plain_table(columns, rows, title, 200) is None


def test_a_piped_backup_list_prints_the_table_rich_would(cli, write_config, tmp_path):
    config = write_config(f"destinations:\n  local: {{kind: local, path: {tmp_path / 'b'}}}\n")
    result = cli("-c", config, "backup", "list")
    assert result.exit_code == 0, result.stderr
    columns = ["ID", "Job", "Backend", "Kind", "Destination", "Finished", "Size", "Objects", "Encrypted", "Contents"]
    assert result.stdout == drawn_by_rich(columns, [], None, 200)


def printed_by_rich(text: str) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, no_color=True, highlight=False, soft_wrap=True, width=80)
    console.print(text, markup=False, highlight=False)
    return buffer.getvalue()


class _NoConsoles(AppState):
    """An AppState whose rich consoles must not be needed."""

    def __getattribute__(self, name):
        if name in ("out", "err"):
            raise AssertionError(f"rich console {name} used")
        return super().__getattribute__(name)


@pytest.mark.parametrize("method", ["print_line", "note"])
def test_a_line_on_a_pipe_is_what_rich_prints_and_plain_ones_need_no_rich(method, capsys, monkeypatch):
    from storagectl.cli import output

    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)
    rng = random.Random(7)
    letters = string.ascii_letters + string.digits + " -_./@:()[]~,"
    texts = ["pg (postgres, 15.8): incomplete (budget)", "over :smile: budget", "[bold]x[/bold]", "naïve", "a:b:c",
             *("".join(rng.choice(letters) for _ in range(rng.randint(0, 120))) for _ in range(300))]
    plain = 0
    for text in texts:
        rich_needed = not output._as_rich_prints_it(text)
        state = AppState() if rich_needed else _NoConsoles()
        getattr(output, method)(state, text)
        captured = capsys.readouterr()
        assert (captured.out if method == "print_line" else captured.err) == printed_by_rich(text), text
        plain += not rich_needed
    assert plain > 200 and not output._as_rich_prints_it("over :smile: budget")
