"""The scheduler extender v1 wire format: parsing request bodies, building answers.

Bodies are the JSON of the Go types in `k8s.io/kube-scheduler/extender/v1`
(types.go). Those structs carry no json tags, so the field names on the wire
are the Go field names exactly: ``Pod``, ``Nodes``, ``NodeNames``,
``FailedNodes``, ``FailedAndUnresolvableNodes``, ``Error``, ``Host``,
``Score``, ``NodeNameToVictims``, ``NodeNameToMetaVictims``, ``Pods``,
``NumPDBViolations``, ``UID``. The Pod and Node objects inside are core/v1
objects with their usual lower-case json names (``metadata.name``,
``items``).

What kube-scheduler's client (`pkg/scheduler/extender.go`) sends: Go's
encoder writes every field, so a nodeCacheCapable request is
``{"Pod": {...}, "Nodes": null, "NodeNames": ["n1", ...]}`` and a full-object
one ``{"Pod": {...}, "Nodes": {"metadata": {}, "items": [...]}, "NodeNames":
null}`` (``items`` is ``null`` for an empty list). ``null`` therefore means
absent here. What it reads back: a filter answer's ``NodeNames`` when it is
not null (nodeCacheCapable), else ``Nodes``; both null would filter every
node out, so an answer always carries the list the request used. A non-200
status or a non-empty ``Error`` is an extender failure (skipped when the
extender is ``ignorable``).

Malformed input raises `WireError` naming the field; the server answers it
with HTTP 400 and ``{"Error": "<field>: <message>"}``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from itertools import compress
from typing import Any, Iterable, Sequence

import numpy as np

from edgeplace.k8s.extender.table import Outcome
from edgeplace.k8s.identity import TENANT_ANNOTATION, owner_workload, workload_id


# ensure_ascii: a name holding a lone surrogate ("\ud800" is valid JSON) still encodes.
_DUMPS = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


class WireError(ValueError):
    """A request body does not match the extender v1 types; `field` says where."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)

    def __reduce__(self):  # raised in the helper process, re-raised in the server
        return (WireError, (self.field, self.message))


