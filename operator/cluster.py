"""The ONLY module that talks to the Kubernetes API (the official `kubernetes` client, imported lazily so `incv4
render` stays fast). Everything else in the operator works on plain dicts.

- Volcano Jobs (batch.volcano.sh/v1alpha1 `jobs`): create (optionally server-side dry run), get, list, watch, delete.
- Volcano Commands (bus.volcano.sh/v1alpha1 `commands`): AbortJob / ResumeJob, owned by the job as vcctl makes them.
- ConfigMaps (the recipe), pods (list, logs), and the pod proxy (a pod's /metrics through the API server).
- Reads for `incv4 doctor`: CustomResourceDefinitions, Volcano queues, nodes, namespaces, PVCs, StorageClasses.

Errors become `ClusterError` with one line (not found, already exists, forbidden with verb and resource, invalid
with the field, unauthorized, server unreachable). Calls that are safe to repeat (GET, LIST, WATCH, DELETE, PUT)
are retried with exponential backoff on 429/500/502/503/504 and dropped connections; a create is never retried, so
a flaky network can never make two jobs. Watches resume after a dropped connection and re-list after 410 Gone.
Every request has connect and read timeouts (`Timeouts`); a call the server does not answer in time is not
retried and ends in one line. Answers that are not the JSON object or list asked for end in one line too.
No token, header or kubeconfig content is ever logged or printed: messages name only the server URL, and every
message passes through `redact` in case a server echoes credentials back.
"""
from __future__ import annotations

import json
import os
import re
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
QUEUE_GROUP = "scheduling.volcano.sh"
QUEUE_VERSION = "v1beta1"
QUEUE_PLURAL = "queues"
JOB_NAME_LABEL = "volcano.sh/job-name"
# Volcano's job phases after which nothing happens without a user's action.
FINAL_PHASES = ("Completed", "Failed", "Terminated", "Aborted")
RETRY_STATUSES = (429, 500, 502, 503, 504)
IN_CLUSTER_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
# The labels render.labels() (and the chart) put on a job's recipe ConfigMap: incv4 touches a ConfigMap only if
# they name incv4 and this job.
APP_NAME_LABEL = "app.kubernetes.io/name"
APP_INSTANCE_LABEL = "app.kubernetes.io/instance"
APP_NAME = "incv4"
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 30.0

