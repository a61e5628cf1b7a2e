"""The CLI's cluster commands with the real `kubernetes` client against tests/fake_apiserver.py (real Kubernetes JSON
over HTTP on loopback): submit, list, status, logs, watch (dropped watches, 410 Gone), delete, suspend, resume; the
one-line errors for 404 / 409 / 403 / 422 / 401 / connection refused; retries only where safe; no token printed."""
from __future__ import annotations

import json
import socket
import subprocess
import time
import sys

import pytest
import yaml
from click.testing import CliRunner

from fake_apiserver import serving, status_error
from incv4.operator import cluster as cluster_mod
from incv4.operator.cli import main
from incv4.operator.render import render_all
from incv4.operator.spec import JobSpec

SPEC = ["--name", "run1", "--image", "registry.example.com/incv4:0.1.0", "--dataset-pvc", "imagenet",
        "--nodes", "2", "--ckpt-pvc", "ckpt"]
# Submits below give --skip-preflight where the test is about the API client, not the cluster's readiness: the empty
# stand-in cluster has no Volcano, queue or nodes, so incv4 doctor's checks would stop them first.


pytestmark = pytest.mark.usefixtures("fast_backoff")


@pytest.fixture
def api(tmp_path):
    with serving(tmp_path / "kubeconfig") as server:
        server.outputs = []  # everything the CLI printed, for the token check
        yield server
        everything = "\n".join(server.outputs)
        assert server.token not in everything, "the kubeconfig's bearer token was printed"


def cli(api, *args):
    result = CliRunner().invoke(main, [*args, "--kubeconfig", api.kubeconfig])
    api.outputs += [result.stdout, result.stderr]
    assert "Traceback" not in result.output, result.output
    return result


def add_job(api, name="run1", phase="Running", namespace="team-a", nodes=2):
    spec = JobSpec(name=name, image="registry.example.com/incv4:0.1.0", dataset_pvc="imagenet", nodes=nodes,
                   namespace=namespace)
    return api.add_job(render_all(spec, "lr: 0.1\n")[1], phase=phase)


