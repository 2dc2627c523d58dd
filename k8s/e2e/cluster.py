"""A throwaway Kubernetes control plane on loopback, for end-to-end tests.

``LocalCluster`` starts etcd, a real kube-apiserver and a real kube-scheduler
(both built by ``k8s/e2e/build.sh`` from the k8s.io/kubernetes module pinned in
``k8s/e2e/go.mod``), all bound to 127.0.0.1 on free ports, with certificates
generated for the run.  By default there are no kubelets and no
controller-manager: Node objects are created through the API (see
``create_node``) and kube-scheduler binds pods to them through the API, so a
pod is "scheduled" once its ``spec.nodeName`` is set.

With ``controller_manager=True`` a real kube-controller-manager runs too
(ReplicaSet, Deployment, Job, DaemonSet, disruption (PDB), node-lifecycle and
garbage-collector controllers, among the defaults), so evicted pods are
recreated by their controllers and a node whose heartbeats stop goes NotReady.
With ``kwok=True`` kwok (sigs.k8s.io/kwok) plays the kubelet of every Node
created with ``create_kwok_node`` (label ``kwok.x-k8s.io/node: fake``): it keeps the node's Lease and Ready
condition fresh and takes its pods to Running (Job pods to Succeeded after
the delay their ``pod-complete.stage.kwok.x-k8s.io/delay`` annotation asks,
1-6 s by default). ``set_kwok_power(core, name, on)`` stops or resumes that
for one node: a node switched off stops renewing its Lease and the
node-lifecycle controller marks it NotReady, as for a machine that lost power.

Usage::

    with LocalCluster() as cluster:
        core = kubernetes.client.CoreV1Api(cluster.api_client())
        create_node(core, "edge-1", labels={"zone": "a"}, cpu="4", memory="8Gi")
        ...
        cluster.restart_scheduler(config_with_extender)

Authorization is ``RBAC``; the admin client certificate is in the
``system:masters`` group, which bypasses RBAC, and kube-scheduler uses the same
admin kubeconfig.  The ServiceAccount admission plugin is disabled so pods need
no service-account tokens.

Only the standard library, the ``kubernetes`` client and PyYAML (a dependency
of the ``kubernetes`` client) are used; certificates are made with the
``openssl`` command.

Environment:
    EDGEPLACE_E2E_BIN    directory holding kube-apiserver, kube-scheduler and
                         kube-controller-manager (default: the build.sh cache
                         dir for the pinned version)
    EDGEPLACE_E2E_CACHE  build.sh cache root (default ~/.cache/edgeplace/e2e)
    EDGEPLACE_E2E_KEEP   if "1", keep the temp dir (certs, data, logs) on exit
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Mapping

import kubernetes
import yaml

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = "k8s/e2e/build.sh"

#: Taints that the NodeLifecycle controller or the TaintNodesByCondition
#: admission plugin put on nodes that are not (yet) Ready.  Nothing removes
#: them here (no controller-manager), so ``create_node`` does.
NOT_READY_TAINT_KEYS = (
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
)

#: The label (and its values) that decides whether kwok runs a node. A label,
#: not an annotation: kwok passes a label selector to the API server's watch,
#: which sends DELETED when a node stops matching, so kwok lets go of it.
KWOK_NODE_LABEL = "kwok.x-k8s.io/node"
KWOK_MANAGED = "fake"
KWOK_POWERED_OFF = "powered-off"
#: How often the node-lifecycle controller looks at nodes, and how long a node
#: may miss heartbeats before it is NotReady [s] (kube-controller-manager's
#: --node-monitor-period / --node-monitor-grace-period; 5 s / 50 s in a real
#: cluster, shortened so that a powered-off node is noticed within seconds).
NODE_MONITOR_PERIOD_S = 1
NODE_MONITOR_GRACE_S = 6
#: kwok's node Lease duration [s]; it renews at a quarter of it.
KWOK_LEASE_DURATION_S = 4

DEFAULT_SCHEDULER_CONFIG: dict[str, Any] = {
    "apiVersion": "kubescheduler.config.k8s.io/v1",
    "kind": "KubeSchedulerConfiguration",
    "profiles": [{"schedulerName": "default-scheduler"}],
}


class BinariesMissing(RuntimeError):
    """The e2e binaries are not built; run k8s/e2e/build.sh."""


class StartupError(RuntimeError):
    """A control-plane component failed to start or become ready."""


# --------------------------------------------------------------------------
# Locating binaries


def k8s_version() -> str:
    """The k8s.io/kubernetes version pinned in k8s/e2e/go.mod, e.g. "v1.37.2"."""
    text = (HERE / "go.mod").read_text()
    match = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes\s+(v\S+)", text, re.M)
    if not match:
        raise RuntimeError(f"no k8s.io/kubernetes version in {HERE / 'go.mod'}")
    return match.group(1)


def bin_dir() -> Path:
    """Where kube-apiserver and kube-scheduler are expected."""
    override = os.environ.get("EDGEPLACE_E2E_BIN")
    if override:
        return Path(override)
    cache = os.environ.get("EDGEPLACE_E2E_CACHE") or str(
        Path.home() / ".cache" / "edgeplace" / "e2e"
    )
    return Path(cache) / f"bin-{k8s_version()}"


def _build_script_pin(name: str) -> str:
    """A version pinned in build.sh (``NAME=value``), e.g. KWOK_VERSION -> "v0.8.0"."""
    text = (HERE / "build.sh").read_text()
    match = re.search(rf"^{name}=(\S+)$", text, re.M)
    if not match:
        raise RuntimeError(f"no {name}= line in {HERE / 'build.sh'}")
    return match.group(1)


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEPLACE_E2E_CACHE") or str(Path.home() / ".cache" / "edgeplace" / "e2e"))


def kwok_dir() -> Path:
    """Where build.sh puts kwok and its stage file."""
    return cache_dir() / f"kwok-{_build_script_pin('KWOK_VERSION')}"


def sushy_emulator() -> Path:
    """The sushy-tools Redfish emulator command that build.sh installs."""
    return cache_dir() / f"sushy-tools-{_build_script_pin('SUSHY_TOOLS_VERSION')}" / "bin" / "sushy-emulator"


def prometheus_binaries() -> dict[str, Path]:
    """Paths of the prometheus and promtool that build-prometheus.sh builds (they may be missing).

    They live in ``${EDGEPLACE_CACHE:-~/.cache/edgeplace}/prometheus-<version>``, the
    version being the script's ``PROMETHEUS_MODULE_VERSION`` line.
    """
    text = (HERE / "build-prometheus.sh").read_text()
    match = re.search(r"^PROMETHEUS_MODULE_VERSION=(\S+)$", text, re.M)
    if not match:
        raise RuntimeError(f"no PROMETHEUS_MODULE_VERSION= line in {HERE / 'build-prometheus.sh'}")
    root = Path(os.environ.get("EDGEPLACE_CACHE", Path.home() / ".cache" / "edgeplace")) / f"prometheus-{match.group(1)}"
    return {name: root / name for name in ("prometheus", "promtool")}


def find_binaries() -> dict[str, str]:
    """Paths of etcd, kube-apiserver, kube-scheduler, kube-controller-manager, kwok
    (and its stages file) and openssl.

    Raises BinariesMissing, naming what is missing and how to get it.
    """
    found: dict[str, str] = {}
    missing: list[str] = []
    directory = bin_dir()
    for path in (kwok_dir() / "kwok", kwok_dir() / "stages.yaml"):
        if path.is_file():
            found[path.name] = str(path)
        else:
            missing.append(str(path))
    for name in ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager"):
        path = directory / name
        if path.is_file() and os.access(path, os.X_OK):
            found[name] = str(path)
        else:
            missing.append(str(path))
    for name in ("openssl",):
        path = shutil.which(name)
        if path:
            found[name] = path
        else:
            missing.append(f"{name} (not on PATH)")
    if missing:
        raise BinariesMissing(
            "e2e binaries missing: " + ", ".join(missing)
            + f". Run {BUILD_SCRIPT} (builds etcd, kube-apiserver, kube-scheduler, "
            "kube-controller-manager and kwok into the cache dir and installs "
            "openssl with apt-get when it is missing)."
        )
    return found


# --------------------------------------------------------------------------
# Small helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    condition: Callable[[], Any],
    timeout: float,
    description: str,
    interval: float = 0.2,
) -> Any:
    """Poll ``condition`` until it returns something truthy; return that.

    Exceptions raised by ``condition`` count as "not yet".  Raises
    TimeoutError naming ``description`` (and the last exception) on timeout.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = condition()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - "not yet" for any failure
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {description}{detail}")
        time.sleep(interval)


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


