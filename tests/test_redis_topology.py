"""Redis Cluster topology: the slot map from CLUSTER SHARDS, CLUSTER SLOTS where SHARDS is refused,
node states from CLUSTER NODES where allowed, and announced addresses translated by a nat_map --
parsed from literal replies and read from a real cluster (tests/redis_cluster.py)."""

from __future__ import annotations

import time

import pytest

from storagectl.backends import open_backend
from storagectl.backends.redis_topology import (
    SLOTS,
    parse_cluster_nodes,
    parse_cluster_shards,
    parse_cluster_slots,
    reachable_through,
    with_node_states,
)
from storagectl.backup import list_backups, restore, run_backup
from storagectl.errors import BackendUnavailable
from tests.test_redis_cluster import cluster_config, cluster_snapshot, config_yaml, fill, settings

SHARDS_REPLY = [  # RESP2, as redis-py returns it: a flat name, value list per shard and node
    [b"slots", [0, 5460], b"nodes", [
        [b"id", b"aaa", b"port", 7000, b"ip", b"10.0.0.1", b"endpoint", b"10.0.0.1", b"role", b"master",
         b"replication-offset", 10, b"health", b"online"],
        [b"id", b"ddd", b"port", 7003, b"tls-port", 7103, b"ip", b"10.0.0.4", b"endpoint", b"node-d.example",
         b"role", b"replica", b"replication-offset", 10, b"health", b"online"]]],
    [b"slots", [5461, 10922], b"nodes", [
        [b"id", b"bbb", b"port", 7001, b"ip", b"10.0.0.2", b"endpoint", b"?", b"role", b"master",
         b"replication-offset", 10, b"health", b"failed"]]],
    [b"slots", [10923, 12000, 12001, 16383], b"nodes", [
        [b"id", b"ccc", b"port", 7002, b"ip", b"10.0.0.3", b"endpoint", b"10.0.0.3", b"role", b"master",
         b"replication-offset", 10, b"health", b"online"]]],
]
SLOTS_REPLY = [
    [0, 5460, [b"10.0.0.1", 7000, b"aaa"], [b"10.0.0.4", 7003, b"ddd"]],
    [5461, 10922, [b"10.0.0.2", 7001, b"bbb"]],
    [10923, 12000, [b"10.0.0.3", 7002, b"ccc"]],
    [12001, 16383, [b"10.0.0.3", 7002, b"ccc"]],
]
NODES_TEXT = """\
aaa 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460 [5461->-bbb]
bbb 10.0.0.2:7001@17001 master,fail? - 0 0 2 connected 5461-10922 [5461-<-aaa]
ccc 10.0.0.3:7002@17002 master - 0 0 3 disconnected 10923-16383
ddd 10.0.0.4:7003@17003 slave aaa 0 0 1 connected
eee 10.0.0.5:7004@17004 master - 0 0 0 connected
"""


@pytest.mark.parametrize("parse", [lambda: parse_cluster_shards(SHARDS_REPLY),
                                   lambda: parse_cluster_slots(SLOTS_REPLY)], ids=["shards", "slots"])
def test_shards_and_slots_replies_give_the_same_slot_map(parse):
    topology = parse()
    assert [node.node_id for node in topology.primaries()] == ["aaa", "bbb", "ccc"]
    assert topology.slots_covered == SLOTS and topology.owners[5461] == "bbb" and topology.owners[12001] == "ccc"
    assert topology.assignment() == parse_cluster_nodes(NODES_TEXT).assignment()  # ranges in one form
    replica = next(node for node in topology.nodes if node.node_id == "ddd")
    assert (replica.is_primary, replica.primary_id, replica.slots, replica.port) == (False, "aaa", (), 7003)
    assert not topology.migrations_known


