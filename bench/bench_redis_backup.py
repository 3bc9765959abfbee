#!/usr/bin/env python3
"""`storagectl backup run` of one Redis db vs `redis-cli --rdb FILE`, on the same 1 M keys.

Loads strings, hashes, lists, sets and sorted sets (10 % with a TTL) into a dedicated db with a
server-side Lua loop (fast, deterministic), times storagectl's backup against `redis-cli --rdb`
as configured, `redis-cli --rdb` with `repl-diskless-sync-delay 0` (set for that run and restored
after: the honest anchor, target <= 1.0x) and a `BGSAVE` of the same data, prints the ratios and
flushes the db afterwards. storagectl runs twice per round: `backup_method: auto` with the delay at
0 as for the anchor (so it takes the snapshot, `rdb`: checked in the manifest), and `backup_method:
dump` (DUMP per key); then each backup is restored (`restore --validate` off) into --restore-db.
Note: a snapshot (`redis-cli --rdb`, `rdb`) holds the whole instance (every db), `dump` only the
selected db; with other dbs empty the data is the same.
The `redis-cli --rdb` as configured runs once (its time is mostly the server's wait); the others
alternate for --rounds rounds (those at delay 0 in a rotating order) and are reported as medians with
their spread. storagectl runs as
`python -m storagectl` with this interpreter, as bench_startup.py and bench_pg_backup.py run it: a
pyenv shim on PATH adds ~70 ms of bash to every run that `redis-cli` does not pay.
--baseline DIR also times the rdb backup of the storagectl in DIR (PYTHONPATH=DIR, a config file of
its own) in every round, next to this one's; --rdb-only skips the dump backup and the restores.
Usage: python bench/bench_redis_backup.py [--url redis://127.0.0.1:6379] [--db 15] [--restore-db 14]
       [--keys 1000000] [--rounds 3] [--baseline DIR] [--rdb-only]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import redis

# ARGV: first index, last index. One key per index; type chosen by index mod 10.
LOAD_LUA = """
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  local kind = i % 10
  if kind < 5 then
    redis.call('SET', 'str:' .. i, 'value-' .. i .. '-' .. string.rep('x', i % 40))
  elseif kind < 7 then
    redis.call('HSET', 'hash:' .. i, 'name', 'user ' .. i, 'email', 'u' .. i .. '@example.com',
               'visits', i % 1000, 'plan', 'p' .. (i % 4))
  elseif kind < 8 then
    redis.call('RPUSH', 'list:' .. i, 'a' .. i, 'b' .. i, 'c' .. i, 'd' .. i, 'e' .. i)
  elseif kind < 9 then
    redis.call('SADD', 'set:' .. i, 'm' .. (i % 97), 'm' .. (i % 89), 'm' .. (i % 83))
  else
    redis.call('ZADD', 'zset:' .. i, i, 'one', i * 2, 'two', i * 3, 'three')
  end
  if i % 10 == 3 then
    redis.call('PEXPIRE', 'str:' .. i, 3600000 + i)
  end
end
return 1
"""
BATCH = 100_000
STORAGECTL = [sys.executable, "-m", "storagectl"]


def load(client: redis.Redis, keys: int) -> float:
    started = time.perf_counter()
    client.flushdb()
    script = client.register_script(LOAD_LUA)
    for first in range(1, keys + 1, BATCH):
        script(args=[first, min(first + BATCH - 1, keys)])
    return time.perf_counter() - started


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Wall time and stdout of ``command``, run in a neutral directory: `python -m storagectl` imports
    ./storagectl first, which in a checkout would shadow PYTHONPATH (and --baseline)."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr}")
    return elapsed, done.stdout


def storagectl_config(workdir: Path, url: str, db: int, restore_db: int, method: str, name: str = "") -> Path:
    config = workdir / f"storagectl-{name or method}.yaml"
    config.write_text(f"version: 1\nbackends:\n  cache: {{kind: redis, url: '{url}/{db}', backup_method: {method}}}\n"
                      f"  spare: {{kind: redis, url: '{url}/{restore_db}'}}\n"
                      f"destinations:\n  local: {{kind: local, path: {workdir / 'backups'}}}\n")
    return config


def storagectl_backup(config: Path, method: str, env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Wall time, stored size and id of one backup; exits unless it used ``method``."""
    elapsed, out = timed([*STORAGECTL, "-c", str(config), "-o", "json", "backup", "run",
                          "--backend", "cache", "--to", "local"], env)
    info = json.loads(out)
    info = info[0] if isinstance(info, list) else info
    manifest = next(config.parent.glob(f"backups/*/{info['id']}/manifest.json"))
    used = json.loads(manifest.read_text())["backend"]["metadata"].get("method")
    if used != method:
        sys.exit(f"storagectl backed up by {used}, not {method}: see storagectl -v backup run")
    return elapsed, info["size"], info["id"]


