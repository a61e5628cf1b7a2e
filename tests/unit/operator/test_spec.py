"""JobSpec validation: every bad value is one SpecError line naming the field."""
from __future__ import annotations

import pytest

from incv4.operator.spec import (JobSpec, SpecError, max_name_length, parse_pairs, parse_toleration)

GOOD = dict(name="incv4-run", image="registry.example.com/team/incv4:0.1.0", dataset_pvc="imagenet")


def make(**changes) -> JobSpec:
    return JobSpec(**{**GOOD, **changes})


def test_defaults_are_one_node_with_eight_npus_on_910b():
    spec = make()
    assert (spec.nodes, spec.npus, spec.chip, spec.namespace, spec.queue) == (1, 8, "910B", "default", "default")
    assert spec.chip_info.resource == "huawei.com/Ascend910"
    assert (spec.npu_mode, spec.arch, spec.fault_scheduling_label) == ("volcano", "arm", "grace")
    assert (spec.pod_cpu, spec.pod_memory) == ("128", "512Gi")


@pytest.mark.parametrize("changes, field", [
    (dict(name="Incv4"), "name"),  # upper case
    (dict(name="1run"), "name"),  # DNS-1035: must start with a letter (the svc plugin's Service)
    (dict(name="run-"), "name"),
    (dict(name="run_1"), "name"),
    (dict(name="a" * 55), "name"),  # 55 + len('-worker-0') = 64 > 63
    (dict(name=""), "name"),
    (dict(npus=3), "npus"),
    (dict(npus=16), "npus"),
    (dict(npus=True), "npus"),
    (dict(nodes=0), "nodes"),
    (dict(nodes=-1), "nodes"),
    (dict(nodes=2**31), "nodes"),  # Volcano's minAvailable and replicas are int32
    (dict(chip="310"), "chip"),
    (dict(image=""), "image"),
    (dict(image=None), "image"),
    (dict(image="Registry/INCV4"), "image"),
    (dict(image="incv4:bad tag"), "image"),
    (dict(namespace="Team_A"), "namespace"),
    (dict(dataset_pvc=None), "dataset"),
    (dict(dataset_host_path="/data"), "dataset"),  # both a PVC and a host path
    (dict(dataset_pvc=None, dataset_host_path="data/relative"), "dataset_host_path"),
    (dict(ckpt_pvc="Bad_PVC"), "ckpt_pvc"),
    (dict(queue="Q!"), "queue"),
    (dict(priority_class="High"), "priority_class"),
    (dict(max_retry=-1), "max_retry"),
    (dict(ttl_seconds=-5), "ttl_seconds"),
    (dict(max_retry=2**31), "max_retry"),
    (dict(ttl_seconds=2**31), "ttl_seconds"),
    (dict(metrics_port=0), "metrics_port"),
    (dict(metrics_port=70000), "metrics_port"),
    (dict(cpu="lots"), "cpu"),
    (dict(memory="0"), "memory"),
    (dict(shm_size="16GB"), "shm_size"),
    (dict(run_as_user=0), "run_as_user"),
    (dict(run_as_group=0), "run_as_group"),  # the root group
    (dict(run_as_group=-1), "run_as_group"),
    (dict(termination_grace_period=-1), "termination_grace_period"),
    (dict(termination_grace_period=30), "termination_grace_period"),  # not more than the launcher's 30 s grace
    (dict(termination_grace_period="60"), "termination_grace_period"),
    (dict(termination_grace_period=True), "termination_grace_period"),
    (dict(node_selector={"accelerator type": "x"}), "node_selector"),
    (dict(node_selector={"k": "bad value"}), "node_selector"),
    (dict(tolerations=({"key": "a", "operator": "Maybe"},)), "toleration 1"),
    (dict(tolerations=({"key": "a", "effect": "Never"},)), "toleration 1"),
    (dict(tolerations=({"key": "a", "colour": "x"},)), "toleration 1"),
    (dict(env={"1BAD": "x"}), "env"),
    (dict(env={"ASCEND_VISIBLE_DEVICES": "0"}), "env ASCEND_VISIBLE_DEVICES"),
    (dict(recipe_overrides=("noequals",)), "recipe_overrides"),
    (dict(npu_mode="gpu"), "npu_mode"),
    (dict(arch="aarch64"), "arch"),
    (dict(fault_scheduling="sometimes"), "fault_scheduling"),
    (dict(fault_scheduling="grace", npu_mode="device-plugin"), "fault_scheduling"),  # nobody would read it
    (dict(fault_scheduling="force", chip="cpu"), "fault_scheduling"),
    (dict(env={"ASCEND_PROCESS_LOG_PATH": "/tmp"}), "env ASCEND_PROCESS_LOG_PATH"),
    (dict(env={"INCV4_POD_NAME": "x"}), "env INCV4_POD_NAME"),
    (dict(npus=3, nodes=2), "npus"),  # ascend-for-volcano refuses 3, 5, 6, 7 on an Atlas 800
    (dict(recipe_overrides=(" ckpt_save_dir =/elsewhere",)), "recipe key 'ckpt_save_dir'"),  # render sets it
])
def test_bad_values_raise_one_line_naming_the_field(changes, field):
    with pytest.raises(SpecError) as info:
        make(**changes)
    message = str(info.value)
    assert message.startswith(field), message
    assert "\n" not in message


def test_name_limit_follows_the_pod_hostname_of_the_last_index():
    assert max_name_length(1) == 63 - len("-worker-0")
    assert max_name_length(10) == 63 - len("-worker-9")
    assert max_name_length(11) == 63 - len("-worker-10")
    make(name="a" * max_name_length(11), nodes=11)
    with pytest.raises(SpecError, match="too long"):
        make(name="a" * (max_name_length(11) + 1), nodes=11)
    make(name="a" * max_name_length(10), nodes=10)


@pytest.mark.parametrize("image", ["incv4", "incv4:0.1.0", "localhost:5000/incv4:dev", "reg.io/a/b/c:1.2-rc_1",
                                   "reg.io/incv4@sha256:" + "a" * 64])
def test_valid_image_references(image):
    assert make(image=image).image == image


@pytest.mark.parametrize("chip", ["910", "910B", "cpu"])
@pytest.mark.parametrize("npus", [1, 2, 4, 8])
def test_every_chip_and_npu_count(chip, npus):
    assert make(chip=chip, npus=npus).npus == npus


def test_parse_toleration_kubectl_taint_style():
    assert parse_toleration("dedicated=ai:NoSchedule") == {"key": "dedicated", "operator": "Equal", "value": "ai",
                                                          "effect": "NoSchedule"}
    assert parse_toleration("huawei.com/Ascend910") == {"key": "huawei.com/Ascend910", "operator": "Exists"}
    assert parse_toleration("gpu:NoExecute") == {"key": "gpu", "operator": "Exists", "effect": "NoExecute"}
    assert parse_toleration("*") == {"operator": "Exists"}
    make(tolerations=tuple(parse_toleration(t) for t in ("dedicated=ai:NoSchedule", "*", "gpu:NoExecute")))


def test_parse_pairs():
    assert parse_pairs("env", ["A=1", "B=x=y", "A=2"]) == {"A": "2", "B": "x=y"}
    with pytest.raises(SpecError, match="^env 'A': expected KEY=VALUE"):
        parse_pairs("env", ["A"])
