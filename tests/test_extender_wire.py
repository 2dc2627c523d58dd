"""edgeplace.k8s.extender.wire: the extender v1 JSON, field by field, against the Go types.

Payloads are written by hand from k8s.io/kube-scheduler/extender/v1/types.go
(no json tags, so the Go field names are the JSON names) and from what
kube-scheduler's client (pkg/scheduler/extender.go) sends: Go's encoder
writes every field, so the list it does not use is `null`.

The last section cross-checks against Go itself when the toolchain and the
cached k8s.io/kube-scheduler module are on the machine (the e2e tier puts
them there): Go encodes the requests we parse, and decodes (strictly) and
re-encodes every answer we build; the re-encoding must carry exactly our keys.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edgeplace.k8s.extender.table import Outcome
from edgeplace.k8s.extender.wire import (WireError, error_body, filter_result, host_priority_list, loads, parse_cpu_quantity,
                               parse_extender_args, parse_preemption_args, pod_cpu_cores, preemption_result)

# A pending pod as kube-scheduler holds it (from its informer) and marshals it.
POD = {
    "metadata": {
        "name": "web-7d9f-x2x4p", "generateName": "web-7d9f-", "namespace": "shop",
        "uid": "5f0c2b1e-8d3a-4c1b-9e2f-1a2b3c4d5e6f", "resourceVersion": "4711",
        "creationTimestamp": "2026-06-21T10:00:00Z",
        "labels": {"app": "web", "pod-template-hash": "7d9f"},
        "annotations": {"edgeplace.io/workload": "web", "edgeplace.io/tenant": "acme"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f",
                             "uid": "0a1b", "controller": True, "blockOwnerDeletion": True}],
        "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                           "time": "2026-06-21T10:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}],
    },
    "spec": {
        "containers": [
            {"name": "web", "image": "registry.example/web:1.2",
             "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"cpu": "1"}},
             "terminationMessagePath": "/dev/termination-log", "imagePullPolicy": "IfNotPresent"},
            {"name": "sidecar", "image": "registry.example/proxy:3", "resources": {"requests": {"cpu": "0.5"}}},
        ],
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default", "schedulerName": "default-scheduler", "priority": 0,
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                         "tolerationSeconds": 300}],
        "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
    },
    "status": {"phase": "Pending", "qosClass": "Burstable"},
}


def node(name: str) -> dict:
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": "12", "creationTimestamp": "2026-06-20T00:00:00Z",
                     "labels": {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": "zone-a"},
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
        "spec": {"podCIDR": "10.244.1.0/24", "taints": [{"key": "edge", "value": "true", "effect": "PreferNoSchedule"}]},
        "status": {"capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                   "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                   "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                   "lastHeartbeatTime": "2026-06-21T09:59:00Z",
                                   "lastTransitionTime": "2026-06-20T00:00:00Z"}],
                   "addresses": [{"type": "InternalIP", "address": "10.0.0.7"}],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                   "nodeInfo": {"kubeletVersion": "v1.37.2", "operatingSystem": "linux", "architecture": "amd64"}},
    }


def body(doc) -> bytes:
    return json.dumps(doc).encode()


NAMES_ARGS = {"Pod": POD, "Nodes": None, "NodeNames": ["n1", "n2", "n3"]}
NODES_ARGS = {"Pod": POD, "Nodes": {"metadata": {}, "items": [node("n1"), node("n2"), node("n3")]}, "NodeNames": None}


# ---------------------------------------------------------------------------
# Requests


def test_node_cache_capable_args():
    args = parse_extender_args(body(NAMES_ARGS))
    assert args.node_names == ["n1", "n2", "n3"]
    assert args.node_list is None and args.node_items is None and args.node_cache_capable
    pod = args.pod
    assert (pod.name, pod.namespace, pod.uid) == ("web-7d9f-x2x4p", "shop", "5f0c2b1e-8d3a-4c1b-9e2f-1a2b3c4d5e6f")
    assert (pod.workload, pod.workload_source, pod.tenant, pod.system) == ("web", "annotation", "acme", False)
    assert pod.cpu_cores == pytest.approx(0.75)  # 250m + 0.5


def test_full_node_args():
    args = parse_extender_args(body(NODES_ARGS))
    assert args.node_names == ["n1", "n2", "n3"]
    assert not args.node_cache_capable and args.node_list == {"metadata": {}}
    assert [json.loads(item) for item in args.node_items] == [node("n1"), node("n2"), node("n3")]


@pytest.mark.parametrize("doc, names", [
    ({"Pod": POD, "NodeNames": ["a"]}, ["a"]),                            # absent == null
    ({"Pod": POD, "Nodes": {"metadata": {}, "items": None}}, []),        # Go: an empty NodeList has items null
    ({"Pod": POD, "Nodes": {"items": []}, "NodeNames": None}, []),
    ({"Pod": POD, "Nodes": None, "NodeNames": []}, []),
    ({"Pod": POD, "NodeNames": ["a"], "Extra": 1}, ["a"]),               # unknown fields are ignored, as in Go
])
def test_args_variants(doc, names):
    assert parse_extender_args(body(doc)).node_names == names


def test_pod_defaults_without_metadata():
    pod = parse_extender_args(body({"Pod": {}, "NodeNames": []})).pod
    assert (pod.name, pod.namespace, pod.workload, pod.workload_source, pod.tenant) == ("", "default", None, "none", None)
    assert pod.cpu_cores is None


@pytest.mark.parametrize("raw, field, message", [
    (b"{", "body", "not valid JSON"),
    (b"", "body", "not valid JSON"),
    (b"\xff\xfe{}", "body", "not valid UTF-8"),
    (b'{"Pod": NaN}', "body", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "body", "nested too deeply"),
    (b"1" * 5000, "body", "not valid JSON"),  # an integer too long to convert
    (b"[]", "body", "must be a JSON object (ExtenderArgs)"),
    (body({"NodeNames": []}), "Pod", "is required"),
    (body({"Pod": None, "NodeNames": []}), "Pod", "is required"),
    (body({"Pod": "x", "NodeNames": []}), "Pod", "must be an object (got string)"),
    (body({"Pod": {"metadata": []}, "NodeNames": []}), "Pod.metadata", "must be an object (got array)"),
    (body({"Pod": {"metadata": {"namespace": 3}}, "NodeNames": []}), "Pod.metadata.namespace", "must be a string"),
    (body({"Pod": {"metadata": {"annotations": {"a": 1}}}, "NodeNames": []}), "Pod.metadata.annotations.a",
     "must be a string (got number)"),
    (body({"Pod": POD}), "NodeNames", "is required (or Nodes"),
    (body({"Pod": POD, "Nodes": None, "NodeNames": None}), "NodeNames", "is required"),
    (body({"Pod": POD, "Nodes": {"items": []}, "NodeNames": []}), "Nodes", "both set"),
    (body({"Pod": POD, "NodeNames": "n1"}), "NodeNames", "must be an array of strings (got string)"),
    (body({"Pod": POD, "NodeNames": ["n1", 2]}), "NodeNames[1]", "must be a string (got number)"),
    (body({"Pod": POD, "NodeNames": ["n1", None]}), "NodeNames[1]", "must be a string (got null)"),
    (body({"Pod": POD, "Nodes": []}), "Nodes", "must be an object (got array)"),
    (body({"Pod": POD, "Nodes": {"items": {}}}), "Nodes.items", "must be an array of Node objects"),
    (body({"Pod": POD, "Nodes": {"items": [None]}}), "Nodes.items[0]", "is required"),
    (body({"Pod": POD, "Nodes": {"items": [{}]}}), "Nodes.items[0].metadata", "is required"),
    (body({"Pod": POD, "Nodes": {"items": [{"metadata": {"name": 5}}]}}), "Nodes.items[0].metadata.name",
     "must be a string"),
])
def test_malformed_args_name_the_field(raw, field, message):
    with pytest.raises(WireError, match=re.escape(message)) as info:
        parse_extender_args(raw)
    assert info.value.field == field
    assert message in info.value.message
    assert str(info.value).startswith(f"{field}: ")


def test_preemption_args_meta_and_full():
    meta = parse_preemption_args(body({"Pod": POD, "NodeNameToVictims": None, "NodeNameToMetaVictims": {
        "n1": {"Pods": [{"UID": "a"}, {"UID": "b"}], "NumPDBViolations": 1}, "n2": None}}))
    # n2 (null) has no victims: kube-scheduler refuses such a node in an answer, so it is no candidate.
    assert meta.victims == {"n1": {"Pods": [{"UID": "a"}, {"UID": "b"}], "NumPDBViolations": 1}}
    victim = copy.deepcopy(POD)
    victim["metadata"]["uid"] = "v-1"
    full = parse_preemption_args(body({"Pod": POD, "NodeNameToVictims": {
        "n1": {"Pods": [victim], "NumPDBViolations": 2}}, "NodeNameToMetaVictims": None}))
    assert full.victims == {"n1": {"Pods": [{"UID": "v-1"}], "NumPDBViolations": 2}}  # always answered as MetaVictims


@pytest.mark.parametrize("doc, field", [
    ({"Pod": POD}, "NodeNameToMetaVictims"),
    ({"Pod": POD, "NodeNameToVictims": {}, "NodeNameToMetaVictims": {}}, "NodeNameToVictims"),
    ({"Pod": POD, "NodeNameToMetaVictims": []}, "NodeNameToMetaVictims"),
    ({"Pod": POD, "NodeNameToMetaVictims": {"n1": {"Pods": {}}}}, "NodeNameToMetaVictims.n1.Pods"),
    ({"Pod": POD, "NodeNameToMetaVictims": {"n1": {"Pods": [{"UID": 1}]}}}, "NodeNameToMetaVictims.n1.Pods[0].UID"),
    ({"Pod": POD, "NodeNameToMetaVictims": {"n1": {"NumPDBViolations": "1"}}},
     "NodeNameToMetaVictims.n1.NumPDBViolations"),
    ({"Pod": POD, "NodeNameToMetaVictims": {"n1": {"NumPDBViolations": True}}},
     "NodeNameToMetaVictims.n1.NumPDBViolations"),
    ({"NodeNameToMetaVictims": {}}, "Pod"),
])
def test_malformed_preemption_args(doc, field):
    with pytest.raises(WireError, match=re.escape(field)) as info:
        parse_preemption_args(body(doc))
    assert info.value.field == field


@pytest.mark.parametrize("quantity, cores", [
    ("250m", 0.25), ("1", 1.0), ("1.5", 1.5), ("0.5", 0.5), (".5", 0.5), ("2k", 2000.0), ("1e3", 1000.0),
    ("500000u", 0.5), ("100000000n", 0.1), ("1Ki", 1024.0), (2, 2.0), (0.25, 0.25),
    ("", None), ("abc", None), ("1x", None), (None, None), (True, None), ("9" * 100, None),
])
def test_parse_cpu_quantity(quantity, cores):
    got = parse_cpu_quantity(quantity)
    assert got == (pytest.approx(cores) if cores is not None else None)


def test_pod_cpu_cores_ignores_odd_shapes():
    assert pod_cpu_cores({"spec": {"containers": [{"resources": {"requests": {"cpu": "x"}}}, "junk", {}]}}) is None
    assert pod_cpu_cores({"spec": "x"}) is None


# ---------------------------------------------------------------------------
# Answers

FILTER_KEYS = ["Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"]
P, A, NA, NW = Outcome.PASS, Outcome.ASLEEP, Outcome.NOT_ALLOWED, Outcome.NEVER_WITH
O = Outcome.OUTRANKED
MESSAGES = {A: "asleep", NA: "not allowed", NW: "never with"}


def test_filter_result_for_node_names():
    args = parse_extender_args(body(NAMES_ARGS))
    out = json.loads(filter_result(args, [P, A, NW], MESSAGES))
    assert list(out) == FILTER_KEYS  # exact casing and Go's field order
    assert out == {"Nodes": None, "NodeNames": ["n1"], "FailedNodes": {"n2": "asleep"},
                   "FailedAndUnresolvableNodes": {"n3": "never with"}, "Error": ""}


def test_filter_result_for_full_nodes_returns_the_objects_unchanged():
    args = parse_extender_args(body(NODES_ARGS))
    out = json.loads(filter_result(args, [NA, P, P], MESSAGES))
    assert list(out) == FILTER_KEYS
    assert out["NodeNames"] is None
    assert out["Nodes"] == {"metadata": {}, "items": [node("n2"), node("n3")]}
    assert out["FailedAndUnresolvableNodes"] == {"n1": "not allowed"} and out["FailedNodes"] == {}


def test_neutral_filter_passes_everything_in_the_request_form():
    out = json.loads(filter_result(parse_extender_args(body(NAMES_ARGS))))
    assert out["NodeNames"] == ["n1", "n2", "n3"] and out["FailedNodes"] == {} and out["Error"] == ""
    out = json.loads(filter_result(parse_extender_args(body(NODES_ARGS))))
    assert out["Nodes"]["items"] == NODES_ARGS["Nodes"]["items"]


def test_filter_result_never_answers_null_names():
    # kube-scheduler reads NodeNames only when non-null; null would filter every node out.
    args = parse_extender_args(body({"Pod": POD, "NodeNames": ["n1"]}))
    out = json.loads(filter_result(args, [NA], MESSAGES))
    assert out["NodeNames"] == []
    out = json.loads(filter_result(parse_extender_args(body({"Pod": POD, "NodeNames": []}))))
    assert out["NodeNames"] == []


def test_host_priority_list():
    out = json.loads(host_priority_list(["n1", "n2"], [10, 0]))
    assert out == [{"Host": "n1", "Score": 10}, {"Host": "n2", "Score": 0}]
    assert [list(h) for h in out] == [["Host", "Score"]] * 2
    assert json.loads(host_priority_list(["a", "b"])) == [{"Host": "a", "Score": 0}, {"Host": "b", "Score": 0}]
    assert host_priority_list([]) == b"[]"


def test_host_priority_list_uses_precomputed_fragments_and_escapes_the_rest():
    table_nodes = ["n1", "n2"]
    host_score = [b'{"Host":"%s","Score":%d}' % (n.encode(), s) for s in range(11) for n in table_nodes]
    out = json.loads(host_priority_list(["n2", "n1"], [7, 3], host_score, [1, 0]))
    assert out == [{"Host": "n2", "Score": 7}, {"Host": "n1", "Score": 3}]
    odd = 'we"ird\\\u00e9\ud800'  # not in the table: encoded on the spot
    out = json.loads(host_priority_list(["n1", odd], [7, 3], host_score, [0, -1]))
    assert out == [{"Host": "n1", "Score": 7}, {"Host": odd, "Score": 3}]


def test_filter_result_from_precomputed_fragments_matches():
    from edgeplace.k8s.extender.table import EncodedNodes

    encoded = EncodedNodes.build(["n1", "n2", "n3"], MESSAGES)
    args = parse_extender_args(body(NAMES_ARGS))
    for codes in ([P, A, NW], [NA, NA, NA], [P, P, P], [A, NW, NA]):
        fast = filter_result(args, codes, MESSAGES, encoded, [0, 1, 2])
        assert json.loads(fast) == json.loads(filter_result(args, codes, MESSAGES))
        assert list(json.loads(fast)) == FILTER_KEYS


def test_filter_result_without_failures_lists_no_failed_node_when_some_node_passes():
    """failures=False (compact replies): the passing nodes only, in both request forms and from
    fragments; when nothing passes both maps are written as always (FailedScheduling, preemption)."""
    from edgeplace.k8s.extender.table import EncodedNodes

    encoded = EncodedNodes.build(["n1", "n2", "n3"], MESSAGES)
    names_args, nodes_args = parse_extender_args(body(NAMES_ARGS)), parse_extender_args(body(NODES_ARGS))
    for codes in ([P, A, NW], [NA, P, A], [P, P, P], [O, P, NA]):
        full = json.loads(filter_result(names_args, codes, MESSAGES))
        for out in (json.loads(filter_result(names_args, codes, MESSAGES, failures=False)),
                    json.loads(filter_result(names_args, codes, MESSAGES, encoded, [0, 1, 2], failures=False))):
            assert out == {**full, "FailedNodes": {}, "FailedAndUnresolvableNodes": {}}
        out = json.loads(filter_result(nodes_args, codes, MESSAGES, failures=False))
        assert out["Nodes"] == json.loads(filter_result(nodes_args, codes, MESSAGES))["Nodes"]
        assert out["FailedNodes"] == {} and out["FailedAndUnresolvableNodes"] == {}
    for codes in ([NA, A, NW], [A, A, NA]):
        for args in (names_args, nodes_args):
            assert filter_result(args, codes, MESSAGES, failures=False) == filter_result(args, codes, MESSAGES)
        assert json.loads(filter_result(names_args, codes, MESSAGES, encoded, [0, 1, 2], failures=False)) == (
            json.loads(filter_result(names_args, codes, MESSAGES)))


def test_outranked_nodes_are_in_neither_failure_map():
    from edgeplace.k8s.extender.table import EncodedNodes

    args = parse_extender_args(body(NAMES_ARGS))
    want = {"Nodes": None, "NodeNames": ["n2"], "FailedNodes": {}, "FailedAndUnresolvableNodes": {"n3": "never with"},
            "Error": ""}
    assert json.loads(filter_result(args, [O, P, NW], MESSAGES)) == want
    encoded = EncodedNodes.build(["n1", "n2", "n3"], MESSAGES)
    assert json.loads(filter_result(args, [O, P, NW], MESSAGES, encoded, [0, 1, 2])) == want


def test_filter_result_escapes_odd_names():
    odd = 'a"b\\c\u2028\ud800'
    args = parse_extender_args(json.dumps({"Pod": POD, "NodeNames": [odd, "x"]}).encode())
    out = json.loads(filter_result(args, [P, NA], MESSAGES))
    assert out["NodeNames"] == [odd] and out["FailedAndUnresolvableNodes"] == {"x": "not allowed"}


def test_preemption_result():
    victims = {"n1": {"Pods": [{"UID": "a"}], "NumPDBViolations": 0}, "n2": {"Pods": [{"UID": "b"}], "NumPDBViolations": 1}}
    assert json.loads(preemption_result(victims)) == {"NodeNameToMetaVictims": victims}
    assert json.loads(preemption_result(victims, [False, True])) == {"NodeNameToMetaVictims": {"n2": victims["n2"]}}
    assert json.loads(preemption_result({})) == {"NodeNameToMetaVictims": {}}


def test_error_body():
    assert json.loads(error_body('NodeNames[1]: must be a "string"')) == {"Error": 'NodeNames[1]: must be a "string"'}


def test_loads_is_strict_json():
    assert loads(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
    with pytest.raises(WireError, match="not valid JSON"):
        loads(b"Infinity")


# ---------------------------------------------------------------------------
# Cross-check with Go's encoding/json and the real extender v1 types

GO_CHECKER = r'''
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	extenderv1 "k8s.io/kube-scheduler/extender/v1"
)

func pod(uid string) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "uid-1",
			Annotations: map[string]string{"edgeplace.io/workload": "web"}},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "main", Image: "x",
			Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("250m")}}}}},
	}
}

func node(name string) v1.Node {
	return v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func main() {
	var out any
	switch os.Args[1] {
	case "args-names":
		names := []string{"n1", "n2", "n3"}
		out = &extenderv1.ExtenderArgs{Pod: pod("uid-1"), NodeNames: &names}
	case "args-nodes":
		out = &extenderv1.ExtenderArgs{Pod: pod("uid-1"), Nodes: &v1.NodeList{Items: []v1.Node{node("n1"), node("n2"), node("n3")}}}
	case "args-empty-nodes":
		out = &extenderv1.ExtenderArgs{Pod: pod("uid-1"), Nodes: &v1.NodeList{}}
	case "preempt-meta":
		out = &extenderv1.ExtenderPreemptionArgs{Pod: pod("uid-1"), NodeNameToMetaVictims: map[string]*extenderv1.MetaVictims{
			"n1": {Pods: []*extenderv1.MetaPod{{UID: "v1"}}, NumPDBViolations: 1}}}
	case "preempt-full":
		victim := pod("v1")
		victim.UID = "v1"
		out = &extenderv1.ExtenderPreemptionArgs{Pod: pod("uid-1"), NodeNameToVictims: map[string]*extenderv1.Victims{
			"n1": {Pods: []*v1.Pod{victim}, NumPDBViolations: 2}}}
	case "decode-args", "decode-preempt": // as an extender written in Go would read a request
		data, _ := io.ReadAll(os.Stdin)
		var target any = &extenderv1.ExtenderArgs{}
		if os.Args[1] == "decode-preempt" {
			target = &extenderv1.ExtenderPreemptionArgs{}
		}
		if err := json.Unmarshal(data, target); err != nil {
			fmt.Fprintln(os.Stderr, "decode:", err)
			os.Exit(1)
		}
		out = target
	case "sum-priorities": // what prioritizeNodes (schedule_one.go) does with a HostPriorityList: add up per host
		data, _ := io.ReadAll(os.Stdin)
		var list extenderv1.HostPriorityList
		if err := json.Unmarshal(data, &list); err != nil {
			fmt.Fprintln(os.Stderr, "decode:", err)
			os.Exit(1)
		}
		totals := map[string]int64{}
		for i := range list {
			totals[list[i].Host] += list[i].Score
		}
		out = totals
	case "check-preempt-result": // convertToVictims (extender.go), then callExtenders' check (preemption.go)
		data, _ := io.ReadAll(os.Stdin)
		var result extenderv1.ExtenderPreemptionResult
		if err := json.Unmarshal(data, &result); err != nil {
			fmt.Fprintln(os.Stderr, "decode:", err)
			os.Exit(1)
		}
		for nodeName, victims := range result.NodeNameToMetaVictims {
			if victims == nil {
				fmt.Fprintf(os.Stderr, "nil MetaVictims for node %q: convertToVictims dereferences it\n", nodeName)
				os.Exit(1)
			}
			if len(victims.Pods) == 0 {
				fmt.Fprintf(os.Stderr, "expected at least one victim pod on node %q\n", nodeName)
				os.Exit(1)
			}
		}
		out = &result
	default: // decode stdin strictly into the named result type, then encode it again
		data, _ := io.ReadAll(os.Stdin)
		targets := map[string]any{"ExtenderFilterResult": &extenderv1.ExtenderFilterResult{},
			"HostPriorityList": &extenderv1.HostPriorityList{}, "ExtenderPreemptionResult": &extenderv1.ExtenderPreemptionResult{}}
		target, ok := targets[os.Args[1]]
		if !ok {
			fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
			os.Exit(2)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(target); err != nil {
			fmt.Fprintln(os.Stderr, "decode:", err)
			os.Exit(1)
		}
		out = target
	}
	b, err := json.Marshal(out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "encode:", err)
		os.Exit(1)
	}
	os.Stdout.Write(b)
}
'''
KUBE_SCHEDULER_MODULE = "k8s.io/kube-scheduler@v0.37.2"
E2E_MODULE = Path(__file__).resolve().parents[1] / "k8s" / "e2e"


@pytest.fixture(scope="module")
def go_checker(tmp_path_factory) -> Path:
    """The Go checker binary, built offline from the module cache (skip when that cannot be done)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain on PATH")
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOPROXY": "off", "CGO_ENABLED": "0"}
    modcache = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, env=env).stdout.strip()
    if not (Path(modcache) / KUBE_SCHEDULER_MODULE).is_dir():
        pytest.skip(f"{KUBE_SCHEDULER_MODULE} is not in the Go module cache (k8s/e2e/build.sh fetches it)")
    key = hashlib.sha256(GO_CHECKER.encode() + (E2E_MODULE / "go.sum").read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("EDGEPLACE_E2E_CACHE", Path.home() / ".cache" / "edgeplace" / "e2e"))
    binary = cache / f"wirecheck-{key}"
    if binary.exists():
        return binary
    src = tmp_path_factory.mktemp("wirecheck")
    (src / "main.go").write_text(GO_CHECKER)
    shutil.copy(E2E_MODULE / "go.sum", src / "go.sum")
    gomod = (E2E_MODULE / "go.mod").read_text().replace("module edgeplace.dev/e2e", "module edgeplace.dev/wirecheck", 1)
    (src / "go.mod").write_text(gomod)
    cache.mkdir(parents=True, exist_ok=True)
    # The e2e build's flags, so that its build cache of k8s.io/api is reused.
    built = subprocess.run([go, "build", "-trimpath", "-o", str(binary), "."], cwd=src, env=env,
                           capture_output=True, text=True, timeout=600)
    if built.returncode != 0:
        pytest.skip(f"cannot build the Go wire checker offline: {built.stderr[-500:]}")
    return binary


