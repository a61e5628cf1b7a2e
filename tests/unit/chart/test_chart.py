"""The Helm chart (charts/incv4), rendered and linted by Helm's own Go engine (helm-python-sdk): every object validates
strictly, bad values are rejected by values.schema.json with a message naming the value, the monitoring objects
carry the metrics engineer's files unchanged, and the README's install commands work against the chart."""
from __future__ import annotations

import itertools
import json
import pathlib
import re
import shlex
import shutil

import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is a dev dependency: pip install -e '.[dev]'")

from incv4.operator import render, spec as jobspec  # noqa: E402
from incv4.operator.monitoring import contract_file  # noqa: E402
from incv4.trainer import contract, recipe as rc  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[3]
CHART_DIR = REPO / "charts" / "incv4"
DASHBOARD = CHART_DIR / "files" / "incv4-dashboard.json"
ALERTS = CHART_DIR / "files" / "incv4-alerts.rules.yaml"
CONTRACT = CHART_DIR / "files" / "contract.json"
RELEASE = "run1"
NAMESPACE = "training"


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


# The API versions a cluster with the Prometheus Operator serves besides the built-in ones (what `helm install` finds
# by discovery, and `helm template --api-versions` passes): the chart renders its PodMonitor and PrometheusRule only
# where they are served.
MONITORING_APIS = ("monitoring.coreos.com/v1", "monitoring.coreos.com/v1/PodMonitor",
                   "monitoring.coreos.com/v1/PrometheusRule")


def render_manifests(chart, values=None, name=RELEASE, namespace=NAMESPACE, api_versions=MONITORING_APIS) -> dict:
    """`helm template --api-versions ...`: helm-python-sdk's Chart.render does not take API versions, its native
    render does (the `api_versions` render option, Helm's Capabilities.APIVersions)."""
    from helm_python import _native

    options = {"name": name, "namespace": namespace, "api_versions": list(api_versions)}
    return json.loads(_native.call_string("helm_render", chart._raw(), json.dumps(values or {}), json.dumps(options)))


def render_chart(chart, values=None, name=RELEASE, namespace=NAMESPACE, api_versions=MONITORING_APIS) -> list:
    """`helm template`: schema validation, then every template; the objects (NOTES.txt left out), in file order."""
    manifests = render_manifests(chart, values, name, namespace, api_versions)
    objects = []
    for path in sorted(manifests):
        if path.endswith("NOTES.txt"):
            continue
        objects += [doc for doc in yaml.safe_load_all(manifests[path]) if doc]
    return objects


def notes(chart, values=None, api_versions=MONITORING_APIS) -> str:
    return render_manifests(chart, values, api_versions=api_versions)["incv4/templates/NOTES.txt"]


def find(objects, kind, name=None) -> dict:
    hits = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, got {[o['metadata']['name'] for o in hits]}"
    return hits[0]


def validate_strictly(obj, schemas_dir) -> None:
    from k8s_schema import validate_object

    validate_object(obj, schemas_dir)


def kinds(objects) -> list:
    return sorted(o["kind"] for o in objects)


# A matrix of settings: nodes x NPUs x storage x scheduling options, plus every optional object switched on.
STORAGE = [
    {},
    {"dataset": {"pvc": "", "hostPath": "/mnt/imagenet"}, "checkpoint": {"pvc": "ckpt-claim"}},
    {"dataset": {"createPvc": {"enabled": True, "storageClassName": "nfs"}},
     "checkpoint": {"createPvc": {"enabled": True, "accessModes": ["ReadWriteOnce"]}}},
]
SCHEDULING = [
    {},
    {"queue": {"name": "ascend", "create": True, "capability": {"huawei.com/Ascend910": 32, "cpu": "384"}},
     "priorityClassName": "high-priority", "ttlSecondsAfterFinished": 3600, "maxRetry": 0,
     "terminationGracePeriodSeconds": 120},
    {"tolerations": [{"key": "huawei.com/Ascend910", "operator": "Exists", "effect": "NoSchedule"},
                     {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                      "tolerationSeconds": 300}],
     "nodeSelector": {"topology.kubernetes.io/zone": "az1"}, "chip": "910B",
     "resources": {"requests": {"cpu": "180", "memory": "1500Gi"}}, "env": {"GLOG_v": "2", "HCCL_CONNECT_TIMEOUT": "1800"},
     "rbac": {"create": True, "subjects": [{"kind": "User", "name": "alice"},
                                           {"kind": "ServiceAccount", "name": "ci"}]}},
]


