"""What a user asks for when running InceptionV4 on the cluster: the JobSpec, validated field by field.

Every problem raises `SpecError` with one line that names the field, before anything is rendered or sent. The spec
knows nothing about Kubernetes objects (that is render.py) and imports nothing heavy.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence, Tuple

from incv4.trainer.contract import LAUNCH_GRACE_PERIOD, METRICS_PORT, TASK_NAME


class SpecError(ValueError):
    """A job spec problem, described in one line that names the field."""


# Volcano's svc plugin gives every pod the hostname `<job>-<task>-<index>` (a DNS-1123 label, at most 63 chars) and
# a Service named after the job (a DNS-1035 label: must start with a letter).
DNS_LABEL_MAX = 63
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# An OCI image reference: [registry[:port]/]path[:tag][@digest]. Upper case is not allowed in the path.
_IMAGE = re.compile(
    r"^(?:(?:[a-zA-Z0-9-]+\.)*[a-zA-Z0-9-]+(?::[0-9]+)?/)?"  # optional registry (host[:port]/)
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"  # path
    r"(?::[\w][\w.-]{0,127})?"  # tag
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"  # digest
)
# A Kubernetes resource quantity (e.g. 500m, 2, 64Gi, 1e3).
_QUANTITY = re.compile(r"^([+]?[0-9.]+)([eE][-+]?[0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_LABEL_NAME = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                         r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")

# NPUs per pod. MindCluster's Volcano plugin (ascend-for-volcano) accepts 1, 2, 4 or 8 per pod on an Atlas 800
# (module910x8: NpuNumInvalidMap {3, 5, 6, 7}) and 1..8 on an Atlas 800T A2 (base handler, MaxNodeNPUNum 8), in
# single-node and, since MindCluster 5.0.RC1, in multi-node jobs ("Affinity Policy in Distributed Scenarios",
# docs/en/scheduling/usage/basic_scheduling/01_affinity_scheduling/03_ascend_ai_processor_based_affinity.md in
# Ascend/mind-cluster). 1, 2, 4, 8 is what both chips accept, on any number of nodes; the rest is refused.
NPU_CHOICES = (1, 2, 4, 8)

# How the pods get their NPUs, the two ways MindCluster documents (Ascend/mind-cluster, docs/en/scheduling/usage/
# basic_scheduling/03_full_npu_scheduling_and_static_vnpu_scheduling_training.md):
# - "volcano": Volcano's scheduler with Huawei's NPU plugin (ascend-for-volcano) picks the chips and writes them into
#   the pod annotation huawei.com/Ascend910, which the vendor's vcjob samples pass on as ASCEND_VISIBLE_DEVICES;
# - "device-plugin": the Ascend device plugin alone (no NPU plugin in Volcano): nobody writes that annotation, so
#   the variable must not be set ("other schedulers do not support ASCEND_VISIBLE_DEVICES-related fields"); the
#   device plugin's Allocate answer sets it for the container (ascend-device-plugin pkg/common SetAscendRuntimeEnv).
NPU_MODES = ("volcano", "device-plugin")
# MindCluster's node label host-arch (docs/en/scheduling/api/k8s.md, "Node Labels"), by the image's architecture.
HOST_ARCH_LABEL = "host-arch"
HOST_ARCHES = {"arm": "huawei-arm", "x86": "huawei-x86"}
# The job label fault-scheduling (docs/en/scheduling/api/volcano.md): what the NPU plugin does when a chip or node of
# a running job fails. grace: the pods get SIGTERM and their grace period (incv4 launch saves a checkpoint), then the
# job is rescheduled away from the fault; force: killed at once; off: no rescheduling.
FAULT_SCHEDULING_LABEL = "fault-scheduling"
FAULT_SCHEDULING_CHOICES = ("grace", "force", "off")
DEFAULT_FAULT_SCHEDULING = "grace"
# CPU and memory per pod when not given: per NPU, so the pod is Guaranteed (requests = limits) and sized to its
# share of an 8-NPU server (Atlas 800 / 800T A2: four Kunpeng 920, 192 cores or more): 8 ranks x (1 main thread +
# the recipe's 8 data workers) fit 16 cores per NPU; 64 GiB per NPU covers a rank's host memory, its dataset
# pipeline and its share of the in-memory /dev/shm (which counts against the memory limit). docs/cluster.md.
CPU_PER_NPU = 16
MEMORY_GIB_PER_NPU = 64

# Volcano's Job CRD declares minAvailable, tasks[].replicas (both = nodes), maxRetry and ttlSecondsAfterFinished as
# `format: int32` (config/crd/volcano/bases/batch.volcano.sh_jobs.yaml): a larger number is refused by the API server
# only at submit, and by nobody at render.
INT32_MAX = 2**31 - 1

# Where the pods mount the checkpoint volume; render passes `--set ckpt_save_dir=CKPT_MOUNT` to `incv4 launch` so
# checkpoints always land on it, so a user's own `--set ckpt_save_dir` would be silently replaced: it is refused.
CKPT_MOUNT = "/ckpt"
RESERVED_RECIPE_KEYS = ("ckpt_save_dir",)

# Environment variables the pods get from incv4 or the NPU stack; a user's own would be silently replaced.
RESERVED_ENV = {
    "ASCEND_VISIBLE_DEVICES": "set by the Ascend device plugin",
    "ASCEND_PROCESS_LOG_PATH": "set by incv4 (CANN's logs on the checkpoint volume)",
    "INCV4_POD_NAME": "set by incv4 (the pod's name)",
}

# The pod's terminationGracePeriodSeconds must outlast the launcher's grace (contract.LAUNCH_GRACE_PERIOD): with
# Kubernetes' default of 30 s the kubelet would SIGKILL the whole pod the moment the launcher's grace ends, and the
# checkpoint being written could be lost.
MIN_TERMINATION_GRACE_PERIOD = LAUNCH_GRACE_PERIOD + 1
# The launcher's grace plus a margin for the launcher to reap its workers, flush its logs and exit.
DEFAULT_TERMINATION_GRACE_PERIOD = 60


@dataclass(frozen=True)
class Chip:
    """How one Ascend chip generation shows up in Kubernetes (Ascend Device Plugin / MindCluster docs)."""
    resource: Optional[str]  # extended resource the device plugin advertises; None = a CPU-only job
    pod_label: Optional[str]  # `ring-controller.atlas` pod label value (read by the device plugin and Volcano)
    accelerator_type: Optional[str]  # node label `accelerator-type` of an 8-NPU training server


CHIPS = {
    # Atlas 800 training servers (Ascend 910): 8 NPUs on a module board, node label accelerator-type=module.
    "910": Chip("huawei.com/Ascend910", "ascend-910", "module"),
    # Atlas 800T A2 (Ascend 910B): still advertised as huawei.com/Ascend910; node label accelerator-type=module-910b-8.
    "910B": Chip("huawei.com/Ascend910", "ascend-910b", "module-910b-8"),
    # No NPUs: for a CPU-only smoke run (e.g. on kind); no device resource, no driver mounts, no node selector.
    "cpu": Chip(None, None, None),
}

TOLERATION_OPERATORS = ("Equal", "Exists")
TOLERATION_EFFECTS = ("", "NoSchedule", "PreferNoSchedule", "NoExecute")


@dataclass(frozen=True)
class Flag:
    """How a JobSpec field is given on the command line; operator/cli_spec.py turns each into a click option, so a
    field's flag, type, default (the field's own) and help are written once, here."""
    decls: Tuple[str, ...]  # the flag's spellings, e.g. ("-c", "--recipe", "--config")
    help: str
    type: type = str
    multiple: bool = False  # repeatable; the values reach `parse` as a tuple
    metavar: Optional[str] = None
    parse: Optional[Callable[[object], object]] = None  # flag value -> field value; None = taken as given
    path: bool = False  # a file path (shown as FILE)


def _flag(*decls: str, help: str, **how) -> dict:  # noqa: A002 - click's own name for it
    return {"flag": Flag(decls, help, **how)}


NO_FLAG = {"flag": None}  # set by the command itself (namespace) or not a flag at all

# The recipe `incv4 render` and `incv4 submit` ship when no -c is given.
DEFAULT_RECIPE = "inception_v4_ascend.yaml"


def parse_toleration(text: str) -> dict:
    """kubectl-taint style: `key[=value]:Effect`, `key:Effect`, `key` (Exists), or `:Effect`/`*` for all."""
    text = text.strip()
    effect = ""
    if ":" in text:
        text, _, effect = text.rpartition(":")
    tol: dict = {}
    if text in ("", "*"):
        tol["operator"] = "Exists"
    elif "=" in text:
        key, _, value = text.partition("=")
        tol.update(key=key, operator="Equal", value=value)
    else:
        tol.update(key=text, operator="Exists")
    if effect:
        tol["effect"] = effect
    return tol


def parse_pairs(label: str, items: Sequence[str]) -> dict:
    """`K=V` flags (--node-selector, --env) into a dict; later flags win."""
    out = {}
    for item in items:
        if "=" not in item:
            raise SpecError(f"{label} {item!r}: expected KEY=VALUE")
        key, _, value = item.partition("=")
        out[key] = value
    return out


@dataclass(frozen=True)
class JobSpec:
    """One training run on the cluster. Defaults are the published recipe's shape: 1 node x 8 NPUs. Each field
    carries its command-line flag (`Flag`, in its metadata); the order of the fields is the order of `--help`."""
    name: str = field(metadata=_flag(
        "--name", help="Job name (a DNS-1035 label, short enough for '<name>-worker-<i>' pod names)."))
    image: str = field(metadata=_flag(
        "--image", help="Container image with incv4 and MindSpore (e.g. registry/incv4:0.1.0)."))
    namespace: str = field(default="default", metadata=NO_FLAG)
    # Where the recipe came from (for the ConfigMap's annotation and error messages); the text itself is passed to
    # render separately so rendering stays pure.
    recipe: Optional[str] = field(default=None, metadata=_flag(
        "-c", "--recipe", "--config", path=True, parse=lambda path: path or DEFAULT_RECIPE,
        help=f"Recipe YAML (MindCV keys) [the shipped {DEFAULT_RECIPE}]."))
    # `--set key=value` recipe overrides, passed to `incv4 launch` so the ConfigMap keeps the recipe file verbatim.
    recipe_overrides: tuple = field(default=(), metadata=_flag(
        "--set", multiple=True, metavar="KEY=VALUE", parse=tuple,
        help="Override a recipe key, passed to `incv4 launch --set` (repeatable)."))
    nodes: int = field(default=1, metadata=_flag("--nodes", type=int, help="Nodes (pods), gang-scheduled."))
    npus: int = field(default=8, metadata=_flag("--npus", type=int, help="NPUs per node: 1, 2, 4 or 8."))
    chip: str = field(default="910B", metadata=_flag(
        "--chip", help="910B (Atlas 800T A2) | 910 (Atlas 800), both huawei.com/Ascend910 | cpu (no NPUs, for a "
                       "smoke run)."))
    npu_mode: str = field(default="volcano", metadata=_flag(
        "--npu-mode", help="volcano (Volcano with Huawei's NPU plugin, which writes the chips into a pod annotation) "
                           "| device-plugin (the Ascend device plugin alone)."))
    arch: str = field(default="arm", metadata=_flag(
        "--arch", help="CPU architecture of the image and so of the nodes: arm | x86 (node label host-arch)."))
    # None: grace with --npu-mode volcano on NPUs; only the NPU plugin reads the label, so elsewhere it is refused.
    fault_scheduling: Optional[str] = field(default=None, metadata=_flag(
        "--fault-scheduling", help="What MindCluster does when a chip fails: grace | force | off "
                                   "[grace with --npu-mode volcano]."))
    dataset_pvc: Optional[str] = field(default=None, metadata=_flag(
        "--dataset-pvc", help="PVC holding the ImageFolder dataset (mounted read-only at /data)."))
    dataset_host_path: Optional[str] = field(default=None, metadata=_flag(
        "--dataset-host-path", help="Host directory with the dataset instead of a PVC (read-only)."))
    ckpt_pvc: Optional[str] = field(default=None, metadata=_flag(
        "--ckpt-pvc", help="PVC for checkpoints (/ckpt) [an emptyDir: lost when the job restarts]."))
    queue: str = field(default="default", metadata=_flag("--queue", help="Volcano queue."))
    priority_class: Optional[str] = field(default=None, metadata=_flag("--priority-class", help="priorityClassName."))
    max_retry: int = field(default=3, metadata=_flag("--max-retry", type=int, help="Job restarts before it fails."))
    # `incv4 launch --max-restarts` in the pod: torchrun-style restarts of one node's workers, before the pod fails.
    max_restarts: int = field(default=0, metadata=_flag(
        "--max-restarts", type=int, help="One node only: restarts of the pod's workers after a retryable failure "
                                         "before the pod fails (incv4 launch --max-restarts)."))
    # The seed's `msrun --bind_core=True`: `incv4 launch --bind-core` in the pod (trainer/launcher/cpu_binding.py).
    bind_core: bool = field(default=True, metadata=_flag(
        "--bind-core/--no-bind-core", type=bool,
        help="Each worker process of a pod on its own share of the pod's CPUs (incv4 launch --bind-core, as the "
             "seed's msrun --bind_core=True)."))
    ttl_seconds: Optional[int] = field(default=None, metadata=_flag("--ttl", type=int, help="ttlSecondsAfterFinished."))
    node_selector: Mapping[str, str] = field(default_factory=dict, metadata=_flag(
        "--node-selector", multiple=True, metavar="K=V", parse=lambda items: parse_pairs("node_selector", items),
        help="Extra node selector (repeatable)."))
    tolerations: Sequence[Mapping[str, object]] = field(default=(), metadata=_flag(
        "--toleration", multiple=True, metavar="KEY[=VALUE][:EFFECT]",
        parse=lambda items: tuple(parse_toleration(t) for t in items),
        help="Tolerate a taint, kubectl-taint style (repeatable)."))
    cpu: Optional[str] = field(default=None, metadata=_flag(
        "--cpu", help=f"CPU per pod, request = limit (e.g. 96) [{CPU_PER_NPU} per NPU; none with --chip cpu]."))
    memory: Optional[str] = field(default=None, metadata=_flag(
        "--memory", help=f"Memory per pod, request = limit (e.g. 512Gi) [{MEMORY_GIB_PER_NPU}Gi per NPU; none with "
                         f"--chip cpu]."))
    shm_size: str = field(default="16Gi", metadata=_flag("--shm-size", help="/dev/shm size (memory emptyDir)."))
    metrics_port: int = field(default=METRICS_PORT, metadata=_flag(
        "--metrics-port", type=int, help="Pod port of /metrics."))
    env: Mapping[str, str] = field(default_factory=dict, metadata=_flag(
        "--env", multiple=True, metavar="K=V", parse=lambda items: parse_pairs("env", items),
        help="Extra environment variable (repeatable)."))
    # The non-root user the trainer runs as. 1000 is HwHiAiUser in Ascend's images; it must be in the group that
    # owns /dev/davinci* on the nodes (see docs/cluster.md, "Security").
    run_as_user: int = field(default=1000, metadata=_flag(
        "--run-as-user", type=int, help="Non-root UID (HwHiAiUser in Ascend images)."))
    run_as_group: int = field(default=1000, metadata=_flag(
        "--run-as-group", type=int, help="GID; must be allowed to use /dev/davinci* on the nodes."))
    # The pods' terminationGracePeriodSeconds: how long the kubelet waits after SIGTERM before it SIGKILLs them.
    termination_grace_period: int = field(default=DEFAULT_TERMINATION_GRACE_PERIOD, metadata=_flag(
        "--termination-grace-period", type=int, metavar="SECONDS",
        help="Pod terminationGracePeriodSeconds: SIGTERM to SIGKILL; must exceed the "
             f"{LAUNCH_GRACE_PERIOD} s incv4 launch gives workers to save a checkpoint."))

    def __post_init__(self):
        check(self)

    @property
    def chip_info(self) -> Chip:
        return CHIPS[self.chip]

    @property
    def pod_cpu(self) -> Optional[str]:
        """The pod's CPU (request = limit): --cpu, or CPU_PER_NPU per NPU on an NPU chip."""
        if self.cpu or not self.chip_info.resource:
            return self.cpu
        return str(CPU_PER_NPU * self.npus)

    @property
    def pod_memory(self) -> Optional[str]:
        """The pod's memory (request = limit): --memory, or MEMORY_GIB_PER_NPU per NPU on an NPU chip."""
        if self.memory or not self.chip_info.resource:
            return self.memory
        return f"{MEMORY_GIB_PER_NPU * self.npus}Gi"

    @property
    def fault_scheduling_label(self) -> Optional[str]:
        """The fault-scheduling label value, or None where nobody reads it (no NPU plugin, no NPUs)."""
        if self.npu_mode != "volcano" or not self.chip_info.resource:
            return None
        return self.fault_scheduling or DEFAULT_FAULT_SCHEDULING


