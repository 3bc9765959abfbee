"""`storagectl backends`: the configured registry as a table."""

from __future__ import annotations

import typer

from storagectl.cli.output import print_json, print_table
from storagectl.cli.state import OutputFormat, OutputOption, state_of


def backends(ctx: typer.Context, output: OutputOption = None) -> None:
    """List the configured backends: name, kind, endpoint (secrets masked), description."""
    from storagectl.backends import selected_backends

    state = state_of(ctx)
    rows = [
        {"name": b.name, "kind": b.kind, "endpoint": b.endpoint(), "description": b.settings.description}
        for b in selected_backends(state.config, None)
    ]
    if state.format(output) is OutputFormat.json:
        print_json(rows)
        return
    print_table(state, ["Name", "Kind", "Endpoint", "Description"],
                [[r["name"], r["kind"], r["endpoint"], r["description"]] for r in rows])
