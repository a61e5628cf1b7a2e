"""A small stand-in for the Kubernetes API server, for testing incv4's cluster client with the real `kubernetes`
client: threads, loopback, an ephemeral port, real Kubernetes JSON (objects, `Status` errors, watch event streams,
pod logs), and injectable faults (any status on any request, dropped watches, 410 Gone on a watch).

It speaks only the subset incv4 uses:
  /apis/batch.volcano.sh/v1alpha1/[namespaces/NS/]jobs[/NAME]   GET list/watch, POST, GET, DELETE
  /apis/bus.volcano.sh/v1alpha1/namespaces/NS/commands          POST (AbortJob / ResumeJob change the job's phase)
  /api/v1/namespaces/NS/configmaps[/NAME]                       POST, GET, PUT, DELETE
  /api/v1/namespaces/NS/pods                                    GET (labelSelector k=v)
  /api/v1/namespaces/NS/pods/NAME/log                           GET (tailLines, follow)
  /api/v1/namespaces/NS/pods/NAME:PORT/proxy/PATH               GET (the pod's metrics text)
and what `incv4 doctor` reads, as the real API server serves it (404 Status when absent):
  /apis/apiextensions.k8s.io/v1/customresourcedefinitions/NAME  GET
  /apis/scheduling.volcano.sh/v1beta1/queues/NAME               GET (cluster-scoped)
  /api/v1/nodes                                                 GET (labelSelector k=v)
  /api/v1/namespaces/NAME                                       GET
  /api/v1/namespaces/NS/persistentvolumeclaims/NAME             GET
  /apis/storage.k8s.io/v1/storageclasses/NAME                   GET
Every request must carry `Authorization: Bearer <token>` (else 401), so tests prove the kubeconfig is used.

    with FakeApiServer() as api:
        api.write_kubeconfig(path)            # a kubeconfig pointing at it, with a bearer token
        api.fail("POST", "/jobs$", 409)       # the next matching request gets a Status error
        api.script_watch(["Running", "drop", "Completed"])   # what the next watches of a job deliver
        api.fail("GET", "/jobs$", 200, raw=b"<html>")          # any bytes as the answer (non-JSON, empty, ...)
        api.healthy_cluster("team-a", nodes=2)    # Volcano, a queue, NPU nodes, ... for doctor (then break one)

    with SilentServer() as url: ...   # accepts connections and never answers (for timeouts)
"""
from __future__ import annotations

import contextlib
import datetime
import json
import re
import secrets
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import yaml

