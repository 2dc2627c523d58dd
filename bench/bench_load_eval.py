"""Loading and evaluating at scale: 10,000 workloads on 1,000 nodes over 24 slots.

Target (issue 3): under 2 s each on a 2-core machine. The placement evaluated
is a random one (every replica on a random eligible node), so evaluation
sees realistic violations to report as well as clean cells.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from bench.common import peak_rss_mib, timer, write_section
from edgeplace.policies.evaluate import evaluate
from edgeplace.topology import load_scenario
from edgeplace.topology.generate import generate
from edgeplace.topology.placement import Placement


def run(sizes=((1_000, 100, 24), (10_000, 1_000, 24))) -> pd.DataFrame:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_workloads, n_nodes, n_slots in sizes:
            doc = generate(n_workloads=n_workloads, n_nodes=n_nodes, n_slots=n_slots, seed=1)
            json_path = Path(tmp) / "s.json"
            yaml_path = Path(tmp) / "s.yaml"
            json_path.write_text(json.dumps(doc))
            yaml_path.write_text(yaml.dump(doc, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper)))
            with timer() as t_json:
                scenario = load_scenario(json_path)
            with timer() as t_yaml:
                load_scenario(yaml_path)
            rng = np.random.default_rng(0)
            eligible = scenario.workload_node_eligible
            choice = np.array([rng.choice(np.flatnonzero(eligible[w])) for w in scenario.replica_workload])
            placement = Placement.from_replica_nodes(scenario, choice)
            evaluate(scenario, placement)  # warm-up: first-use caches
            with timer() as t_eval:
                result = evaluate(scenario, placement)
            rows.append({
                "workloads": n_workloads, "replicas": scenario.n_replicas, "nodes": n_nodes, "slots": n_slots,
                "load_json_s": t_json[0], "load_yaml_s": t_yaml[0], "evaluate_s": t_eval[0],
                "violations_found": len(result.violations), "peak_rss_mib": peak_rss_mib(),
                "target_s": 2.0,
            })
    return pd.DataFrame(rows)


def main() -> None:
    table = run()
    big = table.iloc[-1]
    verdict = "met" if big["load_json_s"] < 2 and big["evaluate_s"] < 2 else "MISSED"
    write_section("load_eval", "Loading and evaluation (issue 3)", table,
                  f"Target: load and evaluate 10,000 workloads x 1,000 nodes x 24 slots in under 2 s each: **{verdict}** "
                  f"(JSON load {big['load_json_s']:.2f} s, YAML load {big['load_yaml_s']:.2f} s, evaluate {big['evaluate_s']:.2f} s). "
                  "Loading includes full validation and building every array; evaluation includes every rule check.")


if __name__ == "__main__":
    main()
