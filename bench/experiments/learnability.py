"""Which networks learn the demo data in a few dozen CPU steps? (issue 2's open "the loss falls")

Runs incv4's real trainer (`incv4.trainer.train`: data pipeline, train step, optimizer, eval) with the model factory
swapped for a cut-down network, so only the network differs from a normal run:

    INCV4_LEARN_NET=tiny   python bench/experiments/learnability.py -c configs/inception_v4_cpu_demo.yaml \\
        --data-dir DATA --set batch_size=16 --set epoch_size=4 --set scheduler=constant --set warmup_epochs=0 \\
        --set decay_epochs=1 --set label_smoothing=0 --set drop_rate=0 --set lr=0.002 --set ckpt_save_dir=/tmp/x
    INCV4_LEARN_NET=5 ...  (InceptionV4's first 5 feature blocks: stem + 4 Inception-A), 13, 17 (= all) ...
    INCV4_LEARN_NET=full ... --set bn_beta_init=1.0  (the whole InceptionV4, every BatchNorm beta initialised to 1;
        the recipe key now does what this script's INCV4_LEARN_BN_BETA did; the cut-down nets honour it too)

Measured 2026-11-30 on demo data (`incv4 demo-data DATA --train-per-class 16 --val-per-class 4 --image-size 80`),
batch 16, 75px, lr 0.002 constant, 10 steps/epoch: tiny 2-conv net 35/70/80/92% top-1 after epochs 1-4; first 5
blocks 12/37/80/87%; first 13 blocks 17/12/22/32%; the full network (plain `incv4 train`) 10% for 11 epochs.
The full network with BN beta initialised to 1 (ReLU starts near-linear, so the class signal survives the depth):
10/20/45/52/70% after epochs 1-5 (bn_momentum 0.9) — the lead for making short CPU runs learn.
"""
from __future__ import annotations

import os
import sys

from mindspore import nn, ops

from incv4.trainer import model, train

CHANNELS = {1: 384, 2: 384, 3: 384, 4: 384, 5: 384, 6: 1024, 7: 1024, 8: 1024, 9: 1024, 10: 1024, 11: 1024,
            12: 1024, 13: 1024, 14: 1536, 15: 1536, 16: 1536, 17: 1536}
_full_inception_v4 = model.inception_v4


class TinyNet(nn.Cell):
    def __init__(self, num_classes: int):
        super().__init__()
        self.features = nn.SequentialCell([nn.Conv2d(3, 32, 3, stride=2), nn.BatchNorm2d(32), nn.ReLU(),
                                           nn.Conv2d(32, 64, 3, stride=2), nn.BatchNorm2d(64), nn.ReLU()])
        self.classifier = nn.Dense(64, num_classes)

    def construct(self, x):
        return self.classifier(ops.mean(self.features(x), axis=(2, 3)))


class FirstBlocks(nn.Cell):
    """InceptionV4's first `blocks` feature blocks (same init), global average pool, a fresh classifier."""

    def __init__(self, blocks: int, num_classes: int, bn_momentum: float, bn_beta_init: float = 0.0):
        super().__init__()
        full = _full_inception_v4(num_classes=num_classes, drop_rate=0.0, bn_momentum=bn_momentum,
                                  bn_beta_init=bn_beta_init)
        self.features = nn.SequentialCell(list(full.features.cell_list)[:blocks])
        self.classifier = nn.Dense(CHANNELS[blocks], num_classes)

    def construct(self, x):
        return self.classifier(ops.mean(self.features(x), axis=(2, 3)))


def _factory(num_classes=1000, in_channels=3, drop_rate=0.2, bn_momentum=0.9997, bn_beta_init=0.0):
    choice = os.environ.get("INCV4_LEARN_NET", "tiny")
    if choice == "tiny":
        return TinyNet(num_classes)
    if choice == "full":
        return _full_inception_v4(num_classes=num_classes, in_channels=in_channels, drop_rate=drop_rate,
                                  bn_momentum=bn_momentum, bn_beta_init=bn_beta_init)
    return FirstBlocks(int(choice), num_classes, bn_momentum, bn_beta_init)

if __name__ == "__main__":
    model.inception_v4 = _factory
    sys.exit(train.main(sys.argv[1:]))