JOBS = re.compile(r"^/apis/batch\.volcano\.sh/v1alpha1(?:/namespaces/(?P<ns>[^/]+))?/jobs(?:/(?P<name>[^/]+))?$")
COMMANDS = re.compile(r"^/apis/bus\.volcano\.sh/v1alpha1/namespaces/(?P<ns>[^/]+)/commands$")
CONFIGMAPS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/configmaps(?:/(?P<name>[^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods$")
POD_LOG = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/log$")
POD_PROXY = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/:]+):(?P<port>\d+)/proxy/(?P<path>.*)$")
CRDS = re.compile(r"^/apis/apiextensions\.k8s\.io/v1/customresourcedefinitions/(?P<name>[^/]+)$")
QUEUES = re.compile(r"^/apis/scheduling\.volcano\.sh/v1beta1/queues/(?P<name>[^/]+)$")
NODES = re.compile(r"^/api/v1/nodes$")
NAMESPACES = re.compile(r"^/api/v1/namespaces/(?P<name>[^/]+)$")
PVCS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/persistentvolumeclaims/(?P<name>[^/]+)$")
STORAGE_CLASSES = re.compile(r"^/apis/storage\.k8s\.io/v1/storageclasses/(?P<name>[^/]+)$")
# (resource, group, kind) of the cluster objects doctor reads: how a 404 Status names them.
READ_ONLY = {"crds": ("customresourcedefinitions", "apiextensions.k8s.io"),
             "queues": ("queues", "scheduling.volcano.sh"),
             "namespaces": ("namespaces", ""), "pvcs": ("persistentvolumeclaims", ""),
             "storage_classes": ("storageclasses", "storage.k8s.io")}


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_error(code: int, reason: str, message: str, details: dict = None) -> dict:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    if details is not None:
        body["details"] = details
    return body


class _QuietServer(ThreadingHTTPServer):
    """A client that goes away (urllib3 dropping a pooled keep-alive connection after a broken watch) is normal for
    an API server, not an error: it is ignored. Any other handler error is recorded for the tests to assert on,
    rather than printed to sys.stderr, which CliRunner captures into the CLI's output while a command runs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.handler_errors = []

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        if not isinstance(error, (ConnectionError, TimeoutError)):
            self.handler_errors.append(repr(error))


REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "AlreadyExists",
           410: "Expired", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
           503: "ServiceUnavailable"}


class Fault:
    def __init__(self, method, path_pattern, status, times, body, drop, raw=None):
        self.method = method
        self.path = re.compile(path_pattern)
        self.status = status
        self.times = times
        self.body = body  # a dict, or a function of the request's headers returning one
        self.drop = drop
        self.raw = raw  # bytes sent as they are (application/json), instead of a Status body


class SilentServer:
    """A TCP port on loopback that accepts connections (the kernel completes the handshake for the listen
    backlog) and never answers: what a hung API server or a black-holing proxy looks like to a client."""

    def __enter__(self) -> str:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def __exit__(self, *exc):
        self._sock.close()


@contextlib.contextmanager
def serving(kubeconfig_path, namespace: str = "team-a"):
    """A started FakeApiServer with a kubeconfig for it written at `kubeconfig_path` (its path in `.kubeconfig`), for
    the tests' `api` fixtures; when it stops, any error of the fake's own in handling a request fails the test."""
    with FakeApiServer() as server:
        server.kubeconfig = server.write_kubeconfig(kubeconfig_path, namespace=namespace)
        yield server
    assert server.handler_errors == [], "the stand-in API server failed on a request"


class FakeApiServer:
    def __init__(self, token: str = None):
        self.token = token or "incv4-test-token-" + secrets.token_hex(16)
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.resource_version = 1000
        self.jobs = {}  # (ns, name) -> job
        self.configmaps = {}
        self.pods = {}
        self.commands = []
        self.logs = {}  # (ns, pod) -> list of lines
        self.metrics = {}  # (ns, pod, port) -> text
        self.requests = []  # (method, path, query) of every request, for assertions
        self.faults = []
        self.watch_scripts = []  # each: list of steps for one watch request
        self.log_follow_lines = {}  # (ns, pod) -> lines streamed one by one when following
        # what doctor reads: name (or (ns, name)) -> object
        self.crds, self.queues, self.nodes, self.namespaces, self.pvcs, self.storage_classes = {}, {}, {}, {}, {}, {}
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # ---- lifecycle -----------------------------------------------------------------------------------------------

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def handler_errors(self) -> list:
        """Exceptions raised while handling a request (the fake's own bugs), other than clients going away."""
        return self._httpd.handler_errors

    def write_kubeconfig(self, path, namespace: str = "default") -> str:
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester", "namespace": namespace}}],
            "current-context": "fake",
        }
        with open(path, "w", encoding="utf-8") as fh:
            yaml.safe_dump(config, fh)
        return str(path)

    # ---- test controls -------------------------------------------------------------------------------------------

    def fail(self, method: str, path_pattern: str, status: int, times: int = 1, body=None,
             drop: bool = False, raw: bytes = None):
        """The next `times` requests matching method and path regex get `status` (a Status body, or `body`: a dict
        or a function of the request's headers), or `raw` bytes as the body, or with `drop` have their connection
        closed without any response."""
        with self.lock:
            self.faults.append(Fault(method, path_pattern, status, times, body, drop, raw))

    def add_configmap(self, configmap: dict, namespace: str = "default") -> dict:
        """A ConfigMap someone else created (kubectl, another tool)."""
        with self.lock:
            meta = configmap.setdefault("metadata", {})
            meta.update(namespace=namespace, uid=str(uuid.uuid4()), resourceVersion=self._next_rv(),
                        creationTimestamp=now())
            self.configmaps[(namespace, meta["name"])] = configmap
            return configmap

    def script_watch(self, *scripts):
        """Each script is what ONE watch request delivers, a list of steps: a phase name (the job moves to that
        phase, a MODIFIED event is sent), "drop" (the connection breaks mid-stream), "gone" (an ERROR 410 event),
        "end" (the stream ends cleanly, as at a server timeout). A watch without a script waits for changes."""
        with self.lock:
            self.watch_scripts.extend(list(s) for s in scripts)

    def add_job(self, job: dict, phase: str = "Pending") -> dict:
        with self.lock:
            return self._store_job(job, phase)

    def set_phase(self, namespace: str, name: str, phase: str, **counts) -> dict:
        with self.lock:
            job = self.jobs[(namespace, name)]
            self._apply_phase(job, phase, **counts)
            return job

    def requests_matching(self, method: str, pattern: str) -> list:
        rx = re.compile(pattern)
        return [r for r in self.requests if r[0] == method and rx.search(r[1])]

    # ---- the cluster doctor reads ----------------------------------------------------------------------------------

    def _meta(self, name: str, namespace: str = None, labels: dict = None) -> dict:
        meta = {"name": name, "uid": str(uuid.uuid4()), "resourceVersion": self._next_rv(), "creationTimestamp": now()}
        if namespace:
            meta["namespace"] = namespace
        if labels is not None:
            meta["labels"] = dict(labels)
        return meta

    def add_crd(self, name: str, kind: str, versions=("v1",), scope: str = "Namespaced",
                established: bool = True) -> dict:
        """A CustomResourceDefinition `<plural>.<group>` as apiextensions.k8s.io/v1 serves it."""
        plural, _, group = name.partition(".")
        crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": None,
               "spec": {"group": group, "names": {"plural": plural, "kind": kind},
                        "scope": scope, "versions": [{"name": v, "served": True, "storage": i == 0}
                                                           for i, v in enumerate(versions)]},
               "status": {"conditions": [{"type": "Established", "status": "True" if established else "False"}]}}
        with self.lock:
            crd["metadata"] = self._meta(name)
            self.crds[name] = crd
        return crd

    def add_queue(self, name: str, state: str = "Open", capability: dict = None, allocated: dict = None) -> dict:
        """A Volcano Queue (scheduling.volcano.sh/v1beta1; state and allocated are written by Volcano's controller)."""
        status = {"state": state, "pending": 0, "running": 0, "inqueue": 0, "unknown": 0}
        if allocated is not None:
            status["allocated"] = dict(allocated)
        queue = {"apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "Queue", "metadata": None,
                 "spec": {"weight": 1, "reclaimable": True}, "status": status}
        if capability is not None:
            queue["spec"]["capability"] = dict(capability)
        with self.lock:
            queue["metadata"] = self._meta(name)
            self.queues[name] = queue
        return queue

    def add_node(self, name: str, labels: dict = None, allocatable: dict = None, ready: bool = True,
                 unschedulable: bool = False, taints: list = None) -> dict:
        node = {"apiVersion": "v1", "kind": "Node", "metadata": None, "spec": {},
                "status": {"capacity": dict(allocatable or {}), "allocatable": dict(allocatable or {}),
                           "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                           "reason": "KubeletReady" if ready else "KubeletNotReady"}]}}
        if unschedulable:
            node["spec"]["unschedulable"] = True
        if taints:
            node["spec"]["taints"] = list(taints)
        with self.lock:
            node["metadata"] = self._meta(name, labels={"kubernetes.io/hostname": name, **(labels or {})})
            self.nodes[name] = node
        return node

    def add_namespace(self, name: str, labels: dict = None) -> dict:
        """A namespace; the API server labels every one kubernetes.io/metadata.name=<name>."""
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": None, "spec": {"finalizers": ["kubernetes"]},
                     "status": {"phase": "Active"}}
        with self.lock:
            namespace["metadata"] = self._meta(name, labels={"kubernetes.io/metadata.name": name, **(labels or {})})
            self.namespaces[name] = namespace
        return namespace

    def add_pvc(self, namespace: str, name: str, phase: str = "Bound", access_modes=("ReadWriteMany",),
                storage_class: str = "shared") -> dict:
        pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": None,
               "spec": {"accessModes": list(access_modes), "storageClassName": storage_class,
                        "resources": {"requests": {"storage": "1Ti"}}, "volumeMode": "Filesystem"},
               "status": {"phase": phase}}
        if phase == "Bound":
            pvc["spec"]["volumeName"] = f"pvc-{uuid.uuid4()}"
            pvc["status"].update(accessModes=list(access_modes), capacity={"storage": "1Ti"})
        with self.lock:
            pvc["metadata"] = self._meta(name, namespace)
            self.pvcs[(namespace, name)] = pvc
        return pvc

    def add_storage_class(self, name: str, binding_mode: str = "Immediate") -> dict:
        storage_class = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": None,
                         "provisioner": "nfs.csi.k8s.io", "reclaimPolicy": "Delete",
                         "volumeBindingMode": binding_mode}
        with self.lock:
            storage_class["metadata"] = self._meta(name)
            self.storage_classes[name] = storage_class
        return storage_class

    def add_pod(self, namespace: str, name: str, labels: dict, phase: str = "Running") -> dict:
        """A pod that is not a job's (e.g. Volcano's scheduler)."""
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": None, "spec": {"containers": []},
               "status": {"phase": phase}}
        with self.lock:
            pod["metadata"] = self._meta(name, namespace, labels)
            self.pods[(namespace, name)] = pod
        return pod

    def add_scheduler_config(self, plugins=("priority", "gang", "conformance", "volcano-npu_v6.0.RC1_linux-aarch64"),
                             namespace: str = "volcano-system") -> dict:
        """Volcano's scheduler configuration, as Volcano's chart and MindCluster's volcano-v1.x.yaml lay it out."""
        conf = {"actions": "enqueue, allocate, backfill",
                "tiers": [{"plugins": [{"name": p} for p in plugins]},
                          {"plugins": [{"name": p} for p in ("drf", "predicates", "proportion", "nodeorder")]}]}
        return self.add_configmap({"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": "volcano-scheduler-configmap"},
                                   "data": {"volcano-scheduler.conf": yaml.safe_dump(conf, sort_keys=False)}},
                                  namespace=namespace)

    def healthy_cluster(self, namespace: str, job: dict, spare_nodes: int = 1) -> None:
        """A cluster that can run `job` (a rendered Volcano Job): Volcano's CRDs, a running scheduler with the NPU
        plugin, the job's queue Open, enough ready nodes with its labels and allocatable resources, its PVCs Bound
        ReadWriteMany, the namespace without a Pod Security label, the Prometheus Operator's CRDs."""
        for name, kind, version, scope in (
                ("jobs.batch.volcano.sh", "Job", "v1alpha1", "Namespaced"),
                ("queues.scheduling.volcano.sh", "Queue", "v1beta1", "Cluster"),
                ("podmonitors.monitoring.coreos.com", "PodMonitor", "v1", "Namespaced"),
                ("prometheusrules.monitoring.coreos.com", "PrometheusRule", "v1", "Namespaced")):
            self.add_crd(name, kind, versions=(version,), scope=scope)
        self.add_pod("volcano-system", "volcano-scheduler-6d8f7c9b5-x2x7k", {"app": "volcano-scheduler"})
        self.add_scheduler_config()
        self.add_queue(job["spec"].get("queue") or "default")
        pod = job["spec"]["tasks"][0]["template"]["spec"]
        allocatable = {"cpu": "192", "memory": "1536Gi", "pods": "110"}
        for container in pod["containers"]:
            resources = container.get("resources") or {}
            for key, value in {**(resources.get("limits") or {}), **(resources.get("requests") or {})}.items():
                if key.startswith("huawei.com/"):
                    allocatable[key] = "8"
        for i in range(job["spec"]["tasks"][0]["replicas"] + spare_nodes):
            self.add_node(f"npu-node-{i}", labels=pod.get("nodeSelector") or {}, allocatable=allocatable)
        for volume in pod.get("volumes") or []:
            claim = volume.get("persistentVolumeClaim")
            if claim:
                self.add_pvc(namespace, claim["claimName"])
        self.add_namespace(namespace)

    # ---- object bookkeeping ----------------------------------------------------------------------------------------

    def _next_rv(self) -> str:
        self.resource_version += 1
        return str(self.resource_version)

    def _store_job(self, job: dict, phase: str) -> dict:
        meta = job.setdefault("metadata", {})
        ns = meta.setdefault("namespace", "default")
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        replicas = sum(t.get("replicas", 1) for t in job["spec"].get("tasks", []))
        job["status"] = {"minAvailable": job["spec"].get("minAvailable", replicas), "pending": replicas,
                         "running": 0, "succeeded": 0, "failed": 0, "terminating": 0, "unknown": 0,
                         "version": 0, "retryCount": 0, "state": {}, "conditions": []}
        self._apply_phase(job, phase, bump=False)
        meta["resourceVersion"] = self._next_rv()
        self.jobs[(ns, meta["name"])] = job
        for task in job["spec"].get("tasks", []):
            for i in range(task.get("replicas", 1)):
                pod_name = f"{meta['name']}-{task['name']}-{i}"
                self.pods[(ns, pod_name)] = {
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": pod_name, "namespace": ns, "uid": str(uuid.uuid4()),
                                 "resourceVersion": self._next_rv(), "creationTimestamp": now(),
                                 "labels": {"volcano.sh/job-name": meta["name"], "volcano.sh/task-spec": task["name"],
                                            "volcano.sh/task-index": str(i)}},
                    "spec": task["template"]["spec"],
                    "status": {"phase": "Pending"},
                }
        self.changed.notify_all()
        return job

    def _apply_phase(self, job: dict, phase: str, bump: bool = True, **counts):
        status = job["status"]
        replicas = sum(t.get("replicas", 1) for t in job["spec"].get("tasks", []))
        defaults = {"Pending": dict(pending=replicas, running=0), "Running": dict(pending=0, running=replicas),
                    "Completing": dict(pending=0, running=0, succeeded=replicas),
                    "Completed": dict(pending=0, running=0, succeeded=replicas),
                    "Restarting": dict(pending=0, running=0, failed=1),
                    "Failed": dict(pending=0, running=0, failed=replicas),
                    "Aborted": dict(pending=0, running=0), "Terminated": dict(pending=0, running=0)}
        status.update(defaults.get(phase, {}))
        status.update(counts)
        if phase == "Restarting":
            status["retryCount"] = status.get("retryCount", 0) + 1
        status["state"] = {"phase": phase, "lastTransitionTime": now()}
        if phase == "Failed":
            status["state"].update(reason="PodFailed", message="pod failed and maxRetry exhausted")
        status["conditions"] = status.get("conditions", []) + [{"status": phase, "lastTransitionTime": now()}]
        task_counts = {}
        for key, pod_phase in (("pending", "Pending"), ("running", "Running"), ("succeeded", "Succeeded"),
                               ("failed", "Failed")):
            if status.get(key):
                task_counts[pod_phase] = status[key]
        status["taskStatusCount"] = {t["name"]: {"phase": dict(task_counts)} for t in job["spec"].get("tasks", [])}
        if bump:
            job["metadata"]["resourceVersion"] = self._next_rv()
            self.changed.notify_all()


