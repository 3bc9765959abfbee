"""Which (source kind, target kind) pairs can move data, and the module that implements each.

Modules are imported only when their pair is used, so the CLI starts fast. Each module defines
``path_for(source_kind, target_kind) -> DataPath``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from storagectl.errors import UsageError

if TYPE_CHECKING:
    from storagectl.datamove.model import DataPath

_PATH_MODULES: dict[tuple[str, str], str] = {
    # ("sqlite", "postgres"): "storagectl.datamove.sql",  # added by the SQL paths
    # ("redis", "redis"): "storagectl.datamove.redis_path",
    # ("neo4j", "neo4j"): "storagectl.datamove.neo4j_path",
}


def supported_pairs() -> list[tuple[str, str]]:
    return sorted(_PATH_MODULES)


def data_path(source_kind: str, target_kind: str) -> DataPath:
    module_name = _PATH_MODULES.get((source_kind, target_kind))
    if module_name is None:
        pairs = ", ".join(f"{s} → {t}" for s, t in supported_pairs()) or "none"
        raise UsageError(f"cannot move data from a {source_kind} backend to a {target_kind} backend",
                         hint=f"Supported pairs: {pairs}")
    return importlib.import_module(module_name).path_for(source_kind, target_kind)
