"""A local (or mounted) directory as a backup destination."""

from __future__ import annotations

from typing import Literal

from storagectl.config.models import DestinationSettings
from storagectl.config.types import ConfigPath


class LocalSettings(DestinationSettings):
    kind: Literal["local"] = "local"
    path: ConfigPath


class LocalDestination:
    Settings = LocalSettings

    def __init__(self, name: str, settings: LocalSettings) -> None:
        self.name = name
        self.settings = settings
