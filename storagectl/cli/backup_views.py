"""What `backup list` shows of the catalog, and the summaries `backup show` and `backup run` share,
without typer: `backup list` also runs from storagectl.cli.quick, which never imports it."""

from __future__ import annotations

from typing import Any

from storagectl.cli.appstate import AppState, OutputFormat
from storagectl.cli.output import print_json, print_table
from storagectl.units import human_bytes

LIST_COLUMNS = ["ID", "Job", "Backend", "Kind", "Destination", "Finished", "Size", "Objects", "Encrypted", "Contents"]


def list_view(state: AppState, from_: str | None, job: str | None, backend: str | None,
              output: OutputFormat | None) -> None:
    """`backup list`: complete backups, oldest first, as JSON or a table."""
    from storagectl.backup import list_backups

    found = [backup.to_dict() for backup in list_backups(state.quick_config, from_, job, backend)]
    if state.format(output) is OutputFormat.json:
        print_json(found)
        return
    rows = [[b["id"], b["job"], b["backend"], b["kind"], b["destination"], b["finished_at"][:19],
             human_bytes(b["size"]), b["objects"], "yes" if b["encrypted"] else "no",
             describe_selection(b["selection"]) if b["partial"] else "full"] for b in found]
    print_table(state, LIST_COLUMNS, rows)


def describe_selection(selection: dict[str, Any] | None) -> str:
    """A partial backup's selection in one line: ``--table public.users (public.users 120 rows)``."""
    from storagectl.selection import Selection

    chosen = Selection.from_dict(selection).describe()
    matched = (selection or {}).get("matched") or {}
    return f"{chosen}; matched {counts_text(matched) or 'nothing'}"


def counts_text(counts: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items())
