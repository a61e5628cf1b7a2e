"""The ONLY module that talks to the Kubernetes API (the official `kubernetes` client, imported lazily so `incv4
render` stays fast). Everything else in the operator works on plain dicts.

- Volcano Jobs (batch.volcano.sh/v1alpha1 `jobs`): create (optionally server-side dry run), get, list, watch, delete.
- Volcano Commands (bus.volcano.sh/v1alpha1 `commands`): AbortJob / ResumeJob, owned by the job as vcctl makes them.
- ConfigMaps (the recipe), pods (list, logs), and the pod proxy (a pod's /metrics through the API server).

Errors become `ClusterError` with one line (not found, already exists, forbidden with verb and resource, invalid
with the field, unauthorized, server unreachable). Calls that are safe to repeat (GET, LIST, WATCH, DELETE, PUT)
are retried with exponential backoff on 429/500/502/503/504 and dropped connections; a create is never retried, so
a flaky network can never make two jobs. Watches resume after a dropped connection and re-list after 410 Gone.
No token, header or kubeconfig content is ever logged or printed: messages name only the server URL.
"""
from __future__ import annotations

import json
import os
import time
from typing import Callable, Iterator, Optional

from incv4.trainer import contract

JOB_GROUP = "batch.volcano.sh"
JOB_VERSION = "v1alpha1"
JOB_PLURAL = "jobs"
JOB_RESOURCE = "jobs.batch.volcano.sh"
COMMAND_GROUP = "bus.volcano.sh"
COMMAND_VERSION = "v1alpha1"
COMMAND_PLURAL = "commands"
JOB_NAME_LABEL = "volcano.sh/job-name"
# Volcano's job phases after which nothing happens without a user's action.
FINAL_PHASES = ("Completed", "Failed", "Terminated", "Aborted")
RETRY_STATUSES = (429, 500, 502, 503, 504)
IN_CLUSTER_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"



class ClusterError(Exception):
    """An API call failed; `str()` is one line for the user, `exit_code` what the CLI exits with."""

    def __init__(self, message: str, exit_code: int = contract.FAILURE, status: Optional[int] = None):
        super().__init__(message)
        self.exit_code = exit_code
        self.status = status


