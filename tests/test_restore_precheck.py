"""What restore checks before it touches the target: size + SHA-256 always, a full decode when the
target's existing contents would be replaced (a failure half-way would cost them)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from storagectl.backup import restore, run_backup
from storagectl.errors import IntegrityError
from tests.test_backup_redis import config_for, populate, redis_pair  # noqa: F401 - redis_pair is a fixture


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
