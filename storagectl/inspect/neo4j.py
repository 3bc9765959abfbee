"""`inspect graph` for Neo4j: nodes per label and relationships per type from the count store
(constant time: ``MATCH (n:L) RETURN count(n)``), property keys, constraints and indexes with their
state. Each query is a read transaction with a server-side timeout bounded by the budget."""

from __future__ import annotations

from typing import Any, ClassVar

from storagectl.backends import neo4j_archive as cypher
from storagectl.inspect.base import Inspector
from storagectl.inspect.model import Report, exact

PROPERTY_KEYS = "CALL db.propertyKeys() YIELD propertyKey RETURN propertyKey"
CONSTRAINTS = "SHOW CONSTRAINTS YIELD name, type, entityType, labelsOrTypes, properties"
INDEXES = "SHOW INDEXES YIELD name, type, entityType, labelsOrTypes, properties, state, populationPercent"
COUNT_STORE = "count store"


class Neo4jInspector(Inspector):
    views: ClassVar[tuple[str, ...]] = ("overview", "graph")

    def read(self, session: Any, query: str) -> list[dict[str, Any]]:
        from neo4j import unit_of_work

        self.budget.check()
        work = unit_of_work(timeout=self.budget.bounded(self.options.query_timeout))(
            lambda tx: [record.data() for record in tx.run(query)])
        return session.execute_read(work)

    def single(self, session: Any, query: str) -> int:
        return next(iter(self.read(session, query)[0].values()))

    def overview(self, driver: Any, report: Report) -> None:
        with cypher.translated_errors(self.backend, "inspecting the graph"), self.backend.session(driver) as session:
            self.counts(session, report, top=5)

    def graph(self, driver: Any, report: Report) -> None:
        with cypher.translated_errors(self.backend, "inspecting the graph"), self.backend.session(driver) as session:
            self.counts(session, report, top=None)
            keys = [r["propertyKey"] for r in self.read(session, PROPERTY_KEYS)]
            report.summary["property_keys"] = exact(len(keys))
            report.sections["property_keys"] = [{"property_key": key} for key in sorted(keys)]
            report.sections["constraints"] = self.read(session, CONSTRAINTS)
            report.sections["indexes"] = self.read(session, INDEXES)
            report.summary.update(constraints=exact(len(report.sections["constraints"])),
                                  indexes=exact(len(report.sections["indexes"])))

    def counts(self, session: Any, report: Report, top: int | None) -> None:
        report.summary.update(nodes=exact(self.single(session, cypher.COUNT_NODES), source=COUNT_STORE),
                              relationships=exact(self.single(session, cypher.COUNT_RELATIONSHIPS), source=COUNT_STORE))
        labels = [{"label": r["label"], "nodes": exact(self.single(session, cypher.count_label_query(r["label"])),
                                                       source=COUNT_STORE)}
                  for r in self.read(session, cypher.LABELS)]
        types = [{"type": r["relationshipType"], "relationships": exact(
                     self.single(session, cypher.count_type_query(r["relationshipType"])), source=COUNT_STORE)}
                 for r in self.read(session, cypher.TYPES)]
        report.sections["labels"] = sorted(labels, key=lambda r: -r["nodes"].value)[:top]
        report.sections["relationship_types"] = sorted(types, key=lambda r: -r["relationships"].value)[:top]
