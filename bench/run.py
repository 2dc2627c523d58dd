"""Run the benchmarks: `python -m bench.run [NAME ...] [--large]`.

Names: load_eval, solvers, extender, k8s_e2e and kueue (need k8s/e2e/build.sh), simulate. Without names, all that exist run at the
default (CI-friendly) sizes; `--large` adds the largest instances.
"""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHES = {"load_eval": "bench.bench_load_eval", "solvers": "bench.bench_solvers", "extender": "bench.bench_extender",
           "k8s_e2e": "bench.bench_k8s_e2e", "simulate": "bench.bench_simulate", "kueue": "bench.bench_kueue"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHES)} (default: all)")
    parser.add_argument("--large", action="store_true", help="include the largest instances")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    for name in args.names or list(BENCHES):
        try:
            module = importlib.import_module(BENCHES[name])
        except ModuleNotFoundError as exc:
            print(f"bench {name}: not available ({exc})", file=sys.stderr)
            continue
        if args.large and hasattr(module, "main_large"):
            module.main_large()
        else:
            module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