def storagectl_restore(config: Path, backup_id: str, target: redis.Redis) -> float:
    target.flushdb()
    elapsed, _ = timed([*STORAGECTL, "-c", str(config), "restore", backup_id, "--to", "spare"])
    target.flushdb()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="redis://127.0.0.1:6379")
    parser.add_argument("--db", type=int, default=15)
    parser.add_argument("--restore-db", type=int, default=14)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the timed backups (medians)")
    parser.add_argument("--baseline", metavar="DIR", help="also time the rdb backup with PYTHONPATH=DIR")
    parser.add_argument("--rdb-only", action="store_true", help="skip the dump backup and the restores")
    args = parser.parse_args()
    if not shutil.which("redis-cli"):
        sys.exit("redis-cli must be on PATH")
    client = redis.Redis.from_url(f"{args.url}/{args.db}")
    with leased(args.url, args.db), leased(args.url, args.restore_db):
        run(args, client, redis.Redis.from_url(f"{args.url}/{args.restore_db}"))


@contextmanager
def leased(url: str, db: int) -> Iterator[None]:
    """Take the test suite's lease on the db (see tests/conftest.py) so a test run never shares it."""
    control, token, key = redis.Redis.from_url(f"{url}/0"), uuid.uuid4().hex, f"storagectl-test:lease:{db}"
    deadline = time.monotonic() + 120
    while not control.set(key, token, nx=True, ex=1800):
        if time.monotonic() > deadline:
            sys.exit(f"db {db} is leased by a test run; try --db with another number")
        time.sleep(0.5)
    try:
        yield
    finally:
        if control.get(key) == token.encode():
            control.delete(key)


def server_cpu(client: redis.Redis) -> float:
    """CPU seconds of the server's main thread, where every command runs."""
    info = client.info("cpu")
    return info["used_cpu_user_main_thread"] + info["used_cpu_sys_main_thread"]


def run(args: argparse.Namespace, client: redis.Redis, target: redis.Redis) -> None:
    try:
        load_time = load(client, args.keys)
        print(f"loaded {client.dbsize():,} keys into db {args.db} in {load_time:.1f}s")
        host, port = urlsplit(args.url).hostname or "127.0.0.1", str(urlsplit(args.url).port or 6379)
        with tempfile.TemporaryDirectory(prefix="stctl-redis-bench-") as tmp:
            workdir = Path(tmp)
            rdb_cli = ["redis-cli", "-h", host, "-p", port, "--rdb", str(workdir / "dump.rdb")]
            rdb_time, _ = timed(rdb_cli)  # once: its time is mostly the server's wait
            rdb_size = (workdir / "dump.rdb").stat().st_size
            configs = {method: storagectl_config(workdir, args.url, args.db, args.restore_db, method)
                       for method in ("auto", "dump")}
            # its own config file: the config cache keeps one entry per file, keyed on the code too
            baseline = storagectl_config(workdir, args.url, args.db, args.restore_db, "auto", "baseline")
            baseline_env = {**os.environ, "PYTHONPATH": args.baseline} if args.baseline else None
            runs: dict[str, list[float]] = {name: [] for name in (
                "storagectl", "baseline", "dump", "delay 0", "BGSAVE", "restore rdb", "restore dump")}
            cpu, sizes = [], {}
            ids: dict[str, str] = {}

            def ours() -> float:
                elapsed, sizes["rdb"], ids["rdb"] = storagectl_backup(configs["auto"], "rdb")
                return elapsed

            at_delay_0 = {"delay 0": lambda: timed(rdb_cli)[0], "storagectl": ours}
            if baseline_env:
                at_delay_0["baseline"] = lambda: storagectl_backup(baseline, "rdb", baseline_env)[0]
            for round_ in range(args.rounds):  # alternating, so the load moves all of them alike
                with no_diskless_sync_delay(client):
                    for name in rotated(list(at_delay_0), round_):
                        runs[name].append(at_delay_0[name]())
                runs["BGSAVE"].append(timed_bgsave(client))
                print(f"round {round_ + 1}: " + ", ".join(f"{name} {times[-1]:.2f}s" for name, times in runs.items()
                                                         if len(times) > round_), flush=True)
                if args.rdb_only:
                    continue
                cpu_before = server_cpu(client)
                ours, sizes["dump"], dump_id = storagectl_backup(configs["dump"], "dump")
                runs["dump"].append(ours)
                cpu.append(server_cpu(client) - cpu_before)
                runs["restore rdb"].append(storagectl_restore(configs["auto"], ids["rdb"], target))
                runs["restore dump"].append(storagectl_restore(configs["dump"], dump_id, target))
        report(args, {name: times for name, times in runs.items() if times}, rdb_time, rdb_size, sizes,
               statistics.median(cpu) if cpu else None)
    finally:
        client.flushdb()
        target.flushdb()


