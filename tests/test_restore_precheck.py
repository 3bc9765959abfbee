"""What restore checks before it touches the target: size + SHA-256 always, a full decode when the
target's existing contents would be replaced (a failure half-way would cost them)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from storagectl.backup import restore, run_backup
from storagectl.errors import IntegrityError
from tests.test_backup_redis import (  # noqa: F401 - redis_pair, redis_trio are fixtures
    config_for,
    populate,
    redis_pair,
    redis_trio,
    staged_backup,
)


def undecodable_but_hash_clean(backups: Path) -> None:
    """Replace the data object by bytes that are not brotli and record their size and SHA-256, as a
    fault before hashing (a writer bug, a memory error) would."""
    [manifest_path] = backups.rglob("manifest.json")
    manifest = json.loads(manifest_path.read_text())
    stored = next(backups.rglob("00001-*"))
    garbage = b"not brotli at all " * 4096
    stored.write_bytes(garbage)
    entry = next(obj for obj in manifest["objects"] if obj["key"].endswith(stored.name))
    entry["size"], entry["sha256"] = len(garbage), hashlib.sha256(garbage).hexdigest()
    manifest_path.write_text(json.dumps(manifest))


def test_replacing_a_non_empty_target_decodes_everything_first(redis_pair, write_config, tmp_path):  # noqa: F811
    source, target = redis_pair
    populate(source.client(), 200)
    target.client().set("keep-me", "old data")
    config = config_for(write_config, tmp_path, source.url, target.url)
    [result] = run_backup(config, backend="cache", destination="local")
    undecodable_but_hash_clean(tmp_path / "backups")
    with pytest.raises(IntegrityError, match="corrupt compressed data.*nothing was restored"):
        restore(config, result.manifest.id, target="spare", replace=True)
    assert target.client().get("keep-me") == b"old data" and target.client().dbsize() == 1


def test_into_an_empty_target_the_hash_check_alone_runs_first(redis_pair, write_config, tmp_path):  # noqa: F811
    source, target = redis_pair
    populate(source.client(), 200)
    config = config_for(write_config, tmp_path, source.url, target.url)
    [result] = run_backup(config, backend="cache", destination="local")
    undecodable_but_hash_clean(tmp_path / "backups")
    with pytest.raises(IntegrityError, match="corrupt compressed data") as caught:
        restore(config, result.manifest.id, target="spare")
    assert "nothing was restored" not in caught.value.message  # found while loading, not by the pre-check
    assert target.client().dbsize() == 0


def test_a_bit_flip_is_caught_by_the_hash_check_before_anything_is_written(redis_pair, write_config,  # noqa: F811
                                                                        tmp_path):
    source, target = redis_pair
    populate(source.client(), 200)
    config = config_for(write_config, tmp_path, source.url, target.url)
    [result] = run_backup(config, backend="cache", destination="local")
    stored = next((tmp_path / "backups").rglob("00001-*"))
    data = bytearray(stored.read_bytes())
    data[-5] ^= 0x01
    stored.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="checksum mismatch.*nothing was restored"):
        restore(config, result.manifest.id, target="spare")
    assert target.client().dbsize() == 0


def test_a_staged_replacement_skips_the_full_decode_and_still_keeps_the_old_contents(redis_trio, write_config,  # noqa: F811
                                                                                      tmp_path):
    """With a staging db a fault found while loading cannot cost the target anything, so the archive is
    not decoded twice: the fault surfaces during the load, and the target is as it was."""
    source, target, staging = redis_trio
    config, backup_id = staged_backup(redis_trio, write_config, tmp_path, 200)
    undecodable_but_hash_clean(tmp_path / "backups")
    with pytest.raises(IntegrityError, match="corrupt compressed data") as caught:
        restore(config, backup_id, target="spare", replace=True)
    assert "nothing was restored" not in caught.value.message and f"db {target.db} is unchanged" in caught.value.message
    assert target.client().keys() == [b"only-in-target"] and staging.client().dbsize() == 0
