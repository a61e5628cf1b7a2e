"""`incv4 doctor` and submit's preflight against the stand-in API server (tests/support/fake_apiserver.py), one
cluster state per failing check, plus a healthy cluster; and the pure checks of operator/doctor_checks.py."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fake_apiserver import serving
from incv4.operator import doctor_checks as checks
from incv4.operator.cli import main

SPEC = ["--name", "run1", "--image", "registry.example.com/incv4:0.1.0", "--dataset-pvc", "imagenet",
        "--nodes", "2", "--ckpt-pvc", "ckpt"]
CHECKS = ("volcano-crds", "volcano-scheduler", "queue", "nodes", "npu-plugin", "prometheus-operator",
          "pvc-dataset", "pvc-ckpt", "pod-security")


pytestmark = pytest.mark.usefixtures("fast_backoff")


def rendered(*args) -> list:
    """What render makes of these options: the objects doctor and submit check."""
    result = CliRunner().invoke(main, ["render", "-n", "team-a", "-o", "json", *args])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    return body["items"] if body.get("kind") == "List" else [body]


def job_of(*args) -> dict:
    return next(o for o in rendered(*args) if o["kind"] == "Job")


@pytest.fixture
def api(tmp_path):
    with serving(tmp_path / "kubeconfig") as server:
        server.healthy_cluster("team-a", job_of(*SPEC))
        yield server


def doctor(api, *args):
    result = CliRunner().invoke(main, ["doctor", *(args or SPEC), "--kubeconfig", api.kubeconfig])
    assert "Traceback" not in result.output, result.output
    assert api.token not in result.output
    return result


def rows(result) -> dict:
    """{check: (status, rest of the line)} of doctor's table."""
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["CHECK", "RESULT", "DETAIL"]
    out = {}
    for line in lines[1:]:
        name, status, rest = line.split(None, 2)
        assert name not in out, f"{name} printed twice"
        out[name] = (status, rest)
    return out


def test_a_healthy_cluster_passes_every_check_one_line_each(api):
    result = doctor(api)
    assert result.exit_code == 0, result.output
    table = rows(result)
    assert tuple(table) == CHECKS
    assert {name: status for name, (status, _) in table.items()} == {
        **{name: "ok" for name in CHECKS}, "prometheus-operator": "skip"}
    assert result.stderr == ""
    # it only read: nothing was created
    assert not api.jobs and not [c for c in api.configmaps if c[0] == "team-a"]


def _break_crd(api):
    del api.crds["queues.scheduling.volcano.sh"]


def _unestablished_crd(api):
    api.add_crd("jobs.batch.volcano.sh", "Job", versions=("v1alpha1",), established=False)


def _old_crd(api):
    api.add_crd("jobs.batch.volcano.sh", "Job", versions=("v1alpha0",))


def _stop_scheduler(api):
    api.pods[("volcano-system", "volcano-scheduler-6d8f7c9b5-x2x7k")]["status"]["phase"] = "Pending"


def _lose_the_queue(api):
    api.queues.clear()


def _close_the_queue(api):
    api.queues["default"]["status"]["state"] = "Closed"


def _shrink_the_queue(api):
    api.queues["default"]["spec"]["capability"] = {"huawei.com/Ascend910": "8"}


def _unlabel_nodes(api):
    for node in list(api.nodes.values())[1:]:
        node["metadata"]["labels"] = {"kubernetes.io/hostname": node["metadata"]["name"]}


def _use_the_npus(api):
    for node in list(api.nodes.values())[:2]:
        node["status"]["allocatable"]["huawei.com/Ascend910"] = "4"


def _cordon(api):
    for node in list(api.nodes.values())[:2]:
        node["spec"]["unschedulable"] = True


def _taint(api):
    for node in list(api.nodes.values())[:2]:
        node["spec"]["taints"] = [{"key": "maintenance", "value": "true", "effect": "NoSchedule"}]


def _drop_a_pvc(api):
    del api.pvcs[("team-a", "imagenet")]


def _pending_pvc(api):
    api.add_pvc("team-a", "ckpt", phase="Pending", access_modes=("ReadWriteMany",), storage_class="manual")
    api.add_storage_class("manual", "Immediate")