def _kind(x: Any) -> str:
    if x is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(x), type(x).__name__)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(body: bytes) -> Any:
    """Strict JSON: UTF-8 only (as Go reads it), no NaN/Infinity; `WireError` otherwise."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError("body", f"is not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise WireError("body", "is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, huge integers, NaN
        raise WireError("body", f"is not valid JSON ({str(exc)[:200]})") from None


# ---------------------------------------------------------------------------
# Requests

#: Default largest number of candidate nodes in one request (NodeNames, Nodes.items or
#: the victims map). kube-scheduler sends the nodes that passed its own filters, at most
#: its numFeasibleNodesToFind (all nodes only with percentageOfNodesToScore 100), so
#: this is above any cluster Kubernetes supports (5,000 nodes) and far below the
#: 840k names an 8 MiB body can hold. Larger requests get 400 without a decision.
DEFAULT_MAX_CANDIDATES = 10_000
_INT64 = (-2 ** 63, 2 ** 63 - 1)
#: Namespaces of the cluster's own components, and the built-in priority classes of pods the
#: cluster cannot run without: such pods are never steered (`PodRef.system`).
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
SYSTEM_PRIORITY_CLASSES = ("system-node-critical", "system-cluster-critical")


@dataclass(frozen=True)
class PodRef:
    """What the extender needs of the Pod being scheduled, read once when the body is parsed."""

    name: str
    namespace: str
    uid: str
    workload: str | None  # the workload id (`edgeplace.k8s.identity.pod_workload_id`); None for a DaemonSet's pod
    workload_source: str  # annotation | owner | daemonset (never steered) | none
    tenant: str | None  # annotation edgeplace.io/tenant
    system: bool  # a system namespace or a system priority class: never steered
    cpu_cores: float | None  # sum of the containers' CPU requests [cores]; None when the pod states none


@dataclass(frozen=True)
class ExtenderArgs:
    """ExtenderArgs: the pod and its candidate nodes, each name once (first occurrence)."""

    pod: PodRef
    node_names: list[str]
    # With full Node objects: the NodeList without its items, and (for filter, which answers
    # with them) each item's JSON in node_names order, so an answer is joined, not encoded
    # again. Both None for NodeNames; node_items None when not kept.
    node_list: dict | None
    node_items: list[bytes] | None
    #: The NodeNames array as sent (between its brackets) when the body was in the exact
    #: shape Go writes (`split_node_names`): `DecisionTable.best_in` searches it. Else None.
    names_json: bytes | None = None

    @property
    def node_cache_capable(self) -> bool:
        return self.node_list is None


@dataclass(frozen=True)
class PreemptionArgs:
    """ExtenderPreemptionArgs, with victims reduced to MetaVictims (pod UIDs).

    Only nodes with at least one victim: kube-scheduler refuses a preemption
    answer naming a node without victims ("expected at least one victim pod
    on node", `callExtenders` in pkg/scheduler/framework/preemption), so an
    entry that is null or has no pods is no candidate and is dropped.
    """

    pod: PodRef
    victims: dict[str, dict]  # node name -> {"Pods": [{"UID": ...}], "NumPDBViolations": n}


def _obj(x: Any, field: str, required: bool = False) -> dict | None:
    if x is None:
        if required:
            raise WireError(field, "is required (an object)")
        return None
    if not isinstance(x, dict):
        raise WireError(field, f"must be an object (got {_kind(x)})")
    return x


def _str(x: Any, field: str) -> str:
    if x is None:
        return ""
    if not isinstance(x, str):
        raise WireError(field, f"must be a string (got {_kind(x)})")
    return x


def _string_map(x: Any, field: str) -> dict[str, str]:
    m = _obj(x, field) or {}
    for key, value in m.items():
        if not isinstance(value, str):
            raise WireError(f"{field}.{key}", f"must be a string (got {_kind(value)})")
    return m


def _int64(x: Any, field: str) -> int:
    """A Go int64: a JSON integer in range (Go's decoder refuses 1.0, 1e3 and overflow)."""
    if x is None:
        return 0
    if not isinstance(x, int) or isinstance(x, bool):
        raise WireError(field, f"must be a whole number (got {_kind(x)} {_short(x)})")
    if not _INT64[0] <= x <= _INT64[1]:
        raise WireError(field, f"must fit a 64-bit integer (got {_short(x)})")
    return x


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 40 else text[:37] + "..."


def _candidates(n: int, field: str, limit: int) -> None:
    if n > limit:
        raise WireError(field, f"has {n} candidate nodes, more than the limit of {limit} per request "
                               f"(max_candidates, `--max-candidates`)")


def parse_pod(x: Any, field: str = "Pod") -> PodRef:
    """The Pod: its workload (`edgeplace.k8s.identity`), tenant, whether it is a system pod, CPU request."""
    pod = _obj(x, field, required=True)
    meta = _obj(pod.get("metadata"), f"{field}.metadata") or {}
    annotations = _string_map(meta.get("annotations"), f"{field}.metadata.annotations")
    _string_map(meta.get("labels"), f"{field}.metadata.labels")
    refs = meta.get("ownerReferences")
    if refs is not None:
        if not isinstance(refs, list):
            raise WireError(f"{field}.metadata.ownerReferences", f"must be an array (got {_kind(refs)})")
        for i, ref in enumerate(refs):
            where = f"{field}.metadata.ownerReferences[{i}]"
            ref = _obj(ref, where, required=True)
            _str(ref.get("kind"), f"{where}.kind"), _str(ref.get("name"), f"{where}.name")
            if not isinstance(ref.get("controller", False), (bool, type(None))):
                raise WireError(f"{where}.controller", f"must be true or false (got {_kind(ref['controller'])})")
    spec = _obj(pod.get("spec"), f"{field}.spec") or {}
    _str(spec.get("priorityClassName"), f"{field}.spec.priorityClassName")
    namespace = _str(meta.get("namespace"), f"{field}.metadata.namespace") or "default"
    owner = owner_workload(pod)
    if owner is not None and owner.kind == "DaemonSet":  # pinned to its node by its controller
        workload, source = None, "daemonset"
    else:
        workload = workload_id(annotations, owner)
        source = "none" if workload is None else "owner" if owner is not None and workload == owner.id else "annotation"
    return PodRef(name=_str(meta.get("name"), f"{field}.metadata.name"), namespace=namespace,
                  uid=_str(meta.get("uid"), f"{field}.metadata.uid"), workload=workload, workload_source=source,
                  tenant=annotations.get(TENANT_ANNOTATION) or None,
                  system=namespace in SYSTEM_NAMESPACES or spec.get("priorityClassName") in SYSTEM_PRIORITY_CLASSES,
                  cpu_cores=pod_cpu_cores(pod))


def parse_request(verb: str, body: bytes, max_candidates: int = DEFAULT_MAX_CANDIDATES) -> ExtenderArgs | PreemptionArgs:
    """The arguments of a filter, prioritize or preempt call."""
    if verb == "preempt":
        return parse_preemption_args(body, max_candidates)
    return parse_extender_args(body, max_candidates, keep_nodes=verb == "filter")


def parse_extender_args(body: bytes, max_candidates: int = DEFAULT_MAX_CANDIDATES,
                        keep_nodes: bool = True) -> ExtenderArgs:
    """ExtenderArgs from a filter or prioritize body; exactly one of Nodes / NodeNames non-null.

    `keep_nodes`: keep each Node object's JSON for the answer (filter answers with them;
    prioritize does not, so it skips encoding them: `node_items` is then None).

    A body in the exact shape kube-scheduler writes (`split_node_names`) has its names
    split from the bytes, which reads the same list as JSON would, at a fraction of the
    cost; any other body is read in full and checked field by field."""
    split = split_node_names(body, max_candidates)
    if split is not None:
        rest, names_json = split
        names = names_json[1:-1].decode("ascii").split('","') if names_json else []
        return ExtenderArgs(parse_pod(rest.get("Pod")), list(dict.fromkeys(names)), None, None, names_json)
    doc = loads(body)
    if not isinstance(doc, dict):
        raise WireError("body", f"must be a JSON object (ExtenderArgs), got {_kind(doc)}")
    names_raw, nodes_raw = doc.get("NodeNames"), doc.get("Nodes")
    if names_raw is not None and nodes_raw is not None:
        raise WireError("Nodes", "and NodeNames are both set; send NodeNames (nodeCacheCapable) or Nodes, not both")
    if names_raw is None and nodes_raw is None:
        raise WireError("NodeNames", "is required (or Nodes when the extender is not nodeCacheCapable)")
    if names_raw is not None:
        if not isinstance(names_raw, list):
            raise WireError("NodeNames", f"must be an array of strings (got {_kind(names_raw)})")
        _candidates(len(names_raw), "NodeNames", max_candidates)
        if not set(map(type, names_raw)) <= {str}:  # one C-level pass; find the culprit only on failure
            i = next(i for i, n in enumerate(names_raw) if type(n) is not str)
            raise WireError(f"NodeNames[{i}]", f"must be a string (got {_kind(names_raw[i])})")
        # kube-scheduler adds up the scores of a host listed twice: answer each name once.
        return ExtenderArgs(parse_pod(doc.get("Pod")), list(dict.fromkeys(names_raw)), None, None)
    nodes = _obj(nodes_raw, "Nodes")
    items = nodes.get("items")
    if items is None:
        items = []
    elif not isinstance(items, list):
        raise WireError("Nodes.items", f"must be an array of Node objects (got {_kind(items)})")
    _candidates(len(items), "Nodes.items", max_candidates)
    by_name: dict[str, bytes] = {}
    for i, node in enumerate(items):
        node = _obj(node, f"Nodes.items[{i}]", required=True)
        meta = _obj(node.get("metadata"), f"Nodes.items[{i}].metadata", required=True)
        name = meta.get("name")
        if not isinstance(name, str):
            raise WireError(f"Nodes.items[{i}].metadata.name", f"must be a string (got {_kind(name)})")
        if name not in by_name:
            by_name[name] = _DUMPS(node).encode() if keep_nodes else b""
    node_list = {k: v for k, v in nodes.items() if k != "items"}
    return ExtenderArgs(parse_pod(doc.get("Pod")), list(by_name), node_list,
                        list(by_name.values()) if keep_nodes else None)


_NODE_NAMES_KEY = b',"NodeNames":['


def split_node_names(body: bytes, max_candidates: int = DEFAULT_MAX_CANDIDATES) -> tuple[dict, bytes] | None:
    """A nodeCacheCapable filter or prioritize body as kube-scheduler writes it, split without
    decoding its node names: (the rest of ExtenderArgs parsed, with ``Nodes`` null; the
    inside of the ``NodeNames`` array as sent), or None when the body is not exactly that
    shape (then `parse_extender_args` reads it whole, and says what is wrong).

    Go's encoder writes the fields in order, ``NodeNames`` last, and no whitespace. The
    array qualifies when its elements are ASCII strings without escapes, commas or
    quotes inside (node names are DNS names): then ``"<name>"`` occurs in it exactly where a
    candidate is that name (`DecisionTable.best_in`)."""
    if not body.endswith(b"]}"):
        return None
    at = body.rfind(_NODE_NAMES_KEY)
    if at < 0:
        return None
    names = body[at + len(_NODE_NAMES_KEY):-2]
    if names:
        n = names.count(b",") + 1
        if (n > max_candidates or not names.isascii() or b"\\" in names or names[:1] != b'"'
                or names[-1:] != b'"' or names.count(b'"') != 2 * n or names.count(b'","') != n - 1):
            return None
    try:
        rest = loads(body[:at] + b"}")
    except WireError:
        return None
    if not isinstance(rest, dict) or rest.get("Nodes") is not None or "NodeNames" in rest:
        return None
    return rest, names


def parse_preemption_args(body: bytes, max_candidates: int = DEFAULT_MAX_CANDIDATES) -> PreemptionArgs:
    """ExtenderPreemptionArgs; exactly one of NodeNameToVictims / NodeNameToMetaVictims non-null."""
    doc = loads(body)
    if not isinstance(doc, dict):
        raise WireError("body", f"must be a JSON object (ExtenderPreemptionArgs), got {_kind(doc)}")
    full, meta = doc.get("NodeNameToVictims"), doc.get("NodeNameToMetaVictims")
    if full is not None and meta is not None:
        raise WireError("NodeNameToVictims", "and NodeNameToMetaVictims are both set; send one")
    if full is None and meta is None:
        raise WireError("NodeNameToMetaVictims", "is required (or NodeNameToVictims when not nodeCacheCapable)")
    field = "NodeNameToMetaVictims" if meta is not None else "NodeNameToVictims"
    victims_map = _obj(meta if meta is not None else full, field)
    _candidates(len(victims_map), field, max_candidates)
    out: dict[str, dict] = {}
    for node, victims in victims_map.items():
        path = f"{field}.{node}"
        victims = _obj(victims, path)
        if victims is None:
            continue  # no victims: not a candidate (see PreemptionArgs)
        pods = victims.get("Pods")
        if pods is None:
            pods = []
        elif not isinstance(pods, list):
            raise WireError(f"{path}.Pods", f"must be an array (got {_kind(pods)})")
        uids = []
        for i, p in enumerate(pods):
            p = _obj(p, f"{path}.Pods[{i}]", required=True)
            if meta is not None:
                uids.append(_str(p.get("UID"), f"{path}.Pods[{i}].UID"))
            else:
                pm = _obj(p.get("metadata"), f"{path}.Pods[{i}].metadata") or {}
                uids.append(_str(pm.get("uid"), f"{path}.Pods[{i}].metadata.uid"))
        pdb = _int64(victims.get("NumPDBViolations"), f"{path}.NumPDBViolations")
        if uids:
            out[node] = {"Pods": [{"UID": u} for u in uids], "NumPDBViolations": pdb}
    return PreemptionArgs(parse_pod(doc.get("Pod")), out)


# ---------------------------------------------------------------------------
# CPU quantities (resource.Quantity strings)

_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|n|u|[eE][+-]?[0-9]+)?$")
_SUFFIX = {None: 1.0, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 2.0 ** 10, "Mi": 2.0 ** 20, "Gi": 2.0 ** 30, "Ti": 2.0 ** 40, "Pi": 2.0 ** 50, "Ei": 2.0 ** 60}


def parse_cpu_quantity(q: Any) -> float | None:
    """A Kubernetes CPU quantity ("500m", "2", "1.5", "1e3") in cores; None if unreadable."""
    if isinstance(q, (int, float)) and not isinstance(q, bool):
        return float(q)
    if not isinstance(q, str) or len(q) > 64:
        return None
    m = _QUANTITY.match(q.strip())
    if not m:
        return None
    suffix = m.group(2)
    scale = _SUFFIX[suffix] if suffix in _SUFFIX else 10.0 ** int(suffix[1:])
    return float(m.group(1)) * scale


def pod_cpu_cores(pod: dict) -> float | None:
    """Sum of `spec.containers[*].resources.requests.cpu` [cores]; None if no container requests CPU."""
    spec = pod.get("spec")
    containers = spec.get("containers") if isinstance(spec, dict) else None
    if not isinstance(containers, list):
        return None
    total, found = 0.0, False
    for c in containers:
        res = c.get("resources") if isinstance(c, dict) else None
        req = res.get("requests") if isinstance(res, dict) else None
        cpu = parse_cpu_quantity(req.get("cpu")) if isinstance(req, dict) else None
        if cpu is not None and cpu >= 0:
            total += cpu
            found = True
    return total if found else None


# ---------------------------------------------------------------------------
# Answers

def error_body(message: str) -> bytes:
    """The body of a 4xx answer: ``{"Error": "..."}`` (the shape of ExtenderFilterResult.Error)."""
    return _DUMPS({"Error": message}).encode()


def filter_result(args: ExtenderArgs, codes: Sequence[int] | None = None,
                  messages: dict[int, str] | None = None, encoded: Any = None,
                  columns: Sequence[int] | None = None, failures: bool = True) -> bytes:
    """ExtenderFilterResult for `args`; `codes` (Outcome per candidate) None = every node passes.

    The passing nodes go back in the form the request used: ``NodeNames``
    (names) for a nodeCacheCapable request, ``Nodes`` (the Node objects,
    unchanged) otherwise; the other field is null, as Go's encoder writes it.
    ``FailedNodes`` holds the asleep nodes (preemption could help elsewhere),
    ``FailedAndUnresolvableNodes`` the ones no eviction makes usable; OUTRANKED
    nodes are in neither (the pod has better nodes, so it is not unschedulable).

    `failures` False leaves both maps empty when some node passes: kube-scheduler
    reads them only when the pod fits no node (the FailedScheduling message and
    preemption, `findNodesThatPassExtenders` / `FitError`), and a node it finds
    in neither map counts as UnschedulableAndUnresolvable, as the pod has
    somewhere to go anyway. When no node passes the maps are always written.

    `encoded` (`edgeplace.k8s.extender.table.EncodedNodes`) and `columns` (table column
    per candidate) let a NodeNames answer be joined from precomputed JSON
    fragments; the result is the same bytes' meaning either way.
    """
    names = args.node_names
    c = None if codes is None else np.asarray(codes, dtype=np.int8)
    if c is not None and not failures and (c == Outcome.PASS).any():
        c = np.where(c == Outcome.PASS, Outcome.PASS, Outcome.OUTRANKED).astype(np.int8)
    if (c is not None and encoded is not None and columns is not None and args.node_list is None
            and (not len(columns) or np.min(columns) >= 0)):
        return _filter_result_fragments(c, columns, encoded)
    failed: dict[str, str] = {}
    unresolvable: dict[str, str] = {}
    if c is None:
        keep = None
    else:
        keep = (c == Outcome.PASS).tolist()
        messages = messages or {}
        # One message per outcome: dict.fromkeys builds each map without a Python loop.
        failed = dict.fromkeys(compress(names, (c == Outcome.ASLEEP).tolist()), messages.get(Outcome.ASLEEP, ""))
        unresolvable = dict.fromkeys(compress(names, (c == Outcome.NOT_ALLOWED).tolist()),
                                     messages.get(Outcome.NOT_ALLOWED, ""))
        unresolvable.update(dict.fromkeys(compress(names, (c == Outcome.NEVER_WITH).tolist()),
                                          messages.get(Outcome.NEVER_WITH, "")))
    tail = _DUMPS({"FailedNodes": failed, "FailedAndUnresolvableNodes": unresolvable, "Error": ""}).encode()[1:]
    if args.node_list is None:
        return _DUMPS({"Nodes": None, "NodeNames": names if keep is None else list(compress(names, keep))}
                      ).encode()[:-1] + b"," + tail
    # The Node objects go back as they came (their JSON from parsing), joined into the NodeList.
    items = args.node_items if keep is None else list(compress(args.node_items, keep))
    head = _DUMPS(args.node_list).encode()[:-1]
    return (b'{"Nodes":' + head + (b"," if len(head) > 1 else b"") + b'"items":[' + b",".join(items)
            + b']},"NodeNames":null,' + tail)


def passing_result(columns: np.ndarray, encoded: Any) -> bytes:
    """The filter answer that passes exactly the nodes at table `columns` (others outranked),
    as `filter_result(..., failures=False)` writes it when some node passes."""
    return _filter_result_fragments(np.zeros(len(columns), dtype=np.int8), columns, encoded)


def _filter_result_fragments(c: np.ndarray, columns: Sequence[int], encoded: Any) -> bytes:
    cols = np.asarray(columns, dtype=np.int64)

    def join(fragments: list[bytes], mask: np.ndarray) -> bytes:
        return b",".join(map(fragments.__getitem__, cols[mask].tolist()))

    unresolvable = [part for part in (join(encoded.failed[Outcome.NOT_ALLOWED], c == Outcome.NOT_ALLOWED),
                                      join(encoded.failed[Outcome.NEVER_WITH], c == Outcome.NEVER_WITH)) if part]
    return (b'{"Nodes":null,"NodeNames":[' + join(encoded.names, c == Outcome.PASS)
            + b'],"FailedNodes":{' + join(encoded.failed[Outcome.ASLEEP], c == Outcome.ASLEEP)
            + b'},"FailedAndUnresolvableNodes":{' + b",".join(unresolvable) + b'},"Error":""}')


def host_priority_list(names: list[str], scores: Sequence[int] | None = None,
                       host_score: list[bytes] | None = None, columns: Sequence[int] | None = None,
                       omit_zero: bool = False) -> bytes:
    """HostPriorityList ``[{"Host": name, "Score": 0..10}, ...]``; `scores` None = all 0 (neutral).

    `host_score` (from the decision table) holds the precomputed fragment
    ``{"Host":"<node i>","Score":s}`` at ``s x N + i`` for the table's N
    nodes, and `columns` the column of each name (-1 = not in the table), so
    known names are not encoded again. `omit_zero` leaves out hosts scoring 0:
    kube-scheduler adds an extender's score only to the hosts it lists
    (`prioritizeNodes`), so an absent host and a 0 are the same to it.
    """
    if scores is None:
        return b"[]" if omit_zero else _DUMPS([{"Host": n, "Score": 0} for n in names]).encode()
    if omit_zero:
        keep = (np.asarray(scores) != 0).tolist()
        names, scores = list(compress(names, keep)), list(compress(scores, keep))
        columns = list(compress(columns, keep)) if columns is not None else None
    if host_score is None or columns is None or (len(columns) and min(columns) < 0):
        return _DUMPS([{"Host": n, "Score": int(s)} for n, s in zip(names, scores)]).encode()
    n_nodes = len(host_score) // 11
    flat = (np.asarray(scores, dtype=np.int64) * n_nodes + np.asarray(columns, dtype=np.int64)).tolist()
    return b"[" + b",".join(map(host_score.__getitem__, flat)) + b"]"


def preemption_result(victims: dict[str, dict], keep: Iterable[bool] | None = None) -> bytes:
    """ExtenderPreemptionResult ``{"NodeNameToMetaVictims": {...}}`` with the kept nodes' victims."""
    if keep is None:
        kept = victims
    else:
        kept = {node: v for (node, v), k in zip(victims.items(), keep) if k}
    return _DUMPS({"NodeNameToMetaVictims": kept}).encode()