def go(binary: Path, mode: str, stdin: bytes = b"") -> bytes:
    ok, out = go_try(binary, mode, stdin)
    assert ok, out.decode()
    return out


def go_try(binary: Path, mode: str, stdin: bytes = b"") -> tuple[bool, bytes]:
    """(Go accepted, its output or its error)."""
    done = subprocess.run([str(binary), mode], input=stdin, capture_output=True, timeout=30)
    return done.returncode == 0, done.stdout if done.returncode == 0 else done.stderr


def keys(x) -> object:
    """The JSON shape: keys (recursively) of objects, element shapes of arrays."""
    if isinstance(x, dict):
        return {k: keys(v) for k, v in x.items()}
    if isinstance(x, list):
        return [keys(v) for v in x]
    return type(x).__name__


@pytest.mark.parametrize("mode, names, cache_capable", [
    ("args-names", ["n1", "n2", "n3"], True),
    ("args-nodes", ["n1", "n2", "n3"], False),
    ("args-empty-nodes", [], False),
])
def test_go_encoded_args_parse(go_checker, mode, names, cache_capable):
    args = parse_extender_args(go(go_checker, mode))
    assert args.node_names == names and args.node_cache_capable is cache_capable
    assert (args.pod.workload, args.pod.namespace, args.pod.cpu_cores) == ("web", "shop", 0.25)