class Retry:
    """Exponential backoff for calls that are safe to repeat."""

    # Defaults: 5 attempts, waiting 0.5, 1, 2, 4 s in between (or what a 429's Retry-After asks, at most 8 s).
    ATTEMPTS = 5
    BASE_DELAY = 0.5
    MAX_DELAY = 8.0

    def __init__(self, attempts: Optional[int] = None, base_delay: Optional[float] = None,
                 max_delay: Optional[float] = None, sleep: Callable[[float], None] = time.sleep):
        self.attempts = attempts if attempts is not None else self.ATTEMPTS
        self.base_delay = base_delay if base_delay is not None else self.BASE_DELAY
        self.max_delay = max_delay if max_delay is not None else self.MAX_DELAY
        self.sleep = sleep

    def delay(self, attempt: int, retry_after: Optional[float] = None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        return min(self.base_delay * (2 ** attempt), self.max_delay)


def _status_body(err) -> dict:
    try:
        body = json.loads(err.body) if getattr(err, "body", None) else {}
        return body if isinstance(body, dict) else {}
    except (TypeError, ValueError):
        return {}


def _is_connection_error(err: BaseException) -> bool:
    import urllib3.exceptions as u3

    return isinstance(err, (u3.HTTPError, ConnectionError, TimeoutError))


class Cluster:
    """A connection to one cluster, from a kubeconfig (file, context) or the pod's in-cluster config."""

    def __init__(self, kubeconfig: Optional[str] = None, context: Optional[str] = None,
                 namespace: Optional[str] = None, retry: Optional[Retry] = None):
        from kubernetes import client, config as kube_config

        self._client = client
        self.retry = retry or Retry()
        configuration = client.Configuration()
        default_namespace = "default"
        kubeconfig = kubeconfig or os.environ.get("KUBECONFIG")
        in_cluster = not kubeconfig and not os.path.exists(os.path.expanduser("~/.kube/config")) \
            and "KUBERNETES_SERVICE_HOST" in os.environ
        try:
            if in_cluster:
                kube_config.load_incluster_config(client_configuration=configuration)
                if os.path.exists(IN_CLUSTER_NAMESPACE_FILE):
                    with open(IN_CLUSTER_NAMESPACE_FILE, encoding="utf-8") as fh:
                        default_namespace = fh.read().strip() or default_namespace
            else:
                path = kubeconfig or None  # a KUBECONFIG-style list (a:b) is merged by the client, as kubectl does
                kube_config.load_kube_config(config_file=path, context=context,
                                             client_configuration=configuration)
                _, active = kube_config.list_kube_config_contexts(config_file=path)
                if context:
                    contexts, _ = kube_config.list_kube_config_contexts(config_file=path)
                    active = next((c for c in contexts if c.get("name") == context), active)
                default_namespace = ((active or {}).get("context") or {}).get("namespace") or default_namespace
        except kube_config.ConfigException as err:
            # The loader's messages name files and contexts, never credentials.
            raise ClusterError(f"kubeconfig: {str(err).splitlines()[0] if str(err) else 'cannot be loaded'}") \
                from None
        except OSError as err:
            raise ClusterError(f"kubeconfig: cannot be read ({err.strerror})") from None
        # We retry ourselves, only where safe; urllib3's own retries would also repeat a POST after a reset.
        configuration.retries = 0
        self.server = configuration.host
        self.namespace = namespace or default_namespace
        self.api_client = client.ApiClient(configuration)
        self.custom = client.CustomObjectsApi(self.api_client)
        self._core = None

    @property
    def core(self):
        """CoreV1Api, built on first use: importing it costs seconds with kubernetes>=35 (pydantic models), and
        `list`, `watch` and `suspend` never need it."""
        if self._core is None:
            self._core = self._client.CoreV1Api(self.api_client)
        return self._core

    # ---- error handling and retries ------------------------------------------------------------------------------

    def _error(self, err: BaseException, verb: str, resource: str, name: Optional[str] = None,
               namespace: Optional[str] = None) -> ClusterError:
        """A client exception as one line naming what we tried."""
        where = f" in namespace {namespace}" if namespace else ""
        what = f"{resource} {name!r}" if name else resource
        if _is_connection_error(err):
            return ClusterError(f"cannot reach the Kubernetes API server at {self.server} ({_reason(err)})")
        status = getattr(err, "status", None)
        if status is None:
            return ClusterError(f"{verb} {what}{where}: {type(err).__name__}")
        body = _status_body(err)
        message = (body.get("message") or getattr(err, "reason", "") or "").splitlines()[0] if \
            (body.get("message") or getattr(err, "reason", "")) else ""
        if status == 404:
            return ClusterError(f"{what} not found{where}", status=404)
        if status == 409:
            if body.get("reason") == "AlreadyExists" or verb == "create":
                return ClusterError(f"{what} already exists{where}", status=409)
            return ClusterError(f"{verb} {what}{where}: conflict ({message})", status=409)
        if status == 403:
            return ClusterError(f"forbidden: you may not {verb} {resource}{where} (ask for an RBAC Role that allows "
                                f"'{verb}' on '{resource}')", status=403)
        if status == 401:
            return ClusterError(f"unauthorized: the API server at {self.server} rejected the credentials of the "
                                f"kubeconfig", status=401)
        if status == 400 and verb not in ("create", "update"):
            # e.g. logs of a container that is still starting: "container ... is waiting to start: ContainerCreating"
            return ClusterError(f"{verb} {what}{where}: {message or 'bad request'}", status=400)
        if status == 422 or status == 400:
            causes = (body.get("details") or {}).get("causes") or []
            if causes:
                first = causes[0]
                detail = f"{first.get('field', '?')}: {first.get('message', first.get('reason', 'invalid'))}"
                more = f" (and {len(causes) - 1} more)" if len(causes) > 1 else ""
            else:
                detail, more = message or "invalid", ""
            return ClusterError(f"invalid {what}: {detail}{more}", exit_code=contract.USAGE, status=status)
        return ClusterError(f"{verb} {what}{where}: API server error {status} {message}".rstrip(), status=status)

    def _call(self, fn: Callable, verb: str, resource: str, name: Optional[str] = None,
              namespace: Optional[str] = None, safe: bool = True, attempts: Optional[int] = None):
        """Run one API call; repeat it with backoff on transient failures only if `safe` (never for a create)."""
        attempts = attempts or self.retry.attempts
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as err:  # noqa: BLE001 - every client error becomes a ClusterError below
                status = getattr(err, "status", None)
                transient = status in RETRY_STATUSES or (status is None and _is_connection_error(err))
                if not (safe and transient and attempt + 1 < attempts):
                    if status is None and not _is_connection_error(err) and not hasattr(err, "status"):
                        raise
                    raise self._error(err, verb, resource, name, namespace) from None
                self.retry.sleep(self.retry.delay(attempt, _retry_after(err)))
                attempt += 1

    # ---- Volcano jobs --------------------------------------------------------------------------------------------

    def create_job(self, job: dict, dry_run: bool = False) -> dict:
        ns = job["metadata"].get("namespace") or self.namespace
        kwargs = {"dry_run": "All"} if dry_run else {}
        return self._call(lambda: self.custom.create_namespaced_custom_object(
            JOB_GROUP, JOB_VERSION, ns, JOB_PLURAL, job, **kwargs),
            "create", JOB_RESOURCE, job["metadata"]["name"], ns, safe=False)

    def get_job(self, name: str, namespace: Optional[str] = None) -> dict:
        ns = namespace or self.namespace
        return self._call(lambda: self.custom.get_namespaced_custom_object(
            JOB_GROUP, JOB_VERSION, ns, JOB_PLURAL, name), "get", JOB_RESOURCE, name, ns)

    def job_exists(self, name: str, namespace: Optional[str] = None) -> bool:
        try:
            self.get_job(name, namespace)
            return True
        except ClusterError as err:
            if err.status == 404:
                return False
            raise

    def list_jobs(self, namespace: Optional[str] = None, all_namespaces: bool = False) -> list:
        if all_namespaces:
            result = self._call(lambda: self.custom.list_cluster_custom_object(
                JOB_GROUP, JOB_VERSION, JOB_PLURAL), "list", JOB_RESOURCE)
        else:
            ns = namespace or self.namespace
            result = self._call(lambda: self.custom.list_namespaced_custom_object(
                JOB_GROUP, JOB_VERSION, ns, JOB_PLURAL), "list", JOB_RESOURCE, namespace=ns)
        return list(result.get("items") or [])

    def delete_job(self, name: str, namespace: Optional[str] = None) -> dict:
        ns = namespace or self.namespace
        return self._call(lambda: self.custom.delete_namespaced_custom_object(
            JOB_GROUP, JOB_VERSION, ns, JOB_PLURAL, name, propagation_policy="Background"),
            "delete", JOB_RESOURCE, name, ns)

    def watch_job(self, name: str, namespace: Optional[str] = None, timeout_seconds: int = 300,
                  max_failures: Optional[int] = None, ticks: bool = False) -> Iterator[tuple]:
        """Yield (event_type, job) for one job: first ("SYNC", job) from a GET, then watch events. Resumes from the
        last resourceVersion after a dropped connection or a server-side timeout, and re-lists (a fresh GET) after
        410 Gone. Gives up after `max_failures` consecutive failed attempts (default: the retry policy's). With
        `ticks`, also yields ("TICK", last job) each time a watch request ends quietly (every `timeout_seconds`), so
        a caller can do periodic work (progress lines) between events."""
        from kubernetes import watch

        ns = namespace or self.namespace
        max_failures = max_failures or self.retry.attempts
        failures = 0
        resource_version = None
        job: dict = {}
        while True:
            if resource_version is None:
                job = self.get_job(name, ns)
                resource_version = job["metadata"].get("resourceVersion")
                yield "SYNC", job
            stream = watch.Watch()
            try:
                for event in stream.stream(self.custom.list_namespaced_custom_object, JOB_GROUP, JOB_VERSION, ns,
                                           JOB_PLURAL, field_selector=f"metadata.name={name}",
                                           resource_version=resource_version, timeout_seconds=timeout_seconds,
                                           allow_watch_bookmarks=True):
                    obj = event.get("raw_object") or event.get("object") or {}
                    resource_version = (obj.get("metadata") or {}).get("resourceVersion", resource_version)
                    failures = 0
                    if event["type"] == "BOOKMARK":
                        continue
                    job = obj
                    yield event["type"], obj
                    if event["type"] == "DELETED":
                        return
                if ticks:
                    yield "TICK", job
            except Exception as err:  # noqa: BLE001 - classified below
                status = getattr(err, "status", None)
                if status == 410:
                    resource_version = None  # our version is too old: re-list
                    continue
                transient = status in RETRY_STATUSES or (status is None and _is_connection_error(err))
                if not transient:
                    if status is None and not _is_connection_error(err):
                        raise
                    raise self._error(err, "watch", JOB_RESOURCE, name, ns) from None
                failures += 1
                if failures >= max_failures:
                    raise self._error(err, "watch", JOB_RESOURCE, name, ns) from None
                self.retry.sleep(self.retry.delay(failures - 1, _retry_after(err)))

    # ---- Volcano commands (suspend / resume) ---------------------------------------------------------------------

    def job_command(self, name: str, action: str, namespace: Optional[str] = None) -> dict:
        """Create a bus.volcano.sh Command (AbortJob, ResumeJob, ...) owned by and targeting the job, as `vcctl job
        suspend/resume` does. The Volcano controller executes it and deletes it."""
        ns = namespace or self.namespace
        job = self.get_job(name, ns)
        owner = {"apiVersion": f"{JOB_GROUP}/{JOB_VERSION}", "kind": "Job", "name": name,
                 "uid": job["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
        command = {
            "apiVersion": f"{COMMAND_GROUP}/{COMMAND_VERSION}",
            "kind": "Command",
            "metadata": {"generateName": f"{name}-{action.lower()}-", "namespace": ns, "ownerReferences": [owner]},
            "action": action,
            "target": owner,
        }
        return self._call(lambda: self.custom.create_namespaced_custom_object(
            COMMAND_GROUP, COMMAND_VERSION, ns, COMMAND_PLURAL, command),
            "create", "commands.bus.volcano.sh", None, ns, safe=False)

    # ---- the recipe ConfigMap ------------------------------------------------------------------------------------

    def apply_configmap(self, configmap: dict, dry_run: bool = False) -> dict:
        """Create the ConfigMap, or replace a leftover one of the same name (PUT is idempotent, so retried)."""
        ns = configmap["metadata"].get("namespace") or self.namespace
        name = configmap["metadata"]["name"]
        kwargs = {"dry_run": "All"} if dry_run else {}
        try:
            return self._plain(self._call(lambda: self.core.create_namespaced_config_map(ns, configmap, **kwargs),
                                          "create", "configmaps", name, ns, safe=False))
        except ClusterError as err:
            if err.status != 409:
                raise
        return self.replace_configmap(configmap, dry_run=dry_run)

    def replace_configmap(self, configmap: dict, dry_run: bool = False) -> dict:
        ns = configmap["metadata"].get("namespace") or self.namespace
        name = configmap["metadata"]["name"]
        kwargs = {"dry_run": "All"} if dry_run else {}
        return self._plain(self._call(lambda: self.core.replace_namespaced_config_map(name, ns, configmap, **kwargs),
                                      "update", "configmaps", name, ns))

    def _plain(self, model) -> dict:
        """A typed client model as the plain dict Kubernetes sent."""
        return self.api_client.sanitize_for_serialization(model)

    def delete_configmap(self, name: str, namespace: Optional[str] = None) -> bool:
        """Delete a ConfigMap; False when it was already gone."""
        ns = namespace or self.namespace
        try:
            self._call(lambda: self.core.delete_namespaced_config_map(name, ns), "delete", "configmaps", name, ns)
            return True
        except ClusterError as err:
            if err.status == 404:
                return False
            raise

    # ---- pods ----------------------------------------------------------------------------------------------------

    def list_job_pods(self, name: str, namespace: Optional[str] = None) -> list:
        """The job's pods (plain dicts), sorted by name, so `<job>-worker-0` comes first."""
        ns = namespace or self.namespace
        result = self._call(lambda: self.core.list_namespaced_pod(
            ns, label_selector=f"{JOB_NAME_LABEL}={name}", _preload_content=False),
            "list", "pods", namespace=ns)
        items = json.loads(_read_all(result)).get("items") or []
        return sorted(items, key=lambda p: p["metadata"]["name"])

    def pod_logs(self, pod: str, namespace: Optional[str] = None, follow: bool = False,
                 tail: Optional[int] = None) -> Iterator[str]:
        """Yield the pod's log lines (without newline); with `follow`, until the container ends."""
        ns = namespace or self.namespace
        kwargs: dict = {"follow": follow, "_preload_content": False}
        if tail is not None:
            kwargs["tail_lines"] = tail
        response = self._call(lambda: self.core.read_namespaced_pod_log(pod, ns, **kwargs),
                              "get", "pods/log", pod, ns)
        try:
            pending = b""
            for chunk in response.stream(4096, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", errors="replace")
            if pending:
                yield pending.decode("utf-8", errors="replace")
        except Exception as err:  # noqa: BLE001 - a dropped log stream ends with a clear line
            if _is_connection_error(err):
                raise self._error(err, "get", "pods/log", pod, ns) from None
            raise
        finally:
            response.release_conn()

    def pod_metrics(self, pod: str, port: int, namespace: Optional[str] = None, path: str = "metrics") -> str:
        """A pod's Prometheus text through the API server's pod proxy (needs RBAC on pods/proxy)."""
        ns = namespace or self.namespace
        response = self._call(lambda: self.core.connect_get_namespaced_pod_proxy_with_path(
            f"{pod}:{port}", ns, path, _preload_content=False), "get", "pods/proxy", pod, ns,
            attempts=2)  # a 503 here is usually the pod's endpoint being down, not the API server: retry once
        return _read_all(response).decode("utf-8", errors="replace")


def _read_all(response) -> bytes:
    try:
        data = response.data if hasattr(response, "data") and response.data is not None else response.read()
    finally:
        if hasattr(response, "release_conn"):
            response.release_conn()
    return data if isinstance(data, bytes) else str(data).encode()


def _retry_after(err) -> Optional[float]:
    headers = getattr(err, "headers", None) or {}
    try:
        value = headers.get("Retry-After") if hasattr(headers, "get") else None
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _reason(err: BaseException) -> str:
    """A short cause for a connection failure (never a URL with credentials: we only hold the server's base URL)."""
    text = str(getattr(err, "reason", None) or err)
    for known in ("Connection refused", "Name or service not known", "timed out", "Connection reset",
                  "Connection broken", "Connection aborted", "No route to host", "certificate verify failed"):
        if known.lower() in text.lower():
            return known.lower()
    return type(err).__name__
