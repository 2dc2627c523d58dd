"""Kueue's real controller manager on a `LocalCluster`, with its webhooks on loopback.

``KueueRunner(cluster)`` installs Kueue's own CRDs and webhook configurations
(copied by ``k8s/e2e/build.sh`` from the sigs.k8s.io/kueue module the binary
was built from) into a running `LocalCluster` and starts ``kueue`` (its
``cmd/kueue``) against it, bound to 127.0.0.1 only.

Webhooks without cert-manager. Kueue's default, *internal certificate
management* (open-policy-agent's cert-controller), stays on: it keeps the
serving certificate in the Secret ``kueue-system/kueue-webhook-server-cert``,
writes it into ``webhook.certDir`` and injects its CA into the webhook
configurations and the CRDs' conversion webhooks. The only change is that the
Secret is provisioned here before Kueue starts (and its files written into
the certificate directory, as the kubelet mounts the Secret into Kueue's pod),
with a certificate valid for
``kueue-webhook-service.kueue-system.svc`` (what the rotator checks, so it
keeps it) *and* for IP 127.0.0.1, and every webhook's ``clientConfig`` is a
``url: https://127.0.0.1:<port>/<path>`` instead of a Service (there is no
kube-proxy, and Endpoints may not hold loopback addresses). So kube-apiserver
calls Kueue's real mutating, validating and conversion webhooks, as in a
cluster. Turning internal certificates off instead would make Kueue read its
metrics certificate from the fixed path /etc/kueue/metrics/certs, outside
anything a test should write.

Only the webhooks of what is enabled are registered: Kueue's own objects and
``batch/v1`` Jobs (``integrations.frameworks: [batch/job]``); the Pod,
Deployment and StatefulSet webhooks would intercept every pod of the cluster
for integrations that are off. The visibility API server (an aggregated API
needing a front proxy) is off (``VisibilityOnDemand=false``); leader election
is off (one replica).

Usage::

    with LocalCluster(controller_manager=True, kwok=True) as cluster:
        with KueueRunner(cluster) as kueue:
            ...   # create ResourceFlavors, ClusterQueues, LocalQueues, Jobs
"""

from __future__ import annotations

import base64
import copy
import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping

import kubernetes
import yaml

import edgeplace_e2e_cluster as e2e_cluster  # k8s/e2e/cluster.py, loaded by tests/e2e/conftest.py

NAMESPACE = "kueue-system"
SERVICE = "kueue-webhook-service"
SECRET = "kueue-webhook-server-cert"
#: CRDs whose conversion webhook Kueue serves (config/components/crd/kustomization.yaml's patches).
CONVERSION_CRDS = ("localqueues", "clusterqueues", "cohorts", "workloads", "multikueueclusters")
#: API groups whose webhooks are registered (Kueue's own objects and batch/v1 Jobs).
WEBHOOK_GROUPS = ("kueue.x-k8s.io", "batch")


def kueue_dir() -> Path:
    """Where build.sh puts kueue, its CRDs and its webhook manifests."""
    return e2e_cluster.cache_dir() / f"kueue-{e2e_cluster._build_script_pin('KUEUE_VERSION')}"


def find_kueue() -> Path:
    """The kueue binary; `BinariesMissing` naming build.sh when it is not built."""
    path = kueue_dir() / "kueue"
    if not (path.is_file() and (kueue_dir() / ".complete").is_file()):
        raise e2e_cluster.BinariesMissing(f"Kueue is not built ({path} missing): run {e2e_cluster.BUILD_SCRIPT}")
    return path


def inline_kubeconfig(cluster: e2e_cluster.LocalCluster) -> str:
    """The cluster's admin kubeconfig with the certificates inline (MultiKueue refuses file paths)."""
    pki = cluster.workdir / "pki"

    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "e2e",
        "clusters": [{"name": "e2e", "cluster": {"server": cluster.server, "certificate-authority-data": b64("ca.crt")}}],
        "users": [{"name": "admin", "user": {"client-certificate-data": b64("admin.crt"),
                                             "client-key-data": b64("admin.key")}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}]})