def deep_merge(*mappings) -> dict:
    out: dict = {}
    for mapping in mappings:
        for key, value in mapping.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = deep_merge(out[key], value)
            else:
                out[key] = value
    return out


# The full matrix (the parity test renders all of it; rendering takes milliseconds).
MATRIX = [deep_merge({"nodes": nodes, "npusPerNode": npus}, storage, scheduling)
          for nodes, npus, storage, scheduling in itertools.product((1, 4), (1, 2, 4, 8), STORAGE, SCHEDULING)]
# Strict validation costs ~2 s per run of objects (kubernetes-validate resolves the OpenAPI schema each call): every
# storage x scheduling combination, with nodes and NPUs cycling through their values, and a CPU-only run.
VALIDATION_MATRIX = [deep_merge({"nodes": (1, 4)[i % 2], "npusPerNode": (1, 2, 4, 8)[i % 4]}, storage, scheduling)
                     for i, (storage, scheduling) in enumerate(itertools.product(STORAGE, SCHEDULING))]
VALIDATION_MATRIX.append({"chip": "cpu", "nodes": 2, "checkpoint": {"createPvc": {"enabled": True}}})


def test_lint_reports_no_errors_or_warnings():
    for values in (None, MATRIX[-1], {"chip": "cpu", "recipe": {"inline": "model: inception_v4\n"}}):
        report = helm.lint(CHART_DIR, values, strict=True)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert report["errors"] == [] and problems == [], (values, report)


@pytest.mark.parametrize("values", VALIDATION_MATRIX, ids=lambda v: json.dumps(v, sort_keys=True)[:60])
def test_every_rendered_object_validates_strictly(chart, values, shared_schemas):
    objects = render_chart(chart, values)
    for obj in objects:
        validate_strictly(obj, shared_schemas)
    expected = {"ConfigMap", "Job", "PodMonitor", "PrometheusRule"}
    if values.get("queue", {}).get("create"):
        expected.add("Queue")
    if values.get("rbac", {}).get("create"):
        expected |= {"Role", "RoleBinding"}
    if values.get("dataset", {}).get("createPvc") or values.get("checkpoint", {}).get("createPvc"):
        expected.add("PersistentVolumeClaim")
    assert set(kinds(objects)) == expected


def test_a_typo_in_a_rendered_object_would_be_caught(chart, shared_schemas):
    """The strict check is not a formality: the same Job with one misspelt field fails."""
    from k8s_schema import ObjectInvalid, validate_object

    job = find(render_chart(chart), "Job")
    job["spec"]["minAvailble"] = job["spec"].pop("minAvailable")
    with pytest.raises(ObjectInvalid, match="minAvailble"):
        validate_object(job, shared_schemas)


