"""The data trail (trainer/data/pipeline.py): what a process's datasets record for a post-mortem, the order the
replay tries images in, the replay naming the image MindSpore's decoder dies on, and which MindSpore pipeline
errors are permanent data errors."""
from __future__ import annotations

import os

import pytest

from jpegs import damage_jpeg as _damage, noise_jpegs
from incv4.trainer import contract
from incv4.trainer.data import pipeline
from incv4.trainer.data.folder import list_image_folder

pytest.importorskip("mindspore", reason="the data pipelines need MindSpore (pip install -e '.[train]')")


def _jpegs(root, split, classes=3, per_class=4):
    return noise_jpegs(root, split, classes=classes, per_class=per_class, size=40)


def test_datasets_record_their_trail_and_the_replay_order_starts_with_the_epoch_being_read(tmp_path, monkeypatch,
                                                                                          demo_recipe):
    data = _jpegs(tmp_path / "data", "train")
    _jpegs(tmp_path / "data", "val", per_class=2)
    trail = tmp_path / "trail.json"
    monkeypatch.setenv(contract.DATA_TRAIL_ENV, str(trail))
    recipe = demo_recipe(data, batch_size=2, num_parallel_workers=1)
    dataset, _ = pipeline.create_train_dataset(recipe, rank_id=1, rank_size=2, epoch=3)
    assert pipeline.read_trail(str(trail)) == []  # nothing is recorded until an epoch's order is drawn
    for _ in dataset.create_tuple_iterator(num_epochs=1):
        pass
    (entry,) = pipeline.read_trail(str(trail))
    assert (entry["kind"], entry["split"], entry["rank_id"], entry["rank_size"], entry["epoch"]) == \
        ("train", "train", 1, 2, 3)
    folder = list_image_folder(data, "train")
    shard = pipeline.train_shard(len(folder), 1, 2, recipe.seed, 3)
    candidates = pipeline.trail_candidates(entry)
    assert candidates[:len(shard)] == [folder.path(int(i)) for i in shard]
    assert sorted(candidates) == sorted(folder.path(i) for i in range(len(folder)))  # then every other image
    pipeline.create_eval_dataset(recipe)
    assert [e["kind"] for e in pipeline.read_trail(str(trail))] == ["train", "eval"]  # the newest last


def test_the_replay_names_the_image_the_decoder_dies_on_and_nothing_when_none_does(tmp_path, monkeypatch,
                                                                                  demo_recipe):
    data = _jpegs(tmp_path / "data", "val")
    trail = tmp_path / "trail.json"
    monkeypatch.setenv(contract.DATA_TRAIL_ENV, str(trail))
    pipeline.create_eval_dataset(demo_recipe(data))
    assert pipeline.find_crashing_image(str(trail)) is None  # every image decodes
    damaged = os.path.join(data, "val", "c2", "1.JPEG")
    _damage(damaged)
    assert os.fsdecode(pipeline.find_crashing_image(str(trail))) == damaged
    assert pipeline.find_crashing_image(str(tmp_path / "no-trail.json")) is None


@pytest.mark.parametrize("message, expected", [
    ("Exception thrown from dataset pipeline. Refer to 'Dataset Pipeline Error Message'.\n---\n[ERROR] map "
     "operation: [RandomCropDecodeResize] failed. The corresponding data file is: /d/train/c6/0.JPEG. Decode: "
     "image decode failed.\n---\n", "data: MindSpore's RandomCropDecodeResize cannot decode /d/train/c6/0.JPEG: "
     "Decode: image decode failed (replace or remove the image: a restart cannot help)"),
    ("[ERROR] map operation: [Decode] failed. The corresponding data file is: /v/c1/2.JPEG. Error raised by "
     "libjpeg: Unsupported marker type 0x6e\n", "data: MindSpore's Decode cannot decode /v/c1/2.JPEG: Error raised "
     "by libjpeg: Unsupported marker type 0x6e (replace or remove the image: a restart cannot help)"),
    ("[ERROR] map operation: [Decode] failed. The corresponding data file is: /v/1.JPEG. Allocate memory failed",
     None),  # memory may be there next time: retryable
    ("[ERROR] map operation: [Resize] failed. The corresponding data file is: /v/1.JPEG. Invalid size", None),
    ("Failed to open file /v/1.JPEG", None),
])
def test_only_a_decoding_ops_failure_on_a_named_image_is_a_permanent_data_error(message, expected):
    assert pipeline.decode_error_line(RuntimeError(message)) == expected