class KueueRunner:
    """Kueue's controller manager for one `LocalCluster` (see the module docstring); a context manager.

    config : extra fields merged into Kueue's ``Configuration`` (e.g.
        ``{"multiKueue": {"dispatcherName": ...}}``)
    """

    def __init__(self, cluster: e2e_cluster.LocalCluster, config: Mapping[str, Any] | None = None,
                 startup_timeout: float = 120.0, name: str = "kueue") -> None:
        self.cluster = cluster
        self.binary = find_kueue()
        self.extra_config = dict(config or {})
        self.startup_timeout = startup_timeout
        self.name = name
        self.dir: Path | None = None
        self.webhook_port = e2e_cluster.free_port()
        self.health_port = e2e_cluster.free_port()
        self.proc: e2e_cluster._Process | None = None

    # -- context manager ------------------------------------------------------
    def __enter__(self) -> "KueueRunner":
        try:
            self.install()
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self.proc is not None:
            print(f"----- {self.name}: last lines of {self.proc.log_path} -----\n{e2e_cluster.tail(self.proc.log_path)}")
        self.stop()

    # -- installing -------------------------------------------------------------
    def install(self) -> None:
        """Namespace, certificate Secret, CRDs (conversion on loopback) and webhook configurations."""
        assert self.cluster.workdir is not None, "cluster not started"
        self.dir = self.cluster.workdir / self.name
        self.dir.mkdir(exist_ok=True)
        api = self.cluster.api_client()
        core = kubernetes.client.CoreV1Api(api)
        try:
            core.create_namespace({"metadata": {"name": NAMESPACE}})
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
        ca, data = self._certificates()
        certs = self.dir / "serving-certs"  # where the kubelet would mount the Secret for Kueue's pod
        certs.mkdir(exist_ok=True)
        for name, value in data.items():
            (certs / name).write_bytes(value)
        core.create_namespaced_secret(NAMESPACE, {"metadata": {"name": SECRET}, "type": "Opaque",
                                                  "data": {k: base64.b64encode(v).decode() for k, v in data.items()}})
        ext = kubernetes.client.ApiextensionsV1Api(api)
        for path in sorted((kueue_dir() / "crds").glob("*.yaml")):
            crd = yaml.safe_load(path.read_text())
            plural = crd["spec"]["names"]["plural"]
            if plural in CONVERSION_CRDS:
                crd["spec"]["conversion"] = {"strategy": "Webhook", "webhook": {
                    "conversionReviewVersions": ["v1"],
                    "clientConfig": {"url": f"{self.webhook_url}/convert", "caBundle": base64.b64encode(ca).decode()}}}
            ext.create_custom_resource_definition(crd)
        admission = kubernetes.client.AdmissionregistrationV1Api(api)
        for doc in yaml.safe_load_all((kueue_dir() / "webhook-manifests.yaml").read_text()):
            if not doc:
                continue
            body = copy.deepcopy(doc)
            body["metadata"]["name"] = f"kueue-{doc['metadata']['name']}"
            body["webhooks"] = []
            for hook in doc["webhooks"]:
                if not any(set(r.get("apiGroups") or ()) & set(WEBHOOK_GROUPS) for r in hook.get("rules") or ()):
                    continue
                path = hook["clientConfig"]["service"]["path"]
                body["webhooks"].append({**hook, "clientConfig": {"url": f"{self.webhook_url}{path}",
                                                                  "caBundle": base64.b64encode(ca).decode()}})
            if doc["kind"] == "MutatingWebhookConfiguration":
                admission.create_mutating_webhook_configuration(body)
            else:
                admission.create_validating_webhook_configuration(body)
        for plural in ("workloads", "clusterqueues"):  # wait until the API serves the new kinds
            e2e_cluster.wait_for(lambda p=plural: kubernetes.client.CustomObjectsApi(api).list_cluster_custom_object(
                "kueue.x-k8s.io", "v1beta2", p), 60, f"{plural}.kueue.x-k8s.io served")

    @property
    def webhook_url(self) -> str:
        return f"https://127.0.0.1:{self.webhook_port}"

    def _certificates(self) -> tuple[bytes, dict[str, bytes]]:
        """A CA (PKCS#1 RSA, as cert-controller reads it) and a serving cert for the Service name and 127.0.0.1.

        cert-controller keeps certificates valid for more than 90 days, so these
        are valid for ten years (CA) and one year (server)."""
        assert self.dir is not None
        d = self.dir

        def openssl(*args: str) -> None:
            result = subprocess.run([self.cluster.binaries["openssl"], *args], cwd=d, capture_output=True, text=True)
            if result.returncode != 0:
                raise e2e_cluster.StartupError(f"openssl {' '.join(args)} failed:\n{result.stderr}")

        openssl("genrsa", "-traditional", "-out", "ca.key", "2048")
        openssl("req", "-x509", "-new", "-key", "ca.key", "-days", "3650", "-out", "ca.crt",
                "-subj", "/O=kueue/CN=kueue-ca", "-addext", "subjectAltName=DNS:kueue-ca",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,digitalSignature,keyEncipherment")
        (d / "server.ext").write_text(
            f"basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage=serverAuth\nsubjectAltName=DNS:{SERVICE}.{NAMESPACE}.svc,IP:127.0.0.1\n")
        openssl("genrsa", "-traditional", "-out", "tls.key", "2048")
        openssl("req", "-new", "-key", "tls.key", "-out", "tls.csr", "-subj", f"/CN={SERVICE}.{NAMESPACE}.svc")
        openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-set_serial", str(time.time_ns()),
                "-days", "365", "-extfile", "server.ext", "-out", "tls.crt")
        data = {name: (d / name).read_bytes() for name in ("ca.crt", "ca.key", "tls.crt", "tls.key")}
        return data["ca.crt"], data

    # -- running ----------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """Kueue's Configuration (config.kueue.x-k8s.io/v1beta2) for this run."""
        assert self.dir is not None
        base: dict[str, Any] = {
            "apiVersion": "config.kueue.x-k8s.io/v1beta2", "kind": "Configuration",
            "namespace": NAMESPACE,
            "health": {"healthProbeBindAddress": f"127.0.0.1:{self.health_port}"},
            "metrics": {"bindAddress": "0"},
            "webhook": {"host": "127.0.0.1", "port": self.webhook_port, "certDir": str(self.dir / "serving-certs")},
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": True, "webhookServiceName": SERVICE, "webhookSecretName": SECRET},
            "integrations": {"frameworks": ["batch/job"]},
            "featureGates": {"VisibilityOnDemand": False},
            "clientConnection": {"qps": 100, "burst": 200},
        }
        for key, value in self.extra_config.items():
            base[key] = {**base[key], **value} if isinstance(base.get(key), dict) and isinstance(value, dict) else value
        return base

    def start(self) -> None:
        """Start kueue and wait for its /readyz (webhooks served, certificates in place)."""
        assert self.dir is not None and self.cluster.kubeconfig is not None
        path = self.dir / "config.yaml"
        path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        log = self.cluster.workdir / "logs" / f"{self.name}.log"
        self.proc = e2e_cluster._Process(self.name, [str(self.binary), f"--config={path}", "--zap-log-level=2"],
                                         log, env={"KUBECONFIG": str(self.cluster.kubeconfig)})
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if not self.proc.alive():
                raise e2e_cluster.StartupError(f"kueue exited with code {self.proc.popen.returncode}; last lines of "
                                               f"{log}:\n{e2e_cluster.tail(log)}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2) as resp:
                    if resp.status == 200 and self._webhook_answers():
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise e2e_cluster.StartupError(f"kueue not ready after {self.startup_timeout:.0f}s; last lines of "
                                               f"{log}:\n{e2e_cluster.tail(log)}")
            time.sleep(0.3)

    def _webhook_answers(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.dir / "ca.crt"))
        try:
            urllib.request.urlopen(f"{self.webhook_url}/healthz", timeout=2, context=ctx)
        except urllib.error.HTTPError:
            return True  # TLS with our certificate worked; the path is not served
        except (urllib.error.URLError, OSError):
            return False
        return True

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def restart(self, config: Mapping[str, Any] | None = None) -> None:
        """Stop kueue and start it again (with the top-level sections of `config` replacing its own, if given)."""
        self.stop()
        if config is not None:
            self.extra_config = {**self.extra_config, **config}
        self.start()

    def log_text(self) -> str:
        path = self.cluster.workdir / "logs" / f"{self.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