@pytest.mark.parametrize("values, where, problem", [
    ({"nodes": 0}, "/nodes", "minimum: got 0, want 1"),
    ({"npusPerNode": 3}, "/npusPerNode", "value must be one of 1, 2, 4, 8"),
    ({"image": "Registry.example.com/My Image:latest"}, "/image", "does not match pattern"),
    ({"image": ""}, "/image", "minLength"),
    ({"chip": "910C"}, "/chip", "value must be one of '910', '910B', 'cpu'"),
    ({"npus": 8}, "", "additional properties 'npus' not allowed"),
    ({"nodes": "4"}, "/nodes", "got string, want integer"),
    ({"nodes": 2**31}, "/nodes", "maximum"),  # Volcano's minAvailable and replicas are int32
    ({"maxRetry": -1}, "/maxRetry", "minimum"),
    ({"metricsPort": 70000}, "/metricsPort", "maximum"),
    ({"shmSize": "lots"}, "/shmSize", "does not match pattern"),
    ({"env": {"ASCEND_VISIBLE_DEVICES": "0"}}, "", "invalid propertyName 'ASCEND_VISIBLE_DEVICES'"),
    ({"env": {"ASCEND_PROCESS_LOG_PATH": "/tmp"}}, "", "invalid propertyName 'ASCEND_PROCESS_LOG_PATH'"),
    ({"npuMode": "gpu"}, "/npuMode", "value must be one of 'volcano', 'device-plugin'"),
    ({"arch": "aarch64"}, "/arch", "value must be one of 'arm', 'x86'"),
    ({"faultScheduling": "sometimes"}, "/faultScheduling", "value must be one of"),
    ({"tolerations": [{"key": "a", "operator": "Maybe"}]}, "/tolerations/0/operator", "value must be one of"),
    ({"recipe": {"overrides": ["epoch_size"]}}, "/recipe/overrides/0", "does not match pattern"),
    ({"rbac": {"create": True}}, "/rbac/subjects", "minItems: got 0, want 1"),
    ({"runAsUser": 0}, "/runAsUser", "minimum"),
    ({"runAsGroup": 0}, "/runAsGroup", "minimum"),  # the root group
    ({"terminationGracePeriodSeconds": -5}, "/terminationGracePeriodSeconds", "minimum: got -5, want 31"),
    ({"terminationGracePeriodSeconds": 30}, "/terminationGracePeriodSeconds", "minimum: got 30, want 31"),
    ({"terminationGracePeriodSeconds": "60"}, "/terminationGracePeriodSeconds", "got string, want integer"),
])
def test_bad_values_are_rejected_by_the_schema_naming_the_value(chart, values, where, problem):
    with pytest.raises(helm.HelmValuesError) as validated:
        chart.validate_schema(values)
    message = str(validated.value)
    assert f"at '{where}'" in message and problem in message, message
    # `helm template` / `helm install` stop on the same message before rendering anything.
    with pytest.raises(helm.HelmValuesError, match=re.escape(problem)):
        chart.render(values=values, name=RELEASE, namespace=NAMESPACE)
    # and `helm lint` reports it as an error.
    assert any(problem in e for e in helm.lint(CHART_DIR, values)["errors"])


