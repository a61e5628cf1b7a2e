"""`incv4 render` / `submit --dry-run`: output, exit codes and one-line errors; no MindSpore, no kubernetes client."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from incv4.operator import render
from incv4.operator.cli import main
from incv4.operator.spec import JobSpec
from incv4.trainer import recipe as recipe_mod
from incv4.trainer.contract import METRICS_PORT

# What `incv4 render` must never import: MindSpore, the kubernetes client, numpy, or the launcher's modules.
HEAVY_MODULES = ("mindspore", "kubernetes", "numpy", "incv4.trainer.launcher.launch", "incv4.trainer.launcher.plan",
                 "incv4.trainer.launcher.supervisor", "incv4.trainer.launcher.environment")
BASE = ["--name", "incv4-run", "--image", "registry.example.com/incv4:0.1.0", "--dataset-pvc", "imagenet"]


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_render_prints_the_configmap_and_the_job_as_yaml():
    result = run("render", *BASE, "--nodes", "2", "--npus", "4", "--ckpt-pvc", "ckpt", "--set", "epoch_size=30")
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    with open(recipe_mod.shipped_path("inception_v4_ascend.yaml"), encoding="utf-8") as fh:
        text = fh.read()
    expected = render.render_all(JobSpec(name="incv4-run", image="registry.example.com/incv4:0.1.0",
                                         dataset_pvc="imagenet", nodes=2, npus=4, ckpt_pvc="ckpt",
                                         recipe="inception_v4_ascend.yaml", recipe_overrides=("epoch_size=30",)), text)
    assert docs == expected
    assert result.stderr == ""
    # libyaml's emitter (recipe.SAFE_DUMPER, for speed) prints exactly what PyYAML's own safe_dump prints
    assert result.stdout.rstrip("\n") == "---\n".join(
        yaml.safe_dump(o, sort_keys=False, default_flow_style=False) for o in expected).rstrip("\n")


def test_render_json_is_a_list_and_submit_client_dry_run_prints_the_same():
    rendered = run("render", *BASE, "-o", "json")
    assert rendered.exit_code == 0, rendered.output
    body = json.loads(rendered.stdout)
    assert body["kind"] == "List" and [o["kind"] for o in body["items"]] == ["ConfigMap", "Job"]
    dry = run("submit", *BASE, "--dry-run", "-o", "json")  # bare --dry-run means client
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout) == body
    dry_yaml = run("submit", *BASE, "--dry-run=client")
    assert list(yaml.safe_load_all(dry_yaml.stdout)) == body["items"]


def test_render_with_a_recipe_file_and_a_cpu_chip(tmp_path):
    recipe = tmp_path / "small.yaml"
    recipe.write_text("device_target: CPU\nbatch_size: 2\nnum_classes: 10\nopt: momentum\n", encoding="utf-8")
    result = run("render", *BASE, "-c", str(recipe), "--chip", "cpu", "--npus", "2")
    assert result.exit_code == 0, result.output
    configmap, job = yaml.safe_load_all(result.stdout)
    assert configmap["data"]["recipe.yaml"] == recipe.read_text(encoding="utf-8")
    assert "resources" not in job["spec"]["tasks"][0]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("args, first_words", [
    (["--name", "a" * 60], "name"),
    (["--name", "Not_DNS"], "name"),
    (["--npus", "3"], "npus"),
    (["--nodes", "0"], "nodes"),
    (["--chip", "310P"], "chip"),
    (["--image", ""], "image"),
    (["--toleration", "key=value:Sometimes"], "toleration 1"),
    (["--env", "NOVALUE"], "env"),
    (["--set", "lrr=0.1"], "recipe key 'lrr'"),
    (["--set", "batch_size=-1"], "recipe key 'batch_size'"),
    (["-c", "/nonexistent/recipe.yaml"], "recipe file"),
    (["--termination-grace-period", "-5"], "termination_grace_period -5: must be an integer >= 31"),
    (["--termination-grace-period", "30"], "termination_grace_period 30"),
])
def test_bad_specs_exit_2_with_one_line_naming_the_problem(args, first_words):
    result = run("render", *BASE, *args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {first_words}"), lines[0]
    assert "Traceback" not in result.output


def test_termination_grace_period_reaches_the_pod():
    def grace(*args):
        result = run("render", *BASE, "-o", "json", *args)
        assert result.exit_code == 0, result.output
        job = json.loads(result.stdout)["items"][1]
        return job["spec"]["tasks"][0]["template"]["spec"]["terminationGracePeriodSeconds"]

    assert grace() == 60
    assert grace("--termination-grace-period", "300") == 300


def test_missing_image_and_name_are_named():
    result = run("render", "--dataset-pvc", "d", "--name", "ok")
    assert result.exit_code == 2 and result.stderr.strip() == \
        "error: image: missing (give --image, e.g. registry.example.com/incv4:0.1.0)"
    result = run("render", "--dataset-pvc", "d", "--image", "x")
    assert result.exit_code == 2 and result.stderr.strip() == "error: name: missing (give --name)"


def test_render_in_a_fresh_process_never_imports_mindspore_the_kubernetes_client_or_the_launcher():
    """The console script's own code path, in a clean interpreter: render with the shipped Ascend recipe, then
    check sys.modules (the CLI must stay fast on a laptop; timing is measured in bench, never asserted). The
    launcher's module is registered lazily: only `incv4 launch` imports it."""
    code = (
        "import sys\n"
        "from incv4.operator.cli import main\n"
        f"try:\n    main({['render', *BASE]!r})\n"
        "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        f"loaded = sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules)\n"
        "print('LOADED', loaded, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stderr
    assert "kind: Job" in proc.stdout


