"""Issue 19, the cluster client's part: hostile API servers and kubeconfigs. Each test is one item: the command
ends in ONE line on stderr starting with "error: " and the documented exit code (1 failure, 2 usage), never a
traceback, never a hang. Files are generated here; the API server is tests/support/fake_apiserver.py."""
from __future__ import annotations

import os
import threading
import time

import pytest
import yaml
from click.testing import CliRunner

from fake_apiserver import SilentServer, serving, status_error
from incv4.operator import cluster as cluster_mod
from incv4.operator.cli import main
from incv4.operator.render import render_all
from incv4.operator.spec import JobSpec

SPEC = ["--name", "run1", "--image", "registry.example.com/incv4:0.1.0", "--dataset-pvc", "imagenet",
        "--nodes", "2", "--ckpt-pvc", "ckpt"]
# Submits give --skip-preflight: these tests are about the API client, and the empty stand-in cluster would fail
# incv4 doctor's checks first.
TIMEOUT = 2
MARGIN = 5


pytestmark = pytest.mark.usefixtures("fast_backoff")


@pytest.fixture
def api(tmp_path):
    with serving(tmp_path / "kubeconfig") as server:
        yield server


def run(*args, kubeconfig=None):
    result = CliRunner().invoke(main, [*args] + (["--kubeconfig", kubeconfig] if kubeconfig else []))
    assert "Traceback" not in result.output, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    return result


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def add_job(api, name="run1", phase="Running"):
    spec = JobSpec(name=name, image="registry.example.com/incv4:0.1.0", dataset_pvc="imagenet", nodes=2,
                   namespace="team-a")
    return api.add_job(render_all(spec, "lr: 0.1\n")[1], phase=phase)


def kubeconfig_for(api, tmp_path, server: str) -> str:
    config = yaml.safe_load(open(api.kubeconfig, encoding="utf-8"))
    config["clusters"][0]["cluster"]["server"] = server
    path = tmp_path / "other-kubeconfig"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return str(path)


# ---- item 4: a silent API server --------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["list"], ["status", "run1"], ["submit", *SPEC], ["delete", "run1"],
                                  ["watch", "run1"], ["doctor", *SPEC]], ids=lambda a: a[0])
def test_item4_a_silent_api_server_ends_in_one_line_within_the_request_timeout(api, tmp_path, args):
    with SilentServer() as url:
        kubeconfig = kubeconfig_for(api, tmp_path, url)
        outcome = {}

        def call():
            outcome["result"] = CliRunner().invoke(main, [*args, "--request-timeout", str(TIMEOUT),
                                                          "--kubeconfig", kubeconfig])

        started = time.monotonic()
        worker = threading.Thread(target=call, daemon=True)
        worker.start()
        worker.join(TIMEOUT + MARGIN)
        elapsed = time.monotonic() - started
        assert not worker.is_alive(), f"{args[0]} still waiting after {elapsed:.1f} s"
    result = outcome["result"]
    assert result.exit_code == 1, result.output
    assert one_error_line(result) == \
        f"error: the API server at {url} did not answer within {TIMEOUT} s (--request-timeout)"


def test_item4_the_request_timeout_must_be_positive(api):
    result = run("list", "--request-timeout", "0", kubeconfig=api.kubeconfig)
    assert result.exit_code == 2 and "--request-timeout" in result.stderr


def test_item4_watch_still_reconnects_after_dropped_watches(api):
    add_job(api)
    api.script_watch(["drop"], ["Running", "drop"], ["Completed"])
    result = run("watch", "run1", "--no-progress", "--request-timeout", str(TIMEOUT), kubeconfig=api.kubeconfig)
    assert result.exit_code == 0, result.output
    watches = [q for m, p, q in api.requests if m == "GET" and q.get("watch") in ("true", "True", "1")]
    assert len(watches) == 3


# ---- item 6: submit and delete touch only incv4's own ConfigMap ------------------------------------------------

FOREIGN = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "run1-recipe", "labels": {"team": "data"}}, "data": {"owner": "someone else"}}


def test_item6_submit_refuses_a_foreign_configmap_and_leaves_it_as_it_was(api):
    foreign = api.add_configmap(yaml.safe_load(yaml.safe_dump(FOREIGN)), namespace="team-a")
    before = yaml.safe_dump(foreign)
    result = run("submit", *SPEC, "--skip-preflight", kubeconfig=api.kubeconfig)
    assert result.exit_code == 1, result.output
    assert one_error_line(result) == (
        "error: configmaps 'run1-recipe' already exists in namespace team-a and is not a recipe incv4 left for job "
        "'run1': incv4 will not replace it (delete or rename it, or choose another --name)")
    assert yaml.safe_dump(api.configmaps[("team-a", "run1-recipe")]) == before
    assert api.requests_matching("PUT", "configmaps") == [] and api.requests_matching("DELETE", "configmaps") == []
    assert api.jobs == {}


