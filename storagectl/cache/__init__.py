"""``storagectl cache``: Redis cache operations for incidents, on one server or every primary of a cluster.

Core only (no typer, no rich): each module returns data or streams of it and raises
:mod:`storagectl.errors`. Keys are bytes end to end (:mod:`storagectl.cache.keyfmt` says how they are
shown); every visit of a cluster's primaries goes through :mod:`storagectl.backends.redis_topology`.
"""