def max_name_length(nodes: int) -> int:
    """Longest job name whose pod hostnames `<name>-worker-<index>` stay within a DNS label."""
    return DNS_LABEL_MAX - len(f"-{TASK_NAME}-") - len(str(max(nodes - 1, 0)))


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check(spec: JobSpec) -> None:
    """Validate every field; raise SpecError naming the first bad one."""
    _check_int("nodes", spec.nodes, low=1, high=INT32_MAX)
    _check_name(spec.name, spec.nodes)
    if not isinstance(spec.namespace, str) or not _DNS_1123.match(spec.namespace) or len(spec.namespace) > 63:
        raise SpecError(f"namespace {spec.namespace!r}: must be a DNS-1123 label (lower-case letters, digits, '-')")
    if not spec.image:
        raise SpecError("image: missing (give --image, e.g. registry.example.com/incv4:0.1.0)")
    if not isinstance(spec.image, str) or len(spec.image) > 512 or not _IMAGE.match(spec.image):
        raise SpecError(f"image {spec.image!r}: not a valid image reference ([registry/]repository[:tag][@digest])")
    if spec.chip not in CHIPS:
        raise SpecError(f"chip {spec.chip!r}: unknown chip, expected one of {', '.join(CHIPS)}")
    if not _is_int(spec.npus) or spec.npus not in NPU_CHOICES:
        raise SpecError(f"npus {spec.npus!r}: NPUs per node must be one of {', '.join(map(str, NPU_CHOICES))}")
    _check_npu_placement(spec)
    if not isinstance(spec.recipe_overrides, tuple) or not all(isinstance(s, str) and "=" in s
                                                               for s in spec.recipe_overrides):
        raise SpecError("recipe_overrides: must be a tuple of 'key=value' strings")
    _check_reserved_overrides(spec.recipe_overrides)
    if spec.dataset_pvc and spec.dataset_host_path:
        raise SpecError("dataset: give either a PVC (--dataset-pvc) or a host path (--dataset-host-path), not both")
    if not spec.dataset_pvc and not spec.dataset_host_path:
        raise SpecError("dataset: missing (give --dataset-pvc NAME or --dataset-host-path /PATH; mounted read-only)")
    for label, value in (("dataset_pvc", spec.dataset_pvc), ("ckpt_pvc", spec.ckpt_pvc),
                         ("priority_class", spec.priority_class)):
        if value is not None and (not isinstance(value, str) or len(value) > 253
                                  or not _DNS_1123_SUBDOMAIN.match(value)):
            raise SpecError(f"{label} {value!r}: must be a DNS-1123 subdomain (lower-case letters, digits, '-', '.')")
    if spec.dataset_host_path is not None and (not isinstance(spec.dataset_host_path, str)
                                               or not spec.dataset_host_path.startswith("/")):
        raise SpecError(f"dataset_host_path {spec.dataset_host_path!r}: must be an absolute path")
    if not isinstance(spec.queue, str) or not _DNS_1123_SUBDOMAIN.match(spec.queue):
        raise SpecError(f"queue {spec.queue!r}: must be a DNS-1123 subdomain (lower-case letters, digits, '-', '.')")
    _check_launcher(spec)
    if spec.ttl_seconds is not None:
        _check_int("ttl_seconds", spec.ttl_seconds, low=0, high=INT32_MAX)
    _check_int("metrics_port", spec.metrics_port, low=1, high=65535)
    _check_int("run_as_user", spec.run_as_user, low=1)  # 0 would be root; the pod sets runAsNonRoot
    if _is_int(spec.run_as_group) and spec.run_as_group == 0:
        raise SpecError("run_as_group 0: the root group is refused; give the non-root GID allowed to use "
                        "/dev/davinci* on the nodes (HwHiAiUser's, 1000 in Ascend images)")
    _check_int("run_as_group", spec.run_as_group, low=1)
    if not _is_int(spec.termination_grace_period) or spec.termination_grace_period < MIN_TERMINATION_GRACE_PERIOD:
        raise SpecError(f"termination_grace_period {spec.termination_grace_period!r}: must be an integer >= "
                        f"{MIN_TERMINATION_GRACE_PERIOD} (seconds; more than the {LAUNCH_GRACE_PERIOD} s incv4 launch "
                        f"gives its workers to save a checkpoint after SIGTERM)")
    for label, value in (("cpu", spec.cpu), ("memory", spec.memory), ("shm_size", spec.shm_size)):
        if value is not None and (not isinstance(value, str) or not _QUANTITY.match(value)
                                  or not re.search(r"[1-9]", value)):
            raise SpecError(f"{label} {value!r}: not a positive Kubernetes quantity (e.g. 16, 500m, 64Gi)")
    _check_labels("node_selector", spec.node_selector)
    for i, tol in enumerate(spec.tolerations):
        _check_toleration(i, tol)
    for key, value in spec.env.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise SpecError(f"env {key!r}: not a valid environment variable name")
        if not isinstance(value, str):
            raise SpecError(f"env {key}: value must be a string, got {value!r}")
        if key in RESERVED_ENV:
            raise SpecError(f"env {key}: {RESERVED_ENV[key]}, cannot be overridden")


