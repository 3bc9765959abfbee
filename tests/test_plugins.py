"""Third-party backend kinds register through the `storagectl.backends` entry-point group."""

from __future__ import annotations

import textwrap

PLUGIN = '''
from typing import ClassVar, Literal

from storagectl.backends.base import Backend
from storagectl.config.models import BackendSettings
from storagectl.health import CheckSpec


class EchoSettings(BackendSettings):
    kind: Literal["echo"] = "echo"
    greeting: str = "hello"
    check_names: ClassVar[tuple[str, ...]] = ("greeting_length",)


class EchoBackend(Backend):
    kind = "echo"
    Settings = EchoSettings
    CHECKS = {"greeting_length": CheckSpec("greeting_length", "length of the greeting", 10, 20)}

    def endpoint(self):
        return "echo://" + self.settings.greeting

    def _open(self):
        return self.settings.greeting

    def _close(self, connection):
        pass

    def ping(self, connection):
        pass

    def server_version(self, connection):
        return "echo 1.0"

    def diagnose(self, connection):
        return [self.graded("greeting_length", len(connection), str(len(connection)))]
'''


def install_plugin(root) -> None:
    (root / "stctl_echo_plugin.py").write_text(PLUGIN)
    dist = root / "stctl_echo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: stctl-echo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[storagectl.backends]\necho = stctl_echo_plugin:EchoBackend\n")


def test_plugin_kind_is_validated_listed_and_diagnosed(cli, write_config, tmp_path, monkeypatch):
    plugins = tmp_path / "site"
    plugins.mkdir()
    install_plugin(plugins)
    monkeypatch.syspath_prepend(str(plugins))
    path = write_config(textwrap.dedent("""\
        backends:
          hi: {kind: echo, greeting: "hello there, long greeting"}
        """))
    from storagectl.backends import available_kinds

    assert "echo" in available_kinds()
    result = cli("-c", path, "-o", "json", "diag")
    (report,) = result.json()["backends"]
    assert report["server_version"] == "echo 1.0" and report["checks"][0]["status"] == "critical"
    assert result.exit_code == 2
    typo = write_config("backends:\n  hi: {kind: echo, greting: x}\n", name="typo.yaml")
    bad = cli("-c", typo, "config", "validate")
    assert bad.exit_code == 2 and "backends.hi.greting: unknown key (did you mean greeting?)" in bad.stderr


def test_unknown_kind_without_the_plugin(cli, write_config):
    path = write_config("backends:\n  hi: {kind: echo}\n")
    result = cli("-c", path, "config", "validate")
    assert result.exit_code == 2 and "unknown backend kind 'echo'" in result.stderr