class _Process:
    """A child process whose stdout and stderr go to a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.popen = subprocess.Popen(
            argv,
            env={**os.environ, **dict(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our Ctrl-C does not hit it mid-cleanup
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=grace)
        self._log.close()


# --------------------------------------------------------------------------
# The cluster


class LocalCluster:
    """etcd + kube-apiserver + kube-scheduler on 127.0.0.1; a context manager.

    ``scheduler_config`` is a KubeSchedulerConfiguration as a YAML string or a
    dict (default: one profile named "default-scheduler").  If it does not set
    ``clientConnection.kubeconfig`` or ``leaderElection`` they are filled in
    (the admin kubeconfig; leader election off).

    ``feature_gates`` (name -> on) and ``runtime_config`` (API group/version ->
    "true"/"false") go to kube-apiserver's ``--feature-gates`` and
    ``--runtime-config``: what an API that is not GA in the pinned version
    needs, e.g. ``feature_gates={"MutatingAdmissionPolicy": True},
    runtime_config={"admissionregistration.k8s.io/v1beta1": "true"}`` on
    Kubernetes 1.34-1.35. v1.37 serves admissionregistration.k8s.io/v1
    ValidatingAdmissionPolicy and MutatingAdmissionPolicy without either.
    """

    def __init__(
        self,
        scheduler_config: str | Mapping[str, Any] | None = None,
        startup_timeout: float = 60.0,
        verbosity: int = 1,
        controller_manager: bool = False,
        kwok: bool = False,
        feature_gates: Mapping[str, bool] | None = None,
        runtime_config: Mapping[str, str] | None = None,
    ) -> None:
        self.binaries = find_binaries()
        self.startup_timeout = startup_timeout
        self.verbosity = verbosity
        self.with_controller_manager = controller_manager
        self.with_kwok = kwok
        self._initial_scheduler_config = scheduler_config
        self.feature_gates = dict(feature_gates or {})
        self.runtime_config = dict(runtime_config or {})
        self.workdir: Path | None = None
        self.kubeconfig: Path | None = None
        self.server: str | None = None
        self._procs: dict[str, _Process] = {}
        self._scheduler_generation = 0

    # -- context manager ----------------------------------------------------

    def __enter__(self) -> "LocalCluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.print_logs()
        self.stop()

    # -- public API -----------------------------------------------------------

    def start(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="edgeplace-e2e-"))
        (self.workdir / "logs").mkdir()
        self._make_certs()
        self._start_etcd()
        self._start_apiserver()
        if self.with_controller_manager:
            self.start_controller_manager()
        if self.with_kwok:
            self.start_kwok()
        self.restart_scheduler(self._initial_scheduler_config)

    def stop(self) -> None:
        """Stop every component (SIGTERM, then SIGKILL); remove temp files."""
        for name in ("kwok", "kube-controller-manager", "kube-scheduler", "kube-apiserver", "etcd"):
            proc = self._procs.pop(name, None)
            if proc is not None:
                proc.stop()
        if self.workdir is not None:
            if os.environ.get("EDGEPLACE_E2E_KEEP") == "1":
                print(f"[e2e] keeping {self.workdir}", file=sys.stderr)
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def api_client(self) -> kubernetes.client.ApiClient:
        """A new ApiClient authenticated as the cluster admin."""
        assert self.kubeconfig is not None, "cluster not started"
        return kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))

    def restart_scheduler(self, config: str | Mapping[str, Any] | None = None) -> None:
        """(Re)start kube-scheduler with ``config`` and wait until it is ready.

        ``config`` is a KubeSchedulerConfiguration (YAML string or dict);
        None means the default profile.  Use this to swap an extender in or out.
        """
        assert self.workdir is not None and self.kubeconfig is not None, "cluster not started"
        old = self._procs.pop("kube-scheduler", None)
        if old is not None:
            old.stop()
        self._scheduler_generation += 1
        gen = self._scheduler_generation
        config_path = self.workdir / f"scheduler-config-{gen}.yaml"
        config_path.write_text(yaml.safe_dump(self._scheduler_config(config), sort_keys=False))
        port = free_port()
        argv = [
            self.binaries["kube-scheduler"],
            f"--config={config_path}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / f'scheduler-certs-{gen}'}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            # Do not look up the request-header CA (not configured here) in the
            # extension-apiserver-authentication ConfigMap; avoids log noise.
            "--authentication-skip-lookup=true",
            f"--v={self.verbosity}",
        ]
        proc = self._spawn("kube-scheduler", argv, f"kube-scheduler-{gen}.log")
        # /readyz turns ok once informers have synced and the scheduling loop runs.
        self._wait_healthy(proc, f"https://127.0.0.1:{port}/readyz", tls=True)

    def start_controller_manager(self) -> None:
        """Start kube-controller-manager (all default controllers) and wait for /healthz."""
        assert self.workdir is not None and self.kubeconfig is not None, "cluster not started"
        pki = self.workdir / "pki"
        port = free_port()
        argv = [
            self.binaries["kube-controller-manager"],
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--authentication-skip-lookup=true",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'kcm-certs'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            "--use-service-account-credentials=false",
            f"--node-monitor-period={NODE_MONITOR_PERIOD_S}s",
            f"--node-monitor-grace-period={NODE_MONITOR_GRACE_S}s",
            # Controllers that need a cloud provider or a cluster CIDR are off by default anyway.
            "--controllers=*,-csrsigning,-csrapproving,-csrcleaner,-bootstrapsigner,-tokencleaner",
            "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            f"--v={self.verbosity}",
        ]
        proc = self._spawn("kube-controller-manager", argv, "kube-controller-manager.log")
        self._wait_healthy(proc, f"https://127.0.0.1:{port}/healthz", tls=True)

    def start_kwok(self) -> None:
        """Start kwok for the nodes labelled ``kwok.x-k8s.io/node: fake``."""
        assert self.workdir is not None and self.kubeconfig is not None, "cluster not started"
        argv = [
            self.binaries["kwok"],
            f"--kubeconfig={self.kubeconfig}",
            f"--config={self.binaries['stages.yaml']}",
            f"--manage-nodes-with-label-selector={KWOK_NODE_LABEL}={KWOK_MANAGED}",
            "--cidr=10.240.0.0/16",
            "--node-ip=127.0.0.1",
            f"--node-lease-duration-seconds={KWOK_LEASE_DURATION_S}",
        ]
        proc = self._spawn("kwok", argv, "kwok.log")

        def watching() -> bool:
            return '"msg":"Watch nodes"' in proc.log_path.read_text(errors="replace")

        self._wait(proc, watching, "kwok to watch nodes")

    def kill(self, name: str) -> None:
        """Stop one component (e.g. "kwok"), leaving the others running."""
        proc = self._procs.pop(name, None)
        if proc is not None:
            proc.stop()

    def log_path(self, name: str) -> Path | None:
        proc = self._procs.get(name)
        return proc.log_path if proc else None

    def print_logs(self, lines: int = 40, file=sys.stderr) -> None:
        """Print the tail of every running component's log."""
        for proc in self._procs.values():
            print(f"----- {proc.name}: last {lines} lines of {proc.log_path} -----", file=file)
            print(tail(proc.log_path, lines), file=file)

    # -- internals --------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], log_name: str, env: Mapping[str, str] | None = None) -> _Process:
        assert self.workdir is not None
        proc = _Process(name, argv, self.workdir / "logs" / log_name, env=env)
        self._procs[name] = proc
        return proc

    def _openssl(self, *args: str) -> None:
        assert self.workdir is not None
        result = subprocess.run(
            [self.binaries["openssl"], *args],
            cwd=self.workdir,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise StartupError(f"openssl {' '.join(args)} failed:\n{result.stderr}")

    def _make_certs(self) -> None:
        """CA, apiserver serving cert, admin client cert, service-account key (EC P-256)."""
        assert self.workdir is not None
        pki = self.workdir / "pki"
        pki.mkdir()
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        self._openssl(
            "req", "-x509", *ec, "-days", "2",
            "-keyout", "pki/ca.key", "-out", "pki/ca.crt",
            "-subj", "/CN=edgeplace-e2e-ca",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )
        leaves = {
            "apiserver": (
                "/CN=kube-apiserver",
                "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,"
                "DNS:kubernetes.default,DNS:kubernetes.default.svc\n"
                "extendedKeyUsage=serverAuth\n",
            ),
            "admin": ("/O=system:masters/CN=edgeplace-e2e-admin", "extendedKeyUsage=clientAuth\n"),
        }
        for name, (subject, extensions) in leaves.items():
            ext_file = pki / f"{name}.ext"
            ext_file.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n" + extensions)
            self._openssl(
                "req", "-new", *ec, "-keyout", f"pki/{name}.key",
                "-out", f"pki/{name}.csr", "-subj", subject,
            )
            self._openssl(
                "x509", "-req", "-in", f"pki/{name}.csr", "-days", "2",
                "-CA", "pki/ca.crt", "-CAkey", "pki/ca.key", "-set_serial", str(time.time_ns()),
                "-extfile", str(ext_file), "-out", f"pki/{name}.crt",
            )
        self._openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-out", "pki/sa.key")
        self._openssl("pkey", "-in", "pki/sa.key", "-pubout", "-out", "pki/sa.pub")

    def _start_etcd(self) -> None:
        assert self.workdir is not None
        client_port, peer_port = free_port(), free_port()
        client_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self.etcd_url = client_url
        argv = [
            self.binaries["etcd"],
            "--name=e2e",
            f"--data-dir={self.workdir / 'etcd-data'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=e2e={peer_url}",
            "--initial-cluster-state=new",
            "--logger=zap",
            "--log-level=warn",
        ]
        proc = self._spawn("etcd", argv, "etcd.log")

        def healthy() -> bool:
            with urllib.request.urlopen(f"{client_url}/health", timeout=2) as resp:
                return json.load(resp).get("health") == "true"

        self._wait(proc, healthy, f"etcd {client_url}/health")

    def _start_apiserver(self) -> None:
        assert self.workdir is not None
        pki = self.workdir / "pki"
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        argv = [
            self.binaries["kube-apiserver"],
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--etcd-servers={self.etcd_url}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.96.0.0/24",
            "--authorization-mode=RBAC",
            "--disable-admission-plugins=ServiceAccount",
            # The default/kubernetes Endpoints may not hold a loopback address.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            f"--v={self.verbosity}",
        ]
        if self.feature_gates:
            argv.append("--feature-gates=" + ",".join(f"{k}={str(v).lower()}" for k, v in sorted(self.feature_gates.items())))
        if self.runtime_config:
            argv.append("--runtime-config=" + ",".join(f"{k}={v}" for k, v in sorted(self.runtime_config.items())))
        proc = self._spawn("kube-apiserver", argv, "kube-apiserver.log")
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self._write_kubeconfig(self.kubeconfig)
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self._wait_healthy(proc, f"{self.server}/readyz", tls=ctx)

    def _write_kubeconfig(self, path: Path) -> None:
        assert self.workdir is not None
        pki = self.workdir / "pki"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{
                "name": "e2e",
                "cluster": {"server": self.server, "certificate-authority": str(pki / "ca.crt")},
            }],
            "users": [{
                "name": "admin",
                "user": {
                    "client-certificate": str(pki / "admin.crt"),
                    "client-key": str(pki / "admin.key"),
                },
            }],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}],
            "current-context": "e2e",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))

    def _scheduler_config(self, config: str | Mapping[str, Any] | None) -> dict[str, Any]:
        if config is None:
            result = copy.deepcopy(DEFAULT_SCHEDULER_CONFIG)
        elif isinstance(config, str):
            result = yaml.safe_load(config)
        else:
            result = copy.deepcopy(dict(config))
        if not isinstance(result, dict) or result.get("kind") != "KubeSchedulerConfiguration":
            raise ValueError("scheduler config must be a KubeSchedulerConfiguration")
        # With --config, kube-scheduler ignores --kubeconfig: set it in the file.
        result.setdefault("clientConnection", {}).setdefault("kubeconfig", str(self.kubeconfig))
        result.setdefault("leaderElection", {}).setdefault("leaderElect", False)
        return result

    def _wait(self, proc: _Process, check: Callable[[], Any], what: str) -> None:
        """Poll ``check`` until truthy; fail early if the process exits."""
        deadline = time.monotonic() + self.startup_timeout
        last_error: BaseException | None = None
        while proc.alive():
            try:
                if check():
                    return
            except Exception as exc:  # noqa: BLE001 - "not yet" for any failure
                last_error = exc
            if time.monotonic() >= deadline:
                problem = f"not ready after {self.startup_timeout:.0f}s (last error: {last_error!r})"
                break
            time.sleep(0.25)
        else:
            problem = f"exited with code {proc.popen.returncode}"
        raise StartupError(
            f"{proc.name} {problem} waiting for {what}; "
            f"last lines of {proc.log_path}:\n{tail(proc.log_path)}"
        )

    def _wait_healthy(self, proc: _Process, url: str, tls: ssl.SSLContext | bool) -> None:
        if tls is True:  # kube-scheduler serves a self-signed cert; loopback only
            tls = ssl.create_default_context()
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE

        def ok() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=2, context=tls or None) as resp:
                    return resp.status == 200
            except urllib.error.HTTPError:
                return False

        self._wait(proc, ok, url)


