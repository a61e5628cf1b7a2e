"""The worker process's command line: the shared options reach `train`, a bad recipe is one line and exit 2, a
bad flag is a usage error (2), and the module runs as `python -m incv4.trainer.training.worker`."""
from __future__ import annotations

import subprocess
import sys

from incv4.trainer.training import loop, worker


def test_flags_reach_train(monkeypatch, tmp_path):
    seen = {}

    def fake_train(recipe, resume=True, scale_lr=False, metrics_port=0):
        seen.update(recipe=recipe, resume=resume, scale_lr=scale_lr, metrics_port=metrics_port)
        return 143

    monkeypatch.setattr(loop, "train", fake_train)
    code = worker.main(["--data_dir", str(tmp_path), "--set", "opt=momentum", "--set", "epoch_size=3",
                        "--set", "lr=0.5",
                        "--ckpt-path", str(tmp_path / "w.ckpt"), "--no-resume", "--scale-lr"])
    assert code == 143
    recipe = seen["recipe"]
    assert (recipe.data_dir, recipe.epoch_size, recipe.lr, recipe.ckpt_path) == (
        str(tmp_path), 3, 0.5, str(tmp_path / "w.ckpt"))
    assert (seen["resume"], seen["scale_lr"], seen["metrics_port"]) == (False, True, 0)


def test_a_bad_recipe_is_one_line_and_exit_2(tmp_path, capsys):
    assert worker.main(["--config", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: recipe file '{tmp_path / 'nope.yaml'}': not found"]


def test_an_unknown_flag_is_a_usage_error(capsys):
    assert worker.main(["--metrics-port", "9400"]) == 2
    assert "No such option" in capsys.readouterr().err


def test_the_module_runs_as_a_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "incv4.trainer.training.worker", "-c", str(tmp_path / "nope.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: recipe file '{tmp_path / 'nope.yaml'}': not found"]
