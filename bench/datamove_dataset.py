"""A SQLite file for the data-move benchmarks: integers, reals, text, blobs, dates and booleans over
several tables (``scale`` 1 = 1.5 M rows)."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email VARCHAR(200), active BOOLEAN,
                    born DATE, score REAL);
CREATE TABLE events (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), kind TEXT,
                     amount REAL, created DATETIME, handled BOOLEAN);
CREATE INDEX events_user ON events (user_id);
CREATE TABLE attachments (id INTEGER PRIMARY KEY, event_id INTEGER REFERENCES events(id), body BLOB,
                          mime TEXT, uploaded DATETIME);
CREATE TABLE readings (sensor TEXT, taken INTEGER, value DOUBLE, ok BOOLEAN);
"""
KINDS = ["click", "view", "purchase", "signup", "logout"]


def build(path: Path, scale: float = 1.0, seed: int = 7) -> dict[str, int]:
    """Tables users (100k), events (1M), attachments (100k, 200-byte blobs), readings (300k, no key)."""
    rng = random.Random(seed)
    counts = {"users": int(100_000 * scale), "events": int(1_000_000 * scale),
              "attachments": int(100_000 * scale), "readings": int(300_000 * scale)}
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)", (
        (i, f"user {i}", f"user{i}@example.com", i % 2, f"19{50 + i % 50}-0{1 + i % 9}-1{i % 10}",
         rng.random() * 100) for i in range(1, counts["users"] + 1)))
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", (
        (i, 1 + i % counts["users"], KINDS[i % 5], round(rng.random() * 1000, 2),
         f"2024-{1 + i % 12:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{i % 60:02d}", "tf"[i % 2])
        for i in range(1, counts["events"] + 1)))
    conn.executemany("INSERT INTO attachments VALUES (?, ?, ?, ?, ?)", (  # ISO text: pgloader reads no Unix times
        (i, i, rng.randbytes(200), "application/octet-stream", f"2023-{1 + i % 12:02d}-{1 + i % 28:02d} 10:00:00")
        for i in range(1, counts["attachments"] + 1)))
    conn.executemany("INSERT INTO readings VALUES (?, ?, ?, ?)", (
        (f"s{i % 50}", 1_700_000_000 + i, rng.gauss(20, 5), i % 3 != 0) for i in range(counts["readings"])))
    conn.commit()
    conn.close()
    return counts
