"""Run the benchmarks: `python -m bench.run [NAME ...] [--large]`.

Names: load_eval, solvers, extender, constraints, k8s_e2e and k8s_agreement (need k8s/e2e/build.sh), simulate,
and, only when named (they take long), optimizer (issue 15: exact solvers against greedy at scale and a year on one
node, about 15 minutes), actuation_day (a time-compressed day on the real-cluster tier, about 50 minutes) and kueue
(a day of jobs through Kueue and MultiKueue, the same tier, about 25 minutes). Without names, all the others run at
the default (CI-friendly) sizes; `--large` adds the largest instances.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys

BENCHES = {"load_eval": "bench.bench_load_eval", "solvers": "bench.bench_solvers", "extender": "bench.bench_extender",
           "k8s_e2e": "bench.bench_k8s_e2e", "simulate": "bench.bench_simulate", "k8s_agreement": "bench.bench_agreement",
           "constraints": "bench.bench_constraints", "optimizer": "bench.bench_optimizer",
           "actuation_day": "bench.bench_actuation_day", "kueue": "bench.bench_kueue"}
#: Benchmarks that run only when named (they take long).
ON_REQUEST = {"optimizer", "actuation_day", "kueue"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHES)} (default: all)")
    parser.add_argument("--large", action="store_true", help="include the largest instances")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    for name in args.names or [n for n in BENCHES if n not in ON_REQUEST]:
        try:
            module = importlib.import_module(BENCHES[name])
        except ModuleNotFoundError as exc:
            print(f"bench {name}: not available ({exc})", file=sys.stderr)
            continue
        entry = module.main_large if args.large and hasattr(module, "main_large") else module.main
        # Benchmarks with their own flags parse argv: give them none here (this command's flags are not theirs).
        entry(*([[]] if "argv" in inspect.signature(entry).parameters else []))
    return 0


if __name__ == "__main__":
    sys.exit(main())
