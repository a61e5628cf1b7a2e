"""End to end: a short real training run (one worker, demo data at 75 px, 2 epochs of 5 steps) killed with SIGKILL
after its epoch-1 checkpoint, resumed to the end, then `incv4 report`. The history holds no step twice and one line
per progress line the runs printed (the killed run's lines past the resumed step dropped); the report's charts
decode and hold that many points; the HTML page renders in headless Chromium (Debian's package) to a screenshot
that is not blank."""
from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from incv4.trainer import cpu_backend
from incv4.trainer.training.history import HISTORY_FILE, read_lines

pytestmark = pytest.mark.e2e
Image = pytest.importorskip("PIL.Image")
pytest.importorskip("matplotlib")
CHROMIUM = shutil.which("chromium")

EPOCHS, STEPS_PER_EPOCH = 2, 5  # 10 classes x 4 train images / batch 8
PROGRESS = re.compile(r"^epoch (\d+)/\d+ step (\d+)/\d+ loss ")
EVAL = re.compile(r"^epoch (\d+)/\d+ eval: top-1 ")
RUN_TIMEOUT = 900


def _incv4():
    return [sys.executable, "-c", "from incv4.operator.cli import main; main()"]


def _train(args, kill_after=None):
    """Run `incv4 train`; with `kill_after` (a regex), SIGKILL it when a stdout line matches. Returns the lines."""
    environ = {k: v for k, v in os.environ.items() if k != cpu_backend.ISA_ENV}  # the trainer sets its own cap
    proc = subprocess.Popen(_incv4() + args, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            bufsize=1, start_new_session=True)  # its own group: a kill reaches a training child too
    lines, deadline = [], time.monotonic() + RUN_TIMEOUT
    try:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if kill_after and re.search(kill_after, line):
                os.killpg(proc.pid, signal.SIGKILL)
                break
            if time.monotonic() > deadline:
                break
        proc.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return lines, proc.returncode, proc.stderr.read()


def _global_steps(lines) -> list:
    return [(int(m.group(1)) - 1) * STEPS_PER_EPOCH + int(m.group(2)) for m in map(PROGRESS.match, lines) if m]


@pytest.fixture(scope="module")
def story(tmp_path_factory, repo_root):
    from incv4.trainer.data.demo import write_demo_dataset

    work = tmp_path_factory.mktemp("report_e2e")
    data, ckpt = work / "data", work / "ckpt"
    write_demo_dataset(str(data), num_classes=10, train_per_class=4, val_per_class=2, image_size=80)
    args = ["train", "--workers", "1", "--metrics-port", "0",
            "-c", str(repo_root / "configs/inception_v4_cpu_demo.yaml"), "--data-dir", str(data),
            "--set", f"ckpt_save_dir={ckpt}", "--set", f"epoch_size={EPOCHS}", "--set", "batch_size=8",
            "--set", "log_interval=1", "--set", "warmup_epochs=0",
            "--set", "decay_epochs=1", "--set", "val_while_train=True", "--set", "val_interval=1"]
    try:
        first = _train(args, kill_after=r"^epoch 2/2 step 3/5 ")
        second = _train(args)
        yield {"work": work, "ckpt": ckpt, "first": first, "second": second}
    finally:
        shutil.rmtree(work, ignore_errors=True)  # checkpoints of ~340 MB each


def _resumed_step(lines) -> int:
    resumed = [line for line in lines if line.startswith("resuming from ")]
    return int(re.search(r"step (\d+)/", resumed[0]).group(1)) if resumed else 0


def test_the_resumed_history_holds_each_logged_step_once(story):
    first_lines, first_code, _ = story["first"]
    lines, code, stderr = story["second"]
    assert first_code == -signal.SIGKILL
    assert code == 0, stderr[-3000:]
    resumed = _resumed_step(lines)
    assert resumed == STEPS_PER_EPOCH, lines[:20]  # the epoch-1 checkpoint
    logged = [s for s in _global_steps(first_lines) if s <= resumed] + _global_steps(lines)
    assert max(_global_steps(first_lines)) > resumed  # the killed run logged steps the resumed one trained again
    records = read_lines(str(story["ckpt"] / HISTORY_FILE))
    steps = [r["step"] for r in records if r["kind"] == "train"]
    assert steps == logged and len(set(steps)) == len(steps)
    evaluations = [int(m.group(1)) for m in map(EVAL.match, first_lines + lines) if m]
    assert [r["epoch"] for r in records if r["kind"] == "eval"] == sorted(set(evaluations)) == [1, 2]


def _report(story, *extra):
    result = subprocess.run(_incv4() + ["report", str(story["ckpt"]), *extra], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_report_charts_decode_and_hold_every_logged_point(story):
    out = _report(story)
    assert out == f"report: {story['ckpt'] / 'report.html'}\n"
    page = (story["ckpt"] / "report.html").read_text()
    logged = len([r for r in read_lines(str(story["ckpt"] / HISTORY_FILE)) if r["kind"] == "train"])
    charts = re.findall(r"<figure data-points='([^']*)'><img alt=\"[^\"]*\" "
                        r"src=\"data:image/png;base64,([^\"]+)\">", page)
    points = {}
    for counts, data in charts:
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        image.load()
        assert image.format == "PNG" and image.size[0] > 300
        points.update(json.loads(counts.replace("&quot;", '"')))
    assert points == {"loss": logged, "lr": logged, "img_per_s": logged, "data_wait_s": logged, "top1": 2, "top5": 2}
    png = story["work"] / "curves.png"
    _report(story, "-o", str(png))
    image = Image.open(png)
    image.load()
    assert image.format == "PNG"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make setup-dev)")
def test_the_page_renders_in_headless_chromium(story, tmp_path):
    _report(story)
    shot, profile = tmp_path / "shot.png", tmp_path / "profile"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                    "--window-size=1200,1600", f"--screenshot={shot}",
                    (story["ckpt"] / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 24)
    assert len(colours) > 50  # text, axes and curves, not one flat colour
    # the charts are there: a good part of the page is not the white background
    white = sum(count for count, colour in colours if colour == (255, 255, 255))
    assert white < 0.97 * image.size[0] * image.size[1]
