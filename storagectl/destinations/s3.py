"""An S3 / MinIO bucket as a backup destination.

Objects are uploaded as they are produced: a multipart upload of ``part_size`` parts with at most
``concurrency`` parts in flight, so memory stays near ``part_size x (concurrency + 1)`` whatever
the object's size. Any failure aborts the multipart upload, which leaves nothing under the key.
Objects smaller than one part go up in a single PUT.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cached_property
from typing import Any, BinaryIO, Literal

from pydantic import Field

from storagectl import interrupts
from storagectl.config.models import DestinationSettings, TimeoutSettings
from storagectl.config.types import ByteSize
from storagectl.destinations.base import StoredObject, UnfinishedUpload, check_key
from storagectl.errors import StoragectlError
from storagectl.s3client import S3ConnectionSettings, make_s3_client, translate_s3_error


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
        self.part_size = settings.part_size

    @cached_property
    def client(self) -> Any:
        s = self.settings
        return make_s3_client(s, s.timeouts, s.retry, max_pool=max(10, s.concurrency * 4))

    def location(self) -> str:
        return f"s3://{self.settings.bucket}/{self.settings.normalized_prefix()}"

    def _key(self, key: str) -> str:
        return self.settings.normalized_prefix() + check_key(key)

    def _error(self, exc: BaseException, key: str = "") -> StoragectlError:
        if isinstance(exc, StoragectlError):
            return exc
        error = translate_s3_error(exc, f"destination {self.name!r} ({self.location()}{key})")
        from storagectl.redact import redact_text

        error.message = redact_text(error.message, self.settings.s3_secrets())
        return error

    def put_args(self) -> dict[str, str]:
        """Server-side encryption and storage class, as boto3 keyword arguments."""
        s = self.settings
        args = {"ServerSideEncryption": s.server_side_encryption, "SSEKMSKeyId": s.sse_kms_key_id,
                "StorageClass": s.storage_class}
        return {name: value for name, value in args.items() if value}

    @contextlib.contextmanager
    def put_stream(self, key: str) -> Iterator[MultipartUpload]:
        upload = MultipartUpload(self, self._key(key))
        try:
            yield upload
            upload.complete()
        except BaseException as exc:
            upload.abort()
            if _from_botocore(exc):  # the producer's own errors pass through unchanged
                raise self._error(exc, key) from exc
            raise

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        try:
            response = self.client.get_object(Bucket=self.settings.bucket, Key=self._key(key))
        except Exception as exc:
            raise self._error(exc, key) from exc
        body = response["Body"]
        try:
            yield _TranslatingBody(body, lambda exc: self._error(exc, key))
        finally:
            body.close()

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        root = self.settings.normalized_prefix()
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.settings.bucket, Prefix=root + prefix):
                for item in page.get("Contents", []):
                    yield StoredObject(item["Key"][len(root):], item["Size"], item["LastModified"])
        except Exception as exc:
            raise self._error(exc) from exc

    def delete(self, keys: Iterable[str]) -> None:
        batch: list[str] = []
        for key in keys:
            batch.append(self._key(key))
            if len(batch) == 1000:  # DeleteObjects takes at most 1000 keys
                self._delete_batch(batch)
                batch = []
        if batch:
            self._delete_batch(batch)

    def _delete_batch(self, keys: list[str]) -> None:
        try:
            response = self.client.delete_objects(
                Bucket=self.settings.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
        except Exception as exc:
            raise self._error(exc) from exc
        errors = response.get("Errors") or []
        if errors:
            from botocore.exceptions import ClientError

            first = errors[0]
            raise self._error(ClientError({"Error": first}, "DeleteObjects"), first.get("Key", ""))

    def list_unfinished(self, prefix: str = "") -> Iterator[UnfinishedUpload]:
        """Multipart uploads under the destination's prefix (never anything else in the bucket)."""
        root = self.settings.normalized_prefix()
        paginator = self.client.get_paginator("list_multipart_uploads")
        try:
            for page in paginator.paginate(Bucket=self.settings.bucket, Prefix=root + prefix):
                for item in page.get("Uploads", []):
                    if item["Key"].startswith(root + prefix):  # whatever the server's prefix filter did
                        upload = self._unfinished(item, item["Key"][len(root):])
                        if upload is not None:
                            yield upload
        except Exception as exc:
            raise self._error(exc) from exc

    def _unfinished(self, item: dict[str, Any], key: str) -> UnfinishedUpload | None:
        """The upload with its size and last activity (its newest part: a long upload started long ago
        may still be busy); None when it completed or was aborted since it was listed."""
        size, last_active = 0, item["Initiated"]
        paginator = self.client.get_paginator("list_parts")
        try:
            for page in paginator.paginate(Bucket=self.settings.bucket, Key=item["Key"], UploadId=item["UploadId"]):
                for part in page.get("Parts", []):
                    size += part["Size"]
                    last_active = max(last_active, part["LastModified"])
        except Exception as exc:
            if _no_such_upload(exc):
                return None
            raise self._error(exc, key) from exc
        return UnfinishedUpload(key, last_active, size, item["UploadId"])

    def abort_unfinished(self, uploads: Iterable[UnfinishedUpload]) -> None:
        for upload in uploads:
            try:
                self.client.abort_multipart_upload(Bucket=self.settings.bucket, Key=self._key(upload.key),
                                                   UploadId=upload.handle)
            except Exception as exc:
                if not _no_such_upload(exc):  # else it completed or was aborted meanwhile
                    raise self._error(exc, upload.key) from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.settings.bucket, Key=self._key(key))
        except Exception as exc:
            error = self._error(exc, key)
            if error.exit_code == 5:
                return False
            raise error from exc
        return True


