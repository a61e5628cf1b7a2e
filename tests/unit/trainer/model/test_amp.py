"""Mixed precision: incv4 casts InceptionV4 as MindCV's trainer has mindspore.Model cast it (build_train_network
with MindCV's amp_level and its fixed loss scale). The CPU has no float16 kernels for this network, so the casts
are compared cell by cell (class and compute type), not by running them."""
from __future__ import annotations

import pytest

ms = pytest.importorskip("mindspore", reason="the AMP tests need MindSpore")
from mindspore import nn  # noqa: E402

from incv4.trainer.model.amp import cast_network  # noqa: E402
from incv4.trainer.model.inception_v4 import inception_v4  # noqa: E402


def _compute_types(cell, below: str) -> list:
    """(name below `below`, class, compute type set by to_float) of every cell under the backbone `below`."""
    rows = []
    for name, sub in cell.cells_and_names():
        if not name.startswith(below):
            continue
        flags = sub.get_flags()
        kind = next((k for k in ("fp16", "bf16", "fp32") if flags.get(k)), "-")
        rows.append((name[len(below):], type(sub).__name__, kind))
    return rows


def _mindcv_model_cast(level: str):
    """What MindCV's create_trainer gets from mindspore.Model for the published recipe (no customised step, fixed
    loss scale 1024 without overflow dropping): build_train_network's cast of MindCV's own InceptionV4."""
    models = pytest.importorskip("mindcv.models", reason="mindcv==0.3.0 (the dev extra) is the oracle")
    from mindspore.train import FixedLossScaleManager

    theirs = models.inception_v4(num_classes=10)
    optimizer = nn.Momentum(theirs.trainable_params(), 0.1, 0.9)
    return ms.amp.build_train_network(theirs, optimizer, nn.CrossEntropyLoss(), level=level,
                                      loss_scale_manager=FixedLossScaleManager(1024, drop_overflow_update=False))


@pytest.mark.parametrize("level, cells", [("O2", 149 * 3 + 1), ("O3", 149 * 2 + 1)])  # O2 wraps each BatchNorm
def test_cast_equals_mindcvs_model_cell_by_cell(level, cells):
    ours = cast_network(inception_v4(num_classes=10), level)
    theirs = _mindcv_model_cast(level)
    assert type(ours).__name__ == "_OutputTo32"  # float32 logits for the loss, as Model's loss wrapper casts them
    # the cells that compute (the pooling is an op in ours, a cell in MindCV's): same names, classes and types
    computing = ("Conv2d", "BatchNorm2d", "Dense", "_OutputTo16")
    ours_rows = [r for r in _compute_types(ours, "_backbone.") if r[1] in computing]
    assert len(ours_rows) == cells
    assert ours_rows == [r for r in _compute_types(theirs, "network._backbone.") if r[1] in computing]


def test_o2_keeps_batchnorm_in_float32_and_the_rest_in_float16():
    plain = inception_v4(num_classes=10)
    names = [(p.name, p.dtype) for p in plain.get_parameters()]
    rows = _compute_types(cast_network(plain, "O2"), "_backbone.")
    batchnorms = [r for r in rows if r[1] == "BatchNorm2d"]
    assert len(batchnorms) == 149 and all(kind == "fp32" for _, _, kind in batchnorms)
    assert all(name.endswith("._backbone") for name, _, _ in batchnorms)  # inside the cast back to float16
    assert {kind for _, cls, kind in rows if cls in ("Conv2d", "Dense")} == {"fp16"}
    # parameters stay float32 under their own names: checkpoints load either way
    assert [(p.name, p.dtype) for p in plain.get_parameters()] == names


def test_o0_is_the_network_itself():
    net = inception_v4(num_classes=10)
    assert cast_network(net, "O0") is net