def test_schema_uses_the_job_specs_own_rules():
    """One source of truth: the schema's image/name patterns and choices are spec.py's."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())["properties"]
    assert schema["image"]["pattern"] == jobspec._IMAGE.pattern
    assert {"pattern": jobspec._DNS_1035.pattern} in schema["name"]["anyOf"]
    assert schema["npusPerNode"]["enum"] == list(jobspec.NPU_CHOICES)
    assert schema["chip"]["enum"] == list(jobspec.CHIPS)
    assert schema["npuMode"]["enum"] == list(jobspec.NPU_MODES)
    assert schema["arch"]["enum"] == list(jobspec.HOST_ARCHES)
    assert schema["faultScheduling"]["enum"] == [""] + list(jobspec.FAULT_SCHEDULING_CHOICES)
    assert set(schema["env"]["propertyNames"]["not"]["enum"]) == set(jobspec.RESERVED_ENV)
    assert schema["nodes"]["maximum"] == schema["maxRetry"]["maximum"] == jobspec.INT32_MAX
    assert schema["runAsGroup"]["minimum"] == 1
    assert schema["terminationGracePeriodSeconds"]["minimum"] == jobspec.MIN_TERMINATION_GRACE_PERIOD
    assert schema["terminationGracePeriodSeconds"]["minimum"] > json.loads(CONTRACT.read_text())["launchGracePeriod"]


@pytest.mark.parametrize("image", [
    "incv4", "incv4:0.1.0", "registry.example.com/team/incv4:0.1.0", "localhost:5000/incv4:latest",
    "registry.example.com/incv4@sha256:" + "a" * 64, "registry.example.com/incv4:0.1.0@sha256:" + "b" * 64,
    "Incv4:latest", "incv4:", "incv4:tag with space", "-incv4", "registry.example.com//incv4", "incv4:tag@sha256:xyz",
])
def test_schema_and_job_spec_agree_on_images(chart, image):
    """Go's regexp (Helm) and Python's re (incv4 render) give the same verdict on the same image reference."""
    try:
        jobspec.JobSpec(name="r", image=image, dataset_pvc="imagenet")
        spec_accepts = True
    except jobspec.SpecError:
        spec_accepts = False
    try:
        chart.validate_schema({"image": image})
        chart_accepts = True
    except helm.HelmValuesError:
        chart_accepts = False
    assert chart_accepts == spec_accepts


@pytest.mark.parametrize("values, release, problem", [
    ({"name": "a" * 55, "nodes": 4}, RELEASE, "at most 54"),
    ({"nodes": 1000}, "x" * 53, "at most 52"),
    ({}, "7-run", "must be a DNS-1035 label"),
    ({"recipe": {"file": "recipes/nope.yaml"}}, RELEASE, 'recipe.file "recipes/nope.yaml": no such file'),
    ({"dataset": {"pvc": ""}}, RELEASE, "dataset: give dataset.pvc"),
    ({"recipe": {"overrides": ["epoch_size=2", "ckpt_save_dir=/elsewhere"]}}, RELEASE,
     "recipe key 'ckpt_save_dir' is set by incv4 on the cluster (the checkpoint volume at /ckpt)"),
    ({"faultScheduling": "grace", "npuMode": "device-plugin"}, RELEASE,
     'faultScheduling "grace": only Huawei\'s Volcano NPU plugin acts on it'),
    ({"faultScheduling": "force", "chip": "cpu"}, RELEASE, 'faultScheduling "force": only Huawei\'s Volcano NPU'),
    ({"maxRestarts": 1, "nodes": 2}, RELEASE, "maxRestarts 1: restarts the workers of one node only, and this job "
                                              "has 2 nodes"),
])
def test_cross_field_rules_fail_with_one_clear_line(chart, values, release, problem):
    with pytest.raises(helm.HelmRenderError, match=re.escape(problem)):
        render_chart(chart, values, name=release)


def test_name_length_limit_matches_job_spec(chart):
    for nodes in (1, 10, 100):
        limit = jobspec.max_name_length(nodes)
        render_chart(chart, {"nodes": nodes, "name": "a" * limit})
        with pytest.raises(helm.HelmRenderError, match=f"at most {limit} "):
            render_chart(chart, {"nodes": nodes, "name": "a" * (limit + 1)})


def test_packaged_chart_renders_the_same(chart, tmp_path):
    """`helm package` keeps the recipe, the dashboard and the rules (the templates read them with .Files.Get)."""
    archive = helm.package(CHART_DIR, destination=tmp_path)
    assert pathlib.Path(archive).name == f"incv4-{chart.metadata['version']}.tgz"
    with helm.Chart.load(archive) as packaged:
        assert render_chart(packaged, MATRIX[-1]) == render_chart(chart, MATRIX[-1])
        names = {f["name"] for f in packaged.files}
    assert {"recipes/inception_v4_ascend.yaml", "files/incv4-dashboard.json",
            "files/incv4-alerts.rules.yaml", "files/contract.json"} <= names


def test_chart_versions_follow_the_package(chart):
    version = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert chart.metadata["appVersion"] == version
    assert chart.metadata["apiVersion"] == "v2"
    assert chart.values["image"].rpartition(":")[2] == version  # the default image is this release's


def _schema_paths(schema, prefix=""):
    """Dotted paths of every property the schema lists (objects with free-form keys, e.g. env, stop there)."""
    for key, sub in schema.get("properties", {}).items():
        yield prefix + key
        yield from _schema_paths(sub, prefix + key + ".")


def _value_paths(values, prefix=""):
    for key, value in values.items():
        yield prefix + key
        if isinstance(value, dict) and value:
            yield from _value_paths(value, prefix + key + ".")


def test_values_yaml_documents_exactly_what_the_schema_enforces():
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    text = (CHART_DIR / "values.yaml").read_text(encoding="utf-8")
    documented = set(_value_paths(yaml.safe_load(text)))
    enforced = set(_schema_paths(schema)) - {"global"}
    free_form = {"nodeSelector", "env", "queue.capability", "monitoring.podMonitor.labels",
                 "monitoring.prometheusRule.labels", "monitoring.dashboard.labels", "monitoring.dashboard.annotations"}
    assert documented - {p for p in documented if p.rpartition(".")[0] in free_form} == enforced
    # Each top-level value has a comment right above it (Helm's best practice: values.yaml is the documentation).
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-zA-Z]\w*:", line):
            assert lines[i - 1].startswith("#"), f"values.yaml: {line.split(':')[0]} has no comment"


def test_shipped_recipe_is_the_published_one_byte_for_byte(chart):
    shipped = CHART_DIR / "recipes" / "inception_v4_ascend.yaml"
    assert shipped.read_bytes() == (REPO / "configs" / "inception_v4_ascend.yaml").read_bytes()
    configmap = find(render_chart(chart), "ConfigMap", f"{RELEASE}-recipe")
    assert configmap["data"]["recipe.yaml"] == shipped.read_text(encoding="utf-8")
    recipe = rc.load(rc.shipped_path("inception_v4_ascend.yaml"))
    assert yaml.safe_load(configmap["data"]["recipe.yaml"])["lr"] == recipe.lr == 0.045


def test_inline_recipe_and_overrides_reach_the_pod(chart):
    inline = (REPO / "configs" / "inception_v4_cpu_demo.yaml").read_text(encoding="utf-8")
    objects = render_chart(chart, {"recipe": {"inline": inline, "overrides": ["epoch_size=1", "lr=0.01"]}})
    configmap = find(objects, "ConfigMap", f"{RELEASE}-recipe")
    assert configmap["data"]["recipe.yaml"] == inline
    assert configmap["metadata"]["annotations"]["incv4.io/recipe-source"] == "values:recipe.inline"
    rc.validate(yaml.safe_load(configmap["data"]["recipe.yaml"]))
    command = find(objects, "Job")["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("epoch_size=1") - 1] == "--set"
    assert command.index("lr=0.01") < command.index("ckpt_save_dir=/ckpt")  # the checkpoint mount always wins


def test_dashboard_configmap_carries_the_dashboard_byte_for_byte(chart):
    objects = render_chart(chart, {"monitoring": {"dashboard": {"annotations": {"grafana_folder": "Training"}}}})
    configmap = find(objects, "ConfigMap", f"{RELEASE}-dashboard")
    assert configmap["data"]["incv4-dashboard.json"].encode("utf-8") == DASHBOARD.read_bytes()
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Training"}
    # Helm merges maps: a null drops the default label (for a sidecar that looks for another one).
    relabelled = render_chart(chart, {"monitoring": {"dashboard": {"labels": {"grafana_dashboard": None,
                                                                              "team-dashboards": "yes"}}}})
    labels = find(relabelled, "ConfigMap", f"{RELEASE}-dashboard")["metadata"]["labels"]
    assert labels["team-dashboards"] == "yes" and "grafana_dashboard" not in labels


def test_prometheus_rule_wraps_the_alert_rule_file_unchanged(chart):
    rule = find(render_chart(chart), "PrometheusRule")
    plain = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    assert list(plain) == ["groups"] and plain["groups"]
    assert rule["spec"] == plain
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    custom = render_chart(chart, {"monitoring": {"prometheusRule": {"labels": {"prometheus": "main"}}}})
    assert find(custom, "PrometheusRule")["metadata"]["labels"]["prometheus"] == "main"


def test_pod_monitor_selects_the_jobs_pods_and_names_the_run(chart):
    objects = render_chart(chart, {"metricsPort": 9500})
    monitor, job = find(objects, "PodMonitor"), find(objects, "Job")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    pod_labels = job["spec"]["tasks"][0]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    container = job["spec"]["tasks"][0]["template"]["spec"]["containers"][0]
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert {"name": endpoint["port"], "containerPort": 9500, "protocol": "TCP"} in container["ports"]
    # The dashboard and the alerts aggregate by job_name: the Volcano job name Volcano puts on each pod.
    relabel = endpoint["relabelings"][0]
    assert relabel["targetLabel"] == "job_name"
    assert relabel["sourceLabels"] == [
        "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", render.VOLCANO_JOB_NAME_LABEL)]
    # Every label the dashboard's and the alerts' queries group a run by exists on the scraped series: the ones the
    # Prometheus Operator adds to every PodMonitor target, and ours.
    operator_labels = {"namespace", "pod", "container", "endpoint"}
    assert set(contract.RUN_LABELS) <= operator_labels | {r["targetLabel"] for r in endpoint["relabelings"]}
    assert "job_name" in ALERTS.read_text(encoding="utf-8")
    custom = render_chart(chart, {"monitoring": {"podMonitor": {"labels": {"release": "monitoring"}}}})
    assert find(custom, "PodMonitor")["metadata"]["labels"]["release"] == "monitoring"
    assert {"PodMonitor", "PrometheusRule"}.isdisjoint(kinds(render_chart(chart, {"monitoring": {
        "podMonitor": {"enabled": False}, "prometheusRule": {"enabled": False},
        "dashboard": {"enabled": False}}})))


def test_committed_contract_file_is_the_generators_output():
    assert CONTRACT.read_text(encoding="utf-8") == contract_file.render(), \
        "regenerate: python -m incv4.operator.monitoring.contract_file > charts/incv4/files/contract.json"
    shared = json.loads(CONTRACT.read_text(encoding="utf-8"))
    assert (shared["metricsPort"], shared["taskName"], shared["permanentExitCodes"]) == (9400, "worker", [2, 4])


def _job_parts(objects) -> tuple:
    job, monitor = find(objects, "Job"), find(objects, "PodMonitor")
    (task,) = job["spec"]["tasks"]
    container = task["template"]["spec"]["containers"][0]
    command = container["command"]
    return (task["name"], [p["exitCode"] for p in job["spec"]["policies"] if "exitCode" in p], container["ports"],
            command[command.index("--metrics-port") + 1], "--local-workers" in command,
            monitor["spec"]["podMetricsEndpoints"][0]["port"],
            monitor["spec"]["podMetricsEndpoints"][0]["relabelings"][0]["targetLabel"])


def test_chart_takes_the_shared_values_from_the_contract(chart, tmp_path):
    """Task name, permanent exit codes, metrics port and its name, the launcher's default worker count and the run
    label come from files/contract.json: the chart as shipped renders the contract's values, and the same chart
    with another contract file renders that file's."""
    port = [{"name": contract.METRICS_PORT_NAME, "containerPort": contract.METRICS_PORT, "protocol": "TCP"}]
    assert _job_parts(render_chart(chart, {"npusPerNode": contract.DEFAULT_LOCAL_WORKERS})) == (
        contract.TASK_NAME, list(contract.PERMANENT), port, str(contract.METRICS_PORT), False,
        contract.METRICS_PORT_NAME, contract.JOB_NAME)
    assert "scrapes port 9400 of every pod" in notes(chart)

    copy = tmp_path / "incv4"
    shutil.copytree(CHART_DIR, copy)
    (copy / "files" / "contract.json").write_text(json.dumps(dict(
        json.loads(CONTRACT.read_text()), metricsPort=9999, metricsPortName="prom", taskName="trainer",
        permanentExitCodes=[2, 4, 5], defaultLocalWorkers=4, jobNameLabel="run")))
    with helm.Chart.load(copy) as other:
        parts = _job_parts(render_chart(other, {"npusPerNode": 4, "name": "r"}))
        assert parts == ("trainer", [2, 4, 5], [{"name": "prom", "containerPort": 9999, "protocol": "TCP"}], "9999",
                         False, "prom", "run")
        assert "logs -f r-trainer-0" in notes(other, {"name": "r"})
        with pytest.raises(helm.HelmRenderError, match="'<name>-trainer-0' stay within 63"):
            render_chart(other, {"name": "a" * 60})
        # a port given in the values wins over the contract's
        assert _job_parts(render_chart(other, {"metricsPort": 9500}))[2][0]["containerPort"] == 9500


