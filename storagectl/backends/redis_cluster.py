"""A Redis Cluster as one ``redis`` backend (``cluster: true``, ``nodes``, or a ``redis+cluster://`` url).

The topology is read from a seed (``CLUSTER NODES``); every visit to the nodes goes through
:mod:`storagectl.backends.redis_topology`. Backup and restore reuse the single-node record format
and code of :mod:`storagectl.backends.redis`: one records object per primary (``db0.nodeNN.records``),
keys kept only on the primary that owned their slot when the backup started; restore sends each key
to the primary that serves its slot *now*, so any backup restores into a cluster of any size, and a
cluster backup into a single node.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from storagectl import interrupts
from storagectl.archive.api import ContentSummary, ItemCheck, RestoreOutcome, record_summary
from storagectl.archive.progress import Estimate
from storagectl.backends.redis import (
    BATCH_KEYS,
    CLUSTER_CHECKS,
    REDIS_CHECKS,
    RESTORE_ROUTED_LUA,
    CountedRecords,
    KeyspacePart,
    LoadedKeys,
    RedisBackend,
    db_records,
    restore_routed_request,
    seed_address,
    server_ms,
    write_records,
)
from storagectl.backends.redis_compare import KeyComparison, Record, compare_all, compare_batches
from storagectl.backends.redis_redirect import Redirects, SlotMap, route_table
from storagectl.backends.redis_selection import KeySelection, count_matching, delete_matching, holds_any
from storagectl.backends.redis_topology import (
    SLOTS,
    Address,
    ClusterNode,
    ClusterTopology,
    NodeOutcome,
    SlotOwnership,
    fan_out,
    key_slot,
    read_topology,
)
from storagectl.backends.redis_wire import RespSocket, evalsha_head
from storagectl.errors import BackendUnavailable, OperationFailed, StoragectlError, UsageError
from storagectl.health import Check, Status
from storagectl.redact import redact_url
from storagectl.units import human_bytes

T = TypeVar("T")
DEFAULT_PORT = 6379
ROUTED_BATCHES_WAITING = 4  # per primary: bounds memory while one node is slower than the reader


class RedisClusterBackend(RedisBackend):
    selection_replace_method = ("in place: the keys of the selection are deleted on every primary (UNLINK), then "
                                "the backup's keys of the selection restored; other keys are not touched; a restore "
                                "that fails leaves the selection partial")
    CHECKS = {**REDIS_CHECKS, **CLUSTER_CHECKS}

    # -- where and how to connect --------------------------------------------------------------
    def seeds(self) -> list[tuple[str, int]]:
        settings = self.settings
        if settings.nodes:
            return [seed_address(node) for node in settings.nodes]
        if settings.url:
            parts = urlsplit(settings.url)
            return [(parts.hostname or "localhost", parts.port or DEFAULT_PORT)]
        return [(settings.host, settings.port)]

    def endpoint(self) -> str:
        if self.settings.url:
            return redact_url(self.settings.url)
        scheme = "rediss+cluster" if self.settings.tls.enabled else "redis+cluster"
        return f"{scheme}://" + ",".join(f"{host}:{port}" for host, port in self.seeds())

    def node_kwargs(self) -> dict[str, Any]:
        """redis.Redis keyword arguments for any node (secrets included: never print these)."""
        kwargs = self.settings.client_kwargs()
        for name in ("host", "port", "db"):
            kwargs.pop(name, None)
        if self.settings.url:
            parts = urlsplit(self.settings.url)
            if parts.username:
                kwargs["username"] = unquote(parts.username)
            if parts.password is not None:
                kwargs["password"] = unquote(parts.password)
            if parts.scheme.lower().startswith("rediss") and not kwargs.get("ssl"):
                kwargs.update(ssl=True, ssl_cert_reqs="required")
        return kwargs

    def connect_node(self, host: str, port: int, socket_timeout: float | None = None,
                     single_connection_client: bool = False, replica: bool = False) -> Any:
        """A plain client of one node (storagectl's retry policy applies, so redis-py's is off). A
        replica's connections send READONLY, without which it redirects every key command (MOVED)."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        kwargs = self.node_kwargs()
        if socket_timeout is not None:
            kwargs["socket_timeout"] = socket_timeout
        if replica:
            kwargs["redis_connect_func"] = _read_only
        return redis.Redis(host=host, port=port, retry=Retry(NoBackoff(), 0),
                           single_connection_client=single_connection_client, **kwargs)

    def node_client(self, node: ClusterNode, single_connection_client: bool = False) -> Any:
        return self.connect_node(node.host, node.port, single_connection_client=single_connection_client,
                                 replica=not node.is_primary)

    def reader_of(self, topology: ClusterTopology, primary: ClusterNode) -> ClusterNode:
        """Where read-only commands read ``primary``'s slots: a replica with ``read_from_replicas``."""
        return topology.reader_of(primary, self.settings.read_from_replicas)

    def client(self, db: int | None = None, socket_timeout: float | None = None,
               single_connection_client: bool = False) -> Any:
        """A redis-py RedisCluster client, for key commands. It follows MOVED and ASK (redis-py's loop of
        redirections, which ``retry`` does not bound) and refreshes its slot map after a node failed or
        the cluster answered CLUSTERDOWN. redis-py's retries are off, as on every client storagectl builds
        (storagectl's own policy applies): by default a command against a down cluster is sent 11 times,
        each CLUSTERDOWN waiting 0.25 s and re-reading the topology, about 5 s before the error."""
        from redis.backoff import NoBackoff
        from redis.cluster import ClusterNode as SeedNode
        from redis.cluster import RedisCluster
        from redis.retry import Retry

        kwargs = self.node_kwargs()
        kwargs["retry"] = Retry(NoBackoff(), 0)
        if socket_timeout is not None:
            kwargs["socket_timeout"] = socket_timeout
        if (reachable := self.settings.reachable()) is not None:
            kwargs["address_remap"] = lambda address: reachable(*address)
        return RedisCluster(startup_nodes=[SeedNode(host, port) for host, port in self.seeds()], **kwargs)

    def topology(self, socket_timeout: float | None = None) -> ClusterTopology:
        """The topology from the first seed that answers, announced addresses translated by nat_map."""
        return read_topology(self.seeds(), lambda host, port: self.connect_node(host, port, socket_timeout),
                             self.settings.reachable(), tls=bool(self.node_kwargs().get("ssl")))

    def failing_primaries(self) -> list[str]:
        try:
            topology = self.topology(socket_timeout=self.settings.timeouts.connect)
        except Exception:  # noqa: BLE001 - only to name the node in an error reported anyway
            return []
        return [node.address for node in topology.nodes if node.is_primary and node.failing]

    def _open(self) -> ClusterTopology:
        # The connection of a cluster is its topology: every command visits the nodes it needs.
        return self.topology(socket_timeout=self.settings.timeouts.connect)

    def _close(self, connection: Any) -> None:
        return None

    def visit_keyspace(self, connection: ClusterTopology, visit: Callable[[KeyspacePart], T], concurrency: int = 4,
                       stop: threading.Event | None = None) -> list[T]:
        """``visit`` on every primary (or its replica, with ``read_from_replicas``) through the fan-out,
        each with a client of its own, closed after the visit, and the slot-ownership filter that
        counts a key only on the primary owning its slot (a key seen twice during a reshard once)."""
        topology = connection
        primaries = topology.primaries()

        def one(primary: ClusterNode) -> T:
            reader = self.reader_of(topology, primary)
            client = self.node_client(reader)
            try:
                return visit(KeyspacePart(reader.address, client, SlotOwnership(topology, primary), len(primaries)))
            finally:
                client.close()

        return self._values("inspect", fan_out(primaries, one, concurrency, stop))

    def ping(self, connection: Any) -> None:
        return None  # reading the topology in _open was the round trip

    def server_version(self, connection: ClusterTopology) -> str:
        versions = {outcome.value for outcome in fan_out(
            connection.primaries(), lambda node: self._node_info(node, "server")["redis_version"], 8)
            if outcome.error is None}
        return ", ".join(sorted(str(v) for v in versions)) or "unknown (no primary answered)"

    def _node_info(self, node: ClusterNode, section: str) -> dict[str, Any]:
        client = self.node_client(node)
        try:
            return client.info(section)
        finally:
            client.close()

    # -- diag ---------------------------------------------------------------------------------
    def diagnose(self, connection: ClusterTopology) -> list[Check]:
        topology = connection
        outcomes = fan_out(topology.nodes, lambda node: self._node_facts(node), 8)
        checks = [self._cluster_state(outcomes), self._slots_unserved(topology, outcomes),
                  self._slot_imbalance(topology)]
        return checks + [self._node_row(outcome) for outcome in outcomes]

    def _node_facts(self, node: ClusterNode) -> dict[str, Any]:
        client = self.node_client(node)
        try:
            info = client.info("all")
            info["cluster_info"] = client.execute_command("CLUSTER", "INFO")
            return info
        finally:
            client.close()

    def _cluster_state(self, outcomes: list[NodeOutcome[dict[str, Any]]]) -> Check:
        states = {_cluster_info(outcome.value).get("cluster_state", "?")
                  for outcome in outcomes if outcome.value is not None}
        failed = states != {"ok"}
        return Check("cluster_state", Status.CRITICAL if failed else Status.OK, sorted(states),
                     "/".join(sorted(states)) or "no node answered",
                     "a node reports cluster_state:fail (slots not served)" if failed else "")

    def _slots_unserved(self, topology: ClusterTopology, outcomes: list[NodeOutcome[Any]]) -> Check:
        serving = {o.node.node_id for o in outcomes if o.error is None and not o.node.failing and o.node.is_primary}
        unserved = sum(owner not in serving for owner in topology.owners)
        migrating = topology.migrating_slots()
        detail = f"{topology.slots_covered}/{SLOTS} slots assigned (read with {topology.via})"
        detail += f"; migrating: {' '.join(migrating[:5])}" if migrating else ""
        detail += "" if topology.migrations_known else "; slots in migration unknown: CLUSTER NODES refused"
        return self.graded("slots_unserved", unserved, f"{unserved} of {SLOTS}", detail)

    def _slot_imbalance(self, topology: ClusterTopology) -> Check:
        counts = [node.slot_count for node in topology.primaries()]
        if not counts:
            return self.info("slot_imbalance", None, "no primary serves slots")
        share = SLOTS / len(counts)
        pct = round(100.0 * (max(counts) - share) / share, 1)
        return self.graded("slot_imbalance", pct, f"{pct:g}%", "slots per primary: " + " ".join(map(str, counts)))

    def _node_row(self, outcome: NodeOutcome[dict[str, Any]]) -> Check:
        """One row per node: reachable, role, flags, memory, evictions (and a replica's lag)."""
        node, name = outcome.node, f"node {outcome.node.address}"
        role = "primary" if node.is_primary else "replica"
        if outcome.error is not None:
            nat = ("; the address the cluster announces: translate it with nat_map"
                   if self.unreachable_announced(node, outcome.error) else "")
            return Check(name, Status.CRITICAL, None, f"{role}, unreachable",
                         f"{self.error_line(outcome.error)}; flags {','.join(sorted(node.flags))}{nat}")
        info = outcome.value or {}
        graded = [self._memory(info), self.graded("evicted_keys", info.get("evicted_keys", 0), "")]
        if not node.is_primary:
            graded.append(self._replica_lag(info))
        flagged = {None: Status.OK, "fail?": Status.WARNING, "fail": Status.CRITICAL}[node.failing]
        status = max([flagged, *(check.status for check in graded)], key=lambda s: s.severity)
        keys = sum(int(v.get("keys", 0)) for k, v in info.items() if k.startswith("db") and isinstance(v, dict))
        display = (f"{role}, {node.slot_count} slots, {keys} keys, {human_bytes(info.get('used_memory', 0))}, "
                   f"{info.get('evicted_keys', 0)} evicted")
        flags = f"flags {node.failing}" if node.failing else ""
        details = [flags, *(check.display for check in graded[2:])]
        return Check(name, status, {"role": role, "keys": keys, "flags": sorted(node.flags)}, display,
                     "; ".join(d for d in details if d))

    def _replica_lag(self, info: dict[str, Any]) -> Check:
        if info.get("master_link_status") != "up":
            return Check("replica_lag_bytes", Status.CRITICAL, None, "link to primary down")
        lag = max(0, int(info.get("master_repl_offset", 0)) - int(info.get("slave_repl_offset", 0)))
        return self.graded("replica_lag_bytes", lag, f"{lag} bytes behind")

    # -- backup / restore ---------------------------------------------------------------------
    def backup_estimate(self, connection: ClusterTopology) -> Estimate | None:
        """Every primary's dataset memory (a cluster node holds only db 0), for the progress total."""
        outcomes = fan_out(connection.primaries(),
                           lambda node: int(self._node_info(node, "memory").get("used_memory_dataset", 0)), 8)
        if any(outcome.error is not None for outcome in outcomes):  # INFO denied or a node down: no total
            return None
        return Estimate(sum(outcome.value or 0 for outcome in outcomes), len(outcomes))

    def backup(self, archive: Any, options: Any) -> None:
        selection = KeySelection.of(options.selection)
        topology = self._stable_topology("backup")
        primaries = topology.primaries()
        names = {node.node_id: f"db0.node{index:02d}.records" for index, node in enumerate(primaries)}

        def dump(node: ClusterNode) -> int:
            client = self.node_client(self.reader_of(topology, node), single_connection_client=True)
            try:
                return write_records(archive, names[node.node_id], client, keep=SlotOwnership(topology, node),
                                     cross_slot=True, selection=selection)
            finally:
                client.close()

        counts = self._values("backup", fan_out(primaries, dump, visits_at_once(options, len(primaries))))
        if self._stable_topology("backup").assignment() != topology.assignment():
            raise OperationFailed(f"{self.label}: slots moved during the backup (a reshard or failover); "
                                  "no backup was written", hint="Try: run the backup again once the cluster is stable")
        archive.set_metadata("databases", [0])
        archive.set_metadata("method", "dump")  # per primary, key by key: no snapshot of a cluster
        archive.set_metadata("cluster", {"slots": SLOTS, "nodes": [
            {"node_id": node.node_id, "address": node.address, "slots": [list(r) for r in node.slots],
             "keys": count, "object": names[node.node_id]} for node, count in zip(primaries, counts, strict=True)]})
        record_summary(archive, ContentSummary(counts={"keys": sum(counts)}))

    def cache_topology(self, what: str) -> ClusterTopology:
        """Every primary, refused when a slot is unserved, its primary failing or moving."""
        return self._stable_topology(what)

    def owned_keys(self, topology: ClusterTopology, node: ClusterNode) -> SlotOwnership:
        return SlotOwnership(topology, node)

    def node_error(self, what: str, node: ClusterNode, exc: Exception) -> Exception:
        return self._node_error(what, node, exc)

    def _stable_topology(self, what: str, migrating: bool = False) -> ClusterTopology:
        """The topology, refused when a slot is unserved or (unless ``migrating`` is allowed) moving:
        keys would be missed or doubled."""
        topology = self._translated(self.topology)
        if topology.slots_covered < SLOTS:
            raise BackendUnavailable(f"{self.label}: only {topology.slots_covered} of {SLOTS} slots are served; "
                                     f"no {what} of a partial cluster",
                                     hint=f"Try: storagectl diag --backend {self.name}")
        failing = [node.address for node in topology.primaries() if node.failing]
        if failing:
            raise BackendUnavailable(f"{self.label}: primary {', '.join(failing)} is failing; nothing was done",
                                     hint=f"Try: storagectl diag --backend {self.name}")
        if topology.migrating_slots() and not migrating:
            raise OperationFailed(f"{self.label}: slots are being migrated ({topology.migrating_slots()[0]} ...); "
                                  "nothing was done", hint="Try: again when the reshard has finished")
        return topology

    def check_restore(self, metadata: dict[str, Any]) -> None:
        sources = list(metadata.get("databases") or [])
        if len(sources) != 1:
            raise UsageError(f"{self.label}: the backup holds dbs {sources}; a Redis Cluster has only db 0",
                             hint=f"Try: --db {sources[0] if sources else 'N'} to restore one of them into the "
                                  "cluster, or restore it into a single-node backend")

    def restored_db(self, metadata: dict[str, Any]) -> int:
        """The db of the backup that goes into the cluster's db 0."""
        self.check_restore(metadata)
        [source] = metadata["databases"]
        return int(source)

    def restore(self, archive: Any, options: Any) -> RestoreOutcome:
        source = self.restored_db(archive.metadata)
        topology = self._stable_topology("restore", migrating=True)  # restore follows keys as slots move
        selection = KeySelection.of(options.selection)
        if selection is not None:
            return self._restore_cluster_selection(archive, source, topology, selection, options)
        if options.replace_existing:  # --yes replaces the cluster's keys: none absent from the backup survive
            self._values("flushing", fan_out(topology.primaries(), lambda node: self._flush(node), options.parallel))
        loaded = self._restore_routed(db_records(archive, source), topology)
        return self._outcome({"keys": loaded})

    def _restore_cluster_selection(self, archive: Any, source: int, topology: ClusterTopology,
                                   selection: KeySelection, options: Any) -> RestoreOutcome:
        """Only the selected keys, in place: with --yes the selection's keys go first on every primary."""
        if options.replace_existing:
            self._values("deleting the selected keys", fan_out(
                topology.primaries(), lambda node: self._on_node(node, lambda c: delete_matching(c, selection)),
                options.parallel))
        records = CountedRecords(selection.records(db_records(archive, source)))
        outcome = self._outcome({"keys": self._restore_routed(records, topology)})
        outcome.expected = ContentSummary(counts={"keys": records.count})
        outcome.notes.append(f"restored {records.count} selected key(s) in place; other keys untouched")
        return outcome

    def _on_node(self, node: ClusterNode, call: Any) -> Any:
        client = self.node_client(node)
        try:
            return call(client)
        finally:
            client.close()

    def holds_selection(self, selection: Any) -> bool:
        keys = KeySelection.of(selection)
        topology = self._translated(self.topology)
        held = self._values("scanning keys", fan_out(
            topology.primaries(), lambda node: self._on_node(node, lambda c: holds_any(c, keys)), 8))
        return any(held)

    def _flush(self, node: ClusterNode) -> None:
        client = self.node_client(node)
        try:
            client.flushdb()
        finally:
            client.close()

    def _route(self, records: Iterable[Record], slot_map: SlotMap,
               work: Callable[[ClusterNode, queue.Queue[Any]], T], what: str, primaries: list[ClusterNode]) -> list[T]:
        """Read the records once, in this thread; each goes in batches to a thread of the primary that
        serves its slot now (by ``slot_map``, re-read when it changes), which ``work``s through its
        inbox. A thread that fails drains its inbox, so the reader never blocks on it."""
        inboxes: list[queue.Queue[Any]] = [queue.Queue(ROUTED_BATCHES_WAITING) for _ in primaries]
        failed = threading.Event()

        def run(node: ClusterNode) -> T:
            inbox = inboxes[primaries.index(node)]
            try:
                return work(node, inbox)
            except BaseException:
                failed.set()
                while inbox.get() is not None:
                    pass
                raise

        results: list[list[NodeOutcome[T]]] = []
        workers = threading.Thread(target=lambda: results.append(fan_out(primaries, run, len(primaries))),
                                   name=f"redis-{what}", daemon=True)
        workers.start()
        try:
            _dispatch(records, slot_map, {(node.host, node.port): i for i, node in enumerate(primaries)}, inboxes,
                      failed)
        finally:
            for inbox in inboxes:
                inbox.put(None)
            interrupts.join(workers)
        return self._values(what, results[0])

    def _restore_routed(self, records: Iterable[Record], topology: ClusterTopology) -> LoadedKeys:
        """Restore ``records`` into the primaries serving their slots, following MOVED and ASK when a
        slot moves during the restore."""
        slot_map = SlotMap(topology, lambda: self._translated(self.topology))
        primaries = topology.primaries()
        loaded = self._route(records, slot_map, lambda node, inbox: self._write_node(node, inbox, slot_map),
                             "restore", primaries)
        return loaded[0].merge_all(loaded[1:]) if loaded else LoadedKeys(0)

    # -- restore --validate: every key against the archive -------------------------------------
    def compare_items(self, archive: Any, outcome: RestoreOutcome) -> list[ItemCheck]:
        """Every record against the key on the primary serving its slot now (type, value, expiry)."""
        source = self.restored_db(archive.metadata)
        topology = self._stable_topology("validation")
        return [compare_all(lambda records, equal: self._compare(records, topology, equal),
                            lambda: db_records(archive, source), "keys", outcome.skipped.get("keys", 0))]

    def _compare(self, records: Iterable[Record], topology: ClusterTopology,
                 collect_equal: bool) -> list[KeyComparison]:
        def work(node: ClusterNode, inbox: queue.Queue[Any]) -> KeyComparison:
            client = self.node_client(node, single_connection_client=True)
            try:
                tally = KeyComparison("keys", collect_equal=collect_equal)
                return compare_batches(client, iter(inbox.get, None), tally)
            finally:
                client.close()

        return self._route(records, SlotMap(topology), work, "validation", topology.primaries())

    def _write_node(self, node: ClusterNode, inbox: queue.Queue[Any], slot_map: SlotMap) -> LoadedKeys:
        """Restore the batches of ``inbox`` on ``node``, pipelined: batch k+1 is sent before k's reply is
        read. Keys ``node`` no longer (or not yet) serves go where the cluster redirects them."""
        client = self.node_client(node, single_connection_client=True)
        redirects = Redirects(slot_map, lambda host, port: self.connect_node(host, port),
                              self.settings.reachable())
        try:
            loaded = LoadedKeys(server_ms(client.time()))
            head = evalsha_head(client.script_load(RESTORE_ROUTED_LUA))
            commands = RespSocket(client.connection)
            waiting: list[Record] | None = None
            while (batch := inbox.get()) is not None:
                commands.send(restore_routed_request(head, batch, loaded))
                if waiting is not None:
                    self._written(commands.reply(), waiting, loaded, redirects)
                waiting = batch
            if waiting is not None:
                self._written(commands.reply(), waiting, loaded, redirects)
            return loaded
        finally:
            redirects.close()
            client.close()

    @staticmethod
    def _written(reply: list[Any], batch: list[Record], loaded: LoadedKeys, redirects: Redirects) -> None:
        """Count a routed batch's reply; its keys of slots the node does not serve follow their redirection."""
        loaded.count(reply)
        if reply[2]:
            redirects.restore([batch[int(position) - 1] for position in reply[2]], loaded)

    def _values(self, what: str, outcomes: list[NodeOutcome[Any]]) -> list[Any]:
        """The visits' values; the first failed node as one of our errors, naming the node."""
        for outcome in outcomes:
            if outcome.error is not None:
                raise self._node_error(what, outcome.node, outcome.error)
        return [outcome.value for outcome in outcomes]

    def _node_error(self, what: str, node: ClusterNode, exc: Exception) -> Exception:
        import redis

        if not isinstance(exc, redis.RedisError):  # ours (IntegrityError, disk full ...) or a bug: as it is
            return exc
        if refused := self.auth_error(exc) or self.cluster_down(what, exc):
            return refused
        text = self.error_line(exc)
        if isinstance(exc, redis.ResponseError) and "non local key" in str(exc):
            return OperationFailed(f"{self.label}: {what} failed on node {node.address}: a slot moved during it "
                                   "(a reshard?); the cluster holds part of the backup",
                                   hint="Try: restore --yes again once the cluster is stable")
        if isinstance(exc, redis.ResponseError):
            return OperationFailed(f"{self.label}: {what} failed on node {node.address}: {text}")
        if unreachable := self.unreachable_announced(node, exc):
            return unreachable
        return BackendUnavailable(f"{self.label}: {what} failed on node {node.address}, connection lost: {text}",
                                  hint=f"Try: storagectl diag --backend {self.name}")

    def unreachable_announced(self, node: ClusterNode, exc: Exception) -> BackendUnavailable | None:
        """A node the cluster announces at an address this host cannot connect to (not a seed): the
        nodes announce an address of another network (Docker, Kubernetes), which nat_map translates."""
        import redis

        if not isinstance(exc, redis.ConnectionError) or "connecting to" not in str(exc):
            return None
        if (node.host, node.port) in self.seeds():
            return None
        announced = node.announced or node.address
        mapped = f" (nat_map sends it to {node.address})" if node.announced else ""
        return BackendUnavailable(
            f"{self.label}: node {announced} as the cluster announces it{mapped} is unreachable: "
            f"{self.error_line(exc)}",
            hint=f"Try: nat_map: {{'{announced}': 'HOST:PORT'}} in backend {self.name}, HOST:PORT being where this "
                 "machine reaches that node (the nodes announce cluster-announce-ip/port of another network)")

    def _translated(self, call: Any) -> Any:
        try:
            return call()
        except StoragectlError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated: refused / DNS / timeout / auth
            raise self.translate_error(exc) from exc

    def _server_ms(self) -> int:
        node = self._translated(self.topology).primaries()[0]
        client = self.node_client(node)
        try:
            return server_ms(self._guarded("reading the server time", client.time))
        finally:
            client.close()

    @property
    def replace_method(self) -> str:
        return ("in place: every primary is flushed first, so a restore that fails leaves the cluster partial "
                "(a cluster has no SWAPDB to stage with)")

    def stages_replacement(self, metadata: dict[str, Any]) -> bool:
        return False

    def check_replace(self) -> None:
        return None

    def selected_databases(self) -> list[int]:
        return [0]

    def content_summary(self, like: ContentSummary | None = None, selection: Any = None) -> ContentSummary:
        """Keys over every primary; with a ``selection``, only the keys it names."""
        topology = self._translated(self.topology)
        keys = KeySelection.of(selection) if selection is not None else None

        def dbsize(node: ClusterNode) -> int:
            return self._on_node(node, lambda c: int(c.dbsize()) if keys is None else count_matching(c, keys))

        counts = self._values("count keys", fan_out(topology.primaries(), dbsize, 8))
        return ContentSummary(counts={"keys": sum(counts)})


