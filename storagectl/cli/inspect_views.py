"""The bodies of `storagectl inspect` and its views, without typer: they also run from
storagectl.cli.quick. inspect_cmd.py declares the options and calls these functions."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from storagectl.cli.appstate import AppState, OutputFormat
from storagectl.cli.output import note, print_json, print_line, print_table


class TableSort(StrEnum):
    size = "size"
    rows = "rows"
    dead = "dead"
    name = "name"


class StatementSort(StrEnum):
    total = "total"
    calls = "calls"
    mean = "mean"
    rows = "rows"


def overview(state: AppState, invoked_subcommand: str | None, backend: list[str] | None, budget: float | None,
             output: OutputFormat | None) -> None:
    """`inspect`: the group's options; the overview itself when no view is named."""
    if output is not None:  # `inspect -o json tables ...` means the view's output too
        state.output = output
    if invoked_subcommand is None:
        run_view(state, backend, "overview", output, budget=budget)


def tables(state: AppState, backend: str, schema: str | None, sort: TableSort, top: int, exact: bool, chunks: bool,
           budget: float | None, output: OutputFormat | None) -> None:
    run_view(state, [backend], "tables", output, schema=schema, sort=sort.value, top=top, exact=exact, chunks=chunks,
             budget=budget)


def indexes(state: AppState, backend: str, top: int, budget: float | None, output: OutputFormat | None) -> None:
    run_view(state, [backend], "indexes", output, top=top, budget=budget)


def queries(state: AppState, backend: str, top: int, sort: StatementSort, interval: float | None,
            budget: float | None, output: OutputFormat | None) -> None:
    run_view(state, [backend], "queries", output, top=top, sort=sort.value, interval=interval, budget=budget)


def keys(state: AppState, backend: str, pattern: str | None, delimiter: str, depth: int, top: int,
         max_keys: int | None, pause: float, samples: int | None, budget: float | None,
         output: OutputFormat | None) -> None:
    run_view(state, [backend], "keys", output, pattern=pattern, delimiter=delimiter, depth=depth, top=top,
             max_keys=max_keys, pause=pause, samples=samples, budget=budget)


def graph(state: AppState, backend: str, budget: float | None, output: OutputFormat | None) -> None:
    run_view(state, [backend], "graph", output, budget=budget)


def objects(state: AppState, backend: str, prefix: str | None, depth: int, top: int, budget: float | None,
            output: OutputFormat | None) -> None:
    run_view(state, [backend], "objects", output, prefix=prefix, depth=depth, top=top, budget=budget)


def run_view(state: AppState, names: list[str] | None, view: str, output: Any, **options: Any) -> None:
    """Inspect ``names`` (all backends when None) with ``view``; the report as JSON or tables."""
    from storagectl.backends import selected_backends
    from storagectl.errors import Interrupted, UsageError
    from storagectl.inspect import InspectOptions, inspect_backends

    targets = selected_backends(state.quick_config, names)
    if not targets:
        raise UsageError("no backends configured", hint="Try: add a backend under `backends:` in the config")
    reports = inspect_backends(targets, view, InspectOptions(**options))
    if state.format(output) is OutputFormat.json:
        print_json({"view": view, "backends": [r.to_dict() for r in reports]})
    else:
        _render(state, reports)
    if any(r.stopped == "interrupted" for r in reports):
        raise Interrupted("interrupted; the report above has what was gathered until then")


def _render(state: AppState, reports: list) -> None:
    for report in reports:
        print_line(state, _heading(report))
        if report.summary:
            print_table(state, ["Figure", "Value"], [[name, _cell(v)] for name, v in report.summary.items()])
        for name, rows in report.sections.items():
            columns = list(dict.fromkeys(key for row in rows for key in row))
            print_table(state, columns, [[_cell(row.get(c)) for c in columns] for row in rows],
                        title=name.replace("_", " "))
        for line in report.notes:
            note(state, f"note: {report.backend}: {line}")


def _heading(report: Any) -> str:
    state = report.error or (f"incomplete ({report.stopped})" if report.stopped else "")
    version = f", {report.server_version}" if report.server_version else ""
    return f"{report.backend} ({report.kind}{version}){': ' + state if state else ''}"


def _cell(value: Any) -> str:
    """A figure for people: bytes in IEC units, ``~`` for estimates, ``±`` for sampled ones."""
    from storagectl.inspect import Figure, Provenance
    from storagectl.units import human_bytes

    if not isinstance(value, Figure):
        return _plain(value)
    if value.value is None:
        return "-"
    shown = human_bytes(value.value) if value.unit == "bytes" else _plain(value.value)
    if value.provenance is Provenance.SAMPLED:
        bound = human_bytes(value.error_bound) if value.unit == "bytes" else f"{value.error_bound:,.0f}"
        return f"~{shown} ±{bound}"
    return f"~{shown}" if value.provenance is Provenance.ESTIMATE else shown


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items())
    if hasattr(value, "isoformat"):
        return value.isoformat(timespec="seconds")
    return str(value)
