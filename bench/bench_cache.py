#!/usr/bin/env python3
"""`storagectl cache` against the folk recipes, on the same data in the same run:

- `cache invalidate --pattern 'inv:*'` of 1 M of 2 M keys: keys/s deleted (target >= 250 k/s, from the
  command's own `duration`; the wall time of the whole command is printed too) and the wall time vs
  `redis-cli --scan --pattern 'inv:*' | xargs -L 1000 redis-cli unlink` (target <= 0.5x);
- meanwhile a probe on its own connection PINGs back to back, as `redis-cli --latency` does: the
  largest round trip it saw (target <= 20 ms), and the same probe with no invalidation running;
- `--rate`: achieved deletions per second vs the asked rate (target within 10 %), in a db where every
  key matches (elsewhere a run can be bound by scanning past the keys that do not match, not by the rate);
- `cache scan` of the 1 M keys left, to /dev/null, vs `redis-cli --scan` to /dev/null (target <= 1.0x).

Starts its own redis-server (from PATH, `--enable-debug-command yes` so DEBUG POPULATE can load the keys
fast) on a free loopback port in a temp dir, never the shared 6379. Run it under `flock /tmp/bench.lock`
on a shared machine; it prints the load average. Usage:
python bench/bench_cache.py [--keys 2000000] [--rounds 3] [--rate 20000 50000 100000] [--rate-only]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.redis_cluster import running_server  # noqa: E402


def populate(client, prefix: str, count: int) -> None:
    """``count`` keys ``prefix:0`` ... (DEBUG POPULATE creates only the missing ones)."""
    client.execute_command("DEBUG", "POPULATE", count, prefix, 16)


class LatencyProbe:
    """PING after PING on a connection of its own (what `redis-cli --latency` does): the largest round trip."""

    def __init__(self, port: int) -> None:
        import redis

        self.client = redis.Redis(port=port)
        self.worst = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            self.client.ping()
            self.worst = max(self.worst, time.perf_counter() - started)
            self.samples += 1
            time.sleep(0.001)

    def __enter__(self) -> LatencyProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def storagectl(config: Path, *args: str, stdout=subprocess.PIPE) -> tuple[float, dict | None]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "storagectl", "-q", "-c", str(config), *args], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, env=env)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed: storagectl {' '.join(args)}\n{done.stderr}")
    return elapsed, json.loads(done.stdout) if stdout is subprocess.PIPE else None


def shell(command: str) -> float:
    started = time.perf_counter()
    subprocess.run(["bash", "-c", command], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return statistics.median(values)


def runs(values: list[float], unit: str = "s", scale: float = 1.0, digits: int = 2) -> str:
    return ", ".join(f"{v * scale:.{digits}f}" for v in values) + f" {unit}"


def rate_runs(rate_db, config: Path, rates: list[int]) -> None:
    """In db 1, where every key matches: each run is bound by the rate, not by scanning past other keys."""
    for rate in rates:
        populate(rate_db, "rate", rate * 3)
        _, summary = storagectl(config, "-o", "json", "cache", "invalidate", "--pattern", "rate:*", "--yes",
                                "--rate", str(rate), "-b", "rates")
        achieved = summary["deleted"] / summary["duration"]
        print(f"--rate {rate:,}: {summary['deleted']:,} keys in {summary['duration']:.2f} s = "
              f"{achieved:,.0f} keys/s, {achieved / rate - 1:+.1%} of the asked rate (target within 10%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=2_000_000, help="keys in all; half of them match")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate-only", action="store_true", help="only the --rate runs")
    parser.add_argument("--rate", type=int, nargs="+", default=[20_000, 50_000, 100_000],
                        help="the --rate asked in the rate runs (one run each)")
    args = parser.parse_args()
    import redis

    half = args.keys // 2
    print(f"load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="stctl-bench-cache-") as tmp:
        work = Path(tmp)
        with running_server("--enable-debug-command", "yes") as server:  # DEBUG POPULATE loads the keys
            port = server.port
            client = redis.Redis(port=port)
            cli = ["redis-cli", "-p", str(port)]
            config = work / "storagectl.yaml"
            config.write_text(f"version: 1\nbackends:\n  bench: {{kind: redis, url: 'redis://127.0.0.1:{port}/0'}}\n"
                              f"  rates: {{kind: redis, url: 'redis://127.0.0.1:{port}/1'}}\n")
            if args.rate_only:
                rate_runs(redis.Redis(port=port, db=1), config, args.rate)
                return
            populate(client, "keep", half)
            client.config_set("latency-monitor-threshold", 1)  # the server's own view of its stalls
            with LatencyProbe(port) as idle:
                time.sleep(2)
            print(f"idle probe: worst PING {idle.worst * 1000:.2f} ms over {idle.samples} pings")
            ours, ours_rate, ours_wall_rate, reference, worst, stalls = [], [], [], [], [], []
            for round_ in range(args.rounds):
                populate(client, "inv", half)
                assert client.dbsize() == 2 * half
                client.execute_command("LATENCY", "RESET")
                with LatencyProbe(port) as probe:
                    wall, summary = storagectl(config, "-o", "json", "cache", "invalidate", "--pattern", "inv:*",
                                               "--yes", "-b", "bench")
                stalls.append({e[0].decode(): e[3] for e in client.execute_command("LATENCY", "LATEST")})
                assert summary["deleted"] == half and client.dbsize() == half, summary
                ours.append(wall)
                ours_rate.append(summary["deleted"] / summary["duration"])
                ours_wall_rate.append(summary["deleted"] / wall)
                worst.append(probe.worst)
                populate(client, "inv", half)
                reference.append(shell(f"{' '.join(cli)} --scan --pattern 'inv:*' | xargs -L 1000 {' '.join(cli)} "
                                       "unlink"))
                assert client.dbsize() == half
                print(f"round {round_ + 1}: storagectl {wall:.2f} s ({ours_rate[-1]:,.0f} keys/s in the command, "
                      f"probe worst {probe.worst * 1000:.2f} ms), redis-cli|xargs {reference[-1]:.2f} s")
            print(f"invalidate {half:,} of {2 * half:,} keys: storagectl median {median(ours):.2f} s "
                  f"({runs(ours)}), redis-cli --scan | xargs -L 1000 redis-cli unlink median {median(reference):.2f} s "
                  f"({runs(reference)}): ratio {median(ours) / median(reference):.2f}x (target <= 0.5x)")
            print(f"keys/s deleted: median {median(ours_rate):,.0f} in the command (runs "
                  f"{', '.join(f'{r:,.0f}' for r in ours_rate)}), {median(ours_wall_rate):,.0f} over the whole "
                  "command's wall time incl. start-up (target >= 250,000)")
            print(f"concurrent PING probe: worst {max(worst) * 1000:.2f} ms (runs {runs(worst, 'ms', 1000)}) "
                  "(target <= 20 ms)")

            print("server side, LATENCY LATEST per round (events of 1 ms or more during the invalidation, max ms): "
                  + "; ".join(", ".join(f"{name} {ms}" for name, ms in round_.items()) or "none" for round_ in stalls))

            rate_runs(redis.Redis(port=port, db=1), config, args.rate)

            scans, cli_scans = [], []
            for _ in range(args.rounds):
                scans.append(storagectl(config, "cache", "scan", "-b", "bench", stdout=subprocess.DEVNULL)[0])
                cli_scans.append(shell(f"{' '.join(cli)} --scan > /dev/null"))
            print(f"scan of {client.dbsize():,} keys to /dev/null: storagectl cache scan median {median(scans):.2f} s "
                  f"({runs(scans)}), redis-cli --scan median {median(cli_scans):.2f} s ({runs(cli_scans)}): ratio "
                  f"{median(scans) / median(cli_scans):.2f}x (target <= 1.0x)")
            print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
