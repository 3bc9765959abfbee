"""Compare what a backend holds after a restore with what it held when the backup was taken."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storagectl.archive.api import ContentSummary, ItemCheck


@dataclass
class UnitCheck:
    unit: str
    expected_count: int | None
    actual_count: int | None
    expected_checksum: str | None = None
    actual_checksum: str | None = None
    tolerance: int = 0  # the actual count may be this much lower (e.g. keys expired since restored)

    @property
    def ok(self) -> bool:
        if self.expected_count is None or self.actual_count is None:
            counts_ok = self.expected_count == self.actual_count
        else:
            counts_ok = self.expected_count - self.tolerance <= self.actual_count <= self.expected_count
        checksum_ok = self.expected_checksum is None or self.expected_checksum == self.actual_checksum
        return counts_ok and checksum_ok

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "expected_count": self.expected_count, "actual_count": self.actual_count,
                "expected_checksum": self.expected_checksum, "actual_checksum": self.actual_checksum,
                "ok": self.ok}


@dataclass
class ValidationReport:
    checks: list[UnitCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    comparable: bool = True  # False: the backup recorded nothing to compare with, so nothing is proven
    items: list[ItemCheck] = field(default_factory=list)  # item-by-item comparisons, where the kind has them

    @property
    def ok(self) -> bool:
        return self.comparable and all(check.ok for check in [*self.checks, *self.items])

    def mismatches(self) -> list[UnitCheck]:
        return [check for check in self.checks if not check.ok]

    def problem(self) -> str:
        """What is wrong, for the one-line error (empty when ``ok``)."""
        if not self.comparable:
            return "the backup recorded no content summary, so --validate cannot prove the restore"
        wrong = [check.unit for check in self.mismatches()]
        wrong += [f"{item.unit} " + ", ".join(f"{count} {reason}" for reason, count in item.mismatched.items() if count)
                  for item in self.items if not item.ok]
        return f"does not match the backup: {'; '.join(wrong)}" if wrong else ""

    def add_items(self, items: list[ItemCheck]) -> None:
        self.items += items
        for item in items:
            self.notes.append(f"{item.unit}: {item.checked} compared one by one ({item.method})" if item.ok else
                              f"{item.unit}: differ from the backup: {', '.join(item.examples)}")

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.to_dict() for c in self.checks], "items": [i.to_dict() for i in self.items],
                "notes": self.notes}


def compare_summaries(expected: ContentSummary | None, actual: ContentSummary,
                      skipped: dict[str, int] | None = None, tolerance: dict[str, int] | None = None
                      ) -> ValidationReport:
    """Unit by unit: counts (less what the restore skipped on purpose, allowing ``tolerance`` fewer)
    and, where recorded, checksums."""
    if expected is None:
        return ValidationReport(notes=["the backup recorded no content summary; nothing to compare"], comparable=False)
    skipped = skipped or {}
    report = ValidationReport()
    for unit in sorted(set(expected.units()) | set(actual.units())):
        count = expected.counts.get(unit)
        if count is not None:
            count -= skipped.get(unit, 0)
        report.checks.append(UnitCheck(unit, count, actual.counts.get(unit), expected.checksums.get(unit),
                                       actual.checksums.get(unit), (tolerance or {}).get(unit, 0)))
    if not report.checks:
        report.notes.append("the backup holds no tables or keys; nothing to compare")
    report.notes += [f"{unit}: {n} skipped by the restore (e.g. expired)" for unit, n in skipped.items() if n]
    report.notes += [f"{unit}: up to {n} fewer allowed (expiring right after they were restored)"
                     for unit, n in (tolerance or {}).items() if n]
    return report
