#!/usr/bin/env python3
"""`storagectl migrate data run` Redis → Redis vs the server's own `MIGRATE ... COPY REPLACE KEYS`.

Starts two redis-servers on free loopback ports (source and target), loads 1 M mixed keys into the
source (the data set of bench_redis_backup.py: strings, hashes, lists, sets, sorted sets, 10 % of the
strings with a TTL), then in alternating rounds times, each into an emptied target:
  - storagectl: the whole CLI command `migrate data run --no-verify`, then `migrate data verify`, then
    (into an emptied target) `migrate data run` with its verify: what that verify adds is its time
    less the `--no-verify` run's. The target keeps the server's default settings, so that verify reads
    it as it would an operator's server (`repl-diskless-sync-delay` 5 s, `save` rules set: by a
    disk-based snapshot, see README); with --delay-0 each round also times a `run` into the target set
    to send its snapshot without delay;
  - MIGRATE: SCAN COUNT 1000 on the source and `MIGRATE host port "" 0 timeout COPY REPLACE KEYS
    k1..k1000` per batch (the server dumps, sends and waits for the target's RESTOREs).
Prints keys/s, copy time vs MIGRATE (target <= 1.0x) and verification vs copy (target <= 0.5x) for
both verifications (standalone, and the one `run` ends with, with the method that verified), and
the CPU seconds each process used (client, source server, target server): on a machine shared with
other jobs the wall times follow the load, the CPU seconds much less.
Usage: flock /tmp/bench.lock python3 bench/bench_datamove_redis.py [--keys 1000000] [--rounds 3] [--skip-migrate]
       [--delay-0] [--skip-standalone]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_redis_backup import load  # noqa: E402 - the same 1 M keys as the backup bench
from tests.redis_cluster import running_server  # noqa: E402


def server_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Measured:
    """Wall seconds and CPU seconds of the client (child processes), source and target servers."""

    def __init__(self, source: redis.Redis, target: redis.Redis) -> None:
        self.source, self.target = source, target

    def __enter__(self) -> Measured:
        self.started = (time.perf_counter(), children_cpu() + time.process_time(), server_cpu(self.source),
                        server_cpu(self.target))
        return self

    def __exit__(self, *exc: object) -> None:
        now = (time.perf_counter(), children_cpu() + time.process_time(), server_cpu(self.source),
               server_cpu(self.target))
        spent = [b - a for a, b in zip(self.started, now, strict=True)]
        self.wall, self.client, self.source_cpu, self.target_cpu = spent

    def __str__(self) -> str:
        return (f"{self.wall:.2f}s (cpu: client {self.client:.2f}s, source {self.source_cpu:.2f}s, "
                f"target {self.target_cpu:.2f}s)")


def storagectl(config: Path, *args: str) -> tuple[float, dict]:
    """Wall time and the -o json report of one `migrate data` command."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "storagectl", "-c", str(config), "-o", "json", "migrate", "data",
                           *args, "--from", "src", "--to", "dst"], capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"storagectl migrate data {args[0]} failed ({done.returncode}): {done.stderr}")
    report = json.loads(done.stdout)
    if "--no-verify" not in args and not report["verified"]:
        sys.exit(f"verification failed: {report}")
    return elapsed, report


def methods(report: dict) -> str:
    """How the run's verify proved each item (``verified_by``, and how it read the target; empty
    before that field existed)."""
    said = {f"{item.get('verified_by') or '?'}{' ' + read(item['detail']) if 'read by' in item['detail'] else ''}"
            for item in report["items"]}
    return ", ".join(sorted(said))


def read(detail: str) -> str:
    return detail[detail.index("(read by"):detail.index(")", detail.index("(read by")) + 1]


def migrate_command(source: redis.Redis, port: int) -> float:
    started = time.perf_counter()
    cursor = 0
    batch: list[bytes] = []
    while True:
        cursor, keys = source.scan(cursor, count=1000)
        batch += keys
        while len(batch) >= 1000 or (cursor == 0 and batch):
            source.execute_command("MIGRATE", "127.0.0.1", port, "", 0, 60_000, "COPY", "REPLACE", "KEYS",
                                   *batch[:1000])
            batch = batch[1000:]
        if cursor == 0:
            return time.perf_counter() - started


