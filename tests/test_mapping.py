"""edgeplace.k8s.mapping: Kubernetes objects (plain JSON dicts) to a scenario, no cluster needed."""

from __future__ import annotations

from datetime import datetime, timezone
from fractions import Fraction

import numpy as np
import pytest

from edgeplace.k8s.mapping import (ClusterObjects, MappingOptions, QuantityError, count_quantity, cpu_millicores,
                         horizon_start, is_extended_resource, map_cluster, memory_mib, parse_quantity,
                         parse_site_config, placement_from_cluster, pod_requests)
from edgeplace.topology.errors import InputError

NOW = datetime(2026, 6, 21, 10, 17, tzinfo=timezone.utc)  # horizon starts 10:00


# ---------------------------------------------------------------------------
# quantities


@pytest.mark.parametrize("text, value", [
    ("500m", Fraction(1, 2)),
    ("2", 2),
    ("1Gi", 2 ** 30),
    ("1024Mi", 2 ** 30),
    ("1e3", 1000),
    ("1E3", 1000),            # an exponent, not exa followed by 3
    ("1E", 10 ** 18),         # exa
    ("1.5", Fraction(3, 2)),
    (".5", Fraction(1, 2)),
    ("+3k", 3000),
    ("-1", -1),
    ("100n", Fraction(1, 10 ** 7)),
    ("2.5Ki", 2560),          # 2.5 x 1024
    ("1e-3", Fraction(1, 1000)),
    (4, 4),                   # YAML may give plain numbers
    (0.25, Fraction(1, 4)),
])
def test_parse_quantity(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "1x", "1.2.3", "Gi", "1 Gi", "1e1000", "0x10", "1ki", None, True, "9" * 70])
def test_parse_quantity_rejects(text):
    with pytest.raises(QuantityError, match="quantity|exponent"):
        parse_quantity(text)


@pytest.mark.parametrize("text, up, down", [
    ("500m", 500, 500),
    ("2", 2000, 2000),
    ("0.1", 100, 100),
    ("100u", 1, 0),      # 0.1 millicore: a request rounds up, a capacity down
    ("1.0005", 1001, 1000),
])
def test_cpu_millicores_rounding(text, up, down):
    assert cpu_millicores(text) == up and cpu_millicores(text, round_up=False) == down


@pytest.mark.parametrize("text, up, down", [
    ("1Gi", 1024, 1024),
    ("1024Mi", 1024, 1024),
    ("1G", 954, 953),       # 10**9 B = 953.67 MiB
    ("1500Ki", 2, 1),       # 1.46 MiB
    ("128974848", 123, 123),  # bytes: exactly 123 MiB
])
def test_memory_mib_rounding(text, up, down):
    assert memory_mib(text) == up and memory_mib(text, round_up=False) == down


def test_extended_resources_are_whole_counts():
    assert count_quantity("2") == 2
    with pytest.raises(QuantityError, match="not a whole number"):
        count_quantity("1500m")


@pytest.mark.parametrize("name, extended", [
    ("nvidia.com/gpu", True), ("example.com/dongle", True), ("cpu", False), ("memory", False),
    ("pods", False), ("hugepages-2Mi", False), ("kubernetes.io/batch-cpu", False),
    ("node.kubernetes.io/x", False), ("ephemeral-storage", False),
])
def test_is_extended_resource(name, extended):
    assert is_extended_resource(name) is extended


def test_pod_requests_count_init_sidecars_overhead_and_limits():
    spec = {
        "containers": [
            {"resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}},
            {"resources": {"limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"}}},  # limit = request
        ],
        "initContainers": [
            {"restartPolicy": "Always", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},  # sidecar
            {"resources": {"requests": {"cpu": "4", "memory": "128Mi"}}},  # runs alone (+ the sidecar)
        ],
        "overhead": {"cpu": "50m", "memory": "10Mi"},
    }
    # cpu: max(500 + 1000 + 100, 4000 + 100) + 50 = 4150; memory: max(256 + 1024 + 64, 128 + 64) + 10 = 1354
    assert pod_requests(spec) == {"cpu_millicores": 4150, "memory_mib": 1354, "nvidia.com/gpu": 1}


