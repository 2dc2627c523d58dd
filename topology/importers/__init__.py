"""Importers: scenarios from other tools' files.

Each importer reads a foreign format and returns an `ImportResult`: a
scenario document (a dict that `topology.scenario_from_dict` validates and
`edgeplace validate` accepts once written as YAML or JSON) and a list of
notes saying which defaults filled what the source does not have (carbon
intensity, tenants, PUE, ...). docs/IMPORTERS.md documents each mapping.

- `edgeplace.topology.importers.edgesimpy.import_edgesimpy(path)`: EdgeSimPy JSON datasets.
- `edgeplace.topology.importers.topohub.import_topohub(name)`: Internet Topology Zoo,
  SNDlib and other topologies shipped by the `topohub` package;
  `import_topology_file(path)` reads a node-link JSON file of the same shape
  or a Topology Zoo GraphML file.

Importers never write files and never load the scenario themselves; callers
validate with `topology.scenario_from_dict` (the CLI does).
"""

from edgeplace.topology.importers.common import ImportOptions, ImportResult

__all__ = ["ImportOptions", "ImportResult"]
