"""Rendering: every object validates strictly (Volcano's CRD, v1 PodTemplate, ConfigMap) over a matrix of specs;
the content is what the spec says; pods are least-privilege; rendering is pure and deterministic."""
from __future__ import annotations

import copy
import itertools
import json
import subprocess
import sys

import pytest
import yaml

import k8s_schema
from incv4.operator import render
from incv4.operator.spec import JobSpec, SpecError
from incv4.trainer import contract
from incv4.trainer import recipe as recipe_mod

ASCEND_RECIPE = recipe_mod.shipped_path("inception_v4_ascend.yaml")


def recipe_text() -> str:
    with open(ASCEND_RECIPE, encoding="utf-8") as fh:
        return fh.read()


def spec(**changes) -> JobSpec:
    base = dict(name="incv4-run", image="registry.example.com/incv4:0.1.0", dataset_pvc="imagenet",
                ckpt_pvc="incv4-ckpt")
    base.update(changes)
    return JobSpec(**base)


def task_of(job):
    (task,) = job["spec"]["tasks"]
    return task


def container_of(job):
    (container,) = task_of(job)["template"]["spec"]["containers"]
    return container


# A matrix: 1 and 4 nodes; 1, 2, 4, 8 NPUs; with and without PVCs, queue, priority, tolerations; each chip.
MATRIX = [
    dict(nodes=nodes, npus=npus, chip=chip, **extra)
    for nodes, npus, chip, extra in itertools.product(
        (1, 4), (1, 2, 4, 8), ("910", "910B"),
        (dict(),
         dict(dataset_pvc=None, dataset_host_path="/mnt/imagenet", ckpt_pvc=None),
         dict(queue="research", priority_class="high-priority", ttl_seconds=3600, max_retry=0,
              tolerations=({"key": "huawei.com/Ascend910", "operator": "Exists", "effect": "NoSchedule"},
                           {"key": "dedicated", "operator": "Equal", "value": "ai", "effect": "NoExecute",
                            "tolerationSeconds": 60}),
              node_selector={"host-arch": "huawei-arm"}, cpu="96", memory="512Gi", env={"GLOG_v": "2"},
              recipe_overrides=("epoch_size=1",), termination_grace_period=120)))
] + [dict(chip="cpu", npus=2, nodes=2, dataset_pvc=None, dataset_host_path="/data", ckpt_pvc=None)]


@pytest.mark.parametrize("changes", MATRIX, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items())[:80])
def test_every_rendered_object_validates_strictly(changes, shared_schemas):
    for obj in render.render_all(spec(**changes), recipe_text()):
        k8s_schema.validate_object(obj, shared_schemas)


def test_strict_validation_rejects_typos_the_api_server_would_drop(shared_schemas):
    job = render.render_job(spec())
    cases = []
    typo = copy.deepcopy(job)
    typo["spec"]["minAvailble"] = typo["spec"].pop("minAvailable")
    cases.append((typo, "minAvailble"))
    typo = copy.deepcopy(job)
    task_of(typo)["replica"] = 1
    cases.append((typo, "replica"))
    typo = copy.deepcopy(job)
    container_of(typo)["securityContext"]["privilegd"] = False  # caught by the PodTemplate check
    cases.append((typo, "privilegd"))
    typo = copy.deepcopy(job)
    typo["metadata"]["lables"] = {}
    cases.append((typo, "lables"))
    typo = copy.deepcopy(job)
    typo["spec"]["policies"][0]["event"] = "PodExploded"  # an enum
    cases.append((typo, "PodExploded"))
    configmap = render.render_configmap(spec(), "x: 1\n")
    configmap["dataa"] = configmap.pop("data")
    cases.append((configmap, "dataa"))
    for obj, word in cases:
        with pytest.raises(k8s_schema.ObjectInvalid, match=word):
            k8s_schema.validate_object(obj, shared_schemas)


