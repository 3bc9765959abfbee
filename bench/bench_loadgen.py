#!/usr/bin/env python3
"""`storagectl bench` against the native load generators, in the same run, on the same server.

- Redis (a redis-server this script starts on a free port, no persistence): `bench run -w get -c 50`
  vs `redis-benchmark -t get -c 50 -r KEYS -d 100` (its keyspace filled with the same 100-byte
  values), pipeline 1 and 16, alternating; target >= 0.6x.
- PostgreSQL (scale 10 in a database of its own): `bench run -w sql:select-pk.sql -c 8` (its default -j:
  a process per CPU, here 2; `--pg-jobs 8` or `auto,8` for others) vs `pgbench -S -c 8 -j 2 -M prepared`,
  and `sql:tpcb-like.sql` vs `pgbench -c 8 -j 2`, alternating;
  target >= 0.85x. The scripts are the built-in `select-pk` / `tpcb-like` ones naming pgbench's own
  tables (`public.pgbench_*`), so both tools read the very same pages; storagectl's own namespace is
  a one-row fill (`--keyspace 1`). (With the built-in workloads storagectl would first fill 1 M rows
  of its own, and the checkpoint and hint-bit writes after that fill land in its measured run.)
- Latency truth: p50/p99 of `bench run -w select-pk -c 8` vs the percentiles of the per-transaction
  latencies in `pgbench -S --log` under the same closed-loop load, in alternating rounds; target within
  15 %. The verdict is on the percentiles of every round's transactions together (pgbench's logged
  latencies and storagectl's saved HDR histograms, added up in the same kind of HDR histogram): one run's
  p99 at saturation moves ±25 % with how the 2 cores were shared out in it (pgbench against itself
  too), so a median of a few rounds' own p99s is a coin toss. Those medians are shown beside it, with
  each run's tps, each tool's mean beside its Little's-law mean clients / tps, and pgbench's
  transactions per connection, busiest / slowest.
- Open loop (`open`, no target, no verdict): the same figures at fixed rates (`--rates`),
  `pgbench -R RATE --log` vs `bench run --rate RATE`: corrected latency (from the scheduled start) and
  service time (from the send; pgbench's log latency minus its schedule lag), p50 and p99 of each.
  pgbench -R schedules Poisson arrivals per thread, storagectl one fixed interval: p99s differ.
- Stall: `--rate` runs during which the server stops for 2 s (`CLIENT PAUSE 2000`; a transaction
  holding ACCESS EXCLUSIVE on pgbench_accounts for 2 s): corrected p99.9 must exceed 1 s.

Run under `flock /tmp/bench.lock`; prints medians, ratios and the load average.
Usage: python bench/bench_loadgen.py [--rounds 3] [--seconds 8] [--only redis,pg,truth,open,stall]
       [--pg-workloads select-pk,tpcb-like] [--pg-jobs auto,2] [--pgbench-jobs 2,8] [--rates 2000,10000]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

from hdrh.histogram import HdrHistogram

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DB = "stctl_bench_loadgen"
PG_URL = f"postgresql://postgres@127.0.0.1:5432/{PG_DB}"
REDIS_KEYS = 100_000
PG_SCALE = 10
PG_PARTS = {"pg", "truth", "open", "stall"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="stctl-bench-redis-")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        self.client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def storagectl(config: Path, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "storagectl", "-c", str(config), "-q", "bench", "run", *args,
                           "-o", "json"], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"storagectl bench failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout)


def redis_benchmark(port: int, clients: int, pipeline: int, requests: int) -> float:
    done = subprocess.run(["redis-benchmark", "-p", str(port), "-t", "get", "-c", str(clients), "-P", str(pipeline),
                           "-n", str(requests), "-r", str(REDIS_KEYS), "-d", "100", "--csv"],
                          capture_output=True, text=True, check=True)
    row = [line for line in done.stdout.splitlines() if line.startswith('"GET"')][0]
    return float(row.split(",")[1].strip('"'))


def pgbench(*args: str) -> float:
    done = subprocess.run(["pgbench", "-h", "127.0.0.1", "-U", "postgres", *args, PG_DB],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pgbench failed: {done.stderr.strip()}")
    return float(re.search(r"tps = ([\d.]+) \(without", done.stdout).group(1))


def median_of(values: list[float]) -> float:
    return statistics.median(values)


def report(title: str, ours: list[float], theirs: list[float], target: float) -> None:
    """The ratio of the medians, and the median of each round's ratio (the two runs of a round are
    seconds apart, so a change in the machine's load hits both)."""
    ratio = median_of(ours) / median_of(theirs)
    paired = median_of([mine / native for mine, native in zip(ours, theirs, strict=True)])
    verdict = "met" if ratio >= target else "NOT met"
    print(f"{title}: storagectl {median_of(ours):,.0f} ops/s (runs {', '.join(f'{v:,.0f}' for v in ours)}) vs "
          f"{median_of(theirs):,.0f} (runs {', '.join(f'{v:,.0f}' for v in theirs)}): {ratio:.2f}x, "
          f"median of round ratios {paired:.2f}x (target >= {target}x: {verdict})", flush=True)


