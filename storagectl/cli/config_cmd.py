"""`storagectl config`: validate, show and create the configuration file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from storagectl.cli.output import note, print_json
from storagectl.cli.state import OutputFormat, OutputOption, PlainUsage, state_of
from storagectl.units import plural

app = typer.Typer(no_args_is_help=True, help="Validate, show and create the configuration file.")


@app.command("validate")
def validate(ctx: typer.Context, output: OutputOption = None) -> None:
    """Check the config file: syntax, unknown keys, types, references. Exit 2 when invalid."""
    state = state_of(ctx)
    config = state.config
    summary = {
        "valid": True, "path": str(config.path), "backends": len(config.backends),
        "destinations": len(config.destinations), "jobs": len(config.jobs),
    }
    if state.format(output) is OutputFormat.json:
        print_json(summary)
    elif not state.quiet:
        counts = ", ".join(plural(len(section), what) for section, what in (
            (config.backends, "backend"), (config.destinations, "destination"), (config.jobs, "job")))
        state.out.print(f"{config.path}: OK ({counts})", markup=False)


@app.command("show")
def show(ctx: typer.Context, output: OutputOption = None) -> None:
    """Print the effective configuration (defaults filled in, every secret as ***)."""
    from storagectl.config.public import public_config

    state = state_of(ctx)
    if state.format(output) is OutputFormat.json:
        print_json(public_config(state.config))
        return
    data = public_config(state.config, readable=True)
    import yaml

    state.out.print(yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip(), markup=False)


@app.command("init", cls=PlainUsage)
def init(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(
        metavar="PATH", help="Where to write the file.", dir_okay=False)] = Path("storagectl.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a starter config (SQLite + a local backup directory) to PATH."""
    from storagectl.config.starter import write_starter_config

    written = write_starter_config(path, overwrite=force)
    note(state_of(ctx), f"wrote {written}; next: storagectl -c {written} diag")
