"""The archive layer: streamed, compressed, optionally age-encrypted, checksummed backup objects.

See ``docs/FORMAT.md`` for the on-disk format and :mod:`storagectl.archive.api` for the contract
with the backends.
"""

from storagectl.archive.manifest import MANIFEST_NAME, BackupManifest, ObjectEntry, new_backup_id
from storagectl.archive.progress import ProgressCallback, ProgressEvent
from storagectl.archive.reader import StoredArchive
from storagectl.archive.writer import ArchiveSession

__all__ = [
    "MANIFEST_NAME",
    "ArchiveSession",
    "BackupManifest",
    "ObjectEntry",
    "ProgressCallback",
    "ProgressEvent",
    "StoredArchive",
    "new_backup_id",
]