def test_pod_requests_of_an_empty_pod():
    assert pod_requests({"containers": [{"name": "c"}]}) == {"cpu_millicores": 0, "memory_mib": 0}


# ---------------------------------------------------------------------------
# builders of API objects (the JSON the API server sends)


def node(name, site="edge", region="PL", tier="access", cpu="4", memory="8Gi", labels=None, annotations=None,
         taints=None, unschedulable=False, extra_alloc=None):
    lab = {"edgeplace.io/site": site, "topology.kubernetes.io/region": region, "edgeplace.io/tier": tier}
    lab = {k: v for k, v in {**lab, **(labels or {})}.items() if v is not None}
    ann = {"edgeplace.io/idle-w": "50", "edgeplace.io/max-w": "120", **(annotations or {})}
    ann = {k: v for k, v in ann.items() if v is not None}
    return {"metadata": {"name": name, "uid": f"uid-{name}", "labels": lab, "annotations": ann},
            "spec": {"taints": taints or [], "unschedulable": unschedulable},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110", **(extra_alloc or {})}}}


def namespace(name, labels=None, annotations=None):
    return {"metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}}}


def template(cpu="500m", memory="256Mi", pod_annotations=None, selector=None, gates=None, labels=None, **spec_fields):
    spec = {"containers": [{"name": "main", "resources": {"requests": {"cpu": cpu, "memory": memory}}}], **spec_fields}
    if selector:
        spec["nodeSelector"] = selector
    if gates:
        spec["schedulingGates"] = [{"name": g} for g in gates]
    meta = {"annotations": pod_annotations or {}}
    if labels:
        meta["labels"] = labels
    return {"metadata": meta, "spec": spec}


def deployment(ns, name, replicas=2, annotations=None, **tmpl):
    return {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}", "annotations": annotations or {}},
            "spec": {"replicas": replicas, "template": template(**tmpl)}}


def replicaset(ns, name, deployment_name):
    return {"metadata": {"name": name, "namespace": ns, "ownerReferences": [
        {"kind": "Deployment", "name": deployment_name, "controller": True}]}}


def job(ns, name, parallelism=1, annotations=None, status=None, **tmpl):
    return {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}", "annotations": annotations or {}},
            "spec": {"parallelism": parallelism, "template": template(**tmpl)}, "status": status or {}}


def pod(ns, name, owner_kind=None, owner=None, node_name=None, phase="Running", cpu="500m", memory="256Mi",
        gates=None, annotations=None):
    meta = {"name": name, "namespace": ns, "uid": f"uid-{ns}-{name}", "annotations": annotations or {}}
    if owner_kind:
        meta["ownerReferences"] = [{"kind": owner_kind, "name": owner, "controller": True}]
    spec = {"containers": [{"resources": {"requests": {"cpu": cpu, "memory": memory}}}]}
    if node_name:
        spec["nodeName"] = node_name
    if gates:
        spec["schedulingGates"] = [{"name": g} for g in gates]
    return {"metadata": meta, "spec": spec, "status": {"phase": phase}}


CONFIG = {
    "horizon": {"slots": 4, "slot_minutes": 60},
    "regions": [{"id": "PL", "intensity_g_per_kwh": 700}, {"id": "SE", "intensity_g_per_kwh": [40, 30, 20, 10]}],
    "users": [{"id": "u", "site": "edge"}],
    "links": [{"a": "edge", "b": "cloud", "latency_ms": 20}],
}


def world(**kw) -> ClusterObjects:
    """Two nodes (an edge box in PL, a cloud server in SE), a `shop` namespace, and what `kw` adds."""
    objs = ClusterObjects(
        nodes=[node("e1"), node("c1", site="cloud", region="SE", tier="cloud", cpu="16", memory="64Gi",
                                annotations={"edgeplace.io/idle-w": "115", "edgeplace.io/max-w": "490",
                                             "edgeplace.io/pue": "1.1"})],
        namespaces=[namespace("shop")])
    for key, value in kw.items():
        getattr(objs, key).extend(value)
    return objs


