"""Data pipelines: shapes, dtypes and normalisation; disjoint covering shards; reproducible epoch order; the bad-data
check; MindCV's transforms as the oracle where mindcv is installed."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from incv4.trainer.data import pipeline as data
from incv4.trainer.data.pipeline import DataError
from incv4.trainer.recipe import RecipeError, load, shipped_path

pytest.importorskip("mindspore", reason="the data pipelines need MindSpore (pip install -e '.[train]')")

MEAN = np.array([0.485, 0.456, 0.406]) * 255
STD = np.array([0.229, 0.224, 0.225]) * 255


def _recipe(data_dir, **keys):
    """The CPU demo recipe with every random colour/geometry change off unless a test turns it on."""
    base = dict(data_dir=str(data_dir), hflip=0.0, vflip=0.0, color_jitter=None, auto_augment=None, re_prob=0.0,
                num_parallel_workers=2)
    base.update(keys)
    overrides = [f"{k}={'null' if v is None else v}" for k, v in base.items() if k != "data_dir"]
    return load(shipped_path("inception_v4_cpu_demo.yaml"), overrides=overrides, data_dir=base["data_dir"])


def _write_ids(root, split, count, classes=5, size=40, fmt="PNG"):
    """`count` flat-colour images whose red/green values encode their id; image i is in class i % classes."""
    for i in range(count):
        folder = root / split / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        colour = ((i * 5) % 256, (i * 5) // 256 * 40, 128)
        Image.new("RGB", (size, size), colour).save(folder / f"img{i:04d}.{fmt.lower()}", fmt)


def _ids(images):
    """Recover image ids from normalised NCHW batches of flat-colour images (centre pixel)."""
    pixel = images[:, :, images.shape[2] // 2, images.shape[3] // 2] * STD + MEAN
    red, green = np.rint(pixel[:, 0]).astype(int), np.rint(pixel[:, 1]).astype(int)
    return (red + (green // 40) * 256) // 5


def _collect(dataset, epochs=1):
    out = []
    iterator = dataset.create_tuple_iterator(num_epochs=epochs, output_numpy=True)
    for _ in range(epochs):
        ids, labels, shapes = [], [], []
        for images, batch_labels in iterator:
            ids.extend(_ids(images).tolist())
            labels.extend(batch_labels.tolist())
            shapes.append(images.shape)
        out.append((ids, labels, shapes))
    return out


@pytest.fixture(scope="module")
def id_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ids")
    _write_ids(root, "train", 50)
    _write_ids(root, "val", 23)
    return root


def test_train_batches_have_shape_dtype_and_labels(id_dataset):
    recipe = _recipe(id_dataset, batch_size=4, hflip=0.5, vflip=0.5, color_jitter=0.4)
    dataset, steps = data.create_train_dataset(recipe)
    assert steps == 50 // 4
    batches = list(dataset.create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert len(batches) == steps
    for images, labels in batches:
        assert images.shape == (4, 3, 75, 75) and images.dtype == np.float32
        assert labels.shape == (4,) and labels.dtype == np.int32
        assert set(labels.tolist()) <= set(range(5))


def test_normalisation_of_flat_colour_images_train_and_eval(tmp_path):
    colour = np.array([200, 30, 90])
    for split in ("train", "val"):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            Image.new("RGB", (64, 48), tuple(int(v) for v in colour)).save(tmp_path / split / c / "x.png")
    recipe = _recipe(tmp_path, batch_size=2)
    expected = (colour - MEAN) / STD
    train, _ = data.create_train_dataset(recipe)
    evaluation = data.create_eval_dataset(recipe)
    for dataset in (train, evaluation):
        images, _ = next(dataset.create_tuple_iterator(num_epochs=1, output_numpy=True))
        assert images.shape == (2, 3, 75, 75) and images.dtype == np.float32
        np.testing.assert_allclose(images.mean(axis=(0, 2, 3)), expected, atol=1e-4)
        np.testing.assert_allclose(images.std(axis=(0, 2, 3)), 0.0, atol=1e-4)


def test_train_shards_are_disjoint_equal_and_cover_all_but_the_remainder(id_dataset):
    recipe = _recipe(id_dataset, batch_size=2)
    seen = []
    for rank in range(3):
        dataset, steps = data.create_train_dataset(recipe, rank_id=rank, rank_size=3)
        assert steps == (50 // 3) // 2
        ((ids, labels, _),) = _collect(dataset)
        assert len(ids) == steps * 2
        assert labels == [i % 5 for i in ids], "labels follow the class folder of each image"
        seen.append(ids)
    flat = [i for ids in seen for i in ids]
    assert len(flat) == len(set(flat)), "shards overlap"
    # Without drop_remainder each rank reads floor(50 / 3) = 16 images: 48 of 50, none twice.
    recipe = _recipe(id_dataset, batch_size=5, drop_remainder=False)
    everything = []
    for rank in range(3):
        dataset, steps = data.create_train_dataset(recipe, rank_id=rank, rank_size=3)
        ((ids, _, shapes),) = _collect(dataset)
        assert len(ids) == 16 and steps == 4 and shapes[-1][0] == 1
        everything += ids
    assert len(set(everything)) == 48 and set(everything) <= set(range(50))


def test_epoch_order_is_shuffled_per_epoch_and_reproducible_on_resume(id_dataset):
    recipe = _recipe(id_dataset, batch_size=2)
    dataset, _ = data.create_train_dataset(recipe, rank_id=1, rank_size=2, epoch=0)
    (epoch0, _, _), (epoch1, _, _) = _collect(dataset, epochs=2)
    assert epoch0 != epoch1 and sorted(epoch0) != list(range(len(epoch0)))
    resumed, _ = data.create_train_dataset(recipe, rank_id=1, rank_size=2, epoch=1)
    ((again, _, _),) = _collect(resumed)
    assert again == epoch1, "a run resumed at epoch 1 reads epoch 1 in the same order"
    folder = data.list_image_folder(str(id_dataset), "train")
    image_ids = [int(os.fsdecode(folder.paths[i])[-8:-4]) for i in data.train_shard(50, 1, 2, recipe.seed, 1)]
    assert again == image_ids[:len(again)], "the order is train_shard(seed, epoch) of the sorted file list"
    other_seed, _ = data.create_train_dataset(_recipe(id_dataset, batch_size=2, seed=7), rank_id=1, rank_size=2)
    assert _collect(other_seed)[0][0] != epoch0


def test_eval_shards_are_disjoint_cover_once_and_keep_the_last_batch(id_dataset):
    recipe = _recipe(id_dataset, batch_size=4)
    everything = []
    for rank in range(3):
        ((ids, labels, shapes),) = _collect(data.create_eval_dataset(recipe, rank_id=rank, rank_size=3))
        assert labels == [i % 5 for i in ids]
        assert sum(s[0] for s in shapes) == len(range(rank, 23, 3))
        everything += ids
    assert sorted(everything) == list(range(23))


def test_val_labels_follow_the_train_classes_when_val_lacks_one(tmp_path):
    _write_ids(tmp_path, "train", 10)
    (tmp_path / "val" / "class3").mkdir(parents=True)
    Image.new("RGB", (40, 40), (15, 0, 128)).save(tmp_path / "val" / "class3" / "x.png")
    ((_, labels, _),) = _collect(data.create_eval_dataset(_recipe(tmp_path, batch_size=4)))
    assert labels == [3]


def test_fast_and_fallback_sources_read_the_same_images_in_the_same_order(tmp_path):
    """MindSpore's ImageFolderDataset is used when it sees exactly the listed files; hidden folders (which it would
    count as classes) switch to the Python source. Both must index the same images the same way."""
    import mindspore.dataset as ds

    _write_ids(tmp_path, "train", 20, classes=4)
    _write_ids(tmp_path, "val", 11, classes=4)
    recipe = _recipe(tmp_path, batch_size=3)
    folder = data.list_image_folder(str(tmp_path), "val")
    assert isinstance(data._source(folder, None, 1), ds.ImageFolderDataset)
    ((fast_ids, fast_labels, _),) = _collect(data.create_eval_dataset(recipe, rank_id=1, rank_size=2))
    (tmp_path / "val" / ".cache").mkdir()
    Image.new("RGB", (40, 40), (250, 0, 128)).save(tmp_path / "val" / ".cache" / "x.png")
    Image.new("RGB", (40, 40), (245, 0, 128)).save(tmp_path / "val" / "class0" / "._x.png")
    assert isinstance(data._source(data.list_image_folder(str(tmp_path), "val"), None, 1), ds.GeneratorDataset)
    ((slow_ids, slow_labels, _),) = _collect(data.create_eval_dataset(recipe, rank_id=1, rank_size=2))
    assert fast_ids == slow_ids and fast_labels == slow_labels
    expected = [int(os.fsdecode(folder.paths[i])[-8:-4]) for i in data.eval_shard(11, 1, 2)]
    assert fast_ids == expected


def test_autoaugment_and_random_erasing_pipeline_at_299(tmp_path):
    for c in ("a", "b"):
        (tmp_path / "train" / c).mkdir(parents=True)
        for i in range(4):
            pixels = np.random.default_rng(i).integers(0, 255, (330, 420, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "train" / c / f"{i}.JPEG", quality=85)
    recipe = load(shipped_path("inception_v4_ascend.yaml"), data_dir=str(tmp_path),
                  overrides=["batch_size=4", "re_prob=1.0", "num_parallel_workers=2"])
    dataset, steps = data.create_train_dataset(recipe)
    batches = list(dataset.create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert steps == 2 and len(batches) == 2
    for images, labels in batches:
        assert images.shape == (4, 3, 299, 299) and images.dtype == np.float32 and labels.dtype == np.int32
        # re_prob 1: every image has an erased (all-zero over the channels) rectangle
        erased = (images == 0).all(axis=1)
        assert all(erased[i].sum() >= 0.02 * 299 * 299 * 0.9 for i in range(4))


def test_random_erasing_follows_mindspore_semantics():
    erasing = data.RandomErasing(prob=1.0, scale=(0.1, 0.2), ratio=(0.5, 2.0), fill=0.0, seed=3)
    for _ in range(16):
        image = erasing(np.ones((3, 40, 60), dtype=np.float32))
        zero = image[0] == 0
        rows, cols = np.nonzero(zero)
        area = zero.sum()
        assert (image == 0).all(axis=0)[zero].all(), "all channels erased together"
        assert area == (np.ptp(rows) + 1) * (np.ptp(cols) + 1), "one rectangle"
        assert 0.08 * 2400 <= area <= 0.23 * 2400  # scale bounds, allowing for rounding of h and w
    untouched = data.RandomErasing(prob=0.0, scale=(0.1, 0.2), ratio=(0.5, 2.0))(np.ones((3, 8, 8)))
    assert (untouched == 1).all()
    assert data.RandomErasing(1.0, (0.99, 0.99), (5.0, 5.0)).box(10, 10) is None, "no fit: left as is"
    eraser = data.RandomErasing(0.25, (0.1, 0.2), (0.5, 2.0), seed=4)
    erased = [eraser(np.ones((3, 20, 20))).min() == 0 for _ in range(400)]
    assert 0.18 < np.mean(erased) < 0.32, "erases with probability prob"


def test_uint8_pipelines_normalised_on_the_device_match_the_float_pipelines(id_dataset, tmp_path):
    import mindspore as ms

    recipe = _recipe(id_dataset, batch_size=4)
    floats = next(data.create_eval_dataset(recipe).create_tuple_iterator(output_numpy=True))
    raw = next(data.create_eval_dataset(recipe, normalize=False).create_tuple_iterator(output_numpy=True))
    assert raw[0].dtype == np.uint8 and raw[0].shape == (4, 3, 75, 75)
    on_device = data.normalizer(recipe)(ms.Tensor(raw[0])).asnumpy()
    assert on_device.dtype == np.float32
    np.testing.assert_allclose(on_device, floats[0], atol=1e-5)
    # uint8 erasing writes the colour that normalises to re_value (0): the mean, rounded
    erasing = data.RandomErasing.from_recipe(_recipe(id_dataset, re_prob=1.0), normalized=False)
    image = erasing(np.full((3, 30, 30), 7, dtype=np.uint8))
    assert sorted(set(map(tuple, image.reshape(3, -1).T.tolist()))) == [(7, 7, 7), (124, 116, 104)]
    train, _ = data.create_train_dataset(_recipe(id_dataset, batch_size=4, re_prob=0.5), normalize=False)
    images, _ = next(train.create_tuple_iterator(output_numpy=True))
    assert images.dtype == np.uint8 and images.shape == (4, 3, 75, 75)


def test_with_normalizer_keeps_parameter_names_and_equals_the_network_on_float_input(id_dataset):
    import mindspore as ms
    from mindspore import nn, ops

    class Net(nn.Cell):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)
            self.bn = nn.BatchNorm2d(2)

        def construct(self, x):
            return ops.mean(self.bn(self.conv(x)), axis=(2, 3))

    recipe = _recipe(id_dataset, batch_size=4)
    net = Net()
    net.set_train(False)
    names = [p.name for p in net.get_parameters()]
    wrapped = data.with_normalizer(recipe, net)
    assert [p.name for p in wrapped.get_parameters()] == names  # checkpoints and weight-decay filters unchanged
    floats = next(data.create_eval_dataset(recipe).create_tuple_iterator(output_numpy=True))[0]
    raw = next(data.create_eval_dataset(recipe, normalize=False).create_tuple_iterator(output_numpy=True))[0]
    np.testing.assert_allclose(wrapped(ms.Tensor(raw)).asnumpy(), net(ms.Tensor(floats)).asnumpy(), atol=1e-4)


def test_unsupported_augment_and_keys_are_one_line_recipe_errors(id_dataset):
    with pytest.raises(RecipeError, match=r"recipe key 'auto_augment': 'augmix' is not supported"):
        data.create_train_dataset(_recipe(id_dataset, auto_augment="augmix"))
    with pytest.raises(RecipeError, match=r"recipe key 'mixup'"):
        data.create_train_dataset(_recipe(id_dataset, mixup=0.2))


def test_too_few_images_for_one_batch_or_for_the_ranks(id_dataset):
    with pytest.raises(DataError, match=r"fewer than one batch of 32"):
        data.create_train_dataset(_recipe(id_dataset, batch_size=32), rank_id=0, rank_size=2)
    with pytest.raises(DataError, match=r"23 images, fewer than the 24 ranks"):
        data.create_eval_dataset(_recipe(id_dataset), rank_id=0, rank_size=24)
    with pytest.raises(DataError, match=r"rank 2 is not within rank_size 2"):
        data.create_train_dataset(_recipe(id_dataset), rank_id=2, rank_size=2)


# ---------------------------------------------------------------------------------------------------------------
# check_image_folder


@pytest.fixture
def broken_dataset(tmp_path):
    _write_ids(tmp_path, "train", 12, classes=3, fmt="JPEG")
    _write_ids(tmp_path, "val", 6, classes=3, fmt="JPEG")
    good = tmp_path / "train" / "class0" / "img0000.jpeg"
    payload = good.read_bytes()
    (tmp_path / "train" / "class1" / "cut.JPEG").write_bytes(payload[: len(payload) // 2])
    (tmp_path / "train" / "class2" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / "class9").mkdir()
    (tmp_path / "train" / "class0" / "nested").mkdir()  # MindSpore (and MindCV) would not read images in it
    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()  # hidden: ignored
    (tmp_path / "train" / "class0" / ".DS_Store").write_bytes(b"\0\1")  # hidden: ignored
    return tmp_path


def test_check_reports_truncated_non_image_and_empty_class_with_paths(broken_dataset):
    with pytest.raises(DataError) as caught:
        data.check_image_folder(str(broken_dataset), ["train", "val"])
    message = str(caught.value)
    train = broken_dataset / "train"
    assert "\n" not in message
    assert message.startswith("data: 1 unreadable image in ")
    assert f"1 unreadable image in {train} (first: class1/cut.JPEG: truncated)" in message
    assert f"2 non-image files in {train} (first: class0/nested/, class2/notes.txt)" in message
    assert f"1 empty class folder in {train} (first: class9)" in message
    assert "DS_Store" not in message and "ipynb" not in message


def test_check_passes_a_clean_dataset_and_counts_it(broken_dataset):
    (broken_dataset / "train" / "class1" / "cut.JPEG").unlink()
    (broken_dataset / "train" / "class2" / "notes.txt").unlink()
    (broken_dataset / "train" / "class9").rmdir()
    (broken_dataset / "train" / "class0" / "nested").rmdir()
    train, val = data.check_image_folder(str(broken_dataset), ["train", "val"], deep=True)
    assert (train.images, train.classes, val.images, val.classes) == (12, 3, 6, 3)


def test_check_finds_images_that_only_look_like_images(tmp_path):
    _write_ids(tmp_path, "train", 4, classes=2, fmt="JPEG")
    (tmp_path / "train" / "class0" / "text.JPEG").write_text("<html>not found</html>")
    (tmp_path / "train" / "class1" / "zero.jpg").write_bytes(b"")
    png = tmp_path / "train" / "class1" / "cut.png"
    Image.new("RGB", (50, 50), (1, 2, 3)).save(png)
    png.write_bytes(png.read_bytes()[:-20])
    with pytest.raises(DataError, match=r"^data: 3 unreadable images in .*class0/text.JPEG: not an image, "
                                        r"class1/cut.png: truncated, class1/zero.jpg: empty file\)$"):
        data.check_image_folder(str(tmp_path), ["train"])


def test_gif_or_webp_named_jpeg_is_reported_as_unsupported(tmp_path):
    _write_ids(tmp_path, "train", 2, classes=1, fmt="JPEG")
    Image.new("RGB", (20, 20)).save(tmp_path / "train" / "class0" / "anim.JPEG", "GIF")
    with pytest.raises(DataError, match=r"class0/anim.JPEG: GIF is not supported \(use JPEG, PNG, BMP or TIFF\)"):
        data.check_image_folder(str(tmp_path), ["train"])


def test_grey_cmyk_and_rgba_images_come_out_as_three_channels(tmp_path):
    """ImageNet holds some greyscale and CMYK JPEGs (and a PNG named .JPEG); every one must batch as RGB."""
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    folder = tmp_path / "train" / "a"
    folder.mkdir(parents=True)
    rgb.convert("L").save(folder / "grey.JPEG", "JPEG")
    rgb.convert("CMYK").save(folder / "cmyk.JPEG", "JPEG")
    rgb.convert("RGBA").save(folder / "rgba.png", "PNG")
    rgb.save(folder / "png-named.JPEG", "PNG")
    data.check_image_folder(str(tmp_path), ["train"], deep=True)
    dataset, _ = data.create_train_dataset(_recipe(tmp_path, batch_size=4))
    images, _ = next(dataset.create_tuple_iterator(output_numpy=True))
    assert images.shape == (4, 3, 75, 75)


def test_jpeg_with_trailing_bytes_after_the_end_marker_is_accepted(tmp_path):
    _write_ids(tmp_path, "train", 2, classes=1, fmt="JPEG")
    path = tmp_path / "train" / "class0" / "img0000.jpeg"
    path.write_bytes(path.read_bytes() + b"\0" * 4096)
    (report,) = data.check_image_folder(str(tmp_path), ["train"])
    assert report.images == 2


def test_missing_split_and_missing_data_dir_are_one_line(tmp_path):
    _write_ids(tmp_path, "train", 4, classes=2)
    with pytest.raises(DataError, match=rf"^data: split 'val' not found: no folder {tmp_path}/val$"):
        data.check_image_folder(str(tmp_path), ["train", "val"])
    with pytest.raises(DataError, match=r"^data: directory '.*nowhere' does not exist$"):
        data.check_image_folder(str(tmp_path / "nowhere"), ["train"])
    with pytest.raises(DataError, match=r"split 'val' not found"):
        data.create_eval_dataset(_recipe(tmp_path))


def test_val_class_unknown_to_train_is_reported(tmp_path):
    _write_ids(tmp_path, "train", 4, classes=2)
    _write_ids(tmp_path, "val", 6, classes=3)
    with pytest.raises(DataError, match=r"1 class folder not in the train split in .*val \(first: class2\)"):
        data.check_image_folder(str(tmp_path), ["train", "val"])


def test_check_result_is_cached_until_the_file_list_changes(tmp_path, monkeypatch):
    _write_ids(tmp_path / "d", "train", 6, classes=2, fmt="JPEG")
    cache = tmp_path / "ckpt"
    cache.mkdir()
    (first,) = data.check_image_folder(str(tmp_path / "d"), ["train"], cache_dir=str(cache))
    assert not first.from_cache and len(os.listdir(cache)) == 1

    reads = []
    original = data._image_problem
    monkeypatch.setattr(data, "_image_problem", lambda path, deep: reads.append(path) or original(path, deep))
    (second,) = data.check_image_folder(str(tmp_path / "d"), ["train"], cache_dir=str(cache))
    assert second.from_cache and reads == []

    bad = tmp_path / "d" / "train" / "class0" / "new.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 cut short")
    with pytest.raises(DataError, match="new.JPEG: truncated"):
        data.check_image_folder(str(tmp_path / "d"), ["train"], cache_dir=str(cache))
    assert len(reads) == 7


def test_data_error_is_a_one_line_cli_error(broken_dataset):
    """The CLI prints RecipeError subclasses as one line with exit 2: DataError is one."""
    assert issubclass(DataError, RecipeError)


# ---------------------------------------------------------------------------------------------------------------
# MindCV as the oracle


def _mindcv_pipeline(root, transforms):
    import mindspore.dataset as ds

    dataset = ds.ImageFolderDataset(str(root), shuffle=False)
    return dataset.map(operations=transforms, input_columns="image").batch(4)


def test_eval_transforms_equal_mindcvs(tmp_path):
    mindcv_transforms = pytest.importorskip("mindcv.data.transforms_factory",
                                            reason="mindcv (the dev extra's oracle) is not installed")
    for c in ("a", "b"):
        (tmp_path / "val" / c).mkdir(parents=True)
        for i in range(2):
            pixels = np.random.default_rng(i + ord(c)).integers(0, 255, (180, 240, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "val" / c / f"{i}.JPEG", quality=90)
    recipe = _recipe(tmp_path, image_resize=139, crop_pct=0.875, interpolation="bicubic", batch_size=4)
    ours = next(data.create_eval_dataset(recipe, classes=["a", "b"]).create_tuple_iterator(output_numpy=True))
    theirs_list = mindcv_transforms.create_transforms("imagenet", image_resize=139, is_training=False,
                                                      crop_pct=0.875, interpolation="bicubic")
    theirs = next(_mindcv_pipeline(tmp_path / "val", theirs_list).create_tuple_iterator(output_numpy=True))
    assert ours[0].shape == theirs[0].shape == (4, 3, 139, 139)
    np.testing.assert_allclose(ours[0], theirs[0], atol=1e-5)
    np.testing.assert_array_equal(ours[1], theirs[1])


def test_train_transforms_equal_mindcvs_when_randomness_is_pinned(tmp_path):
    mindcv_transforms = pytest.importorskip("mindcv.data.transforms_factory",
                                            reason="mindcv (the dev extra's oracle) is not installed")
    (tmp_path / "train" / "a").mkdir(parents=True)
    for i in range(4):
        pixels = np.random.default_rng(i).integers(0, 255, (120, 120, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "train" / "a" / f"{i}.png")
    # scale and ratio 1 on square images: the random-resized crop is the whole image, so both sides are exact.
    keys = dict(image_resize=96, scale="[1.0,1.0]", ratio="[1.0,1.0]", shuffle=False, batch_size=4)
    recipe = _recipe(tmp_path, **keys)
    ours = next(data.create_train_dataset(recipe)[0].create_tuple_iterator(output_numpy=True))
    theirs_list = mindcv_transforms.create_transforms(
        "imagenet", image_resize=96, is_training=True, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0,
        color_jitter=None, interpolation="bilinear", mean=list(MEAN), std=list(STD))
    theirs = next(_mindcv_pipeline(tmp_path / "train", theirs_list).create_tuple_iterator(output_numpy=True))
    np.testing.assert_allclose(ours[0], theirs[0], atol=1e-5)


def test_incv4_train_stops_on_bad_data_with_one_line_and_exit_2(broken_dataset, repo_root):
    """Issue 8, acceptance 3, through the real command: the trainer checks the data before any work starts."""
    import subprocess
    import sys

    incv4 = os.path.join(os.path.dirname(sys.executable), "incv4")
    result = subprocess.run([incv4, "train", "--config", str(repo_root / "configs" / "inception_v4_cpu_demo.yaml"),
                             "--data-dir", str(broken_dataset), "--workers", "1"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("error: data: 1 unreadable image in ")
    assert "class1/cut.JPEG: truncated" in lines[0] and "class2/notes.txt" in lines[0] and "(first: class9)" in lines[0]