def _single_node_pvc(api):
    api.add_pvc("team-a", "ckpt", access_modes=("ReadWriteOnce",))


def _baseline_namespace(api):
    api.add_namespace("team-a", labels={"pod-security.kubernetes.io/enforce": "baseline"})


def _no_namespace(api):
    del api.namespaces["team-a"]


@pytest.mark.parametrize("break_it, check, words", [
    (_break_crd, "volcano-crds", "queues.scheduling.volcano.sh is missing"),
    (_unestablished_crd, "volcano-crds", "jobs.batch.volcano.sh is not Established"),
    (_old_crd, "volcano-crds", "jobs.batch.volcano.sh does not serve v1alpha1"),
    (_stop_scheduler, "volcano-scheduler", "none Running"),
    (_lose_the_queue, "queue", "queue 'default' does not exist"),
    (_close_the_queue, "queue", "is Closed, not Open"),
    (_shrink_the_queue, "queue", "huawei.com/Ascend910 16 > capability 8"),
    (_unlabel_nodes, "nodes", "2 lack the labels"),
    (_use_the_npus, "nodes", "too little huawei.com/Ascend910"),
    (_cordon, "nodes", "not ready or cordoned"),
    (_taint, "nodes", "taints not tolerated"),
    (_drop_a_pvc, "pvc-dataset", "'imagenet' does not exist in namespace team-a"),
    (_pending_pvc, "pvc-ckpt", "'ckpt' is Pending, not Bound"),
    (_single_node_pvc, "pvc-ckpt", "needs ReadWriteMany"),
    (_baseline_namespace, "pod-security", "enforces baseline, which refuses the pod: hostPath volume"),
    (_no_namespace, "pod-security", "namespace 'team-a' does not exist"),
])
def test_each_failing_check_names_what_it_found_and_its_fix_and_exits_2(api, break_it, check, words):
    break_it(api)
    result = doctor(api)
    assert result.exit_code == 2, result.output
    table = rows(result)
    status, line = table[check]
    assert status == "FAIL" and words in line and "-> fix: " in line, line
    assert [name for name, (s, _) in table.items() if s == "FAIL"] == [check]
    assert result.stderr.strip() == f"error: the job cannot run on this cluster: failing checks: {check}"


def test_the_npu_mode_must_match_the_scheduler_plugin(api):
    # the plugin is there (healthy cluster): the Volcano NPU mode fits; the device-plugin mode is a caveat
    assert rows(doctor(api, *SPEC, "--npu-mode", "volcano"))["npu-plugin"][0] == "ok"
    status, line = rows(doctor(api, *SPEC, "--npu-mode", "device-plugin"))["npu-plugin"]
    assert status == "warn" and "--npu-mode volcano" in line
    api.add_scheduler_config(plugins=("priority", "gang", "conformance"))
    # no plugin: only it writes the annotation ASCEND_VISIBLE_DEVICES is read from in the Volcano NPU mode
    assert checks.needs_of(rendered(*SPEC, "--npu-mode", "volcano")).reads_plugin_annotation
    result = doctor(api, *SPEC, "--npu-mode", "volcano")
    status, line = rows(result)["npu-plugin"]
    assert (result.exit_code, status) == (2, "FAIL") and "lists no volcano-npu_* plugin" in line
    assert "--npu-mode device-plugin" in line
    result = doctor(api, *SPEC, "--npu-mode", "device-plugin")
    status, line = rows(result)["npu-plugin"]
    assert (result.exit_code, status) == (0, "ok") and "device-plugin mode" in line


def test_monitoring_objects_need_the_prometheus_operator(api):
    assert rows(doctor(api, *SPEC, "--with-monitoring"))["prometheus-operator"][0] == "ok"
    del api.crds["podmonitors.monitoring.coreos.com"]
    result = doctor(api, *SPEC, "--with-monitoring")
    status, line = rows(result)["prometheus-operator"]
    assert (result.exit_code, status) == (2, "FAIL") and "podmonitors.monitoring.coreos.com" in line


def test_a_read_the_user_may_not_do_is_a_warning_not_a_failure(api):
    api.fail("GET", "^/api/v1/nodes$", 403)
    result = doctor(api)
    status, line = rows(result)["nodes"]
    assert (result.exit_code, status) == (0, "warn") and "cannot tell: forbidden" in line