def mapped(objs, config=None, **options):
    return map_cluster(objs, parse_site_config(CONFIG if config is None else config),
                       MappingOptions(now=NOW, **options))


def problems(objs, config=None) -> str:
    with pytest.raises(InputError) as info:
        mapped(objs, config)
    return "\n".join(str(p) for p in info.value.problems)


# ---------------------------------------------------------------------------
# nodes and sites


def test_nodes_map_to_sites_regions_tiers_and_capacities():
    m = mapped(world(nodes=[node("e2", extra_alloc={"nvidia.com/gpu": "2"})]))
    doc = m.document
    assert doc["horizon"] == {"start": "2026-06-21T10:00:00Z", "slots": 4, "slot_minutes": 60}
    assert [(s["id"], s["tier"], s["region"]) for s in doc["sites"]] == [("cloud", "cloud", "SE"), ("edge", "access", "PL")]
    nodes = {n["id"]: n for n in doc["nodes"]}
    assert nodes["c1"]["capacity"] == {"cpu_millicores": 16000, "memory_mib": 65536, "pods": 110}
    assert nodes["e2"]["capacity"] == {"cpu_millicores": 4000, "memory_mib": 8192, "pods": 110, "nvidia.com/gpu": 2}
    assert nodes["c1"]["power"] == {"idle_w": 115.0, "max_w": 490.0}
    sc = m.scenario
    assert sc.site_pue[sc.index_of("site", "cloud")] == pytest.approx(1.1)
    assert sc.region_intensity_g_per_kwh[sc.index_of("region", "SE")].tolist() == [40, 30, 20, 10]
    assert nodes["e1"]["labels"]["edgeplace.io/site"] == "edge"  # labels kept for node selectors


def test_site_config_fills_what_labels_do_not_say_and_zone_names_the_site():
    config = {**CONFIG, "sites": [{"id": "zone-a", "tier": "metro", "region": "PL", "pv_kwp": 10,
                                   "power": {"idle_w": 30, "max_w": 70}}]}
    objs = world(nodes=[node("z1", site=None, region=None, tier=None, labels={"topology.kubernetes.io/zone": "zone-a"},
                             annotations={"edgeplace.io/idle-w": None, "edgeplace.io/max-w": None})])
    m = mapped(objs, config)
    site = next(s for s in m.document["sites"] if s["id"] == "zone-a")
    assert (site["tier"], site["region"], site["pv_kwp"]) == ("metro", "PL", 10)
    z1 = next(n for n in m.document["nodes"] if n["id"] == "z1")
    assert z1["site"] == "zone-a" and z1["power"] == {"idle_w": 30.0, "max_w": 70.0}


def test_a_node_without_figures_gets_the_reference_server_and_a_warning():
    objs = world(nodes=[node("bare", annotations={"edgeplace.io/idle-w": None, "edgeplace.io/max-w": None})])
    m = mapped(objs)
    bare = next(n for n in m.document["nodes"] if n["id"] == "bare")
    assert bare["power"] == {"idle_w": 115.0, "max_w": 490.0}
    assert any("bare" in w and "115 W idle" in w for w in m.warnings)


def test_power_curve_embodied_and_always_on_annotations():
    curve = ",".join(str(50 + 10 * i) for i in range(11))
    objs = world(nodes=[node("e3", annotations={"edgeplace.io/idle-w": None, "edgeplace.io/max-w": None,
                                                "edgeplace.io/power-curve-w": curve,
                                                "edgeplace.io/can-power-down": "false",
                                                "edgeplace.io/embodied-kg": "500",
                                                "edgeplace.io/lifetime-years": "5"})])
    e3 = next(n for n in mapped(objs).document["nodes"] if n["id"] == "e3")
    assert e3["power"] == {"points_w": [50.0 + 10 * i for i in range(11)]}
    assert e3["can_power_down"] is False
    assert e3["embodied"] == {"per_node_kg": 500.0, "lifetime_years": 5.0}


