"""The datasets (trainer/data/pipeline.py): shapes, dtypes and normalisation; disjoint covering shards;
reproducible epoch order; the fast and fallback sources; one-line errors for what the pipelines refuse."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from incv4.trainer.data import pipeline
from incv4.trainer.data.check import check_image_folder
from incv4.trainer.data.folder import DataError, list_image_folder
from incv4.trainer.recipe import RecipeError

pytest.importorskip("mindspore", reason="the data pipelines need MindSpore (pip install -e '.[train]')")

MEAN = np.array([0.485, 0.456, 0.406]) * 255
STD = np.array([0.229, 0.224, 0.225]) * 255


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


def test_train_batches_have_shape_dtype_and_labels(id_dataset, demo_recipe):
    recipe = demo_recipe(id_dataset, batch_size=4, hflip=0.5, vflip=0.5, color_jitter=0.4)
    dataset, steps = pipeline.create_train_dataset(recipe)
    assert steps == 50 // 4
    batches = list(dataset.create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert len(batches) == steps
    for images, labels in batches:
        assert images.shape == (4, 3, 75, 75) and images.dtype == np.float32
        assert labels.shape == (4,) and labels.dtype == np.int32
        assert set(labels.tolist()) <= set(range(5))


def test_normalisation_of_flat_colour_images_train_and_eval(tmp_path, demo_recipe):
    colour = np.array([200, 30, 90])
    for split in ("train", "val"):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            Image.new("RGB", (64, 48), tuple(int(v) for v in colour)).save(tmp_path / split / c / "x.png")
    recipe = demo_recipe(tmp_path, batch_size=2)
    expected = (colour - MEAN) / STD
    train, _ = pipeline.create_train_dataset(recipe)
    evaluation = pipeline.create_eval_dataset(recipe)
    for dataset in (train, evaluation):
        images, _ = next(dataset.create_tuple_iterator(num_epochs=1, output_numpy=True))
        assert images.shape == (2, 3, 75, 75) and images.dtype == np.float32
        np.testing.assert_allclose(images.mean(axis=(0, 2, 3)), expected, atol=1e-4)
        np.testing.assert_allclose(images.std(axis=(0, 2, 3)), 0.0, atol=1e-4)


def test_train_shards_are_disjoint_equal_and_cover_all_but_the_remainder(id_dataset, demo_recipe):
    recipe = demo_recipe(id_dataset, batch_size=2)
    seen = []
    for rank in range(3):
        dataset, steps = pipeline.create_train_dataset(recipe, rank_id=rank, rank_size=3)
        assert steps == (50 // 3) // 2
        ((ids, labels, _),) = _collect(dataset)
        assert len(ids) == steps * 2
        assert labels == [i % 5 for i in ids], "labels follow the class folder of each image"
        seen.append(ids)
    flat = [i for ids in seen for i in ids]
    assert len(flat) == len(set(flat)), "shards overlap"
    # Without drop_remainder each rank reads floor(50 / 3) = 16 images: 48 of 50, none twice.
    recipe = demo_recipe(id_dataset, batch_size=5, drop_remainder=False)
    everything = []
    for rank in range(3):
        dataset, steps = pipeline.create_train_dataset(recipe, rank_id=rank, rank_size=3)
        ((ids, _, shapes),) = _collect(dataset)
        assert len(ids) == 16 and steps == 4 and shapes[-1][0] == 1
        everything += ids
    assert len(set(everything)) == 48 and set(everything) <= set(range(50))


def test_epoch_order_is_shuffled_per_epoch_and_reproducible_on_resume(id_dataset, demo_recipe):
    recipe = demo_recipe(id_dataset, batch_size=2)
    dataset, _ = pipeline.create_train_dataset(recipe, rank_id=1, rank_size=2, epoch=0)
    (epoch0, _, _), (epoch1, _, _) = _collect(dataset, epochs=2)
    assert epoch0 != epoch1 and sorted(epoch0) != list(range(len(epoch0)))
    resumed, _ = pipeline.create_train_dataset(recipe, rank_id=1, rank_size=2, epoch=1)
    ((again, _, _),) = _collect(resumed)
    assert again == epoch1, "a run resumed at epoch 1 reads epoch 1 in the same order"
    folder = list_image_folder(str(id_dataset), "train")
    image_ids = [int(os.fsdecode(folder.paths[i])[-8:-4]) for i in pipeline.train_shard(50, 1, 2, recipe.seed, 1)]
    assert again == image_ids[:len(again)], "the order is train_shard(seed, epoch) of the sorted file list"
    other_seed, _ = pipeline.create_train_dataset(demo_recipe(id_dataset, batch_size=2, seed=7), rank_id=1,
                                                  rank_size=2)
    assert _collect(other_seed)[0][0] != epoch0


def test_eval_shards_are_disjoint_cover_once_and_keep_the_last_batch(id_dataset, demo_recipe):
    recipe = demo_recipe(id_dataset, batch_size=4)
    everything = []
    for rank in range(3):
        ((ids, labels, shapes),) = _collect(pipeline.create_eval_dataset(recipe, rank_id=rank, rank_size=3))
        assert labels == [i % 5 for i in ids]
        assert sum(s[0] for s in shapes) == len(range(rank, 23, 3))
        everything += ids
    assert sorted(everything) == list(range(23))


def test_val_labels_follow_the_train_classes_when_val_lacks_one(tmp_path, write_ids, demo_recipe):
    write_ids(tmp_path, "train", 10)
    (tmp_path / "val" / "class3").mkdir(parents=True)
    Image.new("RGB", (40, 40), (15, 0, 128)).save(tmp_path / "val" / "class3" / "x.png")
    ((_, labels, _),) = _collect(pipeline.create_eval_dataset(demo_recipe(tmp_path, batch_size=4)))
    assert labels == [3]


def test_fast_and_fallback_sources_read_the_same_images_in_the_same_order(tmp_path, write_ids, demo_recipe):
    """MindSpore's ImageFolderDataset is used when it sees exactly the listed files; hidden folders (which it would
    count as classes) switch to the Python source. Both must index the same images the same way."""
    import mindspore.dataset as ds

    write_ids(tmp_path, "train", 20, classes=4)
    write_ids(tmp_path, "val", 11, classes=4)
    recipe = demo_recipe(tmp_path, batch_size=3)
    folder = list_image_folder(str(tmp_path), "val")
    assert isinstance(pipeline._source(folder, None, 1), ds.ImageFolderDataset)
    ((fast_ids, fast_labels, _),) = _collect(pipeline.create_eval_dataset(recipe, rank_id=1, rank_size=2))
    (tmp_path / "val" / ".cache").mkdir()
    Image.new("RGB", (40, 40), (250, 0, 128)).save(tmp_path / "val" / ".cache" / "x.png")
    Image.new("RGB", (40, 40), (245, 0, 128)).save(tmp_path / "val" / "class0" / "._x.png")
    assert isinstance(pipeline._source(list_image_folder(str(tmp_path), "val"), None, 1), ds.GeneratorDataset)
    ((slow_ids, slow_labels, _),) = _collect(pipeline.create_eval_dataset(recipe, rank_id=1, rank_size=2))
    assert fast_ids == slow_ids and fast_labels == slow_labels
    expected = [int(os.fsdecode(folder.paths[i])[-8:-4]) for i in pipeline.eval_shard(11, 1, 2)]
    assert fast_ids == expected


def test_grey_cmyk_and_rgba_images_come_out_as_three_channels(tmp_path, demo_recipe):
    """ImageNet holds some greyscale and CMYK JPEGs (and a PNG named .JPEG); every one must batch as RGB."""
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    folder = tmp_path / "train" / "a"
    folder.mkdir(parents=True)
    rgb.convert("L").save(folder / "grey.JPEG", "JPEG")
    rgb.convert("CMYK").save(folder / "cmyk.JPEG", "JPEG")
    rgb.convert("RGBA").save(folder / "rgba.png", "PNG")
    rgb.save(folder / "png-named.JPEG", "PNG")
    check_image_folder(str(tmp_path), ["train"], deep=True)
    dataset, _ = pipeline.create_train_dataset(demo_recipe(tmp_path, batch_size=4))
    images, _ = next(dataset.create_tuple_iterator(output_numpy=True))
    assert images.shape == (4, 3, 75, 75)


def test_unsupported_augment_and_keys_are_one_line_recipe_errors(id_dataset, demo_recipe):
    with pytest.raises(RecipeError, match=r"recipe key 'auto_augment': 'augmix' is not supported"):
        pipeline.create_train_dataset(demo_recipe(id_dataset, auto_augment="augmix"))
    with pytest.raises(RecipeError, match=r"recipe key 'mixup'"):
        pipeline.create_train_dataset(demo_recipe(id_dataset, mixup=0.2))


def test_too_few_images_for_one_batch_or_for_the_ranks(id_dataset, demo_recipe):
    with pytest.raises(DataError, match=r"fewer than one batch of 32"):
        pipeline.create_train_dataset(demo_recipe(id_dataset, batch_size=32), rank_id=0, rank_size=2)
    with pytest.raises(DataError, match=r"23 images, fewer than the 24 ranks"):
        pipeline.create_eval_dataset(demo_recipe(id_dataset), rank_id=0, rank_size=24)
    with pytest.raises(DataError, match=r"rank 2 is not within rank_size 2"):
        pipeline.create_train_dataset(demo_recipe(id_dataset), rank_id=2, rank_size=2)


def test_eval_dataset_of_a_missing_split_is_a_one_line_data_error(tmp_path, write_ids, demo_recipe):
    write_ids(tmp_path, "train", 4, classes=2)
    with pytest.raises(DataError, match=r"^data: split 'val' not found: no folder .*/val$"):
        pipeline.create_eval_dataset(demo_recipe(tmp_path))