def test_optional_queue_and_claims(chart):
    objects = render_chart(chart, {
        "queue": {"name": "ascend", "create": True, "weight": 4, "capability": {"huawei.com/Ascend910": 16}},
        "dataset": {"createPvc": {"enabled": True, "size": "1Ti"}},
        "checkpoint": {"createPvc": {"enabled": True, "storageClassName": "fast"}}})
    queue = find(objects, "Queue", "ascend")
    assert queue["spec"] == {"weight": 4, "reclaimable": True, "capability": {"huawei.com/Ascend910": "16"}}
    job = find(objects, "Job")
    assert job["spec"]["queue"] == "ascend"
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
              for v in job["spec"]["tasks"][0]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"dataset": f"{RELEASE}-dataset", "ckpt": f"{RELEASE}-ckpt"}
    dataset = find(objects, "PersistentVolumeClaim", f"{RELEASE}-dataset")
    ckpt = find(objects, "PersistentVolumeClaim", f"{RELEASE}-ckpt")
    assert dataset["spec"]["resources"]["requests"]["storage"] == "1Ti"
    assert ckpt["spec"]["storageClassName"] == "fast"
    # Checkpoints are a run's progress: `helm uninstall` keeps them; the dataset claim is the user's to delete.
    assert ckpt["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert "annotations" not in dataset["metadata"]
    assert "Queue" not in kinds(render_chart(chart, {"queue": {"name": "ascend"}}))


def test_notes_tell_how_to_follow_the_run(chart):
    text = notes(chart, {"name": "imagenet-run"})
    assert f"incv4 watch imagenet-run -n {NAMESPACE}" in text
    assert f"incv4 status imagenet-run -n {NAMESPACE}" in text
    assert "imagenet-run-dashboard" in text and "grafana_dashboard=1" in text
    assert "WARNING: no checkpoint volume" in text and "maxRetry is 3" in text
    assert "WARNING" not in notes(chart, {"checkpoint": {"pvc": "ckpt"}})
    assert "WARNING" not in notes(chart, {"checkpoint": {"createPvc": {"enabled": True}}})
    # Without retries nothing is lost by an emptyDir: a failed run ends there anyway.
    assert "WARNING" not in notes(chart, {"maxRetry": 0})
    assert "WARNING" in notes(chart, {"maxRetry": 1})


def _readme_helm_commands() -> list:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Install with Helm\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    assert match, "README.md has no '## Install with Helm' section"
    blocks = re.findall(r"```(?:sh|bash|console)?\n(.*?)```", match.group(1), re.S)
    text = "\n".join(blocks).replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in text.splitlines()
            if line.strip().startswith(("helm install", "helm upgrade", "helm template", "helm lint"))]