def help_sections(text: str) -> dict:
    """`incv4 --help`'s command sections: {title: [command, ...]} in the printed order."""
    sections, current = {}, None
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = sections.setdefault(line[:-1], [])
        elif current is not None and line.startswith("  ") and line.strip():
            current.append(line.split()[0])
    return sections


def test_help_groups_the_commands_by_who_runs_them():
    result = run("--help")
    assert result.exit_code == 0, result.output
    sections = help_sections(result.stdout)
    assert sections.pop("Options") == ["-h,"]
    assert sections == {
        "Cluster commands": ["render", "doctor", "submit", "list", "status", "logs", "watch", "delete", "suspend",
                             "resume"],
        "Local commands": ["train", "validate", "demo", "demo-data", "report"],
        "In-pod commands": ["launch"],
    }


def test_every_job_spec_field_but_the_namespace_is_a_render_and_submit_flag():
    """The flags are generated from the JobSpec: a field is given on the command line unless marked flagless."""
    import dataclasses

    from incv4.operator.spec import JobSpec

    flagless = {f.name for f in dataclasses.fields(JobSpec) if f.metadata["flag"] is None}
    assert flagless == {"namespace"}
    for command in ("render", "submit"):
        params = {p.name: p for p in main.commands[command].params}
        for spec_field in dataclasses.fields(JobSpec):
            if spec_field.name in flagless:
                continue
            spellings = [name for decl in spec_field.metadata["flag"].decls for name in decl.split("/")]
            param = params[spec_field.name]  # an on/off flag ("--bind-core/--no-bind-core") has both spellings
            assert param.opts + param.secondary_opts == spellings, spec_field.name
            if spec_field.default is not dataclasses.MISSING and not params[spec_field.name].multiple:
                assert params[spec_field.name].default == spec_field.default, spec_field.name


def test_flags_keep_their_spellings_types_and_defaults():
    params = {p.name: p for p in main.commands["render"].params}
    assert params["recipe"].opts == ["-c", "--recipe", "--config"]
    assert params["recipe_overrides"].opts == ["--set"] and params["recipe_overrides"].multiple
    assert params["ttl_seconds"].opts == ["--ttl"] and params["ttl_seconds"].type.name == "integer"
    assert params["tolerations"].opts == ["--toleration"] and params["tolerations"].multiple
    assert (params["metrics_port"].default, params["nodes"].default, params["npus"].default) == (METRICS_PORT, 1, 8)
    assert params["termination_grace_period"].default == 60 and params["shm_size"].default == "16Gi"


@pytest.mark.parametrize("command", [["render"], ["submit", "--dry-run"]], ids=lambda c: c[0])
def test_a_job_that_may_restart_without_a_checkpoint_pvc_gets_one_warning_line(command):
    warned = run(*command, *BASE)
    assert warned.exit_code == 0, warned.output
    lines = warned.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: no --ckpt-pvc: ") and "3 restarts" in lines[0]
    assert warned.stdout.startswith(("---", "apiVersion")), "the warning stays off stdout"
    for quiet in (run(*command, *BASE, "--ckpt-pvc", "ckpt"), run(*command, *BASE, "--max-retry", "0")):
        assert quiet.exit_code == 0 and quiet.stderr == "", quiet.stderr
