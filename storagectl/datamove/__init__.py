"""Data migration between backends (`storagectl migrate data`): plan, run (resumable), verify.

One :class:`~storagectl.datamove.model.DataPath` per (source kind, target kind) pair, looked up in
:mod:`storagectl.datamove.registry`. The core never imports typer or rich.
"""
