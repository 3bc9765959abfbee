"""`storagectl migrate data`: move data between backends — plan (reads only), run (resumable), verify."""

from __future__ import annotations

from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from storagectl.cli import complete
from storagectl.cli.output import note, print_json, print_table
from storagectl.cli.state import AppState, DryRunOption, OutputFormat, OutputOption, PlainUsage, YesOption, state_of

if TYPE_CHECKING:
    from storagectl.datamove.model import DataMigrationRequest, MigrationPlan, RunResult

app = typer.Typer(no_args_is_help=True,
                  help="Move data between backends: plan (reads only), run (resumable), verify (proves equal).")


class OnErrorChoice(StrEnum):
    stop = "stop"
    skip = "skip"


NameArgument = Annotated[str | None, typer.Argument(
    metavar="NAME", help="A named plan from the config's data_migrations: section.", show_default=False,
    autocompletion=complete.data_migration_names)]
FromOption = Annotated[str | None, typer.Option("--from", metavar="BACKEND", help="The source backend.",
                                                autocompletion=complete.backend_names)]
ToOption = Annotated[str | None, typer.Option("--to", metavar="BACKEND", help="The target backend.",
                                              autocompletion=complete.backend_names)]
MapOption = Annotated[Path | None, typer.Option(
    "--map", metavar="FILE", help="SQL: a YAML file of table maps (renames, casts, expressions), as in a plan.",
    dir_okay=False)]
BatchOption = Annotated[int | None, typer.Option(
    "--batch-rows", min=1, metavar="N", help="SQL: rows per committed chunk (default 50000).")]
TableOption = Annotated[list[str] | None, typer.Option(
    "--table", "-t", metavar="TABLE", help="Only the tables matching this glob (repeatable). Default: all.")]
ExcludeOption = Annotated[list[str] | None, typer.Option(
    "--exclude-table", "--exclude", "-T", metavar="TABLE", help="Not the tables matching this glob (repeatable).")]
PatternOption = Annotated[str | None, typer.Option(
    "--pattern", metavar="GLOB", help="Redis: only keys matching this glob.")]
TypeOption = Annotated[list[str] | None, typer.Option(
    "--type", metavar="TYPE", help="Redis: only keys of this type (repeatable).")]
LabelOption = Annotated[list[str] | None, typer.Option(
    "--label", metavar="LABEL", help="Neo4j: only nodes with this label (repeatable).")]


def _request(state: AppState, name: str | None, source: str | None, target: str | None,
             **options: Any) -> DataMigrationRequest:
    from storagectl.datamove.api import open_request
    from storagectl.selection import Selection

    pattern = options.pop("pattern")
    selection = Selection(tables=tuple(options.pop("table") or ()),
                          exclude_tables=tuple(options.pop("exclude") or ()),
                          patterns=(pattern,) if pattern else (), types=tuple(options.pop("types") or ()),
                          labels=tuple(options.pop("label") or ()))
    return open_request(state.quick_config, source, target, plan_name=name, selection=selection, **options)


@app.command("plan", cls=PlainUsage)
def plan_cmd(ctx: typer.Context, name: NameArgument = None, source: FromOption = None, target: ToOption = None,
             table: TableOption = None, exclude: ExcludeOption = None, pattern: PatternOption = None,
             types: TypeOption = None, label: LabelOption = None, map_file: MapOption = None,
             batch_rows: BatchOption = None,
             on_error: Annotated[OnErrorChoice | None, typer.Option(
                 "--on-error", metavar="MODE", help="stop (default) or skip: exit 1 when rows would be rejected "
                 "under stop.", show_default=False)] = None,
             yes: Annotated[bool, typer.Option("--yes", "-y", help="Check as for `run --yes`: a non-empty target "
                                               "table is replaced, not a reason to stop.")] = False,
             output: OutputOption = None) -> None:
    """Read the source and the target, write nothing: per table the column types on the target, row
    estimates, the rows that would be rejected, and what would stop a run (exit as the run would)."""
    from storagectl.datamove import api

    state = state_of(ctx)
    request = _request(state, name, source, target, table=table, exclude=exclude, pattern=pattern, types=types,
                       label=label, map_file=map_file, batch_rows=batch_rows,
                       on_error=on_error.value if on_error else None, allow_nonempty_target=yes)
    _show_plan(state, request, api.plan(request), output)


@app.command("run", cls=PlainUsage)
def run_cmd(ctx: typer.Context, name: NameArgument = None, source: FromOption = None, target: ToOption = None,
            table: TableOption = None, exclude: ExcludeOption = None, pattern: PatternOption = None,
            types: TypeOption = None, label: LabelOption = None, map_file: MapOption = None,
            batch_rows: BatchOption = None,
            parallel: Annotated[int | None, typer.Option(
                "--parallel", "-j", min=1, metavar="N", show_default=False,
                help="Chunks copied at the same time, a large table by several workers (default 1); Redis: "
                     "cluster primaries at a time; a SQLite target and Neo4j: ignored.")] = None,
            resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run.")] = False,
            on_error: Annotated[OnErrorChoice | None, typer.Option(
                "--on-error", metavar="MODE", help="stop (default) or skip rejected rows to a rejects file.",
                show_default=False)] = None,
            rejects: Annotated[Path | None, typer.Option(
                "--rejects", metavar="FILE", dir_okay=False,
                help="SQL, --on-error skip: the rejects file (default: rejects-SRC-DST-TIME.jsonl by the config).")]
            = None,
            verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Prove the copy equal at the end.")]
            = True,
            show_diffs: Annotated[bool, typer.Option("--show-diffs", help="List the differing row keys.")] = False,
            dry_run: DryRunOption = False, yes: YesOption = False, output: OutputOption = None) -> None:
    """Copy the data, resumably, then verify it unless --no-verify."""
    from storagectl.cli.progress import progress_view
    from storagectl.datamove import api

    state = state_of(ctx)
    request = _request(state, name, source, target, table=table, exclude=exclude, pattern=pattern, types=types,
                       label=label, map_file=map_file, batch_rows=batch_rows, parallel=parallel, resume=resume,
                       on_error=on_error.value if on_error else None, rejects_path=rejects, verify=verify,
                       show_diffs=show_diffs, dry_run=dry_run, allow_nonempty_target=yes)
    for line in api.notes(request):
        note(state, line)
    if dry_run:
        _show_plan(state, request, api.plan(request), output)
        return
    with progress_view(state) as progress:
        result = api.run(request, progress)
    _render_result(state, result, output)
    api.raise_on_mismatch(result, showed_diffs=request.show_diffs)


