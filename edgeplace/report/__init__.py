"""Capacity reports: `edgeplace report SCENARIO [--plan plan.json] -o DIR`.

- `edgeplace.report.data`: every table and matrix, from `edgeplace.policies.evaluate` (the only numbers);
- `edgeplace.report.plots`: the figures as PNG bytes (matplotlib, no pyplot state);
- `edgeplace.report.html`: the self-contained HTML page and the Markdown twin;
- `edgeplace.report.write`: the report directory, written atomically.

docs/REPORTS.md describes the sections and files.
"""
