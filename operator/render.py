"""JobSpec + recipe text -> the Kubernetes objects of one training run, as plain dicts. PURE: no I/O, no MindSpore,
no kubernetes client. Modelled on TorchX's kubernetes_scheduler (a Volcano Job with one task per role).

The Helm chart (charts/incv4) renders the SAME objects for the same settings; a parity test compares them, so keep
key order and names deterministic and change both sides together.

What the rendered Job does, and why:
- Gang scheduling: minAvailable = nodes, so Volcano starts all pods or none (a partial ring would hang in HCCL).
- One task (contract.TASK_NAME) with replicas = nodes; plugins `svc` (a headless Service + hostfiles, publishing
  not-ready addresses so peers resolve each other before readiness) and `env` (VC_TASK_INDEX per pod); `incv4 launch`
  reads both to form MindSpore's cluster.
- Policies, first match wins in Volcano's controller: the trainer's permanent exit codes (contract.PERMANENT: a
  usage error, a diverged run) terminate the job instead of restarting it; any other pod failure or eviction restarts
  the whole job (auto-resume continues from the last checkpoint), up to maxRetry; the task completing completes the
  job. TerminateJob, not AbortJob: Volcano's garbage collector (pkg/controllers/garbagecollector/garbagecollector.go,
  isJobFinished) only cleans up Completed, Failed and Terminated jobs after ttlSecondsAfterFinished; an Aborted job
  is a suspended one (`incv4 suspend`) and would stay forever.
- The svc plugin runs with --disable-network-policy: otherwise it creates a NetworkPolicy admitting only the job's
  own pods (pkg/controllers/job/plugins/svc/svc.go, createNetworkPolicyIfNotExist), which shuts out a Prometheus in
  another namespace and the API server's pod proxy (`incv4 status`) from the metrics port. A policy opening that
  port to a monitoring namespace would still shut out the API server, whose address is no pod's; the namespace's own
  NetworkPolicies, if any, still apply.
- Scrape annotations (prometheus.io/scrape, /port, /path) on the pods, for a plain Prometheus without the Operator's
  PodMonitor (docs/cluster.md has the scrape config that keeps the dashboard's labels).
- NPUs (spec.NPU_MODES): with Volcano's NPU plugin, ASCEND_VISIBLE_DEVICES comes from the pod annotation the plugin
  writes; with the device plugin alone it is not set (the device plugin sets it). Nodes are selected by the chip's
  accelerator-type and the image's host-arch (MindCluster's node labels); the job carries fault-scheduling (default
  grace) so MindCluster reschedules it away from a failed chip.
- CPU and memory requests = limits (spec.CPU_PER_NPU, MEMORY_GIB_PER_NPU per NPU by default): the pod is Guaranteed,
  evicted last under node pressure, and each eviction would cost a retry.
- CANN's process logs (ASCEND_PROCESS_LOG_PATH) go to the checkpoint volume, one folder per pod, so the logs of a
  failed attempt survive the restart.
- One pod per node (anti-affinity on volcano.sh/job-name): each pod owns all of its node's NPUs it asks for.
- terminationGracePeriodSeconds outlasts the grace `incv4 launch` gives its workers after SIGTERM to save a
  checkpoint (contract.LAUNCH_GRACE_PERIOD); Kubernetes' default of 30 s would SIGKILL the pod just as that grace
  ends.
- Least privilege: not privileged, no privilege escalation, all capabilities dropped, read-only root filesystem,
  non-root user, RuntimeDefault seccomp, no service-account token. The Ascend device plugin allocates the chips and
  the container runtime (Ascend Docker Runtime) mounts /dev/davinci*, /dev/davinci_manager, /dev/devmm_svm and
  /dev/hisi_hdc; those device nodes are group-accessible to HwHiAiUser, so no capability is needed: the user only
  has to run in that group (run_as_user / run_as_group). The driver's libraries come from a read-only hostPath.
"""
from __future__ import annotations

from typing import Optional

from incv4.operator.spec import CKPT_MOUNT, FAULT_SCHEDULING_LABEL, HOST_ARCH_LABEL, HOST_ARCHES, JobSpec
from incv4.trainer import contract

API_VERSION = "batch.volcano.sh/v1alpha1"
CONTAINER_NAME = "trainer"
RECIPE_DIR = "/etc/incv4"
RECIPE_FILE = "recipe.yaml"
RECIPE_PATH = f"{RECIPE_DIR}/{RECIPE_FILE}"
DATA_MOUNT = "/data"
SCRATCH_MOUNT = "/tmp"  # HOME and working directory: MindSpore writes logs and compile caches there
ASCEND_DRIVER_PATH = "/usr/local/Ascend/driver"
VOLCANO_JOB_NAME_LABEL = "volcano.sh/job-name"  # Volcano puts it on every pod of a job
ASCEND_POD_LABEL = "ring-controller.atlas"
ASCEND_NODE_LABEL = "accelerator-type"
PERMANENT_EXIT_ACTION = "TerminateJob"
SVC_PLUGIN_ARGS = ["--publish-not-ready-addresses", "--disable-network-policy"]
# CANN's logs of each process (plog), per pod under the checkpoint volume: kept across restarts.
ASCEND_LOG_DIR = f"{CKPT_MOUNT}/ascend-log"
POD_NAME_ENV = "INCV4_POD_NAME"


