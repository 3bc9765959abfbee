"""`storagectl backup ...` and `storagectl restore` end to end: exit codes and stderr for bad input."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from pyrage import x25519

from tests.conftest import free_port


def make_database(path: Path, rows: int = 2000, blob: int = 16) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, data BLOB)")
        db.executemany("INSERT INTO items (name, data) VALUES (?, ?)",
                       [(f"item {i}", os.urandom(blob)) for i in range(rows)])


def rows(path: Path) -> list:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT * FROM items ORDER BY id").fetchall()


@pytest.fixture
def env(tmp_path, write_config):
    identity = x25519.Identity.generate()
    key_file = tmp_path / "backup.key"
    key_file.write_text(f"# created: test\n{identity}\n")
    source = tmp_path / "app.db"
    make_database(source)
    config = write_config(f"""
        version: 1
        backends:
          app: {{kind: sqlite, path: {source}}}
          copy: {{kind: sqlite, path: {tmp_path / "copy.db"}, create_if_missing: true}}
        destinations:
          local: {{kind: local, path: {tmp_path / "backups"}}}
        jobs:
          nightly: {{backends: [app], destination: local}}
          sealed:
            backends: [app]
            destination: local
            encryption: {{recipients: ["{identity.to_public()}"], identity_file: {key_file}}}
    """)
    return {"config": config, "source": source, "copy": tmp_path / "copy.db", "backups": tmp_path / "backups",
            "tmp": tmp_path}


def backup(cli, env, *args: str) -> dict:
    result = cli("-c", env["config"], "-o", "json", "backup", "run", *args)
    assert result.exit_code == 0, result.stderr
    [info] = result.json()  # always a list, also for one backend
    return info


def stored_object(env, info: dict) -> Path:
    return next(Path(info["location"]).glob("00001-*"))


def test_run_list_show_verify_restore_delete(cli, env):
    info = backup(cli, env, "--job", "nightly")
    assert {"id", "backend", "destination", "size", "duration"} <= info.keys()
    c = ("-c", env["config"])
    listed = cli(*c, "-o", "json", "backup", "list", "--job", "nightly").json()
    assert [b["id"] for b in listed] == [info["id"]]
    shown = cli(*c, "-o", "json", "backup", "show", info["id"]).json()
    assert shown["objects"][0]["counts"] == {"rows": 2000, "tables": 1} and len(shown["objects"][0]["sha256"]) == 64
    assert cli(*c, "backup", "verify", info["id"]).exit_code == 0
    restored = cli(*c, "restore", info["id"], "--to", "copy", "--validate")
    assert restored.exit_code == 0, restored.stderr
    assert "items" in restored.stdout and "OK" in restored.stdout
    assert rows(env["copy"]) == rows(env["source"])
    refused = cli(*c, "backup", "delete", info["id"])
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert cli(*c, "backup", "delete", info["id"], "--yes").exit_code == 0
    assert cli(*c, "-o", "json", "backup", "list").json() == []


def test_restore_into_non_empty_target_needs_yes_and_dry_run_changes_nothing(cli, env):
    info = backup(cli, env, "--job", "nightly")
    c = ("-c", env["config"])
    refused = cli(*c, "restore", info["id"])
    assert refused.exit_code == 2 and "not empty" in refused.stderr and "--yes" in refused.stderr
    dry = cli(*c, "restore", info["id"], "--dry-run")
    assert dry.exit_code == 0 and "would replace" in dry.stderr and "needs --yes" in dry.stderr
    with sqlite3.connect(env["source"]) as db:
        db.execute("DELETE FROM items WHERE id > 10")
    assert cli(*c, "restore", info["id"], "--yes", "--validate").exit_code == 0
    assert len(rows(env["source"])) == 2000


def test_unknown_id_exits_5(cli, env):
    result = cli("-c", env["config"], "restore", "20200101T000000Z-000000", "--to", "copy")
    assert result.exit_code == 5 and "backup 20200101T000000Z-000000 not found" in result.stderr
    assert cli("-c", env["config"], "backup", "show", "nope").exit_code == 5


@pytest.mark.parametrize("damage", ["bit-flip", "truncate"])
def test_damaged_object_fails_verify_and_validated_restore_writes_nothing(cli, env, damage):
    info = backup(cli, env, "--job", "nightly")
    path = stored_object(env, info)
    data = bytearray(path.read_bytes())
    if damage == "bit-flip":
        data[len(data) // 3] ^= 0x08
    else:
        del data[len(data) // 2:]
    path.write_bytes(bytes(data))
    verify = cli("-c", env["config"], "backup", "verify", info["id"])
    assert verify.exit_code == 6 and "database.sqlite" in verify.stderr and "failed verification" in verify.stderr
    restored = cli("-c", env["config"], "restore", info["id"], "--to", "copy", "--validate")
    assert restored.exit_code == 6 and "nothing was restored" in restored.stderr
    assert not env["copy"].exists()


def test_missing_manifest_is_not_a_backup(cli, env):
    info = backup(cli, env, "--job", "nightly")
    (Path(info["location"]) / "manifest.json").unlink()
    assert cli("-c", env["config"], "-o", "json", "backup", "list").json() == []
    result = cli("-c", env["config"], "restore", info["id"], "--to", "copy")
    assert result.exit_code == 5 and "no manifest.json" in result.stderr and "incomplete" in result.stderr


def test_encrypted_backup_round_trip_and_wrong_identity(cli, env):
    info = backup(cli, env, "--job", "sealed")
    assert info["encrypted"] and stored_object(env, info).read_bytes().startswith(b"age-encryption.org/v1")
    c = ("-c", env["config"])
    assert cli(*c, "restore", info["id"], "--to", "copy", "--validate").exit_code == 0
    assert rows(env["copy"]) == rows(env["source"])
    wrong = env["tmp"] / "wrong.key"
    wrong.write_text(f"{x25519.Identity.generate()}\n")
    result = cli(*c, "backup", "verify", info["id"], "--identity", wrong)
    assert result.exit_code == 4 and "identity does not match" in result.stderr


def s3_config(write_config, env, endpoint: str, bucket: str = "backups") -> Path:
    text = env["config"].read_text().replace("destinations:\n", f"""destinations:
  offsite:
    kind: s3
    bucket: {bucket}
    endpoint_url: {endpoint}
    region: us-east-1
    addressing_style: path
    access_key_id: testing
    secret_access_key: testing
    part_size: 5MiB
    retry: {{attempts: 1}}
    timeouts: {{connect: 1s}}
