"""`storagectl migrate data`: move data between backends — plan (reads only), run (resumable), verify."""

from __future__ import annotations

from dataclasses import asdict
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from storagectl.cli import complete
from storagectl.cli.output import note, print_json, print_table
from storagectl.cli.state import AppState, DryRunOption, OutputFormat, OutputOption, YesOption, state_of

if TYPE_CHECKING:
    from storagectl.datamove.model import DataMigrationRequest, MigrationPlan, RunResult

app = typer.Typer(no_args_is_help=True,
                  help="Move data between backends: plan (reads only), run (resumable), verify (proves equal).")


class OnErrorChoice(StrEnum):
    stop = "stop"
    skip = "skip"


FromOption = Annotated[str, typer.Option("--from", metavar="BACKEND", help="The source backend.",
                                         autocompletion=complete.backend_names)]
ToOption = Annotated[str, typer.Option("--to", metavar="BACKEND", help="The target backend.",
                                       autocompletion=complete.backend_names)]
TableOption = Annotated[list[str] | None, typer.Option(
    "--table", "-t", metavar="TABLE", help="Only this table (repeatable). Default: all.")]
ExcludeOption = Annotated[list[str] | None, typer.Option(
    "--exclude", metavar="TABLE", help="Not this table (repeatable).")]
PatternOption = Annotated[str | None, typer.Option(
    "--pattern", metavar="GLOB", help="Redis: only keys matching this glob.")]
TypeOption = Annotated[list[str] | None, typer.Option(
    "--type", metavar="TYPE", help="Redis: only keys of this type (repeatable).")]
LabelOption = Annotated[list[str] | None, typer.Option(
    "--label", metavar="LABEL", help="Neo4j: only nodes with this label (repeatable).")]


def _request(state: AppState, source: str, target: str, **options: Any) -> DataMigrationRequest:
    from storagectl.datamove.api import open_request
    from storagectl.datamove.model import Selection

    selection = Selection(tables=tuple(options.pop("table") or ()), exclude=tuple(options.pop("exclude") or ()),
                          pattern=options.pop("pattern"), types=tuple(options.pop("types") or ()),
                          labels=tuple(options.pop("label") or ()))
    return open_request(state.config, source, target, selection=selection, **options)


@app.command("plan")
def plan_cmd(ctx: typer.Context, source: FromOption, target: ToOption, table: TableOption = None,
             exclude: ExcludeOption = None, pattern: PatternOption = None, types: TypeOption = None,
             label: LabelOption = None,
             on_error: Annotated[OnErrorChoice, typer.Option(
                 "--on-error", metavar="MODE", help="stop or skip: exit 1 when rows would be rejected under stop.",
             )] = OnErrorChoice.stop,
             output: OutputOption = None) -> None:
    """Read the source, write nothing: per table the column types on the target, row estimates, and
    the rows that would be rejected."""
    from storagectl.datamove import api

    state = state_of(ctx)
    request = _request(state, source, target, table=table, exclude=exclude, pattern=pattern, types=types,
                       label=label, on_error=on_error.value)
    result = api.plan(request)
    _render_plan(state, result, output)
    if result.rejected_rows and on_error == OnErrorChoice.stop:
        raise typer.Exit(1)


@app.command("run")
def run_cmd(ctx: typer.Context, source: FromOption, target: ToOption, table: TableOption = None,
            exclude: ExcludeOption = None, pattern: PatternOption = None, types: TypeOption = None,
            label: LabelOption = None,
            parallel: Annotated[int, typer.Option("--parallel", "-j", min=1, metavar="N",
                                                  help="Tables copied at the same time.")] = 1,
            resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run.")] = False,
            on_error: Annotated[OnErrorChoice, typer.Option(
                "--on-error", metavar="MODE", help="stop (default) or skip rejected rows to a rejects file.",
            )] = OnErrorChoice.stop,
            verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Prove the copy equal at the end.")]
            = True,
            dry_run: DryRunOption = False, yes: YesOption = False, output: OutputOption = None) -> None:
    """Copy the data, resumably, then verify it unless --no-verify."""
    from storagectl.cli.progress import progress_view
    from storagectl.datamove import api

    state = state_of(ctx)
    request = _request(state, source, target, table=table, exclude=exclude, pattern=pattern, types=types,
                       label=label, parallel=parallel, resume=resume, on_error=on_error.value, verify=verify,
                       dry_run=dry_run, allow_nonempty_target=yes)
    if dry_run:
        _render_plan(state, api.plan(request), output)
        return
    with progress_view(state) as progress:
        result = api.run(request, progress)
    _render_result(state, result, output)
    api.raise_on_mismatch(result)


@app.command("verify")
def verify_cmd(ctx: typer.Context, source: FromOption, target: ToOption, table: TableOption = None,
               exclude: ExcludeOption = None, pattern: PatternOption = None, types: TypeOption = None,
               label: LabelOption = None,
               show_diffs: Annotated[bool, typer.Option("--show-diffs", help="List the differing row keys.")] = False,
               output: OutputOption = None) -> None:
    """Recompute both sides and compare; exit 6 on any difference."""
    from storagectl.datamove import api

    state = state_of(ctx)
    request = _request(state, source, target, table=table, exclude=exclude, pattern=pattern, types=types,
                       label=label, show_diffs=show_diffs)
    result = api.verify(request)
    _render_result(state, result, output)
    api.raise_on_mismatch(result)


def _render_plan(state: AppState, plan: MigrationPlan, output: OutputFormat | None) -> None:
    if (output or state.output) == OutputFormat.json:
        print_json({"source": plan.source, "target": plan.target, "pair": plan.pair,
                    "rejected_rows": plan.rejected_rows, "items": [asdict(item) for item in plan.items]})
        return
    rows = [[item.source, item.target, "" if item.row_estimate is None else item.row_estimate, item.chunking,
             item.rejected_rows, "; ".join(item.problems)] for item in plan.items]
    print_table(state, ["source", "target", "rows (est.)", "chunks", "rejected", "problems"], rows,
                title=f"{plan.pair}: {plan.source} → {plan.target}")
    for item in plan.items:
        for column in item.columns:
            if column.note:
                note(state, f"{item.source}.{column.name}: {column.source_type} → {column.target_type} ({column.note})")


def _render_result(state: AppState, result: RunResult, output: OutputFormat | None) -> None:
    if (output or state.output) == OutputFormat.json:
        data = asdict(result)
        data["rejects_path"] = str(result.rejects_path) if result.rejects_path else None
        print_json(data)
        return
    rows = [[item.source, item.target, item.status, item.rows, item.rejected, f"{item.duration_s:.1f}s",
             item.first_bad_chunk or ""] for item in result.items]
    print_table(state, ["source", "target", "status", "rows", "rejected", "time", "first bad chunk"], rows)
    if result.rejects_path:
        note(state, f"rejected rows written to {result.rejects_path}")


