"""Case `checkpoint`: how long training stops when rank 0 writes a checkpoint, synchronous vs asynchronous
(trainer/checkpoint/store.py, CheckpointWriter(asynchronous=...)). Target: the asynchronous stall <= 0.2x the
synchronous one.

One process builds incv4's InceptionV4 train step (1,000 classes: weights + BatchNorm statistics + momentum, the
~340 MB a real checkpoint holds; 75 px, batch 2, so a step is short and the stall stands out), then, alternating
sync and async, runs plain steps (their median is the step's time), one step followed by the save the policy
makes after it, and steps until the background write is done. Stall = (that step + the save call) - the median
plain step. The async side's writes also take CPU from the steps they overlap; their extra time is reported too.
Run alone: `python -m bench.case_checkpoint --worker` prints the JSON records."""
from __future__ import annotations

import argparse
import shutil
import sys
import time

from bench.common import CACHE_DIR, emit, incv4_python, median, run_json
from bench.results import Row

CKPT_DIR = CACHE_DIR / "checkpoint-case"
PLAIN_STEPS = 5
MAX_OVERLAP_STEPS = 60


def _steps(one_step, count: int) -> list:
    times = []
    for _ in range(count):
        t = time.perf_counter()
        one_step()
        times.append(time.perf_counter() - t)
    return times


def _one_save(one_step, save_obj, asynchronous: bool, index: int) -> dict:
    """Plain steps, the saving step, then steps while the write goes on (async)."""
    from incv4.trainer.checkpoint.store import CheckpointWriter, Position

    directory = CKPT_DIR / ("async" if asynchronous else "sync")
    writer = CheckpointWriter(str(directory), keep_max=1, log=lambda line: print(line, file=sys.stderr),
                              asynchronous=asynchronous)
    writer.prepare(save_obj)  # the copy's memory allocated before the first step (CheckpointWriter.prepare)
    plain = median(_steps(one_step, PLAIN_STEPS))
    t = time.perf_counter()
    one_step()
    called = time.perf_counter()
    writer.save(save_obj, Position(epoch=index, global_step=index))
    saving_step = time.perf_counter() - t
    save_call = time.perf_counter() - called
    overlapped = []
    while writer._in_flight is not None and writer._in_flight.is_alive() and len(overlapped) < MAX_OVERLAP_STEPS:
        overlapped += _steps(one_step, 1)
    t = time.perf_counter()
    writer.wait()
    waited_at_end = time.perf_counter() - t
    return {"plain_s": plain, "saving_step_s": saving_step, "save_call_s": save_call, "stall_s": saving_step - plain,
            "overlapped_steps": len(overlapped), "overlap_extra_s": sum(s - plain for s in overlapped),
            "waited_at_end_s": waited_at_end}


def _train_step():
    """incv4's train step as bench/train_worker.py builds it (the trainer's modules), and a closure running it."""
    from bench.train_worker import STEPS_PER_EPOCH, _batch_ms, _mindspore_context, _say
    from incv4.trainer import cpu_backend

    cpu_backend.prepare("CPU", _say)
    _mindspore_context()
    import mindspore as ms
    import numpy as np

    from incv4.trainer import recipe as incv4_recipe
    from incv4.trainer.data import transforms
    from incv4.trainer.model import inception_v4, optim
    from incv4.trainer.training.step import build_train_step

    recipe = incv4_recipe.load(incv4_recipe.shipped_path("inception_v4_ascend.yaml"),
                               overrides=["batch_size=2", "image_resize=75", "amp_level=O0", "loss_scale=1.0",
                                          "device_target=CPU", "distribute=False"])
    net = transforms.with_normalizer(recipe, inception_v4.inception_v4(num_classes=recipe.num_classes))
    opt = optim.create_optimizer(net, recipe, optim.create_lr_schedule(recipe, STEPS_PER_EPOCH))
    step = build_train_step(net, optim.create_loss(recipe), opt, recipe.loss_scale, 1,
                            optim.optimizer_loss_scale(recipe), check_gradients=False)
    x, y = _batch_ms(argparse.Namespace(batch=2, size=75), uint8=True)
    update = ms.Tensor(True)

    def one_step():
        return float(step(x, y, update, ms.Tensor(np.float32(0.0)))[0].asnumpy())  # the trainer reads the loss

    return step, one_step


def worker(rounds: int) -> None:
    step_cell, one_step = _train_step()
    one_step()  # compile
    megabytes = sum(int(p.nbytes) for p in step_cell.get_parameters()) / 1e6
    shutil.rmtree(CKPT_DIR, ignore_errors=True)
    records = {"sync": [], "async": []}
    for index in range(1, rounds + 1):
        for side in ("sync", "async"):  # alternating
            records[side].append(_one_save(one_step, step_cell, side == "async", index))
            print(f"{side}: {records[side][-1]}", file=sys.stderr)
    shutil.rmtree(CKPT_DIR, ignore_errors=True)
    emit(checkpoint_mb=megabytes, save_obj=type(step_cell).__name__, **records)


def run(quick: bool, log=print) -> tuple[list[Row], list[str], dict]:
    rounds = 1 if quick else 4
    record = run_json(incv4_python(), "bench.case_checkpoint", ["--worker", "--rounds", str(rounds)],
                      CACHE_DIR / "logs" / "checkpoint.log")
    sync, asyn = record["sync"], record["async"]
    stall_sync = median([r["save_call_s"] for r in sync])
    stall_async = median([r["save_call_s"] for r in asyn])
    step_sync = median([r["stall_s"] for r in sync])
    step_async = median([r["stall_s"] + r["overlap_extra_s"] for r in asyn])
    plain = median([r["plain_s"] for r in sync + asyn])
    log(f"  [checkpoint] {record['checkpoint_mb']:.0f} MB; step {plain:.3f} s; save call sync {stall_sync:.3f} s, "
        f"async {stall_async:.3f} s; from step times: sync +{step_sync:.3f} s, async +{step_async:.3f} s "
        f"(saving step and the steps its write overlapped)")
    name = f"checkpoint {record['checkpoint_mb']:.0f} MB, InceptionV4 75px b2"
    rows = [Row(name, "s the training thread is stopped by the save", stall_async, stall_sync, "synchronous save",
                False, target_ratio=5.0,
                note="the saving step's extra time, timed as the save call itself (step times vary more than "
                     "that on a shared machine); async = copy of the parameters, then write, rename, manifest in "
                     "a background thread"),
            Row(name, "extra s from step times (saving step + the steps the write overlaps)", step_async,
                step_sync, "synchronous save", False,
                note=f"noisy on {_cores()} shared cores: the background write competes with the steps for CPU; "
                     f"median {median([r['overlapped_steps'] for r in asyn])} steps overlapped")]
    notes = [f"{rounds} alternating rounds (sync, async); plain step median {plain:.3f} s; "
             f"the files go to bench/.cache/checkpoint-case/ and are removed at the end."]
    return rows, notes, record


def _cores() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", action="store_true", required=True)
    parser.add_argument("--rounds", type=int, default=4)
    worker(parser.parse_args().rounds)