def configmap_name(spec: JobSpec) -> str:
    return recipe_configmap_name(spec.name)


def recipe_configmap_name(job_name: str) -> str:
    return f"{job_name}-recipe"


def labels(spec: JobSpec) -> dict:
    """The app.kubernetes.io labels on every object (the chart adds its own helm.sh/chart and managed-by)."""
    return {
        "app.kubernetes.io/name": "incv4",
        "app.kubernetes.io/instance": spec.name,
        "app.kubernetes.io/component": "trainer",
        "app.kubernetes.io/part-of": "incv4",
    }


def launch_command(spec: JobSpec) -> list:
    """The container's command: `incv4 launch` with the mounted recipe, the dataset and checkpoint mounts."""
    cmd = ["incv4", "launch", "--config", RECIPE_PATH, "--data-dir", DATA_MOUNT]
    for override in spec.recipe_overrides:
        cmd += ["--set", override]
    # Last, so checkpoints always land on the mounted volume (JobSpec refuses a user's own --set ckpt_save_dir).
    cmd += ["--set", f"ckpt_save_dir={CKPT_MOUNT}", "--metrics-port", str(spec.metrics_port)]
    if spec.bind_core:  # the seed's msrun --bind_core=True; `incv4 launch` leaves it off, as msrun does
        cmd += ["--bind-core"]
    if spec.npus != contract.DEFAULT_LOCAL_WORKERS:
        # One worker process per NPU; the launcher's default is a full node's.
        cmd += ["--local-workers", str(spec.npus)]
    if spec.max_restarts:
        cmd += ["--max-restarts", str(spec.max_restarts)]
    return cmd


def render_configmap(spec: JobSpec, recipe_text: str) -> dict:
    """The recipe, verbatim, as a ConfigMap the pods mount at /etc/incv4/recipe.yaml."""
    meta = {"name": configmap_name(spec), "namespace": spec.namespace, "labels": labels(spec)}
    if spec.recipe:
        meta["annotations"] = {"incv4.io/recipe-source": spec.recipe}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {RECIPE_FILE: recipe_text}}


def _policies() -> list:
    permanent = [{"exitCode": code, "action": PERMANENT_EXIT_ACTION} for code in contract.PERMANENT]
    return permanent + [{"events": ["PodEvicted", "PodFailed"], "action": "RestartJob"}]


def _resources(spec: JobSpec) -> dict:
    """Requests = limits for everything: Guaranteed QoS (extended resources cannot be overcommitted anyway)."""
    amounts: dict = {}
    if spec.pod_cpu:
        amounts["cpu"] = spec.pod_cpu
    if spec.pod_memory:
        amounts["memory"] = spec.pod_memory
    resource = spec.chip_info.resource
    if resource:
        amounts[resource] = str(spec.npus)
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def scrape_annotations(spec: JobSpec) -> dict:
    """The prometheus.io annotations a plain Prometheus's pod discovery keeps (docs/cluster.md)."""
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(spec.metrics_port),
            "prometheus.io/path": "/metrics"}


def _env(spec: JobSpec) -> list:
    env = [{"name": "HOME", "value": SCRATCH_MOUNT}]
    resource = spec.chip_info.resource
    if resource and spec.npu_mode == "volcano":
        # Huawei's Volcano NPU plugin writes the chips it picked (e.g. "Ascend910-0,Ascend910-1") into this pod
        # annotation; with the device plugin alone nobody does, and the device plugin sets the variable itself.
        env.append({"name": "ASCEND_VISIBLE_DEVICES",
                    "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{resource}']"}}})
    if resource:
        env.append({"name": POD_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
        env.append({"name": "ASCEND_PROCESS_LOG_PATH", "value": f"{ASCEND_LOG_DIR}/$({POD_NAME_ENV})"})
    env += [{"name": key, "value": spec.env[key]} for key in sorted(spec.env)]
    return env


def _volumes_and_mounts(spec: JobSpec) -> tuple:
    volumes = [{"name": "recipe", "configMap": {"name": configmap_name(spec)}}]
    mounts = [{"name": "recipe", "mountPath": RECIPE_DIR, "readOnly": True}]
    if spec.dataset_pvc:
        volumes.append({"name": "dataset",
                        "persistentVolumeClaim": {"claimName": spec.dataset_pvc, "readOnly": True}})
    else:
        volumes.append({"name": "dataset", "hostPath": {"path": spec.dataset_host_path, "type": "Directory"}})
    mounts.append({"name": "dataset", "mountPath": DATA_MOUNT, "readOnly": True})
    if spec.ckpt_pvc:
        volumes.append({"name": "ckpt", "persistentVolumeClaim": {"claimName": spec.ckpt_pvc}})
    else:
        # Without a PVC, checkpoints live as long as the pod: a RestartJob then starts over. Use --ckpt-pvc.
        volumes.append({"name": "ckpt", "emptyDir": {}})
    mounts.append({"name": "ckpt", "mountPath": CKPT_MOUNT})
    volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}})
    mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    volumes.append({"name": "scratch", "emptyDir": {}})
    mounts.append({"name": "scratch", "mountPath": SCRATCH_MOUNT})
    if spec.chip_info.resource:
        volumes.append({"name": "ascend-driver", "hostPath": {"path": ASCEND_DRIVER_PATH, "type": "Directory"}})
        mounts.append({"name": "ascend-driver", "mountPath": ASCEND_DRIVER_PATH, "readOnly": True})
    return volumes, mounts


