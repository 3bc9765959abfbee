"""What the settings classes share apart from pydantic, so a config-cache hit imports none: the
models' methods as plain mixins (each model takes its mixin, and so does its plain form read back from
storagectl.config.cache: both run the same code), and the lazy reference a kind's module holds to its
model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any


class SelectSettingsMethods:
    def selection(self) -> Any:
        from storagectl.selection import Selection

        return Selection(**{name: tuple(getattr(self, name)) for name in type(self).model_fields})  # type: ignore[attr-defined]


class JobSettingsMethods:
    if TYPE_CHECKING:  # the model's field; not an annotation at run time, which pydantic would read
        select: Any

    def selection(self) -> Any:
        """The job's storagectl.selection.Selection (empty: a full backup)."""
        from storagectl.selection import Selection

        return self.select.selection() if self.select else Selection()


PARTIAL_AFTER_DEFAULT = 86400.0
"""``retention.partial_after`` unset (or no ``retention:``): a backup without a manifest is partial after a day."""


def default_parallel() -> int:
    """A job's default ``parallel``: 4 workers, but no more than this machine's CPUs: each worker's
    compression is CPU-bound, and on 2 cores 4 workers only add contention (backup of the benchmark
    database: 3.09 s at 2 vs 3.28 s at 4, medians of 6 alternating runs)."""
    import os

    return max(1, min(4, os.cpu_count() or 4))


class SettingsModel:
    """A kind's ``Settings`` class attribute: its pydantic model, imported from ``module:name`` when
    first asked for, so the kind's own module loads without pydantic (a backup from the cached config
    needs none, see storagectl.config.cache)."""

    def __init__(self, where: str) -> None:
        self.where = where

    def __get__(self, instance: object, owner: type) -> type:
        from importlib import import_module

        module, _, name = self.where.partition(":")
        return getattr(import_module(module), name)