def test_go_encoded_preemption_args_parse(go_checker):
    assert parse_preemption_args(go(go_checker, "preempt-meta")).victims == {
        "n1": {"Pods": [{"UID": "v1"}], "NumPDBViolations": 1}}
    assert parse_preemption_args(go(go_checker, "preempt-full")).victims == {
        "n1": {"Pods": [{"UID": "v1"}], "NumPDBViolations": 2}}


@pytest.mark.parametrize("mode, codes", [("args-names", [P, A, NW]), ("args-names", None), ("args-nodes", [NA, P, P]),
                                         ("args-names", [O, P, NW])])
def test_go_decodes_our_filter_result_with_our_exact_keys(go_checker, mode, codes):
    ours = filter_result(parse_extender_args(go(go_checker, mode)), codes, MESSAGES)
    theirs = json.loads(go(go_checker, "ExtenderFilterResult", ours))
    mine = json.loads(ours)
    assert list(theirs) == list(mine)  # same names, same order, same casing
    assert theirs["NodeNames"] == mine["NodeNames"]
    assert theirs["FailedNodes"] == mine["FailedNodes"]
    assert theirs["FailedAndUnresolvableNodes"] == mine["FailedAndUnresolvableNodes"]
    assert theirs["Error"] == ""
    if mine["Nodes"] is not None:
        assert [n["metadata"]["name"] for n in theirs["Nodes"]["items"]] == [
            n["metadata"]["name"] for n in mine["Nodes"]["items"]]