def _container(spec: JobSpec, mounts: list) -> dict:
    container = {
        "name": CONTAINER_NAME,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": launch_command(spec),
        "workingDir": SCRATCH_MOUNT,
        "env": _env(spec),
        "ports": [{"name": contract.METRICS_PORT_NAME, "containerPort": spec.metrics_port, "protocol": "TCP"}],
    }
    resources = _resources(spec)
    if resources:
        container["resources"] = resources
    container["volumeMounts"] = mounts
    container["securityContext"] = {
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    return container


def _pod_labels(spec: JobSpec) -> dict:
    out = labels(spec)
    if spec.chip_info.pod_label:
        out[ASCEND_POD_LABEL] = spec.chip_info.pod_label
    return out


def _job_labels(spec: JobSpec) -> dict:
    """The pods' labels plus fault-scheduling, which the NPU plugin reads from the PodGroup (Volcano copies the
    job's labels there: volcano-sh/volcano pkg/controllers/job/job_controller_actions.go, the PodGroup it creates)."""
    out = _pod_labels(spec)
    if spec.fault_scheduling_label:
        out[FAULT_SCHEDULING_LABEL] = spec.fault_scheduling_label
    return out


def _node_selector(spec: JobSpec) -> Optional[dict]:
    selector = {}
    if spec.chip_info.accelerator_type:
        selector[ASCEND_NODE_LABEL] = spec.chip_info.accelerator_type
        # Only NPU nodes carry host-arch (MindCluster labels them); a CPU smoke run goes anywhere.
        selector[HOST_ARCH_LABEL] = HOST_ARCHES[spec.arch]
    for key in sorted(spec.node_selector):
        selector[key] = spec.node_selector[key]
    return selector or None


def _pod_spec(spec: JobSpec) -> dict:
    volumes, mounts = _volumes_and_mounts(spec)
    pod: dict = {
        "restartPolicy": "Never",  # Volcano's policies decide restarts, for the whole gang at once
        # Longer than the launcher's grace for workers to save a checkpoint after SIGTERM (contract.LAUNCH_GRACE_PERIOD)
        "terminationGracePeriodSeconds": spec.termination_grace_period,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": spec.run_as_user,
            "runAsGroup": spec.run_as_group,
            "fsGroup": spec.run_as_group,
            "fsGroupChangePolicy": "OnRootMismatch",  # never chown a whole dataset PVC at every start
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {VOLCANO_JOB_NAME_LABEL: spec.name}},
            "topologyKey": "kubernetes.io/hostname",
        }]}},
    }
    selector = _node_selector(spec)
    if selector:
        pod["nodeSelector"] = selector
    if spec.tolerations:
        pod["tolerations"] = [dict(t) for t in spec.tolerations]
    pod["containers"] = [_container(spec, mounts)]
    pod["volumes"] = volumes
    return pod


def render_job(spec: JobSpec, recipe_text: str = "") -> dict:
    """The batch.volcano.sh/v1alpha1 Job. `recipe_text` is unused here (it goes into the ConfigMap) but accepted so
    callers can treat all renderers alike."""
    del recipe_text
    job_spec: dict = {
        "schedulerName": "volcano",
        "minAvailable": spec.nodes,
        "queue": spec.queue,
    }
    if spec.priority_class:
        job_spec["priorityClassName"] = spec.priority_class
    job_spec["maxRetry"] = spec.max_retry
    if spec.ttl_seconds is not None:
        job_spec["ttlSecondsAfterFinished"] = spec.ttl_seconds
    job_spec["policies"] = _policies()
    job_spec["plugins"] = {"env": [], "svc": list(SVC_PLUGIN_ARGS)}
    job_spec["tasks"] = [{
        "name": contract.TASK_NAME,
        "replicas": spec.nodes,
        "policies": [{"event": "TaskCompleted", "action": "CompleteJob"}],
        "template": {
            "metadata": {"labels": _pod_labels(spec), "annotations": scrape_annotations(spec)},
            "spec": _pod_spec(spec),
        },
    }]
    return {
        "apiVersion": API_VERSION,
        "kind": "Job",
        # The Ascend labels on the Job too: Volcano copies job labels to the PodGroup, where MindCluster reads them.
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": _job_labels(spec)},
        "spec": job_spec,
    }


def render_all(spec: JobSpec, recipe_text: str) -> list:
    """Every object of a run, in the order to create them (the ConfigMap first: the pods mount it)."""
    return [render_configmap(spec, recipe_text), render_job(spec)]
