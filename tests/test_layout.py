"""How the package is put together: checked on the source, without running it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "storagectl"


def test_no_module_imports_a_private_name_of_another():
    """A helper two modules use is public, in a module both stand on (e.g. backends/redis_wire.py),
    not a private name of one of them."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("storagectl"):
                found += [f"{path.relative_to(PACKAGE.parent)}: {alias.name} from {node.module}"
                          for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert found == []