# ---------------------------------------------------------------------------
# Kueue objects for tests


def kueue_api(cluster: e2e_cluster.LocalCluster) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(cluster.api_client())


def create(custom: kubernetes.client.CustomObjectsApi, plural: str, body: dict, namespace: str | None = None) -> dict:
    """Create a kueue.x-k8s.io/v1beta2 object (namespaced if `namespace`)."""
    body = {"apiVersion": "kueue.x-k8s.io/v1beta2", **body}
    if namespace:
        return custom.create_namespaced_custom_object("kueue.x-k8s.io", "v1beta2", namespace, plural, body)
    return custom.create_cluster_custom_object("kueue.x-k8s.io", "v1beta2", plural, body)


def cluster_queue(name: str, cpu: str, memory: str = "64Gi", checks: list[str] | None = None,
                  flavor: str = "default") -> dict:
    spec: dict[str, Any] = {
        "namespaceSelector": {},
        "resourceGroups": [{"coveredResources": ["cpu", "memory"], "flavors": [
            {"name": flavor, "resources": [{"name": "cpu", "nominalQuota": cpu},
                                           {"name": "memory", "nominalQuota": memory}]}]}]}
    if checks:  # v1beta2 has only the strategy form (no onFlavors: every flavor)
        spec["admissionChecksStrategy"] = {"admissionChecks": [{"name": c} for c in checks]}
    return {"kind": "ClusterQueue", "metadata": {"name": name}, "spec": spec}


