"""Redis backend (redis-py)."""

from __future__ import annotations

import logging
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar
from urllib.parse import parse_qs

from storagectl.archive.api import (
    SUMMARY_METADATA_KEY,
    ContentSummary,
    ItemCheck,
    RestoreOutcome,
    read_exact,
    record_summary,
    recorded_summary,
)
from storagectl.archive.progress import Estimate
from storagectl.backends.base import Backend, classify_connection_error
from storagectl.backends.redis_rdb import (
    RDB_OBJECT,
    RdbRefused,
    ReplicaSync,
    rdb_costs,
    rdb_obstacle,
    rdb_records,
    receive_rdb,
    start_sync,
)
from storagectl.backends.redis_selection import KeySelection, count_matching, delete_matching, holds_any
from storagectl.backends.redis_topology import SLOTS, ClusterNode, ClusterTopology
from storagectl.backends.redis_wire import (
    DUMP_CROSS_SLOT_LUA,
    KeyFilter,
    MultiDump,
    RespSocket,
    ScriptDump,
    dump_batches,
)
from storagectl.config.methods import SettingsModel
from storagectl.config.urls import reject_query, split_url
from storagectl.errors import (
    AuthenticationFailed,
    BackendUnavailable,
    IntegrityError,
    OperationFailed,
    StoragectlError,
    UsageError,
    raise_with_state,
)
from storagectl.health import Check, CheckSpec, Status
from storagectl.redact import redact_url
from storagectl.units import human_bytes

if TYPE_CHECKING:
    from storagectl.backends.redis_head_start import HeadStart
    from storagectl.backends.redis_settings import RedisSettings

log = logging.getLogger(__name__)

REDIS_CHECKS = {
    spec.name: spec
    for spec in (
        CheckSpec("memory_used_pct", "used_memory vs maxmemory", 80, 95, unit="%"),
        CheckSpec("evicted_keys", "keys evicted since the server started", 1, None),
        CheckSpec("keyspace_hit_ratio", "keyspace hits / lookups", 50, None, higher_is_worse=False, unit="%"),
        CheckSpec("connected_clients_pct", "connected clients vs maxclients", 80, 95, unit="%"),
        CheckSpec("blocked_clients", "clients blocked on BLPOP etc.", 50, None),
        CheckSpec("persistence", "last RDB save / AOF write status"),
    )
}
# A cluster's own checks (storagectl.backends.redis_cluster); its per-node rows grade memory and
# evictions with the thresholds above.
CLUSTER_CHECKS = {
    spec.name: spec
    for spec in (
        CheckSpec("cluster_state", "CLUSTER INFO cluster_state"),
        CheckSpec("slots_unserved", "slots without a reachable, non-failing primary", None, 1),
        CheckSpec("slot_imbalance", "most slots on one primary vs an even share", 20, None, unit="%"),
        CheckSpec("replica_lag_bytes", "replication offset a replica is behind its primary", 1_000_000, None),
    )
}


MAX_DB = 2**31 - 1  # SELECT takes a C int
T = TypeVar("T")


class RedisSettingsMethods:
    """What callers ask of a backend's settings beyond its fields: one code for the pydantic model
    (storagectl.backends.redis_settings) and its plain form read back from the config cache."""

    if TYPE_CHECKING:  # the model's fields; not annotations at run time, which pydantic would read
        url: str | None
        host: str
        port: int
        db: int
        databases: list[int] | None
        username: str | None
        password: Any
        cluster: bool
        nat_map: dict[str, str] | None
        timeouts: Any
        pool: Any
        tls: Any

    def reachable(self) -> Callable[[str, int], tuple[str, int]] | None:
        """The nat_map as a function: an announced (host, port) -> the one to connect to."""
        if not self.nat_map:
            return None
        table = {seed_address(announced): seed_address(target) for announced, target in self.nat_map.items()}
        return lambda host, port: table.get((host, port), (host, port))

    @property
    def is_cluster(self) -> bool:
        return self.cluster or (self.url is not None and is_cluster_url(self.url))

    def selected_databases(self) -> list[int]:
        if self.databases:
            return list(self.databases)
        if self.url:
            return [url_db(self.url)]
        return [self.db]

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for redis.Redis, secrets included: never print these."""
        kwargs: dict[str, Any] = {
            "socket_connect_timeout": self.timeouts.connect,
            "socket_timeout": self.timeouts.statement or max(self.timeouts.connect, 30.0),
            "max_connections": self.pool.max_size,
        }
        if self.url is None:
            kwargs.update(host=self.host, port=self.port, db=self.db, username=self.username)
        if self.password is not None:
            kwargs["password"] = self.password.get_secret_value()
        if self.tls.enabled:
            kwargs.update(ssl=True, ssl_cert_reqs="required" if self.tls.verify else "none",
                          ssl_ca_certs=_str(self.tls.ca_file), ssl_certfile=_str(self.tls.cert_file),
                          ssl_keyfile=_str(self.tls.key_file))
        return kwargs


CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def seed_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) of a cluster seed, or ValueError."""
    parts = split_url(f"redis://{text}", ("redis",))
    if parts.username is not None or parts.path or parts.query or not parts.hostname or parts.port is None:
        raise ValueError(f"cluster node {text!r} is not host:port (e.g. 10.0.0.5:6379)")
    return parts.hostname, parts.port


def url_db(url: str) -> int:
    """The db a Redis URL selects, read as redis-py reads it, or ValueError where redis-py would
    quietly fall back to db 0 (``/13x``, ``/abc``) or read something else (``/1/3`` as db 13, a
    ``?db=`` overriding the path, unknown query parameters passed on to the connection)."""
    parts = split_url(url, ("redis", "rediss", "unix", *CLUSTER_SCHEMES))
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// url needs the socket path, such as unix:///run/redis.sock?db=0")
        query = parse_qs(parts.query, keep_blank_values=True)
        db_values = query.pop("db", ["0"])
        if query:
            reject_query(parts, "only ?db=N is read from a unix:// url")
        return _db_number(db_values[-1], "?db=")
    reject_query(parts, "write the db as the path (/N); use the backend's timeouts, pool and tls keys")
    path = parts.path.strip("/") if parts.path.count("/") <= 1 else parts.path
    return _db_number(path or "0", "the path")


