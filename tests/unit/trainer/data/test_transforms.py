"""Image transforms (trainer/data/transforms.py): random erasing's semantics, AutoAugment at 299 px, the in-graph
normalizer against the float pipelines, and MindCV's transforms as the oracle where mindcv is installed."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from incv4.trainer.data import pipeline
from incv4.trainer.data.transforms import RandomErasing, normalizer, with_normalizer
from incv4.trainer.recipe import load, shipped_path

pytest.importorskip("mindspore", reason="the data pipelines need MindSpore (pip install -e '.[train]')")

MEAN = np.array([0.485, 0.456, 0.406]) * 255
STD = np.array([0.229, 0.224, 0.225]) * 255


def test_autoaugment_and_random_erasing_pipeline_at_299(tmp_path):
    for c in ("a", "b"):
        (tmp_path / "train" / c).mkdir(parents=True)
        for i in range(4):
            pixels = np.random.default_rng(i).integers(0, 255, (330, 420, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "train" / c / f"{i}.JPEG", quality=85)
    recipe = load(shipped_path("inception_v4_ascend.yaml"), data_dir=str(tmp_path),
                  overrides=["batch_size=4", "re_prob=1.0", "num_parallel_workers=2"])
    dataset, steps = pipeline.create_train_dataset(recipe)
    batches = list(dataset.create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert steps == 2 and len(batches) == 2
    for images, labels in batches:
        assert images.shape == (4, 3, 299, 299) and images.dtype == np.float32 and labels.dtype == np.int32
        # re_prob 1: every image has an erased (all-zero over the channels) rectangle
        erased = (images == 0).all(axis=1)
        assert all(erased[i].sum() >= 0.02 * 299 * 299 * 0.9 for i in range(4))


def test_random_erasing_follows_mindspore_semantics():
    erasing = RandomErasing(prob=1.0, scale=(0.1, 0.2), ratio=(0.5, 2.0), fill=0.0, seed=3)
    for _ in range(16):
        image = erasing(np.ones((3, 40, 60), dtype=np.float32))
        zero = image[0] == 0
        rows, cols = np.nonzero(zero)
        area = zero.sum()
        assert (image == 0).all(axis=0)[zero].all(), "all channels erased together"
        assert area == (np.ptp(rows) + 1) * (np.ptp(cols) + 1), "one rectangle"
        assert 0.08 * 2400 <= area <= 0.23 * 2400  # scale bounds, allowing for rounding of h and w
    untouched = RandomErasing(prob=0.0, scale=(0.1, 0.2), ratio=(0.5, 2.0))(np.ones((3, 8, 8)))
    assert (untouched == 1).all()
    assert RandomErasing(1.0, (0.99, 0.99), (5.0, 5.0)).box(10, 10) is None, "no fit: left as is"
    eraser = RandomErasing(0.25, (0.1, 0.2), (0.5, 2.0), seed=4)
    erased = [eraser(np.ones((3, 20, 20))).min() == 0 for _ in range(400)]
    assert 0.18 < np.mean(erased) < 0.32, "erases with probability prob"


def test_uint8_pipelines_normalised_on_the_device_match_the_float_pipelines(id_dataset, demo_recipe):
    import mindspore as ms

    recipe = demo_recipe(id_dataset, batch_size=4)
    floats = next(pipeline.create_eval_dataset(recipe).create_tuple_iterator(output_numpy=True))
    raw = next(pipeline.create_eval_dataset(recipe, normalize=False).create_tuple_iterator(output_numpy=True))
    assert raw[0].dtype == np.uint8 and raw[0].shape == (4, 3, 75, 75)
    on_device = normalizer(recipe)(ms.Tensor(raw[0])).asnumpy()
    assert on_device.dtype == np.float32
    np.testing.assert_allclose(on_device, floats[0], atol=1e-5)
    # uint8 erasing writes the colour that normalises to re_value (0): the mean, rounded
    erasing = RandomErasing.from_recipe(demo_recipe(id_dataset, re_prob=1.0), normalized=False)
    image = erasing(np.full((3, 30, 30), 7, dtype=np.uint8))
    assert sorted(set(map(tuple, image.reshape(3, -1).T.tolist()))) == [(7, 7, 7), (124, 116, 104)]
    train, _ = pipeline.create_train_dataset(demo_recipe(id_dataset, batch_size=4, re_prob=0.5), normalize=False)
    images, _ = next(train.create_tuple_iterator(output_numpy=True))
    assert images.dtype == np.uint8 and images.shape == (4, 3, 75, 75)


def test_with_normalizer_keeps_parameter_names_and_equals_the_network_on_float_input(id_dataset, demo_recipe):
    import mindspore as ms
    from mindspore import nn, ops

    class Net(nn.Cell):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)
            self.bn = nn.BatchNorm2d(2)

        def construct(self, x):
            return ops.mean(self.bn(self.conv(x)), axis=(2, 3))

    recipe = demo_recipe(id_dataset, batch_size=4)
    net = Net()
    net.set_train(False)
    names = [p.name for p in net.get_parameters()]
    wrapped = with_normalizer(recipe, net)
    assert [p.name for p in wrapped.get_parameters()] == names  # checkpoints and weight-decay filters unchanged
    floats = next(pipeline.create_eval_dataset(recipe).create_tuple_iterator(output_numpy=True))[0]
    raw = next(pipeline.create_eval_dataset(recipe, normalize=False).create_tuple_iterator(output_numpy=True))[0]
    np.testing.assert_allclose(wrapped(ms.Tensor(raw)).asnumpy(), net(ms.Tensor(floats)).asnumpy(), atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------
# MindCV as the oracle


def _mindcv_pipeline(root, transforms):
    import mindspore.dataset as ds

    dataset = ds.ImageFolderDataset(str(root), shuffle=False)
    return dataset.map(operations=transforms, input_columns="image").batch(4)


def test_eval_transforms_equal_mindcvs(tmp_path, demo_recipe):
    mindcv_transforms = pytest.importorskip("mindcv.data.transforms_factory",
                                            reason="mindcv (the dev extra's oracle) is not installed")
    for c in ("a", "b"):
        (tmp_path / "val" / c).mkdir(parents=True)
        for i in range(2):
            pixels = np.random.default_rng(i + ord(c)).integers(0, 255, (180, 240, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "val" / c / f"{i}.JPEG", quality=90)
    recipe = demo_recipe(tmp_path, image_resize=139, crop_pct=0.875, interpolation="bicubic", batch_size=4)
    ours = next(pipeline.create_eval_dataset(recipe, classes=["a", "b"]).create_tuple_iterator(output_numpy=True))
    theirs_list = mindcv_transforms.create_transforms("imagenet", image_resize=139, is_training=False,
                                                      crop_pct=0.875, interpolation="bicubic")
    theirs = next(_mindcv_pipeline(tmp_path / "val", theirs_list).create_tuple_iterator(output_numpy=True))
    assert ours[0].shape == theirs[0].shape == (4, 3, 139, 139)
    np.testing.assert_allclose(ours[0], theirs[0], atol=1e-5)
    np.testing.assert_array_equal(ours[1], theirs[1])


def test_train_transforms_equal_mindcvs_when_randomness_is_pinned(tmp_path, demo_recipe):
    mindcv_transforms = pytest.importorskip("mindcv.data.transforms_factory",
                                            reason="mindcv (the dev extra's oracle) is not installed")
    (tmp_path / "train" / "a").mkdir(parents=True)
    for i in range(4):
        pixels = np.random.default_rng(i).integers(0, 255, (120, 120, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "train" / "a" / f"{i}.png")
    # scale and ratio 1 on square images: the random-resized crop is the whole image, so both sides are exact.
    keys = dict(image_resize=96, scale="[1.0,1.0]", ratio="[1.0,1.0]", shuffle=False, batch_size=4)
    recipe = demo_recipe(tmp_path, **keys)
    ours = next(pipeline.create_train_dataset(recipe)[0].create_tuple_iterator(output_numpy=True))
    theirs_list = mindcv_transforms.create_transforms(
        "imagenet", image_resize=96, is_training=True, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0,
        color_jitter=None, interpolation="bilinear", mean=list(MEAN), std=list(STD))
    theirs = next(_mindcv_pipeline(tmp_path / "train", theirs_list).create_tuple_iterator(output_numpy=True))
    np.testing.assert_allclose(ours[0], theirs[0], atol=1e-5)
