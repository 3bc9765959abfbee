"""`storagectl bench`: load-test a backend (`run`) and gate on a regression (`compare`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from storagectl.cli import complete
from storagectl.cli.output import note, print_json, print_table
from storagectl.cli.state import (
    AppState,
    OutputFormat,
    OutputOption,
    PlainUsage,
    duration_value,
    size_value,
    state_of,
)

app = typer.Typer(no_args_is_help=True, help="Load-test a backend with honest percentiles; compare two results.")


def _ratio(value: str) -> tuple[int, int]:
    from storagectl.errors import UsageError

    parts = value.split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or parts == ["0", "0"]:
        raise UsageError(f"--ratio {value!r} is not SET:GET such as 1:10")
    return int(parts[0]), int(parts[1])


@app.command("run")
def run(
    ctx: typer.Context,
    backend: Annotated[str, typer.Option("--backend", "-b", metavar="BACKEND", help="The backend to load.",
                                         autocompletion=complete.backend_names)],
    workload: Annotated[str, typer.Option(
        "--workload", "-w", metavar="WORKLOAD",
        help="select-pk, insert, update-pk, tpcb-like, sql:FILE, ts-insert, ts-range (PostgreSQL, TimescaleDB, "
             "SQLite); get, set, mixed, hset, hget, lpush, rpop, zadd, zrange, pubsub (Redis); node-by-key, "
             "create-node, expand-1hop, cypher:FILE (Neo4j); put, get, mixed (S3).")],
    clients: Annotated[int, typer.Option("--clients", "-c", metavar="N", help="Connections in use at once.")] = 1,
    duration: Annotated[float | None, typer.Option(
        "--duration", "-T", parser=duration_value, metavar="DURATION",
        help="Measure this long (30s, 2m) [default: 10s]; excludes -n.")] = None,
    count: Annotated[int | None, typer.Option("--count", "-n", metavar="N",
                                              help="Measure this many operations; excludes -T.")] = None,
    warmup: Annotated[float, typer.Option("--warmup", parser=duration_value, metavar="DURATION", show_default=False,
                                          help="Run this long first, unmeasured [default: 5s].")] = 5.0,
    rate: Annotated[float | None, typer.Option(
        "--rate", metavar="OPS",
        help="Open loop: this many ops/s on a fixed schedule; latency counts from each op's intended start.")] = None,
    pipeline: Annotated[int, typer.Option("--pipeline", "-P", metavar="N",
                                          help="Redis: commands sent together per client.")] = 1,
    data_size: Annotated[int | None, typer.Option("--data-size", "-d", parser=size_value, metavar="BYTES",
                                                  help="Value size (Redis) [default: 100].")] = None,
    object_size: Annotated[int | None, typer.Option("--object-size", parser=size_value, metavar="BYTES",
                                                    help="Object size (S3) [default: 4KiB].")] = None,
    keyspace: Annotated[int | None, typer.Option(
        "--keyspace", metavar="N", help="Keys, rows (pgbench_accounts), nodes or objects set up first "
        "[default: 100000; Neo4j 10000, S3 1000].")] = None,
    ratio: Annotated[str, typer.Option("--ratio", metavar="SET:GET", help="Writes to reads of `mixed`.")] = "1:10",
    workers: Annotated[int | None, typer.Option(
        "--workers", "-j", metavar="N", show_default=False,
        help="Processes sharing the clients, like pgbench -j (PostgreSQL, TimescaleDB, Redis) [default: "
             "PostgreSQL closed loop one per CPU, at most one per client; else 1].")] = None,
    repeat: Annotated[int, typer.Option("--repeat", "-x", metavar="N",
                                        help="Run N times; report each run, the median and the spread.")] = 1,
    save: Annotated[Path | None, typer.Option("--save", metavar="FILE", dir_okay=False,
                                              help="Also write the full JSON result here.")] = None,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help="Run against a backend marked production: true (refused without it, "
                            "on a terminal too).")] = False,
    output: OutputOption = None,
) -> None:
    """Run a workload against a backend in its own namespace (removed afterwards) and report ops/s,
    errors by kind and latency percentiles from an HDR histogram."""
    from storagectl.backends import backend_from_config
    from storagectl.loadgen.run import BenchOptions, check_options, run_bench

    state = state_of(ctx)
    options = BenchOptions(
        workload=workload, clients=clients, duration_s=duration, count=count, warmup_s=warmup, rate=rate,
        pipeline=pipeline, data_size=object_size if object_size is not None else data_size, keyspace=keyspace,
        ratio=_ratio(ratio), repeat=repeat, workers=workers, yes=yes)
    if data_size is not None and object_size is not None:
        from storagectl.errors import UsageError

        raise UsageError("--data-size and --object-size are the same setting: give one of them")
    check_options(options)
    if save is not None:
        _check_save_target(save)
    target = backend_from_config(state.config, backend)
    with _LiveView(state, options) as view:
        result = run_bench(target, options, on_second=view.second, on_phase=view.phase)
    if state.format(output) is OutputFormat.json:
        print_json(result)
    else:
        _render_result(state, result)
    for warning in result["environment"]["warnings"]:
        note(state, f"warning: {warning}")
    if save is not None:
        _save_result(save, result)
    _refuse_all_failed(result)


def _refuse_all_failed(result: dict[str, Any]) -> None:
    """Exit 1 when not one operation succeeded: the figures would time errors, not the workload (a
    script that always fails, a wrong table), and a runbook must not read them as a result."""
    if result["ok"] or not result["error_count"]:
        return
    from storagectl.errors import OperationFailed

    kinds = ", ".join(f"{kind}: {count:,}" for kind, count in result["errors"].items())
    hint = ("Try: the workload's statement or command by hand against the backend (the error kinds are the "
            "server's)")
    if "EMPTY" in result["errors"]:
        hint = "Try: a --keyspace above the ops of the warm-up and the run (rpop pops each item once)"
    raise OperationFailed(f"every operation failed ({kinds}); the figures above time the errors", hint=hint)


def _check_save_target(save: Path) -> None:
    """Refused before the run: a folder that is not there would lose the whole run's result at the end."""
    import os

    from storagectl.errors import UsageError

    folder = save.parent
    if not folder.is_dir():
        raise UsageError(f"--save {save}: folder {folder} does not exist", hint=f"Try: mkdir -p {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--save {save}: folder {folder} is not writable")