def _db_number(text: str, where: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"the db ({where}) must be a number such as /0 or /3; redis-py would quietly use db 0")
    if len(text) > 10 or int(text) > MAX_DB:
        raise ValueError(f"the db ({where}) must be at most {MAX_DB} (a server has `databases` of them, 16 by default)")
    return int(text)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


class RedisBackend(Backend):
    kind = "redis"
    Settings = SettingsModel("storagectl.backends.redis_settings:RedisSettings")
    CHECKS = REDIS_CHECKS
    settings: RedisSettings

    @classmethod
    def for_settings(cls, settings: Any) -> type[Backend]:
        if settings.is_cluster:
            from storagectl.backends.redis_cluster import RedisClusterBackend

            return RedisClusterBackend
        return cls

    def endpoint(self) -> str:
        if self.settings.url:
            return redact_url(self.settings.url)
        s = self.settings
        return f"redis://{s.host}:{s.port}/{s.db}"

    def client(self, db: int | None = None, socket_timeout: float | None = None,
               single_connection_client: bool = False) -> Any:
        """A client; storagectl's own retry policy applies, so redis-py's built-in retry is off."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        kwargs = self.settings.client_kwargs()
        kwargs["retry"] = Retry(NoBackoff(), 0)
        if socket_timeout is not None:
            kwargs["socket_timeout"] = socket_timeout
        if not self.settings.url:
            if db is not None:
                kwargs["db"] = db
            return redis.Redis(**kwargs, single_connection_client=single_connection_client)
        pool = redis.ConnectionPool.from_url(self.settings.url, **kwargs)
        if db is not None:  # from_url lets the URL's /N win over a db argument
            pool.connection_kwargs["db"] = db
        client = redis.Redis(connection_pool=pool, single_connection_client=single_connection_client)
        client.auto_close_connection_pool = True  # as Redis.from_pool: close() disconnects the pool
        return client

    def _open(self) -> Any:
        # The handshake (AUTH, SELECT, PING) must finish within the connect timeout; a server that
        # accepts TCP but never answers would otherwise hang for the whole statement timeout.
        probe = self.client(socket_timeout=self.settings.timeouts.connect)
        try:
            probe.ping()
        finally:
            probe.close()
        return self.client()

    def _close(self, connection: Any) -> None:
        connection.close()

    def translate_error(self, exc: BaseException) -> StoragectlError:
        if "DB index is out of range" in str(exc):  # SELECT of the db the backend names, on connecting
            db = url_db(self.settings.url) if self.settings.url else self.settings.db
            return UsageError(f"{self.label}: the server has no db {db} (DB index is out of range)",
                              hint="Try: a db below the server's `databases` setting in the backend's URL or `db`")
        return self.auth_error(exc) or classify_connection_error(self, exc)

    def auth_error(self, exc: BaseException) -> AuthenticationFailed | None:
        """A refused password as :class:`AuthenticationFailed` (None: another error). redis-py's
        AuthenticationError is a ConnectionError, so this is asked before any "connection lost"."""
        import redis

        text = str(exc)
        if isinstance(exc, redis.AuthenticationError) or any(
            marker in text for marker in ("WRONGPASS", "NOAUTH", "invalid password", "invalid username")
        ):
            return AuthenticationFailed(
                f"{self.label}: authentication failed",
                hint="Try: check username and password / password_file in the config",
            )
        return None

    def visit_keyspace(self, connection: Any, visit: Callable[[KeyspacePart], T], concurrency: int = 4,
                       stop: Any = None) -> list[T]:
        """``visit`` on each server holding part of the keyspace: this one (a cluster: every primary,
        through the fan-out), one value per server."""
        return [visit(KeyspacePart(self.endpoint(), connection, None, 1))]

    def ping(self, connection: Any) -> None:
        connection.ping()

    def server_version(self, connection: Any) -> str:
        return str(connection.info("server")["redis_version"])

    def diagnose(self, connection: Any) -> list[Check]:
        info = connection.info("all")
        maxclients = int(connection.config_get("maxclients").get("maxclients", 0) or 0)
        return [
            self._memory(info),
            self.graded("evicted_keys", info.get("evicted_keys", 0), str(info.get("evicted_keys", 0))),
            self._hit_ratio(info),
            self._clients(info, maxclients),
            self.graded("blocked_clients", info.get("blocked_clients", 0), str(info.get("blocked_clients", 0))),
            self._persistence(info),
        ]

    def _memory(self, info: dict[str, Any]) -> Check:
        used, limit = info.get("used_memory", 0), info.get("maxmemory", 0)
        if not limit:
            return self.info("memory_used_pct", None, f"{human_bytes(used)} (no maxmemory)",
                             "set maxmemory to bound memory use")
        pct = round(100.0 * used / limit, 1)
        return self.graded("memory_used_pct", pct, f"{human_bytes(used)}/{human_bytes(limit)} ({pct:g}%)")

    def _hit_ratio(self, info: dict[str, Any]) -> Check:
        hits, misses = info.get("keyspace_hits", 0), info.get("keyspace_misses", 0)
        ratio = 100.0 if hits + misses == 0 else round(100.0 * hits / (hits + misses), 2)
        return self.graded("keyspace_hit_ratio", ratio, f"{ratio:g}%", f"{hits} hits, {misses} misses")

    def _clients(self, info: dict[str, Any], maxclients: int) -> Check:
        clients = info.get("connected_clients", 0)
        if not maxclients:
            return self.info("connected_clients_pct", None, str(clients))
        pct = round(100.0 * clients / maxclients, 1)
        return self.graded("connected_clients_pct", pct, f"{clients}/{maxclients} ({pct:g}%)")

    def _persistence(self, info: dict[str, Any]) -> Check:
        rdb = info.get("rdb_last_bgsave_status", "ok")
        aof = info.get("aof_last_write_status", "ok") if info.get("aof_enabled") else "off"
        failed = rdb != "ok" or aof not in ("ok", "off")
        return Check("persistence", Status.CRITICAL if failed else Status.OK, {"rdb": rdb, "aof": aof},
                     f"rdb {rdb}, aof {aof}", "last background save or AOF write failed" if failed else "")

    # -- cache commands (storagectl.cache): the same calls on one server and on a cluster ----------
    def cache_topology(self, what: str) -> ClusterTopology:
        """The primaries ``cache`` visits: here the one server, as a single node serving every slot."""
        node = ClusterNode("standalone", self.settings.host, self.settings.port, frozenset({"master"}), None,
                           "connected", ((0, SLOTS - 1),))
        return ClusterTopology((node,), self.endpoint())

    def node_client(self, node: ClusterNode, single_connection_client: bool = False) -> Any:
        return self.client(single_connection_client=single_connection_client)

    def owned_keys(self, topology: ClusterTopology, node: ClusterNode) -> KeyFilter | None:
        """The filter that keeps a node's keys of slots it owns (None: every key is the node's own)."""
        return None

    def cluster_down(self, what: str, exc: BaseException) -> BackendUnavailable | None:
        """CLUSTERDOWN / MASTERDOWN (a primary failed: its slots, and with full coverage required every
        slot, are refused) as :class:`BackendUnavailable` naming the failing primaries when they can be
        read (None: another error)."""
        from redis.exceptions import ClusterDownError

        if not isinstance(exc, ClusterDownError) and not str(exc).startswith(("CLUSTERDOWN", "MASTERDOWN")):
            return None
        failing = self.failing_primaries()
        nodes = f" (failing primary: {', '.join(failing)})" if failing else ""
        return BackendUnavailable(f"{self.label}: {what} failed: the cluster is down{nodes}",
                                  hint=f"Try: storagectl diag --backend {self.name}, then bring the node back or "
                                  "wait for a replica to take over")

    def failing_primaries(self) -> list[str]:
        """Addresses of the primaries flagged failing (one server: none to name)."""
        return []

    def node_error(self, what: str, node: ClusterNode, exc: Exception) -> Exception:
        """A driver error met on ``node`` as one of our errors."""
        import redis

        if not isinstance(exc, redis.RedisError):
            return exc
        if refused := self.auth_error(exc) or self.cluster_down(what, exc):
            return refused
        if isinstance(exc, redis.ResponseError):
            return OperationFailed(f"{self.label}: {what} failed: {self.error_line(exc)}")
        return BackendUnavailable(f"{self.label}: {what} failed, connection lost: {self.error_line(exc)}",
                                  hint=f"Try: storagectl diag --backend {self.name}")

    # -- backup / restore (storagectl.archive.api.BackupCapable) -----------------------------
    # Each db is one object of records (see docs/FORMAT.md). Per SCAN batch one MULTI runs TIME, then
    # DUMP + PTTL per key, so expiries are stored as absolute server-clock milliseconds. Requests are
    # pipelined and compression runs in a helper thread, so the server, the bottleneck, never waits.
    def selected_databases(self) -> list[int]:
        return self.settings.selected_databases()

    def backup_estimate(self, connection: Any) -> Estimate | None:
        """The selected dbs' share of the dataset memory, by their key counts (INFO's DBSIZE per db)."""
        import redis

        databases = self.selected_databases()
        try:
            keyspace, memory = connection.info("keyspace"), connection.info("memory")
        except redis.ResponseError:  # INFO denied by an ACL: no total, the backup still runs
            return None
        keys = {int(name[2:]): int(stats.get("keys", 0)) for name, stats in keyspace.items()}
        everything = sum(keys.values())
        dataset = int(memory.get("used_memory_dataset", 0))
        share = sum(keys.get(db, 0) for db in databases) / everything if everything else 0.0
        return Estimate(int(dataset * share), len(databases))

    selection_fields = ("patterns", "types")
    selection_replace_method = ("in place: the keys of the selection the target holds are deleted (UNLINK), then "
                                "the backup's keys of the selection restored; other keys are not touched; a "
                                "restore that fails leaves the selection partial")

    def backup(self, archive: Any, options: Any) -> None:
        databases = self.selected_databases()
        selection = KeySelection.of(options.selection)
        method, why = self._backup_method(selection, databases)
        if method != "rdb" and options.head_start is not None:
            options.head_start.close()  # the server's fork child need not wait for the end of the run
        counts = None
        if method == "rdb":
            try:
                counts = self._backup_rdb(archive, databases, options.head_start)
            except RdbRefused as exc:
                if self.settings.backup_method == "rdb":
                    raise OperationFailed(f"{self.label}: backup_method rdb: {self.redact(str(exc))}",
                                          hint="Try: allow SYNC (ACL +sync +replconf), or backup_method: dump") from exc
                method, why = "dump", self.redact(str(exc))
        if counts is None:
            counts = {_unit(db, databases): self._guarded("backup", lambda db=db: self._backup_db(archive, db,
                                                                                                  selection))
                      for db in databases}
        log.info("%s: backup method %s (%s)", self.label, method, why)
        archive.set_metadata("databases", databases)
        archive.set_metadata("method", method)
        record_summary(archive, ContentSummary(counts=counts))

    def _backup_method(self, selection: KeySelection | None, databases: list[int]) -> tuple[str, str]:
        """"rdb" or "dump", and why (see RedisSettings.backup_method). An explicit rdb says on stderr
        what it costs beyond the backed-up dbs (the server's wait, other dbs' keys)."""
        setting = self.settings.backup_method
        if selection is not None:
            if setting == "rdb":
                raise UsageError(f"{self.label}: backup_method rdb takes the whole snapshot; it cannot select keys",
                                 hint="Try: backup_method auto or dump for a --pattern/--type backup")
            return "dump", "a selection of keys"
        if setting != "auto":
            if setting == "rdb":
                self._guarded("reading the server's settings", lambda: self._say_rdb_costs(databases))
            return setting, f"backup_method: {setting}"
        version, config, keys, modules = self._guarded("reading the server's settings", self._server_facts)
        obstacle = rdb_obstacle(version, config, keys, databases, modules)
        return ("dump", obstacle) if obstacle else ("rdb", "the server sends its snapshot without delay")

    def _say_rdb_costs(self, databases: list[int]) -> None:
        import redis

        try:
            _version, config, keys, _modules = self._server_facts()
        except redis.ResponseError:  # INFO denied (an ACL): the snapshot is still allowed
            return
        if costs := rdb_costs(config, keys, databases):
            log.warning("%s: backup_method rdb: %s", self.label, costs)

    def _server_facts(self) -> tuple[str, dict[str, str] | None, dict[int, int], bool]:
        """The server's version, ``repl-diskless-sync*`` settings (None: CONFIG GET denied), keys per db
        and whether modules are loaded: one round trip."""
        import redis

        client = self.client()
        try:
            pipe = client.pipeline(transaction=False)
            pipe.info("server").info("keyspace").info("modules").config_get("repl-diskless-sync*")
            server, keyspace, modules, config = pipe.execute(raise_on_error=False)
        finally:
            client.close()
        if failed := [reply for reply in (server, keyspace, modules) if isinstance(reply, Exception)]:
            raise failed[0]
        config = None if isinstance(config, redis.ResponseError) else config  # CONFIG denied (an ACL)
        keys = {int(name[2:]): int(stats.get("keys", 0)) for name, stats in keyspace.items()}
        return str(server["redis_version"]), config, keys, bool(modules)

    def _backup_rdb(self, archive: Any, databases: list[int], head_start: HeadStart | None = None) -> dict[str, int]:
        """The server's snapshot as the object RDB_OBJECT; keys per unit. RdbRefused (before anything
        is written) when the server will not send it. ``head_start``: SYNC sent early
        (storagectl.backends.redis_head_start), taken if it went to this very server."""
        from storagectl.archive.pipe import BackgroundWriter

        client = self.client(single_connection_client=True)
        try:
            sync = self._guarded("backup", lambda: self._started_sync(client, head_start))
            with archive.create(RDB_OBJECT) as sink, BackgroundWriter(sink.write) as writer:
                sizes, version = self._guarded("backup", lambda: receive_rdb(sync, writer.put, databases))
                sink.counts = {"keys": sum(sizes.values())}
        finally:
            client.close()
            if head_start is not None:
                head_start.close()
        archive.set_metadata("rdb_version", version)
        return {_unit(db, databases): sizes[db] for db in databases}

    @staticmethod
    def _started_sync(client: Any, head_start: HeadStart | None) -> ReplicaSync:
        """The head start's transfer if its server is the client's (the same ``run_id``), else one
        started now on the client's connection."""
        if head_start is not None and head_start.run_id == client.info("server")["run_id"]:
            sync = head_start.taken()
            sync.await_snapshot()
            return sync
        return start_sync(client.connection)

    def _backup_db(self, archive: Any, db: int, selection: KeySelection | None = None) -> int:
        client = self.client(db=db, single_connection_client=True)
        try:
            return write_records(archive, f"db{db}.records", client, selection=selection)
        finally:
            client.close()

    @property
    def replace_method(self) -> str:
        if self.settings.staging_db is None:
            return ("in place: the db is flushed first, so a restore that fails leaves it partial "
                    "(set staging_db to swap in only a complete restore)")
        return (f"loaded into staging db {self.settings.staging_db}, then swapped with the target (SWAPDB) when "
                "complete; a failed restore leaves the target as it was (single-db backups; others in place)")

    def restore(self, archive: Any, options: Any) -> RestoreOutcome:
        mapping = self._db_mapping(list(archive.metadata.get("databases") or []))
        targets = list(mapping.values())
        selection = KeySelection.of(options.selection)
        if selection is not None:
            return self._restore_selection(archive, mapping, selection, options.replace_existing)
        if options.replace_existing and self.stages_replacement(archive.metadata) and not self.is_empty():
            [(source, target)] = mapping.items()
            return self._restore_staged(archive, source, target, self.settings.staging_db, options)
        loaded = {_unit(target, targets): self._guarded("restore", lambda s=source, t=target: (
                      self._restore_db(archive, s, t, options.replace_existing)))
                  for source, target in mapping.items()}
        return self._outcome(loaded)

    def _restore_selection(self, archive: Any, mapping: dict[int, int], selection: KeySelection,
                           replace: bool) -> RestoreOutcome:
        """Only the selected keys, in place: with ``replace`` the target's keys of the selection go first;
        no FLUSHDB, no staging db, other keys untouched."""
        targets = list(mapping.values())
        loaded, expected = {}, {}
        for source, target in mapping.items():
            unit = _unit(target, targets)
            records = CountedRecords(selection.records(db_records(archive, source)))
            loaded[unit] = self._guarded("restore", lambda t=target, r=records: self._restore_selected(
                t, r, selection, replace))
            expected[unit] = records.count
        outcome = self._outcome(loaded)
        outcome.expected = ContentSummary(counts=expected)
        outcome.notes.append(f"restored {sum(expected.values())} selected key(s) in place; other keys untouched")
        return outcome

    def _restore_selected(self, db: int, records: Iterable[tuple[bytes, bytes, int]], selection: KeySelection,
                          replace: bool) -> LoadedKeys:
        client = self.client(db=db, single_connection_client=True)
        try:
            loaded = LoadedKeys(server_ms(client.time()))
            if replace:
                delete_matching(client, selection)
            _restore_all(client, records, loaded)
        finally:
            client.close()
        return loaded

    def holds_selection(self, selection: Any) -> bool:
        keys = KeySelection.of(selection)
        for db in self.selected_databases():
            client = self.client(db=db)
            try:
                if self._guarded("scanning keys", lambda c=client: holds_any(c, keys)):
                    return True
            finally:
                client.close()
        return False

    def compare_items(self, archive: Any, outcome: RestoreOutcome) -> list[ItemCheck]:
        """Every record of each restored db against the key the target db holds (type, value, expiry):
        :mod:`storagectl.backends.redis_compare`. Needs Redis 7.0 (script flags, PEXPIRETIME)."""
        from storagectl.backends.redis_compare import compare_all, compare_on

        if not self._compares_keys():
            return []
        mapping = self._db_mapping(list(archive.metadata.get("databases") or []))
        targets = list(mapping.values())
        checks = []
        for source, target in mapping.items():
            unit = _unit(target, targets)

            def compare(records: Any, equal: bool, target: int = target, unit: str = unit) -> list[Any]:
                client = self.client(db=target, single_connection_client=True)
                return [compare_on(client, records, unit, equal)]

            checks.append(self._guarded("validation", lambda s=source, u=unit, c=compare: compare_all(
                c, lambda: db_records(archive, s), u, outcome.skipped.get(u, 0))))
        return checks

    def _compares_keys(self) -> bool:
        client = self.client()
        try:
            major = self._guarded("reading the server version", lambda: client.info("server")["redis_version"])
        finally:
            client.close()
        return int(str(major).split(".")[0]) >= 7

    def _outcome(self, loaded: dict[str, LoadedKeys]) -> RestoreOutcome:
        """Skipped keys per unit, and the allowance for keys expiring until the checks that follow
        (they run right after the restore: CHECK_MARGIN_MS covers them)."""
        horizon = self._server_ms() + CHECK_MARGIN_MS
        return RestoreOutcome(skipped={unit: keys.skipped for unit, keys in loaded.items()},
                              tolerance={unit: keys.may_have_expired(horizon) for unit, keys in loaded.items()})

    def _server_ms(self) -> int:
        client = self.client()
        try:
            return server_ms(self._guarded("reading the server time", client.time))
        finally:
            client.close()

    def stages_replacement(self, metadata: dict[str, Any]) -> bool:
        return self.settings.staging_db is not None and len(metadata.get("databases") or []) == 1

    def check_replace(self) -> None:
        """With a staging db, it must be empty: checked before the restore reads anything."""
        staging = self.settings.staging_db
        if staging is None:
            return
        client = self.client(db=staging)
        try:
            waiting = self._guarded("checking the staging db", client.dbsize)
        finally:
            client.close()
        if waiting:
            raise UsageError(f"{self.label}: staging db {staging} is not empty ({waiting} keys); nothing was restored",
                             hint=f"Try: empty it (redis-cli -n {staging} FLUSHDB), or set another staging_db")

    def _restore_staged(self, archive: Any, source: int, target: int, staging: int, options: Any) -> RestoreOutcome:
        """Load into the (empty) staging db, check it, then SWAPDB: clients of the target db see the old
        keys until the swap and the restored ones right after it. The old keys are flushed last."""
        self.check_replace()
        client = self.client(db=staging)
        try:
            try:
                loaded = self._guarded("restore", lambda: self._restore_db(archive, source, staging, replace=False))
                outcome = self._outcome({"keys": loaded})
                backed_up = archived_keys(archive, source)
                self._check_staged_count(client, backed_up - loaded.skipped,
                                         outcome.tolerance["keys"], staging)
                if options.check_staged is not None:
                    options.check_staged(self._on_databases([staging]), outcome)
            except BaseException as exc:
                raise_with_state(exc, f"db {target} is unchanged" + self._flush_or_say(client, staging))
            self._swap(client, target, staging)
            if self._flush_or_say(client, staging):
                outcome.notes.append(f"the old keys are still in staging db {staging}: FLUSHDB it")
            return outcome
        finally:
            client.close()

    def _check_staged_count(self, client: Any, expected: int, expiring: int, staging: int) -> None:
        """Always, --validate or not: keys lost while loading (evicted under maxmemory, deleted by
        another client) must never be swapped in; ``expiring`` restored keys may have expired."""
        loaded = self._guarded("counting the staged keys", client.dbsize)
        if not expected - expiring <= loaded <= expected:
            allowance = f" (less up to {expiring} expiring)" if expiring else ""
            raise IntegrityError(f"{self.label}: staging db {staging} holds {loaded} keys after the restore, "
                                 f"expected {expected}{allowance}: evicted under maxmemory, or used by another "
                                 "client?", hint="Try: check maxmemory and that nothing else uses the staging_db")

    def _swap(self, client: Any, target: int, staging: int) -> None:
        import redis

        try:
            client.swapdb(target, staging)
        except redis.ConnectionError as exc:
            raise BackendUnavailable(
                f"{self.label}: connection lost during SWAPDB {target} {staging}; whether the restore was swapped "
                f"in is unknown: db {target} holds either the restored or the old keys, db {staging} the others",
                hint=f"Try: check both dbs (redis-cli -n {target} DBSIZE), then FLUSHDB the one to discard") from exc
        except redis.RedisError as exc:
            raise OperationFailed(f"{self.label}: SWAPDB failed: {self.redact(str(exc))} (db {target} is unchanged"
                                  f"{self._flush_or_say(client, staging)})",
                                  hint="Try: grant SWAPDB (ACL +swapdb), or unset staging_db") from exc

    def _on_databases(self, databases: list[int]) -> RedisBackend:
        return type(self)(self.name, self.settings.model_copy(update={"databases": databases, "staging_db": None}))

    def _flush_or_say(self, client: Any, staging: int) -> str:
        """Empty the staging db; on failure, the words that tell the operator to do it."""
        import redis

        try:
            client.flushdb(asynchronous=True)
            return ""
        except redis.RedisError as exc:
            log.warning("%s: could not empty staging db %s: %s", self.label, staging, self.redact(str(exc)))
            return f"; staging db {staging} could not be emptied: FLUSHDB it before the next restore"

    def select_db(self, metadata: dict[str, Any], db: int) -> dict[str, Any]:
        """The backup as if it held only its db ``db``: one db, its key count as the unit ``keys``."""
        sources = list(metadata.get("databases") or [])
        if db not in sources:
            raise UsageError(f"the backup holds dbs {sources}; --db {db} is not one of them",
                             hint=f"Try: --db {sources[0]}" if sources else None)
        narrowed = {**metadata, "databases": [db]}
        summary = recorded_summary(metadata)
        if summary is not None:
            count = summary.counts.get(_unit(db, sources))
            narrowed[SUMMARY_METADATA_KEY] = {"counts": {} if count is None else {"keys": count}, "checksums": {}}
        return narrowed

    def _db_mapping(self, sources: list[int], source: str = "the backup holds") -> dict[int, int]:
        """Source db -> target db: a single db goes to the target's db, several keep their numbers.
        ``source`` names where the dbs come from, for the message."""
        targets = self.selected_databases()
        if len(sources) == 1 and len(targets) == 1:
            return {sources[0]: targets[0]}
        missing = sorted(set(sources) - set(targets))
        if missing:
            raise UsageError(f"{self.label}: {source} dbs {sources}; the target selects {targets}",
                             hint="Try: set `databases` of the target backend to the same dbs")
        return {db: db for db in sources}

    def _restore_db(self, archive: Any, source: int, db: int, replace: bool) -> LoadedKeys:
        client = self.client(db=db, single_connection_client=True)
        try:
            loaded = LoadedKeys(server_ms(client.time()))
            if replace:  # --yes replaces the db: keys absent from the backup must not survive
                client.flushdb()
            _restore_all(client, db_records(archive, source), loaded)
        finally:
            client.close()
        return loaded

    def _guarded(self, what: str, call: Any) -> Any:
        import redis

        try:
            return call()
        except redis.ResponseError as exc:
            hint = "Try: --yes to replace existing keys" if "BUSYKEY" in str(exc) else None
            raise OperationFailed(f"{self.label}: {what} failed: {self.redact(str(exc))}", hint=hint) from exc
        except redis.RedisError as exc:
            raise BackendUnavailable(f"{self.label}: {what} failed, connection lost: {self.redact(str(exc))}",
                                     hint=f"Try: storagectl diag --backend {self.name}") from exc

    def is_empty(self) -> bool:
        return all(count == 0 for count in self.content_summary().counts.values())

    def content_summary(self, like: ContentSummary | None = None, selection: Any = None) -> ContentSummary:
        """Keys per db; with a ``selection``, only the keys it names."""
        databases = self.selected_databases()
        keys = KeySelection.of(selection) if selection is not None else None
        counts = {}
        for db in databases:
            client = self.client(db=db)
            try:
                count = client.dbsize if keys is None else (lambda c=client: count_matching(c, keys))
                counts[_unit(db, databases)] = self._guarded("count keys", count)
            finally:
                client.close()
        return ContentSummary(counts=counts)


