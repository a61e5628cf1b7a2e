"""The distribution: a plain wheel install gives a working `incv4`, ships the recipes, and the top-level
`operator/` folder never shadows the stdlib module when Python runs from the repo root."""
import glob
import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e  # builds a wheel

SUB_PACKAGES = [f"incv4/trainer/{part}/__init__.py"
                for part in ("launcher", "data", "model", "training", "checkpoint", "metrics")]
SUB_PACKAGES += ["incv4/operator/monitoring/__init__.py"]


def test_import_operator_from_repo_root_is_the_stdlib(repo_root):
    out = subprocess.run([sys.executable, "-c", "import operator; print(operator.add(2, 3), operator.__file__)"],
                         cwd=repo_root, capture_output=True, text=True, check=True).stdout
    assert out.startswith("5 ")
    assert str(repo_root) not in out


def test_wheel_install_runs_the_cli_and_ships_recipes(repo_root, tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"),
                    str(repo_root)], check=True, capture_output=True)
    wheel, = glob.glob(str(tmp_path / "dist" / "incv4-*.whl"))
    prefix = tmp_path / "prefix"
    # --ignore-installed: without it pip first UNINSTALLS the venv's own (editable) incv4, breaking every later test.
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--ignore-installed",
                    "--prefix", str(prefix), wheel], check=True, capture_output=True)
    site, = glob.glob(str(prefix / "lib" / "python*" / "site-packages"))
    env = dict(os.environ, PYTHONPATH=site)
    # The installed copy, not the source tree, must answer (run away from the repo).
    code = ("import incv4.operator.cli as c, incv4.trainer.recipe as r; print(c.__file__);"
            "print(r.load(r.shipped_path('inception_v4_ascend.yaml')).batch_size)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0].startswith(site) and out[1] == "32"
    # every sub-package ships, and no compiled or C/C++ file: the trainer is pure Python on MindSpore's kernels
    package = pathlib.Path(site) / "incv4"
    shipped = {p.relative_to(package.parent).as_posix() for p in package.rglob("*") if p.is_file()}
    assert set(SUB_PACKAGES) <= shipped, sorted(set(SUB_PACKAGES) - shipped)
    sources = {f"incv4/{p.relative_to(repo_root).as_posix()}" for top in ("operator", "trainer")
               for p in (repo_root / top).rglob("*.py") if "__pycache__" not in p.parts}
    assert sources <= shipped, sorted(sources - shipped)  # a package missing from pyproject's list fails here
    assert not [p for p in shipped if p.endswith((".c", ".cc", ".cpp", ".h", ".hpp", ".so"))]
    help_text = subprocess.run([str(prefix / "bin" / "incv4"), "--help"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, check=True).stdout
    assert "Usage: incv4" in help_text
    still_there = subprocess.run([sys.executable, "-c", "import incv4.trainer.recipe"], cwd=tmp_path,
                                 capture_output=True, text=True)
    assert still_there.returncode == 0, "installing the wheel removed the environment's own incv4"