def _no_such_upload(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == "NoSuchUpload"


def _from_botocore(exc: BaseException) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, BotoCoreError | ClientError)


class MultipartUpload:
    """A write stream that uploads ``part_size`` parts in the background, ``concurrency`` at a time."""

    def __init__(self, destination: S3Destination, key: str) -> None:
        self.destination = destination
        self.key = key
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[Future] = []
        self.in_flight = threading.BoundedSemaphore(destination.settings.concurrency)
        self.pool: ThreadPoolExecutor | None = None

    @property
    def _client(self) -> Any:
        return self.destination.client

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.buffer += data
        while len(self.buffer) >= self.destination.part_size:
            part = bytes(self.buffer[: self.destination.part_size])
            del self.buffer[: self.destination.part_size]
            self._submit(part)
        return len(data)

    def _submit(self, part: bytes) -> None:
        self._raise_failed_part()
        if self.upload_id is None:
            self._start()
        self.in_flight.acquire()  # back-pressure: at most `concurrency` parts held in memory
        number = len(self.parts) + 1
        future = self.pool.submit(self._upload_part, number, part)
        future.add_done_callback(lambda _f: self.in_flight.release())
        self.parts.append(future)

    def _start(self) -> None:
        s = self.destination.settings
        response = self._client.create_multipart_upload(Bucket=s.bucket, Key=self.key,
                                                        **self.destination.put_args())
        self.upload_id = response["UploadId"]
        self.pool = ThreadPoolExecutor(s.concurrency, thread_name_prefix="s3-part")

    def _upload_part(self, number: int, part: bytes) -> dict[str, Any]:
        response = self._client.upload_part(Bucket=self.destination.settings.bucket, Key=self.key,
                                            UploadId=self.upload_id, PartNumber=number, Body=part)
        return {"PartNumber": number, "ETag": response["ETag"]}

    def _raise_failed_part(self) -> None:
        for future in self.parts:
            if future.done() and future.exception() is not None:
                raise future.exception()

    def complete(self) -> None:
        bucket = self.destination.settings.bucket
        if self.upload_id is None:
            self._client.put_object(Bucket=bucket, Key=self.key, Body=bytes(self.buffer),
                                    **self.destination.put_args())
            return
        if self.buffer:
            self._submit(bytes(self.buffer))
            self.buffer = bytearray()
        parts = [interrupts.result(future) for future in self.parts]
        self._client.complete_multipart_upload(Bucket=bucket, Key=self.key, UploadId=self.upload_id,
                                               MultipartUpload={"Parts": parts})
        self._shutdown()

    def abort(self) -> None:
        self.buffer = bytearray()
        if self.upload_id is None:
            return
        self._shutdown()
        with contextlib.suppress(Exception):  # the original error is what the user must see
            self._client.abort_multipart_upload(Bucket=self.destination.settings.bucket, Key=self.key,
                                                UploadId=self.upload_id)

    def _shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


class _TranslatingBody:
    """A streaming GET body whose network errors become storagectl errors."""

    def __init__(self, body: Any, translate: Any) -> None:
        self.body = body
        self.translate = translate

    def read(self, size: int = -1) -> bytes:
        try:
            return self.body.read(size if size >= 0 else None)
        except Exception as exc:
            raise self.translate(exc) from exc