def bench_redis(config: Path, server: RedisServer, rounds: int, seconds: int) -> None:
    value = b"x" * 100
    for start in range(0, REDIS_KEYS, 1000):
        server.client.mset({f"key:{n:012d}": value for n in range(start, start + 1000)})
    for pipeline in (1, 16):
        ours, theirs = [], []
        for _ in range(rounds):
            result = storagectl(config, "-b", "redis", "-w", "get", "-c", "50", "-P", str(pipeline), "-T",
                                f"{seconds}s", "--warmup", "1s", "--keyspace", str(REDIS_KEYS), "-d", "100")
            ours.append(result["ops_per_s"])
            cpu = result["environment"]["client_cpu_pct"]
            requests = int(max(theirs[-1] if theirs else result["ops_per_s"], 1000) * seconds)
            theirs.append(redis_benchmark(server.port, 50, pipeline, requests))
        report(f"Redis get -c 50 -P {pipeline}", ours, theirs, 0.6)
        print(f"  storagectl client CPU in its last run: {cpu}% of one core", flush=True)
    server.client.flushall()


def new_histogram() -> HdrHistogram:
    """The histogram storagectl records its latencies in (µs, 3 significant figures)."""
    sys.path.insert(0, str(ROOT))
    from storagectl.loadgen.recorder import new_histogram as storagectl_histogram

    return storagectl_histogram()


def histogram_from_counts(counts: dict[int, int]) -> HdrHistogram:
    sys.path.insert(0, str(ROOT))
    from storagectl.loadgen.recorder import histogram_from_counts as from_counts

    return from_counts(counts)


def pgbench_tables_script(workload: str, directory: Path) -> str:
    """The built-in workload's script on pgbench's own tables in public (the same data pgbench reads)."""
    sys.path.insert(0, str(ROOT))
    from storagectl.loadgen.sqlscript import BUILTIN_SCRIPTS

    text = BUILTIN_SCRIPTS[workload].replace(":keyspace", str(PG_SCALE * 100_000)).replace(":scale", str(PG_SCALE))
    path = directory / f"{workload}.sql"
    path.write_text(re.sub(r"\bpgbench_", "public.pgbench_", text))
    return f"sql:{path}"


def in_turn(round_index: int, runs: list) -> list:
    """A round's runs, in reverse every other round: no tool always runs right after the other (a
    run pays for what the one before it left: hint bits, a checkpoint, the page cache)."""
    return runs if round_index % 2 == 0 else runs[::-1]


def bench_pg(config: Path, rounds: int, seconds: int, workloads: list[str], jobs: list[str]) -> None:
    """Per workload: rounds of pgbench and storagectl once per ``-j`` of ``jobs``, the order reversed
    every other round; each -j reported against the same pgbench runs."""
    cases = (("select-pk", ["-S", "-M", "prepared"], 0.85), ("tpcb-like", [], 0.85))
    for workload, native, target in [case for case in cases if case[0] in workloads]:
        bench_pg_workload(config, rounds, seconds, workload, native, target, jobs)


