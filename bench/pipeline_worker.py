"""One side of the input-pipeline case: `python -m bench.pipeline_worker --side incv4|mindcv --data-dir D
--workers W --epochs E`. Builds the training input pipeline the way that side's trainer does (decode +
random-resized-crop + flip + AutoAugment + normalize + erasing at 299, batch 32), iterates it, and prints images/s
counted after the first batch (so start-up is left out).

incv4's trainer takes uint8 batches from its pipeline and normalises them inside the compiled train step (as timm's
prefetcher does on the GPU); that normalisation is timed in the train-step case, whose incv4 side gets uint8 input.
`--side incv4-float` is the same pipeline normalising on the host (float32 batches), for comparison."""
from __future__ import annotations

import argparse
import os
import sys
import time

from bench.common import emit, peak_rss_mb, worker_main

SIZE, BATCH = 299, 32
AUG = dict(scale=(0.08, 1.0), ratio=(0.75, 1.333), hflip=0.5, interpolation="bilinear", auto_augment="autoaug",
           re_prob=0.25, color_jitter=0.4)


def incv4_pipeline(data_dir: str, workers: int, normalize: bool = False):
    from incv4.trainer import recipe as incv4_recipe
    from incv4.trainer.data import pipeline

    recipe = incv4_recipe.load(incv4_recipe.shipped_path("inception_v4_ascend.yaml"),
                               overrides=[f"data_dir={data_dir}", f"batch_size={BATCH}", f"image_resize={SIZE}",
                                          f"num_parallel_workers={workers}", "distribute=False",
                                          "device_target=CPU"])
    # normalize=False as the trainer calls it: uint8 batches, normalised in the train step (timed there)
    dataset, _ = pipeline.create_train_dataset(recipe, rank_id=0, rank_size=1, normalize=normalize)
    return dataset


def mindcv_pipeline(data_dir: str, workers: int):
    """As MindCV's train.py builds it (create_dataset -> create_transforms -> create_loader)."""
    from mindcv.data import create_dataset, create_loader, create_transforms

    dataset = create_dataset(name="imagenet", root=data_dir, split="train", shuffle=True,
                             num_parallel_workers=workers)
    transforms = create_transforms(dataset_name="imagenet", image_resize=SIZE, is_training=True,
                                   auto_augment=AUG["auto_augment"], interpolation=AUG["interpolation"],
                                   hflip=AUG["hflip"], vflip=0.0, color_jitter=AUG["color_jitter"],
                                   scale=AUG["scale"], ratio=AUG["ratio"], re_prob=AUG["re_prob"],
                                   re_scale=(0.02, 0.33), re_ratio=(0.3, 3.3), re_value=0, re_max_attempts=10)
    return create_loader(dataset=dataset, batch_size=BATCH, drop_remainder=True, is_training=True,
                         transform=transforms, num_parallel_workers=workers, num_classes=1000)


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all its threads (MindSpore's dataset workers are threads)."""
    t = os.times()
    return t.user + t.system


@worker_main
def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", required=True,
                        help="incv4 (as the trainer: uint8 out), mindcv, or incv4-float (normalised on the host)")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    import mindspore as ms

    ms.set_seed(0)
    if args.side == "incv4-float":
        dataset = incv4_pipeline(args.data_dir, args.workers, normalize=True)
    else:
        build = {"incv4": incv4_pipeline, "mindcv": mindcv_pipeline}[args.side]
        dataset = build(args.data_dir, args.workers)
    images, first, start, shape = 0, True, None, None
    iterator = dataset.create_tuple_iterator(num_epochs=args.epochs, output_numpy=True)
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        for batch in iterator:
            if first:  # pipeline start-up (threads, first decode) is not throughput
                start, first, shape = time.perf_counter(), False, list(batch[0].shape)
                cpu0 = _cpu_seconds()
                continue
            images += batch[0].shape[0]
    elapsed = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu0
    emit(images=images, seconds=elapsed, images_per_s=images / elapsed, cpu_s=cpu,
         images_per_cpu_s=images / cpu if cpu > 0 else None, first_batch_s=start - t0,
         batch_shape=shape, dtype=str(batch[0].dtype), peak_rss_mb=peak_rss_mb())


if __name__ == "__main__":
    sys.exit(main())
