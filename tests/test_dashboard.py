"""The Grafana dashboard of the Helm chart (deploy/helm/edgeplace/dashboards/edgeplace.json).

Valid dashboard JSON, and every metric a panel's expression names is one
edgeplace exports: the extender's from its registry (`ExtenderMetrics`), the
planner's from its registry (`PlannerMetrics`). Every metric of both is on
some panel. tests/e2e/test_dashboard_prometheus.py runs every expression
against a real Prometheus scraping a real extender and a real planner.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edgeplace.k8s.actuation.metrics import PlannerMetrics
from edgeplace.k8s.extender.metrics import ExtenderMetrics

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "helm" / "edgeplace" / "dashboards" / "edgeplace.json"
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
METRIC = re.compile(r"\bedgeplace_[a-z0-9_]+\b")


def series(name: str, kind: str) -> set[str]:
    """The series names Prometheus stores for a metric family (a counter's name ends in _total)."""
    base = name[:-len("_total")] if kind == "counter" and name.endswith("_total") else name
    return {base + suffix for suffix in SUFFIXES[kind]}


def families(registry) -> dict[str, set[str]]:
    return {family.name: series(family.name, family.type) for family in registry.collect()}


def extender_series() -> dict[str, set[str]]:
    return families(ExtenderMetrics(lambda: 0.0, lambda: False).registry)


def planner_series() -> dict[str, set[str]]:
    return families(PlannerMetrics().registry)


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out += panel.get("panels", [])
    return out


def test_the_dashboard_is_a_grafana_dashboard(dashboard):
    assert dashboard["uid"] == "edgeplace" and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr


def test_every_expression_names_metrics_edgeplace_exports(dashboard):
    known = set().union(*extender_series().values(), *planner_series().values())
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            names = METRIC.findall(target["expr"])
            assert names, f"{panel['title']}: no edgeplace metric in {target['expr']!r}"
            unknown = sorted(set(names) - known)
            assert not unknown, f"{panel['title']}: {unknown} are not exported by edgeplace"
    for variable in dashboard["templating"]["list"]:
        for name in METRIC.findall(json.dumps(variable)):
            assert name in known, (variable["name"], name)


@pytest.mark.parametrize("source", ["extender", "planner"])
def test_every_metric_is_on_a_panel(dashboard, source):
    used = {name for panel in panels(dashboard) for t in panel.get("targets", []) for name in METRIC.findall(t["expr"])}
    families = extender_series() if source == "extender" else planner_series()
    unused = sorted(name for name, names in families.items() if not names & used)
    assert not unused, f"{source} metrics on no panel: {unused}"


def test_the_check_can_fail(dashboard):
    broken = json.loads(json.dumps(dashboard))
    broken["panels"][1]["targets"][0]["expr"] = "rate(edgeplace_extender_requets_total[5m])"
    with pytest.raises(AssertionError, match="requets"):
        test_every_expression_names_metrics_edgeplace_exports(broken)
