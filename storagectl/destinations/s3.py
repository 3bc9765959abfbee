"""An S3 / MinIO bucket as a backup destination."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from storagectl.config.models import DestinationSettings, TimeoutSettings
from storagectl.config.types import ByteSize
from storagectl.s3client import S3ConnectionSettings


class S3DestinationSettings(S3ConnectionSettings, DestinationSettings):
    kind: Literal["s3"] = "s3"
    server_side_encryption: Literal["AES256", "aws:kms"] | None = None
    sse_kms_key_id: str | None = None
    storage_class: str | None = None
    part_size: ByteSize = Field(64 * 1024**2, ge=5 * 1024**2, description="Multipart part size (>= 5 MiB).")
    concurrency: int = Field(4, ge=1, le=64, description="Parts uploaded at once.")
    timeouts: TimeoutSettings = TimeoutSettings()


class S3Destination:
    Settings = S3DestinationSettings

    def __init__(self, name: str, settings: S3DestinationSettings) -> None:
        self.name = name
        self.settings = settings
