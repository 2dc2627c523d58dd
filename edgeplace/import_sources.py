"""Import sources of `edgeplace import` that read other tools' files.

    edgeplace import --edgesimpy dataset.json -o scenario.yaml
    edgeplace import --topohub sndlib/germany50 [--servers-per-site 2] [--sla-ms 10] -o scenario.yaml
    edgeplace import --topology-file Abilene.graphml -o scenario.yaml

`add_import_arguments(parser)` adds the options to the `import` parser and
returns the mutually exclusive group of sources, so the caller can add its
own (`--from-cluster`) to the same group. `run_import(args)` returns the
validated scenario document and the importer's notes (defaults it filled,
data it dropped), or None when none of these sources was given. It raises
`topology.InputError` for bad input (unreadable file, unknown topology, a
document that does not validate). `write_scenario` writes the document as
YAML with the notes as a header comment (or as JSON), atomically.
docs/IMPORTERS.md documents each mapping.
"""

from __future__ import annotations

import argparse
import json
from edgeplace.argtypes import positive_float as _positive_float, positive_int as _positive_int
from datetime import datetime
from pathlib import Path
from typing import Any

from edgeplace.topology.errors import InputError, Problem






def _pue(text: str) -> float:
    value = _positive_float(text)
    if not 1.0 <= value <= 5.0:
        raise argparse.ArgumentTypeError(f"a PUE is between 1 and 5, got {text}")
    return value


def _utc(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time such as 2026-06-21T00:00:00Z, got {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"needs a UTC offset, e.g. {text}Z")
    return value


def add_import_arguments(parser: argparse.ArgumentParser) -> argparse._MutuallyExclusiveGroup:
    """Add the file-based import sources and their options; return the sources' exclusive group."""
    sources = parser.add_mutually_exclusive_group()
    sources.add_argument("--edgesimpy", metavar="FILE", help="an EdgeSimPy JSON dataset")
    sources.add_argument("--topohub", metavar="NAME",
                         help="a topology shipped by the topohub package: topozoo/NAME (Internet Topology Zoo), "
                              "sndlib/NAME, backbone/NAME, gabriel/N/I; e.g. sndlib/germany50")
    sources.add_argument("--topology-file", metavar="FILE",
                         help="a topology file: node-link JSON (topohub's shape) or Topology Zoo GraphML")
    g = parser.add_argument_group("defaults for what the source does not say (docs/IMPORTERS.md)")
    g.add_argument("--start", type=_utc, metavar="TIME", help="horizon start, ISO 8601 with offset (default 2026-06-21T00:00:00Z)")
    g.add_argument("--slots", type=_positive_int, metavar="N", help="slots in the horizon (default 24)")
    g.add_argument("--slot-minutes", type=_positive_int, metavar="MIN", help="slot length [min] (default 60)")
    g.add_argument("--pue", type=_pue, help="PUE of every imported site (default: the format's 1.6)")
    g.add_argument("--name", help="scenario name (default: from the source)")
    t = parser.add_argument_group("topologies (--topohub, --topology-file)")
    t.add_argument("--servers-per-site", type=_positive_int, metavar="N", help="servers at every site (default 2)")
    t.add_argument("--sla-ms", type=_positive_float, metavar="MS", help="latency SLA of every generated service (default 10)")
    t.add_argument("--access-ms", type=float, metavar="MS", help="user access latency to their site (default 2)")
    return sources


_TOPOLOGY_FLAGS = ("servers_per_site", "sla_ms", "access_ms")


def run_import(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]] | None:
    """The imported, validated scenario document and its notes; None if no source of ours was given."""
    from edgeplace.topology import scenario_from_dict
    from edgeplace.topology.importers.common import ImportOptions

    edgesimpy = getattr(args, "edgesimpy", None)
    topohub = getattr(args, "topohub", None)
    topo_file = getattr(args, "topology_file", None)
    if not (edgesimpy or topohub or topo_file):
        return None
    fields = {k: getattr(args, a) for k, a in (("start", "start"), ("slots", "slots"), ("slot_minutes", "slot_minutes"),
                                               ("pue", "pue"), ("name", "name")) if getattr(args, a, None) is not None}
    options = ImportOptions(**fields)
    if edgesimpy:
        given = [f"--{f.replace('_', '-')}" for f in _TOPOLOGY_FLAGS if getattr(args, f, None) is not None]
        if given:
            raise InputError("--edgesimpy", [Problem(", ".join(given), "applies to --topohub and --topology-file only; "
                                                                       "an EdgeSimPy dataset has its own servers and SLAs")])
        from edgeplace.topology.importers.edgesimpy import import_edgesimpy

        result, source = import_edgesimpy(edgesimpy, options), edgesimpy
    else:
        from edgeplace.topology.importers.topohub import TopologyOptions, import_topohub, import_topology_file

        topo_fields = {k: getattr(args, a) for k, a in (("servers_per_site", "servers_per_site"), ("sla_ms", "sla_ms"),
                                                       ("access_latency_ms", "access_ms"))
                       if getattr(args, a, None) is not None}
        topology = TopologyOptions(**topo_fields)
        if topohub:
            result, source = import_topohub(topohub, options, topology), f"topohub:{topohub}"
        else:
            result, source = import_topology_file(topo_file, options, topology), topo_file
    # The importer's output must load: check it now, naming the source, not the output file.
    scenario_from_dict(result.document, source=f"{source} (imported)")
    return result.document, result.notes


def write_scenario(document: dict[str, Any], notes: list[str], output: str | Path, source: str) -> None:
    """Write an imported scenario atomically: JSON for *.json, else YAML with the notes as a header comment."""
    import yaml

    from edgeplace.topology.io import atomic_write_text

    output = Path(output)
    if output.suffix.lower() == ".json":
        text = json.dumps(document, indent=1) + "\n"
    else:
        header = [f"# Imported by `edgeplace import` from {source}.", "# Notes (defaults filled, data not carried over):"]
        header += [f"#   - {n}" for n in notes] or ["#   none"]
        text = "\n".join(header) + "\n" + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120)
    atomic_write_text(output, text)


def source_description(args: argparse.Namespace) -> str:
    """Which of our sources `args` names, for messages and file headers."""
    for flag, attr in (("--edgesimpy", "edgesimpy"), ("--topohub", "topohub"), ("--topology-file", "topology_file")):
        value = getattr(args, attr, None)
        if value:
            return f"{flag} {value}"
    return ""