def _check_launcher(spec: JobSpec) -> None:
    """Volcano's restarts of the whole job, the in-pod restarts of one node's workers (one node only), and the pod's
    CPU binding."""
    if not isinstance(spec.bind_core, bool):
        raise SpecError(f"bind_core {spec.bind_core!r}: must be true or false")
    _check_int("max_retry", spec.max_retry, low=0, high=INT32_MAX)
    _check_int("max_restarts", spec.max_restarts, low=0, high=INT32_MAX)
    if spec.max_restarts and spec.nodes > 1:
        raise SpecError(f"max_restarts {spec.max_restarts}: restarts the workers of one node only, and this job has "
                        f"{spec.nodes} nodes (their peers would have to restart too: that is --max-retry, Volcano's "
                        f"RestartJob)")


def _check_npu_placement(spec: JobSpec) -> None:
    """NPU mode, architecture and fault scheduling: each one of its choices, and fault scheduling only where the
    NPU plugin reads it."""
    if spec.npu_mode not in NPU_MODES:
        raise SpecError(f"npu_mode {spec.npu_mode!r}: expected one of {', '.join(NPU_MODES)}")
    if spec.arch not in HOST_ARCHES:
        raise SpecError(f"arch {spec.arch!r}: expected one of {', '.join(HOST_ARCHES)} (the image's architecture)")
    if spec.fault_scheduling is None:
        return
    if spec.fault_scheduling not in FAULT_SCHEDULING_CHOICES:
        raise SpecError(f"fault_scheduling {spec.fault_scheduling!r}: expected one of "
                        f"{', '.join(FAULT_SCHEDULING_CHOICES)}")
    if spec.npu_mode != "volcano" or not spec.chip_info.resource:
        raise SpecError(f"fault_scheduling {spec.fault_scheduling!r}: only Huawei's Volcano NPU plugin acts on it; "
                        f"it needs --npu-mode volcano and an NPU chip (got {spec.npu_mode}, chip {spec.chip})")