def bench_pg_workload(config: Path, rounds: int, seconds: int, workload: str, native: list[str], target: float,
                      jobs: list[str]) -> None:
    ours: dict[str, list[float]] = {j: [] for j in jobs}
    theirs: list[float] = []
    script = pgbench_tables_script(workload, config.parent)

    def native_run() -> None:
        theirs.append(pgbench(*native, "-c", "8", "-j", "2", "-T", str(seconds)))

    def our_run(j: str) -> None:
        result = storagectl(config, "-b", "pg", "-w", script, "-c", "8", *jobs_args(j), "-T",
                            f"{seconds}s", "--warmup", "2s", "--keyspace", "1")
        ours[j].append(result["ops_per_s"])

    for round_index in range(rounds):
        for run in in_turn(round_index, [native_run] + [partial(our_run, j) for j in jobs]):
            run()
    for j in jobs:
        label = f"PostgreSQL {workload} -c 8 -j {j} vs pgbench {' '.join(native + ['-c', '8', '-j', '2'])}"
        report(label, ours[j], theirs, target)


def jobs_args(jobs: str) -> list[str]:
    """storagectl's -j: `auto` gives none (its default: a process per CPU for a PostgreSQL closed loop)."""
    return [] if jobs == "auto" else ["-j", jobs]


def percentile(sorted_values: list[int], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, int(round(fraction * len(sorted_values))) - 1))
    return float(sorted_values[index])


def latency_truth(config: Path, rounds: int, seconds: int, jobs: list[str], native_jobs: list[str],
                  clients: int = 8) -> None:
    """Alternating rounds of `pgbench --log` (once per -j of ``native_jobs``; the first is the
    reference) and storagectl (once per ``-j`` of ``jobs``); medians of each one's p50/p99, with the
    tps of the same runs: in a closed loop latency is about clients / tps, so a round whose tps
    differs (the 2 cores shared out differently) moves both tools' percentiles. Each run's mean is
    shown beside its Little's-law mean (8 clients / tps): the share of the clients' time that is in
    no transaction's latency. pgbench -j 2 starts a client's next transaction only after its thread
    has read the other ready clients (advanceConnectionState returns at CSTATE_END_TX) and sent the
    earlier ones' next transactions, and that wait is in no latency; storagectl's loop does the same."""
    script = pgbench_tables_script("select-pk", config.parent)
    names = ("p50", "p99", "mean", "tps", "spread")
    # a -j given twice (2,2) runs pgbench twice per round: pgbench against itself, the noise floor
    native = [(j if native_jobs.count(j) == 1 else f"{j} #{native_jobs[:index + 1].count(j)}", j)
              for index, j in enumerate(native_jobs)]
    theirs = {key: {name: [] for name in names} for key, _ in native}
    ours = {j: {name: [] for name in names} for j in jobs}
    pooled = {f"pgbench -j {key}": new_histogram() for key, _ in native} | \
             {f"storagectl -j {j}": new_histogram() for j in jobs}

    def native_run(key: str, j: str) -> None:
        log = pgbench_log(["-c", str(clients), "-j", j, "-T", str(seconds)])
        for name in names:
            theirs[key][name].append(log[name])
        pooled[f"pgbench -j {key}"].add(log["histogram"])

    def our_run(j: str) -> None:
        result = storagectl(config, "-b", "pg", "-w", script, "-c", str(clients), *jobs_args(j), "-T", f"{seconds}s",
                            "--warmup", "0", "--keyspace", "1")
        for name in ("p50", "p99", "mean"):
            ours[j][name].append(result["latency_ms"][name])
        ours[j]["tps"].append(result["ops_per_s"])
        if result["hdr"]["service"]:  # "" when no op succeeded
            pooled[f"storagectl -j {j}"].add(HdrHistogram.decode(result["hdr"]["service"]))

    for round_index in range(rounds):
        turns = [partial(native_run, key, j) for key, j in native] + [partial(our_run, j) for j in jobs]
        for run in in_turn(round_index, turns):
            run()
    reference_name = f"pgbench -j {native[0][0]}"
    reference = theirs[native[0][0]]
    print(f"latency truth, -c {clients}, {rounds} alternating rounds, reference {reference_name}", flush=True)
    for tool, figures in [(f"pgbench -j {key}", theirs[key]) for key, _ in native] + \
                         [(f"storagectl -j {j}", ours[j]) for j in jobs]:
        print(f"latency truth {tool}: {median_of(figures['tps']):,.0f} tps (runs {runs(figures['tps'], '{:,.0f}')}); "
              f"{littles_law(figures, clients)}{spread(figures)}", flush=True)
        if figures is not reference:
            for name in ("p50", "p99"):
                compare_line(f"latency truth {tool} {name}, median of the rounds' own", figures[name],
                             reference[name], f"{reference_name} --log", tool.split()[0], target=False)
    base = pooled[reference_name]
    for tool, histogram in pooled.items():
        if histogram is not base:
            for name, percent in (("p50", 50.0), ("p99", 99.0)):
                mine, theirs_value = histogram.get_value_at_percentile(percent), base.get_value_at_percentile(percent)
                compare_line(f"latency truth {tool} {name} of every round's transactions", [mine / 1000],
                             [theirs_value / 1000], f"{reference_name} --log", tool.split()[0])