# Credentials a server might echo in an error body: auth headers, bearer/basic tokens, token= parameters, and
# user:password in URLs.
_SECRETS = (
    (re.compile(r"(?i)\b(authorization|proxy-authorization|x-auth-token|cookie)(\s*[:=]\s*)[^\r\n,;}]+"),
     r"\1\2<redacted>"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 <redacted>"),
    (re.compile(r"(?i)\b((?:access_|id_|refresh_)?token|password|passwd|secret|api[_-]?key)(\"?\s*[=:]\s*\"?)"
                r"[^\s&\",;}]+"), r"\1\2<redacted>"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]*@"), r"\1<redacted>@"),
)


def redact(text: str) -> str:
    """`text` without anything that looks like a credential."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class ClusterError(Exception):
    """An API call failed; `str()` is one line for the user (credentials redacted), `exit_code` what the CLI exits
    with."""

    def __init__(self, message: str, exit_code: int = contract.FAILURE, status: Optional[int] = None):
        super().__init__(redact(" ".join(str(message).split())))
        self.exit_code = exit_code
        self.status = status


class Timeouts:
    """Connect and read timeouts of every API call, in seconds; `flag` names what sets them, for the message."""

    def __init__(self, read: float = DEFAULT_READ_TIMEOUT, connect: Optional[float] = None,
                 flag: str = "--request-timeout"):
        self.read = float(read)
        self.connect = float(connect) if connect is not None else min(DEFAULT_CONNECT_TIMEOUT, self.read)
        self.flag = flag

    def pair(self, read: Optional[float] = None) -> tuple:
        """The client's `_request_timeout`: (connect, read)."""
        return (self.connect, self.read if read is None else read)


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


def _is_timeout(err: BaseException) -> bool:
    """A connect or read timeout (urllib3 wraps it in MaxRetryError when it does not retry)."""
    import socket

    import urllib3.exceptions as u3

    cause = getattr(err, "reason", None) if isinstance(err, u3.MaxRetryError) else err
    # urllib3 makes a refused connection (NewConnectionError) a kind of ConnectTimeoutError: it is not one.
    return isinstance(cause, (u3.TimeoutError, socket.timeout, TimeoutError)) and \
        not isinstance(cause, u3.NewConnectionError)


def _is_connect_timeout(err: BaseException) -> bool:
    import urllib3.exceptions as u3

    cause = getattr(err, "reason", None) if isinstance(err, u3.MaxRetryError) else err
    return isinstance(cause, u3.ConnectTimeoutError) and not isinstance(cause, u3.NewConnectionError)


def _load_config(configuration, kubeconfig: Optional[str], context: Optional[str]) -> str:
    """Fill `configuration` from the kubeconfig (or in-cluster); return the default namespace. A file that is not a
    kubeconfig at all is a usage error (exit 2); a missing file or context stays a failure (exit 1), as before."""
    from kubernetes import config as kube_config

    default_namespace = "default"
    in_cluster = not kubeconfig and not os.path.exists(os.path.expanduser("~/.kube/config")) \
        and "KUBERNETES_SERVICE_HOST" in os.environ
    try:
        if in_cluster:
            kube_config.load_incluster_config(client_configuration=configuration)
            if os.path.exists(IN_CLUSTER_NAMESPACE_FILE):
                with open(IN_CLUSTER_NAMESPACE_FILE, encoding="utf-8") as fh:
                    default_namespace = fh.read().strip() or default_namespace
            return default_namespace
        path = kubeconfig or None  # a KUBECONFIG-style list (a:b) is merged by the client, as kubectl does
        for one in (path or os.path.expanduser("~/.kube/config")).split(os.pathsep):
            _check_kubeconfig_file(one)
        kube_config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
        contexts, active = kube_config.list_kube_config_contexts(config_file=path)
        if context:
            active = next((c for c in contexts if c.get("name") == context), active)
        return ((active or {}).get("context") or {}).get("namespace") or default_namespace
    except kube_config.ConfigException as err:
        # The loader's messages name files and contexts, never credentials.
        raise ClusterError(f"kubeconfig: {str(err).splitlines()[0] if str(err) else 'cannot be loaded'}") from None
    except OSError as err:
        raise ClusterError(f"kubeconfig: cannot be read ({err.strerror})") from None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as err:
        # A YAML mapping whose fields have the wrong shapes (clusters: 5): the loader trips over it.
        raise ClusterError(f"kubeconfig: not a valid kubeconfig ({type(err).__name__})",
                           exit_code=contract.USAGE) from None


def _check_kubeconfig_file(path: str) -> None:
    """A kubeconfig file that exists must be UTF-8 YAML holding a mapping with clusters, contexts or users."""
    import yaml

    if not path or not os.path.isfile(path):
        return  # absent: the loader says so (exit 1, as before)
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        document = yaml.safe_load(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ClusterError(f"kubeconfig {path}: not a text file", exit_code=contract.USAGE) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ClusterError(f"kubeconfig {path}: not valid YAML{where}", exit_code=contract.USAGE) from None
    sections = ("clusters", "contexts", "users")
    if not isinstance(document, dict) or not any(key in document for key in sections) or any(
            not isinstance(document.get(key) or [], list) for key in sections):
        raise ClusterError(f"kubeconfig {path}: not a kubeconfig (expected a mapping with lists of clusters, "
                           f"contexts and users)", exit_code=contract.USAGE)


def _configured_secrets(configuration) -> list:
    """The credentials in the client's configuration, to strip from anything a server echoes back."""
    values = list((getattr(configuration, "api_key", None) or {}).values())
    values += [getattr(configuration, "password", None)]
    secrets = []
    for value in values:
        if isinstance(value, str) and len(value) >= 6:
            secrets.append(value)
            if value.lower().startswith("bearer "):
                secrets.append(value[7:])
    return secrets


class Cluster:
    """A connection to one cluster, from a kubeconfig (file, context) or the pod's in-cluster config."""

    def __init__(self, kubeconfig: Optional[str] = None, context: Optional[str] = None,
                 namespace: Optional[str] = None, retry: Optional[Retry] = None,
                 timeouts: Optional[Timeouts] = None):
        from kubernetes import client

        self._client = client
        self.retry = retry or Retry()
        self.timeouts = timeouts or Timeouts()
        configuration = client.Configuration()
        default_namespace = _load_config(configuration, kubeconfig or os.environ.get("KUBECONFIG"), context)
        # We retry ourselves, only where safe; urllib3's own retries would also repeat a POST after a reset.
        configuration.retries = 0
        self.server = configuration.host
        self._secrets = _configured_secrets(configuration)
        self.namespace = namespace or default_namespace
        self.api_client = client.ApiClient(configuration)
        self.custom = client.CustomObjectsApi(self.api_client)
        self._core = None

    def _raw(self, read: Optional[float] = None) -> dict:
        """Keyword arguments of every API call: the raw response (we parse it ourselves) and the timeouts."""
        return {"_preload_content": False, "_request_timeout": self.timeouts.pair(read)}

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
        if _is_timeout(err):
            seconds = self.timeouts.connect if _is_connect_timeout(err) else self.timeouts.read
            return ClusterError(f"the API server at {self.server} did not answer within {seconds:g} s "
                                f"({self.timeouts.flag})")
        if _is_connection_error(err):
            return ClusterError(f"cannot reach the Kubernetes API server at {self.server} ({_reason(err)})")
        status = getattr(err, "status", None)
        if status is None:
            return ClusterError(f"{verb} {what}{where}: {type(err).__name__}")
        body = _status_body(err)
        message = self._scrub((body.get("message") or getattr(err, "reason", "") or "").strip())
        message = message.splitlines()[0] if message else ""
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
            if causes and isinstance(causes[0], dict):
                first = causes[0]
                detail = f"{first.get('field', '?')}: {first.get('message', first.get('reason', 'invalid'))}"
                more = f" (and {len(causes) - 1} more)" if len(causes) > 1 else ""
            else:
                detail, more = message or "invalid", ""
            return ClusterError(f"invalid {what}: {self._scrub(detail)}{more}", exit_code=contract.USAGE,
                                status=status)
        return ClusterError(f"{verb} {what}{where}: API server error {status} {message}".rstrip(), status=status)

    def _scrub(self, text: str) -> str:
        """Server text without this kubeconfig's own credentials (patterns are redacted by ClusterError)."""
        for secret in self._secrets:
            text = text.replace(secret, "<redacted>")
        return text

    def _call(self, fn: Callable, verb: str, resource: str, name: Optional[str] = None,
              namespace: Optional[str] = None, safe: bool = True, attempts: Optional[int] = None):
        """Run one API call; repeat it with backoff on transient failures only if `safe` (never for a create). A
        timeout is final: a server that did not answer in time is not asked again, so the call ends in time."""
        attempts = attempts or self.retry.attempts
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as err:  # noqa: BLE001 - every client error becomes a ClusterError below
                status = getattr(err, "status", None)
                transient = status in RETRY_STATUSES or (
                    status is None and _is_connection_error(err) and not _is_timeout(err))
                if not (safe and transient and attempt + 1 < attempts):
                    if status is None and not _is_connection_error(err) and not hasattr(err, "status"):
                        raise
                    raise self._error(err, verb, resource, name, namespace) from None
                self.retry.sleep(self.retry.delay(attempt, _retry_after(err)))
                attempt += 1

    def _json(self, fn: Callable, verb: str, resource: str, name: Optional[str] = None,
              namespace: Optional[str] = None, safe: bool = True, shape: str = "object"):
        """One call whose answer must be a JSON object (`shape` "object": with metadata) or a list (`shape`
        "list": with items that each have metadata.name); anything else is one line naming the call."""
        data = self._call(lambda: _read_all(fn()), verb, resource, name, namespace, safe=safe)
        what = f"{resource} {name!r}" if name else resource
        problem = _shape_problem(data, shape)
        if problem:
            raise ClusterError(f"the API server at {self.server} answered the {verb} of {what} with {problem}")
        return json.loads(data)

    # ---- Volcano jobs --------------------------------------------------------------------------------------------

    def create_job(self, job: dict, dry_run: bool = False) -> dict:
        ns = job["metadata"].get("namespace") or self.namespace
        kwargs = {"dry_run": "All"} if dry_run else {}
        return self._json(lambda: self.custom.create_namespaced_custom_object(
            JOB_GROUP, JOB_VERSION, ns, JOB_PLURAL, job, **kwargs, **self._raw()),
            "create", JOB_RESOURCE, job["metadata"]["name"], ns, safe=False)

    def get_job(self, name: str, namespace: Optional[str] = None) -> dict:
        ns = namespace or self.namespace
        return self._json(lambda: self.custom.get_namespaced_custom_object(
            JOB_GROUP, JOB_VERSION, ns, JOB_PLURAL, name, **self._raw()), "get", JOB_RESOURCE, name, ns)

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
            result = self._json(lambda: self.custom.list_cluster_custom_object(
                JOB_GROUP, JOB_VERSION, JOB_PLURAL, **self._raw()), "list", JOB_RESOURCE, shape="list")
        else:
            ns = namespace or self.namespace
            result = self._json(lambda: self.custom.list_namespaced_custom_object(
                JOB_GROUP, JOB_VERSION, ns, JOB_PLURAL, **self._raw()), "list", JOB_RESOURCE, namespace=ns,
                shape="list")
        return list(result.get("items") or [])

    def delete_job(self, name: str, namespace: Optional[str] = None) -> dict:
        ns = namespace or self.namespace
        return self._json(lambda: self.custom.delete_namespaced_custom_object(
            JOB_GROUP, JOB_VERSION, ns, JOB_PLURAL, name, propagation_policy="Background", **self._raw()),
            "delete", JOB_RESOURCE, name, ns)

    def watch_job(self, name: str, namespace: Optional[str] = None, timeout_seconds: int = 300,
                  max_failures: Optional[int] = None, ticks: bool = False) -> Iterator[tuple]:
        """Yield (event_type, job) for one job: first ("SYNC", job) from a GET, then watch events. Resumes from the
        last resourceVersion after a dropped connection or a server-side timeout, and re-lists (a fresh GET) after
        410 Gone. Gives up after `max_failures` consecutive failed attempts (default: the retry policy's). With
        `ticks`, also yields ("TICK", last job) each time a watch request ends quietly (every `timeout_seconds`), so
        a caller can do periodic work (progress lines) between events."""
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
            try:
                for event_type, obj in self._watch_events(name, ns, resource_version, timeout_seconds):
                    resource_version = obj["metadata"].get("resourceVersion", resource_version)
                    failures = 0
                    if event_type == "BOOKMARK":
                        continue
                    job = obj
                    yield event_type, obj
                    if event_type == "DELETED":
                        return
                if ticks:
                    yield "TICK", job
            except ClusterError:
                raise
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

    def _watch_events(self, name: str, ns: str, resource_version, timeout_seconds: int) -> Iterator[tuple]:
        """One watch request's (type, object) events. The server ends the request after `timeout_seconds`; the read
        timeout allows that plus the usual read timeout, so only a silent server trips it (and we reconnect)."""
        from kubernetes import watch

        stream = watch.Watch().stream(
            self.custom.list_namespaced_custom_object, JOB_GROUP, JOB_VERSION, ns, JOB_PLURAL,
            field_selector=f"metadata.name={name}", resource_version=resource_version,
            timeout_seconds=timeout_seconds, allow_watch_bookmarks=True,
            _request_timeout=self.timeouts.pair(timeout_seconds + self.timeouts.read))
        events = iter(stream)
        while True:
            try:
                event = next(events)
            except StopIteration:
                return
            except ValueError:  # a line that is not JSON
                raise ClusterError(f"the API server at {self.server} answered the watch of {JOB_RESOURCE} "
                                   f"{name!r} with a body that is not JSON") from None
            obj = (event.get("raw_object") or event.get("object")) if isinstance(event, dict) else None
            if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict) or \
                    not isinstance(event.get("type"), str):
                raise ClusterError(f"the API server at {self.server} answered the watch of {JOB_RESOURCE} "
                                   f"{name!r} with an event that is not a Kubernetes object")
            yield event["type"], obj

    # ---- Volcano commands (suspend / resume) ---------------------------------------------------------------------

    def job_command(self, name: str, action: str, namespace: Optional[str] = None) -> dict:
        """Create a bus.volcano.sh Command (AbortJob, ResumeJob, ...) owned by and targeting the job, as `vcctl job
        suspend/resume` does. The Volcano controller executes it and deletes it."""
        ns = namespace or self.namespace
        job = self.get_job(name, ns)
        owner = {"apiVersion": f"{JOB_GROUP}/{JOB_VERSION}", "kind": "Job", "name": name,
                 "uid": job["metadata"].get("uid"), "controller": True, "blockOwnerDeletion": True}
        command = {
            "apiVersion": f"{COMMAND_GROUP}/{COMMAND_VERSION}",
            "kind": "Command",
            "metadata": {"generateName": f"{name}-{action.lower()}-", "namespace": ns, "ownerReferences": [owner]},
            "action": action,
            "target": owner,
        }
        return self._json(lambda: self.custom.create_namespaced_custom_object(
            COMMAND_GROUP, COMMAND_VERSION, ns, COMMAND_PLURAL, command, **self._raw()),
            "create", "commands.bus.volcano.sh", None, ns, safe=False)

    # ---- the recipe ConfigMap ------------------------------------------------------------------------------------

    def create_configmap(self, configmap: dict, job_name: str, dry_run: bool = False) -> dict:
        """Create the job's recipe ConfigMap (POST: never retried, never replaces one). When one of that name exists,
        refuse, unless it is incv4's recipe of this very job left over from an earlier submit: only that one is
        replaced, and only in the version we read (a concurrent change makes the PUT fail, not clobber)."""
        ns = configmap["metadata"].get("namespace") or self.namespace
        name = configmap["metadata"]["name"]
        kwargs = {"dry_run": "All"} if dry_run else {}
        try:
            return self._json(lambda: self.core.create_namespaced_config_map(ns, configmap, **kwargs, **self._raw()),
                              "create", "configmaps", name, ns, safe=False)
        except ClusterError as err:
            if err.status != 409:
                raise
        existing = self.get_configmap(name, ns)
        if existing is None or not is_recipe_of(existing, job_name) or _owner_uids(existing):
            raise ClusterError(f"configmaps {name!r} already exists in namespace {ns} and is not a recipe incv4 "
                               f"left for job {job_name!r}: incv4 will not replace it (delete or rename it, or "
                               f"choose another --name)", status=409)
        leftover = json.loads(json.dumps(configmap))
        leftover["metadata"]["resourceVersion"] = existing["metadata"].get("resourceVersion")
        return self.replace_configmap(leftover, dry_run=dry_run)

    def get_configmap(self, name: str, namespace: Optional[str] = None) -> Optional[dict]:
        """The ConfigMap, or None when there is none."""
        ns = namespace or self.namespace
        try:
            return self._json(lambda: self.core.read_namespaced_config_map(name, ns, **self._raw()),
                              "get", "configmaps", name, ns)
        except ClusterError as err:
            if err.status == 404:
                return None
            raise

    def replace_configmap(self, configmap: dict, dry_run: bool = False) -> dict:
        """PUT a ConfigMap; with metadata.resourceVersion set, only over that version (409 otherwise)."""
        ns = configmap["metadata"].get("namespace") or self.namespace
        name = configmap["metadata"]["name"]
        kwargs = {"dry_run": "All"} if dry_run else {}
        return self._json(lambda: self.core.replace_namespaced_config_map(name, ns, configmap, **kwargs,
                                                                          **self._raw()),
                          "update", "configmaps", name, ns)

    def delete_configmap(self, name: str, namespace: Optional[str] = None, uid: Optional[str] = None) -> bool:
        """Delete a ConfigMap, with `uid` only that very object (Kubernetes' delete precondition: a ConfigMap
        recreated under the same name by someone else is left alone); False when it was already gone."""
        ns = namespace or self.namespace
        kwargs = {"body": {"preconditions": {"uid": uid}}} if uid else {}
        try:
            self._call(lambda: _read_all(self.core.delete_namespaced_config_map(name, ns, **kwargs, **self._raw())),
                       "delete", "configmaps", name, ns)
            return True
        except ClusterError as err:
            if err.status == 404:
                return False
            raise

    def delete_recipe_configmap(self, name: str, job_name: str, namespace: Optional[str] = None) -> str:
        """Delete a job's recipe ConfigMap only if it is incv4's recipe of that job: "deleted", "gone", or
        "kept" (it is someone else's)."""
        existing = self.get_configmap(name, namespace)
        if existing is None:
            return "gone"
        if not is_recipe_of(existing, job_name):
            return "kept"
        deleted = self.delete_configmap(name, namespace, uid=existing["metadata"].get("uid"))
        return "deleted" if deleted else "gone"

    # ---- pods ----------------------------------------------------------------------------------------------------

    def list_job_pods(self, name: str, namespace: Optional[str] = None) -> list:
        """The job's pods (plain dicts), sorted by name, so `<job>-worker-0` comes first."""
        pods = self.list_pods(namespace or self.namespace, f"{JOB_NAME_LABEL}={name}")
        return sorted(pods, key=lambda p: p["metadata"]["name"])

    def pod_logs(self, pod: str, namespace: Optional[str] = None, follow: bool = False,
                 tail: Optional[int] = None) -> Iterator[str]:
        """Yield the pod's log lines (without newline); with `follow`, until the container ends. The server must
        answer within the timeouts; a followed log may then be quiet for long (between training log lines), so
        its stream has no read timeout."""
        ns = namespace or self.namespace
        kwargs: dict = {"follow": follow, **self._raw()}
        if tail is not None:
            kwargs["tail_lines"] = tail
        response = self._call(lambda: self.core.read_namespaced_pod_log(pod, ns, **kwargs),
                              "get", "pods/log", pod, ns)
        if follow:
            _wait_for_lines(response)
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
        data = self._call(lambda: _read_all(self.core.connect_get_namespaced_pod_proxy_with_path(
            f"{pod}:{port}", ns, path, **self._raw())), "get", "pods/proxy", pod, ns,
            attempts=2)  # a 503 here is usually the pod's endpoint being down, not the API server: retry once
        return data.decode("utf-8", errors="replace")

    # ---- reads for `incv4 doctor`: None when the object is not there (404); 403 and the rest stay errors ---------

    def _get_or_none(self, fn: Callable, resource: str, name: str, namespace: Optional[str] = None) -> Optional[dict]:
        try:
            return self._json(fn, "get", resource, name, namespace)
        except ClusterError as err:
            if err.status == 404:
                return None
            raise

    def get_crd(self, name: str) -> Optional[dict]:
        """A CustomResourceDefinition (apiextensions.k8s.io/v1), e.g. jobs.batch.volcano.sh."""
        api = self._client.ApiextensionsV1Api(self.api_client)
        return self._get_or_none(lambda: api.read_custom_resource_definition(name, **self._raw()),
                                 "customresourcedefinitions", name)

    def get_queue(self, name: str) -> Optional[dict]:
        """A Volcano Queue (scheduling.volcano.sh/v1beta1, cluster-scoped)."""
        return self._get_or_none(lambda: self.custom.get_cluster_custom_object(
            QUEUE_GROUP, QUEUE_VERSION, QUEUE_PLURAL, name, **self._raw()), f"{QUEUE_PLURAL}.{QUEUE_GROUP}", name)

    def list_nodes(self) -> list:
        result = self._json(lambda: self.core.list_node(**self._raw()), "list", "nodes", shape="list")
        return list(result.get("items") or [])

    def get_namespace(self, name: str) -> Optional[dict]:
        return self._get_or_none(lambda: self.core.read_namespace(name, **self._raw()), "namespaces", name)

    def get_pvc(self, name: str, namespace: Optional[str] = None) -> Optional[dict]:
        ns = namespace or self.namespace
        return self._get_or_none(lambda: self.core.read_namespaced_persistent_volume_claim(name, ns, **self._raw()),
                                 "persistentvolumeclaims", name, ns)

    def get_storage_class(self, name: str) -> Optional[dict]:
        api = self._client.StorageV1Api(self.api_client)
        return self._get_or_none(lambda: api.read_storage_class(name, **self._raw()), "storageclasses", name)

    def list_pods(self, namespace: str, label_selector: str) -> list:
        """Pods of a namespace matching a label selector (plain dicts)."""
        result = self._json(lambda: self.core.list_namespaced_pod(
            namespace, label_selector=label_selector, **self._raw()), "list", "pods", namespace=namespace,
            shape="list")
        return list(result.get("items") or [])


def _wait_for_lines(response) -> None:
    """Lift the read timeout of a response whose headers have arrived (a followed log), where urllib3 allows."""
    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is not None:
        sock.settimeout(None)


def is_recipe_of(configmap: dict, job_name: str) -> bool:
    """Whether a ConfigMap carries incv4's labels for this job (render.labels(): name incv4, instance the job)."""
    labels = (configmap.get("metadata") or {}).get("labels") or {}
    return labels.get(APP_NAME_LABEL) == APP_NAME and labels.get(APP_INSTANCE_LABEL) == job_name


def _owner_uids(obj: dict) -> list:
    return [ref.get("uid") for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
            if isinstance(ref, dict)]


def _shape_problem(data: bytes, shape: str) -> Optional[str]:
    """Why an answer is not the JSON `shape` asked for ("object" with metadata, "list" of such), or None."""
    if not data.strip():
        return "an empty body"
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return "a body that is not JSON"
    if not isinstance(body, dict):
        return f"JSON that is not an object (a {type(body).__name__})"
    if shape == "list":
        if "items" not in body:
            return "an object that is not a list (no items)"
        items = body.get("items")
        if items is not None and (not isinstance(items, list) or not all(
                isinstance(i, dict) and isinstance(i.get("metadata"), dict) and isinstance(
                    i["metadata"].get("name"), str) for i in items)):
            return "a list whose items are not Kubernetes objects"
        return None
    if not isinstance(body.get("metadata"), dict):
        return "an object without metadata"
    return None


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