def test_strict_validation_allows_preserve_unknown_fields():
    schema = k8s_schema.strict({"type": "object", "properties": {
        "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {"a": {}}},
        "closed": {"type": "object", "properties": {"a": {}}}}})
    assert "additionalProperties" not in schema["properties"]["open"]
    assert schema["properties"]["closed"]["additionalProperties"] is False
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("nodes, npus", [(1, 8), (4, 8), (2, 1), (4, 2), (1, 4)])
def test_gang_npus_and_replicas_follow_the_spec(nodes, npus):
    job = render.render_job(spec(nodes=nodes, npus=npus))
    assert job["apiVersion"] == "batch.volcano.sh/v1alpha1" and job["kind"] == "Job"
    assert job["spec"]["schedulerName"] == "volcano"
    assert job["spec"]["minAvailable"] == nodes == task_of(job)["replicas"]
    resources = container_of(job)["resources"]
    assert resources["requests"]["huawei.com/Ascend910"] == resources["limits"]["huawei.com/Ascend910"] == str(npus)
    command = container_of(job)["command"]
    assert ("--local-workers" in command) == (npus != 8)
    if npus != 8:
        assert command[command.index("--local-workers") + 1] == str(npus)


def test_the_launchers_default_worker_count_is_the_contracts():
    """render leaves out --local-workers when the pod has as many NPUs as the launcher starts workers by default."""
    from incv4.trainer.launcher import topology

    assert topology.DEFAULT_LOCAL_WORKERS == contract.DEFAULT_LOCAL_WORKERS == 8


def test_volcano_job_shape():
    job = render.render_job(spec(queue="research", priority_class="high", max_retry=5, ttl_seconds=600))
    js = job["spec"]
    assert (js["queue"], js["priorityClassName"], js["maxRetry"], js["ttlSecondsAfterFinished"]) == \
        ("research", "high", 5, 600)
    assert js["plugins"] == {"env": [], "svc": ["--publish-not-ready-addresses", "--disable-network-policy"]}
    # Permanent trainer exit codes terminate; they come first because Volcano applies the first matching policy.
    permanent = [p for p in js["policies"] if "exitCode" in p]
    assert [p["exitCode"] for p in permanent] == list(contract.PERMANENT) == [2, 4]
    assert all(p["action"] == "TerminateJob" for p in permanent)
    assert js["policies"][:len(permanent)] == permanent
    assert js["policies"][-1] == {"events": ["PodEvicted", "PodFailed"], "action": "RestartJob"}
    assert all(not ("exitCode" in p and ("event" in p or "events" in p)) for p in js["policies"])
    task = task_of(job)
    assert task["name"] == "worker"
    assert task["policies"] == [{"event": "TaskCompleted", "action": "CompleteJob"}]
    pod = task["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti == {"labelSelector": {"matchLabels": {"volcano.sh/job-name": "incv4-run"}},
                    "topologyKey": "kubernetes.io/hostname"}
    # The default chip is the 910B of the recipe's figures, on Kunpeng (arm) nodes, with MindCluster's fault
    # rescheduling (the label on the Job, which Volcano copies to the PodGroup; not on the pods).
    assert task["template"]["metadata"]["labels"]["ring-controller.atlas"] == "ascend-910b"
    assert pod["nodeSelector"] == {"accelerator-type": "module-910b-8", "host-arch": "huawei-arm"}
    assert job["metadata"]["labels"]["fault-scheduling"] == "grace"
    assert "fault-scheduling" not in task["template"]["metadata"]["labels"]
    for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"):
        assert key in job["metadata"]["labels"] and key in task["template"]["metadata"]["labels"]