""")
    return write_config(text, name="s3.yaml")


def test_s3_round_trip(cli, env, write_config, s3_bucket):
    config = s3_config(write_config, env, s3_bucket.endpoint, s3_bucket.name)
    run = cli("-c", config, "-o", "json", "backup", "run", "--backend", "app", "--to", "offsite")
    assert run.exit_code == 0, run.stderr
    backup_id = run.json()[0]["id"]
    restored = cli("-c", config, "restore", backup_id, "--from", "offsite", "--to", "copy", "--validate")
    assert restored.exit_code == 0, restored.stderr
    assert rows(env["copy"]) == rows(env["source"])


def test_unreachable_s3_exits_3_and_leaves_nothing(cli, env, write_config):
    config = s3_config(write_config, env, f"http://127.0.0.1:{free_port()}")
    result = cli("-c", config, "backup", "run", "--backend", "app", "--to", "offsite")
    assert result.exit_code == 3 and "unreachable" in result.stderr
    assert "secret" not in result.stderr.lower()


def test_disk_full_at_local_destination(cli, env, write_config):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = env["tmp"] / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        make_database(env["tmp"] / "big.db", rows=3000, blob=1000)  # ~3 MiB of incompressible data
        config = write_config(f"""
            version: 1
            backends:
              big: {{kind: sqlite, path: {env["tmp"] / "big.db"}}}
            destinations:
              tiny: {{kind: local, path: {mount}}}
        """, name="tiny.yaml")
        result = cli("-c", config, "backup", "run", "--backend", "big", "--to", "tiny")
        assert result.exit_code == 1 and "no space left on device" in result.stderr
        assert [p for p in mount.rglob("*") if p.is_file()] == []
        assert cli("-c", config, "-o", "json", "backup", "list").json() == []
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_backup_and_restore_commands_have_help(cli):
    for args in (["backup", "run"], ["backup", "list"], ["backup", "verify"], ["restore"]):
        result = cli(*args, "--help")
        assert result.exit_code == 0 and "Usage" in result.stdout


def test_restore_latest_picks_the_newest_backup_of_the_target(cli, env):
    backup(cli, env, "--job", "nightly")
    with sqlite3.connect(env["source"]) as db:
        db.execute("INSERT INTO items (name, data) VALUES ('newest', x'00')")
    newest = backup(cli, env, "--job", "nightly")
    c = ("-c", env["config"])
    needs_to = cli(*c, "restore", "latest")
    assert needs_to.exit_code == 2 and "`latest` needs --backend NAME or --job NAME" in needs_to.stderr
    none_yet = cli(*c, "restore", "latest", "--to", "copy")
    assert none_yet.exit_code == 5 and "no complete backup of backend 'copy'" in none_yet.stderr
    result = cli(*c, "-o", "json", "restore", "latest", "--to", "app", "--validate", "--yes")
    assert result.exit_code == 0, result.stderr
    assert result.json()["id"] == newest["id"]
    assert rows(env["source"])[-1][1] == "newest"


def test_restore_latest_of_one_backend_into_another(cli, env):
    """`restore latest --backend app --to copy`: app's newest backup into copy (not copy's own)."""
    backup(cli, env, "--job", "nightly")
    with sqlite3.connect(env["source"]) as db:
        db.execute("INSERT INTO items (name, data) VALUES ('newest', x'00')")
    newest = backup(cli, env, "--backend", "app", "--to", "local")
    c = ("-c", env["config"])
    result = cli(*c, "-o", "json", "restore", "latest", "--backend", "app", "--to", "copy", "--validate")
    assert result.exit_code == 0, result.stderr
    assert result.json()["id"] == newest["id"] and result.json()["target"] == "copy"
    assert f"latest: backup {newest['id']} of backend app" in result.stderr
    assert rows(env["copy"]) == rows(env["source"])
    by_job = cli(*c, "-o", "json", "restore", "latest", "--job", "nightly", "--backend", "app", "--to", "copy",
                 "--yes")
    assert by_job.exit_code == 0 and by_job.json()["id"] != newest["id"]  # the newest of job nightly
    # --job alone: the job's only backend (app), not the --to backend, which the job does not back up
    job_only = cli(*c, "-o", "json", "restore", "latest", "--job", "nightly", "--to", "copy", "--yes")
    assert job_only.exit_code == 0, job_only.stderr
    assert job_only.json()["id"] == by_job.json()["id"] and job_only.json()["target"] == "copy"
    with_id = cli(*c, "restore", newest["id"], "--backend", "app", "--to", "copy", "--yes")
    assert with_id.exit_code == 2 and "is already an id" in with_id.stderr


def test_show_and_verify_latest(cli, env):
    first = backup(cli, env, "--job", "nightly")
    newest = backup(cli, env, "--job", "nightly")
    c = ("-c", env["config"])
    shown = cli(*c, "-o", "json", "backup", "show", "latest", "--job", "nightly")
    assert shown.exit_code == 0, shown.stderr
    assert shown.json()["id"] == newest["id"] != first["id"]
    verified = cli(*c, "-o", "json", "backup", "verify", "latest", "--backend", "app")
    assert verified.exit_code == 0 and verified.json()["id"] == newest["id"]
    bare = cli(*c, "backup", "verify", "latest")
    assert bare.exit_code == 2 and "--backend NAME or --job NAME" in bare.stderr
    unknown = cli(*c, "backup", "show", "latest", "--job", "nope")
    assert unknown.exit_code == 2 and "nope" in unknown.stderr
    none = cli(*c, "backup", "show", "latest", "--job", "sealed")
    assert none.exit_code == 5 and "no complete backup of job 'sealed'" in none.stderr


def test_latest_of_a_job_with_several_backends_needs_the_backend(cli, env, write_config):
    config = write_config(f"""
        version: 1
        backends:
          app: {{kind: sqlite, path: {env["source"]}}}
          copy: {{kind: sqlite, path: {env["copy"]}, create_if_missing: true}}
        destinations:
          local: {{kind: local, path: {env["backups"]}}}
        jobs:
          both: {{backends: [app, copy], destination: local}}
    """, name="both.yaml")
    made = cli("-c", config, "-o", "json", "backup", "run", "--job", "both")
    assert made.exit_code == 0 and [b["backend"] for b in made.json()] == ["app", "copy"]
    ambiguous = cli("-c", config, "backup", "verify", "latest", "--job", "both")
    assert ambiguous.exit_code == 2 and "is ambiguous: it backs up app, copy" in ambiguous.stderr
    assert "Try: --job both --backend app" in ambiguous.stderr
    chosen = cli("-c", config, "-o", "json", "backup", "verify", "latest", "--job", "both", "--backend", "copy")
    assert chosen.exit_code == 0 and chosen.json()["id"] == made.json()[1]["id"]
    # restore: --to names one of the job's backends, so it is the source; another target stays ambiguous
    into_itself = cli("-c", config, "restore", "latest", "--job", "both", "--to", "copy", "--dry-run")
    assert into_itself.exit_code == 0 and made.json()[1]["id"] in into_itself.stderr, into_itself.stderr


def test_unreachable_destination_does_not_block_the_reachable_one(cli, env, write_config, tmp_path):
    config = write_config(f"""
        version: 1
        backends:
          app: {{kind: sqlite, path: {env["source"]}}}
          copy: {{kind: sqlite, path: {env["copy"]}, create_if_missing: true}}
        destinations:
          local: {{kind: local, path: {env["backups"]}}}
          offsite:
            kind: s3
            bucket: b
            endpoint_url: http://127.0.0.1:{free_port()}
            access_key_id: testing
            secret_access_key: testing
            retry: {{attempts: 1}}
            timeouts: {{connect: 1s, statement: 2s}}
    """, name="two-destinations.yaml")
    made = cli("-c", config, "-o", "json", "backup", "run", "--backend", "app", "--to", "local")
    assert made.exit_code == 0, made.stderr
    backup_id = made.json()[0]["id"]
    listed = cli("-c", config, "-o", "json", "backup", "list")
    assert listed.exit_code == 0 and [b["id"] for b in listed.json()] == [backup_id]
    assert "skipping unreachable destination 'offsite'" in listed.stderr
    restored = cli("-c", config, "restore", backup_id, "--to", "copy", "--validate")
    assert restored.exit_code == 0, restored.stderr
    assert rows(env["copy"]) == rows(env["source"])
    missing = cli("-c", config, "restore", "20200101T000000Z-000000", "--to", "copy")
    assert missing.exit_code == 3 and "unreachable: offsite" in missing.stderr
    explicit = cli("-c", config, "backup", "list", "--from", "offsite")
    assert explicit.exit_code == 3


def test_notes_to_a_pipe_are_never_wrapped(cli, env):
    info = backup(cli, env, "--job", "nightly")
    result = cli("-c", env["config"], "restore", info["id"], "--dry-run")
    assert result.exit_code == 0
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("dry run:")]
    assert len(line) > 100 and line.endswith("needs --yes")


def test_validate_of_a_backup_without_a_content_summary_fails_and_restores_nothing(cli, env):
    """Nothing to compare with proves nothing: --validate must not report success."""
    import json

    info = backup(cli, env, "--job", "nightly")
    manifest_path = Path(info["location"]) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["backend"]["metadata"]["content_summary"]
    manifest_path.write_text(json.dumps(manifest))
    result = cli("-c", env["config"], "restore", info["id"], "--to", "copy", "--validate")
    assert result.exit_code == 6, result.stderr
    assert "recorded no content summary, so --validate cannot prove the restore" in result.stderr
    assert not env["copy"].exists()
    assert cli("-c", env["config"], "restore", info["id"], "--to", "copy").exit_code == 0  # without --validate
    assert rows(env["copy"]) == rows(env["source"])


def test_backup_run_of_a_job_writes_its_metrics_and_runs_its_hooks(cli, env, write_config):
    """Runbooks and cron call `backup run --job`: monitoring must see those runs as well."""
    tmp = env["tmp"]
    metrics, marker = tmp / "metrics.prom", tmp / "hook.log"
    hook = f'echo "$STORAGECTL_JOB $STORAGECTL_STATUS $STORAGECTL_BACKUP_IDS" >> {marker}'
    config = write_config(f"""
        version: 1
        backends:
          app: {{kind: sqlite, path: {env["source"]}}}
          gone: {{kind: sqlite, path: {tmp / "no-such-dir" / "gone.db"}}}
        destinations:
          local: {{kind: local, path: {env["backups"]}}}
        jobs:
          nightly: {{backends: [app], destination: local, metrics_file: {metrics}, on_success: '{hook}'}}
          broken: {{backends: [gone], destination: local, metrics_file: {metrics}, on_failure: '{hook}'}}
    """, name="monitored.yaml")
    made = cli("-c", config, "-o", "json", "backup", "run", "--job", "nightly")
    assert made.exit_code == 0, made.stderr
    [info] = made.json()
    assert marker.read_text() == f"nightly success {info['id']}\n"
    assert 'storagectl_backup_last_status{job="nightly"} 1' in metrics.read_text()
    assert f'storagectl_backup_last_size_bytes{{job="nightly"}} {info["size"]}' in metrics.read_text()

    quiet = cli("-c", config, "backup", "run", "--job", "nightly", "--no-hooks")
    assert quiet.exit_code == 0 and marker.read_text().count("\n") == 1  # no hook, but metrics written
    failed = cli("-c", config, "backup", "run", "--job", "broken")
    assert failed.exit_code != 0
    assert marker.read_text().splitlines()[-1].strip() == "broken failure"
    assert 'storagectl_backup_last_status{job="broken"} 0' in metrics.read_text()
    adhoc = cli("-c", config, "backup", "run", "--backend", "app", "--to", "local")
    assert adhoc.exit_code == 0 and marker.read_text().count("\n") == 2  # not a job's run: no hook


# -- asking before destructive changes ------------------------------------------------------------
def test_confirm_asks_on_a_terminal_and_refuses_elsewhere():
    import io

    from storagectl.cli.output import confirm
    from storagectl.cli.state import AppState
    from storagectl.errors import OperationFailed, UsageError

    state = AppState(color=False)
    ask = {"refusal": "refusing to do it without --yes", "hint": "Try: it --yes"}
    with pytest.raises(UsageError, match="refusing to do it without --yes"):
        confirm(state, "Do it?", interactive=False, **ask)
    confirm(state, "Do it?", interactive=True, answers=io.StringIO("y\n"), **ask)
    confirm(state, "Do it?", interactive=True, answers=io.StringIO("YES\n"), **ask)
    for reply in ("n\n", "\n", ""):  # no, Enter (the default is no), end of input
        with pytest.raises(OperationFailed, match="not confirmed; nothing was changed"):
            confirm(state, "Do it?", interactive=True, answers=io.StringIO(reply), **ask)


@pytest.fixture
def terminal(monkeypatch):
    """The CLI believes it runs on a terminal whose user types ``answer``."""
    import io

    from storagectl.cli.state import AppState

    def answer(text: str) -> None:
        monkeypatch.setattr(AppState, "interactive", property(lambda self: True))
        monkeypatch.setattr("sys.stdin", io.StringIO(text))

    return answer


def test_delete_and_restore_ask_on_a_terminal(cli, env, terminal):
    info = backup(cli, env, "--job", "nightly")
    c = ("-c", env["config"])
    assert cli(*c, "restore", info["id"], "--to", "copy").exit_code == 0  # empty target: nothing to ask
    terminal("n\n")
    declined = cli(*c, "restore", info["id"], "--to", "copy")
    assert declined.exit_code == 1 and "[y/N]" in declined.stderr and "nothing was changed" in declined.stderr
    assert "this restore will replace the data of" in declined.stderr  # the plan, before the question
    terminal("y\n")
    accepted = cli(*c, "restore", info["id"], "--to", "copy")
    assert accepted.exit_code == 0, accepted.stderr
    assert f"restored backup {info['id']} into copy" in accepted.stderr
    terminal("n\n")
    kept = cli(*c, "backup", "delete", info["id"])
    assert kept.exit_code == 1 and "would remove backup" in kept.stderr
    assert len(cli(*c, "-o", "json", "backup", "list").json()) == 1
    terminal("y\n")
    assert cli(*c, "backup", "delete", info["id"]).exit_code == 0
    assert cli(*c, "-o", "json", "backup", "list").json() == []


def test_a_terminal_restore_into_an_empty_target_reads_no_preview(cli, env, terminal, monkeypatch):
    """Asking is planned cheaply: the dry-run preview (for PostgreSQL a read of the backup's schema)
    is built only when there is something to ask about (bench_progress: restore of 2,000 tables)."""
    from storagectl.backends.base import Backend

    info = backup(cli, env, "--job", "nightly")
    previews = []
    original = Backend.restore_preview

    def counted(self, archive, options):
        previews.append(self.name)
        return original(self, archive, options)

    monkeypatch.setattr(Backend, "restore_preview", counted)
    terminal("")
    assert cli("-c", env["config"], "restore", info["id"], "--to", "copy").exit_code == 0
    assert previews == []
    terminal("n\n")
    assert cli("-c", env["config"], "restore", info["id"], "--to", "copy").exit_code == 1
    assert previews == ["copy"]


def test_a_terminal_restore_plans_once(cli, env, terminal, monkeypatch):
    """The question and the restore share one plan: the backup's manifest is read and the target
    checked once, not once to decide whether to ask and again to restore (bench_progress: restore
    of 2,000 tables on a terminal vs piped)."""
    import importlib

    from storagectl.backup import catalog

    restore_module = importlib.import_module("storagectl.backup.restore")  # the package's `restore` is the function
    info = backup(cli, env, "--job", "nightly")
    calls: dict[str, int] = {"manifest": 0, "plan": 0}
    read_manifest, plan_restore = catalog.read_manifest, restore_module.plan_restore

    def counted(name, function):
        def call(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return call

    monkeypatch.setattr(catalog, "read_manifest", counted("manifest", read_manifest))
    monkeypatch.setattr(restore_module, "plan_restore", counted("plan", plan_restore))
    terminal("")
    assert cli("-c", env["config"], "restore", info["id"], "--to", "copy").exit_code == 0  # empty: not asked
    assert calls == {"manifest": 1, "plan": 1}
    terminal("y\n")
    asked = cli("-c", env["config"], "restore", info["id"], "--to", "copy")  # the target holds data now
    assert asked.exit_code == 0 and "[y/N]" in asked.stderr, asked.stderr
    assert calls == {"manifest": 2, "plan": 2}
    # the plan shown before the question is what this run will do, not a dry run's report
    assert "this restore will replace the data of backend copy" in asked.stderr
    assert "dry run" not in asked.stderr and "needs --yes" not in asked.stderr


def test_delete_asks_on_a_real_terminal(cli, env):
    """A pty: the question appears, "y" deletes; without a terminal the refusal stays."""
    import pty
    import sys

    info = backup(cli, env, "--job", "nightly")
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "storagectl", "-c", str(env["config"]), "backup", "delete", info["id"]]
    environment = {**os.environ, "PYTHONPATH": str(root), "NO_COLOR": "1"}
    refused = subprocess.run(command, env=environment, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert refused.returncode == 2 and "without --yes" in refused.stderr
    pid, fd = pty.fork()
    if pid == 0:  # child: stdin, stdout and stderr are the pty
        os.execvpe(command[0], command, environment)
    seen = b""
    while b"[y/N]" not in seen:
        chunk = os.read(fd, 1024)
        assert chunk, seen
        seen += chunk
    os.write(fd, b"y\n")
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # the child closed the pty
            break
        if not chunk:
            break
        seen += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert f"Delete backup {info['id']} at local?".encode() in seen
    assert cli("-c", env["config"], "-o", "json", "backup", "list").json() == []


def test_json_outputs_have_the_documented_shape(cli, env):
    """One backend or several, success or dry run: each command prints the shape the README gives."""
    from tests.test_cli import documented_json_shapes

    shapes = {"list": list, "object": dict}
    documented = documented_json_shapes()
    info = backup(cli, env, "--job", "nightly")
    runs = {
        "config validate": [], "config show": [], "backends": [], "diag": [], "backup list": [],
        "backup run": ["--backend", "app", "--to", "local"], "backup show": [info["id"]],
        "backup verify": ["latest", "--backend", "app"], "backup delete": [info["id"], "--dry-run"],
        "restore": [info["id"], "--to", "app", "--dry-run"], "backup schedule": ["--list"],
    }
    for command, args in runs.items():
        result = cli("-c", env["config"], "-o", "json", *command.split(), *args)
        assert result.exit_code == 0, (command, result.stderr)
        assert isinstance(result.json(), shapes[documented[command]]), command


def test_restore_db_is_refused_for_a_kind_without_dbs(cli, env):
    backup(cli, env, "--backend", "app", "--to", "local")
    result = cli("-c", env["config"], "restore", "latest", "--backend", "app", "--to", "copy", "--db", "1")
    assert result.exit_code == 2 and "--db selects one db of a Redis backup" in result.stderr
    assert not (env["tmp"] / "copy.db").exists()


# -- a job's backends: one failing never costs the others their backups ---------------------------
@pytest.fixture
def job_with_a_down_backend(env, write_config, monkeypatch):
    """Job `nightly`: the backends given (`down`: an unreachable PostgreSQL whose URL holds a password;
    `app`, `also`: good SQLite); job `several`: down, a SQLite file that is missing (exit 5), then app."""
    monkeypatch.setenv("XDG_STATE_HOME", str(env["tmp"] / "state"))  # the job lock of --prune
    tmp = env["tmp"]
    hook = f'echo "$STORAGECTL_STATUS $STORAGECTL_BACKUP_IDS|$STORAGECTL_ERROR" >> {tmp / "hook.log"}'

    def config(nightly_backends: str) -> Path:
        return write_config(f"""
            version: 1
            backends:
              down:
                kind: postgres
                url: postgresql://app:s3cret-pw@127.0.0.1:{free_port()}/app
                retry: {{attempts: 1}}
                timeouts: {{connect: 1s}}
              gone: {{kind: sqlite, path: {tmp / "no-such-dir" / "gone.db"}}}
              app: {{kind: sqlite, path: {env["source"]}}}
              also: {{kind: sqlite, path: {env["source"]}}}
            destinations:
              local: {{kind: local, path: {env["backups"]}}}
            jobs:
              nightly:
                backends: {nightly_backends}
                destination: local
                retention: {{keep_last: 1}}
                metrics_file: {tmp / "metrics.prom"}
                on_failure: '{hook}'
              several: {{backends: [down, gone, app], destination: local}}
        """, name=f"jobs-{len(nightly_backends)}.yaml")

    return config


def test_a_down_backend_does_not_stop_the_job_run(cli, env, job_with_a_down_backend):
    first = cli("-c", job_with_a_down_backend("[app]"), "-o", "json", "backup", "run", "--job", "nightly")
    [earlier] = first.json()
    config = job_with_a_down_backend("[down, app]")
    result = cli("-c", config, "-o", "json", "backup", "run", "--job", "nightly", "--prune")
    assert result.exit_code == 3, result.stderr  # the down backend's own code
    [taken] = result.json()  # the second backend was backed up, and a script still gets its id
    assert taken["backend"] == "app"
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "backend 'down'" in error and "***" in error
    assert "s3cret-pw" not in result.stderr and "Traceback" not in result.stderr
    assert (env["tmp"] / "hook.log").read_text().startswith(f"failure {taken['id']}|backend 'down'")
    assert 'storagectl_backup_last_status{job="nightly"} 0' in (env["tmp"] / "metrics.prom").read_text()
    listed = cli("-c", config, "-o", "json", "backup", "list", "--job", "nightly")
    assert [b["id"] for b in listed.json()] == [earlier["id"], taken["id"]]  # no retention after a failed run
    assert "retention of job nightly" not in result.stderr


def test_several_failing_backends_are_each_reported_and_the_highest_code_counts(cli, env, job_with_a_down_backend):
    config = job_with_a_down_backend("[app]")
    result = cli("-c", config, "backup", "run", "--job", "several")
    assert result.exit_code == 5, result.stderr  # the missing SQLite file (5) outranks the unreachable server (3)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "backend 'down'" in errors[0] and "backend 'gone'" in errors[1]
    [backup_id] = result.stdout.split()
    listed = cli("-c", config, "-o", "json", "backup", "list", "--backend", "app")
    assert [b["id"] for b in listed.json()] == [backup_id]
    debug = cli("-c", config, "--debug", "backup", "run", "--job", "several")
    assert debug.exit_code == 5
    before_down, before_gone, _ = debug.stderr.split("\nerror: ")
    assert "Traceback" in before_down and "Traceback" in before_gone  # each failure's, before its error


def test_an_interrupt_still_ends_the_job_run_at_once(env, job_with_a_down_backend):
    """Ctrl-C while `app` is backed up (after `down` failed): `also` is not backed up, the error
    says `down` failed before it, and nothing of the run is left as a backup."""
    from storagectl.backup import list_backups, run_backup
    from storagectl.config import load_config
    from storagectl.errors import ExitCode, Interrupted

    config = load_config(job_with_a_down_backend("[down, app, also]"))
    attempted: list[str] = []

    def interrupt(event) -> None:
        if event.stage == "start":  # inside the backup of an object
            attempted.append(event.object)
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as interrupted:
        run_backup(config, job="nightly", progress=interrupt)
    assert interrupted.value.exit_code == ExitCode.INTERRUPTED
    assert "no backup of backend 'app'" in interrupted.value.message
    [before] = interrupted.value.details
    assert before.startswith("failed before it: backend 'down'")
    assert len(attempted) == 1 and list_backups(config) == []  # `also` never started


def test_an_interrupted_job_run_still_reports_the_backups_it_finished(cli, env, job_with_a_down_backend,
                                                                       monkeypatch):
    """Ctrl-C during the second backend: the first backend's backup is complete and kept, so the JSON
    lists it and the hook gets its id (they said nothing: a script saw no backup taken)."""
    import json as json_module

    from storagectl.backup import list_backups
    from storagectl.backup import run as run_module
    from storagectl.config import load_config

    config = job_with_a_down_backend("[app, also]")
    real_run_plan, calls = run_module.run_plan, []

    def interrupted_second(*args, **kwargs):
        calls.append(args[1].backend)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run_plan(*args, **kwargs)

    monkeypatch.setattr(run_module, "run_plan", interrupted_second)
    result = cli("-c", config, "-o", "json", "backup", "run", "--job", "nightly")
    assert result.exit_code == 130 and calls == ["app", "also"], result.stderr
    [taken] = json_module.loads(result.stdout)
    assert taken["backend"] == "app" and taken["id"] in (env["tmp"] / "hook.log").read_text()
    assert [found.id for found in list_backups(load_config(config))] == [taken["id"]]
