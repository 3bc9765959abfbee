"""Neo4j workloads: nodes labelled ``StoragectlBench_<id>`` (a chain of ``:STORAGECTL_BENCH_NEXT``
relationships for expand-1hop) and an index on their ``key``; teardown detach-deletes the
label's nodes in batches and drops the index.

The driver blocks, so each client is a thread with its own session (:class:`ThreadClient`).
A ``cypher:FILE`` script has ``\\set NAME random(LO, HI)`` lines and statements ending in ``;``
that use ``$NAME`` parameters; its label ``StoragectlBench`` is replaced by the run's label.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

from storagectl.errors import UsageError
from storagectl.loadgen.clients import ThreadClient
from storagectl.loadgen.sqlscript import Draw, parse_script
from storagectl.loadgen.workloads import WorkloadOptions

DEFAULT_KEYSPACE = 10_000
WORKLOADS = ("node-by-key", "create-node", "expand-1hop", "cypher")
FILL_BATCH = 1000
DELETE_BATCH = 10_000
RELATIONSHIP = "STORAGECTL_BENCH_NEXT"
SCRIPTS = {
    "node-by-key": "MATCH (n:{label} {{key: $key}}) RETURN n.key",
    "create-node": "CREATE (n:{label} {{key: $key, created: true}})",
    "expand-1hop": "MATCH (n:{label} {{key: $key}})-[:" + RELATIONSHIP + "]->(m) RETURN m.key",
}
_PARAMETER = re.compile(r"\$([A-Za-z_]\w*)")


def workload_names(kind: str) -> tuple[str, ...]:
    return WORKLOADS


def make_workload(backend: Any, options: WorkloadOptions) -> Neo4jWorkload:
    return Neo4jWorkload(backend, options)


def cypher_script(path: Path, label: str, keyspace: int) -> tuple[tuple[Draw, ...], list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    sets = "\n".join(line for line in text.splitlines() if line.strip().startswith("\\"))
    script = parse_script(sets + "\nRETURN 1;", {"keyspace": keyspace}, str(path))
    statements = [part.strip() for part in re.sub(r"^\s*\\.*$", "", text, flags=re.M).split(";") if part.strip()]
    if not statements:
        raise UsageError(f"{path}: no Cypher statement (statements end with ';')")
    known = {draw.name for draw in script.draws}
    for statement in statements:
        unknown = sorted(set(_PARAMETER.findall(statement)) - known)
        if unknown:
            raise UsageError(f"{path}: ${unknown[0]} is used but never \\set")
    return script.draws, [re.sub(r"\bStoragectlBench\b", label, s) for s in statements]


class Neo4jWorkload:
    def __init__(self, backend: Any, options: WorkloadOptions) -> None:
        self.backend = backend
        self.options = options
        self.namespace = f"StoragectlBench_{options.run_id}"
        self.fill_items = options.keyspace
        self._index = f"storagectl_bench_{options.run_id}"
        if options.script is not None:
            self.draws, self.statements = cypher_script(options.script, self.namespace, options.keyspace)
        else:
            self.draws = (Draw("key", 0, options.keyspace - 1),)
            self.statements = [SCRIPTS[options.base].format(label=self.namespace)]
        self._seed = random.Random(options.run_id)
        self._driver: Any = None

    def _run(self, query: str, **params: Any) -> list[Any]:
        with self.backend.session(self._driver) as session:
            return list(session.run(query, params))

    def setup(self) -> int:
        self._driver = self.backend._open_translated()
        self._version = self.backend.server_version(self._driver)
        label = self.namespace
        self._run(f"CREATE INDEX {self._index} IF NOT EXISTS FOR (n:{label}) ON (n.key)")
        keyspace = self.options.keyspace
        for start in range(0, keyspace, FILL_BATCH):
            self._run(f"UNWIND range($start, $stop) AS k CREATE (:{label} {{key: k}})",
                      start=start, stop=min(start + FILL_BATCH, keyspace) - 1)
        if self.options.base == "expand-1hop":
            for start in range(0, keyspace, FILL_BATCH):
                self._run(f"MATCH (a:{label}) WHERE a.key >= $start AND a.key < $stop "
                          f"MATCH (b:{label} {{key: (a.key + 1) % $keyspace}}) CREATE (a)-[:{RELATIONSHIP}]->(b)",
                          start=start, stop=start + FILL_BATCH, keyspace=keyspace)
        return keyspace

    def teardown(self) -> bool:
        if self._driver is None:
            return False
        try:
            while True:
                [row] = self._run(f"MATCH (n:{self.namespace}) WITH n LIMIT {DELETE_BATCH} DETACH DELETE n "
                                  "RETURN count(*) AS deleted")
                if not row[0]:
                    break
            self._run(f"DROP INDEX {self._index} IF EXISTS")
        finally:
            self._driver.close()
            self._driver = None
        return True

    def server_version(self) -> str:
        return self._version

    def open_client(self) -> ThreadClient:
        rng = random.Random(self._seed.random())
        return ThreadClient(lambda: self._open_operation(rng))

    def _open_operation(self, rng: random.Random) -> tuple[Any, Any]:
        session = self.backend.session(self._driver)
        draws, statements = self.draws, self.statements

        def operation() -> None:
            params = {d.name: rng.randint(d.low, d.high) for d in draws}
            for statement in statements:
                session.run(statement, params).consume()

        return operation, session.close