def test_pods_outlive_the_launchers_checkpoint_grace():
    """On SIGTERM `incv4 launch` gives its workers contract.LAUNCH_GRACE_PERIOD to save a checkpoint, then SIGKILLs
    them; the kubelet must not SIGKILL the pod first (Kubernetes' default terminationGracePeriodSeconds is 30 s too)."""
    from incv4.operator import spec as spec_mod
    from incv4.trainer.launcher import launch

    grace = contract.LAUNCH_GRACE_PERIOD
    launch_default = next(p.default for p in launch.launch_command.params if p.name == "grace_period")
    assert launch_default == grace, "incv4 launch --grace-period must default to contract.LAUNCH_GRACE_PERIOD"
    assert spec_mod.MIN_TERMINATION_GRACE_PERIOD > grace
    pod = task_of(render.render_job(spec()))["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == spec_mod.DEFAULT_TERMINATION_GRACE_PERIOD
    assert pod["terminationGracePeriodSeconds"] >= grace + 15  # a margin to exit cleanly
    for changes in MATRIX:
        pod = task_of(render.render_job(spec(**changes)))["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > grace
    assert task_of(render.render_job(spec(termination_grace_period=600)))["template"]["spec"][
        "terminationGracePeriodSeconds"] == 600


def test_chip_labels_and_selectors():
    b = render.render_job(spec(chip="910B", node_selector={"host-arch": "huawei-arm"}))
    old = render.render_job(spec(chip="910", arch="x86"))
    assert task_of(old)["template"]["metadata"]["labels"]["ring-controller.atlas"] == "ascend-910"
    assert task_of(old)["template"]["spec"]["nodeSelector"] == {"accelerator-type": "module",
                                                               "host-arch": "huawei-x86"}
    # A key the user gives wins over the chip's and the arch's.
    mine = render.render_job(spec(node_selector={"host-arch": "huawei-x86", "accelerator-type": "module-910b-16"}))
    assert task_of(mine)["template"]["spec"]["nodeSelector"] == {"accelerator-type": "module-910b-16",
                                                                "host-arch": "huawei-x86"}
    assert task_of(b)["template"]["metadata"]["labels"]["ring-controller.atlas"] == "ascend-910b"
    assert task_of(b)["template"]["spec"]["nodeSelector"] == {"accelerator-type": "module-910b-8",
                                                             "host-arch": "huawei-arm"}
    assert "huawei.com/Ascend910" in container_of(b)["resources"]["limits"]
    cpu = render.render_job(spec(chip="cpu", npus=2))
    container = container_of(cpu)
    assert "resources" not in container
    assert all(e["name"] != "ASCEND_VISIBLE_DEVICES" for e in container["env"])
    assert all(v["name"] != "ascend-driver" for v in task_of(cpu)["template"]["spec"]["volumes"])
    assert "nodeSelector" not in task_of(cpu)["template"]["spec"]  # no host-arch either: not an Ascend node
    assert "ring-controller.atlas" not in task_of(cpu)["template"]["metadata"]["labels"]
    assert "fault-scheduling" not in cpu["metadata"]["labels"]


def test_in_pod_restarts_reach_the_launch_command_of_a_single_node_job_only():
    assert "--max-restarts" not in render.launch_command(spec())
    assert render.launch_command(spec(max_restarts=2))[-2:] == ["--max-restarts", "2"]
    with pytest.raises(SpecError, match=r"^max_restarts 1: restarts the workers of one node only, and this job has "
                                        r"2 nodes"):
        spec(nodes=2, max_restarts=1)
    with pytest.raises(SpecError, match="max_restarts"):
        spec(max_restarts=-1)


def test_pods_bind_each_worker_to_its_cpu_share_as_the_seeds_msrun_unless_told_not_to():
    """The seed's `msrun --bind_core=True`: on by default in rendered pods, off with --no-bind-core."""
    assert spec().bind_core is True
    assert render.launch_command(spec()).count("--bind-core") == 1
    assert "--bind-core" not in render.launch_command(spec(bind_core=False))
    with pytest.raises(SpecError, match=r"^bind_core 'yes': must be true or false$"):
        spec(bind_core="yes")


def test_container_command_env_ports_and_mounts():
    job = render.render_job(spec(recipe_overrides=("epoch_size=2", "lr=0.1"), metrics_port=9555,
                                 env={"ZED": "1", "ALPHA": "2"}))
    container = container_of(job)
    assert container["command"] == render.launch_command(spec(recipe_overrides=("epoch_size=2", "lr=0.1"),
                                                              metrics_port=9555)) == [
        "incv4", "launch", "--config", "/etc/incv4/recipe.yaml", "--data-dir", "/data",
        "--set", "epoch_size=2", "--set", "lr=0.1", "--set", "ckpt_save_dir=/ckpt", "--metrics-port", "9555",
        "--bind-core"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9555, "protocol": "TCP"}]
    env = {e["name"]: e for e in container["env"]}
    assert env["ASCEND_VISIBLE_DEVICES"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.annotations['huawei.com/Ascend910']"
    assert [e["name"] for e in container["env"]][-2:] == ["ALPHA", "ZED"]  # user env sorted, deterministic
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in task_of(job)["template"]["spec"]["volumes"]}
    assert mounts["recipe"] == {"name": "recipe", "mountPath": "/etc/incv4", "readOnly": True}
    assert volumes["recipe"] == {"name": "recipe", "configMap": {"name": "incv4-run-recipe"}}
    assert mounts["dataset"]["readOnly"] is True and mounts["dataset"]["mountPath"] == "/data"
    assert volumes["dataset"]["persistentVolumeClaim"] == {"claimName": "imagenet", "readOnly": True}
    assert volumes["ckpt"]["persistentVolumeClaim"] == {"claimName": "incv4-ckpt"}
    assert mounts["ckpt"]["mountPath"] == "/ckpt" and not mounts["ckpt"].get("readOnly")
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert mounts["dshm"]["mountPath"] == "/dev/shm"
    assert volumes["ascend-driver"]["hostPath"]["path"] == "/usr/local/Ascend/driver"
    assert mounts["ascend-driver"]["readOnly"] is True
    host = render.render_job(spec(dataset_pvc=None, dataset_host_path="/mnt/imagenet", ckpt_pvc=None))
    host_volumes = {v["name"]: v for v in task_of(host)["template"]["spec"]["volumes"]}
    assert host_volumes["dataset"]["hostPath"] == {"path": "/mnt/imagenet", "type": "Directory"}
    assert host_volumes["ckpt"] == {"name": "ckpt", "emptyDir": {}}


def test_configmap_carries_the_recipe_that_loads_back_the_same(tmp_path):
    text = recipe_text()
    configmap = render.render_configmap(spec(recipe="inception_v4_ascend.yaml"), text)
    assert configmap["metadata"]["name"] == "incv4-run-recipe"
    assert list(configmap["data"]) == ["recipe.yaml"]
    # The mounted path the launch command reads is the ConfigMap's key under the mount.
    assert render.RECIPE_PATH == f"/etc/incv4/{list(configmap['data'])[0]}"
    mounted = tmp_path / "recipe.yaml"
    mounted.write_text(configmap["data"]["recipe.yaml"], encoding="utf-8")
    assert recipe_mod.load(str(mounted)) == recipe_mod.load(ASCEND_RECIPE)
    # Through a YAML round trip too (what kubectl/the API server hands back).
    again = yaml.safe_load(yaml.safe_dump(configmap))
    assert again["data"]["recipe.yaml"] == text


def test_pods_are_least_privilege():
    """Issue 8: not privileged, no escalation, every capability dropped (the Ascend device nodes need none: they
    are group-accessible), read-only root, non-root, no service-account token."""
    for changes in MATRIX:
        job = render.render_job(spec(**changes))
        pod = task_of(job)["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert "hostNetwork" not in pod and "hostPID" not in pod and "hostIPC" not in pod
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["privileged"] is False
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}  # nothing added back
            assert sc["readOnlyRootFilesystem"] is True
            # Every hostPath is mounted read-only.
            host_volumes = {v["name"] for v in pod["volumes"] if "hostPath" in v}
            assert all(m.get("readOnly") for m in container["volumeMounts"] if m["name"] in host_volumes)


def test_rendering_is_deterministic():
    a = json.dumps(render.render_all(spec(**MATRIX[-2]), recipe_text()))
    b = json.dumps(render.render_all(spec(**MATRIX[-2]), recipe_text()))
    assert a == b
    objects = render.render_all(spec(), "lr: 0.1\n")
    assert [o["kind"] for o in objects] == ["ConfigMap", "Job"]  # the ConfigMap first: the pods mount it
    assert list(objects[1]) == ["apiVersion", "kind", "metadata", "spec"]


def test_rendering_imports_neither_mindspore_nor_the_kubernetes_client():
    code = ("import sys; from incv4.operator import render, spec; "
            "render.render_all(spec.JobSpec(name='a', image='b', dataset_pvc='c'), 'lr: 0.1'); "
            "print(sorted(m for m in ('mindspore', 'kubernetes', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# Volcano's own rules, transcribed from volcano-sh/volcano: the admission webhook's validatePolicies
# (pkg/webhooks/admission/jobs/validate/util.go) and the job controller's applyPolicies (first match wins; task
# policies before job policies; an event policy matches the event, an exitCode policy the container's exit code).
WEBHOOK_EVENTS = {"*", "PodFailed", "PodEvicted", "Unknown", "TaskCompleted", "TaskFailed", "JobUpdated"}
WEBHOOK_ACTIONS = {"AbortJob", "RestartJob", "RestartTask", "TerminateJob", "CompleteJob", "ResumeJob"}


def webhook_policy_problems(policies) -> list:
    problems, events, codes = [], set(), set()
    for p in policies:
        listed = list(p.get("events", [])) + ([p["event"]] if p.get("event") else [])
        if listed and "exitCode" in p:
            problems.append("must not specify event and exitCode simultaneously")
        elif not listed and "exitCode" not in p:
            problems.append("either event and exitCode should be specified")
        elif listed:
            for event in dict.fromkeys(listed):
                if event not in WEBHOOK_EVENTS or p.get("action") not in WEBHOOK_ACTIONS:
                    problems.append(f"invalid policy {event}/{p.get('action')}")
                if event in events:
                    problems.append(f"duplicate event {event}")
                events.add(event)
        else:
            if p["exitCode"] == 0 or p["exitCode"] in codes:
                problems.append(f"bad exitCode {p['exitCode']}")
            codes.add(p["exitCode"])
    if "*" in events and len(events) > 1:
        problems.append("* with other events")
    return problems


def volcano_action(job, task_name, event, exit_code=0):
    task_policies = next(t.get("policies", []) for t in job["spec"]["tasks"] if t["name"] == task_name)
    for p in task_policies + job["spec"]["policies"]:
        listed = list(p.get("events", [])) + ([p["event"]] if p.get("event") else [])
        if listed and (event in listed or "*" in listed):
            return p["action"]
        if "exitCode" in p and p["exitCode"] == exit_code:
            return p["action"]
    return "SyncJob"


# Where each ending action leaves a running job (pkg/controllers/job/state/running.go, then aborting.go,
# terminating.go, completing.go), and the phases the garbage collector deletes after ttlSecondsAfterFinished
# (pkg/controllers/garbagecollector/garbagecollector.go, isJobFinished).
END_PHASE = {"AbortJob": "Aborted", "TerminateJob": "Terminated", "CompleteJob": "Completed"}
GC_FINISHED_PHASES = {"Completed", "Failed", "Terminated"}


def test_policies_pass_volcanos_webhook_and_do_what_the_exit_codes_mean():
    job = render.render_job(spec())
    assert webhook_policy_problems(job["spec"]["policies"]) == []
    assert webhook_policy_problems(task_of(job)["policies"]) == []
    # A pod that failed with a permanent code terminates the job; any other failure or an eviction restarts it.
    assert volcano_action(job, "worker", "PodFailed", contract.USAGE) == "TerminateJob"
    assert volcano_action(job, "worker", "PodFailed", contract.DIVERGED) == "TerminateJob"
    for retryable in (contract.FAILURE, contract.PEER_TIMEOUT, contract.TERMINATED, 137):
        assert volcano_action(job, "worker", "PodFailed", retryable) == "RestartJob"
    assert volcano_action(job, "worker", "PodEvicted") == "RestartJob"
    assert volcano_action(job, "worker", "TaskCompleted") == "CompleteJob"
    # Every way the job ends is a phase Volcano's garbage collector finishes, so ttlSecondsAfterFinished cleans it up.
    for code in contract.PERMANENT:
        end = END_PHASE[volcano_action(job, "worker", "PodFailed", code)]
        assert end in GC_FINISHED_PHASES, end
    assert END_PHASE[volcano_action(job, "worker", "TaskCompleted")] in GC_FINISHED_PHASES
    assert END_PHASE["AbortJob"] not in GC_FINISHED_PHASES  # what the policies used to do: kept forever


def _env(job) -> dict:
    return {e["name"]: e for e in container_of(job)["env"]}


def test_npu_mode_decides_who_sets_ascend_visible_devices():
    """Volcano + Huawei's NPU plugin: from the annotation the plugin writes. The device plugin alone: not set by the
    pod (nobody writes the annotation; the device plugin's Allocate answer sets the variable)."""
    volcano = render.render_job(spec(npu_mode="volcano"))
    assert _env(volcano)["ASCEND_VISIBLE_DEVICES"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.annotations['huawei.com/Ascend910']"}}
    for chip in ("910", "910B"):
        alone = render.render_job(spec(npu_mode="device-plugin", chip=chip))
        assert "ASCEND_VISIBLE_DEVICES" not in _env(alone)
        assert container_of(alone)["resources"]["limits"]["huawei.com/Ascend910"] == "8"
        # Only the NPU plugin reads fault-scheduling: no label that would do nothing.
        assert "fault-scheduling" not in alone["metadata"]["labels"]
    assert render.render_job(spec(fault_scheduling="force"))["metadata"]["labels"]["fault-scheduling"] == "force"
    assert render.render_job(spec(fault_scheduling="off"))["metadata"]["labels"]["fault-scheduling"] == "off"


def _qos_class(pod: dict) -> str:
    """Kubernetes' QoS class of a pod (pkg/apis/core/helper/qos: Guaranteed when every container has CPU and memory
    limits equal to its requests, BestEffort when none has any request or limit, else Burstable)."""
    containers = pod["containers"]
    tracked = ("cpu", "memory")
    amounts = [{**(c.get("resources") or {}).get("requests", {}), **(c.get("resources") or {}).get("limits", {})}
               for c in containers]
    if not any(k in a for a in amounts for k in tracked):
        return "BestEffort"
    for c in containers:
        requests = (c.get("resources") or {}).get("requests", {})
        limits = (c.get("resources") or {}).get("limits", {})
        if any(k not in limits or requests.get(k, limits[k]) != limits[k] for k in tracked):
            return "Burstable"
    return "Guaranteed"


@pytest.mark.parametrize("npus", [1, 2, 4, 8])
def test_pods_are_guaranteed_and_sized_per_npu(npus):
    from incv4.operator import spec as spec_mod

    job = render.render_job(spec(npus=npus))
    resources = container_of(job)["resources"]
    assert resources["requests"] == resources["limits"] == {
        "cpu": str(spec_mod.CPU_PER_NPU * npus), "memory": f"{spec_mod.MEMORY_GIB_PER_NPU * npus}Gi",
        "huawei.com/Ascend910": str(npus)}
    assert _qos_class(task_of(job)["template"]["spec"]) == "Guaranteed"
    # The in-memory /dev/shm counts against the memory limit: it must fit inside it.
    assert int(resources["limits"]["memory"][:-2]) > int(spec().shm_size[:-2])


def test_cpu_and_memory_are_overridable_and_stay_guaranteed():
    resources = container_of(render.render_job(spec(cpu="96", memory="700Gi")))["resources"]
    assert resources["requests"] == resources["limits"]
    assert (resources["limits"]["cpu"], resources["limits"]["memory"]) == ("96", "700Gi")
    half = container_of(render.render_job(spec(cpu="20", npus=2)))["resources"]["limits"]
    assert (half["cpu"], half["memory"]) == ("20", "128Gi")  # the one not given is still sized per NPU
    # A CPU smoke run gets no default (it may run on a laptop's kind), and what it is given is Guaranteed too.
    assert _qos_class(task_of(render.render_job(spec(chip="cpu", npus=2)))["template"]["spec"]) == "BestEffort"
    smoke = render.render_job(spec(chip="cpu", npus=2, cpu="2", memory="4Gi"))
    assert _qos_class(task_of(smoke)["template"]["spec"]) == "Guaranteed"
    # The checker itself tells the classes apart.
    assert _qos_class({"containers": [{"resources": {"requests": {"cpu": "1"}}}]}) == "Burstable"


@pytest.mark.parametrize("nodes, npus", [(2, 1), (4, 2), (16, 4), (4, 8)])
def test_multi_node_jobs_take_what_mindclusters_scheduler_accepts(nodes, npus):
    """ascend-for-volcano accepts 1, 2, 4 or 8 NPUs per pod on several nodes (MindCluster 5.0.RC1 and later); each
    pod on its own node (the anti-affinity)."""
    job = render.render_job(spec(nodes=nodes, npus=npus))
    assert job["spec"]["minAvailable"] == nodes
    assert container_of(job)["resources"]["limits"]["huawei.com/Ascend910"] == str(npus)
    anti = task_of(job)["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == "kubernetes.io/hostname"


def test_metrics_port_is_reachable_from_outside_the_job():
    """No NetworkPolicy from the svc plugin (it admits only the job's own pods), and scrape annotations naming the
    container's metrics port for a plain Prometheus."""
    job = render.render_job(spec(metrics_port=9555))
    assert "--disable-network-policy" in job["spec"]["plugins"]["svc"]
    assert "--publish-not-ready-addresses" in job["spec"]["plugins"]["svc"]
    annotations = task_of(job)["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "9555",
                           "prometheus.io/path": "/metrics"}
    assert {"name": "metrics", "containerPort": 9555, "protocol": "TCP"} in container_of(job)["ports"]


def test_cann_process_logs_land_on_the_checkpoint_volume_per_pod():
    job = render.render_job(spec())
    env = container_of(job)["env"]
    names = [e["name"] for e in env]
    log_path = _env(job)["ASCEND_PROCESS_LOG_PATH"]["value"]
    assert log_path == "/ckpt/ascend-log/$(INCV4_POD_NAME)"
    # Kubernetes expands $(VAR) only from variables listed before it.
    assert names.index("INCV4_POD_NAME") < names.index("ASCEND_PROCESS_LOG_PATH")
    assert _env(job)["INCV4_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    mounts = {m["name"]: m for m in container_of(job)["volumeMounts"]}
    assert log_path.startswith(mounts["ckpt"]["mountPath"] + "/") and not mounts["ckpt"].get("readOnly")
    volumes = {v["name"]: v for v in task_of(job)["template"]["spec"]["volumes"]}
    assert volumes["ckpt"]["persistentVolumeClaim"]["claimName"] == "incv4-ckpt"  # survives a restart
    cpu_env = _env(render.render_job(spec(chip="cpu", npus=2)))
    assert "ASCEND_PROCESS_LOG_PATH" not in cpu_env and "INCV4_POD_NAME" not in cpu_env  # no CANN there
