"""Neo4j --label backups and restores against the Bolt stub: the selected nodes and the relationships
between them come back exactly, and nothing else in the target changes."""

from __future__ import annotations

from typing import Any

import pytest

from storagectl.backends import neo4j_archive as engine
from storagectl.backup import restore, run_backup
from storagectl.selection import Selection
from tests.boltstub import BoltStubServer, Records
from tests.test_backup_neo4j import AUTH, FakeGraph, count, make_config, populate


class SelectiveGraph(FakeGraph):
    """The fake graph, answering the --label queries as well ($labels: nodes with any of them)."""

    def __init__(self) -> None:
        super().__init__()
        self._exact.update({
            engine.SELECTED_NODES: lambda p: Records(["id", "labels", "props"], [
                [n, labels, props] for n, (labels, props) in self.nodes.items() if self._in(n, p)]),
            engine.SELECTED_RELATIONSHIPS: lambda p: Records(["id", "type", "props", "start", "end"], [
                [r, t, props, a, b] for r, (t, props, a, b) in self._between(p).items()]),
            engine.COUNT_SELECTED_NODES: lambda p: count(sum(self._in(n, p) for n in self.nodes)),
            engine.COUNT_SELECTED_RELATIONSHIPS: lambda p: count(len(self._between(p))),
            engine.SELECTED_LABEL_COUNTS: lambda p: self._tally(
                [label for n, (labels, _) in self.nodes.items() if self._in(n, p) for label in labels], "label"),
            engine.SELECTED_TYPE_COUNTS: lambda p: self._tally([t for t, *_ in self._between(p).values()], "type"),
            engine.DELETE_SELECTED_NODES: lambda p: self._detach_delete(
                [n for n in self.nodes if self._in(n, p)][: p["limit"]]),
        })

    def _in(self, node_id: str, params: dict[str, Any]) -> bool:
        return bool(set(self.nodes[node_id][0]) & set(params["labels"]))

    def _between(self, params: dict[str, Any]) -> dict[str, Any]:
        return {r: rel for r, rel in self.relationships.items()
                if self._in(rel[2], params) and self._in(rel[3], params)}

    @staticmethod
    def _tally(names: list[str], column: str) -> Records:
        return Records([column, "count"], [[name, names.count(name)] for name in sorted(set(names))])


@pytest.fixture
def graphs():
    source, target = SelectiveGraph(), SelectiveGraph()
    with BoltStubServer([source], auth=AUTH) as a, BoltStubServer([target], auth=AUTH) as b:
        yield source, target, a, b


@pytest.fixture
def config(graphs, write_config, tmp_path):
    return make_config(write_config, tmp_path, graphs[2], graphs[3])


def persons(graph: FakeGraph) -> tuple[list[Any], list[Any]]:
    nodes, rels = graph.content()
    keys = {key for key, labels, _ in nodes if "Person" in labels}
    return [n for n in nodes if n[0] in keys], [r for r in rels if r[2] in keys and r[3] in keys]


def target_with_its_own_nodes(target: FakeGraph) -> None:
    other = target.add_node("Other", key="other")
    zed = target.add_node("Person", key="zed")
    target.add_relationship(other, "OWNS", other)
    target.add_relationship(other, "KNOWS", zed)


def test_label_backup_holds_the_labels_nodes_and_relationships_between_them(graphs, config):
    source, target, _, _ = graphs
    populate(source)
    [result] = run_backup(config, backend="a", destination="local", selection=Selection(labels=("Person",)))
    manifest = result.manifest
    assert manifest.selection["labels"] == ["Person"]
    assert manifest.selection["matched"]["nodes"] == 2 and manifest.selection["matched"]["relationships"] == 3
    target_with_its_own_nodes(target)
    restored = restore(config, manifest.id, target="b", replace=True, validate=True)
    assert restored.validation.ok, restored.validation.to_dict()
    assert persons(target) == persons(source)
    nodes, rels = target.content()
    assert ("other", ["Other"], [("key", "'other'")]) in nodes
    assert ("OWNS", [], "other", "other") in rels  # the target's own relationship is untouched
    assert "zed" not in {key for key, _, _ in nodes}  # the target's Person was replaced
    assert {name for name, _ in target.schema()} >= {"person_key", "person_name"}


def test_label_subset_of_a_full_backup_needs_yes_when_the_target_has_such_nodes(graphs, config):
    source, target, _, _ = graphs
    populate(source)
    [result] = run_backup(config, backend="a", destination="local")
    assert result.manifest.selection is None
    target_with_its_own_nodes(target)
    from storagectl.errors import UsageError

    with pytest.raises(UsageError, match="already holds objects that --label Person selects"):
        restore(config, result.manifest.id, target="b", selection=Selection(labels=("Person",)))
    restored = restore(config, result.manifest.id, target="b", replace=True, validate=True,
                       selection=Selection(labels=("Person",)))
    assert restored.validation.ok and {c.unit for c in restored.validation.checks} >= {"nodes", "label:Person"}
    assert persons(target) == persons(source)
    assert len(target.nodes) == 3  # ada, bob, and the target's own Other
