#!/usr/bin/env python3
"""SQLite backup and restore vs the shell tools on the same file, in alternating rounds.

Backup: `storagectl backup run` vs `sqlite3 SRC ".backup OUT"` + `brotli -q 1 OUT` (target <= 1.5x,
archive the same size or smaller). Restore: `storagectl restore ID --to copy --yes` vs `brotli -d`
+ `PRAGMA integrity_check` + `mv` (target <= 1.0x). Builds a database of about --mib MiB (integers,
reals, text, blobs, dates as text, 0/1 booleans, two indexes) with SQL, so building is quick.
Needs the `sqlite3` and `brotli` command-line tools (Debian packages sqlite3, brotli).
Usage: python bench/bench_sqlite_backup.py [--mib 560] [--rounds 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS_PER_MIB = 5200  # measured: about this many rows of the schema below per MiB of file

BUILD_SQL = """
CREATE TABLE events (id INTEGER PRIMARY KEY, account INTEGER, amount REAL, note TEXT, payload BLOB,
                     happened TEXT, done INTEGER);
CREATE INDEX events_account ON events(account);
CREATE INDEX events_happened ON events(happened);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows)
INSERT INTO events (account, amount, note, payload, happened, done)
SELECT i % 9973, i * 0.37, 'note ' || i || ' ' || substr('lorem ipsum dolor sit amet', 1 + i % 20),
       randomblob(40 + i % 60), datetime(1600000000 + i * 17, 'unixepoch'), i % 2 FROM n;
"""


def build(path: Path, mib: int) -> None:
    if path.exists():
        return
    with sqlite3.connect(path) as db:
        head, insert = BUILD_SQL.rsplit("WITH RECURSIVE", 1)
        db.executescript(head)
        db.execute("WITH RECURSIVE" + insert, {"rows": mib * ROWS_PER_MIB})


def timed(command: list[str] | str, **kwargs) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - started


def storagectl(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "storagectl", "-q", "-c", str(config), *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=560)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("bench/data"))
    args = parser.parse_args()
    for tool in ("sqlite3", "brotli"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (apt-get install -y {tool})")
    args.dir.mkdir(parents=True, exist_ok=True)
    source = args.dir / f"sqlite-{args.mib}mib.db"
    build(source, args.mib)
    # absolute: storagectl reads relative paths in a config from the config file's folder
    work = Path(tempfile.mkdtemp(prefix="bench-sqlite-", dir=args.dir)).resolve()
    config = work / "storagectl.yaml"
    config.write_text(json.dumps({"backends": {
        "app": {"kind": "sqlite", "path": str(source.resolve())},
        "copy": {"kind": "sqlite", "path": str(work / "copy.db"), "create_if_missing": True}},
        "destinations": {"local": {"kind": "local", "path": str(work / "backups")}}}))
    times: dict[str, list[float]] = {"ours backup": [], "ref backup": [], "ours restore": [], "ref restore": []}
    sizes = {}
    try:
        for _ in range(args.rounds):
            shutil.rmtree(work / "backups", ignore_errors=True)
            times["ours backup"].append(timed(storagectl(config, "backup", "run", "--backend", "app",
                                                         "--to", "local")))
            [archive] = (work / "backups").rglob("*.sqlite.br")
            sizes["ours"] = archive.stat().st_size
            (work / "ref.db").unlink(missing_ok=True)
            (work / "ref.db.br").unlink(missing_ok=True)
            times["ref backup"].append(timed(["sqlite3", str(source), f".backup {work / 'ref.db'}"])
                                       + timed(["brotli", "-q", "1", "-f", str(work / "ref.db")]))
            sizes["ref"] = (work / "ref.db.br").stat().st_size
            times["ours restore"].append(timed(storagectl(config, "restore", archive.parent.name, "--to", "copy",
                                                          "--yes")))
            times["ref restore"].append(_reference_restore(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(times, sizes, source)


def _reference_restore(work: Path) -> float:
    out = work / "ref-restored.db"
    seconds = timed(["brotli", "-d", "-f", "-o", str(out), str(work / "ref.db.br")])
    seconds += timed(["sqlite3", str(out), "PRAGMA integrity_check"])
    return seconds + timed(["mv", str(out), str(work / "ref-final.db")])


def report(times: dict[str, list[float]], sizes: dict[str, int], source: Path) -> None:
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"database {source} {source.stat().st_size / 2**20:.0f} MiB, {len(times['ours backup'])} rounds")
    for name, values in times.items():
        print(f"  {name:13s} median {median[name]:6.2f} s  (all: {', '.join(f'{v:.2f}' for v in values)})")
    print(f"backup : {median['ours backup'] / median['ref backup']:.2f}x sqlite3 .backup + brotli -q1 "
          f"(target <= 1.5x); archive {sizes['ours'] / 2**20:.1f} MiB vs {sizes['ref'] / 2**20:.1f} MiB "
          f"({sizes['ours'] / sizes['ref']:.2f}x)")
    print(f"restore: {median['ours restore'] / median['ref restore']:.2f}x brotli -d + integrity_check + mv "
          "(target <= 1.0x)")


if __name__ == "__main__":
    main()
