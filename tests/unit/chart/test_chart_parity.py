"""One source of truth: for the same settings, the Volcano Job and the recipe ConfigMap that `helm template` renders
from charts/incv4 EQUAL the ones incv4.operator.render builds (what `incv4 render` / `incv4 submit` send), over a
matrix of settings. A change on one side only fails here."""
from __future__ import annotations

import json
import pathlib

import pytest
import yaml

from test_chart import CHART_DIR, MATRIX, NAMESPACE, RELEASE, find, helm, render_chart

from incv4.operator import render, spec as jobspec
from incv4.trainer import contract

REPO = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


def job_spec_for(chart, values: dict, release: str = RELEASE, namespace: str = NAMESPACE) -> tuple:
    """The JobSpec and recipe text `incv4 render` gets for the settings a user gave the chart as `values`."""
    v = chart.merge_values(values)
    dataset, ckpt = v["dataset"], v["checkpoint"]
    name = v["name"] or release
    if dataset["createPvc"]["enabled"]:
        dataset_pvc, dataset_host_path = f"{name}-dataset", None
    elif dataset["hostPath"]:
        dataset_pvc, dataset_host_path = None, dataset["hostPath"]
    else:
        dataset_pvc, dataset_host_path = dataset["pvc"], None
    ckpt_pvc = f"{name}-ckpt" if ckpt["createPvc"]["enabled"] else (ckpt["pvc"] or None)
    requests = v["resources"]["requests"]
    # null (the default): the contract's port, as `incv4 render` defaults --metrics-port
    metrics_port = contract.METRICS_PORT if v.get("metricsPort") is None else v["metricsPort"]
    if v["recipe"]["inline"]:
        source, recipe_text = "values:recipe.inline", v["recipe"]["inline"]
    else:
        source = f"chart:{v['recipe']['file']}"
        recipe_text = (CHART_DIR / v["recipe"]["file"]).read_text(encoding="utf-8")
    spec = jobspec.JobSpec(
        name=name, image=v["image"], namespace=namespace, nodes=v["nodes"], npus=v["npusPerNode"], chip=v["chip"],
        npu_mode=v["npuMode"], arch=v["arch"], fault_scheduling=v["faultScheduling"] or None,
        recipe=source, recipe_overrides=tuple(v["recipe"]["overrides"]),
        dataset_pvc=dataset_pvc, dataset_host_path=dataset_host_path, ckpt_pvc=ckpt_pvc,
        queue=v["queue"]["name"], priority_class=v["priorityClassName"] or None, max_retry=v["maxRetry"],
        max_restarts=v["maxRestarts"], bind_core=v["bindCore"],
        ttl_seconds=v.get("ttlSecondsAfterFinished"), node_selector=dict(v["nodeSelector"]),
        tolerations=tuple(v["tolerations"]), cpu=str(requests["cpu"]) if requests["cpu"] else None,
        memory=str(requests["memory"]) if requests["memory"] else None, shm_size=v["shmSize"],
        metrics_port=metrics_port, env=dict(v["env"]), run_as_user=v["runAsUser"], run_as_group=v["runAsGroup"],
        termination_grace_period=v["terminationGracePeriodSeconds"])
    return spec, recipe_text


EXTRA = [
    {},
    {"chip": "cpu", "name": "smoke", "resources": {"requests": {"cpu": 2, "memory": "4Gi"}}},
    {"recipe": {"inline": "model: inception_v4\nbatch_size: 16\n", "overrides": ["epoch_size=2", "lr=0.01"]},
     "metricsPort": 9500, "shmSize": "32Gi", "runAsUser": 1001, "runAsGroup": 1234, "image": "incv4"},
    {"nodeSelector": {"accelerator-type": "module-910b-16"}, "chip": "910B"},  # the user's label wins, as in render
    {"terminationGracePeriodSeconds": 31},  # the smallest both sides accept
    # NPU mode, architecture, fault scheduling, and CPU/memory given or sized per NPU (issue 18)
    {"npuMode": "device-plugin", "arch": "x86", "npusPerNode": 2, "nodes": 3},
    {"chip": "910", "faultScheduling": "force", "resources": {"requests": {"cpu": "40"}}},
    {"faultScheduling": "off", "resources": {"requests": {"memory": "300Gi"}}, "npusPerNode": 4},
    {"chip": "cpu", "npuMode": "device-plugin", "arch": "x86"},
    {"nodeSelector": {"host-arch": "huawei-x86"}},  # the user's label wins here too
    {"metricsPort": 9555, "maxRetry": 0},
    {"maxRestarts": 2, "maxRetry": 1},  # in-pod restarts of the one node's workers (incv4 launch --max-restarts)
    {"bindCore": False},  # the seed's msrun --bind_core=True turned off (incv4 launch --bind-core)
]