RECORDS_MAGIC = b"STCTLRD1"
CHECK_MARGIN_MS = 60_000  # keys expiring up to this long after the restore are allowed for by its checks
_RECORD_HEADER = struct.Struct(">IIq")  # key length, payload length, absolute expiry in ms (0 = none)
BATCH_KEYS = 1000  # keys per RESTORE script call


def record_objects(archive: Any, db: int) -> list[str]:
    """The record objects of ``db``: ``db<N>.records``, or one ``db<N>.<part>.records`` per cluster primary."""
    return [name for name in archive.names()
            if name == f"db{db}.records" or (name.startswith(f"db{db}.") and name.endswith(".records"))]




@dataclass(frozen=True)
class KeyspacePart:
    """One server holding part of a keyspace, as :meth:`RedisBackend.visit_keyspace` hands it to a visit:
    its name, a client open for the visit (closed after it), the filter of the keys SCAN returns there
    that belong to this part (None: all; a cluster node: those of the slots its primary owns), and how
    many parts the keyspace has."""

    name: str
    client: Any
    keep: KeyFilter | None
    parts: int


def write_records(archive: Any, name: str, client: Any, keep: KeyFilter | None = None,
                  cross_slot: bool = False, selection: KeySelection | None = None) -> int:
    """Every key SCAN returns on ``client``'s node and db (those ``keep`` keeps), as the records object
    ``name``; returns the number written (only the keys of a ``selection``, when given: SCAN MATCH/TYPE
    and the same checks here). ``client`` must be a single-connection redis.Redis. On a
    cluster node (``cross_slot``) a batch's keys span many slots, which MULTI refuses (CROSSSLOT): a
    script dumps them instead, as atomically."""
    from storagectl.archive.pipe import BackgroundWriter

    dumper = ScriptDump(client.script_load(DUMP_CROSS_SLOT_LUA)) if cross_slot else MultiDump()
    commands = RespSocket(client.connection)
    with archive.create(name) as sink, BackgroundWriter(sink.write) as writer:
        writer.put(RECORDS_MAGIC)
        written = 0
        match, type_ = selection.scan_filter() if selection else (None, None)
        if selection is not None:
            keep = _both(keep, selection.key_filter())
        for keys, reply in dump_batches(commands, keep=keep, dumper=dumper, match=match, type_=type_):
            records, count = _pack_records(keys, reply, dumper.absolute_expiry,
                                           selection.keeps_payload if selection else None)
            writer.put(records)
            written += count
        sink.counts = {"keys": written}
    return written