def test_shards_give_endpoints_health_and_tls_ports():
    topology = parse_cluster_shards(SHARDS_REPLY, tls=True)
    by_id = {node.node_id: node for node in topology.nodes}
    assert by_id["ddd"].address == "node-d.example:7103"  # the announced endpoint, its TLS port
    assert by_id["bbb"].host == "10.0.0.2" and by_id["bbb"].failing == "fail"  # endpoint "?": the ip
    assert topology.via == "CLUSTER SHARDS"


def test_cluster_nodes_adds_states_the_map_commands_do_not_tell():
    topology = with_node_states(parse_cluster_slots(SLOTS_REPLY), parse_cluster_nodes(NODES_TEXT))
    by_id = {node.node_id: node for node in topology.nodes}
    assert by_id["bbb"].failing == "fail?" and by_id["ccc"].link_state == "disconnected"
    assert topology.migrations_known and topology.migrating_slots() == ["[5461->-bbb]", "[5461-<-aaa]"]
    assert "eee" in by_id and by_id["eee"].slots == ()  # a primary without slots: only CLUSTER NODES lists it
    assert topology.via == "CLUSTER SLOTS"


def test_a_nat_map_translates_announced_addresses_and_keeps_them_for_messages():
    table = {("10.0.0.1", 7000): ("127.0.0.1", 17000)}
    topology = reachable_through(parse_cluster_shards(SHARDS_REPLY),
                                 lambda host, port: table.get((host, port), (host, port)))
    first = topology.nodes[0]
    assert (first.address, first.announced) == ("127.0.0.1:17000", "10.0.0.1:7000")
    assert topology.nodes[2].announced is None


@pytest.mark.parametrize(("fields", "message"), [
    ({"url": "redis://h:7000", "nat_map": {"10.0.0.1:7000": "h:7000"}}, "set cluster: true"),
    ({"cluster": True, "nat_map": {"10.0.0.1": "h:7000"}}, "nat_map entry '10.0.0.1' is not host:port"),
    ({"cluster": True, "nat_map": {"10.0.0.1:7000": "h:port"}}, "nat_map entry"),
])
def test_bad_nat_maps_are_config_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        settings(**fields)


def test_a_bad_nat_map_is_one_line_naming_file_line_and_key(cli, write_config):
    path = write_config("version: 1\nbackends:\n  c:\n    kind: redis\n    url: redis+cluster://h:7000\n"
                        "    nat_map: {'10.0.0.1:7000': 'h'}\n")
    result = cli("-c", path, "config", "validate")
    assert result.exit_code == 2, result.stdout + result.stderr
    [line] = [line for line in result.stderr.splitlines() if "nat_map" in line]
    assert f"{path}:6" in line and "not host:port" in line and "Traceback" not in result.stderr


# -- a real cluster ---------------------------------------------------------------------------
def acl_user(cluster, name: str, *denied: str) -> str:
    """A user of every node allowed all but ``denied`` commands; the url of the cluster as that user."""
    for node in cluster.nodes:
        node.client().execute_command("ACL", "SETUSER", name, "reset", "on", ">pw", "~*", "&*", "+@all",
                                      *[f"-{command}" for command in denied])
    return f"redis+cluster://{name}:pw@{cluster.nodes[0].address}"


def drop_acl_user(cluster, name: str) -> None:
    for node in cluster.nodes:
        node.client().execute_command("ACL", "DELUSER", name)


def test_the_map_comes_from_cluster_shards_with_node_states_from_cluster_nodes(redis_cluster):
    topology = open_backend("c", settings(url=redis_cluster.seed_url)).topology()
    assert topology.via == "CLUSTER SHARDS" and topology.migrations_known
    expected = parse_cluster_nodes(redis_cluster.nodes[0].client().execute_command("CLUSTER", "NODES").decode())
    assert topology.assignment() == expected.assignment()
    assert sorted(node.address for node in topology.primaries()) == sorted(n.address for n in redis_cluster.nodes)


@pytest.mark.parametrize("denied", [("cluster|shards",), ("cluster|shards", "cluster|nodes")],
                         ids=["shards-refused", "shards-and-nodes-refused"])