@app.command("verify", cls=PlainUsage)
def verify_cmd(ctx: typer.Context, name: NameArgument = None, source: FromOption = None, target: ToOption = None,
               table: TableOption = None, exclude: ExcludeOption = None, pattern: PatternOption = None,
               types: TypeOption = None, label: LabelOption = None, map_file: MapOption = None,
               batch_rows: BatchOption = None,
               show_diffs: Annotated[bool, typer.Option("--show-diffs", help="List the differing row keys.")] = False,
               output: OutputOption = None) -> None:
    """Recompute both sides and compare; exit 6 on any difference."""
    from storagectl.datamove import api

    state = state_of(ctx)
    request = _request(state, name, source, target, table=table, exclude=exclude, pattern=pattern, types=types,
                       label=label, map_file=map_file, batch_rows=batch_rows, show_diffs=show_diffs)
    result = api.verify(request)
    _render_result(state, result, output)
    api.raise_on_mismatch(result, showed_diffs=request.show_diffs)


def _show_plan(state: AppState, request: DataMigrationRequest, plan: MigrationPlan,
               output: OutputFormat | None) -> None:
    """The plan, then the exit the run would give: the first error it would stop with before any row
    moves, else 1 when rows would be rejected under --on-error stop."""
    from storagectl.datamove.state import raise_first

    _render_plan(state, plan, output)
    raise_first(plan.blockers)  # as the run says it: the first, the others under it
    if plan.rejected_rows and request.on_error == "stop":
        from storagectl.errors import OperationFailed

        samples = "reject_samples in the JSON" if (output or state.output) == OutputFormat.json else "the samples above"
        raise OperationFailed(f"{plan.rejected_rows} row(s) would be rejected, and --on-error stop (the default) "
                              "would stop the run at the first",
                              hint="Try: --on-error skip to write them to a rejects file and go on, or correct "
                                   f"them in the source ({samples} name them)")


def _render_plan(state: AppState, plan: MigrationPlan, output: OutputFormat | None) -> None:
    if (output or state.output) == OutputFormat.json:
        print_json({"source": plan.source, "target": plan.target, "pair": plan.pair,
                    "rejected_rows": plan.rejected_rows, "items": [asdict(item) for item in plan.items],
                    "blocked_by": [{"error": b.message, "hint": b.hint, "exit_code": int(b.exit_code)}
                                   for b in plan.blockers]})
        return
    rows = [[item.source, item.target, "" if item.row_estimate is None else item.row_estimate, item.chunking,
             item.rejected_rows, "; ".join(item.problems)] for item in plan.items]
    print_table(state, ["source", "target", "rows (est.)", "chunks", "rejected", "problems"], rows,
                title=f"{plan.pair}: {plan.source} → {plan.target}")
    columns = [[item.target, column.name, column.source_type, column.target_type, column.note]
               for item in plan.items for column in item.columns]
    if columns:
        print_table(state, ["table", "column", "source type", "target type", "what the values hold"], columns)
    for item in plan.items:
        for sample in item.reject_samples:
            note(state, f"{item.source}: row {sample.key} {sample.column}: {sample.reason}")


def _render_result(state: AppState, result: RunResult, output: OutputFormat | None) -> None:
    if (output or state.output) == OutputFormat.json:
        data = asdict(result)
        data["rejects_path"] = str(result.rejects_path) if result.rejects_path else None
        print_json(data)
        return
    rows = [[item.source, item.target, item.status, item.rows, item.rejected, f"{item.duration_s:.1f}s",
             item.first_bad_chunk or ""] for item in result.items]
    headers = ["source", "target", "status", "rows", "rejected", "time", "first bad chunk"]
    if any(item.verified_by for item in result.items):
        headers.append("verified by")
        for row, item in zip(rows, result.items, strict=True):
            row.append(item.verified_by or "")
    print_table(state, headers, rows)
    for item in result.items:
        if item.diff_keys:
            note(state, f"{item.source}: differing rows: {', '.join(item.diff_keys)}")
        if item.detail and item.status == "mismatch":
            note(state, f"{item.source}: {item.detail}")
    if result.rejects_path:
        note(state, f"rejected rows written to {result.rejects_path}")
    verdict = _verdict(result)
    if verdict:
        note(state, verdict)


def _verdict(result: RunResult) -> str | None:
    """The run's or the verify's last line when the copy is proven equal or was not checked (a
    difference is the error that follows)."""
    if result.verified is None:
        return "not verified (--no-verify): `storagectl migrate data verify` with the same arguments proves the copy"
    if result.verified:
        return f"verified: the target equals the source ({len(result.items)} of {len(result.items)} equal)"
    return None