# --------------------------------------------------------------------------
# Nodes


def create_node(
    core: kubernetes.client.CoreV1Api,
    name: str,
    labels: Mapping[str, str] | None = None,
    cpu: str = "4",
    memory: str = "8Gi",
    pods: str = "110",
) -> kubernetes.client.V1Node:
    """Create a schedulable Node with no kubelet behind it.

    The status (allocatable, capacity and a Ready=True condition) is written
    through the status subresource, as a kubelet would.  The
    TaintNodesByCondition admission plugin taints new nodes
    ``node.kubernetes.io/not-ready:NoSchedule`` and no node-lifecycle
    controller runs to lift it, so that taint is removed here.
    """
    # kubelet labels its node with its hostname; kube-scheduler's hostname topology key needs it.
    core.create_node(kubernetes.client.V1Node(
        metadata=kubernetes.client.V1ObjectMeta(name=name, labels={"kubernetes.io/hostname": name, **(labels or {})}),
    ))
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    resources = {"cpu": cpu, "memory": memory, "pods": pods}
    core.patch_node_status(name, {"status": {
        "capacity": resources,
        "allocatable": resources,
        "conditions": [{
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "edgeplace e2e: no kubelet, status set through the API",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }],
    }})
    node = core.read_node(name)
    taints = [t for t in (node.spec.taints or []) if t.key not in NOT_READY_TAINT_KEYS]
    if len(taints) != len(node.spec.taints or []):
        node.spec.taints = taints
        node = core.replace_node(name, node)
    return node