def runs(values: list[float], form: str = "{:.3f}") -> str:
    return ", ".join(form.format(value) for value in values)


def littles_law(figures: dict[str, list[float]], clients: int) -> str:
    """The medians of the measured mean and of clients / tps (ms)."""
    predicted = [1000 * clients / tps for tps in figures["tps"]]
    shares = [mean / law for mean, law in zip(figures["mean"], predicted, strict=True)]
    return (f"mean {median_of(figures['mean']):.3f} ms (runs {runs(figures['mean'])}) vs Little's law "
            f"{clients}/tps {median_of(predicted):.3f} ms (runs {runs(predicted)}): "
            f"{100 * median_of(shares):.0f} % of it")


def spread(figures: dict[str, list[float]]) -> str:
    """pgbench's: its busiest connection's transactions over its slowest one's (from the log's client
    ids); an uneven share means its connections were not under the same load."""
    if not figures.get("spread"):
        return ""
    return f"; transactions per connection, busiest / slowest: {runs(figures['spread'], '{:.2f}')}"


def compare_line(title: str, mine: list[float], native: list[float], native_name: str,
                 name: str = "storagectl", target: bool = True) -> None:
    off = 100 * (median_of(mine) - median_of(native)) / median_of(native)
    verdict = f", target within 15 %: {'met' if abs(off) <= 15 else 'NOT met'}" if target else ""
    print(f"{title}: {name} {median_of(mine):.3f} ms (runs {runs(mine)}) vs {native_name} "
          f"{median_of(native):.3f} ms (runs {runs(native)}) ({off:+.1f} %{verdict})", flush=True)


def pgbench_log(args: list[str]) -> dict[str, float]:
    """`pgbench -S -M prepared ARGS --log`: p50, p99 and mean (ms) of the per-transaction latencies
    (the log's third column, µs; every transaction of the run counts, as storagectl's run with
    --warmup 0 counts all of its own) and tps. With -R that column counts from the scheduled start
    (pgbench's corrected latency) and the seventh is the schedule lag; their difference, the service
    time from the actual start, gives ``service_p50`` / ``service_p99``."""
    with tempfile.TemporaryDirectory() as directory:
        done = subprocess.run(["pgbench", "-h", "127.0.0.1", "-U", "postgres", "-S", "-M", "prepared", *args,
                               "--log", "--log-prefix", f"{directory}/log", PG_DB],
                              capture_output=True, text=True, check=True)
        rows = [line.split() for path in Path(directory).glob("log*") for line in path.read_text().splitlines()]
    latencies = sorted(int(row[2]) for row in rows)
    per_client = collections.Counter(row[0] for row in rows)
    histogram = histogram_from_counts(collections.Counter(latencies))
    figures = {"p50": percentile(latencies, 0.50) / 1000, "p99": percentile(latencies, 0.99) / 1000,
               "mean": statistics.fmean(latencies) / 1000,
               "tps": float(re.search(r"tps = ([\d.]+) \(without", done.stdout).group(1)),
               "spread": max(per_client.values()) / min(per_client.values()), "histogram": histogram}
    if rows and len(rows[0]) > 6:
        service = sorted(int(row[2]) - int(row[6]) for row in rows)
        figures.update(service_p50=percentile(service, 0.50) / 1000, service_p99=percentile(service, 0.99) / 1000)
    return figures