def test_item6_delete_keeps_a_foreign_configmap(api):
    add_job(api)
    foreign = api.add_configmap(yaml.safe_load(yaml.safe_dump(FOREIGN)), namespace="team-a")
    before = yaml.safe_dump(foreign)
    result = run("delete", "run1", kubeconfig=api.kubeconfig)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["job.batch.volcano.sh/run1 deleted"]
    assert result.stderr.strip() == "warning: configmap/run1-recipe kept: it does not carry incv4's labels for job " \
                                    "'run1'"
    assert yaml.safe_dump(api.configmaps[("team-a", "run1-recipe")]) == before


def test_item6_a_failed_job_create_deletes_only_the_configmap_this_submit_created(api):
    created = {}

    def swap_then_fail(headers):
        # Between our create and the job's failure, someone replaces the ConfigMap with their own.
        with api.lock:
            created.update(api.configmaps.pop(("team-a", "run1-recipe")))
        api.add_configmap(yaml.safe_load(yaml.safe_dump(FOREIGN)), namespace="team-a")
        return status_error(500, "InternalError", "etcd is unhappy")

    api.fail("POST", r"/jobs$", 500, body=swap_then_fail)
    result = run("submit", *SPEC, "--skip-preflight", kubeconfig=api.kubeconfig)
    assert result.exit_code == 1, result.output
    assert "API server error 500 etcd is unhappy" in result.stderr
    assert api.configmaps[("team-a", "run1-recipe")]["data"] == FOREIGN["data"]  # the uid precondition saved it
    assert created["metadata"]["labels"]["app.kubernetes.io/instance"] == "run1"


def test_item6_a_recipe_incv4_left_for_the_same_job_is_replaced(api):
    spec = JobSpec(name="run1", image="registry.example.com/incv4:0.1.0", dataset_pvc="imagenet", nodes=2,
                   namespace="team-a")
    api.add_configmap(render_all(spec, "lr: 0.5\n")[0], namespace="team-a")  # a failed cleanup's leftover
    result = run("submit", *SPEC, "--skip-preflight", kubeconfig=api.kubeconfig)
    assert result.exit_code == 0, result.output
    recipe = api.configmaps[("team-a", "run1-recipe")]
    assert recipe["data"]["recipe.yaml"] != "lr: 0.5\n"
    assert recipe["metadata"]["ownerReferences"][0]["uid"] == api.jobs[("team-a", "run1")]["metadata"]["uid"]


# ---- item 7: bad kubeconfigs and bad answers --------------------------------------------------------------------

KUBECONFIGS = {
    "binary": os.urandom(512).replace(b"\n", b"\x00") + b"\xff\xfe",
    "a list": b"- clusters\n- users\n",
    "another YAML file": b"name: my-app\nreplicas: 3\n",
    "wrong shapes": b"apiVersion: v1\nclusters: 5\ncontexts: 7\nusers: []\ncurrent-context: x\n",
    "broken YAML": b"clusters: [\n",
    "empty": b"",
}


@pytest.mark.parametrize("content", list(KUBECONFIGS.values()), ids=list(KUBECONFIGS))
def test_item7_a_malformed_or_binary_kubeconfig_is_a_usage_error(tmp_path, content):
    path = tmp_path / "kubeconfig"
    path.write_bytes(content)
    for args in (["list"], ["status", "run1"]):
        result = run(*args, kubeconfig=str(path))
        assert result.exit_code == 2, result.output
        assert one_error_line(result).startswith("error: kubeconfig")


BAD_ANSWERS = {
    "HTML": (b"<html><body>502 Bad Gateway</body></html>", "a body that is not JSON"),
    "a list": (b"[1, 2, 3]", "JSON that is not an object (a list)"),
    "no metadata": (b'{"kind": "Job", "spec": {}}', "an object without metadata"),
    "bad items": (b'{"kind": "JobList", "items": [{"spec": {}}]}', "a list whose items are not Kubernetes objects"),
}


@pytest.mark.parametrize("body,problem", list(BAD_ANSWERS.values()), ids=list(BAD_ANSWERS))
def test_item7_non_json_or_unexpected_json_from_the_api_server_is_one_line(api, body, problem):
    add_job(api)
    api.fail("GET", r"/namespaces/team-a/jobs$", 200, raw=body)
    result = run("list", kubeconfig=api.kubeconfig)
    assert result.exit_code == 1, result.output
    list_problem = "an object that is not a list (no items)" if problem == "an object without metadata" else problem
    assert one_error_line(result) == f"error: the API server at {api.url} answered the list of " \
                                     f"jobs.batch.volcano.sh with {list_problem}"
    api.fail("GET", r"/jobs/run1$", 200, raw=body)
    result = run("status", "run1", kubeconfig=api.kubeconfig)
    assert result.exit_code == 1, result.output
    object_problem = problem if problem != "a list whose items are not Kubernetes objects" else \
        "an object without metadata"
    assert one_error_line(result) == f"error: the API server at {api.url} answered the get of " \
                                     f"jobs.batch.volcano.sh 'run1' with {object_problem}"


