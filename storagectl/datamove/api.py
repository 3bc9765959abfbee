"""The three operations of `storagectl migrate data`, from config and names to a path's result."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from storagectl.archive.progress import ProgressCallback, no_progress
from storagectl.datamove.registry import data_path
from storagectl.errors import IntegrityError

if TYPE_CHECKING:
    from storagectl.config.models import Config
    from storagectl.datamove.model import DataMigrationRequest, MigrationPlan, RunResult


def open_request(config: Config, source: str, target: str, **options) -> DataMigrationRequest:
    """A request between two registry backends; ``options`` are :class:`DataMigrationRequest` fields."""
    from storagectl.backends import backend_from_config
    from storagectl.datamove.model import DataMigrationRequest

    if source == target:
        from storagectl.errors import UsageError

        raise UsageError(f"--from and --to both name {source!r}", hint="Try: a different target backend")
    request = DataMigrationRequest(backend_from_config(config, source), backend_from_config(config, target), **options)
    if request.state_dir is None and config.path is not None:
        request = replace(request, state_dir=config.path.parent)
    return request


def plan(request: DataMigrationRequest) -> MigrationPlan:
    return _path(request).plan(request)


def run(request: DataMigrationRequest, progress: ProgressCallback = no_progress) -> RunResult:
    started = time.monotonic()
    result = _path(request).run(request, progress)
    result.duration_s = time.monotonic() - started
    return result


def verify(request: DataMigrationRequest) -> RunResult:
    started = time.monotonic()
    result = _path(request).verify(request)
    result.duration_s = time.monotonic() - started
    return result


def raise_on_mismatch(result: RunResult) -> None:
    bad = [item for item in result.items if item.status == "mismatch"]
    if bad:
        first = bad[0]
        where = f" (first differing chunk {first.first_bad_chunk})" if first.first_bad_chunk else ""
        raise IntegrityError(f"{len(bad)} of {len(result.items)} items differ between source and target: "
                             f"{first.source} → {first.target}{where}",
                             hint="Try: storagectl migrate data verify --show-diffs ... to list the differing keys")


def _path(request: DataMigrationRequest):
    return data_path(request.source.kind, request.target.kind)