OPEN_LOOP_FIGURES = ("p50", "p99", "service_p50", "service_p99")


def open_loop(config: Path, rounds: int, seconds: int, jobs: list[str], rates: list[int]) -> None:
    """A look at the measurement away from saturation (no target of the issue's; no verdict printed):
    at each rate, alternating rounds of `pgbench -S -M prepared -c 8 -j 2 -R RATE --log` and `bench run
    --rate RATE -c 8` (once per ``-j`` of ``jobs``) on select-pk. Both count corrected latency from the
    scheduled start and service time from the actual send, but the two loads differ: pgbench -R draws
    each thread's start times from a Poisson process (getPoissonRand; a client finishing a transaction
    takes its thread's next start), so starts come in bursts that queue behind each other, while
    storagectl sends on one fixed interval (as wrk2 does): pgbench's p99s run higher, the p50s agree."""
    script = pgbench_tables_script("select-pk", config.parent)
    for rate in rates:
        theirs: dict[str, list[float]] = {name: [] for name in (*OPEN_LOOP_FIGURES, "tps")}
        ours = {j: {name: [] for name in (*OPEN_LOOP_FIGURES, "tps")} for j in jobs}
        for _ in range(rounds):
            log = pgbench_log(["-c", "8", "-j", "2", "-R", str(rate), "-T", str(seconds)])
            for name in theirs:
                theirs[name].append(log[name])
            for j in jobs:
                result = storagectl(config, "-b", "pg", "-w", script, "-c", "8", *jobs_args(j), "--rate", str(rate),
                                    "-T", f"{seconds}s", "--warmup", "0", "--keyspace", "1")
                for name in ("p50", "p99"):
                    ours[j][name].append(result["corrected_latency_ms"][name])
                    ours[j][f"service_{name}"].append(result["latency_ms"][name])
                ours[j]["tps"].append(result["ops_per_s"])
        shown = ", ".join(f"-j {j} {median_of(ours[j]['tps']):,.0f}" for j in jobs)
        print(f"open loop at {rate:,}/s, {rounds} alternating rounds: pgbench -R {median_of(theirs['tps']):,.0f} "
              f"tps, storagectl {shown}", flush=True)
        for j in jobs:
            for name in OPEN_LOOP_FIGURES:
                label = name.replace("service_", "service ") if "service" in name else f"corrected {name}"
                compare_line(f"open loop {rate:,}/s -j {j} {label}", ours[j][name], theirs[name], "pgbench -R --log",
                             target=False)


def stall_redis(config: Path, server: RedisServer, seconds: int) -> None:
    def pause() -> None:
        time.sleep(1 + seconds / 2)  # warm-up 1 s, then half the run
        server.client.execute_command("CLIENT", "PAUSE", "2000")

    threading.Thread(target=pause, daemon=True).start()
    result = storagectl(config, "-b", "redis", "-w", "get", "-c", "8", "--rate", "2000", "-T", f"{seconds}s",
                        "--warmup", "1s", "--keyspace", "10000")
    stall_line("Redis CLIENT PAUSE 2000", result)


