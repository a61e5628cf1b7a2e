"""`incv4 report DIR`: the curves read from a history.jsonl (one point per logged line, the last of a step, the
recipe of the newest start), the summary, the self-contained HTML page and the PNG, and the one-line refusals:
no history, a file incv4 did not write, a symlink, a bad extension, matplotlib missing."""
from __future__ import annotations

import base64
import io
import json
import os
import re
import sys

import pytest
from click.testing import CliRunner

from incv4.operator.cli import main
from incv4.operator.report.data import ReportError
from incv4.operator.report.history_source import from_history
from incv4.trainer.training.history import HISTORY_FILE, TrainingHistory

Image = pytest.importorskip("PIL.Image")
pytest.importorskip("matplotlib")

STEPS_PER_EPOCH, EPOCHS = 5, 3
RECIPE = {"model": "inception_v4", "batch_size": 8, "lr": 0.045, "epoch_size": EPOCHS}


def _write_run(directory, clock_start=1000.0):
    """A run logging every step but the compile step, evaluating each epoch, crashing at step 12 and resuming
    from the checkpoint at step 10."""
    now = [clock_start]

    def clock():
        now[0] += 2.0
        return now[0]

    info = {"recipe": RECIPE, "recipe_name": "demo", "world_size": 2, "global_batch": 16,
            "steps_per_epoch": STEPS_PER_EPOCH, "total_steps": STEPS_PER_EPOCH * EPOCHS}
    first = TrainingHistory(str(directory), STEPS_PER_EPOCH, print, clock)
    first.start(0, True, info)
    _log_steps(first, 2, 12)
    second = TrainingHistory(str(directory), STEPS_PER_EPOCH, print, clock)
    second.start(10, True, info)
    _log_steps(second, 11, STEPS_PER_EPOCH * EPOCHS)
    return now[0] - clock_start


