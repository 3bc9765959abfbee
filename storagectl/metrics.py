"""Prometheus text-format metrics for node_exporter's textfile collector, written atomically."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from storagectl.fsutil import atomic_write_text

_METRICS = (
    ("storagectl_backup_last_success_timestamp_seconds", "Unix time of the job's last successful backup."),
    ("storagectl_backup_last_run_timestamp_seconds", "Unix time the job's last run finished."),
    ("storagectl_backup_last_run_duration_seconds", "Wall time of the job's last run."),
    ("storagectl_backup_last_size_bytes", "Stored size of the job's last successful backup."),
    ("storagectl_backup_last_status", "1 if the job's last run succeeded, 0 if it failed."),
)


@dataclass(frozen=True)
class JobRunMetrics:
    job: str
    finished_at: float
    duration: float
    succeeded: bool
    size: int | None = None


def render_metrics(run: JobRunMetrics, previous: dict[str, float]) -> str:
    """The file's text. A failed run keeps the previous success time and size, so alerts on
    "no success for N hours" keep working across failures."""
    label = '{job="' + run.job.replace("\\", "\\\\").replace('"', '\\"') + '"}'
    values = {
        "storagectl_backup_last_success_timestamp_seconds":
            run.finished_at if run.succeeded else previous.get("storagectl_backup_last_success_timestamp_seconds"),
        "storagectl_backup_last_run_timestamp_seconds": run.finished_at,
        "storagectl_backup_last_run_duration_seconds": run.duration,
        "storagectl_backup_last_size_bytes":
            run.size if run.succeeded else previous.get("storagectl_backup_last_size_bytes"),
        "storagectl_backup_last_status": 1 if run.succeeded else 0,
    }
    lines = []
    for name, help_text in _METRICS:
        value = values[name]
        if value is None:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name}{label} {_sample(value)}"]
    return "\n".join(lines) + "\n"


def _sample(value: float) -> str:
    """A sample value at full precision: ``:g`` keeps 6 digits, so a Unix time came out up to
    ~5,000 s off (``1.79657e+09``) and sizes over 1 MB rounded."""
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def read_previous(path: Path) -> dict[str, float]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    found = {}
    for match in re.finditer(r"^(storagectl_[a-z_]+)\{[^}]*\} (\S+)$", text, re.MULTILINE):
        found[match[1]] = float(match[2])
    return found


def write_job_metrics(path: Path, run: JobRunMetrics) -> None:
    atomic_write_text(path, render_metrics(run, read_previous(path)))