def _handler(server: FakeApiServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        # ---- plumbing ----------------------------------------------------------------------------------------

        def _send_json(self, code: int, body: dict):
            self._send_raw(code, json.dumps(body).encode())

        def _send_raw(self, code: int, data: bytes, content_type: str = "application/json"):
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _send_text(self, code: int, text: str):
            self._send_raw(code, text.encode(), "text/plain; charset=utf-8")

        def _error(self, code: int, message: str, reason: str = None, details: dict = None):
            self._send_json(code, status_error(code, reason or REASONS.get(code, "Unknown"), message, details))

        def _start_chunked(self, content_type: str):
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def _chunk(self, data: bytes):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def _end_chunked(self):
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _drop(self):
            """Break the connection mid-response, as a load balancer or a restarting API server does."""
            self.wfile.flush()
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.close_connection = True

        def _body(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def _dispatch(self, method: str):
            url = urlparse(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            path = unquote(url.path)
            body = self._body() if method in ("POST", "PUT", "DELETE") else None
            with server.lock:
                server.requests.append((method, path, query))
                fault = next((f for f in server.faults if f.method == method and f.path.search(path)), None)
                if fault is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        server.faults.remove(fault)
            if self.headers.get("Authorization") != f"Bearer {server.token}":
                return self._error(401, "Unauthorized")
            if fault is not None:
                if fault.drop:
                    return self._drop()
                if fault.raw is not None:
                    return self._send_raw(fault.status, fault.raw)
                if callable(fault.body):
                    return self._send_json(fault.status, fault.body(self.headers))
                body_out = fault.body or status_error(fault.status, REASONS.get(fault.status, "Unknown"),
                                                      f"injected {fault.status}")
                return self._send_json(fault.status, body_out)
            for pattern, handler in ((JOBS, self._jobs), (COMMANDS, self._commands), (CONFIGMAPS, self._configmaps),
                                     (PODS, self._pods), (POD_LOG, self._pod_log), (POD_PROXY, self._pod_proxy),
                                     (CRDS, self._read_only("crds")), (QUEUES, self._read_only("queues")),
                                     (NODES, self._nodes), (NAMESPACES, self._read_only("namespaces")),
                                     (PVCS, self._read_only("pvcs")),
                                     (STORAGE_CLASSES, self._read_only("storage_classes"))):
                match = pattern.match(path)
                if match:
                    return handler(method, match.groupdict(), query, body)
            return self._error(404, f"the server could not find the requested resource ({path})")

        def do_GET(self):
            self._dispatch("GET")

        def do_POST(self):
            self._dispatch("POST")

        def do_PUT(self):
            self._dispatch("PUT")

        def do_DELETE(self):
            self._dispatch("DELETE")

        # ---- what doctor reads: GET only, as a user without write access sees them ----------------------------

        def _read_only(self, store: str):
            resource, group = READ_ONLY[store]

            def handle(method, groups, query, body):
                if method != "GET":
                    return self._error(405, f"method {method} not allowed", "MethodNotAllowed")
                key = (groups["ns"], groups["name"]) if groups.get("ns") else groups["name"]
                with server.lock:
                    obj = getattr(server, store).get(key)
                    if obj is not None:
                        return self._send_json(200, obj)
                what = f"{resource}.{group}" if group else resource
                return self._error(404, f'{what} "{groups["name"]}" not found', "NotFound",
                                   {"name": groups["name"], "group": group, "kind": resource})
            return handle

        def _nodes(self, method, groups, query, body):
            if method != "GET":
                return self._error(405, f"method {method} not allowed", "MethodNotAllowed")
            selector = dict(part.split("=", 1) for part in query.get("labelSelector", "").split(",") if "=" in part)
            with server.lock:
                items = [n for _, n in sorted(server.nodes.items()) if all(
                    n["metadata"]["labels"].get(k) == v for k, v in selector.items())]
                return self._send_json(200, {"apiVersion": "v1", "kind": "NodeList",
                                             "metadata": {"resourceVersion": str(server.resource_version)},
                                             "items": items})

        # ---- Volcano jobs ------------------------------------------------------------------------------------

        def _jobs(self, method, groups, query, body):
            ns, name = groups["ns"], groups["name"]
            not_found = (404, f'jobs.batch.volcano.sh "{name}" not found', "NotFound",
                         {"name": name, "group": "batch.volcano.sh", "kind": "jobs"})
            if method == "POST" and ns and not name:
                meta = body.get("metadata", {})
                key = (ns, meta.get("name"))
                with server.lock:
                    if key in server.jobs:
                        return self._error(409, f'jobs.batch.volcano.sh "{key[1]}" already exists', "AlreadyExists",
                                           {"name": key[1], "group": "batch.volcano.sh", "kind": "jobs"})
                    meta["namespace"] = ns
                    if query.get("dryRun") == "All":
                        body["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=now())
                        return self._send_json(201, body)
                    job = server._store_job(body, "Pending")
                    return self._send_json(201, job)
            if method == "GET" and name:
                with server.lock:
                    job = server.jobs.get((ns, name))
                    return self._send_json(200, job) if job else self._error(*not_found)
            if method == "DELETE" and name:
                with server.lock:
                    job = server.jobs.pop((ns, name), None)
                    if job is None:
                        return self._error(*not_found)
                    for key in [k for k, p in server.pods.items()
                                if k[0] == ns and p["metadata"]["labels"].get("volcano.sh/job-name") == name]:
                        del server.pods[key]
                    job["metadata"]["resourceVersion"] = server._next_rv()
                    job["metadata"]["deletionTimestamp"] = now()
                    server.changed.notify_all()
                    return self._send_json(200, job)
            if method == "GET" and query.get("watch") in ("true", "1", "True"):
                return self._watch_jobs(ns, query)
            if method == "GET":
                with server.lock:
                    items = [j for (n, _), j in sorted(server.jobs.items()) if ns is None or n == ns]
                    return self._send_json(200, {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "JobList",
                                                 "metadata": {"resourceVersion": str(server.resource_version)},
                                                 "items": items})
            return self._error(405, f"method {method} not allowed", "MethodNotAllowed")

        def _watch_jobs(self, ns, query):
            selector = query.get("fieldSelector", "")
            name = selector.split("=", 1)[1] if selector.startswith("metadata.name=") else None
            with server.lock:
                script = server.watch_scripts.pop(0) if server.watch_scripts else None
            self._start_chunked("application/json")

            def send(event_type, obj):
                self._chunk((json.dumps({"type": event_type, "object": obj}) + "\n").encode())

            if script is not None:
                for step in script:
                    if step == "drop":
                        return self._drop()
                    if step == "gone":
                        send("ERROR", status_error(410, "Expired", "too old resource version: 1 (2000)"))
                        return self._end_chunked()
                    if step == "end":
                        return self._end_chunked()
                    with server.lock:
                        job = server.jobs[(ns, name)]
                        server._apply_phase(job, step)
                        snapshot = json.loads(json.dumps(job))
                    send("MODIFIED", snapshot)
                return self._end_chunked()
            # Unscripted: stream real changes of the job until timeoutSeconds.
            deadline = time.monotonic() + float(query.get("timeoutSeconds", 30))
            last = int(query.get("resourceVersion") or 0)
            seen = None
            while time.monotonic() < deadline:
                with server.lock:
                    job = server.jobs.get((ns, name))
                    if job is None and seen is not None:
                        send("DELETED", seen)
                        return self._end_chunked()
                    seen = json.loads(json.dumps(job)) if job is not None else seen
                    if job is not None and int(job["metadata"]["resourceVersion"]) > last:
                        last = int(job["metadata"]["resourceVersion"])
                        snapshot = json.loads(json.dumps(job))
                    else:
                        snapshot = None
                        server.changed.wait(timeout=0.2)
                if snapshot is not None:
                    send("MODIFIED", snapshot)
            self._end_chunked()

        # ---- Volcano commands --------------------------------------------------------------------------------

        def _commands(self, method, groups, query, body):
            if method != "POST":
                return self._error(405, "method not allowed", "MethodNotAllowed")
            ns = groups["ns"]
            meta = body.setdefault("metadata", {})
            meta["name"] = meta.get("name") or meta.get("generateName", "cmd-") + secrets.token_hex(3)[:5]
            meta.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=now())
            with server.lock:
                meta["resourceVersion"] = server._next_rv()
                server.commands.append(body)
                target = body.get("target") or {}
                job = server.jobs.get((ns, target.get("name")))
                if job is not None:
                    server._apply_phase(job, {"AbortJob": "Aborted", "ResumeJob": "Running"}.get(
                        body.get("action"), job["status"]["state"].get("phase", "Pending")))
            return self._send_json(201, body)

        # ---- ConfigMaps --------------------------------------------------------------------------------------

        def _configmaps(self, method, groups, query, body):
            ns, name = groups["ns"], groups["name"]
            dry = query.get("dryRun") == "All"
            with server.lock:
                if method == "POST" and not name:
                    key = (ns, body["metadata"]["name"])
                    if key in server.configmaps:
                        return self._error(409, f'configmaps "{key[1]}" already exists', "AlreadyExists",
                                           {"name": key[1], "kind": "configmaps"})
                    body["metadata"].update(namespace=ns, uid=str(uuid.uuid4()), resourceVersion=server._next_rv())
                    if not dry:
                        server.configmaps[key] = body
                    return self._send_json(201, body)
                key = (ns, name)
                if method == "GET":
                    cm = server.configmaps.get(key)
                    return self._send_json(200, cm) if cm else self._error(404, f'configmaps "{name}" not found')
                if method == "PUT":
                    if key not in server.configmaps:
                        return self._error(404, f'configmaps "{name}" not found')
                    stored = server.configmaps[key]["metadata"]
                    sent_version = body["metadata"].get("resourceVersion")
                    if sent_version and sent_version != stored.get("resourceVersion"):
                        return self._error(409, f'Operation cannot be fulfilled on configmaps "{name}": the object '
                                           f"has been modified; please apply your changes to the latest version "
                                           f"and try again", "Conflict", {"name": name, "kind": "configmaps"})
                    body["metadata"].update(namespace=ns, uid=stored.get("uid"), resourceVersion=server._next_rv())
                    if not dry:
                        server.configmaps[key] = body
                    return self._send_json(200, body)
                if method == "DELETE":
                    if key not in server.configmaps:
                        return self._error(404, f'configmaps "{name}" not found')
                    # DeleteOptions.preconditions.uid: Kubernetes answers 409 Conflict when the object differs.
                    wanted = ((body or {}).get("preconditions") or {}).get("uid")
                    actual = server.configmaps[key]["metadata"].get("uid")
                    if wanted and wanted != actual:
                        return self._error(409, f"Precondition failed: UID in precondition: {wanted}, UID in object "
                                           f"meta: {actual}", "Conflict", {"name": name, "kind": "configmaps"})
                    del server.configmaps[key]
                    return self._send_json(200, {"kind": "Status", "apiVersion": "v1", "status": "Success",
                                                 "details": {"name": name, "kind": "configmaps"}})
            return self._error(405, "method not allowed", "MethodNotAllowed")

        # ---- pods --------------------------------------------------------------------------------------------

        def _pods(self, method, groups, query, body):
            ns = groups["ns"]
            selector = dict(part.split("=", 1) for part in query.get("labelSelector", "").split(",") if "=" in part)
            with server.lock:
                items = [p for (n, _), p in sorted(server.pods.items()) if n == ns and all(
                    p["metadata"]["labels"].get(k) == v for k, v in selector.items())]
                return self._send_json(200, {"apiVersion": "v1", "kind": "PodList",
                                             "metadata": {"resourceVersion": str(server.resource_version)},
                                             "items": items})

        def _pod_log(self, method, groups, query, body):
            key = (groups["ns"], groups["name"])
            with server.lock:
                if key not in server.pods:
                    return self._error(404, f'pods "{key[1]}" not found', "NotFound",
                                       {"name": key[1], "kind": "pods"})
                lines = list(server.logs.get(key, []))
                more = list(server.log_follow_lines.get(key, []))
            if "tailLines" in query:
                lines = lines[-int(query["tailLines"]):] if int(query["tailLines"]) > 0 else []
            if query.get("follow") not in ("true", "True", "1"):
                return self._send_text(200, "".join(line + "\n" for line in lines))
            self._start_chunked("text/plain")
            for line in lines + more:
                self._chunk((line + "\n").encode())
                time.sleep(0.01)
            self._end_chunked()

        def _pod_proxy(self, method, groups, query, body):
            key = (groups["ns"], groups["name"], int(groups["port"]))
            with server.lock:
                text = server.metrics.get(key)
            if text is None:
                return self._error(503, f"error trying to reach service: dial tcp: connect: connection refused",
                                   "ServiceUnavailable")
            return self._send_text(200, text)

    return Handler