def _values_from_args(args: list) -> tuple:
    """A helm command's --set/--set-string/--set-json/-f values (files relative to the repo) and its release name."""
    values: dict = {}
    positional = []
    i = 2
    while i < len(args):
        arg = args[i]
        flag, _, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        takes_value = flag in ("--set", "--set-string", "--set-json", "--set-file", "-f", "--values", "-n",
                               "--namespace", "--version", "--kube-context", "--kubeconfig", "--timeout")
        value = inline if inline else (args[i + 1] if takes_value and i + 1 < len(args) else None)
        i += 1 if (inline or not takes_value) else 2
        if flag == "--set":
            values = deep_merge(values, helm.parse_set_string(value))
        elif flag == "--set-string":
            values = deep_merge(values, helm.parse_set_string_values(value))
        elif flag == "--set-json":
            values = deep_merge(values, helm.parse_set_json(value))
        elif flag == "--set-file":
            key, _, path = value.partition("=")
            values = deep_merge(values, helm.parse_set_literal(f"{key}={(REPO / path).read_text()}"))
        elif flag in ("-f", "--values"):
            values = deep_merge(values, yaml.safe_load((REPO / value).read_text()))
        elif not arg.startswith("-"):
            positional.append(arg)
    return values, positional


def _assert_keys_exist(values: dict, defaults: dict, path="") -> None:
    for key, value in values.items():
        assert key in defaults, f"README sets {path}{key}, which values.yaml does not have"
        if isinstance(value, dict) and isinstance(defaults[key], dict) and defaults[key]:
            _assert_keys_exist(value, defaults[key], f"{path}{key}.")