def _both(first: KeyFilter | None, second: KeyFilter) -> KeyFilter:
    return second if first is None else (lambda keys: second(first(keys)))


class CountedRecords:
    """An iterable of records that counts what was taken from it."""

    def __init__(self, records: Iterable[Any]) -> None:
        self.records, self.count = records, 0

    def __iter__(self) -> Iterator[Any]:
        for record in self.records:
            self.count += 1
            yield record


def read_records(archive: Any, names: list[str]) -> Iterator[tuple[bytes, bytes, int]]:
    """(key, DUMP payload, absolute expiry ms) of every record of the objects ``names``, in order."""
    for name in names:
        with archive.open(name) as stream:
            if read_exact(stream, len(RECORDS_MAGIC)) != RECORDS_MAGIC:
                raise IntegrityError(f"{name}: not a storagectl Redis records stream")
            yield from _records(stream, name)


def db_records(archive: Any, db: int) -> Iterator[tuple[bytes, bytes, int]]:
    """(key, DUMP payload, absolute expiry ms) of every key of db ``db`` in a backup of either method."""
    if archive.metadata.get("method") != "rdb":
        yield from read_records(archive, record_objects(archive, db))
        return
    with archive.open(RDB_OBJECT) as stream:
        yield from rdb_records(stream, db, f"object {RDB_OBJECT!r}")


