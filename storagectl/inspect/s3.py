"""`inspect` for S3: objects and bytes per prefix and storage class from ListObjectVersions (so
noncurrent versions and delete markers count), and incomplete multipart uploads with the bytes of
their uploaded parts — what `aws s3 ls --summarize` leaves out. Listing is in key order, so a listing
cut short by the budget gives lower bounds, marked as such, not extrapolations."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from storagectl.inspect.base import Inspector
from storagectl.inspect.model import Figure, Provenance, Report

PAGE = 1000


@dataclass
class PrefixTotals:
    objects: int = 0
    bytes: int = 0
    noncurrent: int = 0
    noncurrent_bytes: int = 0
    delete_markers: int = 0
    classes: Counter = field(default_factory=Counter)

    def add_version(self, version: dict[str, Any]) -> None:
        size = int(version.get("Size", 0))
        if version.get("IsLatest", True):
            self.objects += 1
            self.bytes += size
        else:
            self.noncurrent += 1
            self.noncurrent_bytes += size
        self.classes[version.get("StorageClass", "STANDARD")] += size


@dataclass
class BucketCensus:
    """Pure tally of listed versions and uploads, by prefix (``depth`` levels of '/' below ``base``)."""

    base: str
    depth: int
    prefixes: dict[str, PrefixTotals] = field(default_factory=lambda: defaultdict(PrefixTotals))
    uploads: int = 0
    upload_bytes: int = 0
    oldest_upload: datetime | None = None
    listed_to: str | None = None

    def prefix_of(self, key: str) -> str:
        parts = key[len(self.base):].split("/")
        return self.base + "".join(part + "/" for part in parts[: min(self.depth, len(parts) - 1)])

    def add_version(self, version: dict[str, Any]) -> None:
        totals = self.prefixes[self.prefix_of(version["Key"])]
        totals.add_version(version)
        self.listed_to = version["Key"]

    def add_marker(self, marker: dict[str, Any]) -> None:
        self.prefixes[self.prefix_of(marker["Key"])].delete_markers += 1

    def add_upload(self, initiated: datetime, part_bytes: int) -> None:
        self.uploads += 1
        self.upload_bytes += part_bytes
        if self.oldest_upload is None or initiated < self.oldest_upload:
            self.oldest_upload = initiated


class S3Inspector(Inspector):
    views: ClassVar[tuple[str, ...]] = ("overview", "objects")

    def base_prefix(self) -> str:
        return self.options.prefix if self.options.prefix is not None else self.backend.settings.normalized_prefix()

    def overview(self, client: Any, report: Report) -> None:
        self.objects(client, report, depth=1, top=5)

    def objects(self, client: Any, report: Report, depth: int | None = None, top: int | None = None) -> None:
        census = BucketCensus(self.base_prefix(), depth or self.options.depth)
        complete = False
        try:
            self.list_versions(client, census)
            self.list_uploads(client, census)
            complete = True
        finally:
            fill(report, census, complete, top or self.options.top)

    def list_versions(self, client: Any, census: BucketCensus) -> None:
        paginator = client.get_paginator("list_object_versions")
        pages = paginator.paginate(Bucket=self.backend.settings.bucket, Prefix=census.base,
                                   PaginationConfig={"PageSize": PAGE})
        for page in pages:
            for version in page.get("Versions", []):
                census.add_version(version)
            for marker in page.get("DeleteMarkers", []):
                census.add_marker(marker)
            self.budget.check()

    def list_uploads(self, client: Any, census: BucketCensus) -> None:
        bucket = self.backend.settings.bucket
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=census.base):
            for upload in page.get("Uploads", []):
                parts = client.get_paginator("list_parts").paginate(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                size = sum(int(part["Size"]) for p in parts for part in p.get("Parts", []))
                census.add_upload(upload["Initiated"], size)
                self.budget.check()


def fill(report: Report, census: BucketCensus, complete: bool, top: int) -> None:
    """The census as figures: exact when the listing finished, lower bounds when it was cut short."""
    figure = (lambda v, unit="": Figure(v, Provenance.EXACT, unit=unit)) if complete else (
        lambda v, unit="": Figure(v, Provenance.ESTIMATE, unit=unit,
                                  source=f"lower bound: listing stopped after {census.listed_to!r}"))
    all_totals = list(census.prefixes.values())
    classes: Counter = Counter()
    for totals in all_totals:
        classes.update(totals.classes)
    report.summary.update(
        objects=figure(sum(t.objects for t in all_totals)), bytes=figure(sum(t.bytes for t in all_totals), "bytes"),
        noncurrent_versions=figure(sum(t.noncurrent for t in all_totals)),
        noncurrent_bytes=figure(sum(t.noncurrent_bytes for t in all_totals), "bytes"),
        delete_markers=figure(sum(t.delete_markers for t in all_totals)),
        incomplete_uploads=figure(census.uploads), incomplete_upload_bytes=figure(census.upload_bytes, "bytes"),
        oldest_incomplete_upload=census.oldest_upload)
    rows = [{"prefix": prefix or "(root)", "objects": figure(t.objects), "bytes": figure(t.bytes, "bytes"),
             "noncurrent_versions": figure(t.noncurrent), "noncurrent_bytes": figure(t.noncurrent_bytes, "bytes"),
             "delete_markers": figure(t.delete_markers), "storage_classes": dict(t.classes.most_common())}
            for prefix, t in census.prefixes.items()]
    rows.sort(key=lambda r: (-(r["bytes"].value + r["noncurrent_bytes"].value), r["prefix"]))
    report.sections["prefixes"] = rows[:top]
    report.sections["storage_classes"] = [{"storage_class": name, "bytes": figure(size, "bytes")}
                                          for name, size in classes.most_common()]



