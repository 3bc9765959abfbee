"""`storagectl bench`: one load generator for every backend kind.

- :mod:`engine` drives the clients (closed loop, or open loop on a schedule with latency from each
  request's intended start) on an injected clock and waiter;
- :mod:`recorder` turns completions into HDR histograms and a per-second series;
- :mod:`workloads` holds one module per backend kind (setup / clients / teardown in its namespace);
- :mod:`run` wires options -> workload -> engine -> :mod:`result`; :mod:`compare` judges two results.
"""

from storagectl.loadgen.compare import compare_results, parse_condition
from storagectl.loadgen.run import BenchOptions, run_bench

__all__ = ["BenchOptions", "compare_results", "parse_condition", "run_bench"]