def test_submit_creates_the_recipe_configmap_then_the_job_in_the_contexts_namespace(api):
    # A cluster that passes submit's preflight (incv4 doctor's checks, tests/unit/operator/test_doctor.py).
    api.healthy_cluster("team-a", render_all(JobSpec(name="run1", image="registry.example.com/incv4:0.1.0",
                                                     dataset_pvc="imagenet", nodes=2, ckpt_pvc="ckpt",
                                                     namespace="team-a"), "")[1])
    result = cli(api, "submit", *SPEC, "--set", "epoch_size=30")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["configmap/run1-recipe created", "job.batch.volcano.sh/run1 created"]
    job = api.jobs[("team-a", "run1")]
    assert job["spec"]["minAvailable"] == 2
    assert "--set" in job["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["command"]
    configmap = api.configmaps[("team-a", "run1-recipe")]
    assert "lr: 0.045" in configmap["data"]["recipe.yaml"] or "lr:" in configmap["data"]["recipe.yaml"]
    # The ConfigMap was created before the Job (pods mount it) and is then owned by it (garbage-collected with it).
    posts = [r[1] for r in api.requests if r[0] == "POST"]
    assert posts == ["/api/v1/namespaces/team-a/configmaps", "/apis/batch.volcano.sh/v1alpha1/namespaces/team-a/jobs"]
    assert configmap["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]


def test_submit_server_dry_run_persists_nothing(api):
    result = cli(api, "submit", *SPEC, "--skip-preflight", "--dry-run=server", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["kind"] == "List"
    assert api.jobs == {} and api.configmaps == {}
    assert all(q.get("dryRun") == "All" for m, p, q in api.requests if m == "POST")


def test_submit_of_an_existing_job_is_refused_without_touching_its_recipe(api):
    add_job(api)
    result = cli(api, "submit", *SPEC, "--skip-preflight")
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: jobs.batch.volcano.sh 'run1' already exists in namespace team-a")
    assert api.requests_matching("POST", "configmaps") == [] and api.requests_matching("PUT", "configmaps") == []


def test_a_409_on_create_is_not_retried_and_the_recipe_is_cleaned_up(api):
    api.fail("POST", r"/jobs$", 409, body=status_error(409, "AlreadyExists", 'jobs.batch.volcano.sh "run1" already '
                                                      "exists", {"name": "run1", "kind": "jobs"}))
    result = cli(api, "submit", *SPEC, "--skip-preflight")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: jobs.batch.volcano.sh 'run1' already exists in namespace team-a"
    assert len(api.requests_matching("POST", r"/jobs$")) == 1
    assert ("team-a", "run1-recipe") not in api.configmaps


def test_a_503_on_create_is_not_retried_but_a_503_on_get_is(api):
    api.fail("POST", r"/jobs$", 503)
    result = cli(api, "submit", *SPEC, "--skip-preflight")
    assert result.exit_code == 1 and "API server error 503" in result.stderr
    assert len(api.requests_matching("POST", r"/jobs$")) == 1  # never a duplicate job
    add_job(api, name="run2")
    api.fail("GET", r"/jobs/run2$", 503, times=2)
    result = cli(api, "status", "run2")
    assert result.exit_code == 0, result.output
    assert len(api.requests_matching("GET", r"/jobs/run2$")) == 3
    assert "Phase:       Running" in result.stdout


def test_429_and_dropped_connections_on_list_are_retried(api):
    add_job(api)
    api.fail("GET", r"/namespaces/team-a/jobs$", 429)
    api.fail("GET", r"/namespaces/team-a/jobs$", 0, drop=True)
    result = cli(api, "list")
    assert result.exit_code == 0, result.output
    assert len(api.requests_matching("GET", r"/namespaces/team-a/jobs$")) == 3


def test_list_shows_vcctls_columns(api):
    add_job(api, "run1", "Running")
    add_job(api, "run2", "Pending", nodes=4)
    add_job(api, "other", "Completed", namespace="team-b")
    result = cli(api, "list")
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "AGE", "PHASE", "REPLICAS", "MIN", "PENDING", "RUNNING", "SUCCEEDED",
                              "FAILED", "RETRIES"]
    assert [r.split()[0] for r in rows] == ["run1", "run2"]
    assert rows[0].split()[2:] == ["Running", "2", "2", "0", "2", "0", "0", "0"]
    assert rows[1].split()[2:] == ["Pending", "4", "4", "4", "0", "0", "0", "0"]
    everywhere = cli(api, "list", "-A")
    header, *rows = everywhere.stdout.splitlines()
    assert header.split()[0] == "NAMESPACE" and len(rows) == 3
    assert "team-b" in everywhere.stdout and "Completed" in everywhere.stdout
    as_json = json.loads(cli(api, "list", "-o", "json").stdout)
    assert [j["metadata"]["name"] for j in as_json["items"]] == ["run1", "run2"]


def test_status_shows_phase_counts_retries_conditions_and_reason(api):
    add_job(api)
    api.set_phase("team-a", "run1", "Restarting")
    api.set_phase("team-a", "run1", "Failed")
    result = cli(api, "status", "run1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Phase:       Failed" in out
    assert "Reason:      PodFailed: pod failed and maxRetry exhausted" in out
    assert "Retries:     1 of 3" in out
    assert "Task worker:" in out and "Failed 2" in out
    assert "Conditions:" in out and "Restarting" in out
    body = yaml.safe_load(cli(api, "status", "run1", "-o", "yaml").stdout)
    assert body["phase"] == "Failed" and body["retries"] == 1 and body["counts"]["failed"] == 2


def test_status_names_the_pod_and_code_of_a_permanent_failure(api):
    add_job(api)
    api.set_phase("team-a", "run1", "Terminated")
    api.pods[("team-a", "run1-worker-1")]["status"] = {
        "phase": "Failed", "containerStatuses": [{"name": "trainer", "state": {"terminated": {"exitCode": 2}}}]}
    result = cli(api, "status", "run1")
    assert result.exit_code == 0, result.output
    assert "Outcome:     failed permanently: pod run1-worker-1 exited 2: a usage error" in result.stdout
    api.set_phase("team-a", "run1", "Aborted")
    assert "Outcome:     suspended" in cli(api, "status", "run1").stdout


def test_status_phase_completing(api):
    add_job(api, phase="Completing")
    result = cli(api, "status", "run1")
    assert "Phase:       Completing" in result.stdout


def test_logs_by_rank_pod_tail_and_follow(api):
    add_job(api)
    api.logs[("team-a", "run1-worker-0")] = [f"rank0 line {i}" for i in range(5)]
    api.logs[("team-a", "run1-worker-1")] = ["rank1 only"]
    api.log_follow_lines[("team-a", "run1-worker-0")] = ["later 1", "later 2"]
    assert cli(api, "logs", "run1").stdout.splitlines() == [f"rank0 line {i}" for i in range(5)]
    assert cli(api, "logs", "run1", "--rank", "1").stdout.splitlines() == ["rank1 only"]
    assert cli(api, "logs", "run1", "--pod", "run1-worker-1").stdout.splitlines() == ["rank1 only"]
    assert cli(api, "logs", "run1", "--tail", "2").stdout.splitlines() == ["rank0 line 3", "rank0 line 4"]
    followed = cli(api, "logs", "run1", "-f", "--tail", "1")
    assert followed.stdout.splitlines() == ["rank0 line 4", "later 1", "later 2"]
    assert api.requests_matching("GET", "run1-worker-0/log")[-1][2] == {"follow": "true", "tailLines": "1"}
    api.fail("GET", "run1-worker-1/log$", 400, body=status_error(
        400, "BadRequest", 'container "trainer" in pod "run1-worker-1" is waiting to start: ContainerCreating'))
    waiting = cli(api, "logs", "run1", "--rank", "1")
    assert waiting.exit_code == 1
    assert waiting.stderr.strip() == ("error: get pods/log 'run1-worker-1' in namespace team-a: container \"trainer\" "
                                      "in pod \"run1-worker-1\" is waiting to start: ContainerCreating")
    missing = cli(api, "logs", "run1", "--rank", "7")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == "error: pods/log 'run1-worker-7' not found in namespace team-a"


def test_watch_survives_three_dropped_watches_and_a_410_and_exits_0_on_completed(api):
    add_job(api, phase="Pending")
    api.script_watch(["Running", "drop"], ["drop"], ["gone"], ["drop"], ["Completing", "Completed"])
    result = cli(api, "watch", "run1", "--no-progress")
    assert result.exit_code == 0, result.output
    phases = [line.split()[2] for line in result.stdout.splitlines()]
    assert phases == ["Pending", "Running", "Completing", "Completed"]
    watches = [q for m, p, q in api.requests if m == "GET" and q.get("watch") == "true"]
    assert len(watches) == 5
    # After a drop the watch resumes from the last resourceVersion; after the 410 it re-lists (a fresh GET).
    assert watches[1]["resourceVersion"] == watches[2]["resourceVersion"] != watches[0]["resourceVersion"]
    assert len(api.requests_matching("GET", r"/jobs/run1$")) == 2


@pytest.mark.parametrize("final, code", [("Failed", 1), ("Aborted", 1), ("Terminated", 1), ("Completed", 0)])
def test_watch_exit_code_is_0_only_for_completed(api, final, code):
    add_job(api)
    api.script_watch(["Restarting", "Running", final])
    result = cli(api, "watch", "run1", "--no-progress")
    assert result.exit_code == code, result.output
    assert result.stdout.splitlines()[-1].split()[2] == final


def test_watch_gives_up_with_one_line_when_the_server_stays_unavailable(api):
    add_job(api)
    api.fail("GET", r"/namespaces/team-a/jobs$", 503, times=50)
    result = cli(api, "watch", "run1", "--no-progress")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == \
        "error: watch jobs.batch.volcano.sh 'run1' in namespace team-a: API server error 503 injected 503"


def test_delete_removes_the_job_and_its_recipe(api):
    assert cli(api, "submit", *SPEC, "--skip-preflight").exit_code == 0
    result = cli(api, "delete", "run1")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["job.batch.volcano.sh/run1 deleted", "configmap/run1-recipe deleted"]
    assert api.jobs == {} and api.configmaps == {}
    again = cli(api, "delete", "run1")
    assert again.exit_code == 1
    assert again.stderr.strip() == "error: jobs.batch.volcano.sh 'run1' not found in namespace team-a"


def test_suspend_and_resume_send_volcano_commands_owned_by_the_job(api):
    job = add_job(api)
    result = cli(api, "suspend", "run1")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("job.batch.volcano.sh/run1 suspended")
    assert api.jobs[("team-a", "run1")]["status"]["state"]["phase"] == "Aborted"
    assert cli(api, "resume", "run1").exit_code == 0
    assert api.jobs[("team-a", "run1")]["status"]["state"]["phase"] == "Running"
    abort, resume = api.commands
    owner = {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job", "name": "run1",
             "uid": job["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    assert abort["apiVersion"] == "bus.volcano.sh/v1alpha1" and abort["kind"] == "Command"
    assert (abort["action"], resume["action"]) == ("AbortJob", "ResumeJob")
    assert abort["target"] == owner and abort["metadata"]["ownerReferences"] == [owner]
    assert abort["metadata"]["generateName"] == "run1-abortjob-"


def test_missing_job_gives_not_found(api):
    for args in (["status", "nope"], ["watch", "nope"], ["suspend", "nope"], ["delete", "nope"]):
        result = cli(api, *args)
        assert result.exit_code == 1, args
        assert result.stderr.strip() == "error: jobs.batch.volcano.sh 'nope' not found in namespace team-a", args


def test_forbidden_names_the_verb_and_the_resource(api):
    api.fail("POST", r"/configmaps$", 403, body=status_error(
        403, "Forbidden", 'configmaps is forbidden: User "alice" cannot create resource "configmaps"'))
    result = cli(api, "submit", *SPEC, "--skip-preflight")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: forbidden: you may not create configmaps in namespace team-a (ask for "
                                     "an RBAC Role that allows 'create' on 'configmaps')")
    api.fail("GET", r"/namespaces/team-a/jobs$", 403)
    result = cli(api, "list")
    assert "you may not list jobs.batch.volcano.sh in namespace team-a" in result.stderr


def test_invalid_names_the_field_and_exits_2(api):
    api.fail("POST", r"/jobs$", 422, body=status_error(
        422, "Invalid", 'Job.batch.volcano.sh "run1" is invalid: spec.tasks[0].replicas: Invalid value: -1',
        {"name": "run1", "group": "batch.volcano.sh", "kind": "Job", "causes": [
            {"reason": "FieldValueInvalid", "message": "Invalid value: -1: must be greater than or equal to 0",
             "field": "spec.tasks[0].replicas"}]}))
    result = cli(api, "submit", *SPEC, "--skip-preflight")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: invalid jobs.batch.volcano.sh 'run1': spec.tasks[0].replicas: "
                                     "Invalid value: -1: must be greater than or equal to 0")


def test_unauthorized_never_shows_the_credentials(api, tmp_path):
    config = yaml.safe_load(open(api.kubeconfig, encoding="utf-8"))
    config["users"][0]["user"]["token"] = "wrong-" + api.token  # contains the real token too: must not leak
    bad = tmp_path / "bad-kubeconfig"
    bad.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = CliRunner().invoke(main, ["list", "--kubeconfig", str(bad)])
    api.outputs += [result.stdout, result.stderr]
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: unauthorized: the API server at {api.url} rejected the credentials " \
                                     f"of the kubeconfig"


def test_connection_refused_is_one_line(api, tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = yaml.safe_load(open(api.kubeconfig, encoding="utf-8"))
    config["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{port}"
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text(yaml.safe_dump(config), encoding="utf-8")
    for args in (["list"], ["status", "run1"], ["submit", *SPEC], ["logs", "run1"]):
        result = CliRunner().invoke(main, [*args, "--kubeconfig", str(dead)])
        api.outputs += [result.stdout, result.stderr]
        assert result.exit_code == 1, args
        assert result.stderr.strip() == \
            f"error: cannot reach the Kubernetes API server at http://127.0.0.1:{port} (connection refused)", args


def test_bad_kubeconfig_and_context_are_one_line(api, tmp_path):
    result = CliRunner().invoke(main, ["list", "--kubeconfig", api.kubeconfig, "--context", "nope"])
    assert result.exit_code == 1 and result.stderr.startswith("error: kubeconfig: ")
    assert len(result.stderr.strip().splitlines()) == 1
    missing = CliRunner().invoke(main, ["list", "--kubeconfig", str(tmp_path / "absent")])
    assert missing.exit_code == 1 and missing.stderr.startswith("error: kubeconfig: ")


def test_the_token_never_appears_in_any_output_of_a_real_cli_process(api):
    """The console script in its own process, every command and several failures; stdout+stderr are grepped."""
    add_job(api)
    api.logs[("team-a", "run1-worker-0")] = ["hello"]
    api.fail("GET", r"/jobs/run1$", 403)
    outputs = []
    for args in (["status", "run1"], ["logs", "run1"],
                 ["submit", *SPEC, "--name", "run9", "--dry-run=server", "--skip-preflight"]):
        proc = subprocess.run([sys.executable, "-m", "incv4.operator.cli", *args, "--kubeconfig", api.kubeconfig],
                              capture_output=True, text=True, timeout=120)
        outputs.append(proc.stdout + proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
    joined = "\n".join(outputs)
    assert "hello" in joined and "forbidden" in joined and "server dry run" in joined  # the commands did run
    assert api.token not in joined
    api.outputs.append(joined)


REAL_PAGE_CODE = """
from prometheus_client import generate_latest
from incv4.trainer.metrics import exporter as metrics
m = metrics.TrainerMetrics({rank}, {{"model": "inception_v4", "world_size": "2", "batch_size": "4", "recipe": "t"}})
m.set_planned(total_steps=100, steps_per_epoch=10)
for step in range(1, 26):
    m.steps_done(steps=1, seconds=0.5, samples=4, data_wait_seconds=0.01, loss=3.0 - step * 0.04, lr=0.01,
                 global_step=step, epoch=step // 10)
m.evaluated(top1=0.375, top5=0.75)
print(generate_latest(metrics.build_registry()).decode())
"""


def real_metrics_page(rank: int) -> str:
    """A /metrics page from incv4's own metrics module (prometheus-client), one rank, in a clean process."""
    env = {k: v for k, v in __import__("os").environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    proc = subprocess.run([sys.executable, "-c", REAL_PAGE_CODE.format(rank=rank)], capture_output=True, text=True,
                          timeout=120, env=env, check=True)
    return proc.stdout


def test_watch_prints_progress_from_every_running_pods_metrics_between_events(api):
    add_job(api, phase="Running")
    for rank in (0, 1):
        api.pods[("team-a", f"run1-worker-{rank}")]["status"]["phase"] = "Running"
        api.metrics[("team-a", f"run1-worker-{rank}", 9400)] = real_metrics_page(rank)
    api.script_watch(["end"], ["Completed"])  # a quiet watch period (a tick), then the end
    result = cli(api, "watch", "run1", "--interval", "1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[2] == "Running" and lines[-1].split()[2] == "Completed"
    (progress_line,) = [line for line in lines if "step " in line]
    assert "step 25/100" in progress_line and "epoch 2" in progress_line
    assert "loss 2.0000" in progress_line and "top-1 0.3750" in progress_line
    assert "img/s -" not in progress_line and "ETA -" not in progress_line
    proxied = {p for m, p, q in api.requests if "/proxy/" in p}
    assert proxied == {"/api/v1/namespaces/team-a/pods/run1-worker-0:9400/proxy/metrics",
                       "/api/v1/namespaces/team-a/pods/run1-worker-1:9400/proxy/metrics"}


def test_status_reports_why_progress_is_missing_on_stderr(api):
    add_job(api, phase="Running")
    api.pods[("team-a", "run1-worker-0")]["status"]["phase"] = "Running"  # no metrics served: proxy says 503
    result = cli(api, "status", "run1")
    assert result.exit_code == 0, result.output
    assert "Phase:       Running" in result.stdout and "Progress" not in result.stdout
    assert result.stderr.startswith("progress: unavailable (get pods/proxy 'run1-worker-0' in namespace team-a: "
                                    "API server error 503")


def test_watch_follows_real_changes_and_stops_when_the_job_is_deleted(api):
    """An unscripted watch: the fake server streams the job's real changes as they happen."""
    import threading

    add_job(api, phase="Pending")

    def operate():
        time.sleep(1.0)
        api.set_phase("team-a", "run1", "Running")
        time.sleep(0.5)
        with api.lock:
            del api.jobs[("team-a", "run1")]
            api.changed.notify_all()

    worker = threading.Thread(target=operate)
    worker.start()
    result = cli(api, "watch", "run1", "--interval", "20", "--no-progress")
    worker.join()
    assert result.exit_code == 1, result.output
    assert [line.split()[2] for line in result.stdout.splitlines()] == ["Pending", "Running"]
    assert result.stderr.strip().endswith("run1  deleted")


def test_a_bad_spec_fails_before_any_connection(tmp_path):
    result = CliRunner().invoke(main, ["submit", *SPEC, "--npus", "3", "--kubeconfig", str(tmp_path / "absent")])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: npus 3: NPUs per node must be one of 1, 2, 4, 8"


def test_in_cluster_config_and_namespace_when_there_is_no_kubeconfig(api, tmp_path, monkeypatch):
    """Inside a pod: no kubeconfig, KUBERNETES_SERVICE_HOST set -> the service-account config and namespace file.
    The real loader reads fixed /var/run/secrets paths, so it is replaced by one that points at the fake server."""
    import kubernetes.config

    def fake_incluster(client_configuration):
        client_configuration.host = api.url
        client_configuration.api_key = {"authorization": "Bearer " + api.token}

    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("team-a\n", encoding="utf-8")
    monkeypatch.setattr(kubernetes.config, "load_incluster_config", fake_incluster)
    monkeypatch.setattr(cluster_mod, "IN_CLUSTER_NAMESPACE_FILE", str(namespace_file))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    add_job(api)
    result = CliRunner().invoke(main, ["list"])
    api.outputs += [result.stdout, result.stderr]
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].split()[0] == "run1"
    assert api.requests_matching("GET", "/namespaces/team-a/jobs$")


def test_backoff_doubles_and_honours_retry_after():
    retry = cluster_mod.Retry(attempts=5, base_delay=0.5, max_delay=8.0)
    assert [retry.delay(i) for i in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert retry.delay(0, retry_after=3.0) == 3.0 and retry.delay(0, retry_after=60.0) == 8.0
    err = type("E", (), {"headers": {"Retry-After": "2"}})()
    assert cluster_mod._retry_after(err) == 2.0


def test_status_reads_progress_from_prometheus_when_asked(api):
    """`--prometheus URL`: progress from a Prometheus HTTP API (a stand-in answering instant queries) instead of
    the pods; the pod proxy is not used."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlparse

    answers = [("incv4_eval_accuracy_ratio", 'topk="1"', 0.625), ("incv4_eval_accuracy_ratio", 'topk="5"', 0.875),
               ("(max(incv4_planned_steps", "", 90.0), ("incv4_global_step", "", 40), ("incv4_planned_steps", "", 100),
               ("incv4_epoch", "", 4), ("rate(incv4_samples_total", "", 12.5), ("incv4_loss", "", 1.5),
               ("incv4_last_step_timestamp_seconds", "", 3.0), ("incv4_samples_total", "", 480.0),
               ("incv4_build_info", "", 2)]
    queries = []

    class Prometheus(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            query = parse_qs(urlparse(self.path).query)["query"][0]
            queries.append(query)
            value = next(v for name, extra, v in answers if name in query and extra in query)
            metric = {"world_size": "2"} if "world_size" in query else {}
            body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": metric, "value": [1700000000, str(value)]}]}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Prometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        add_job(api)
        result = cli(api, "status", "run1", "--prometheus", f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 0, result.output
    assert "Progress:    step 40/100  epoch 4  img/s 12.5  loss 1.5000  top-1 0.6250  ETA 0:01:30" in result.stdout
    assert all('namespace="team-a", job_name="run1"' in q for q in queries if "incv4_" in q)
    assert not [p for m, p, q in api.requests if "/proxy/" in p]