def test_readme_install_commands_match_the_chart(chart):
    commands = _readme_helm_commands()
    assert any(c[:2] == ["helm", "install"] for c in commands), commands
    for command in commands:
        values, positional = _values_from_args(command)
        chart_path = positional[-1]
        assert (REPO / chart_path).resolve() == CHART_DIR, command
        _assert_keys_exist(values, chart.values)
        release = positional[0] if command[1] in ("install", "upgrade", "template") and len(positional) > 1 \
            else RELEASE
        render_chart(chart, values, name=release)  # the schema and the templates accept the command as written


def test_monitoring_objects_only_where_the_cluster_serves_their_apis(chart, shared_schemas):
    """Without the Prometheus Operator's CRDs `helm install` would fail on a PodMonitor or a PrometheusRule: they are
    rendered only when .Capabilities.APIVersions has them; the pods then keep their scrape annotations, and the notes
    say how to scrape them."""
    bare = render_chart(chart, api_versions=())
    assert {"PodMonitor", "PrometheusRule"}.isdisjoint(kinds(bare))
    assert {"Job", "ConfigMap"} <= set(kinds(bare))
    for obj in bare:
        validate_strictly(obj, shared_schemas)
    only_monitors = render_chart(chart, api_versions=("monitoring.coreos.com/v1/PodMonitor",))
    assert "PodMonitor" in kinds(only_monitors) and "PrometheusRule" not in kinds(only_monitors)
    assert {"PodMonitor", "PrometheusRule"} <= set(kinds(render_chart(chart)))
    annotations = find(bare, "Job")["spec"]["tasks"][0]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "9400"
    text = notes(chart, api_versions=())
    assert "no monitoring.coreos.com/v1 PodMonitor API" in text and "docs/cluster.md" in text
    assert "PodMonitor run1 scrapes port 9400" in notes(chart)
    assert "monitoring.podMonitor.enabled is false" in notes(chart, {"monitoring": {"podMonitor": {"enabled": False}}})
    # helm lint (no cluster, so no monitoring APIs) passes too.
    assert helm.lint(CHART_DIR, None, strict=True)["errors"] == []


