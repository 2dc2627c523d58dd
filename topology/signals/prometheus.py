"""Prometheus as a source of node and pod utilisation (HTTP API range queries).

    GET /api/v1/query_range?query=<PromQL>&start=<t>&end=<t>&step=<seconds>s
        -> {"status": "success",
            "data": {"resultType": "matrix",
                     "result": [{"metric": {"instance": "metro-1"}, "values": [[1782003600, "0.07"], ...]}]}}
        errors: {"status": "error", "errorType": "bad_data", "error": "..."} with 400 / 422 / 503

The step is one slot. Prometheus evaluates an expression *at* each step
time, looking back over its range window, so the samples are taken at slot
ends with a window of one slot ([3600s] for hourly slots) and each sample is
assigned to the slot that ends there: the value is that slot's mean. Queries
longer than 10,000 steps are split (Prometheus refuses more than 11,000
points per series). NaN and infinite samples are missing values (gaps).

Default queries (node_exporter and cAdvisor metric names; `{label}` is the
label that carries the node name, `{window}` the slot length):

- node CPU utilisation [fraction]:
  1 - avg by ({label}) (rate(node_cpu_seconds_total{mode="idle"}[{window}]))
- pod CPU usage [cores]:
  sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{container!="", pod!=""}[{window}]))

A series maps to a scenario node when its label value is the node id, or is
the node id followed by :port (node_exporter's `instance`). Auth: a bearer
token from PROMETHEUS_TOKEN, when set. Base URL: PROMETHEUS_URL or given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from edgeplace.topology.errors import InputError, Problem
from edgeplace.topology.signals.series import Points, SlotGrid
from edgeplace.topology.signals.services import Body, ServiceConfig

URL_ENV = "PROMETHEUS_URL"
TOKEN_ENV = "PROMETHEUS_TOKEN"
NODE_CPU_QUERY = '1 - avg by ({label}) (rate(node_cpu_seconds_total{{mode="idle"}}[{window}]))'
POD_CPU_QUERY = 'sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{{container!="", pod!=""}}[{window}]))'
#: Steps per request; Prometheus refuses more than 11,000 points per series.
MAX_STEPS = 10_000
#: Utilisation a hair outside 0..1 (counter arithmetic) is clipped; more is a wrong query.
CLIP_TOLERANCE = 1e-6


@dataclass(frozen=True)
class RangeSeries:
    """One series of a range query: its labels and samples (epoch seconds, float)."""

    labels: dict[str, str]
    times_s: np.ndarray
    values: np.ndarray


class Prometheus:
    name = "prometheus"
    label = "Prometheus"

    def __init__(self, config: ServiceConfig):
        base = config.base_url or config.env.get(URL_ENV)
        if not base:
            raise InputError(self.label, [Problem(URL_ENV, f"is not set; export {URL_ENV}=http://prometheus:9090 "
                                                           f"or pass --base-url")])
        self.base = str(base).rstrip("/")
        token = (config.env.get(TOKEN_ENV) or "").strip()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = config.client(self.label, auth_hint=f"check {TOKEN_ENV}")

    def query_range(self, query: str, start_s: float, end_s: float, step_s: float) -> list[RangeSeries]:
        """Evaluate `query` at start, start + step, ..., end (epoch seconds), split into requests of MAX_STEPS."""
        url = f"{self.base}/api/v1/query_range"
        chunks = []
        a = start_s
        while a <= end_s:
            b = min(end_s, a + (MAX_STEPS - 1) * step_s)
            doc = self.http.get_json(url, {"query": query, "start": _num(a), "end": _num(b), "step": f"{_num(step_s)}s"},
                                     self.headers)
            chunks.append(self._matrix(url, doc))
            a = b + step_s
        return _merged(chunks)

    def raw_samples(self, selector: str, start_s: float, end_s: float, chunk_s: float = 6 * 3600) -> list[RangeSeries]:
        """Every stored sample of the series `selector` matches in (start, end] (epoch seconds), as
        scraped: instant queries of the range selector `selector[chunk]` at each chunk's end (a range
        selector is left-open, so the chunks neither overlap nor leave gaps)."""
        url = f"{self.base}/api/v1/query"
        chunks = []
        a = start_s
        while a < end_s:
            b = min(end_s, a + chunk_s)
            doc = self.http.get_json(url, {"query": f"{selector}[{_num(b - a)}s]", "time": _num(b)}, self.headers)
            chunks.append(self._matrix(url, doc))
            a = b
        return _merged(chunks)

    def _matrix(self, url: str, doc) -> list[RangeSeries]:
        body = Body(f"{self.label} response from {url}")
        status = body.field(doc, "status", "", str)
        if status == "error":
            raise InputError(f"{self.label} ({url})", [Problem(str(doc.get("errorType", "error")),
                                                               f"the query failed: {doc.get('error', '')}")])
        if status is not None and status != "success":
            body.bad("status", f"should be success or error, got {status!r}")
        data = body.field(doc, "data", "", dict)
        kind = body.field(data, "resultType", "data", str) if data is not None else None
        if kind is not None and kind != "matrix":
            body.bad("data.resultType", f"is {kind!r}; a range query over an instant expression gives matrix: "
                                        f"check the query")
        result = body.field(data, "result", "data", list) if data is not None else None
        out = []
        for i, item in enumerate(result or []):
            where = f"data.result[{i}]"
            metric = body.field(item, "metric", where, dict)
            values = body.field(item, "values", where, list)
            if metric is None or values is None:
                continue
            times, samples = [], []
            for j, pair in enumerate(values):
                if (not isinstance(pair, list) or len(pair) != 2 or isinstance(pair[0], bool)
                        or not isinstance(pair[0], (int, float)) or not isinstance(pair[1], str)):
                    body.bad(f"{where}.values[{j}]", "should be [unix time, \"value\"]")
                    continue
                try:
                    v = float(pair[1])
                except ValueError:
                    body.bad(f"{where}.values[{j}][1]", f"{pair[1]!r} is not a number")
                    continue
                times.append(float(pair[0]))
                samples.append(v if math.isfinite(v) else math.nan)
            out.append(RangeSeries({str(k): str(v) for k, v in metric.items()},
                                   np.asarray(times, dtype=float), np.asarray(samples, dtype=float)))
        body.check()
        return out

    def slot_query(self, query: str, grid: SlotGrid) -> list[RangeSeries]:
        """`query` evaluated at every slot end, each sample moved to its slot's start."""
        step = grid.slot_seconds
        series = self.query_range(query, grid.start_s + step, grid.start_s + grid.slots * step, step)
        return [RangeSeries(s.labels, s.times_s - step, s.values) for s in series]

    def node_utilisation(self, grid: SlotGrid, node_ids: Sequence[str], *, label: str = "instance",
                         query: str | None = None) -> dict[str, Points]:
        """CPU utilisation [fraction] per scenario node found in the answer."""
        window = f"{int(grid.slot_seconds)}s"
        expr = query or NODE_CPU_QUERY.format(label=label, window=window)
        found: dict[str, Points] = {}
        for s in self.slot_query(expr, grid):
            node = match_node(s.labels.get(label, ""), node_ids)
            if node is None or node in found:
                continue
            values = s.values.copy()
            near = (values > -CLIP_TOLERANCE) & (values < 1 + CLIP_TOLERANCE)
            values[near] = np.clip(values[near], 0.0, 1.0)
            found[node] = Points(s.times_s, values, grid.slot_seconds, f"{self.label} {label}={s.labels.get(label)}")
        return found

    def pod_cpu_cores(self, grid: SlotGrid, *, namespace: str | None = None,
                      query: str | None = None) -> dict[tuple[str, str], Points]:
        """CPU used per pod [cores], keyed (namespace, pod); `namespace` filters the default query."""
        window = f"{int(grid.slot_seconds)}s"
        expr = query or POD_CPU_QUERY.format(window=window)
        if namespace and query is None:
            expr = expr.replace('pod!=""', f'pod!="", namespace="{_escape(namespace)}"')
        out = {}
        for s in self.slot_query(expr, grid):
            key = (s.labels.get("namespace", ""), s.labels.get("pod", ""))
            out[key] = Points(s.times_s, s.values, grid.slot_seconds, f"{self.label} pod {key[0]}/{key[1]}")
        return out


def _merged(chunks: Sequence[list[RangeSeries]]) -> list[RangeSeries]:
    """The series of several answers joined by their labels, samples in time order."""
    merged: dict[tuple, tuple[dict[str, str], dict[float, float]]] = {}
    for chunk in chunks:
        for s in chunk:
            key = tuple(sorted(s.labels.items()))
            merged.setdefault(key, (s.labels, {}))[1].update(zip(s.times_s.tolist(), s.values.tolist()))
    out = []
    for labels, samples in merged.values():
        times = np.array(sorted(samples), dtype=float)
        out.append(RangeSeries(labels, times, np.array([samples[t] for t in times], dtype=float)))
    return out


def match_node(value: str, node_ids: Sequence[str] | Mapping[str, object]) -> str | None:
    """The node id a label value names: exactly, or with a :port suffix."""
    if value in node_ids:
        return value
    host, sep, port = value.rpartition(":")
    if sep and port.isdigit() and host in node_ids:
        return host
    return None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


__all__ = ["NODE_CPU_QUERY", "POD_CPU_QUERY", "Prometheus", "RangeSeries", "TOKEN_ENV", "URL_ENV", "match_node"]