def test_go_decodes_our_host_priority_list(go_checker):
    ours = host_priority_list(["n1", "n2"], [10, 3])
    assert json.loads(go(go_checker, "HostPriorityList", ours)) == json.loads(ours)
    assert go(go_checker, "HostPriorityList", b"[]") == b"[]"


def test_go_decodes_our_preemption_result(go_checker):
    ours = preemption_result({"n1": {"Pods": [{"UID": "a"}], "NumPDBViolations": 1}})
    theirs = json.loads(go(go_checker, "ExtenderPreemptionResult", ours))
    assert keys(theirs) == keys(json.loads(ours))
    assert theirs == json.loads(ours)


def test_go_decodes_our_error_body_as_a_filter_result(go_checker):
    theirs = json.loads(go(go_checker, "ExtenderFilterResult", error_body("NodeNames: is required")))
    assert theirs["Error"] == "NodeNames: is required"


# The reply rules as kube-scheduler's Go client applies them


@pytest.mark.parametrize("number", ["0", "7", "-1", "9223372036854775807", "-9223372036854775808",
                                    "9223372036854775808", "-9223372036854775809", "1.0", "1e3", "2.5", "-0",
                                    '"1"', "true", "null"])
def test_numbers_are_accepted_exactly_when_go_decodes_them(go_checker, number):
    request = json.loads(go(go_checker, "preempt-meta"))
    raw = json.dumps(request).replace('"NumPDBViolations": 1', f'"NumPDBViolations": {number}').encode()
    assert number.encode() in raw
    go_ok, why = go_try(go_checker, "decode-preempt", raw)
    try:
        parse_preemption_args(raw)
        ours = True
    except WireError as exc:
        ours = False
        assert exc.field == "NodeNameToMetaVictims.n1.NumPDBViolations"
    assert ours == go_ok, (number, why.decode())


