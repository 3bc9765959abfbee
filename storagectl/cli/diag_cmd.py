"""`storagectl diag`: health of every backend; exit 0 OK, 1 warning, 2 critical, 3 unknown."""

from __future__ import annotations

from typing import Annotated

import typer

from storagectl.cli import complete
from storagectl.cli.output import print_json, print_table, styled_status
from storagectl.cli.state import AppState, OutputFormat, OutputOption, state_of


def diag(
    ctx: typer.Context,
    backend: Annotated[list[str] | None, typer.Option(
        "--backend", "-b", metavar="BACKEND", help="Only this backend (repeatable). Default: all.",
        autocompletion=complete.backend_names,
    )] = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", "-t", min=0.1, metavar="SECONDS",
        help="Seconds each backend may take before it is reported unknown.",
    )] = 10.0,
    output: OutputOption = None,
) -> None:
    """Check every backend concurrently: reachability, auth, version, latency and health checks.

    Exit codes follow the monitoring convention: 0 OK, 1 warning, 2 critical, 3 unknown/unreachable.
    """
    from storagectl.backends import selected_backends
    from storagectl.diag import overall_status, run_diagnostics
    from storagectl.errors import UsageError

    state = state_of(ctx)
    targets = selected_backends(state.config, backend)
    if not targets:
        raise UsageError("no backends configured", hint="Try: add a backend under `backends:` in the config")
    reports = run_diagnostics(targets, timeout)
    status = overall_status(reports)
    if state.format(output) is OutputFormat.json:
        print_json({"status": status.value, "backends": [r.to_dict() for r in reports]})
    else:
        _render(state, reports)
    raise typer.Exit(status.exit_code)


def _render(state: AppState, reports: list) -> None:
    rows = []
    for report in reports:
        latency = f"{report.latency_ms:g} ms" if report.latency_ms is not None else None
        summary = report.error or f"{report.server_version}, {latency}"
        rows.append([report.backend, report.kind, styled_status(report.status.value), "connect", summary, ""])
        for check in report.checks:
            rows.append(["", "", styled_status(check.status.value), check.name, check.display, check.detail])
    print_table(state, ["Backend", "Kind", "Status", "Check", "Value", "Detail"], rows)
