"""The settings of a ``local`` destination, apart from storagectl.destinations.local so that
module loads without pydantic."""

from __future__ import annotations

from typing import Literal

from storagectl.config.models import DestinationSettings
from storagectl.config.types import ConfigPath


class LocalSettings(DestinationSettings):
    kind: Literal["local"] = "local"
    path: ConfigPath
