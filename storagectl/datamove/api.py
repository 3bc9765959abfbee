"""The three operations of `storagectl migrate data`, from config and names to a path's result."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from storagectl.archive.progress import ProgressCallback, no_progress
from storagectl.datamove.registry import data_path
from storagectl.errors import IntegrityError

if TYPE_CHECKING:
    from pathlib import Path

    from storagectl.config.models import Config, TableMapSettings
    from storagectl.datamove.model import DataMigrationRequest, MigrationPlan, RunResult, TableMap


def open_request(config: Config, source: str | None, target: str | None, *, plan_name: str | None = None,
                 map_file: Path | None = None, **options) -> DataMigrationRequest:
    """A request between two registry backends; ``options`` are :class:`DataMigrationRequest` fields
    (None: the named plan's value or the default). A named plan (``data_migrations:``) gives the
    backends, tables, maps and settings the options leave out; ``map_file`` adds table maps."""
    from storagectl.backends import backend_from_config
    from storagectl.datamove.model import DataMigrationRequest
    from storagectl.errors import UsageError
    from storagectl.selection import Selection

    options = {key: value for key, value in options.items() if value is not None}
    user_tables = options["selection"].tables if "selection" in options else ()
    maps: list[TableMap] = []
    if plan_name is not None:
        settings = config.data_migration(plan_name)
        source, target = source or settings.source, target or settings.target
        for key in ("batch_rows", "parallel", "on_error"):
            options.setdefault(key, getattr(settings, key))
        names = tuple(entry if isinstance(entry, str) else entry.source for entry in settings.tables)
        maps += [table_map(entry) for entry in settings.tables if not isinstance(entry, str)]
        selection = options.get("selection", Selection())
        options["selection"] = replace(selection, tables=selection.tables or names,
                                       exclude_tables=selection.exclude_tables + tuple(settings.exclude))
    if map_file is not None:
        from storagectl.config.loader import load_table_maps

        file_maps = [table_map(entry) for entry in load_table_maps(map_file)]
        maps += file_maps
        selection = options.get("selection")
        if plan_name is not None and selection is not None and selection.tables and not user_tables:
            options["selection"] = replace(selection, tables=selection.tables + tuple(
                m.source for m in file_maps if m.source not in selection.tables))  # the plan's and the file's
    if duplicates := sorted({m.source for m in maps if [n.source for n in maps].count(m.source) > 1}):
        from storagectl.errors import ConfigError

        raise ConfigError(f"table {', '.join(map(repr, duplicates))} mapped both by plan {plan_name!r} and by "
                          f"{map_file}", hint="Try: give each source table one entry")
    if source is None or target is None:
        raise UsageError("say where the data comes from and goes to", hint="Try: --from SRC --to DST, or a plan NAME")
    if maps:
        options["maps"] = tuple(maps)
    if source == target and not any(m.target != m.source for m in maps):
        raise UsageError(f"--from and --to both name {source!r}",
                         hint="Try: a different target backend, or a map that renames the tables")
    request = DataMigrationRequest(backend_from_config(config, source), backend_from_config(config, target),
                                   plan_name=plan_name, **options)
    if config.path is not None:
        request = replace(request, state_dir=request.state_dir or config.path.parent, config_path=config.path)
    return request


def table_map(entry: TableMapSettings) -> TableMap:
    from storagectl.datamove.model import ColumnMap, TableMap

    columns = tuple(ColumnMap(c.name, c.source, c.expression, c.cast) for c in entry.columns)
    return TableMap(entry.source, entry.target or entry.source, columns, entry.time_column,
                    tuple(entry.renames.items()))


def plan(request: DataMigrationRequest) -> MigrationPlan:
    return _path(request).plan(request)


def run(request: DataMigrationRequest, progress: ProgressCallback = no_progress) -> RunResult:
    started = time.monotonic()
    result = _path(request).run(request, progress)
    result.duration_s = time.monotonic() - started
    return result


def notes(request: DataMigrationRequest) -> list[str]:
    return _path(request).notes(request)


def verify(request: DataMigrationRequest) -> RunResult:
    started = time.monotonic()
    result = _path(request).verify(request)
    result.duration_s = time.monotonic() - started
    return result


def raise_on_mismatch(result: RunResult, *, showed_diffs: bool = False) -> None:
    bad = [item for item in result.items if item.status == "mismatch"]
    if bad:
        first = bad[0]
        where = f" ({_first_difference(first.first_bad_chunk)})" if first.first_bad_chunk else ""
        raise IntegrityError(f"{len(bad)} of {len(result.items)} items differ between source and target: "
                             f"{first.source} → {first.target}{where}",
                             hint=SHOWN_DIFFS_HINT if showed_diffs else SHOW_DIFFS_HINT)


def _first_difference(where: str) -> str:
    """An item's first difference as the error names it: a SQL chunk, a whole table, a Redis key."""
    if where.startswith("key "):
        return f"first differing {where}"
    if where == "the whole table":
        return "in its one chunk, the whole table"
    return f"first differing chunk {where}"


SHOW_DIFFS_HINT = "Try: storagectl migrate data verify --show-diffs ... to list the differing keys"
SHOWN_DIFFS_HINT = "Try: look at the differing keys listed above (diff_keys with -o json)"


def _path(request: DataMigrationRequest):
    return data_path(request.source.kind, request.target.kind)
