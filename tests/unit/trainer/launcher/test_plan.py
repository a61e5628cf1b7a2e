"""What the workers are given: the global batch and the lr scaling rule, the worker arguments, and the compile
cache folder keyed by everything that shapes the compiled graph."""
from __future__ import annotations

import pytest

from incv4.trainer.launcher.environment import worker_env
from incv4.trainer.launcher.plan import compile_cache_dir, plan_worker_args
from incv4.trainer.launcher.topology import Topology
from incv4.trainer.recipe import RecipeError, shipped_path


def test_global_batch_is_logged_and_lr_scaled_only_on_request(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)  # one class folder: the data dir is checked first
    lines = []
    args, recipe = plan_worker_args(None, ["opt=momentum", "batch_size=4", "lr=0.1"], str(tmp_path), 2, False,
                                    ["--x"], say=lines.append)
    assert "global batch 8 = batch_size 4 x 2 workers" in lines[0]
    assert "reference global batch is 32" in lines[1] and "--scale-lr" in lines[1]
    assert args == ["--data-dir", str(tmp_path), "--set", "opt=momentum", "--set", "batch_size=4", "--set", "lr=0.1",
                    "--set", "distribute=True", "--x"]
    lines.clear()
    args, _ = plan_worker_args(None, ["opt=momentum", "batch_size=4", "lr=0.1"], str(tmp_path), 2, True,
                               say=lines.append)
    assert "lr 0.1 -> 0.025" in lines[1]
    assert args[-2:] == ["--set", "lr=0.025"]
    lines.clear()
    args, _ = plan_worker_args(None, ["opt=momentum", "batch_size=4"], str(tmp_path), 8, True, say=lines.append)
    assert len(lines) == 1 and not any(a.startswith("lr=") for a in args)  # 8 x 4 is the reference: no scaling


def test_distribute_holds_against_the_worker_count(tmp_path):
    """MindCV's distribute: False is a lone process, so more workers are refused before any starts; True with one
    worker is MindCV's init() with one rank; left out, the worker count decides."""
    (tmp_path / "train" / "a").mkdir(parents=True)
    base = ["opt=momentum", "batch_size=4"]
    with pytest.raises(RecipeError) as info:
        plan_worker_args(None, base + ["distribute=False"], str(tmp_path), 8, False, say=lambda _: None)
    assert str(info.value) == ("recipe key 'distribute': False means one worker, but 8 workers were asked for "
                               "(set distribute: True, or run one worker)")
    args, recipe = plan_worker_args(None, base + ["distribute=True"], str(tmp_path), 1, False, say=lambda _: None)
    assert recipe.distribute is True and "distribute=False" not in args
    args, _ = plan_worker_args(None, base, str(tmp_path), 1, False, say=lambda _: None)
    assert not any(a.startswith("distribute=") for a in args)
    args, _ = plan_worker_args(None, base, str(tmp_path), 2, False, say=lambda _: None)
    assert args[-2:] == ["--set", "distribute=True"]
    demo = shipped_path("inception_v4_cpu_demo.yaml")  # `make demo` runs it on 8 workers
    plan_worker_args(demo, [], str(tmp_path), 8, False, say=lambda _: None)


def test_compile_cache_is_keyed_by_everything_that_shapes_the_graph(tmp_path):
    from incv4.trainer.recipe import load

    recipe = load(None, ["opt=momentum", "batch_size=4", f"ckpt_save_dir={tmp_path}"])
    same = compile_cache_dir(load(None, ["opt=momentum", "batch_size=4", f"ckpt_save_dir={tmp_path}"]), 8, ["--x"])
    assert compile_cache_dir(recipe, 8, ["--x"]) == same
    assert same.startswith(str(tmp_path / "compile_cache"))
    other = load(None, ["opt=momentum", "batch_size=2", f"ckpt_save_dir={tmp_path}"])
    assert compile_cache_dir(other, 8, ["--x"]) != same
    assert compile_cache_dir(recipe, 4, ["--x"]) != same
    env = worker_env({}, Topology(1, 0, "127.0.0.1", 8118, 2), 1, 600, 1, compile_cache=same)
    assert env["MS_COMPILER_CACHE_ENABLE"] == "1" and env["MS_COMPILER_CACHE_PATH"] == same
    assert "MS_COMPILER_CACHE_ENABLE" not in worker_env({}, Topology(1, 0, "127.0.0.1", 8118, 2), 1, 600, 1)


def test_the_compile_cache_key_covers_every_source_file_of_the_trainer_package(tmp_path, monkeypatch):
    """A change anywhere in incv4.trainer (not only the launcher's own folder) must miss the cache."""
    from incv4.trainer.launcher import plan
    from incv4.trainer.recipe import load

    package = tmp_path / "trainer"
    (package / "launcher").mkdir(parents=True)
    (package / "model").mkdir()
    (package / "model" / "net.py").write_text("WIDTH = 1\n")
    monkeypatch.setattr(plan, "__file__", str(package / "launcher" / "plan.py"))
    recipe = load(None, ["opt=momentum", f"ckpt_save_dir={tmp_path / 'ckpt'}"])
    before = compile_cache_dir(recipe, 8, [])
    assert compile_cache_dir(recipe, 8, []) == before
    (package / "model" / "net.py").write_text("WIDTH = 2\n")
    assert compile_cache_dir(recipe, 8, []) != before
