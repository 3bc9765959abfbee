"""A value from the environment or a password file is never echoed by a config error, whatever the
key is called and whichever validator wrote the message: plain, -v -v and --debug."""

from __future__ import annotations

import pytest

SECRET = "the-secret"
MODES = {"plain": [], "verbose": ["-v", "-v"], "debug": ["--debug"]}


def validate_in_every_mode(cli, path) -> dict[str, str]:
    """Everything each mode shows (--debug: the traceback, then the error lines)."""
    shown = {}
    for mode, flags in MODES.items():
        result = cli(*flags, "-c", path, "config", "validate")
        assert result.exit_code == 2, (mode, result.stdout, result.stderr)
        shown[mode] = result.stdout + result.stderr
    assert "Traceback" in shown["debug"]
    return shown


def assert_never_shown(shown: dict[str, str], *secrets: str) -> None:
    for mode, text in shown.items():
        assert "storagectl.yaml:" in text, (mode, text)
        for secret in secrets:
            assert secret not in text, (mode, text)


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv("SECRET_PW", SECRET)


def test_value_from_environment_not_echoed_whatever_the_key(cli, write_config, secret_env):
    path = write_config("""
        backends:
          app:
            kind: postgres
            password: ${SECRET_PW}
            port: ${SECRET_PW}
    """)
    shown = validate_in_every_mode(cli, path)
    assert_never_shown(shown, SECRET)
    assert "backends.app.port: Input should be a valid integer, unable to parse string as an integer " \
           "(value from $SECRET_PW not shown)" in shown["plain"]


@pytest.mark.parametrize(("text", "message"), [
    ("backends:\n  app: {kind: '${SECRET_PW}'}\n", "backends.app.kind: unknown backend kind '***'"),
    ("backends:\n  c: {kind: redis, url: 'redis://h/${SECRET_PW}'}\n", "backends.c.url: the db (the path) must be"),
    ("backends:\n  a: {kind: sqlite, path: a.db}\ndestinations:\n  d: {kind: local, path: b}\n"
     "jobs:\n  j:\n    backends: ['${SECRET_PW}']\n    destination: d\n    timezone: '${SECRET_PW}'\n"
     "    schedule: '${SECRET_PW}'\n    encryption: {recipients: ['age1${SECRET_PW}']}\n",
     "jobs.j.backends.0: unknown backend '***'"),
], ids=["kind", "redis-url", "job-references-and-custom-validators"])
def test_messages_that_quote_the_input_are_masked(cli, write_config, secret_env, text, message):
    shown = validate_in_every_mode(cli, write_config(text))
    assert_never_shown(shown, SECRET)
    assert message in shown["plain"]


def test_model_validator_quoting_a_value_from_the_environment(cli, write_config, monkeypatch):
    monkeypatch.setenv("IDLE", "777")
    path = write_config("backends:\n  a: {kind: redis, pool: {min_idle: '${IDLE}', max_size: 2}}\n")
    shown = validate_in_every_mode(cli, path)
    assert_never_shown(shown, "777")
    assert "backends.a.pool: min_idle (***) cannot exceed max_size (2)" in shown["plain"]


def test_value_with_quotes_and_backslashes_masked_in_its_repr_too(cli, write_config, monkeypatch):
    secret = "it's\\a\tsecret"
    monkeypatch.setenv("ODD", secret)
    shown = validate_in_every_mode(cli, write_config("backends:\n  app: {kind: '${ODD}'}\n"))
    assert_never_shown(shown, secret, repr(secret)[1:-1])
    assert 'backends.app.kind: unknown backend kind "***"' in shown["plain"]


@pytest.mark.parametrize("url", ["redis://:alphaomega@127.0.0.1:6379/13x", "redis://:alpha@omega@h/x",
                                 "redis://:alpha/omega@h:6379/0", "redis://:alpha#omega@h/0"])
def test_password_in_an_invalid_url_is_never_shown(cli, write_config, url):
    """Not even part of it when it is mis-encoded (an @, / or # the URL parser splits at)."""
    path = write_config(f"backends:\n  c: {{kind: redis, url: '{url}'}}\n")
    shown = validate_in_every_mode(cli, path)
    assert_never_shown(shown, "alpha", "omega")
    assert "backends.c.url: " in shown["plain"]


def test_password_file_contents_never_shown(cli, write_config, tmp_path):
    (tmp_path / "pw").write_text("file-secret\n")
    path = write_config("""
        backends:
          app: {kind: postgres, password_file: pw, port: abc}
          other: {kind: redis, password_file: pw, url: 'redis://:file-secret@h/0'}
    """)
    shown = validate_in_every_mode(cli, path)
    assert_never_shown(shown, "file-secret")
    assert "backends.other: url has a password and password/password_file gives another" in shown["plain"]


def test_empty_value_from_the_environment_masks_nothing(cli, write_config, monkeypatch):
    monkeypatch.setenv("EMPTY", "")
    path = write_config("backends:\n  a: {kind: redis, description: '${EMPTY}', port: abc}\n")
    first = cli("-c", path, "config", "validate").stderr.splitlines()[0]
    assert first.endswith("backends.a.port: Input should be a valid integer, unable to parse string as an integer "
                          "(got 'abc')")