def archived_keys(archive: Any, db: int) -> int:
    """How many keys of db ``db`` the backup holds."""
    if archive.metadata.get("method") != "rdb":
        return sum(archive.counts(name).get("keys", 0) for name in record_objects(archive, db))
    summary = recorded_summary(archive.metadata)
    return summary.counts.get(_unit(db, list(archive.metadata.get("databases") or [])), 0) if summary else 0


def _unit(db: int, databases: list[int]) -> str:
    """Validation unit: "keys" for a single db (so it may be restored into another db), else "dbN"."""
    return "keys" if len(databases) == 1 else f"db{db}"


def batches(items: Iterable[Any], size: int = BATCH_KEYS) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def server_ms(seconds_micros: tuple[int, int]) -> int:
    seconds, micros = seconds_micros
    return int(seconds) * 1000 + int(micros) // 1000


# KEYS: keys; ARGV: expire-at (absolute ms, 0 = none) and payload per key. Returns the numbers of
# keys not restored: {expired since the backup, already present} -- the target db was empty or
# flushed (--yes) beforehand, so a present key is one SCAN returned twice, counted, not a mismatch.
# RESTORE's own BUSYKEY refusal detects it: one call per key, not EXISTS + RESTORE (a third less
# server time per key). On a cluster node, a key of a slot the node does not serve (moved or moving
# since the slot map was read) is not written either: its position is returned third, for the caller
# to follow the redirection (storagectl.backends.redis_redirect). Any other error ends the script.
_RESTORE_LOOP_LUA = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local expired, present, elsewhere = 0, 0, {}
for i = 1, %(count)s do
  local key, expire_at, payload = %(key)s, tonumber(%(expire_at)s), %(payload)s
  if expire_at ~= 0 and expire_at <= now_ms then
    expired = expired + 1
  else
    local reply = redis.pcall('RESTORE', key, expire_at, payload, 'ABSTTL')
    if type(reply) == 'table' and reply.err then
      if string.sub(reply.err, 1, 7) == 'BUSYKEY' then
        present = present + 1
      elseif string.find(reply.err, 'non local key', 1, true) then
        elsewhere[#elsewhere + 1] = i
      else
        return redis.error_reply(reply.err)
      end
    end
  end
end
return {expired, present, elsewhere}
"""
_RESTORE_BATCH_LUA = _RESTORE_LOOP_LUA % {"count": "#KEYS", "key": "KEYS[i]", "expire_at": "ARGV[2 * i - 1]",
                                          "payload": "ARGV[2 * i]"}
# The same on one cluster node for keys of many slots: a script's declared KEYS must share one slot,
# so the keys travel in ARGV (key, expire-at, payload per key) and the script may touch any slot the
# node serves (Redis >= 7.0). A key of a slot the node does not serve fails the script.
RESTORE_ROUTED_LUA = "#!lua flags=allow-cross-slot-keys\n" + _RESTORE_LOOP_LUA % {
    "count": "#ARGV / 3", "key": "ARGV[3 * i - 2]", "expire_at": "ARGV[3 * i - 1]", "payload": "ARGV[3 * i]"}


@dataclass
class LoadedKeys:
    """What restoring one db's records did, for the checks that follow it. Restored keys keep their
    absolute expiry, so some expire between their RESTORE and any later count: ``expiries`` lets a
    check allow for exactly those, in buckets (1 s within an hour of the start, then 1 min, then
    1 h: bounded memory, and a bucket counts as due from its start, so the allowance errs wide)."""

    started_ms: int
    expired: int = 0  # skipped: expired between backup and restore
    present: int = 0  # skipped: SCAN returned the key twice
    expiries: Counter[int] = field(default_factory=Counter)  # bucket start (ms) -> records

    @property
    def skipped(self) -> int:
        return self.expired + self.present

    def note_expiry(self, expire_at: int) -> None:
        ahead = expire_at - self.started_ms
        step = 1000 if ahead < 3_600_000 else 60_000 if ahead < 86_400_000 else 3_600_000
        self.expiries[expire_at - expire_at % step] += 1

    def count(self, reply: list[Any]) -> None:
        """Add a restore script's reply {expired, present}."""
        self.expired += int(reply[0])
        self.present += int(reply[1])

    def merge_all(self, others: Iterable[LoadedKeys]) -> LoadedKeys:
        """This, with what restoring other parts (a cluster's other primaries) did added in."""
        for other in others:
            self.started_ms = min(self.started_ms, other.started_ms)
            self.expired += other.expired
            self.present += other.present
            self.expiries.update(other.expiries)
        return self

    def may_have_expired(self, now_ms: int) -> int:
        """Restored keys whose expiry may have passed by ``now_ms`` (those skipped as expired are not)."""
        return max(0, sum(n for start, n in self.expiries.items() if start <= now_ms) - self.expired)


_NO_SUCH_KEY = -2  # PTTL of a missing key


def _pack_records(keys: list[bytes], reply: list[Any], absolute_expiry: bool = False,
                  keeps_payload: Callable[[bytes], bool] | None = None) -> tuple[bytes, int]:
    """One batch's records, and how many. Left out: keys deleted since SCAN (DUMP nil), keys that
    expired between their DUMP and PTTL (Redis 7.0 does not freeze the clock during EXEC), and those
    of a type ``keeps_payload`` refuses. The reply holds each key's PTTL, or with ``absolute_expiry``
    its PEXPIRETIME (both -2: no such key)."""
    now = 0 if absolute_expiry else server_ms(reply[0])
    pack = _RECORD_HEADER.pack
    parts: list[bytes] = []
    for key, payload, ttl in zip(keys, reply[1::2], reply[2::2], strict=True):
        if payload is not None and ttl != _NO_SUCH_KEY and (keeps_payload is None or keeps_payload(payload)):
            parts += (pack(len(key), len(payload), 0 if ttl < 0 else now + ttl), key, payload)
    return b"".join(parts), len(parts) // 3


RECORDS_READ_SIZE = 1 << 20  # records are parsed out of reads this large: two small reads per record
# through the archive's stream layers cost more than the restore's server work (measured, 1 M keys)


def _records(stream: BinaryIO, name: str) -> Iterator[tuple[bytes, bytes, int]]:
    header_size, unpack_from = _RECORD_HEADER.size, _RECORD_HEADER.unpack_from
    buffer, offset = b"", 0
    while True:
        if len(buffer) - offset < header_size:
            buffer, offset = buffer[offset:] + stream.read(RECORDS_READ_SIZE), 0
            if not buffer:
                return
            if len(buffer) < header_size:
                buffer += read_exact(stream, header_size - len(buffer))
                if len(buffer) < header_size:
                    raise IntegrityError(f"{name}: truncated record header")
        key_length, payload_length, expire_at = unpack_from(buffer, offset)
        start = offset + header_size
        end = start + key_length + payload_length
        if end > len(buffer):
            buffer, offset = buffer[offset:] + read_exact(stream, max(end - len(buffer), RECORDS_READ_SIZE)), 0
            start, end = header_size, header_size + key_length + payload_length
            if end > len(buffer):
                raise IntegrityError(f"{name}: truncated record")
        yield buffer[start:start + key_length], buffer[start + key_length:end], expire_at
        offset = end


def _restore_all(client: Any, records: Iterable[tuple[bytes, bytes, int]], loaded: LoadedKeys) -> None:
    """RESTORE every record with its absolute expiry (ABSTTL) in batches, counting into ``loaded``
    (``client``: single-connection). Pipelined: batch k+1 is read from the archive and sent before
    batch k's reply is read, so the server restores while the client reads."""
    sha = client.script_load(_RESTORE_BATCH_LUA).encode()
    commands = RespSocket(client.connection)
    sent = False
    for batch in batches(records):
        _restore_batch(commands, sha, batch, loaded)
        if sent:
            loaded.count(commands.reply())
        sent = True
    if sent:
        loaded.count(commands.reply())


def _restore_batch(commands: RespSocket, sha: bytes, records: list[tuple[bytes, bytes, int]],
                   loaded: LoadedKeys) -> None:
    """Send one batch's EVALSHA of _RESTORE_BATCH_LUA as RESP bytes (keys in KEYS; expiry and payload
    per key in ARGV): redis-py would encode its arguments one by one in Python."""
    count = b"%d" % len(records)
    parts = [b"*%d\r\n$7\r\nEVALSHA\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        3 + 3 * len(records), len(sha), sha, len(count), count)]
    parts += [b"$%d\r\n%s\r\n" % (len(key), key) for key, _payload, _expire in records]
    for _key, payload, expire_at in records:
        expiry = b"%d" % expire_at
        parts.append(b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(expiry), expiry, len(payload), payload))
        if expire_at:  # most keys have none: no call for them in this per-key loop
            loaded.note_expiry(expire_at)
    commands.send(b"".join(parts))


def restore_routed_request(head: bytes, records: list[tuple[bytes, bytes, int]], loaded: LoadedKeys) -> bytes:
    """EVALSHA of RESTORE_ROUTED_LUA (``head``: :func:`evalsha_head`) for one cluster node's batch, as
    RESP bytes for :class:`RespSocket` (redis-py would encode its 3 arguments per key in Python)."""
    parts = [b"*%d\r\n" % (3 + 3 * len(records)), head]
    for key, payload, expire_at in records:
        expiry = b"%d" % expire_at
        parts.append(_ROUTED_ARGS % (len(key), key, len(expiry), expiry, len(payload), payload))
        if expire_at:
            loaded.note_expiry(expire_at)
    return b"".join(parts)


_ROUTED_ARGS = b"$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"


def __getattr__(name: str) -> Any:
    """``RedisSettings``, the pydantic model, imported only when asked for (it was defined here)."""
    if name == "RedisSettings":
        from storagectl.backends.redis_settings import RedisSettings

        return RedisSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
