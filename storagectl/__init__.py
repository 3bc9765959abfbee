"""storagectl: storage administration for operations teams."""

__version__ = "0.1.0"