def report(args: argparse.Namespace, runs: dict[str, list[float]], rdb_time: float, rdb_size: int,
           sizes: dict[str, int], cpu: float | None) -> None:
    median = {name: statistics.median(times) for name, times in runs.items()}

    def spread(name: str) -> str:
        return f"median of {len(runs[name])}, runs {min(runs[name]):.2f}-{max(runs[name]):.2f}s"

    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"redis-cli --rdb: {rdb_time:.2f}s, {rdb_size / 2**20:.1f} MiB (once; includes the server's "
          "repl-diskless-sync-delay)")
    print(f"redis-cli --rdb with repl-diskless-sync-delay 0: {median['delay 0']:.2f}s ({spread('delay 0')}; "
          "the honest anchor)")
    print(f"BGSAVE of the same data: {median['BGSAVE']:.2f}s ({spread('BGSAVE')}; fork + RDB write on the server)")
    print(f"storagectl backup, rdb (auto at delay 0): {median['storagectl']:.2f}s ({spread('storagectl')}), "
          f"{sizes['rdb'] / 2**20:.1f} MiB")
    if "baseline" in runs:
        print(f"baseline ({args.baseline}) backup, rdb: {median['baseline']:.2f}s ({spread('baseline')}); "
              f"ratio to redis-cli --rdb, delay 0: {median['baseline'] / median['delay 0']:.2f}x")
    if cpu is not None:
        print(f"storagectl backup, dump: {median['dump']:.2f}s ({spread('dump')}), {sizes['dump'] / 2**20:.1f} MiB; "
              f"server CPU {cpu:.2f}s ({cpu / args.keys * 1e6:.1f} us/key), the floor of its wall time")
        for method in ("rdb", "dump"):
            print(f"storagectl restore of the {method} backup: {median['restore ' + method]:.2f}s "
                  f"({spread('restore ' + method)})")
    for name, reference in (("redis-cli --rdb", rdb_time), ("redis-cli --rdb, delay 0", median["delay 0"]),
                            ("BGSAVE", median["BGSAVE"])):
        ratio = median["storagectl"] / reference
        print(f"ratio storagectl / {name}: {ratio:.2f}x"
              + (f" (target <= 1.00x) -> {'OK' if ratio <= 1 else 'MISSED'}" if "delay 0" in name else ""))


def rotated(names: list[str], round_: int) -> list[str]:
    """``names`` starting at the round's turn, so each runs in each place equally often: in a fixed order
    the run right after `redis-cli --rdb` (which writes and fsyncs the whole 48 MB snapshot) measured
    ~35 ms slower than the next one, whichever storagectl ran there (two runs, places swapped)."""
    turn = round_ % len(names)
    return names[turn:] + names[:turn]


@contextmanager
def no_diskless_sync_delay(client: redis.Redis) -> Iterator[None]:
    """`redis-cli --rdb` waits repl-diskless-sync-delay (5 s by default) before the transfer starts:
    set it to 0 for the run, and restore the old value afterwards."""
    previous = client.config_get("repl-diskless-sync-delay")["repl-diskless-sync-delay"]
    client.config_set("repl-diskless-sync-delay", 0)
    try:
        yield
    finally:
        client.config_set("repl-diskless-sync-delay", previous)


def timed_bgsave(client: redis.Redis) -> float:
    """Wall time of a BGSAVE, from the request until the child has written the RDB file. The server
    forks during the BGSAVE command and counts the save (``rdb_saves``) then, so the end is when
    ``rdb_bgsave_in_progress`` drops back to 0."""
    while client.info("persistence")["rdb_bgsave_in_progress"]:
        time.sleep(0.05)
    started = time.perf_counter()
    client.bgsave()
    while (info := client.info("persistence"))["rdb_bgsave_in_progress"]:
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    if info["rdb_last_bgsave_status"] != "ok":
        sys.exit("BGSAVE failed (rdb_last_bgsave_status is not ok); see the server's log")
    return elapsed


if __name__ == "__main__":
    main()