def workloads(custom: kubernetes.client.CustomObjectsApi, namespace: str) -> list[dict]:
    return custom.list_namespaced_custom_object("kueue.x-k8s.io", "v1beta2", namespace, "workloads")["items"]


def workload_of(custom: kubernetes.client.CustomObjectsApi, namespace: str, job: str) -> dict | None:
    for wl in workloads(custom, namespace):
        if any(ref.get("kind") == "Job" and ref.get("name") == job for ref in wl["metadata"].get("ownerReferences") or []):
            return wl
    return None


def condition_time(obj: dict, kind: str) -> str | None:
    """lastTransitionTime of condition `kind` if it is True."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond.get("lastTransitionTime")
    return None


def batch_job(name: str, queue: str, cpu: str = "1", run_s: float = 2.0, annotations: Mapping[str, str] | None = None,
              parallelism: int = 1, managed_by: str | None = None) -> dict:
    """A suspended batch/v1 Job for LocalQueue `queue`; its kwok pods finish `run_s` after they start."""
    spec: dict[str, Any] = {
        "suspend": True, "parallelism": parallelism, "completions": parallelism, "backoffLimit": 0,
        # kwok draws the delay between `delay` and `jitter-delay` (default 5 s): without a jitter above the
        # delay a longer run would end within 5 s.
        "template": {"metadata": {"annotations": {"pod-complete.stage.kwok.x-k8s.io/delay": f"{int(run_s * 1000)}ms",
                                                  "pod-complete.stage.kwok.x-k8s.io/jitter-delay":
                                                      f"{int(run_s * 1000) + 500}ms"}},
                     "spec": {"restartPolicy": "Never",
                              "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
                              "containers": [{"name": "main", "image": "registry.invalid/job",
                                              "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]}}}
    if managed_by:
        spec["managedBy"] = managed_by
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "labels": {"kueue.x-k8s.io/queue-name": queue},
                         "annotations": dict(annotations or {})},
            "spec": spec}


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)[:4000]




def anchored_config(config, anchor, now, series: Mapping[str, list[float]]):
    """`config` (a `ClusterConfig`) with each region's intensity taken from `series` anchored at `anchor`.

    A site config's per-slot lists start at the current slot; a test or a
    benchmark that crosses slot boundaries needs them fixed in time: values[k]
    is the intensity of the slot starting at anchor + k slots. Slots past the
    end of a series repeat its last value.
    """
    from edgeplace.k8s.mapping import RegionConfig, horizon_start

    slot_min = config.horizon.slot_minutes
    first = int((horizon_start(now, slot_min) - anchor).total_seconds() // (slot_min * 60))
    regions = []
    for rid, values in series.items():
        window = [values[min(max(first + k, 0), len(values) - 1)] for k in range(config.horizon.slots)]
        regions.append(RegionConfig(id=rid, intensity_g_per_kwh=window))
    return config.model_copy(update={"regions": regions})


def on_plan_clock(objects, clock):
    """`objects` with the start times the mapping reads (Jobs' and pods' ``status.startTime``) on the plan clock.

    The cluster's timestamps are wall-clock; a time-compressed run plans on
    a faster clock, so a running job's expected end is computed there.
    """
    from edgeplace.k8s.kueue import _rfc3339, _time

    def shifted(items):
        out = []
        for obj in items:
            started = _time((obj.get("status") or {}).get("startTime"))
            if started is not None:
                obj = {**obj, "status": {**obj["status"], "startTime": _rfc3339(clock.from_wall(started))}}
            out.append(obj)
        return out

    view = copy.copy(objects)
    view.jobs, view.pods = shifted(objects.jobs), shifted(objects.pods)
    return view


class EdgeplaceRunner:
    """edgeplace's planner and Kueue controller in this process, on a (time-compressed) `ScaledClock`.

    What ``edgeplace serve --kueue`` (or ``--fleet-config``) runs, with the
    plan's intensities anchored in time (`anchored_config`) so that a run can
    cross slot boundaries. `stop(crash=True)` stops without releasing the
    Lease, as a killed process would.
    """

    def __init__(self, api_client, config, series: Mapping[str, list[float]], anchor, clock, fleet=None,
                 lease: tuple[str, str] = ("edgeplace-system", "edgeplace-planner"), solver: str = "cpsat",
                 time_limit_s: float = 5.0, min_defer_s: float = 2.0, plan_wait_s: float = 30.0,
                 period_s: float = 3.0) -> None:
        import threading

        from edgeplace.k8s.kueue import KueueController, KueueOptions, map_with_kueue, read_with_kueue
        from edgeplace.k8s.leader import LeaderElector
        from edgeplace.k8s.multicluster import MultiKueueDispatcher, NoPublisher
        from edgeplace.k8s.planner import Planner, PlannerOptions
        from edgeplace.optimizer.solve import SolveOptions

        self.threading = threading
        self.clock = clock
        self.plans: list[Any] = []  # (mapped, plan, now) of every round
        options = KueueOptions(min_defer_s=min_defer_s, plan_wait_s=plan_wait_s, resync_s=2.0, tick_s=0.2)
        self.elector = LeaderElector(api_client, lease[0], lease[1], lease_duration_s=4.0, renew_deadline_s=3.0,
                                     retry_period_s=1.0)

        def mapper(objects, cfg, mapping_options):
            return map_with_kueue(on_plan_clock(objects, clock), anchored_config(cfg, anchor, mapping_options.now, series),
                                  mapping_options)

        self.planner = Planner(
            api_client, NoPublisher(), config,
            PlannerOptions(period_s=period_s, debounce_s=0.5, max_delay_s=2.0, tick_s=0.2, valid_for_s=3600.0,
                           release_gates=False,
                           solve=SolveOptions(solver=solver, time_limit_s=time_limit_s, bound_time_limit_s=0.0)),
            self.elector, reader=fleet.read if fleet is not None else read_with_kueue, clock=clock.now, mapper=mapper)
        dispatcher = MultiKueueDispatcher(api_client, options, clock) if fleet is not None else None
        self.controller = KueueController(api_client, options, self.elector, clock, dispatcher,
                                          trigger=lambda: self.planner.debouncer.mark(time.monotonic()))
        self.planner.plan_listeners += [self.controller.on_plan, lambda *a: self.plans.append(a)]
        self._stop = threading.Event()
        self._threads: list[Any] = []
        self.last_renew: float | None = None  # monotonic time of the last successful renewal

    def _renew(self) -> None:
        while not self._stop.is_set():
            if self.elector.try_acquire_or_renew():
                self.last_renew = time.monotonic()
            self._stop.wait(self.elector.retry_period_s)

    def start(self) -> "EdgeplaceRunner":
        for target, name in ((self._renew, "lease"), (lambda: self.planner.run(self._stop), "planner"),
                             (lambda: self.controller.run(self._stop), "kueue")):
            t = self.threading.Thread(target=target, name=f"edgeplace-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        e2e_cluster.wait_for(lambda: self.elector.is_leader, 30, "edgeplace to hold its lease")
        return self

    def stop(self, crash: bool = False) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=20)
        if not crash:
            self.elector.release()


class KueueFleet:
    """A MultiKueue fleet on loopback: a manager cluster and worker clusters, each its own LocalCluster with Kueue.

    workers : worker name -> its node names (kwok nodes, `cpu` CPUs each, a 100 W / 300 W power model)
    tenants : namespace -> CPU quota of its ClusterQueue (in the manager and in every worker)
    edgeplace : the manager's Kueue uses edgeplace as its MultiKueue dispatcher and its ClusterQueues list
        edgeplace's check; False: Kueue's default (AllAtOnce) dispatch and the MultiKueue check only.
        `set_edgeplace` switches (restarting the manager's Kueue).

    The workers run kube-controller-manager (the Job controller) and kwok, so
    MultiKueue's copies of the Jobs really run there.
    """

    def __init__(self, workers: Mapping[str, list[str]], tenants: Mapping[str, str], cpu: str = "4",
                 edgeplace: bool = True, check: str = "edgeplace-carbon") -> None:
        self.worker_nodes = dict(workers)
        self.tenants = dict(tenants)
        self.cpu = cpu
        self.edgeplace = edgeplace
        self.check = check
        self.clusters: dict[str, e2e_cluster.LocalCluster] = {}
        self._runners: list[KueueRunner] = []
        self.manager_kueue: KueueRunner | None = None

    def __enter__(self) -> "KueueFleet":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()

    @property
    def manager(self) -> e2e_cluster.LocalCluster:
        return self.clusters["manager"]

    def _manager_config(self) -> dict:
        mk = {"workerLostTimeout": "30s", "gcInterval": "30s"}
        if self.edgeplace:
            mk["dispatcherName"] = "edgeplace.io/carbon-aware"
        return {"multiKueue": mk}

    def _queues(self, cluster, checks: list[str] | None) -> None:
        custom = kueue_api(cluster)
        create(custom, "resourceflavors", {"kind": "ResourceFlavor", "metadata": {"name": "default"}})
        for ns, quota in self.tenants.items():
            create(custom, "clusterqueues", cluster_queue(f"cq-{ns}", cpu=quota, memory="64Gi", checks=checks))
            create(custom, "localqueues", {"kind": "LocalQueue", "metadata": {"name": "lq"},
                                           "spec": {"clusterQueue": f"cq-{ns}"}}, namespace=ns)

    def start(self) -> None:
        # kube-controller-manager in the manager too: its garbage collector removes the Workloads of deleted Jobs
        # (its Job controller leaves Jobs managed by MultiKueue alone).
        self.clusters["manager"] = e2e_cluster.LocalCluster(controller_manager=True).__enter__()
        for name in self.worker_nodes:
            self.clusters[name] = e2e_cluster.LocalCluster(controller_manager=True, kwok=True).__enter__()
        for name in self.worker_nodes:
            runner = KueueRunner(self.clusters[name], name=f"kueue-{name}").__enter__()
            self._runners.append(runner)
        self.manager_kueue = KueueRunner(self.manager, name="kueue-manager", config=self._manager_config()).__enter__()
        self._runners.append(self.manager_kueue)
        for name, nodes in self.worker_nodes.items():
            cluster = self.clusters[name]
            core = kubernetes.client.CoreV1Api(cluster.api_client())
            for ns in self.tenants:
                core.create_namespace({"metadata": {"name": ns}})
            for node in nodes:
                e2e_cluster.create_kwok_node(core, node, cpu=self.cpu, memory="16Gi", pods="50",
                                             annotations={"edgeplace.io/idle-w": "100", "edgeplace.io/max-w": "300"})
            self._queues(cluster, None)
        mcore = kubernetes.client.CoreV1Api(self.manager.api_client())
        for ns in [*self.tenants, "edgeplace-system"]:
            mcore.create_namespace({"metadata": {"name": ns}})
        custom = kueue_api(self.manager)
        for name in self.worker_nodes:
            mcore.create_namespaced_secret(NAMESPACE, {"metadata": {"name": f"{name}-kubeconfig"}, "data": {
                "kubeconfig": base64.b64encode(inline_kubeconfig(self.clusters[name]).encode()).decode()}})
            create(custom, "multikueueclusters", {"kind": "MultiKueueCluster", "metadata": {"name": name}, "spec": {
                "clusterSource": {"kubeConfig": {"location": f"{name}-kubeconfig", "locationType": "Secret"}}}})
        create(custom, "multikueueconfigs", {"kind": "MultiKueueConfig", "metadata": {"name": "fleet"},
                                             "spec": {"clusters": list(self.worker_nodes)}})
        create(custom, "admissionchecks", {"kind": "AdmissionCheck", "metadata": {"name": "multikueue"}, "spec": {
            "controllerName": "kueue.x-k8s.io/multikueue",
            "parameters": {"apiGroup": "kueue.x-k8s.io", "kind": "MultiKueueConfig", "name": "fleet"}}})
        create(custom, "admissionchecks", {"kind": "AdmissionCheck", "metadata": {"name": self.check},
                                           "spec": {"controllerName": "edgeplace.io/carbon-aware"}})
        self._queues(self.manager, self._checks())
        for name in self.worker_nodes:
            e2e_cluster.wait_for(lambda n=name: condition_time(custom.get_cluster_custom_object(
                "kueue.x-k8s.io", "v1beta2", "multikueueclusters", n), "Active"), 120, f"{name} Active")
        for name, nodes in self.worker_nodes.items():
            core = kubernetes.client.CoreV1Api(self.clusters[name].api_client())
            for node in nodes:
                e2e_cluster.wait_for(lambda n=node: e2e_cluster.node_ready(core.read_node(n)), 120, f"{node} Ready")

    def _checks(self) -> list[str]:
        return [self.check, "multikueue"] if self.edgeplace else ["multikueue"]

    def set_edgeplace(self, on: bool) -> None:
        """Switch between edgeplace's dispatch and check and Kueue's default (restarts the manager's Kueue)."""
        if on == self.edgeplace:
            return
        self.edgeplace = on
        custom = kueue_api(self.manager)
        for ns in self.tenants:
            custom.patch_cluster_custom_object("kueue.x-k8s.io", "v1beta2", "clusterqueues", f"cq-{ns}", {"spec": {
                "admissionChecksStrategy": {"admissionChecks": [{"name": c} for c in self._checks()]}}})
        assert self.manager_kueue is not None
        self.manager_kueue.restart({"multiKueue": self._manager_config()["multiKueue"]})

    def stop(self) -> None:
        for runner in reversed(self._runners):
            runner.stop()
        self._runners.clear()
        for cluster in reversed(list(self.clusters.values())):
            cluster.__exit__(None, None, None)
        self.clusters.clear()
