"""The validated-config cache (storagectl.config.cache): a hit gives back what validation gave, any
change to what the validation read is a miss, an invalid file is never cached, no secret is written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storagectl.config.cache import CachedConfig, load_config_quickly, load_config_remembered
from storagectl.config.loader import load_config
from storagectl.errors import ConfigError

SECRET = "s3cr3t-Value-42"


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def quick(path: Path, cache_dir: Path, environ: dict[str, str] | None = None):
    return load_config_quickly(path, cache_dir, {} if environ is None else environ)


def remembered(path: Path, cache_dir: Path, environ: dict[str, str] | None = None):
    return load_config_remembered(path, cache_dir, {} if environ is None else environ)


def plain_config(tmp_path: Path, write_config) -> Path:
    return write_config(f"""
        version: 1
        destinations:
          local: {{kind: local, path: backups, retry: {{attempts: 5, initial: 250ms}}}}
          other: {{kind: local, path: "{tmp_path / 'other'}"}}
        jobs:
          nightly:
            backends: [file]
            destination: local
            schedule: "0 3 * * *"
            retention: {{keep_daily: 7}}
            select: {{tables: [users, "orders_*"]}}
        backends:
          file: {{kind: sqlite, path: app.db, thresholds: {{file_size: {{warning: 1, critical: 2}}}}}}
    """)


def test_a_hit_gives_back_every_field_as_validated(tmp_path, write_config, cache_dir):
    path = plain_config(tmp_path, write_config)
    full = remembered(path, cache_dir)
    cached = quick(path, cache_dir)
    assert isinstance(cached, CachedConfig) and cached.path == full.path == path
    for section in ("backends", "destinations", "jobs", "data_migrations"):
        assert set(getattr(cached, section)) == set(getattr(full, section))
        for name, model in getattr(full, section).items():
            for field in type(model).model_fields:
                assert _plain(getattr(getattr(cached, section)[name], field)) == _plain(getattr(model, field)), field
    assert cached.destination("local").path == tmp_path / "backups"  # relative to the file, as validated
    assert cached.destination("local").retry.initial == 0.25 and cached.job("nightly").retention.keep_daily == 7
    assert cached._full is None  # all of that without validating again


def _plain(value):
    """A pydantic model or a cached one, as comparable data."""
    if hasattr(value, "__dict__") and not isinstance(value, Path):
        fields = getattr(type(value), "model_fields", None) or {
            name: None for name in vars(value) if not name.startswith("_")}
        return {name: _plain(getattr(value, name)) for name in fields}
    if isinstance(value, dict):
        return {name: _plain(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def test_methods_and_lookups_of_a_hit_work_as_on_the_validated_config(tmp_path, write_config, cache_dir):
    path = plain_config(tmp_path, write_config)
    full = remembered(path, cache_dir)
    cached = quick(path, cache_dir)
    # methods are the models' own plain mixins: the same code, no validating again
    assert cached.job("nightly").selection() == full.job("nightly").selection()
    assert cached.job("nightly").model_fields_set == full.job("nightly").model_fields_set
    copy = cached.destination("local").model_copy(update={"path": tmp_path})
    assert copy.path == tmp_path and "path" in copy.model_fields_set and cached.destination("local").path != tmp_path
    ad_hoc, expected = cached.ad_hoc_job("file", "other"), full.ad_hoc_job("file", "other")
    assert _plain(ad_hoc) == _plain(expected) and ad_hoc.model_fields_set == expected.model_fields_set
    assert cached._full is None
    with pytest.raises(Exception) as unknown:
        cached.destination("locl")
    with pytest.raises(Exception) as expected:
        full.destination("locl")
    assert unknown.value.message == expected.value.message and "did you mean local?" in unknown.value.message


@pytest.mark.parametrize("change", ["content", "content_same_size_and_mtime", "renamed_over"])
def test_any_change_to_the_file_is_a_miss(tmp_path, write_config, cache_dir, change):
    path = plain_config(tmp_path, write_config)
    remembered(path, cache_dir)
    text = path.read_text()
    stat = path.stat()
    if change == "content":
        path.write_text(text.replace("attempts: 5", "attempts: 6"))
    elif change == "content_same_size_and_mtime":
        path.write_text(text.replace("attempts: 5", "attempts: 6"))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    else:
        (tmp_path / "new.yaml").write_text(text.replace("attempts: 5", "attempts: 6"))
        (tmp_path / "new.yaml").replace(path)
    config = quick(path, cache_dir)
    assert not isinstance(config, CachedConfig) and config.destination("local").retry.attempts == 6
    assert quick(path, cache_dir).destination("local").retry.attempts == 6  # and remembered as such


def test_a_change_of_a_variable_the_file_names_is_a_miss_set_or_not(tmp_path, write_config, cache_dir):
    path = write_config("""
        destinations:
          local: {kind: local, path: "${BACKUP_DIR:-backups}"}
    """)
    assert remembered(path, cache_dir).destination("local").path == tmp_path / "backups"
    assert isinstance(quick(path, cache_dir), CachedConfig)
    moved = quick(path, cache_dir, {"BACKUP_DIR": str(tmp_path / "elsewhere")})
    assert not isinstance(moved, CachedConfig) and moved.destination("local").path == tmp_path / "elsewhere"
    # a value from the environment is never written: that section is validated again each time
    again = quick(path, cache_dir, {"BACKUP_DIR": str(tmp_path / "elsewhere")})
    assert isinstance(again, CachedConfig) and again.destination("local").path == tmp_path / "elsewhere"
    assert again._full is not None


def test_a_changed_or_removed_password_file_is_a_miss_with_the_same_error(tmp_path, write_config, cache_dir):
    (tmp_path / "pw").write_text("first\n")
    path = write_config("""
        backends:
          app: {kind: postgres, password_file: pw}
        destinations:
          local: {kind: local, path: backups}
    """)
    remembered(path, cache_dir)
    assert isinstance(quick(path, cache_dir), CachedConfig)
    (tmp_path / "pw").write_text("second\n")
    changed = quick(path, cache_dir)
    assert not isinstance(changed, CachedConfig)
    assert changed.backend("app").password.get_secret_value() == "second"
    (tmp_path / "pw").unlink()
    with pytest.raises(ConfigError) as cached_error:
        quick(path, cache_dir)
    with pytest.raises(ConfigError) as full_error:
        load_config(path, {})
    assert cached_error.value.problems == full_error.value.problems
    assert f"{path}:2 backends.app.password_file: cannot read" in cached_error.value.problems[0]


def test_an_invalid_file_is_never_cached_and_reports_as_validation_does(tmp_path, write_config, cache_dir):
    path = plain_config(tmp_path, write_config)
    remembered(path, cache_dir)
    assert isinstance(quick(path, cache_dir), CachedConfig)
    path.write_text(path.read_text().replace("attempts: 5", "attempts: many"))
    for _ in range(2):
        with pytest.raises(ConfigError) as cached_error:
            quick(path, cache_dir)
        with pytest.raises(ConfigError) as full_error:
            load_config(path, {})
        assert cached_error.value.problems == full_error.value.problems
        assert cached_error.value.problems[0].startswith(f"{path}:3 destinations.local.retry.attempts:")


def test_no_secret_is_ever_written(tmp_path, write_config, cache_dir):
    (tmp_path / "pw").write_text(SECRET + "-file\n")
    path = write_config(f"""
        backends:
          inline: {{kind: postgres, password: "{SECRET}-inline"}}
          from_env: {{kind: postgres, password: "${{PW}}"}}
          from_file: {{kind: postgres, password_file: pw}}
          url: {{kind: redis, url: "redis://user:{SECRET}-url@cache.example:6379/0"}}
        destinations:
          local: {{kind: local, path: backups}}
          s3: {{kind: s3, bucket: b, access_key_id: AKIA{SECRET}, secret_access_key: "{SECRET}-s3"}}
        jobs:
          nightly:
            backends: [inline]
            destination: local
            on_success: "https://hooks.example/{SECRET}-hook"
    """)
    config = remembered(path, cache_dir, {"PW": SECRET + "-env"})
    written = b"".join(entry.read_bytes() for entry in cache_dir.iterdir())
    assert SECRET.encode() not in written and b"hooks.example" not in written
    assert oct(next(cache_dir.iterdir()).stat().st_mode & 0o777) == "0o600"
    cached = quick(path, cache_dir, {"PW": SECRET + "-env"})
    assert isinstance(cached, CachedConfig) and cached.tools.pg_bin_dir is None
    assert cached._full is None  # a section without secrets came from the cache ...
    # ... the sections holding secrets from the file validated again, exactly as validation gave them
    assert cached.backend("from_env").password.get_secret_value() == SECRET + "-env"
    assert cached.destination("local").path == config.destination("local").path
    assert cached.job("nightly").on_success == config.job("nightly").on_success


def test_an_unwritable_cache_dir_only_means_validating_each_time(tmp_path, write_config):
    path = plain_config(tmp_path, write_config)
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    assert remembered(path, blocked / "cache").destination("local").retry.attempts == 5
    assert quick(path, blocked / "cache").destination("local").retry.attempts == 5


def test_a_damaged_entry_is_a_miss(tmp_path, write_config, cache_dir):
    path = plain_config(tmp_path, write_config)
    remembered(path, cache_dir)
    for entry in cache_dir.iterdir():
        entry.write_text('{"format": 1, "salt": "zz"')
    assert quick(path, cache_dir).destination("local").retry.attempts == 5


def test_a_hit_of_a_file_cached_whole_is_the_validated_config_without_validating(tmp_path, write_config, cache_dir,
                                                                                 monkeypatch):
    import storagectl.config.cache as cache

    path = plain_config(tmp_path, write_config)
    full = remembered(path, cache_dir)
    monkeypatch.setattr(cache, "_validate", lambda *args: pytest.fail("validated again"))
    again = remembered(path, cache_dir)
    assert again == full and type(again) is type(full)
    for section in ("backends", "destinations", "jobs", "data_migrations"):
        for name, model in getattr(full, section).items():
            built = getattr(again, section)[name]
            assert type(built) is type(model) and built.model_fields_set == model.model_fields_set
    assert again.job("nightly").selection() == full.job("nightly").selection()  # methods: the models' own


def test_a_url_naming_only_a_user_is_cached_one_with_a_password_is_not(tmp_path, write_config, cache_dir):
    path = write_config("""
        backends:
          app: {kind: postgres, url: "postgresql://app@db.example:5432/shop"}
        destinations:
          local: {kind: local, path: backups}
    """)
    full = remembered(path, cache_dir)
    cached = quick(path, cache_dir)
    assert cached.backend("app").url == "postgresql://app@db.example:5432/shop" and cached._full is None
    assert cached.backend("app").conninfo_params() == full.backend("app").conninfo_params()
    assert cached._full is None
    assert cached.full() == full and cached._full is not None
    path.write_text(path.read_text().replace("app@", f"app:{SECRET}@"))
    remembered(path, cache_dir)
    assert SECRET.encode() not in b"".join(entry.read_bytes() for entry in cache_dir.iterdir())
    again = quick(path, cache_dir)
    assert again.backend("app").url.startswith("postgresql://app:") and again._full is not None  # validated


def test_a_url_holding_a_password_in_its_query_is_never_cached(tmp_path, write_config, cache_dir):
    """libpq's ``sslpassword=`` (the client key's password) is a secret too, though not ``password=``."""
    path = write_config(f"""
        backends:
          app: {{kind: postgres, url: "postgresql://app@db.example/shop?sslpassword={SECRET}-ssl&sslmode=require"}}
        destinations:
          local: {{kind: local, path: backups}}
    """)
    remembered(path, cache_dir)
    assert SECRET.encode() not in b"".join(entry.read_bytes() for entry in cache_dir.iterdir())
    assert quick(path, cache_dir).backend("app").url.endswith("sslmode=require")  # validated, not cached
