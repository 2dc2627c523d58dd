"""edgeplace.k8s.isolation: the isolation state a cluster should hold and the writes that get it there."""

from __future__ import annotations

from edgeplace.k8s.isolation import changes, desired_state
from edgeplace.k8s.mapping import ClusterObjects, parse_site_config


def node(name, dedicated=None, taints=()):
    labels = {"edgeplace.io/dedicated-to": dedicated} if dedicated else {}
    return {"metadata": {"name": name, "labels": labels}, "spec": {"taints": list(taints)}}


def ns(name, labels=None, annotations=None):
    return {"metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}}}


def cluster() -> ClusterObjects:
    return ClusterObjects(
        nodes=[node("f1", "factory"), node("f2", "factory", [{"key": "edgeplace.io/dedicated-to", "value": "factory",
                                                             "effect": "NoSchedule"}]),
               node("s1", taints=[{"key": "edgeplace.io/dedicated-to", "value": "old", "effect": "NoSchedule"},
                                  {"key": "gpu", "value": "", "effect": "NoSchedule"}])],
        namespaces=[ns("hospital", annotations={"edgeplace.io/never-with": "cdn"}), ns("cdn", labels={"edgeplace.io/tenant": "cdn"}),
                    ns("plant-a"), ns("shop"), ns("kube-system")])


CONFIG = parse_site_config({"tenants": [{"id": "factory", "namespaces": ["plant-a"], "isolation": {"dedicated_nodes": True}}]})


def test_desired_state_from_labels_annotations_and_the_site_config():
    state = desired_state(cluster(), CONFIG)
    assert state.node_owner == {"f1": "factory", "f2": "factory"}
    # Every planned namespace gets its tenant's label; system namespaces are left alone.
    assert state.namespace_tenant == {"cdn": "cdn", "hospital": "hospital", "plant-a": "factory", "shop": "shop"}
    # never_with is written once and holds both ways.
    assert state.params == {"node.f1": "factory", "node.f2": "factory", "tenant.factory.dedicated": "true",
                            "tenant.cdn.never-with": "hospital", "tenant.hospital.never-with": "cdn"}


def test_changes_taint_untaint_label_and_write_the_parameters():
    objs = cluster()
    todo = changes(objs, desired_state(objs, CONFIG), None)
    assert [str(c) for c in todo] == [
        "node-taint f1: taint edgeplace.io/dedicated-to=factory:NoSchedule",
        "node-taint s1: remove taint edgeplace.io/dedicated-to",  # no longer dedicated: its stale taint goes
        "namespace-label hospital: label edgeplace.io/tenant=hospital",
        "namespace-label plant-a: label edgeplace.io/tenant=factory",
        "namespace-label shop: label edgeplace.io/tenant=shop",
        "params edgeplace-isolation: add node.f1, node.f2, tenant.cdn.never-with, tenant.factory.dedicated, "
        "tenant.hospital.never-with"]
    s1 = next(c for c in todo if c.name == "s1")
    assert s1.patch["spec"]["taints"] == [{"key": "gpu", "value": "", "effect": "NoSchedule"}]  # other taints kept


def test_a_cluster_in_the_desired_state_needs_no_change():
    objs = cluster()
    desired = desired_state(objs, CONFIG)
    for n in objs.nodes:
        owner = desired.node_owner.get(n["metadata"]["name"])
        n["spec"]["taints"] = [t for t in n["spec"]["taints"] if t["key"] != "edgeplace.io/dedicated-to"]
        if owner:
            n["spec"]["taints"].append({"key": "edgeplace.io/dedicated-to", "value": owner, "effect": "NoSchedule"})
    for n in objs.namespaces:
        tenant = desired.namespace_tenant.get(n["metadata"]["name"])
        if tenant:
            n["metadata"]["labels"]["edgeplace.io/tenant"] = tenant
    assert changes(objs, desired, dict(desired.params)) == []
    stale = dict(desired.params, **{"node.gone": "factory"})
    assert [str(c) for c in changes(objs, desired, stale)] == ["params edgeplace-isolation: remove node.gone"]


def test_a_tenant_id_that_cannot_be_a_label_value_is_an_input_error():
    import pytest

    from edgeplace.topology.errors import InputError

    config = parse_site_config({"tenants": [{"id": "acme corp", "namespaces": ["shop"]}]})
    with pytest.raises(InputError, match="tenant 'acme corp': is not a Kubernetes label value"):
        desired_state(cluster(), config)