def create_kwok_node(
    core: kubernetes.client.CoreV1Api,
    name: str,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    cpu: str = "4",
    memory: str = "8Gi",
    pods: str = "110",
    extra_allocatable: Mapping[str, str] | None = None,
) -> kubernetes.client.V1Node:
    """Create a Node that kwok runs (LocalCluster(kwok=True)): kwok sets it Ready,
    renews its Lease and runs the pods bound to it.

    Capacity and allocatable are written through the status subresource (kwok
    keeps what it finds there).
    """
    ann = {"node.alpha.kubernetes.io/ttl": "0", **dict(annotations or {})}
    lab = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
           "type": "kwok", **dict(labels or {}), KWOK_NODE_LABEL: KWOK_POWERED_OFF}
    core.create_node(kubernetes.client.V1Node(
        metadata=kubernetes.client.V1ObjectMeta(name=name, labels=lab, annotations=ann),
    ))
    resources = {"cpu": cpu, "memory": memory, "pods": pods, **dict(extra_allocatable or {})}
    core.patch_node_status(name, {"status": {"capacity": resources, "allocatable": resources}})
    # Only now hand the node to kwok: its initialize stage keeps the allocatable it finds, and
    # writes its own defaults (1k CPUs, 1Ti) when it comes first.
    set_kwok_power(core, name, on=True)
    return core.read_node(name)


def set_kwok_power(core: kubernetes.client.CoreV1Api, name: str, on: bool) -> None:
    """Switch a kwok node's simulated power: off stops kwok's heartbeats for it
    (the node-lifecycle controller marks it NotReady within
    NODE_MONITOR_GRACE_S), on resumes them (Ready again)."""
    value = KWOK_MANAGED if on else KWOK_POWERED_OFF
    core.patch_node(name, {"metadata": {"labels": {KWOK_NODE_LABEL: value}}})


def node_ready(node: Any) -> bool:
    """The node's Ready condition is True (a V1Node or its JSON dict)."""
    status = node.status if hasattr(node, "status") else (node.get("status") or {})
    conditions = (status.conditions if hasattr(status, "conditions") else status.get("conditions")) or []
    for cond in conditions:
        ctype = cond.type if hasattr(cond, "type") else cond.get("type")
        cstatus = cond.status if hasattr(cond, "status") else cond.get("status")
        if ctype == "Ready":
            return cstatus == "True"
    return False