def _check_int(label: str, value, low: int, high: Optional[int] = None) -> None:
    if not _is_int(value) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise SpecError(f"{label} {value!r}: must be an integer {bound}")


def _check_reserved_overrides(overrides: Sequence[str]) -> None:
    for override in overrides:
        key = override.partition("=")[0].strip()
        if key in RESERVED_RECIPE_KEYS:
            raise SpecError(f"recipe key {key!r} is set by incv4 on the cluster (the checkpoint volume at "
                            f"{CKPT_MOUNT}); remove --set {key}")


def _check_name(name, nodes: int) -> None:
    if not isinstance(name, str) or not name:
        raise SpecError("name: missing (give --name)")
    if not _DNS_1035.match(name):
        raise SpecError(f"name {name!r}: must be a DNS-1035 label: lower-case letters, digits and '-', "
                        f"starting with a letter and ending with a letter or digit")
    limit = max_name_length(nodes)
    if len(name) > limit:
        raise SpecError(f"name {name!r}: {len(name)} characters is too long; at most {limit} so that pod hostnames "
                        f"'{name[:8]}...-{TASK_NAME}-{nodes - 1}' stay within {DNS_LABEL_MAX}")


def _check_labels(label: str, mapping: Mapping[str, str]) -> None:
    for key, value in mapping.items():
        if not isinstance(key, str) or not _LABEL_NAME.match(key):
            raise SpecError(f"{label} {key!r}: not a valid label key")
        if not isinstance(value, str) or not _LABEL_VALUE.match(value):
            raise SpecError(f"{label} {key}={value!r}: not a valid label value")