def test_a_server_refusing_cluster_shards_is_read_with_cluster_slots(redis_cluster, write_config, tmp_path, denied):
    expected = parse_cluster_nodes(redis_cluster.nodes[0].client().execute_command("CLUSTER", "NODES").decode())
    url = acl_user(redis_cluster, "stctl_noshards", *denied)
    try:
        backend = open_backend("c", settings(url=url))
        topology = backend.topology()
        assert topology.via == "CLUSTER SLOTS"
        assert topology.migrations_known == ("cluster|nodes" not in denied)
        assert topology.assignment() == expected.assignment()
        fill(redis_cluster, mixed=300)  # and the whole path works on that map
        original = cluster_snapshot(redis_cluster)
        config = config_yaml(write_config, tmp_path, f"  cluster: {{kind: redis, url: '{url}'}}\n")
        [result] = run_backup(config, backend="cluster", destination="local")
        redis_cluster.flush()
        assert restore(config, result.manifest.id, target="cluster", validate=True).validation.ok
        assert cluster_snapshot(redis_cluster) == original
    finally:
        drop_acl_user(redis_cluster, "stctl_noshards")


def announce_unreachable_ports(cluster) -> dict[str, str]:
    """Every node announces a port nothing listens on (as behind Docker's port mapping); returns the
    nat_map that makes the cluster reachable again (announced -> real)."""
    from tests.redis_cluster import cluster_port

    nat = {}
    for node in cluster.nodes:
        announced = cluster_port()
        node.client().config_set("cluster-announce-port", announced)
        nat[f"127.0.0.1:{announced}"] = node.address
    deadline = time.monotonic() + 30
    while True:  # until every node has heard every other's new port
        seen = [node.client().execute_command("CLUSTER", "NODES").decode() for node in cluster.nodes]
        if all(f"{announced}@" in text for text in seen for announced in nat):
            return nat
        assert time.monotonic() < deadline, seen
        time.sleep(0.1)


def test_nodes_announcing_unreachable_addresses_work_through_a_nat_map(own_redis_cluster, cli, write_config, tmp_path):
    with own_redis_cluster(3) as cluster:
        fill(cluster, mixed=300)
        original = cluster_snapshot(cluster)
        nat = announce_unreachable_ports(cluster)
        announced = sorted(nat)
        plain = cluster_config(write_config, tmp_path, cluster)
        with pytest.raises(BackendUnavailable) as refused:
            run_backup(plain, backend="cluster", destination="local")
        message = str(refused.value)
        assert any(address in message for address in announced) and "unreachable" in message
        assert "nat_map" in refused.value.hint and list_backups(plain) == []
        path = write_config("version: 1\nbackends:\n" + cluster.backend_yaml("cluster") +
                            f"destinations:\n  local: {{kind: local, path: {tmp_path / 'backups'}}}\n")
        result = cli("-c", path, "backup", "run", "--backend", "cluster", "--to", "local")
        assert result.exit_code == 3 and "Traceback" not in result.stderr
        [error] = [line for line in result.stderr.splitlines() if "unreachable" in line]
        assert "announces" in error and any(address in error for address in announced)
        yaml_map = "nat_map:\n" + "".join(f"  '{a}': '{r}'\n" for a, r in nat.items())
        mapped = config_yaml(write_config, tmp_path, cluster.backend_yaml("cluster", yaml_map))
        [backup] = run_backup(mapped, backend="cluster", destination="local")
        cluster.flush()
        outcome = restore(mapped, backup.manifest.id, target="cluster", validate=True)
        assert outcome.validation.ok and cluster_snapshot(cluster) == original
        diag = cli("-c", write_config("version: 1\nbackends:\n" + cluster.backend_yaml("cluster", yaml_map)),
                   "diag", "-b", "cluster")
        assert diag.exit_code == 0, diag.stdout + diag.stderr
