"""Configuration: one YAML file, parsed once into typed objects."""

from storagectl.config.loader import find_config_path, load_config, parse_config
from storagectl.config.models import (
    BackendSettings,
    Config,
    DestinationSettings,
    JobSettings,
    PasswordMixin,
    RetentionPolicy,
    RetrySettings,
)

__all__ = [
    "BackendSettings",
    "Config",
    "DestinationSettings",
    "JobSettings",
    "PasswordMixin",
    "RetentionPolicy",
    "RetrySettings",
    "find_config_path",
    "load_config",
    "parse_config",
]
