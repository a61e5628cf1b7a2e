"""Mixed precision as MindCV casts the network (`amp_level`, `val_amp_level`).

MindCV's create_trainer (mindcv/utils/trainer_factory.py, 0.3.0) hands `amp_level` to mindspore.Model, whose
build_train_network casts the network (O1: float16 for the white-listed Dense/Conv cells; O2: every cell float16
except the black-listed BatchNorm cells, kept float32; O3: every cell float16) and hands the loss float32 logits.
mindspore.amp.auto_mixed_precision makes the same casts, and its result (which may be a new cell: O1 rewrites the
network, O2/O3 wrap it to return float32) is the network to use. Parameters stay float32 and keep their names, so
checkpoints are unchanged.
"""
from __future__ import annotations


def cast_network(network, amp_level: str):
    """`network` cast for `amp_level` (O0 returns it unchanged)."""
    if amp_level == "O0":
        return network
    import mindspore as ms

    return ms.amp.auto_mixed_precision(network, amp_level)
