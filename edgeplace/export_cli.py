"""`edgeplace export`: a plan written back in another tool's terms.

    edgeplace export imported.yaml --plan plan.json --edgesimpy dataset.json -o placed.json [--ids ids.json]

EdgeSimPy: the plan as {"service id": server id} (to `--ids`, else standard
output) and the dataset with that placement applied (to `-o`), ready for
EdgeSimPy's `Simulator.initialize`. The scenario must be the one imported
from that dataset (`edgeplace import --edgesimpy`); ids are matched by the
importer's mapping, re-derived from the dataset. docs/IMPORTERS.md has the
details.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable


def add_commands(sub) -> dict[str, Callable[[argparse.Namespace], int]]:
    p = sub.add_parser("export", help="write a plan back into another tool's format (EdgeSimPy)",
                       description="Write a plan in EdgeSimPy's ids and a dataset with the placement applied.")
    p.add_argument("scenario", help="the scenario imported from the dataset (edgeplace import --edgesimpy)")
    p.add_argument("--plan", required=True, metavar="FILE", help="plan or placement JSON (plan -o, evaluate --save)")
    p.add_argument("--edgesimpy", required=True, metavar="DATASET", help="the EdgeSimPy dataset the scenario came from")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="write the dataset with the placement applied")
    p.add_argument("--ids", metavar="FILE", help='write {"service id": server id} here (default: standard output)')
    return {"export": cmd_export}


def cmd_export(args: argparse.Namespace) -> int:
    from edgeplace.topology import load_scenario
    from edgeplace.topology.errors import InputError, Problem
    from edgeplace.topology.importers.edgesimpy import apply_placement, import_edgesimpy, placement_ids
    from edgeplace.topology.io import atomic_write_text
    from edgeplace.topology.load import read_document
    from edgeplace.topology.placement import Placement

    scenario = load_scenario(args.scenario)
    imported = import_edgesimpy(args.edgesimpy)
    unknown = [w for w in scenario.workload_ids if w not in imported.source_ids["workloads"]]
    if unknown:
        raise InputError(args.scenario, [Problem("workloads", f"{len(unknown)} workload(s) are not from {args.edgesimpy} "
                                                              f"(e.g. {', '.join(unknown[:3])}); export the scenario "
                                                              f"that `edgeplace import --edgesimpy` made from it")])
    placement = Placement.load(scenario, args.plan)
    ids = placement_ids(scenario, placement, imported.source_ids)
    placed = apply_placement(read_document(Path(args.edgesimpy), json_only=True), ids, source=args.edgesimpy)
    ids_text = json.dumps(ids, indent=1) + "\n"
    # Everything is computed and checked before the first file is written.
    atomic_write_text(Path(args.output), json.dumps(placed, indent=1) + "\n")
    if args.ids:
        atomic_write_text(Path(args.ids), ids_text)
        print(f"edgeplace: wrote {args.output} and {args.ids} ({len(ids)} services)", file=sys.stderr)
    else:
        sys.stdout.write(ids_text)
        print(f"edgeplace: wrote {args.output} ({len(ids)} services)", file=sys.stderr)
    return 0