def _log_steps(history, first, last):
    for step in range(first, last + 1):
        history.interval(step, (step - 1) // STEPS_PER_EPOCH + 1, 2.0 / step, 0.001 * step, 30.0, 0.01)
        if step % STEPS_PER_EPOCH == 0:
            epoch = step // STEPS_PER_EPOCH
            history.evaluation(epoch, 0.2 * epoch, 0.5 + 0.1 * epoch, 1.0)


def test_the_curves_hold_one_point_per_logged_step_after_the_resume_dropped_the_rest(tmp_path):
    seconds = _write_run(tmp_path)
    report = from_history(str(tmp_path))
    assert [x for x, _ in report.points("loss")] == list(range(2, 16))
    for key in ("lr", "img_per_s", "data_wait_s"):
        assert len(report.points(key)) == 14
    assert report.points("top1") == [(1, 0.2), (2, 0.4), (3, pytest.approx(0.6))]
    assert [x for x, _ in report.points("top5")] == [1, 2, 3]
    assert report.recipe == RECIPE and report.global_batch == 16
    assert report.last_step == 15 and report.planned_steps == 15
    assert report.seconds == pytest.approx(seconds - 2.0)  # first record to last (the clock ticks 2 s a record)
    assert dict(report.summary()) == {"best top-1": "60.00%", "last top-1": "60.00%", "steps": "15 of 15",
                                      "time": f"0:00:{round(seconds - 2.0):02d}", "global batch": "16"}


def test_the_history_file_itself_may_be_named(tmp_path):
    _write_run(tmp_path)
    assert from_history(str(tmp_path / HISTORY_FILE)).last_step == 15


@pytest.mark.parametrize("setup, code, message", [
    (lambda d: None, 2, "holds no history.jsonl"),
    (lambda d: (d / HISTORY_FILE).write_text('{"kind": "start", "step": 0}\n'), 1, "holds no training lines"),
])
def test_a_folder_without_training_lines_is_one_line(tmp_path, setup, code, message):
    setup(tmp_path)
    with pytest.raises(ReportError, match=message) as caught:
        from_history(str(tmp_path))
    assert caught.value.exit_code == code


def _colours(image) -> int:
    return len(image.convert("RGB").getcolors(maxcolors=1 << 24))


def _run(*args):
    result = CliRunner().invoke(main, ["report", *map(str, args)])
    return result


def _figures(page: str) -> list:
    """[(points per curve, decoded PNG)] of every chart of the page."""
    out = []
    for points, data in re.findall(r"<figure data-points='([^']*)'><img alt=\"[^\"]*\" "
                                   r"src=\"data:image/png;base64,([A-Za-z0-9+/=]+)\"></figure>", page):
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        image.load()
        out.append((json.loads(points.replace("&quot;", '"')), image))
    return out


def test_the_html_page_is_self_contained_with_every_curve_the_summary_and_the_recipe(tmp_path):
    _write_run(tmp_path)
    result = _run(tmp_path)
    assert result.exit_code == 0, result.output
    assert result.output == f"report: {tmp_path / 'report.html'}\n"
    page = (tmp_path / "report.html").read_text()
    figures = _figures(page)
    assert [points for points, _ in figures] == [{"top1": 3, "top5": 3}, {"loss": 14}, {"lr": 14},
                                                 {"img_per_s": 14}, {"data_wait_s": 14}]
    assert all(image.size[0] > 300 and _colours(image) > 10 for _, image in figures)
    assert "<th>best top-1</th><td>60.00%</td>" in page and "<th>global batch</th><td>16</td>" in page
    assert "lr: 0.045" in page
    # nothing is fetched at view time: no scripts, no links, no remote images
    assert not re.search(r"<script|<link|src=\"(?!data:)|https?://", page)


def test_with_a_png_name_it_writes_one_png_with_every_curve(tmp_path):
    _write_run(tmp_path)
    out = tmp_path / "curves.png"
    result = _run(tmp_path, "-o", out)
    assert result.exit_code == 0, result.output
    image = Image.open(out)
    image.load()
    assert image.format == "PNG" and image.size[0] > 600 and _colours(image) > 10
    assert image.info.get("Software") == "incv4 report"


def test_a_report_incv4_wrote_is_replaced_but_a_users_file_or_a_symlink_never(tmp_path):
    _write_run(tmp_path)
    assert _run(tmp_path).exit_code == 0
    assert _run(tmp_path).exit_code == 0  # its own report: replaced
    for name in ("mine.html", "mine.png"):
        (tmp_path / name).write_text("my notes\n")
        result = _run(tmp_path, "-o", tmp_path / name)
        assert result.exit_code == 2
        assert result.output == f"error: -o {tmp_path / name} exists and is not a report incv4 wrote; " \
                                "choose another file name\n"
        assert (tmp_path / name).read_text() == "my notes\n"
    os.symlink(tmp_path / "report.html", tmp_path / "link.html")
    assert _run(tmp_path, "-o", tmp_path / "link.html").exit_code == 2
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]


@pytest.mark.parametrize("args, message", [
    (("{dir}", "-o", "{dir}/x.pdf"), "error: -o {dir}/x.pdf: give a .html or a .png file name"),
    (("{dir}/missing",), "error: {dir}/missing: no such folder (give a run's ckpt_save_dir)"),
    ((), "error: give a run's folder (DIR) or --job NAME, not both"),
    (("{dir}", "--job", "x"), "error: give a run's folder (DIR) or --job NAME, not both"),
    (("{dir}", "-o", "{dir}/no/such/r.html"), "error: -o {dir}/no/such/r.html: folder {dir}/no/such does not exist"),
])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, args, message):
    _write_run(tmp_path)
    result = _run(*(a.format(dir=tmp_path) for a in args))
    assert result.exit_code == 2
    assert result.output == message.format(dir=tmp_path) + "\n"


def test_without_matplotlib_report_refuses_in_one_line(tmp_path, monkeypatch):
    _write_run(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    result = _run(tmp_path)
    assert result.exit_code == 2
    assert result.output == ("error: incv4 report needs matplotlib: pip install 'incv4[train]' "
                             "(or pip install matplotlib)\n")
    assert not (tmp_path / "report.html").exists()


def test_a_file_that_only_mentions_incv4_report_is_still_a_users_file(tmp_path):
    _write_run(tmp_path)
    notes = tmp_path / "notes.html"
    notes.write_text("<p>my incv4 report notes</p>\n<!-- written by incv4 report -->\n")
    assert _run(tmp_path, "-o", notes).exit_code == 2
    assert notes.read_text().startswith("<p>my incv4 report notes")
