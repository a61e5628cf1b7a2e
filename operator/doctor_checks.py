"""The checks of `incv4 doctor`, PURE: what the rendered Job needs (`JobNeeds`, read from render's output, so every
render option counts by itself) against cluster objects already read (plain dicts; None = not there). Each check
returns one `Check`: a row of the doctor's table, with the fix when it fails. incv4.operator.doctor does the reads.

Sources of the shapes and rules:
- Volcano: CRDs jobs.batch.volcano.sh (v1alpha1) and queues.scheduling.volcano.sh (v1beta1), Queue spec.capability,
  status.state Open/Closed/Closing/Unknown and status.allocated (volcano-sh/apis pkg/apis/scheduling/v1beta1/types.go;
  volcano-sh/volcano config/crd/volcano/bases); the scheduler's pods carry `app: volcano-scheduler` and its
  configuration is the ConfigMap volcano-scheduler-configmap, key volcano-scheduler.conf, in volcano-system
  (volcano-sh/volcano installer/helm/chart/volcano/templates/scheduler.yaml).
- Huawei's Volcano NPU plugin: listed in that configuration's tiers as `volcano-npu_<version>_linux-<arch>` (older
  releases: `volcano-npu-v<version>`), the name of the .so MindCluster builds (Ascend/mind-cluster
  component/ascend-for-volcano/build/volcano-v1.12.0.yaml and build/build.sh); only it writes the pod annotation
  huawei.com/Ascend910 that ASCEND_VISIBLE_DEVICES is read from.
- Pod Security: the namespace label pod-security.kubernetes.io/enforce (privileged when absent, unless the cluster's
  admission configuration sets another default); baseline and restricted forbid hostPath volumes
  (https://kubernetes.io/docs/concepts/security/pod-security-standards/, /pod-security-admission/).
- PVC access modes: a ReadWriteOnce volume attaches to one node at a time, so pods of a multi-node job on other nodes
  never start (https://kubernetes.io/docs/concepts/storage/persistent-volumes/#access-modes).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

import yaml

OK, FAIL, WARN, SKIP = "ok", "FAIL", "warn", "skip"

VOLCANO_CRDS = {"jobs.batch.volcano.sh": "v1alpha1", "queues.scheduling.volcano.sh": "v1beta1"}
MONITORING_CRDS = {"PodMonitor": "podmonitors.monitoring.coreos.com",
                   "PrometheusRule": "prometheusrules.monitoring.coreos.com",
                   "ServiceMonitor": "servicemonitors.monitoring.coreos.com"}
SCHEDULER_CONFIGMAP = "volcano-scheduler-configmap"
SCHEDULER_CONF_KEY = "volcano-scheduler.conf"
SCHEDULER_POD_SELECTOR = "app=volcano-scheduler"
NPU_PLUGIN = re.compile(r"^(volcano-npu[-_].+|huawei-npu)$")
NPU_ANNOTATION_PREFIX = "metadata.annotations['huawei.com/"
PSS_LABEL = "pod-security.kubernetes.io/enforce"
# Restricted allows only these volume types (Pod Security Standards, "Volume Types").
RESTRICTED_VOLUMES = ("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret")
BASELINE_CAPABILITIES = ("AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                         "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT")
MULTI_NODE_READ = ("ReadOnlyMany", "ReadWriteMany")


@dataclass(frozen=True)
class Check:
    """One row of the table: `status` OK, FAIL (the job cannot run), WARN (it can, with a caveat) or SKIP."""
    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass
class JobNeeds:
    """What one rendered Job asks of the cluster."""
    nodes: int
    queue: str
    max_retry: int
    pod_spec: dict
    requests: dict = field(default_factory=dict)  # per pod: resource -> amount
    npu_resource: Optional[str] = None
    reads_plugin_annotation: bool = False
    monitoring_kinds: tuple = ()

    @property
    def node_selector(self) -> dict:
        return self.pod_spec.get("nodeSelector") or {}

    def claims(self) -> list:
        """(volume name, claim name, read-only) of every PVC the pod mounts."""
        out = []
        for volume in self.pod_spec.get("volumes") or []:
            claim = volume.get("persistentVolumeClaim")
            if claim:
                out.append((volume["name"], claim.get("claimName"), bool(claim.get("readOnly"))))
        return out

    def total(self, resource: str) -> float:
        return self.requests.get(resource, 0.0) * self.nodes


def quantity(text) -> float:
    """A Kubernetes resource quantity (500m, 8, 64Gi, 1e3) as a number."""
    match = re.fullmatch(r"\s*([+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+))([eE][-+]?[0-9]+|[KMGTPE]i|[mkMGTPE])?\s*",
                         str(text))
    if not match:
        raise ValueError(f"not a quantity: {text!r}")
    number, suffix = float(match.group(1)), match.group(2) or ""
    if suffix[:1] in ("e", "E"):
        return number * 10 ** int(suffix[1:])
    scale = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
    if suffix.endswith("i"):
        return number * 1024 ** ("KMGTPE".index(suffix[0]) + 1)
    return number * scale.get(suffix, 1.0)


def _container_requests(container: dict) -> dict:
    """Requests, with limits standing in where a request is missing (as the API server defaults them)."""
    resources = container.get("resources") or {}
    merged = dict(resources.get("limits") or {})
    merged.update(resources.get("requests") or {})
    return {name: quantity(value) for name, value in merged.items()}


def needs_of(objects: list) -> JobNeeds:
    """JobNeeds of render's output (the Volcano Job and whatever else it renders)."""
    job = next(o for o in objects if o.get("kind") == "Job")
    spec = job["spec"]
    task = spec["tasks"][0]
    pod = task["template"]["spec"]
    requests: dict = {}
    plugin_annotation = False
    for container in pod.get("containers") or []:
        for name, amount in _container_requests(container).items():
            requests[name] = requests.get(name, 0.0) + amount
        for env in container.get("env") or []:
            path = ((env.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") or ""
            plugin_annotation = plugin_annotation or path.startswith(NPU_ANNOTATION_PREFIX)
    npu = next((name for name in sorted(requests) if name.startswith("huawei.com/")), None)
    kinds = tuple(sorted({o.get("kind") for o in objects if o.get("kind") in MONITORING_CRDS}))
    return JobNeeds(nodes=int(task.get("replicas", spec.get("minAvailable", 1))), queue=spec.get("queue") or "default",
                    max_retry=int(spec.get("maxRetry", 3)), pod_spec=pod, requests=requests, npu_resource=npu,
                    reads_plugin_annotation=plugin_annotation, monitoring_kinds=kinds)


def _amount(value: float, resource: str = "") -> str:
    if resource in ("memory", "ephemeral-storage") and value >= 2 ** 30:
        return f"{value / 2 ** 30:g}Gi"
    return f"{value:g}"


# ---- Volcano --------------------------------------------------------------------------------------------------

def _established(crd: dict) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions) or not conditions


def _serves(crd: dict, version: str) -> bool:
    versions = (crd.get("spec") or {}).get("versions") or []
    return any(v.get("name") == version and v.get("served", True) for v in versions)


def check_volcano_crds(crds: dict) -> Check:
    problems = []
    for name, version in VOLCANO_CRDS.items():
        crd = crds.get(name)
        if crd is None:
            problems.append(f"{name} is missing")
        elif not _established(crd):
            problems.append(f"{name} is not Established")
        elif not _serves(crd, version):
            problems.append(f"{name} does not serve {version}")
    if problems:
        return Check("volcano-crds", FAIL, "; ".join(problems),
                     "install Volcano (https://volcano.sh/en/docs/installation/), or MindCluster's Volcano build")
    return Check("volcano-crds", OK, ", ".join(f"{n} {v}" for n, v in VOLCANO_CRDS.items()))


def check_scheduler(pods: list, volcano_namespace: str) -> Check:
    running = [p["metadata"]["name"] for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    if running:
        return Check("volcano-scheduler", OK, f"{len(running)} running in {volcano_namespace} ({running[0]})")
    seen = f"{len(pods)} pod(s), none Running" if pods else "no pod"
    return Check("volcano-scheduler", FAIL, f"{seen} with label {SCHEDULER_POD_SELECTOR} in {volcano_namespace}",
                 f"start Volcano's scheduler (kubectl -n {volcano_namespace} get deploy volcano-scheduler), "
                 f"or give --volcano-namespace where it runs")


def check_queue(queue: Optional[dict], needs: JobNeeds) -> Check:
    name = needs.queue
    if queue is None:
        return Check("queue", FAIL, f"queue {name!r} does not exist",
                     f"create it (a scheduling.volcano.sh/v1beta1 Queue, e.g. vcctl queue create -n {name}) or give "
                     f"--queue with an existing one")
    state = (queue.get("status") or {}).get("state") or "Unknown"
    if state != "Open":
        return Check("queue", FAIL, f"queue {name!r} is {state}, not Open",
                     f"open it: vcctl queue operate -n {name} -a open")
    capability = (queue.get("spec") or {}).get("capability") or {}
    allocated = (queue.get("status") or {}).get("allocated") or {}
    short, busy = [], []
    for resource in sorted(set(capability) & set(needs.requests)):
        cap, want = quantity(capability[resource]), needs.total(resource)
        if want > cap:
            short.append(f"{resource} {_amount(want, resource)} > capability {_amount(cap, resource)}")
        elif want > cap - quantity(allocated.get(resource, 0)):
            free = cap - quantity(allocated[resource])
            busy.append(f"{resource} {_amount(want, resource)} > free {_amount(free, resource)}")
    if short:
        return Check("queue", FAIL, f"queue {name!r} can never hold the job: " + ", ".join(short),
                     "raise the queue's spec.capability, or ask for fewer --nodes/--npus, or use another --queue")
    if busy:
        return Check("queue", WARN, f"queue {name!r} is Open, but busy now: " + ", ".join(busy) +
                     "; the job waits until that much is free")
    room = "no capability limit" if not capability else "room for the request"
    return Check("queue", OK, f"queue {name!r} Open, {room}")


# ---- nodes and NPUs -------------------------------------------------------------------------------------------

def _ready(node: dict) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _tolerated(taint: dict, tolerations: list) -> bool:
    for tol in tolerations:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists" and (not tol.get("key") or tol.get("key") == taint.get("key")):
            return True
        if tol.get("key") == taint.get("key") and tol.get("value", "") == taint.get("value", ""):
            return True
    return False


def _node_misfit(node: dict, needs: JobNeeds) -> Optional[str]:
    """Why the job's pod cannot run on this node ("labels", "taints", a resource, "not ready"), or None."""
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in needs.node_selector.items()):
        return "labels"
    if not _ready(node) or (node.get("spec") or {}).get("unschedulable"):
        return "not ready"
    taints = [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("effect") in ("NoSchedule", "NoExecute")]
    if any(not _tolerated(t, needs.pod_spec.get("tolerations") or []) for t in taints):
        return "taints"
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    for resource, amount in sorted(needs.requests.items()):
        if quantity(allocatable.get(resource, 0)) < amount:
            return resource
    return None


MISFIT_WORDS = {"labels": "lack the labels", "not ready": "not ready or cordoned",
                "taints": "have taints not tolerated"}


def check_nodes(nodes: list, needs: JobNeeds) -> Check:
    misfits = [_node_misfit(node, needs) for node in nodes]
    fit = misfits.count(None)
    wanted = ", ".join(f"{k}={v}" for k, v in sorted(needs.node_selector.items())) or "any labels"
    per_pod = ", ".join(f"{r} {_amount(a, r)}" for r, a in sorted(needs.requests.items())) or "no requests"
    if fit >= needs.nodes:
        return Check("nodes", OK, f"{fit} node(s) fit ({wanted}; allocatable {per_pod}); the job needs "
                                  f"{needs.nodes}, one pod per node")
    reasons = {}
    for why in misfits:
        if why is not None:
            reasons[why] = reasons.get(why, 0) + 1
    told = ", ".join(f"{count} {MISFIT_WORDS.get(why, 'too little ' + why)}" for why, count in sorted(reasons.items()))
    return Check("nodes", FAIL, f"{fit} of {len(nodes)} node(s) fit ({wanted}; allocatable {per_pod}), the job needs "
                                f"{needs.nodes}" + (f": {told}" if told else ""),
                 "ask for fewer --nodes or --npus, pick the --chip/--node-selector your nodes have, or free "
                 "the NPUs (kubectl describe node shows allocatable and labels)")


def scheduler_plugins(configmap: Optional[dict]) -> list:
    """The plugin names of volcano-scheduler.conf's tiers ([] when the ConfigMap or the key is missing)."""
    text = ((configmap or {}).get("data") or {}).get(SCHEDULER_CONF_KEY) or ""
    try:
        conf = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return []
    tiers = conf.get("tiers") if isinstance(conf, dict) else None
    names = []
    for tier in tiers if isinstance(tiers, list) else []:
        plugins = tier.get("plugins") if isinstance(tier, dict) else None
        for plugin in plugins if isinstance(plugins, list) else []:
            if isinstance(plugin, dict) and isinstance(plugin.get("name"), str):
                names.append(plugin["name"])
    return names


def check_npu_plugin(configmap: Optional[dict], needs: JobNeeds, volcano_namespace: str) -> Check:
    if needs.npu_resource is None:
        return Check("npu-plugin", SKIP, "the job asks for no NPUs")
    plugin = next((name for name in scheduler_plugins(configmap) if NPU_PLUGIN.match(name)), None)
    where = f"{volcano_namespace}/{SCHEDULER_CONFIGMAP}"
    if needs.reads_plugin_annotation and plugin is None:
        found = "lists no volcano-npu_* plugin" if configmap is not None else "does not exist"
        return Check("npu-plugin", FAIL, f"the job reads ASCEND_VISIBLE_DEVICES from the annotation only Huawei's "
                                         f"Volcano NPU plugin writes, and {where} {found}",
                     "give --npu-mode device-plugin (docs/cluster.md, the two NPU modes), or install "
                     "MindCluster's ascend-for-volcano plugin into Volcano's scheduler")
    if plugin is None:
        return Check("npu-plugin", OK, f"no NPU plugin in {where}: the device-plugin mode, as rendered, fits")
    if needs.reads_plugin_annotation:
        return Check("npu-plugin", OK, f"{plugin} in {where}: the Volcano NPU mode, as rendered, fits")
    # With the plugin, MindCluster runs the device plugin in its Volcano mode too: the plugin's mode is the documented one.
    return Check("npu-plugin", WARN, f"{plugin} in {where}: the cluster runs Huawei's Volcano NPU plugin, whose "
                                     f"documented pairing is the Volcano NPU mode; the device-plugin mode, as "
                                     f"rendered, is unverified there", "give --npu-mode volcano")


def check_monitoring(crds: dict, kinds: tuple) -> Check:
    if not kinds:
        return Check("prometheus-operator", SKIP, "no PodMonitor or PrometheusRule requested")
    missing = [MONITORING_CRDS[k] for k in kinds if crds.get(MONITORING_CRDS[k]) is None]
    if missing:
        return Check("prometheus-operator", FAIL, "missing CRD(s) " + ", ".join(missing),
                     "install the Prometheus Operator (e.g. kube-prometheus-stack), or scrape with a plain "
                     "Prometheus (docs/monitoring.md) and leave the monitoring objects out")
    return Check("prometheus-operator", OK, "CRDs of " + ", ".join(kinds) + " present")


# ---- volumes --------------------------------------------------------------------------------------------------

def _modes(pvc: dict) -> list:
    return list((pvc.get("status") or {}).get("accessModes") or (pvc.get("spec") or {}).get("accessModes") or [])


def check_pvc(volume: str, claim: str, read_only: bool, pvc: Optional[dict], storage_class: Optional[dict],
              needs: JobNeeds, namespace: str) -> Check:
    name = f"pvc-{volume}"
    if pvc is None:
        return Check(name, FAIL, f"PVC {claim!r} does not exist in namespace {namespace}",
                     f"create it in {namespace}, or name an existing claim")
    phase = (pvc.get("status") or {}).get("phase") or "Pending"
    waits = (storage_class or {}).get("volumeBindingMode") == "WaitForFirstConsumer"
    if phase != "Bound" and not (phase == "Pending" and waits):
        return Check(name, FAIL, f"PVC {claim!r} is {phase}, not Bound",
                     f"kubectl -n {namespace} describe pvc {claim} tells why (no matching volume, provisioner)")
    modes = _modes(pvc)
    if needs.nodes > 1:
        good = MULTI_NODE_READ if read_only else ("ReadWriteMany",)
    else:
        good = MULTI_NODE_READ + ("ReadWriteOnce", "ReadWriteOncePod") if read_only else \
            ("ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
    if not set(modes) & set(good):
        use = "read" if read_only else "written"
        return Check(name, FAIL, f"PVC {claim!r} is {'/'.join(modes) or 'without access modes'}, but it is {use} by "
                                 f"{needs.nodes} node(s): it needs {' or '.join(good)}",
                     "use a claim of a storage class with that access mode (NFS, CephFS, a parallel file system)")
    bound = "Pending until the first pod (WaitForFirstConsumer)" if phase != "Bound" else "Bound"
    return Check(name, OK, f"PVC {claim!r} {bound}, {'/'.join(modes)}")


def check_checkpoints_volume(needs: JobNeeds) -> Optional[Check]:
    """A warning row when checkpoints live in an emptyDir while the job may restart (None when they do not)."""
    ckpt = next((v for v in needs.pod_spec.get("volumes") or [] if v.get("name") == "ckpt"), None)
    if ckpt is None or "emptyDir" not in ckpt or needs.max_retry <= 0:
        return None
    return Check("pvc-ckpt", WARN, f"checkpoints in an emptyDir: each of the {needs.max_retry} restarts starts over",
                 "give --ckpt-pvc")


# ---- Pod Security ---------------------------------------------------------------------------------------------

def _baseline_violations(pod: dict) -> list:
    found = [f"hostPath volume {v['name']!r} ({v['hostPath'].get('path')})"
             for v in pod.get("volumes") or [] if "hostPath" in v]
    found += [f"{key}" for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key)]
    for container in pod.get("containers") or []:
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            found.append(f"privileged container {container['name']!r}")
        added = set(((context.get("capabilities") or {}).get("add")) or []) - set(BASELINE_CAPABILITIES)
        if added:
            found.append(f"capabilities {sorted(added)} added")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            found.append(f"hostPort in {container['name']!r}")
    return found


def _restricted_violations(pod: dict) -> list:
    found = [f"volume {v['name']!r} of a type restricted forbids" for v in pod.get("volumes") or []
             if "hostPath" not in v and not set(v) - {"name"} <= set(RESTRICTED_VOLUMES)]  # hostPath: baseline says
    pod_context = pod.get("securityContext") or {}
    for container in pod.get("containers") or []:
        context = container.get("securityContext") or {}
        both = {**pod_context, **context}
        if both.get("runAsNonRoot") is not True:
            found.append(f"{container['name']!r} may run as root")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{container['name']!r} allows privilege escalation")
        if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
            found.append(f"{container['name']!r} does not drop ALL capabilities")
        if (both.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            found.append(f"{container['name']!r} has no RuntimeDefault seccomp profile")
    return found


def check_pod_security(namespace_obj: Optional[dict], needs: JobNeeds, namespace: str) -> Check:
    if namespace_obj is None:
        return Check("pod-security", FAIL, f"namespace {namespace!r} does not exist",
                     f"kubectl create namespace {namespace}, or give -n with an existing one")
    labels = namespace_obj["metadata"].get("labels") or {}
    level = labels.get(PSS_LABEL)
    if level in (None, "privileged"):
        told = "no enforce label (privileged, unless the cluster's admission configuration says otherwise)" \
            if level is None else "enforce=privileged"
        return Check("pod-security", OK, f"namespace {namespace!r}: {told}")
    found = _baseline_violations(needs.pod_spec)
    if level == "restricted":
        found += _restricted_violations(needs.pod_spec)
    if found:
        return Check("pod-security", FAIL, f"namespace {namespace!r} enforces {level}, which refuses the pod: "
                                           + "; ".join(dict.fromkeys(found)),
                     f"a cluster admin labels it {PSS_LABEL}=privileged (the Ascend driver is a hostPath mount), "
                     f"or run in a namespace that allows it; a dataset on a PVC (--dataset-pvc) needs no hostPath")
    return Check("pod-security", OK, f"namespace {namespace!r} enforces {level}; the pod complies")