def _save_result(save: Path, result: dict[str, Any]) -> None:
    from storagectl.errors import OperationFailed
    from storagectl.fsutil import atomic_write_text

    try:
        atomic_write_text(save, json.dumps(result, indent=2) + "\n")
    except OSError as exc:
        raise OperationFailed(f"--save {save}: cannot write the result ({exc.strerror}); it is printed above") \
            from None


class _LiveView:
    """ops/s and p99 per second: a rich live line on a terminal, plain lines on stderr otherwise."""

    def __init__(self, state: AppState, options: Any) -> None:
        self.state = state
        self.live: Any = None
        self.tty = sys.stderr.isatty() and not state.quiet
        self.headline = "corrected p99" if options.rate is not None else "p99"

    def __enter__(self) -> _LiveView:
        if self.tty:
            from rich.live import Live

            self.live = Live("", console=self.state.err, refresh_per_second=4, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def phase(self, text: str) -> None:
        if self.live is not None:
            self.live.update(text)
        else:
            note(self.state, f"bench: {text}")

    def second(self, row: dict[str, Any]) -> None:
        p99 = "-" if row["p99_ms"] is None else f"{row['p99_ms']:.3f} ms"
        errors = f", {row['errors']:,} errors" if row["errors"] else ""
        # "ops", not "ops/s": a counted run's last second is cut short (50 ops in its first 10 ms read
        # "50 ops/s" beside a table of 5,000 ops/s)
        line = f"second {row['second'] + 1}: {row['ops']:,} ops, {self.headline} {p99}{errors}"
        if self.live is not None:
            self.live.update(line)
        else:
            note(self.state, line)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.3f}"