@pytest.mark.parametrize("extra, why", [
    ({"labels": {"edgeplace.io/ignore": "true"}}, "edgeplace.io/ignore"),
    ({"annotations": {"edgeplace.io/power-state": "off", "edgeplace.io/wake-failed-at": "2026-06-21T09:50:00Z"},
      "taints": [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]}, "did not become Ready"),
])
def test_nodes_left_out(extra, why):
    m = mapped(world(nodes=[node("x", **extra)]))
    assert "x" not in m.scenario.node_ids and why in m.excluded_nodes["x"]


@pytest.mark.parametrize("extra, taint", [
    ({"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
     {"key": "node-role.kubernetes.io/control-plane", "value": "", "effect": "NoSchedule"}),
    ({"unschedulable": True}, {"key": "node.kubernetes.io/unschedulable", "value": "", "effect": "NoSchedule"}),
])
def test_nodes_no_workload_may_use_stay_in_always_on(extra, taint):
    """kube-scheduler counts them as topology domains (spread with nodeTaintsPolicy Ignore), so the
    scenario keeps them; edgeplace does not switch them off."""
    m = mapped(world(nodes=[node("x", **extra)], deployments=[deployment("shop", "web")]))
    x = next(n for n in m.document["nodes"] if n["id"] == "x")
    assert x["taints"] == [taint] and x["can_power_down"] is False
    assert not m.scenario.workload_node_allowed[:, m.scenario.index_of("node", "x")].any()
    assert any("stay on and are planned around: x" in w for w in m.warnings)


def test_a_tolerated_taint_keeps_a_node_plannable():
    gpu = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    dep = deployment("shop", "train", tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    m = mapped(world(nodes=[node("g", taints=gpu)], deployments=[dep, deployment("shop", "web")]))
    g = next(n for n in m.document["nodes"] if n["id"] == "g")
    assert g["can_power_down"] is True
    sc = m.scenario
    col = sc.index_of("node", "g")
    assert sc.workload_node_allowed[[sc.index_of("workload", "shop/train"), sc.index_of("workload", "shop/web")], col].tolist() == [True, False]


def test_own_taint_and_own_cordon_keep_a_node_in():
    objs = world(nodes=[node("t", taints=[{"key": "edgeplace.io/powered-down", "effect": "NoSchedule"}]),
                        node("c", unschedulable=True, annotations={"edgeplace.io/cordoned-by": "edgeplace-planner"})])
    assert {"t", "c"} <= set(mapped(objs).scenario.node_ids)


def test_a_node_edgeplace_put_to_sleep_stays_in_as_a_node_the_plan_may_wake():
    objs = world(nodes=[node("s", unschedulable=True, annotations={"edgeplace.io/power-state": "off",
                                                                  "edgeplace.io/cordoned-by": "edgeplace-planner"},
                             taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
                                     {"key": "edgeplace.io/powered-down", "effect": "NoSchedule"}])])
    assert "s" in mapped(objs).scenario.node_ids


# ---------------------------------------------------------------------------
# workloads, tenants and the current placement


def test_deployments_statefulsets_and_jobs_become_workloads_with_current_placement():
    objs = world(
        deployments=[deployment("shop", "web", replicas=2, annotations={"edgeplace.io/sla-ms": "25",
                                                                       "edgeplace.io/users": "u"})],
        replicasets=[replicaset("shop", "web-7d9", "web")],
        statefulsets=[deployment("shop", "db", replicas=1, cpu="2", memory="4Gi")],
        jobs=[job("shop", "report", cpu="1")],
        pods=[pod("shop", "web-7d9-a", "ReplicaSet", "web-7d9", "c1"),
              pod("shop", "web-7d9-b", "ReplicaSet", "web-7d9", "e1"),
              pod("shop", "db-0", "StatefulSet", "db", "c1", cpu="2", memory="4Gi"),
              pod("shop", "old", "ReplicaSet", "web-7d9", "e1", phase="Succeeded")])
    m = mapped(objs)
    w = {x["id"]: x for x in m.document["workloads"]}
    assert w["shop/web"] == {"id": "shop/web", "tenant": "shop", "kind": "service", "replicas": 2,
                             "requests": {"cpu_millicores": 500, "memory_mib": 256},
                             "sla": {"latency_ms": 25.0, "users": ["u"]}, "current": ["c1", "e1"]}
    assert w["shop/db"]["current"] == ["c1"] and w["shop/db"]["requests"] == {"cpu_millicores": 2000, "memory_mib": 4096}
    assert w["shop/report"]["kind"] == "batch" and "current" not in w["shop/report"]
    assert str(m.workloads["shop/web"]) == "Deployment shop/web"
    placement = placement_from_cluster(m.scenario, objs)
    r0 = int(m.scenario.workload_first_replica[m.scenario.index_of("workload", "shop/web")])
    assert [m.scenario.node_ids[i] for i in placement.assign[r0:r0 + 2, 0]] == ["c1", "e1"]


def test_partial_rollout_has_no_current_placement_and_says_so():
    objs = world(deployments=[deployment("shop", "web", replicas=3)], replicasets=[replicaset("shop", "web-1", "web")],
                 pods=[pod("shop", "web-1-a", "ReplicaSet", "web-1", "c1")])
    m = mapped(objs)
    assert "current" not in m.document["workloads"][0]
    assert any("1 pod(s) bound for 3 replica(s)" in w for w in m.warnings)


def test_pods_outside_the_scenario_use_capacity_and_add_background_load():
    objs = world(pods=[pod("kube-system", "dns", "ReplicaSet", "coredns-1", "e1", cpu="1", memory="1Gi"),
                       pod("shop", "bare", node_name="e1", cpu="500m", memory="0")])
    e1 = next(n for n in mapped(objs).document["nodes"] if n["id"] == "e1")
    assert e1["capacity"] == {"cpu_millicores": 2500, "memory_mib": 7168, "pods": 108}  # 4000 - 1500, 8192 - 1024, 110 - 2
    assert e1["background_utilisation"] == pytest.approx(1500 / 4000)


def test_workload_id_from_the_pod_template_annotation_and_system_namespaces_skipped():
    objs = world(deployments=[deployment("shop", "web", pod_annotations={"edgeplace.io/workload": "shop-frontend"}),
                              deployment("kube-system", "coredns")])
    m = mapped(objs)
    assert m.scenario.workload_ids == ["shop-frontend"]


def test_tenants_from_namespace_labels_annotations_and_config():
    objs = world(namespaces=[namespace("hosp-a", labels={"edgeplace.io/tenant": "hospital"},
                                       annotations={"edgeplace.io/never-with": "cdn"}),
                             namespace("hosp-b", labels={"edgeplace.io/tenant": "hospital"}),
                             namespace("cdn"),
                             namespace("plant", annotations={"edgeplace.io/dedicated-nodes": "true"})],
                 nodes=[node("p1", labels={"edgeplace.io/dedicated-to": "factory"})],
                 deployments=[deployment("hosp-a", "a"), deployment("hosp-b", "b"), deployment("cdn", "c"),
                              deployment("plant", "line")])
    config = {**CONFIG, "tenants": [{"id": "factory", "namespaces": ["plant"], "quota": {"cpu_millicores": 8000}}]}
    m = mapped(objs, config)
    tenants = {t["id"]: t for t in m.document["tenants"]}
    assert tenants["hospital"]["isolation"] == {"dedicated_nodes": False, "never_with": ["cdn"]}
    assert tenants["factory"]["isolation"]["dedicated_nodes"] is True and tenants["factory"]["quota"]
    w = {x["id"]: x["tenant"] for x in m.document["workloads"]}
    assert w == {"hosp-a/a": "hospital", "hosp-b/b": "hospital", "cdn/c": "cdn", "plant/line": "factory"}
    sc = m.scenario
    assert sc.tenant_conflicts[sc.index_of("tenant", "hospital"), sc.index_of("tenant", "cdn")]


def test_deferrable_job_window_gated_pods_and_started_jobs():
    ann = {"edgeplace.io/deadline": "2026-06-21T13:30:00Z", "edgeplace.io/duration-minutes": "60"}
    objs = world(jobs=[job("shop", "train", annotations=ann), job("shop", "running", annotations=ann),
                       job("shop", "done", annotations=ann, status={"conditions": [{"type": "Complete", "status": "True"}]})],
                 pods=[pod("shop", "train-x", "Job", "train", gates=["edgeplace.io/deferred"]),
                       pod("shop", "running-x", "Job", "running", node_name="c1")])
    m = mapped(objs)
    w = {x["id"]: x for x in m.document["workloads"]}
    # Whole slots from 10:00 to 13:00 (13:30 rounded down to a slot boundary).
    assert w["shop/train"]["deferral"] == {"earliest_start": "2026-06-21T10:00:00Z",
                                           "deadline": "2026-06-21T13:00:00Z", "duration_minutes": 60}
    assert "deferral" not in w["shop/running"] and w["shop/running"]["current"] == ["c1"]
    assert "shop/done" not in w
    assert [p["metadata"]["name"] for p in m.gated_pods["shop/train"]] == ["train-x"]
    assert m.started_jobs == {"shop/running"}
    assert m.scenario.workload_deferrable.tolist() == [False, True]


def suspended_job(name, annotations, suspend=True):
    j = job("shop", name, annotations={"edgeplace.io/deadline": "2026-06-21T14:00:00Z",
                                       "edgeplace.io/duration-minutes": "150", "edgeplace.io/interruptible": "true",
                                       **annotations})
    j["spec"]["suspend"] = suspend
    return j


def test_an_interruptible_job_stays_in_the_scenario_suspended_or_running_with_the_rest_of_its_run():
    # NOW is 10:17: `paused` ran 60 min before (run-minutes), `going` runs since 10:00 with 30 min before.
    paused = suspended_job("paused", {"edgeplace.io/run-minutes": "60", "edgeplace.io/min-run-minutes": "60"})
    going = suspended_job("going", {"edgeplace.io/run-minutes": "30", "edgeplace.io/running-since": "2026-06-21T10:00:00Z"},
                          suspend=False)
    plain = job("shop", "plain")
    plain["spec"]["suspend"] = True  # suspended by someone else: not planned
    objs = world(jobs=[paused, going, plain], pods=[pod("shop", "going-x", "Job", "going", node_name="c1")])
    m = mapped(objs)
    w = {x["id"]: x for x in m.document["workloads"]}
    assert w["shop/paused"]["deferral"] == {"earliest_start": "2026-06-21T10:00:00Z",
                                            "deadline": "2026-06-21T14:00:00Z", "duration_minutes": 90,
                                            "interruptible": True, "current_run_minutes": 0, "min_run_minutes": 60}
    # 150 - (30 + 17) = 103 min left; its run going on is 17 min old.
    assert w["shop/going"]["deferral"]["duration_minutes"] == 103
    assert w["shop/going"]["deferral"]["current_run_minutes"] == 17
    assert w["shop/going"]["current"] == ["c1"]
    assert "shop/plain" not in w and "shop/going" not in m.started_jobs
    assert m.scenario.workload_interruptible.tolist() == [True, True]


def test_a_job_whose_window_is_too_short_runs_now_with_a_warning():
    ann = {"edgeplace.io/deadline": "2026-06-21T11:00:00Z", "edgeplace.io/duration-minutes": "120"}
    m = mapped(world(jobs=[job("shop", "late", annotations=ann)]))
    assert "deferral" not in m.document["workloads"][0]
    assert any("planned to run now" in w for w in m.warnings)


def test_horizon_start_rounds_down_to_a_slot():
    assert horizon_start(NOW, 60) == datetime(2026, 6, 21, 10, 0, tzinfo=timezone.utc)
    assert horizon_start(NOW, 15) == datetime(2026, 6, 21, 10, 15, tzinfo=timezone.utc)


# ---------------------------------------------------------------------------
# problems name the object and the field


@pytest.mark.parametrize("objs, expected", [
    (world(nodes=[node("bad", annotations={"edgeplace.io/max-w": "lots"})]),
     r'Node bad metadata.annotations\["edgeplace.io/max-w"\]: must be a number \[W\]'),
    (world(nodes=[node("half", annotations={"edgeplace.io/max-w": None})]),
     r'Node half metadata.annotations\["edgeplace.io/max-w"\]: is missing'),
    (world(nodes=[node("nor", region=None)]),
     r'Node nor metadata.labels\["topology.kubernetes.io/region"\]: is missing'),
    (world(nodes=[node("not", tier="basement")]),
     r'Node not metadata.labels\["edgeplace.io/tier"\]: must be one of'),
    (world(nodes=[node("e9", region="SE")]),
     r"Node e9 metadata.labels\[\"topology.kubernetes.io/region\"\]: is 'SE' but Node e1 of the same site 'edge' says 'PL'"),
    (world(nodes=[node("e9", annotations={"edgeplace.io/pue": "1.3"}), node("e8", annotations={"edgeplace.io/pue": "1.5"})]),
     r'Node e9 metadata.annotations\["edgeplace.io/pue"\]: is 1.3 but Node e8'),
    (world(nodes=[node("zero", cpu="0")]), r"Node zero status.allocatable.cpu: must be > 0"),
    (world(nodes=[node("q", memory="8 GB")]), r"Node q status.allocatable.memory: '8 GB' is not a quantity"),
    (world(deployments=[deployment("shop", "web", annotations={"edgeplace.io/sla-ms": "5"})]),
     r'Deployment shop/web metadata.annotations\["edgeplace.io/users"\]: is missing'),
    (world(deployments=[deployment("shop", "web", cpu="lots")]),
     r"Deployment shop/web spec.template.spec.containers\[0\].resources.requests.cpu: 'lots' is not a quantity"),
    (world(jobs=[job("shop", "j", annotations={"edgeplace.io/deadline": "tomorrow"})]),
     r'Job shop/j metadata.annotations\["edgeplace.io/deadline"\]: must be an ISO 8601 time'),
    (world(jobs=[job("shop", "j", annotations={"edgeplace.io/deadline": "2026-06-21T14:00:00Z"})]),
     r'Job shop/j metadata.annotations\["edgeplace.io/duration-minutes"\]: is missing'),
    (world(deployments=[deployment("shop", "a", pod_annotations={"edgeplace.io/workload": "same"}),
                        deployment("shop", "b", pod_annotations={"edgeplace.io/workload": "same"})]),
     r"Deployment shop/b .*workload id 'same' is also the id of Deployment shop/a"),
    (world(namespaces=[namespace("x", annotations={"edgeplace.io/dedicated-nodes": "maybe"})]),
     r'Namespace x metadata.annotations\["edgeplace.io/dedicated-nodes"\]: must be true or false'),
    # Scenario validation, reported against the object: no node is large enough.
    (world(deployments=[deployment("shop", "huge", cpu="64")]),
     r"Deployment shop/huge \(scenario workloads\[0\].requests\): no node is large enough"),
])
def test_problems_name_the_object_and_the_field(objs, expected):
    assert __import__("re").search(expected, problems(objs)), problems(objs)


def test_every_problem_is_reported_at_once():
    objs = world(nodes=[node("a1", annotations={"edgeplace.io/idle-w": "x"}), node("a2", tier=None)])
    text = problems(objs)
    assert "Node a1" in text and "Node a2" in text


def test_a_region_without_intensity_says_how_to_fix_it():
    config = {**CONFIG, "regions": [{"id": "PL", "intensity_g_per_kwh": 700}]}
    assert "region SE (site config regions[].intensity_g_per_kwh): has no carbon intensity" in problems(world(), config)


def test_per_slot_values_must_cover_the_horizon():
    config = {**CONFIG, "regions": [{"id": "PL", "intensity_g_per_kwh": [1, 2]}, {"id": "SE", "intensity_g_per_kwh": 5}]}
    assert "has 2 values but the horizon has 4 slots" in problems(world(), config)


def test_site_config_typos_are_errors_with_paths():
    with pytest.raises(InputError, match=r"regions\[0\].intensity: is not a known field"):
        parse_site_config({"regions": [{"id": "PL", "intensity": 300}]}, source="site.yaml")
    with pytest.raises(InputError, match="a site config is a mapping"):
        parse_site_config(["regions"])


def test_an_empty_cluster_is_an_input_error():
    with pytest.raises(InputError, match="has no node to plan on"):
        map_cluster(ClusterObjects(), parse_site_config(CONFIG), MappingOptions(now=NOW))


def test_mapping_is_deterministic():
    objs = world(deployments=[deployment("shop", "web")])
    a, b = mapped(objs), mapped(objs)
    assert a.document == b.document
    assert np.array_equal(a.scenario.node_capacity, b.scenario.node_capacity)


# ---------------------------------------------------------------------------
# Kubernetes scheduling constraints and workload identity


def test_pod_template_constraints_and_namespace_labels_reach_the_scenario():
    spread = [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": {"app": "web"}}}]
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"team": "blue"}}, "namespaceSelector": {"matchLabels": {"env": "prod"}},
         "topologyKey": "kubernetes.io/hostname"}]}}
    objs = world(namespaces=[namespace("blue", labels={"env": "prod", "edgeplace.io/tenant": "shop"})],
                 deployments=[deployment("shop", "web", labels={"app": "web"}, topologySpreadConstraints=spread,
                                         affinity=anti),
                              deployment("blue", "api", labels={"team": "blue"})])
    m = mapped(objs)
    web = next(w for w in m.document["workloads"] if w["id"] == "shop/web")
    assert web["scheduling"]["topology_spread"][0]["max_skew"] == 1
    api = next(w for w in m.document["workloads"] if w["id"] == "blue/api")
    assert api["tenant"] == "shop" and api["scheduling"]["namespace"] == "blue"
    assert {"id": "blue", "labels": {"env": "prod", "edgeplace.io/tenant": "shop"}} in m.document["namespaces"]
    sc = m.scenario
    # web's anti-affinity counts api's pods (namespace blue is prod): they never share a node.
    w, a = sc.index_of("workload", "shop/web"), sc.index_of("workload", "blue/api")
    assert [[int(x) for x in row] for row in sc.constraints.anti] == [[0, min(w, a), max(w, a)]]
    assert len(sc.constraints.spread) == 1


