#!/usr/bin/env python3
"""Redis Cluster: `backup run` of 1 M mixed keys from a 3-primary cluster vs the same keys from one
instance (target <= 1.0x: the primaries are scanned in parallel), and `restore --yes` into the cluster
(target >= 100 k keys/s, wall time of the whole command: process start, the archive verified before
the target is touched, every primary flushed, the keys routed and loaded), and the same restore with
`--validate` (every key compared with the archive afterwards: no target, its cost is printed).

Starts its own servers from the installed `redis-server` in a temp dir (a standalone one and a
3-primary cluster, as tests/redis_cluster.py does), loads the keys of bench/bench_redis_backup.py into
the standalone server, restores them into the cluster once, then alternates rounds of the three
timed commands. Run it under `flock /tmp/bench.lock` on a shared machine; it prints the load average.
Usage: python bench/bench_redis_cluster.py [--keys 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_redis_backup import load  # noqa: E402
from tests.redis_cluster import running_cluster, running_server  # noqa: E402


def storagectl(config: Path, *args: str) -> tuple[float, dict]:
    """Wall time and JSON output of this checkout's storagectl (not whatever is on PATH)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "storagectl", "-c", str(config), "-o", "json", *args],
                          capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed: storagectl {' '.join(args)}\n{done.stderr}")
    output = json.loads(done.stdout)
    return elapsed, output[0] if isinstance(output, list) else output


def server_cpu(ports: list[int]) -> float:
    """User + system CPU seconds the servers on ``ports`` have used (INFO cpu): unlike wall time, hardly
    moved by other jobs on a shared machine."""
    import redis

    return sum(info["used_cpu_user"] + info["used_cpu_sys"]
               for info in (redis.Redis(port=port).info("cpu") for port in ports))


def summary(name: str, values: list[float]) -> str:
    return f"{name}: median {statistics.median(values):.2f} s (runs {', '.join(f'{v:.2f}' for v in values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import redis

    with tempfile.TemporaryDirectory(prefix="stctl-bench-") as tmp, running_cluster(3) as cluster:
        work = Path(tmp)
        with running_server() as single:
            port = single.port
            print(f"loaded {args.keys} keys in {load(redis.Redis(port=port), args.keys):.1f} s")
            config = work / "storagectl.yaml"
            config.write_text(f"version: 1\nbackends:\n  single: {{kind: redis, url: 'redis://127.0.0.1:{port}/0'}}\n"
                              f"  cluster: {{kind: redis, url: '{cluster.seed_url}'}}\n"
                              f"destinations:\n  local: {{kind: local, path: {work / 'backups'}}}\n")
            _t, first = storagectl(config, "backup", "run", "--backend", "single", "--to", "local")
            storagectl(config, "restore", first["id"], "--to", "cluster")
            assert cluster.dbsize() == args.keys, cluster.dbsize()
            times: dict[str, list[float]] = {"single": [], "cluster": [], "restore": [], "validate": []}
            cpu: dict[str, list[float]] = {"single": [], "cluster": []}
            ports = {"single": [port], "cluster": [node.port for node in cluster.nodes]}
            for _round in range(args.rounds):
                for name in ("single", "cluster"):
                    before = server_cpu(ports[name])
                    times[name].append(storagectl(config, "backup", "run", "--backend", name, "--to", "local")[0])
                    cpu[name].append(server_cpu(ports[name]) - before)
                times["restore"].append(storagectl(config, "restore", first["id"], "--to", "cluster", "--yes")[0])
                elapsed, validated = storagectl(config, "restore", first["id"], "--to", "cluster", "--yes",
                                                "--validate")
                assert validated["validation"]["ok"] and validated["validation"]["items"][0]["checked"] == args.keys
                times["validate"].append(elapsed)
            assert cluster.dbsize() == args.keys
    for name, values in times.items():
        print(summary(name, values))
    for name, values in cpu.items():
        print(f"server CPU of the {name} backup: median {statistics.median(values):.2f} s")
    ratio = statistics.median(times["cluster"]) / statistics.median(times["single"])
    print(f"cluster backup / single backup: {ratio:.2f}x (target <= 1.0x)")
    print(f"restore into the cluster: {args.keys / statistics.median(times['restore']):,.0f} keys/s "
          "(target >= 100,000)")
    print(f"restore --validate into the cluster: {args.keys / statistics.median(times['validate']):,.0f} keys/s "
          f"({statistics.median(times['validate']) / statistics.median(times['restore']):.2f}x the restore alone)")
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