def _check_toleration(index: int, tol: Mapping[str, object]) -> None:
    where = f"toleration {index + 1}"
    if not isinstance(tol, Mapping):
        raise SpecError(f"{where}: must be a mapping")
    unknown = set(tol) - {"key", "operator", "value", "effect", "tolerationSeconds"}
    if unknown:
        raise SpecError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    op = tol.get("operator", "Equal")
    if op not in TOLERATION_OPERATORS:
        raise SpecError(f"{where}: operator {op!r} must be Equal or Exists")
    if tol.get("effect", "") not in TOLERATION_EFFECTS:
        raise SpecError(f"{where}: effect {tol.get('effect')!r} must be one of NoSchedule, PreferNoSchedule, "
                        f"NoExecute")
    if op == "Exists" and tol.get("value"):
        raise SpecError(f"{where}: operator Exists takes no value")
    key = tol.get("key")
    if key is not None and key != "" and (not isinstance(key, str) or not _LABEL_NAME.match(key)):
        raise SpecError(f"{where}: key {key!r} is not a valid label key")
    if not key and op != "Exists":
        raise SpecError(f"{where}: an empty key needs operator Exists")
    if "tolerationSeconds" in tol:
        if tol.get("effect") != "NoExecute" or not _is_int(tol["tolerationSeconds"]):
            raise SpecError(f"{where}: tolerationSeconds must be an integer and needs effect NoExecute")

