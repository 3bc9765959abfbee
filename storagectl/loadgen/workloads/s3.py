"""S3 workloads: objects ``<backend prefix>storagectl-bench-<id>/obj-<n>``, every name the run can
have written deleted at teardown (nothing else under the bucket is listed or removed).

boto3 blocks, so each client is a thread with its own S3 client (:class:`ThreadClient`).
"""

from __future__ import annotations

import random
from typing import Any

from storagectl.errors import OperationFailed
from storagectl.loadgen.clients import ThreadClient
from storagectl.loadgen.workloads import WorkloadOptions

DEFAULT_KEYSPACE = 1000
WORKLOADS = ("put", "get", "mixed")
DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys


def workload_names(kind: str) -> tuple[str, ...]:
    return WORKLOADS


def make_workload(backend: Any, options: WorkloadOptions) -> S3Workload:
    return S3Workload(backend, options)


class S3Workload:
    def __init__(self, backend: Any, options: WorkloadOptions) -> None:
        self.backend = backend
        self.options = options
        self.bucket = backend.settings.bucket
        self.namespace = f"{backend.settings.normalized_prefix()}storagectl-bench-{options.run_id}/"
        self.fill_items = 0 if options.base == "put" else options.keyspace
        self._body = b"x" * (options.data_size or 0)
        self._seed = random.Random(options.run_id)
        self._client: Any = None

    def key(self, n: int) -> str:
        return f"{self.namespace}obj-{n}"

    def setup(self) -> int:
        self._client = self.backend._open_translated()
        if self.options.base == "put":
            return 0
        for n in range(self.options.keyspace):
            self._client.put_object(Bucket=self.bucket, Key=self.key(n), Body=self._body)
        return self.options.keyspace

    def teardown(self) -> bool:
        client = self._client
        if client is None:  # setup could not even open the bucket: nothing was written
            return False
        keys = [self.key(n) for n in range(self.options.keyspace)]
        failed: list[dict[str, Any]] = []
        for start in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": key} for key in keys[start:start + DELETE_BATCH]]
            answer = client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            failed += answer.get("Errors") or []  # per key, in a 200 answer: nothing raises
        if failed:
            first = failed[0]
            raise OperationFailed(f"bench teardown: {len(failed)} objects under s3://{self.bucket}/{self.namespace} "
                                  f"were not deleted ({first.get('Key')}: {first.get('Code')})",
                                  hint=f"Try: delete s3://{self.bucket}/{self.namespace} by hand")
        return True

    def server_version(self) -> str:
        return f"S3 at {self.backend.endpoint()}"

    def open_client(self) -> ThreadClient:
        rng = random.Random(self._seed.random())
        return ThreadClient(lambda: self._open_operation(rng))

    def _open_operation(self, rng: random.Random) -> tuple[Any, Any]:
        client = self.backend._open_translated()
        bucket, body, keyspace = self.bucket, self._body, self.options.keyspace
        sets, gets = self.options.ratio
        base = self.options.base

        def operation() -> None:
            key = self.key(rng.randrange(keyspace))
            if base == "put" or (base == "mixed" and rng.random() * (sets + gets) < sets):
                client.put_object(Bucket=bucket, Key=key, Body=body)
            else:
                client.get_object(Bucket=bucket, Key=key)["Body"].read()

        return operation, client.close