def stall_pg(config: Path, seconds: int) -> None:
    import psycopg

    def hold_lock() -> None:
        deadline = time.monotonic() + 60
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            while time.monotonic() < deadline:
                row = conn.execute("SELECT nspname FROM pg_namespace "
                                   "WHERE nspname LIKE 'storagectl_bench_%'").fetchone()
                if row and conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND "
                                        "application_name = 'storagectl' AND state <> 'idle'", (PG_DB,)).fetchone()[0]:
                    break
                time.sleep(0.05)
            time.sleep(1 + seconds / 2)
            with conn.transaction():
                conn.execute(f'LOCK TABLE "{row[0]}".pgbench_accounts IN ACCESS EXCLUSIVE MODE')
                time.sleep(2)

    threading.Thread(target=hold_lock, daemon=True).start()
    result = storagectl(config, "-b", "pg", "-w", "select-pk", "-c", "8", "--rate", "1000", "-T", f"{seconds}s",
                        "--warmup", "1s", "--keyspace", "100000")
    stall_line("PostgreSQL lock held 2 s", result)


def stall_line(title: str, result: dict) -> None:
    corrected, service = result["corrected_latency_ms"]["p99_9"], result["latency_ms"]["p99_9"]
    print(f"stall, {title}: corrected p99.9 {corrected:,.1f} ms (target > 1000: "
          f"{'met' if corrected > 1000 else 'NOT met'}), service-time p99.9 {service:,.1f} ms, "
          f"{result['ops']:,} ops at {result['load']['rate']:g}/s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--only", default="redis,pg,truth,open,stall")
    parser.add_argument("--pg-workloads", default="select-pk,tpcb-like", help="the PostgreSQL cases of `pg`")
    parser.add_argument("--pgbench-jobs", default="2", help="pgbench -j of `truth`; several (2,8): each run in "
                        "every round, the first the reference; one twice (2,2): pgbench against itself")
    parser.add_argument("--truth-clients", default="8", help="-c of `truth`; several (2,8): one comparison each")
    parser.add_argument("--rates", default="2000,10000", help="the fixed rates (ops/s) of `open`")
    parser.add_argument("--pg-jobs", default="auto", help="storagectl -j for `pg`, `truth` and `open` (auto: "
                        "none given, its default); several (auto,2): each run in every round against the same "
                        "pgbench runs")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    jobs = args.pg_jobs.split(",")
    print(f"load average at start: {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs", flush=True)
    server = RedisServer()
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "storagectl.yaml"
        config.write_text(f"backends:\n  redis:\n    kind: redis\n    url: redis://127.0.0.1:{server.port}/0\n"
                          f"    pool: {{max_size: 200}}\n  pg:\n    kind: postgres\n    url: {PG_URL}\n")
        try:
            if "redis" in parts:
                bench_redis(config, server, args.rounds, args.seconds)
            if "stall" in parts:
                stall_redis(config, server, args.seconds)
            if parts & PG_PARTS:
                prepare_pg()
                if "pg" in parts:
                    bench_pg(config, args.rounds, args.seconds, args.pg_workloads.split(","), jobs)
                if "truth" in parts:
                    for clients in args.truth_clients.split(","):
                        latency_truth(config, args.rounds, args.seconds, jobs, args.pgbench_jobs.split(","),
                                      int(clients))
                if "open" in parts:
                    open_loop(config, args.rounds, args.seconds, jobs, [int(rate) for rate in args.rates.split(",")])
                if "stall" in parts:
                    stall_pg(config, args.seconds)
        finally:
            server.stop()
            if parts & PG_PARTS:
                subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--force", "--if-exists", PG_DB])
    print(f"load average at end: {os.getloadavg()[0]:.2f}", flush=True)


def prepare_pg() -> None:
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--force", "--if-exists", PG_DB], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", PG_DB], check=True)
    subprocess.run(["pgbench", "-h", "127.0.0.1", "-U", "postgres", "-i", "-q", "-s", str(PG_SCALE), PG_DB],
                   check=True, capture_output=True)


if __name__ == "__main__":
    main()
