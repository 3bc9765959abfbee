"""S3 / MinIO as a backend: a bucket whose reachability and listability diag checks."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from storagectl.backends.base import Backend
from storagectl.config.models import BackendSettings
from storagectl.errors import StoragectlError
from storagectl.health import Check, CheckSpec, Status
from storagectl.redact import redact_url
from storagectl.s3client import S3ConnectionSettings, make_s3_client, translate_s3_error

S3_CHECKS = {
    spec.name: spec
    for spec in (
        CheckSpec("bucket_reachable", "HeadBucket succeeds"),
        CheckSpec("bucket_listable", "ListObjectsV2 under the prefix succeeds"),
    )
}


class S3Settings(S3ConnectionSettings, BackendSettings):
    kind: Literal["s3"] = "s3"
    check_names: ClassVar[tuple[str, ...]] = tuple(S3_CHECKS)


class S3Backend(Backend):
    kind = "s3"
    Settings = S3Settings
    CHECKS = S3_CHECKS
    settings: S3Settings

    def endpoint(self) -> str:
        where = redact_url(self.settings.endpoint_url) if self.settings.endpoint_url else "aws"
        return f"s3://{self.settings.bucket}/{self.settings.normalized_prefix()} @ {where}"

    def secrets(self) -> list[str]:
        return self.settings.s3_secrets()

    def _open(self) -> Any:
        client = make_s3_client(self.settings, self.settings.timeouts, self.settings.retry,
                                self.settings.pool.max_size)
        client.head_bucket(Bucket=self.settings.bucket)
        return client

    def _close(self, connection: Any) -> None:
        connection.close()

    def translate_error(self, exc: BaseException) -> StoragectlError:
        return translate_s3_error(exc, self.label)

    def ping(self, connection: Any) -> None:
        connection.head_bucket(Bucket=self.settings.bucket)

    def server_version(self, connection: Any) -> str:
        return "S3 API"

    def diagnose(self, connection: Any) -> list[Check]:
        checks = [Check("bucket_reachable", Status.OK, True, "yes")]
        try:
            page = connection.list_objects_v2(Bucket=self.settings.bucket,
                                              Prefix=self.settings.normalized_prefix(), MaxKeys=1)
            count = page.get("KeyCount", 0)
            checks.append(Check("bucket_listable", Status.OK, True, "yes",
                                "prefix is empty" if count == 0 else ""))
        except Exception as exc:
            error = translate_s3_error(exc, self.label)
            checks.append(Check("bucket_listable", Status.CRITICAL, False, "no", error.message))
        return checks