def test_go_adds_up_each_host_of_our_prioritize_answer_once(go_checker):
    request = json.loads(go(go_checker, "args-names"))
    request["NodeNames"] = ["n1", "n2", "n1", "n3", "n2", "n1"]
    args = parse_extender_args(json.dumps(request).encode())
    ours = host_priority_list(args.node_names, [10, 4, 7])
    assert json.loads(go(go_checker, "sum-priorities", ours)) == {"n1": 10, "n2": 4, "n3": 7}
    # what a reply per copy would have given kube-scheduler: the check can fail
    naive = host_priority_list(request["NodeNames"], [10, 4, 10, 7, 4, 10])
    assert json.loads(go(go_checker, "sum-priorities", naive))["n1"] == 30


def test_go_accepts_our_preempt_answer_when_some_entries_have_no_victims(go_checker):
    request = json.loads(go(go_checker, "preempt-meta"))
    request["NodeNameToMetaVictims"].update({"n2": None, "n3": {"Pods": [], "NumPDBViolations": 0}})
    args = parse_preemption_args(json.dumps(request).encode())
    ours = preemption_result(args.victims)
    ok, why = go_try(go_checker, "check-preempt-result", ours)
    assert ok, why.decode()
    assert sorted(json.loads(ours)["NodeNameToMetaVictims"]) == ["n1"]
    for bad in ({"n2": None}, {"n3": {"Pods": [], "NumPDBViolations": 0}}):  # the check can fail
        ok, why = go_try(go_checker, "check-preempt-result", json.dumps({"NodeNameToMetaVictims": bad}).encode())
        assert not ok and (b"nil MetaVictims" in why or b"expected at least one victim" in why), why