def _dispatch(records: Iterable[tuple[bytes, bytes, int]], slot_map: SlotMap, writers: dict[Address, int],
              inboxes: list[queue.Queue[Any]], failed: threading.Event) -> None:
    """Batch records per writer of their slot's primary; re-route when the slot map changes (a MOVED
    seen by a writer); stop early once a writer has failed."""
    version = slot_map.version
    route = route_table(slot_map, writers, None)
    pending: list[list[tuple[bytes, bytes, int]]] = [[] for _ in inboxes]
    for record in records:
        writer = route[key_slot(record[0])]
        batch = pending[writer]
        batch.append(record)
        if len(batch) >= BATCH_KEYS:
            if failed.is_set():
                return
            inboxes[writer].put(batch)
            pending[writer] = []
            if slot_map.version != version:
                version = slot_map.version
                route = route_table(slot_map, writers, route)
    for writer, batch in enumerate(pending):
        if batch:
            inboxes[writer].put(batch)


def _read_only(connection: Any) -> None:
    """redis-py's connect hook for a replica: the handshake, then READONLY (as RedisCluster does)."""
    connection.on_connect()
    connection.send_command("READONLY")
    connection.read_response()


def _cluster_info(info: dict[str, Any] | None) -> dict[str, str]:
    raw = (info or {}).get("cluster_info", b"")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def visits_at_once(options: Any, primaries: int) -> int:
    """Primaries backed up at the same time: every one unless the job set ``parallel``. The default
    ``parallel`` counts this machine's CPUs for compression, but a primary's DUMPs are its server's work:
    with 3 primaries and 2 workers the third waited for one of the first two, so the cluster took about
    1.5 node-times instead of one."""
    return options.parallel if options.parallel_given else max(options.parallel, primaries)
