"""`bench compare`: two results side by side and the ``--fail-if`` conditions, as pure functions.

A condition is ``FIGURE OP VALUE``: ``p99>+10%`` holds when NEW's p99 is more than 10 % above BASE's,
``ops<-5%`` when ops/s fell by more than 5 %, ``p99>50`` (no %) when NEW's p99 is above 50 ms,
``errors>0`` when NEW had any error. A condition that cannot be checked (NEW has no latency
because not one op succeeded) holds: a CI gate must not pass on a run it could not judge. Latency
figures are the latency users saw: corrected (intended-start) latency for open-loop runs, service
time otherwise.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from storagectl.errors import UsageError
from storagectl.loadgen.result import SCHEMA_VERSION, headline_latency

LATENCY_FIGURES = ("min", "p50", "p90", "p95", "p99", "p99.9", "max", "mean")
FIGURES = ("ops", "errors", *LATENCY_FIGURES)
# what `bench run` was told, as result key: (section, option, unit); a figure may differ for one of
# these alone (closed vs open loop has a note of its own)
PARAMETERS = {"data_size": ("workload", "--data-size", ""), "keyspace": ("workload", "--keyspace", ""),
              "ratio": ("workload", "--ratio", ""), "pipeline": ("load", "--pipeline", ""),
              "clients": ("load", "--clients", ""), "workers": ("load", "--workers", ""),
              "rate": ("load", "--rate", ""), "duration_s": ("load", "--duration", "s"),
              "count": ("load", "--count", ""), "warmup_s": ("load", "--warmup", "s")}
_CONDITION = re.compile(r"^\s*([a-z0-9.]+)\s*([<>])\s*([+-]?\d+(?:\.\d+)?)\s*(%?)\s*$")


@dataclass(frozen=True)
class Condition:
    text: str
    figure: str
    above: bool  # '>' (True) or '<'
    value: float
    relative: bool  # a % change from BASE, or NEW's own value

    def holds(self, base: float | None, new: float | None) -> bool:
        """A gate that cannot be checked holds: NEW without the figure (not one op succeeded: no
        latency), or a change from a BASE without it. A rise from 0 (errors) is an infinite one."""
        if self.unchecked(base, new) is not None:
            return True
        if self.relative:
            measured = percent_change(base, new)
            if measured is None:  # from 0: up without bound, or no change
                measured = math.inf if new > 0 else -math.inf if new < 0 else 0.0
        else:
            measured = new
        return measured > self.value if self.above else measured < self.value

    def unchecked(self, base: float | None, new: float | None) -> str | None:
        """Why the condition could not be checked (and so holds), if it could not."""
        if new is None:
            return f"{self.text}: NEW has no {self.figure} (no operation succeeded)"
        if self.relative and base is None:
            return f"{self.text}: BASE has no {self.figure} to compare with"
        return None


def parse_condition(text: str) -> Condition:
    match = _CONDITION.match(text)
    if not match or match.group(1) not in FIGURES:
        raise UsageError(f"--fail-if {text!r} is not FIGURE<VALUE or FIGURE>VALUE (e.g. 'p99>+10%', 'ops<-5%', "
                         f"'errors>0'); figures: {', '.join(FIGURES)}")
    figure, op, value, percent = match.groups()
    if value[0] in "+-" and not percent:  # 'ops<-5' never holds (no figure is negative): meant -5 %?
        raise UsageError(f"--fail-if {text!r}: a signed value is a change and needs '%' ({figure}{op}{value}%); "
                         f"a value of NEW's own takes no sign ({figure}{op}{value.lstrip('+-')})")
    return Condition(text.strip(), figure, op == ">", float(value), percent == "%")


def percent_change(base: float | None, new: float | None) -> float | None:
    if base is None or new is None or base == 0:
        return None
    return round(100.0 * (new - base) / base, 2)


def figures_of(result: dict[str, Any]) -> dict[str, float | None]:
    latency = headline_latency(result) or {}
    values: dict[str, float | None] = {"ops": result.get("ops_per_s"), "errors": result.get("error_count")}
    for figure in LATENCY_FIGURES:
        values[figure] = latency.get(figure.replace(".", "_"))
    return values


def check_comparable(base: dict[str, Any], new: dict[str, Any]) -> None:
    for result, label in ((base, "BASE"), (new, "NEW")):
        if result.get("schema_version") != SCHEMA_VERSION or "workload" not in result:
            raise UsageError(f"{label} is not a storagectl bench result (schema_version {SCHEMA_VERSION})",
                             hint="Try: storagectl bench run ... --save FILE")
    if base["workload"]["name"] != new["workload"]["name"]:
        raise UsageError(f"cannot compare different workloads: {base['workload']['name']!r} and "
                         f"{new['workload']['name']!r}")
    if base["backend"]["kind"] != new["backend"]["kind"]:
        raise UsageError(f"cannot compare different backends: {base['backend']['kind']} and "
                         f"{new['backend']['kind']}")


def compare_results(base: dict[str, Any], new: dict[str, Any], conditions: list[Condition]) -> dict[str, Any]:
    """Rows of figure/base/new/change_pct and the conditions that hold (README "bench compare")."""
    check_comparable(base, new)
    before, after = figures_of(base), figures_of(new)
    rows = [{"figure": figure, "base": before[figure], "new": after[figure],
             "change_pct": percent_change(before[figure], after[figure])} for figure in FIGURES]
    failed = [condition.text for condition in conditions if condition.holds(before[condition.figure],
                                                                            after[condition.figure])]
    notes = [reason for condition in conditions
             if (reason := condition.unchecked(before[condition.figure], after[condition.figure])) is not None]
    if base["load"]["mode"] != new["load"]["mode"]:
        notes.append(f"BASE is {base['load']['mode']} and NEW is {new['load']['mode']}: their latencies "
                     "measure different things")
    differing = differing_parameters(base, new)
    notes += [f"{PARAMETERS[row['parameter']][1]} differs: BASE {_shown(row['parameter'], row['base'])}, "
              f"NEW {_shown(row['parameter'], row['new'])}" for row in differing]
    return {"workload": new["workload"]["name"], "backend_kind": new["backend"]["kind"], "figures": rows,
            "conditions": [condition.text for condition in conditions], "failed": failed, "notes": notes,
            "differing_parameters": differing}


def differing_parameters(base: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """``{parameter, base, new}`` per run parameter whose values differ (one that an older result
    lacks is not compared)."""
    differing = []
    for key, (section, _, _) in PARAMETERS.items():
        before, after = base.get(section) or {}, new.get(section) or {}
        if key in before and key in after and before[key] != after[key]:
            differing.append({"parameter": key, "base": before[key], "new": after[key]})
    return differing


def _shown(parameter: str, value: Any) -> str:
    if value is None:
        return "not set"
    return f"{value:.10g}{PARAMETERS[parameter][2]}" if isinstance(value, int | float) else str(value)