@pytest.mark.parametrize("values", MATRIX + EXTRA, ids=lambda v: json.dumps(v, sort_keys=True)[:70])
def test_chart_job_and_recipe_equal_incv4_render(chart, values):
    spec, recipe_text = job_spec_for(chart, values)
    objects = render_chart(chart, values)
    assert find(objects, "Job") == render.render_job(spec, recipe_text)
    assert find(objects, "ConfigMap", render.configmap_name(spec)) == render.render_configmap(spec, recipe_text)
    # render_all's order (the ConfigMap first) is what `helm install` does too: ConfigMaps before custom kinds.
    assert [o["kind"] for o in render.render_all(spec, recipe_text)] == ["ConfigMap", "Job"]


def test_parity_catches_a_difference(chart):
    """The comparison is sensitive: the same settings with one NPU more on the chart side differ."""
    spec, recipe_text = job_spec_for(chart, {"npusPerNode": 4})
    job = find(render_chart(chart, {"npusPerNode": 8}), "Job")
    assert job != render.render_job(spec, recipe_text)
    spec, recipe_text = job_spec_for(chart, {"terminationGracePeriodSeconds": 90})
    job = find(render_chart(chart, {"terminationGracePeriodSeconds": 120}), "Job")
    assert job != render.render_job(spec, recipe_text)


def test_chart_defaults_are_the_job_spec_defaults(chart):
    """`helm install` with only the required settings and `incv4 render` with only the required flags agree."""
    defaults = jobspec.JobSpec(name=RELEASE, image="registry.example.com/incv4:0.1.0", namespace=NAMESPACE,
                               dataset_pvc="imagenet", recipe="chart:recipes/inception_v4_ascend.yaml")
    spec, _ = job_spec_for(chart, {})
    assert spec == defaults


def test_chart_matches_the_cli_output(chart, tmp_path):
    """End to end through the real command line: `incv4 render -o json` equals `helm template` for one setting."""
    from click.testing import CliRunner

    from incv4.operator.cli import main

    if "render" not in main.commands:
        pytest.fail("incv4 render is not registered yet (operator/cli.py)")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((REPO / "configs" / "inception_v4_ascend.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    result = CliRunner().invoke(main, [
        "render", "-o", "json", "--name", "imagenet", "-n", NAMESPACE, "--image", "registry.example.com/incv4:0.1.0",
        "--nodes", "4", "--npus", "8", "--chip", "910B", "-c", str(recipe), "--dataset-pvc", "imagenet",
        "--ckpt-pvc", "ckpt", "--queue", "ascend", "--set", "epoch_size=90", "--termination-grace-period", "300"])
    assert result.exit_code == 0, result.output
    sent = json.loads(result.output)
    sent = sent["items"] if isinstance(sent, dict) and "items" in sent else sent
    cli_job = next(o for o in (sent if isinstance(sent, list) else [sent]) if o["kind"] == "Job")
    values = {"name": "imagenet", "nodes": 4, "npusPerNode": 8, "chip": "910B", "checkpoint": {"pvc": "ckpt"},
              "queue": {"name": "ascend"}, "recipe": {"overrides": ["epoch_size=90"]},
              "terminationGracePeriodSeconds": 300}
    assert find(render_chart(chart, values), "Job") == cli_job