def test_an_unreachable_cluster_is_one_line_and_exit_1(api):
    api.fail("GET", "customresourcedefinitions", 500, times=10)
    result = doctor(api)
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1


def test_without_a_checkpoint_pvc_doctor_warns_that_restarts_start_over(api):
    args = [a for a in SPEC if a not in ("--ckpt-pvc", "ckpt")]
    result = doctor(api, *args)
    assert result.exit_code == 0
    status, line = rows(result)["pvc-ckpt"]
    assert status == "warn" and "emptyDir" in line and "--ckpt-pvc" in line


# ---- submit runs doctor first ------------------------------------------------------------------------------------

def submit(api, *extra):
    result = CliRunner().invoke(main, ["submit", *SPEC, *extra, "--kubeconfig", api.kubeconfig])
    assert "Traceback" not in result.output, result.output
    return result


def test_submit_runs_the_preflight_and_creates_nothing_when_a_check_fails(api):
    _close_the_queue(api)
    result = submit(api)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: preflight failed: queue: ")
    assert "--skip-preflight" in lines[0]
    assert not api.jobs and ("team-a", "run1-recipe") not in api.configmaps


def test_submit_passes_the_preflight_on_a_healthy_cluster_and_skips_it_when_told(api):
    assert submit(api).exit_code == 0 and ("team-a", "run1") in api.jobs
    assert api.requests_matching("GET", "customresourcedefinitions")
    del api.jobs[("team-a", "run1")]
    del api.configmaps[("team-a", "run1-recipe")]
    _close_the_queue(api)
    before = len(api.requests_matching("GET", "customresourcedefinitions"))
    assert submit(api, "--skip-preflight").exit_code == 0 and ("team-a", "run1") in api.jobs
    assert len(api.requests_matching("GET", "customresourcedefinitions")) == before


# ---- the pure checks ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [("500m", 0.5), ("8", 8.0), ("64Gi", 64 * 2**30), ("1e3", 1000.0),
                                         ("2k", 2000.0), ("1.5", 1.5)])
def test_quantities(text, value):
    assert checks.quantity(text) == value


def test_a_busy_queue_is_a_warning_the_job_waits():
    needs = checks.needs_of(rendered(*SPEC))
    queue = {"metadata": {"name": "default"}, "spec": {"capability": {"huawei.com/Ascend910": "32"}},
             "status": {"state": "Open", "allocated": {"huawei.com/Ascend910": "24"}}}
    row = checks.check_queue(queue, needs)
    assert row.status == checks.WARN and "free 8" in row.detail


def test_a_pending_claim_of_a_wait_for_first_consumer_class_is_fine():
    needs = checks.needs_of(rendered(*SPEC))
    pvc = {"metadata": {"name": "ckpt"}, "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "local"},
           "status": {"phase": "Pending"}}
    row = checks.check_pvc("ckpt", "ckpt", False, pvc, {"volumeBindingMode": "WaitForFirstConsumer"}, needs, "ns")
    assert row.status == checks.OK and "WaitForFirstConsumer" in row.detail


def test_restricted_also_needs_the_restricted_controls():
    pod = {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "x"}}],
           "containers": [{"name": "trainer", "securityContext": {}}]}
    needs = checks.JobNeeds(nodes=1, queue="default", max_retry=0, pod_spec=pod)
    namespace = {"metadata": {"name": "ns", "labels": {checks.PSS_LABEL: "restricted"}}}
    row = checks.check_pod_security(namespace, needs, "ns")
    assert row.status == checks.FAIL
    for words in ("may run as root", "privilege escalation", "drop ALL", "seccomp"):
        assert words in row.detail
    assert checks.check_pod_security({"metadata": {"name": "ns", "labels": {checks.PSS_LABEL: "baseline"}}},
                                     needs, "ns").status == checks.OK


def test_scheduler_plugins_tolerate_a_malformed_configuration():
    assert checks.scheduler_plugins({"data": {checks.SCHEDULER_CONF_KEY: "tiers: [1, {plugins: 3}]"}}) == []
    assert checks.scheduler_plugins({"data": {checks.SCHEDULER_CONF_KEY: ": :"}}) == []
    assert checks.scheduler_plugins(None) == []