DEFAULT_SAVE = "3600 1 300 100 60 10000"  # redis-server's own (running_server starts it with save "")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-migrate", action="store_true", help="time storagectl only")
    parser.add_argument("--delay-0", action="store_true",
                        help="also time a run into the target set to repl-diskless-sync-delay 0 (the verify then "
                             "reads its snapshot)")
    parser.add_argument("--skip-standalone", action="store_true", help="skip `migrate data verify`")
    options = parser.parse_args()
    with running_server() as src, running_server("--save", DEFAULT_SAVE) as dst, \
            tempfile.TemporaryDirectory() as workdir:
        source, target = src.client(), dst.client()
        source.config_set("lua-time-limit", 60_000)
        default_delay = target.config_get("repl-diskless-sync-delay")["repl-diskless-sync-delay"]
        print(f"loading {options.keys} keys: {load(source, options.keys):.1f}s", flush=True)
        config = Path(workdir) / "storagectl.yaml"
        config.write_text(f"version: 1\nbackends:\n  src: {{kind: redis, url: 'redis://127.0.0.1:{src.port}/0'}}\n"
                          f"  dst: {{kind: redis, url: 'redis://127.0.0.1:{dst.port}/0'}}\n")
        copies, verifies, in_run, no_delay, migrates = [], [], [], [], []
        for round_ in range(options.rounds):
            target.flushall()
            with Measured(source, target) as copied:
                storagectl(config, "run", "--no-verify")
            assert target.dbsize() == options.keys, target.dbsize()
            if not options.skip_standalone:
                with Measured(source, target) as verified:
                    storagectl(config, "verify")
                verifies.append(verified.wall)
                print(f"round {round_ + 1}: storagectl verify {verified}", flush=True)
            target.flushall()
            with Measured(source, target) as run_verified:
                _elapsed, report = storagectl(config, "run")
            assert target.dbsize() == options.keys, target.dbsize()
            copies.append(copied.wall)
            # the run's own split (same process, same minute), as the load on the machine moves the walls
            in_run.append(report["verify_s"] / (report["duration_s"] - report["verify_s"]))
            print(f"round {round_ + 1}: storagectl copy {copied}\n"
                  f"         storagectl run with verify, delay {default_delay} s {run_verified}: its verify "
                  f"{report['verify_s']:.2f}s, {in_run[-1]:.2f}x its copy (verified by: {methods(report)})", flush=True)
            if options.delay_0:
                target.flushall()
                target.config_set("repl-diskless-sync-delay", 0)
                with Measured(source, target) as run_verified:
                    _elapsed, report = storagectl(config, "run")
                target.config_set("repl-diskless-sync-delay", default_delay)
                no_delay.append(report["verify_s"] / (report["duration_s"] - report["verify_s"]))
                print(f"         storagectl run with verify, delay 0 {run_verified}: its verify "
                      f"{report['verify_s']:.2f}s, {no_delay[-1]:.2f}x its copy (verified by: {methods(report)})",
                      flush=True)
            if not options.skip_migrate:
                target.flushall()
                with Measured(source, target) as migrated:
                    migrate_command(source, dst.port)
                assert target.dbsize() == options.keys, target.dbsize()
                migrates.append(migrated.wall)
                print(f"         MIGRATE {migrated}", flush=True)
        copy, added = statistics.median(copies), statistics.median(in_run)
        print(f"median: storagectl copy {copy:.2f}s ({options.keys / copy / 1000:.0f}k keys/s, target >= 150k; "
              f"runs {min(copies):.2f}-{max(copies):.2f}s)")
        if migrates:
            migrate = statistics.median(migrates)
            print(f"MIGRATE {migrate:.2f}s ({options.keys / migrate / 1000:.0f}k keys/s); copy vs MIGRATE: "
                  f"{copy / migrate:.2f}x (target <= 1.0x)")
        if verifies:
            print(f"standalone verify vs copy: {statistics.median(verifies) / copy:.2f}x "
                  f"(runs {min(verifies):.2f}-{max(verifies):.2f}s)")
        print(f"the verify in run adds {added:.2f}x the run's copy at the target's default delay "
              f"({default_delay} s; rounds {min(in_run):.2f}-{max(in_run):.2f}x) (target <= 0.5x)")
        if no_delay:
            print(f"at delay 0: {statistics.median(no_delay):.2f}x (rounds {min(no_delay):.2f}-{max(no_delay):.2f}x)")

if __name__ == "__main__":
    main()
