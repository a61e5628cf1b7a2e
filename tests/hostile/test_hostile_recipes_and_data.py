"""Issue 19, hostile recipes and data sets: each ends in one `error: ` line and exit 2 (a usage error, never
retryable), before any training starts. Items 5, 7 (recipes and data) and 8; every file is generated here."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from PIL import Image

from jpegs import damage_jpeg as _damage, noise_jpegs
from incv4.operator.cli import main
from incv4.trainer import recipe as recipes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(REPO, "configs", "inception_v4_cpu_demo.yaml")  # num_classes: 10
TRAIN = ["train", "-c", DEMO, "--workers", "1", "--metrics-port", "0"]

# Runs the CLI in a fresh interpreter (so whether MindSpore got imported means something) and reports the exit
# code, stderr and that fact as JSON on stdout's last line.
_FRESH_CLI = """
import json, sys
from click.testing import CliRunner
from incv4.operator.cli import main
result = CliRunner().invoke(main, sys.argv[1:])
print(json.dumps({"code": result.exit_code, "stderr": result.stderr, "mindspore": "mindspore" in sys.modules}))
"""


def _image_folder(root, classes_by_split, per_class=2):
    """`root/<split>/<class>/<i>.png`, tiny PNGs."""
    for split, classes in classes_by_split.items():
        os.makedirs(os.path.join(root, split), exist_ok=True)
        for name in classes:
            os.makedirs(os.path.join(root, split, name), exist_ok=True)
            for i in range(per_class):
                Image.new("RGB", (8, 8), (i * 40, 10, 200)).save(os.path.join(root, split, name, f"{i}.png"))
    return str(root)


def _one_line_exit_2(code, stderr, *fragments):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _fresh_cli(*args, timeout=60):
    """(exit code, stderr, whether MindSpore was imported) of the CLI in a new process; never waits forever."""
    done = subprocess.run([sys.executable, "-c", _FRESH_CLI, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["code"], report["stderr"], report["mindspore"]


@pytest.fixture
def ten_classes(tmp_path):
    """An image folder that agrees with the demo recipe: train and val with the same 10 classes."""
    names = [f"c{i}" for i in range(10)]
    return _image_folder(tmp_path / "data", {"train": names, "val": names})


@pytest.fixture
def checkpoint_file(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"not looked at: the data check comes first")
    return str(path)


# Item 8: MindCV compatibility


def test_item8_lr_1e_minus_3_is_read_as_a_float_as_mindcv_does(tmp_path):
    path = tmp_path / "mindcv.yaml"
    path.write_text("opt: momentum\nlr: 1e-3\nmin_lr: 5e-5\nscale: [8e-2, 1.0]\n")
    recipe = recipes.load(str(path), ["weight_decay=4e-5"])
    assert (recipe.lr, recipe.min_lr, recipe.scale, recipe.weight_decay) == (0.001, 5e-5, [0.08, 1.0], 4e-5)
    assert isinstance(recipe.lr, float)
    with pytest.raises(recipes.RecipeError, match="recipe key 'lr': must be a number, got 'nan'"):
        recipes.load(str(path), ["lr=nan"])  # only plain decimal numbers, as written in MindCV's recipes


def test_item8_lr_1e_minus_3_passes_the_cli_recipe_check(tmp_path):
    path = tmp_path / "mindcv.yaml"
    path.write_text(open(DEMO).read().replace("lr: 0.005", "lr: 1e-3"))
    empty = tmp_path / "data" / "train"
    empty.mkdir(parents=True)
    result = CliRunner().invoke(main, ["train", "-c", str(path), "--data-dir", str(tmp_path / "data"),
                                       "--workers", "1", "--metrics-port", "0", "--set", "weight_decay=5e-5",
                                       "--set", "val_while_train=false"])
    # The recipe is accepted: the one error is about the data, which comes after it.
    _one_line_exit_2(result.exit_code, result.stderr, "train/ has no class folders")


def test_item8_duplicate_key_in_a_recipe_is_one_line_naming_the_key(tmp_path, ten_classes):
    path = tmp_path / "dup.yaml"
    path.write_text("batch_size: 8\nlr: 0.1\nepoch_size: 2\nlr: 0.2\n")
    result = CliRunner().invoke(main, [*TRAIN[:2], str(path), *TRAIN[3:], "--data-dir", ten_classes])
    line = _one_line_exit_2(result.exit_code, result.stderr, "'lr'", "given twice", "lines 2 and 4")
    assert line == f"error: recipe file '{path}': key 'lr' is given twice (lines 2 and 4)"


# The key-by-key contract audit: what incv4 does not build, or would accept and ignore, is refused by the recipe
# check in every command that reads a recipe, before MindSpore loads, any worker starts or anything is rendered.

def _audit_commands(data, checkpoint_file):
    launch = ["launch", "-c", DEMO, "--data-dir", data, "--nodes", "1", "--node-rank", "0", "--master-addr",
              "127.0.0.1", "--local-workers", "2", "--metrics-port", "0"]
    render = ["render", "--name", "run", "--image", "registry.example.com/incv4:0.1.0", "--dataset-pvc", "imagenet"]
    return {"train": [*TRAIN, "--data-dir", data], "launch": launch, "render": render,
            "validate": ["validate", "-c", DEMO, "--data-dir", data, "--ckpt-path", checkpoint_file]}


@pytest.mark.parametrize("command, override, line", [
    ("train", "opt=adam", "recipe key 'opt': 'adam' is not supported by incv4 (supported: momentum, sgd)"),
    ("launch", "scheduler=one_cycle", "recipe key 'scheduler': 'one_cycle' is not supported by incv4"),
    ("render", "loss=BCE", "recipe key 'loss': 'BCE' is not supported by incv4 (supported: CE)"),
    ("validate", "mixup=0.2", "recipe key 'mixup': 0.2 is not supported by incv4"),
    ("train", "auto_augment=randaug-m9-n2-w0", "recipe key 'auto_augment': 'randaug-m9-n2-w0': -w0 (weighted op "
                                               "choice) is not supported"),
    ("render", "cutmix_prob=0.5", "recipe key 'cutmix_prob': 0.5 changes nothing: it only matters with mixup or "
                                  "cutmix > 0, which incv4 refuses; leave it at 1.0"),
    ("launch", "distribute=False", "recipe key 'distribute': False means one worker, but 2 workers were asked for"),
    ("render", "distribute=False", "recipe key 'distribute': False means one worker, but 8 workers were asked for"),
])
def test_audit_refusals_are_one_line_before_mindspore_loads(ten_classes, checkpoint_file, command, override, line):
    code, stderr, mindspore = _fresh_cli(*_audit_commands(ten_classes, checkpoint_file)[command], "--set", override)
    _one_line_exit_2(code, stderr, line)
    assert not mindspore


# Item 7: tracebacks and wrong exit codes (recipes and data)


@pytest.mark.parametrize("content, fragment", [
    (bytes(range(256)) * 8, "not a text file (invalid UTF-8"),
    (os.urandom(4096) + b"\xff", "not a text file"),
    (b"lr: 0.1\nbatch_size: 8\x00\x00\n", "not a text file (NUL byte"),
    (b"lr: \xc3\x28\n", "not a text file (invalid UTF-8 at byte 4)"),
], ids=["all-bytes", "random", "nul-bytes", "invalid-utf8"])
def test_item7_binary_recipe_file_is_one_line_and_exit_2(tmp_path, ten_classes, content, fragment):
    path = tmp_path / "binary.yaml"
    path.write_bytes(content)
    for command in (["train", "-c", str(path), "--workers", "1", "--metrics-port", "0"],
                    ["validate", "-c", str(path)]):
        result = CliRunner().invoke(main, [*command, "--data-dir", ten_classes])
        _one_line_exit_2(result.exit_code, result.stderr, f"recipe file '{path}'", fragment)


def test_item7_yaml_nested_5000_deep_is_one_line_and_exit_2(tmp_path, ten_classes):
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 5000 + "]" * 5000 + "\n")
    result = CliRunner().invoke(main, [*TRAIN[:2], str(path), *TRAIN[3:], "--data-dir", ten_classes])
    _one_line_exit_2(result.exit_code, result.stderr, f"recipe file '{path}': nested too deeply")
    result = CliRunner().invoke(main, [*TRAIN, "--data-dir", ten_classes, "--set", "mean=" + "[" * 5000])
    _one_line_exit_2(result.exit_code, result.stderr, "recipe key 'mean'")
    result = CliRunner().invoke(main, [*TRAIN, "--data-dir", ten_classes,
                                       "--set", "mean=" + "[" * 5000 + "]" * 5000])
    _one_line_exit_2(result.exit_code, result.stderr, "recipe key 'mean': value is nested too deeply")


def test_item7_fifo_in_the_data_set_is_refused_without_opening_it(ten_classes, checkpoint_file):
    pipe = os.path.join(ten_classes, "train", "c3", "stuck.JPEG")
    os.mkfifo(pipe)  # nothing ever writes to it: opening it to read would wait forever
    code, stderr, mindspore = _fresh_cli(*TRAIN, "--data-dir", ten_classes, timeout=60)
    _one_line_exit_2(code, stderr, "1 entry that is not a regular file", "c3/stuck.JPEG: named pipe")
    assert not mindspore
    os.remove(pipe)
    os.mkfifo(os.path.join(ten_classes, "val", "c1", "stuck.png"))
    code, stderr, _ = _fresh_cli("validate", "-c", DEMO, "--data-dir", ten_classes, "--ckpt-path",
                                 checkpoint_file, timeout=60)
    _one_line_exit_2(code, stderr, "c1/stuck.png: named pipe")


def test_item7_empty_train_folder_says_so_before_mindspore_loads(tmp_path):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    _image_folder(data, {"val": [f"c{i}" for i in range(10)]})
    code, stderr, mindspore = _fresh_cli(*TRAIN, "--data-dir", str(data))
    line = _one_line_exit_2(code, stderr)
    assert line == f"error: data: {data}/train/ has no class folders (expected {data}/train/<class>/<image>)"
    assert not mindspore
    (data / "train" / "c0").mkdir()
    (data / "train" / "c1").mkdir()
    code, stderr, mindspore = _fresh_cli(*TRAIN, "--data-dir", str(data), "--set", "val_while_train=false")
    _one_line_exit_2(code, stderr, f"{data}/train/ has no images in its 2 class folders")
    assert not mindspore


# Item 5: silently wrong validation numbers


def _refused_in_train_and_validate(data, checkpoint_file, expected):
    """train and validate on `data` both end in the one line `expected`, exit 2."""
    result = CliRunner().invoke(main, [*TRAIN, "--data-dir", data])
    assert _one_line_exit_2(result.exit_code, result.stderr) == expected
    result = CliRunner().invoke(main, ["validate", "-c", DEMO, "--data-dir", data, "--ckpt-path", checkpoint_file])
    assert _one_line_exit_2(result.exit_code, result.stderr) == expected


def test_item5_val_classes_missing_from_train_are_refused_in_train_and_validate(tmp_path, checkpoint_file):
    names = [f"c{i}" for i in range(10)]
    data = _image_folder(tmp_path / "data", {"train": names[:8], "val": names})
    expected = f"error: data: {data}/val/ has classes not in {data}/train/: c8, c9"
    _refused_in_train_and_validate(data, checkpoint_file, expected)


def test_item5_more_classes_than_num_classes_are_refused_in_train_and_validate(tmp_path, checkpoint_file):
    names = [f"c{i:02d}" for i in range(12)]
    data = _image_folder(tmp_path / "data", {"train": names, "val": names})
    expected = f"error: data: {data}/train/ has 12 classes but num_classes is 10"
    _refused_in_train_and_validate(data, checkpoint_file, expected)


def test_item5_validate_without_a_train_split_needs_val_to_hold_all_num_classes(tmp_path, checkpoint_file):
    """MindCV's validate.py reads only val: then val's own folders give the labels, so a missing class would shift
    every label after it."""
    data = _image_folder(tmp_path / "data", {"val": [f"c{i}" for i in range(9)]})
    result = CliRunner().invoke(main, ["validate", "-c", DEMO, "--data-dir", data, "--ckpt-path", checkpoint_file])
    _one_line_exit_2(result.exit_code, result.stderr, f"{data}/val/ has 9 classes but num_classes is 10",
                     "with no train/ split")


def test_item5_matching_splits_and_fewer_classes_than_num_classes_still_pass_the_checks(tmp_path):
    """What stays allowed: val a subset of train's classes (labels follow train), and fewer classes than
    num_classes (as MindCV allows: the extra outputs are never a label)."""
    names = [f"c{i}" for i in range(6)]
    data = _image_folder(tmp_path / "data", {"train": names, "val": names[:4]})
    recipe = recipes.load(DEMO, data_dir=data)
    recipes.require_data_dir(recipe, ["train", "val"])
    recipes.require_data_dir(recipe, ["val"])


# Item 1 (the data check's part): a damaged JPEG the decoder would die on


def _jpeg_folder(root, splits=("train", "val")):
    for split in splits:
        noise_jpegs(root, split)
    return str(root)


def test_item1_damaged_jpeg_is_found_by_the_data_check_before_mindspore_loads(tmp_path, checkpoint_file):
    data = _jpeg_folder(tmp_path / "data")
    _damage(os.path.join(data, "train", "c2", "0.JPEG"))
    _damage(os.path.join(data, "val", "c5", "1.JPEG"))
    code, stderr, mindspore = _fresh_cli(*TRAIN, "--data-dir", data)
    _one_line_exit_2(code, stderr, f"1 unreadable image in {data}/train (first: c2/0.JPEG: truncated)")
    assert not mindspore
    code, stderr, mindspore = _fresh_cli("validate", "-c", DEMO, "--data-dir", data, "--ckpt-path", checkpoint_file)
    _one_line_exit_2(code, stderr, f"1 unreadable image in {data}/val (first: c5/1.JPEG: truncated)")
    assert not mindspore


def test_item1_full_decode_is_cached_by_the_folder_state(tmp_path):
    from incv4.trainer.data.check import check_image_folder
    from incv4.trainer.data.folder import DataError

    data = _jpeg_folder(tmp_path / "data", splits=("train",))
    cache = tmp_path / "cache"
    cache.mkdir()
    (first,) = check_image_folder(data, ["train"], cache_dir=str(cache))
    (again,) = check_image_folder(data, ["train"], cache_dir=str(cache))
    assert not first.from_cache and again.from_cache
    image = os.path.join(data, "train", "c7", "1.JPEG")
    _damage(image)  # same name, new size and time: the cached result no longer vouches for it
    with pytest.raises(DataError, match="c7/1.JPEG: truncated"):
        check_image_folder(data, ["train"], cache_dir=str(cache))
    # The default cache is this node's: a second check of an unchanged folder reads no image.
    os.remove(image)
    (first,) = check_image_folder(data, ["train"])
    (again,) = check_image_folder(data, ["train"])
    assert again.from_cache and first.images == again.images == 19


# Item 1 (the crash's part): an image the check lets through and the decoder dies on. The damaged JPEG is
# now caught by the check, so each test bypasses the check through a real path: a worker that runs the training
# pipeline directly, or the CLI with the check replaced by one that passes everything (standing for an image
# Pillow decodes and MindSpore's decoder does not). The pipeline, the decoder, the supervisor are the real ones.

# A launcher worker that skips the check: the real training pipeline of the demo recipe on argv[1].
_PIPELINE_WORKER = """
import sys
from incv4.trainer import recipe as recipes
from incv4.trainer.data import pipeline
recipe = recipes.load(sys.argv[1], ["batch_size=4", "auto_augment=", "re_prob=0"], data_dir=sys.argv[2])
dataset, _ = pipeline.create_train_dataset(recipe, num_parallel_workers=1, normalize=False)
for _ in dataset.create_tuple_iterator(num_epochs=1):
    pass
