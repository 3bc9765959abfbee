"""A real Redis Cluster for the tests: ``redis-server --cluster-enabled yes`` processes of the installed
binary on free loopback ports in a temporary directory, joined with ``redis-cli --cluster create``,
stopped by pid at the end. Nothing but the two binaries is needed; without them a cluster test
skips locally and fails under CI=true (tests/conftest.py ``service_unavailable``).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

NODE_TIMEOUT_MS = 2000  # short, so a killed node is marked failed within seconds
START_TIMEOUT = 30.0


def cluster_binaries() -> tuple[str, str] | str:
    """(redis-server, redis-cli), or why they cannot be used."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not server or not cli:
        return "redis-server and redis-cli must be on PATH to start a test Redis Cluster"
    return server, cli


@dataclass
class ClusterNodeProcess:
    port: int
    process: subprocess.Popen
    directory: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)

    def node_id(self) -> str:
        return self.client().execute_command("CLUSTER", "MYID").decode()

    def stop(self) -> None:
        """Kill by pid (SIGKILL: a crash, as a backup would meet one) and reap."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


@dataclass
class RedisClusterNodes:
    """A running test cluster: its primaries, their replicas, and helpers for the tests."""

    nodes: list[ClusterNodeProcess]  # the primaries
    cli: str
    spare: list[ClusterNodeProcess] = field(default_factory=list)  # started, not yet in the cluster
    replicas: list[ClusterNodeProcess] = field(default_factory=list)

    @property
    def seed_url(self) -> str:
        return f"redis+cluster://{self.nodes[0].address}"

    def client(self):
        from redis.cluster import RedisCluster

        return RedisCluster(host="127.0.0.1", port=self.nodes[0].port, socket_timeout=10)

    def backend_yaml(self, name: str = "cluster", extra: str = "") -> str:
        import textwrap

        body = f"  {name}:\n    kind: redis\n    url: {self.seed_url}\n"
        return body + textwrap.indent(textwrap.dedent(extra), "    ") if extra else body

    def flush(self) -> None:
        for node in self.nodes:
            if node.process.poll() is None:
                node.client().flushall()
        self.wait_for_replicas()

    def wait_for_replicas(self) -> None:
        """Until every replica has applied all its primary has written (WAIT on each primary)."""
        for node in self.nodes:
            if node.process.poll() is None and any(r.process.poll() is None for r in self.replicas):
                node.client().execute_command("WAIT", len(self.replicas) // len(self.nodes), 10_000)

    def dbsize(self) -> int:
        return sum(node.client().dbsize() for node in self.nodes)

    def add_node(self) -> ClusterNodeProcess:
        """Join a spare node (an empty primary, owning no slots yet)."""
        node = self.spare.pop(0)
        self._cli("--cluster", "add-node", node.address, self.nodes[0].address)
        self.nodes.append(node)
        wait_until_ok(self.nodes + self.replicas)
        return node

    def add_replica(self, primary: ClusterNodeProcess) -> ClusterNodeProcess:
        """Join a spare node as a replica of ``primary``; returns once it has synced."""
        node = self.spare.pop(0)
        self._cli("--cluster", "add-node", node.address, self.nodes[0].address, "--cluster-slave",
                  "--cluster-master-id", primary.node_id())
        self.nodes.append(node)
        wait_until_ok(self.nodes + self.replicas)
        _wait_for_sync(node)
        return node

    def reshard(self, source: ClusterNodeProcess, target: ClusterNodeProcess, slots: int) -> None:
        """Move ``slots`` slots, keys and all, with ``redis-cli --cluster reshard``."""
        self._cli("--cluster", "reshard", self.nodes[0].address, "--cluster-from", source.node_id(),
                  "--cluster-to", target.node_id(), "--cluster-slots", str(slots), "--cluster-yes")
        wait_until_ok(self.nodes + self.replicas)

    def _cli(self, *args: str) -> None:
        done = subprocess.run([self.cli, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli {' '.join(args[:2])} failed: {done.stdout[-800:]} {done.stderr[-800:]}")


def cluster_port() -> int:
    """A free loopback port whose cluster bus port (port + 10000) is free as well."""
    import random
    import socket

    while True:
        port = random.randint(20000, 50000)
        with socket.socket() as first, socket.socket() as bus:
            try:
                first.bind(("127.0.0.1", port))
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def _die_with_parent() -> None:
    """In the child: SIGKILL when the test process dies, even if it is killed before its fixtures end."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1  # noqa: N806 - the name prctl(2) gives it
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _start_node(server: str, directory: Path, port: int) -> ClusterNodeProcess:
    node_dir = directory / str(port)
    node_dir.mkdir()
    log = (node_dir / "redis.log").open("wb")
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
         "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
         "--dir", str(node_dir), "--save", "", "--appendonly", "no", "--daemonize", "no"],
        stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    log.close()
    return ClusterNodeProcess(port, process, node_dir)