def _render_result(state: AppState, result: dict[str, Any]) -> None:
    load, env = result["load"], result["environment"]
    state.out.print(
        f"{result['backend']['name']} ({env['server_version']}), workload {result['workload']['name']}: "
        f"{load['mode']}, {load['clients']} clients" + (f", rate {load['rate']:g} ops/s" if load["rate"] else ""),
        markup=False, highlight=False)
    rows = [["ops", f"{result['ops']:,}"], ["ops/s", f"{result['ops_per_s']:,.1f}"],
            ["errors", ", ".join(f"{k}: {v:,}" for k, v in result["errors"].items()) or "0"],
            ["elapsed", f"{result['elapsed_s']:.2f} s"],
            ["setup (not timed)", f"{result['setup']['items']:,} items in {result['setup']['seconds']:.2f} s"],
            ["client CPU", f"{env['client_cpu_pct']:.0f}% of one core ({env['client_cpus']} CPUs)"]]
    print_table(state, ["Figure", "Value"], rows)
    columns = ["Latency (ms)", "min", "p50", "p90", "p95", "p99", "p99.9", "max"]
    keys = ["min", "p50", "p90", "p95", "p99", "p99_9", "max"]
    latency_rows = []
    for label, summary in (("service time", result["latency_ms"]), ("corrected", result["corrected_latency_ms"])):
        if summary is not None:
            latency_rows.append([label] + [_ms(summary[k]) for k in keys])
    print_table(state, columns, latency_rows)
    if "repeat" in result:
        spread = result["repeat"]
        rows = [[str(i + 1), f"{run['ops_per_s']:,.1f}", _ms((run["corrected_latency_ms"] or run["latency_ms"]
                                                              or {}).get("p99"))]
                for i, run in enumerate(result["runs"])]
        rows.append([f"median (spread {spread['ops_per_s']['spread_pct']}%)", f"{spread['ops_per_s']['median']:,.1f}",
                     _ms(spread["p99_ms"]["median"])])
        print_table(state, ["Run", "ops/s", "p99 ms"], rows)
    if load["mode"] == "closed-loop":
        note(state, "closed loop: each client waits for its answer before the next request (--rate for open loop)")


@app.command("compare", cls=PlainUsage)
def compare(
    ctx: typer.Context,
    base: Annotated[Path, typer.Argument(metavar="BASE", help="The earlier result (bench run --save).")],
    new: Annotated[Path, typer.Argument(metavar="NEW", help="The result to judge.")],
    fail_if: Annotated[list[str] | None, typer.Option(
        "--fail-if", metavar="CONDITION",
        help="Exit 1 when it holds, e.g. 'p99>+10%', 'ops<-5%', 'p99>50' (ms), 'errors>0'. Repeatable.")] = None,
    output: OutputOption = None,
) -> None:
    """Two results side by side with the change per figure; exit 1 when a --fail-if condition holds."""
    from storagectl.errors import ExitCode
    from storagectl.loadgen.compare import compare_results, parse_condition

    state = state_of(ctx)
    conditions = [parse_condition(text) for text in fail_if or []]
    comparison = compare_results(_read_result(base, "BASE"), _read_result(new, "NEW"), conditions)
    if state.format(output) is OutputFormat.json:
        print_json(comparison)
    else:
        rows = [[_figure_label(row["figure"]), _figure(row["figure"], row["base"]), _figure(row["figure"], row["new"]),
                 "-" if row["change_pct"] is None else f"{row['change_pct']:+.1f}%"] for row in comparison["figures"]]
        print_table(state, ["Figure", "BASE", "NEW", "Change"], rows)
        for text in comparison["notes"]:
            note(state, f"note: {text}")
        for text in comparison["failed"]:
            note(state, f"failed: {text}")
    if comparison["failed"]:
        raise typer.Exit(ExitCode.FAILURE)


def _figure_label(figure: str) -> str:
    """The figure's name with its unit: ops/s, errors, latencies in ms."""
    return {"ops": "ops/s", "errors": "errors"}.get(figure, f"{figure} (ms)")


def _figure(figure: str, value: float | None) -> str:
    if value is None:
        return "-"
    if figure == "ops":
        return f"{value:,.1f}"
    return f"{value:,.3f}" if isinstance(value, float) else f"{value:,}"


def _read_result(path: Path, label: str) -> dict[str, Any]:
    from storagectl.errors import NotFound, UsageError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFound(f"{label} file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{label} file {path} is not a JSON bench result: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{label} file {path} is not a JSON bench result")
    return data
