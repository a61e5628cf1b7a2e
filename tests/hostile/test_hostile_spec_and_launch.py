"""Issue 19, items 9, 10 (/metrics address, RBAC) and 7 (`launch` without -c): hostile inputs to the job spec, the
metrics server and the launcher. Each test runs the real `incv4` command (or the function a command runs) and
asserts the one line and the exit code."""
from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

from incv4.trainer import contract

INCV4 = str(pathlib.Path(sys.executable).parent / "incv4")
SPEC = ["--name", "run", "--image", "registry.example.com/incv4:0.1.0", "--dataset-pvc", "imagenet"]
CKPT_LINE = ("error: recipe key 'ckpt_save_dir' is set by incv4 on the cluster (the checkpoint volume at /ckpt); "
             "remove --set ckpt_save_dir")


def incv4(*args, cwd=None, timeout=60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VC_")}  # no Volcano environment
    return subprocess.run([INCV4, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def one_error_line(result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


# ---- item 9: bounds ------------------------------------------------------------------------------------------------

def test_item9_nodes_beyond_int32_are_refused_by_render_and_submit():
    # Volcano's minAvailable and tasks[].replicas are int32 (batch.volcano.sh_jobs.yaml: format: int32).
    for command in (["render"], ["submit", "--dry-run"]):
        result = incv4(*command, *SPEC, "--nodes", str(2**31))
        assert result.returncode == contract.USAGE
        assert one_error_line(result) == "error: nodes 2147483648: must be an integer between 1 and 2147483647"
        assert result.stdout == ""
    assert incv4("render", *SPEC, "--nodes", str(2**31 - 1)).returncode == 0  # the largest the API accepts


def test_item9_run_as_group_0_the_root_group_is_refused():
    for command in (["render"], ["submit", "--dry-run"]):
        result = incv4(*command, *SPEC, "--run-as-group", "0")
        assert result.returncode == contract.USAGE
        assert one_error_line(result).startswith("error: run_as_group 0: the root group is refused")
        assert result.stdout == ""


def test_item9_a_users_set_ckpt_save_dir_is_refused_not_silently_replaced():
    # a plain submit is refused before it reads the kubeconfig or connects
    for command in (["render"], ["submit", "--dry-run"], ["submit", "--kubeconfig", "/nonexistent"]):
        result = incv4(*command, *SPEC, "--set", "epoch_size=20", "--set", "ckpt_save_dir=/mnt/elsewhere")
        assert result.returncode == contract.USAGE, result.stderr
        assert one_error_line(result) == CKPT_LINE
        assert result.stdout == ""


def test_item9_the_chart_refuses_the_same_override():
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk is a dev dependency")
    chart_dir = pathlib.Path(__file__).resolve().parents[2] / "charts" / "incv4"
    with helm.Chart.load(chart_dir) as chart:
        with pytest.raises(helm.HelmRenderError, match="recipe key 'ckpt_save_dir' is set by incv4 on the cluster"):
            chart.render(values={"recipe": {"overrides": ["ckpt_save_dir=/mnt/elsewhere"]}}, name="r", namespace="t")
        with pytest.raises(helm.HelmValuesError, match="maximum"):
            chart.validate_schema({"nodes": 2**31})
        with pytest.raises(helm.HelmValuesError, match="minimum"):
            chart.validate_schema({"runAsGroup": 0})


# ---- item 10: the chart's RBAC Role, scoped to the release's own objects where Kubernetes allows it ----------------

def _release_role(release: str) -> dict:
    """The chart's Role for `release` with rbac.scope=release, rendered by Helm's engine (`helm template`)."""
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk is a dev dependency: pip install -e '.[dev]'")
    import yaml

    values = {"nodes": 2, "rbac": {"create": True, "scope": "release", "subjects": [{"kind": "User", "name": "bob"}]}}
    with helm.Chart.load(pathlib.Path(__file__).resolve().parents[2] / "charts" / "incv4") as chart:
        manifests = chart.render(values, name=release, namespace="training")
    docs = [d for path, text in manifests.items() if path.endswith("rbac.yaml") for d in yaml.safe_load_all(text) if d]
    (role,) = [d for d in docs if d["kind"] == "Role"]
    return role


def test_item10_a_release_scoped_role_reaches_only_its_own_release_by_name():
    """Two runs in one namespace: the Role of run `a` names only a's job, recipe and pods; what Kubernetes cannot
    authorize by name (create, a label-selected list) is all it has without names (test_chart_rbac.py has the
    full table)."""
    role = _release_role("a")
    unnamed = {(verb, resource) for rule in role["rules"] if not rule.get("resourceNames")
               for verb in rule["verbs"] for resource in rule["resources"]}
    assert unnamed == {("create", "commands"), ("list", "pods")}
    names = {name for rule in role["rules"] for name in rule.get("resourceNames", [])}
    assert names == {"a", "a-recipe", "a-worker-0", "a-worker-1", f"a-worker-0:{contract.METRICS_PORT}",
                     f"a-worker-1:{contract.METRICS_PORT}"}
    assert not any("update" in rule["verbs"] or "patch" in rule["verbs"] for rule in role["rules"])


# ---- item 10: /metrics binds loopback for local runs, all interfaces only in a pod ---------------------------------

def _listening_address(port: int) -> str:
    """The address a TCP socket of this machine listens on at `port` (from /proc/net/tcp and tcp6, state 0A =
    LISTEN; the kernel writes each 32-bit word of an address in host order, little-endian here)."""
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = pathlib.Path("/proc/net") / table
        for line in (path.read_text().splitlines()[1:] if path.exists() else []):
            local, state = line.split()[1], line.split()[3]
            host, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                raw = bytes.fromhex(host)
                return socket.inet_ntop(family, b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))
    raise AssertionError(f"nothing listens on port {port}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Runs in its own process: a launcher exports PROMETHEUS_MULTIPROC_DIR and switches prometheus_client to files,
# which must not leak into the other tests. The supervisor's Launcher is replaced by one that only records where
# /metrics listens while the node would run; everything before it (checks, run_node, the exporter) is real.
_SEE_WHERE_METRICS_LISTEN = r"""
import json, sys
from click.testing import CliRunner
from incv4.trainer.launcher import launch, plan, supervisor

listening_address, data, ckpt, local_port, pod_port = sys.argv[1:]
namespace = {"pathlib": __import__("pathlib"), "socket": __import__("socket")}
exec(listening_address, namespace)
seen = []

class LauncherThatLooks:
    port = None
    def __init__(self, *args, **kwargs):
        pass
    def run(self, metrics=None):
        seen.append(namespace["_listening_address"](LauncherThatLooks.port))
        return 0

supervisor.Launcher = LauncherThatLooks
sets = ["num_classes=1", "opt=momentum", "ckpt_save_dir=" + ckpt, "batch_size=1"]
LauncherThatLooks.port = int(local_port)  # `incv4 train --workers N` / `incv4 demo`: the launcher on this machine
assert plan.run_local(None, sets, data, 2, int(local_port), compile_cache=False) == 0
LauncherThatLooks.port = int(pod_port)  # `incv4 launch`: the pod's entrypoint, scraped on the pod's IP
argv = ["--data-dir", data, "--nodes", "1", "--node-rank", "0", "--master-addr", "127.0.0.1", "--local-workers", "1",
        "--metrics-port", pod_port, "--no-compile-cache"]
for text in sets:
    argv += ["--set", text]
result = CliRunner().invoke(launch.launch_command, argv)
assert result.exit_code == 0, result.output
print(json.dumps(seen))
"""


def _tiny_image_folder(root: pathlib.Path) -> None:
    from PIL import Image

    for split in ("train", "val"):
        (root / split / "a").mkdir(parents=True)
        Image.new("RGB", (8, 8), (10, 20, 30)).save(root / split / "a" / "0.jpg")


@pytest.mark.skipif(not pathlib.Path("/proc/net/tcp").exists(), reason="reads /proc/net/tcp")
def test_item10_metrics_bind_loopback_for_local_runs_and_all_interfaces_in_a_pod(tmp_path):
    import inspect

    from incv4.trainer.metrics import exporter

    # the lone worker of `incv4 train --workers 1` (trainer/training/run.py) serves itself on loopback
    port = _free_port()
    server = exporter.serve(port, addr=exporter.LOCAL_ADDR)
    try:
        assert _listening_address(port) == "127.0.0.1"
    finally:
        server.shutdown()
    run_source = (pathlib.Path(exporter.__file__).parents[1] / "training" / "run.py").read_text()
    assert "exporter.serve(metrics_port, addr=exporter.LOCAL_ADDR)" in run_source
    # the launcher, run locally and as a pod's entrypoint
    _tiny_image_folder(tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VC_") and k != exporter.MULTIPROC_ENV}
    result = subprocess.run(
        [sys.executable, "-c", _SEE_WHERE_METRICS_LISTEN, inspect.getsource(_listening_address),
         str(tmp_path / "data"), str(tmp_path / "ckpt"), str(_free_port()), str(_free_port())],
        env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # in a pod: every interface, IPv4 and IPv6 alike (one dual-stack socket, trainer/metrics/exporter.py POD_ADDR)
    assert json.loads(result.stdout.splitlines()[-1]) == ["127.0.0.1", "::"]


# ---- item 7: `incv4 launch` without -c validates before it starts anything -----------------------------------------

LAUNCH = ["launch", "--nodes", "1", "--node-rank", "0", "--master-addr", "127.0.0.1", "--local-workers", "1",
          "--metrics-port", "0", "--set", "opt=momentum"]  # the defaults but MindCV's adam, which incv4 refuses


def test_item7_launch_without_a_recipe_fails_before_starting_any_process(tmp_path):
    started = time.monotonic()
    result = incv4(*LAUNCH, cwd=tmp_path)  # no -c: the defaults, data_dir ./ (an empty folder)
    assert result.returncode == contract.USAGE
    assert one_error_line(result).startswith("error: recipe key 'data_dir'")
    assert list(tmp_path.iterdir()) == []  # no ckpt/logs folder, no worker log: nothing was started
    assert time.monotonic() - started < 30


def test_item7_launch_with_unusable_data_fails_before_starting_any_process(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)  # a class folder without images
    result = incv4(*LAUNCH, "--set", "num_classes=1", cwd=tmp_path)
    assert result.returncode == contract.USAGE
    assert one_error_line(result).startswith("error: data: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train"]  # no ckpt/logs: no scheduler, no worker