def _wait_for_ping(node: ClusterNodeProcess) -> None:
    import redis

    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if node.process.poll() is not None:
            raise RuntimeError(f"redis-server on port {node.port} exited: "
                               f"{(node.directory / 'redis.log').read_text()[-800:]}")
        try:
            node.client().ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def wait_until_ok(nodes: list[ClusterNodeProcess]) -> None:
    """Until every live node says cluster_state:ok and knows all the others."""
    deadline = time.monotonic() + START_TIMEOUT
    live = [node for node in nodes if node.process.poll() is None]
    while True:
        infos = [node.client().execute_command("CLUSTER", "INFO").decode() for node in live]
        if all("cluster_state:ok" in info and f"cluster_known_nodes:{len(nodes)}" in info for info in infos):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"test cluster not ok within {START_TIMEOUT:g}s: {infos}")
        time.sleep(0.1)


def _sort_roles(cluster: RedisClusterNodes, joined: list[ClusterNodeProcess]) -> None:
    """redis-cli chooses which nodes become replicas: read each node's role."""
    roles = {node.port: node.client().info("replication")["role"] for node in joined}
    cluster.nodes = [node for node in joined if roles[node.port] == "master"]
    cluster.replicas = [node for node in joined if roles[node.port] != "master"]


def _wait_for_sync(node: ClusterNodeProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while node.client().info("replication").get("master_link_status") != "up":
        if time.monotonic() > deadline:
            raise RuntimeError(f"replica {node.address} did not sync within {START_TIMEOUT:g}s")
        time.sleep(0.1)


@contextlib.contextmanager
def running_cluster(primaries: int = 3, spare: int = 0, replicas: int = 0) -> Iterator[RedisClusterNodes]:
    """``primaries`` nodes joined into a cluster, each with ``replicas`` replicas (synced before this
    returns), plus ``spare`` started, unjoined nodes."""
    binaries = cluster_binaries()
    if isinstance(binaries, str):
        raise FileNotFoundError(binaries)
    server, cli = binaries
    directory = Path(tempfile.mkdtemp(prefix="stctl-cluster-"))
    started: list[ClusterNodeProcess] = []
    try:
        for _ in range(primaries * (1 + replicas) + spare):
            started.append(_start_node(server, directory, cluster_port()))
        for node in started:
            _wait_for_ping(node)
        joined = primaries * (1 + replicas)
        cluster = RedisClusterNodes(started[:primaries], cli, started[joined:])
        cluster._cli("--cluster", "create", *[node.address for node in started[:joined]],
                     "--cluster-replicas", str(replicas), "--cluster-yes")
        _sort_roles(cluster, started[:joined])
        wait_until_ok(cluster.nodes + cluster.replicas)
        for replica in cluster.replicas:
            _wait_for_sync(replica)
        yield cluster
    finally:
        for node in started:
            node.stop()
        shutil.rmtree(directory, ignore_errors=True)


@dataclass(frozen=True)
class TLSFiles:
    ca: Path  # the CA certificate that signed the server's
    cert: Path  # the server's, for 127.0.0.1 and localhost
    key: Path


def make_tls_files(directory: Path) -> TLSFiles:
    """A test CA and a server certificate it signed, made with the ``openssl`` command (P-256 keys)."""
    openssl = shutil.which("openssl")
    if not openssl:
        raise FileNotFoundError("openssl must be on PATH to make the test certificates")
    files = TLSFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for command in (
        ["req", "-x509", *ec, "-keyout", "ca.key", "-out", files.ca.name, "-days", "2", "-subj",
         "/CN=storagectl test CA"],
        ["req", *ec, "-keyout", files.key.name, "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", "server.csr", "-CA", files.ca.name, "-CAkey", "ca.key", "-CAcreateserial",
         "-out", files.cert.name, "-days", "2", "-extfile", "san.ext"],
    ):
        subprocess.run([openssl, *command], cwd=directory, check=True, capture_output=True, timeout=60)
    return files


@contextlib.contextmanager
def running_server(*options: str, binary: str | None = None, tls: TLSFiles | None = None
                   ) -> Iterator[ClusterNodeProcess]:
    """One standalone ``redis-server`` (no cluster; the installed one, or ``binary``) on a free
    loopback port, with extra ``options`` (such as ``--requirepass``), stopped by pid at the end.
    With ``tls`` the port speaks TLS only (no client certificates asked for)."""
    binaries = cluster_binaries() if binary is None else (binary, "")
    if isinstance(binaries, str):
        raise FileNotFoundError(binaries)
    directory = Path(tempfile.mkdtemp(prefix="stctl-redis-"))
    port = cluster_port()
    if tls is not None:  # the later --port wins: no plain port
        options = ("--port", "0", "--tls-port", str(port), "--tls-cert-file", str(tls.cert), "--tls-key-file",
                   str(tls.key), "--tls-ca-cert-file", str(tls.ca), "--tls-auth-clients", "no", *options)
    log = (directory / "redis.log").open("wb")
    process = subprocess.Popen(
        [binaries[0], "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
         "--appendonly", "no", "--daemonize", "no", *options],
        stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    log.close()
    server = ClusterNodeProcess(port, process, directory)
    try:
        _wait_for_port(server)
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _wait_for_port(node: ClusterNodeProcess) -> None:
    import socket

    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if node.process.poll() is not None:
            raise RuntimeError(f"redis-server on port {node.port} exited: "
                               f"{(node.directory / 'redis.log').read_text()[-800:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", node.port)) == 0:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server on port {node.port} did not listen within {START_TIMEOUT:g}s")
        time.sleep(0.05)