"""

# The CLI with a data check that passes everything, in a fresh interpreter.
_CLI_WITHOUT_CHECK = """
import sys
from incv4.trainer.data import check
check.check_run_data = lambda *args, **kwargs: None
from incv4.operator.cli import main
main(sys.argv[1:])
"""


def _last_error_line(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines and "Traceback" not in stderr, stderr
    return lines[-1]


def test_item1_worker_dying_in_the_decoder_names_the_image_and_exits_2_under_the_launcher(tmp_path):
    import io

    from incv4.trainer.launcher.supervisor import Launcher
    from incv4.trainer.launcher.topology import Topology

    data = _jpeg_folder(tmp_path / "data", splits=("train",))
    damaged = os.path.join(data, "train", "c4", "1.JPEG")
    _damage(damaged)
    err = io.StringIO()
    launcher = Launcher(Topology(1, 0, "127.0.0.1", 8118, 1), [sys.executable, "-c", _PIPELINE_WORKER, DEMO, data],
                        str(tmp_path / "logs"), cluster_timeout=60, grace_period=5, out=io.StringIO(), err=err)
    code = launcher.run()
    assert code == 2, err.getvalue()  # permanent: Volcano's policy aborts the job instead of restarting the pod
    line = _last_error_line(err.getvalue())
    assert line.startswith("error: data: rank 0 died from SIGFPE in MindSpore's image decoder on "), line
    assert line.split(" on ", 1)[1].startswith(f"{damaged} "), line


def test_item1_train_workers_1_dying_in_the_decoder_names_the_image_and_exits_2(tmp_path):
    data = _jpeg_folder(tmp_path / "data", splits=("train",))
    damaged = os.path.join(data, "train", "c6", "0.JPEG")
    _damage(damaged)
    done = subprocess.run([sys.executable, "-c", _CLI_WITHOUT_CHECK, *TRAIN,
                           "--data-dir", data, "--set", "val_while_train=false", "--set", "batch_size=4",
                           "--set", f"ckpt_save_dir={tmp_path / 'ckpt'}"],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 2, done.stderr
    line = _last_error_line(done.stderr)
    assert line == (f"error: data: the training process died from SIGFPE in MindSpore's image decoder on {damaged} "
                    f"(the data check's decoder accepts it; replace or remove the image: a restart cannot help)")


# A launcher worker: the real worker command, with the check replaced as above.
_WORKER_WITHOUT_CHECK = """
import sys
from incv4.trainer.data import check
check.check_run_data = lambda *args, **kwargs: None
from incv4.trainer.training.worker import main
sys.exit(main(sys.argv[1:]))
"""


def test_item1_image_the_decoder_refuses_is_a_usage_error_of_the_worker_and_the_launcher(tmp_path):
    """Not every bad image kills the decoder: MindSpore's pipeline may raise instead. That is a data error too:
    the worker says it in one line and exits 2, and the launcher keeps the 2 (never the retryable 1)."""
    import io

    from incv4.trainer.launcher.supervisor import Launcher
    from incv4.trainer.launcher.topology import Topology

    data = _jpeg_folder(tmp_path / "data", splits=("train",))
    bad = os.path.join(data, "train", "c3", "1.JPEG")
    with open(bad, "wb") as fh:
        fh.write(b"\xff\xd8\xff" + b"not a JPEG after all" * 10 + b"\xff\xd9")
    worker = [sys.executable, "-c", _WORKER_WITHOUT_CHECK, "-c", DEMO, "--data-dir", data, "--no-resume",
              "--set", "val_while_train=false", "--set", "batch_size=4", "--set", f"ckpt_save_dir={tmp_path / 'ck'}"]
    err = io.StringIO()
    launcher = Launcher(Topology(1, 0, "127.0.0.1", 8118, 1), worker,
                        str(tmp_path / "logs"), cluster_timeout=60, grace_period=5, out=io.StringIO(), err=err)
    assert launcher.run() == 2, err.getvalue()
    assert launcher.workers[0].exit_code == 2
    expected = (f"error: data: MindSpore's RandomCropDecodeResize cannot decode {bad}: Error raised by libjpeg: "
                f"Unsupported marker type 0x6e (replace or remove the image: a restart cannot help)")
    assert f"[rank 0] {expected}" in err.getvalue().splitlines()
    assert "Traceback" not in err.getvalue()