def test_a_bad_constraint_is_reported_against_its_object():
    dep = deployment("shop", "web", tolerations=[{"key": "x", "operator": "Exists", "value": "v"}])
    text = problems(world(deployments=[dep]))
    assert "Deployment shop/web (scenario workloads[0].scheduling.tolerations[0])" in text and "takes no `value`" in text


def test_pods_without_any_edgeplace_annotation_are_found_by_their_owners():
    """Identity from owner references (edgeplace.k8s.identity): a Deployment's pods through a ReplicaSet
    the mapping has, and through the pod-template-hash naming rule when it has not listed it."""
    pods = [pod("shop", "web-5d8f-aaaa", "ReplicaSet", "web-5d8f", "e1"),
            pod("shop", "web-5d8f-bbbb", "ReplicaSet", "web-5d8f", "c1")]
    for p in pods:
        p["metadata"]["labels"] = {"pod-template-hash": "5d8f"}
    objs = world(deployments=[deployment("shop", "web")], pods=pods)
    m = mapped(objs)
    assert m.document["workloads"][0]["current"] == ["e1", "c1"]  # pods in name order
    placement = placement_from_cluster(m.scenario, objs)
    assert sorted(m.scenario.node_ids[n] for n in placement.assign[:, 0]) == ["c1", "e1"]