def test_item7_a_watch_event_that_is_not_json_is_one_line(api):
    add_job(api)
    api.fail("GET", r"/namespaces/team-a/jobs$", 200, raw=b"not json at all\n")
    result = run("watch", "run1", "--no-progress", kubeconfig=api.kubeconfig)
    assert result.exit_code == 1, result.output
    assert one_error_line(result) == f"error: the API server at {api.url} answered the watch of " \
                                     f"jobs.batch.volcano.sh 'run1' with an event that is not a Kubernetes object"


def test_item7_timestamps_with_fractional_seconds_show_an_age(api):
    job = add_job(api)
    job["metadata"]["creationTimestamp"] = "2026-01-02T10:00:00.123456Z"
    add_job(api, name="run2")["metadata"]["creationTimestamp"] = "not a time"
    result = run("list", kubeconfig=api.kubeconfig)
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[1:]}
    assert rows["run1"].endswith(("d", "h", "m", "s")) and rows["run1"][:-1].isdigit(), rows
    assert rows["run2"] == "<unknown>"


def test_item7_an_empty_body_on_create_is_reported_as_such(api):
    api.fail("POST", r"/jobs$", 201, raw=b"")
    result = run("submit", *SPEC, "--skip-preflight", kubeconfig=api.kubeconfig)
    assert result.exit_code == 1, result.output
    assert one_error_line(result) == f"error: the API server at {api.url} answered the create of " \
                                     f"jobs.batch.volcano.sh 'run1' with an empty body"
    assert ("team-a", "run1-recipe") not in api.configmaps  # the recipe this submit created went with it


# ---- item 10: credentials never printed ---------------------------------------------------------------------------

def test_item10_credentials_an_api_server_echoes_are_redacted(api):
    def echo(headers):
        return status_error(500, "InternalError", f"proxy said: Authorization: {headers.get('Authorization')}; "
                            f"retry at https://admin:hunter2@10.0.0.1:6443/api?token={api.token} "
                            f"(raw {api.token})")

    api.fail("POST", r"/jobs$", 500, body=echo)
    result = run("submit", *SPEC, "--skip-preflight", kubeconfig=api.kubeconfig)
    assert result.exit_code == 1, result.output
    line = one_error_line(result)
    assert "API server error 500 proxy said" in line
    for secret in (api.token, "hunter2", "admin:"):
        assert secret not in result.output, line


@pytest.mark.parametrize("text,secret", [
    ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
    ("got bearer s3cr3tT0k3n from header", "s3cr3tT0k3n"),
    ("GET /x?token=qwerty123&limit=5", "qwerty123"),
    ('{"access_token": "zzz999"}', "zzz999"),
    ("see https://user:pa55@example.com/api", "pa55"),
    ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
])
def test_item10_redact_removes_headers_tokens_and_basic_auth(text, secret):
    assert secret not in str(cluster_mod.ClusterError(text))
    assert secret not in cluster_mod.redact(text)


# ---- incv4 doctor against objects no real API server would store -------------------------------------------------

def test_doctor_on_malformed_cluster_objects_prints_cannot_tell_rows_never_a_traceback(api):
    job = render_all(JobSpec(name="run1", image="registry.example.com/incv4:0.1.0", dataset_pvc="imagenet", nodes=2,
                             ckpt_pvc="ckpt", namespace="team-a"), "")[1]
    api.healthy_cluster("team-a", job)
    api.queues["default"]["spec"]["capability"] = {"huawei.com/Ascend910": "lots"}
    for node in api.nodes.values():
        node["status"]["allocatable"] = ["not", "a", "map"]
    api.add_scheduler_config(plugins=())
    api.configmaps[("volcano-system", "volcano-scheduler-configmap")]["data"] = {"volcano-scheduler.conf": "{[: no"}
    api.pvcs[("team-a", "imagenet")]["status"] = "Bound"
    result = run("doctor", *SPEC, kubeconfig=api.kubeconfig)
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.strip().splitlines()[1:]}
    assert rows["queue"] == rows["nodes"] == rows["pvc-dataset"] == "warn"
    assert "cannot tell: the API server's answer is malformed" in result.stdout
    # an unreadable scheduler configuration lists no NPU plugin: the Volcano NPU mode does not fit, the other does
    from incv4.operator.doctor_checks import needs_of

    if needs_of([job]).reads_plugin_annotation:
        assert (rows["npu-plugin"], result.exit_code) == ("FAIL", 2)
        assert one_error_line(result) == "error: the job cannot run on this cluster: failing checks: npu-plugin"
    else:
        assert (rows["npu-plugin"], result.exit_code) == ("ok", 0)
