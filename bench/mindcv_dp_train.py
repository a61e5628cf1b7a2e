"""MindCV's train.py, reduced to what the launch case needs, for `msrun ... python bench/mindcv_dp_train.py`:
the same calls in the same order (init, data-parallel context with gradients_mean, create_dataset sharded by rank,
create_transforms, create_loader, create_model, create_loss, create_scheduler, create_optimizer, mindspore.Model
with a FixedLossScaleManager, model.train with dataset_sink_mode off), on the recipe the incv4 side uses. Instead of
MindCV's StateMonitor (checkpoints, summaries) a callback prints `@@STEP rank step unix_time` after every step."""
from __future__ import annotations

import argparse
import sys
import time

import yaml


def create_train_loader(cfg: dict, data_dir: str, device_num: int, rank_id: int):
    """As MindCV's train.py: create_dataset sharded by rank -> create_transforms -> create_loader."""
    from mindcv.data import create_dataset, create_loader, create_transforms

    workers = cfg.get("num_parallel_workers", 8)
    dataset = create_dataset(name="imagenet", root=data_dir, split="train", shuffle=cfg.get("shuffle", True),
                             num_shards=device_num, shard_id=rank_id, num_parallel_workers=workers)
    transforms = create_transforms(dataset_name="imagenet", is_training=True, image_resize=cfg["image_resize"],
                                   scale=tuple(cfg.get("scale", (0.08, 1.0))),
                                   ratio=tuple(cfg.get("ratio", (0.75, 1.333))), hflip=cfg.get("hflip", 0.5),
                                   vflip=cfg.get("vflip", 0.0), color_jitter=cfg.get("color_jitter", 0.4),
                                   interpolation=cfg.get("interpolation", "bilinear"),
                                   auto_augment=cfg.get("auto_augment"), re_prob=cfg.get("re_prob", 0.0))
    return create_loader(dataset=dataset, batch_size=cfg["batch_size"], drop_remainder=True, is_training=True,
                         num_classes=cfg["num_classes"], transform=transforms, num_parallel_workers=workers)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--set", action="append", default=[], help="k=v (YAML value), as incv4's --set")
    args = parser.parse_args(argv)
    cfg = yaml.safe_load(open(args.config))
    for item in args.set:
        key, value = item.split("=", 1)
        cfg[key] = yaml.safe_load(value)

    import mindspore as ms
    from mindspore import FixedLossScaleManager, Model
    from mindspore.communication import get_group_size, get_rank, init
    from mindspore.train import Callback

    from mindcv.loss import create_loss
    from mindcv.models import create_model
    from mindcv.optim import create_optimizer
    from mindcv.scheduler import create_scheduler
    from mindcv.utils.random import set_seed

    ms.set_context(mode=cfg.get("mode", 0), device_target="CPU")
    init()
    device_num, rank_id = get_group_size(), get_rank()
    ms.set_auto_parallel_context(device_num=device_num, parallel_mode="data_parallel", gradients_mean=True)
    set_seed(cfg.get("seed", 42), rank_id)

    loader = create_train_loader(cfg, args.data_dir, device_num, rank_id)
    steps_per_epoch = loader.get_dataset_size()
    network = create_model(model_name="inception_v4", num_classes=cfg["num_classes"],
                           drop_rate=cfg.get("drop_rate", 0.2))
    loss = create_loss(name="CE", label_smoothing=cfg.get("label_smoothing", 0.0))
    lr = create_scheduler(steps_per_epoch, scheduler=cfg["scheduler"], lr=cfg["lr"], min_lr=cfg["min_lr"],
                          warmup_epochs=cfg["warmup_epochs"], decay_epochs=cfg["decay_epochs"],
                          num_epochs=cfg["epoch_size"])
    optimizer = create_optimizer(network.trainable_params(), opt=cfg["opt"], lr=lr,
                                 weight_decay=cfg["weight_decay"], momentum=cfg["momentum"],
                                 nesterov=cfg.get("use_nesterov", False), weight_decay_filter="norm_and_bias",
                                 loss_scale=cfg.get("loss_scale", 1.0))
    model = Model(network, loss_fn=loss, optimizer=optimizer, amp_level=cfg.get("amp_level", "O0"),
                  loss_scale_manager=FixedLossScaleManager(loss_scale=cfg.get("loss_scale", 1.0),
                                                           drop_overflow_update=False))

    class StepTimes(Callback):
        def __init__(self):
            self.step = 0

        def on_train_step_end(self, run_context):
            self.step += 1
            print(f"@@STEP {rank_id} {self.step} {time.time():.3f}", flush=True)

    model.train(cfg["epoch_size"], loader, callbacks=[StepTimes()], dataset_sink_mode=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