def _docs_scrape_config() -> str:
    text = (REPO / "docs" / "cluster.md").read_text(encoding="utf-8")
    block = re.search(r"^## Monitoring without the Prometheus Operator\n.*?```yaml\n(.*?)```", text, re.S | re.M)
    assert block, "docs/cluster.md: no scrape config under 'Monitoring without the Prometheus Operator'"
    return block.group(1)


def test_plain_prometheus_scrape_config_in_the_docs_keeps_the_run_labels():
    """docs/cluster.md's scrape config for a Prometheus without the Operator: it keeps annotated pods, scrapes the
    annotated port and path, and gives the series the labels the dashboard and the alerts group by."""
    config = yaml.safe_load(_docs_scrape_config())
    (job,) = config["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    relabels = job["relabel_configs"]
    targets = {r.get("target_label") for r in relabels}
    assert set(contract.RUN_LABELS) | {"pod", "__metrics_path__"} <= targets
    keeps = {tuple(r["source_labels"]): r["regex"] for r in relabels if r.get("action") == "keep"}
    assert keeps[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)] == "true"
    # The target of the named metrics port (its address is the pod's, IPv4 or IPv6, with that port).
    assert keeps[("__meta_kubernetes_pod_container_port_name",)] == contract.METRICS_PORT_NAME
    job_name = next(r for r in relabels if r.get("target_label") == contract.JOB_NAME)
    assert job_name["source_labels"] == ["__meta_kubernetes_pod_label_volcano_sh_job_name"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (make setup-dev installs it)")
def test_plain_prometheus_scrape_config_passes_promtool(tmp_path):
    """Debian's Prometheus is built without Kubernetes discovery, so its promtool checks the relabelling with the
    discovery swapped for a static target."""
    import subprocess

    path = tmp_path / "prometheus.yml"
    discovery = "kubernetes_sd_configs:\n      - role: pod\n"
    assert discovery in _docs_scrape_config()
    path.write_text(_docs_scrape_config().replace(discovery, "static_configs:\n      - targets: ['127.0.0.1:9400']\n"),
                    encoding="utf-8")
    result = subprocess.run([shutil.which("promtool"), "check", "config", str(path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    path.write_text(path.read_text(encoding="utf-8").replace("regex: (.+)", "regex: (.+"), encoding="utf-8")
    assert subprocess.run([shutil.which("promtool"), "check", "config", str(path)], capture_output=True,
                          timeout=60).returncode != 0  # promtool really reads it
