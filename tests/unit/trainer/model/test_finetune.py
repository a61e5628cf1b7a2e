"""Fine-tuning (MindCV's ckpt_path): weights load by name; parameters of another shape keep their fresh values and
are named in the log line; a missing checkpoint is a one-line recipe error."""
from __future__ import annotations

import numpy as np
import pytest

ms = pytest.importorskip("mindspore")
from mindspore import nn  # noqa: E402

from tiny_nets import TinyConvNet as Tiny  # noqa: E402

from incv4.trainer.model.finetune import load_finetune_weights  # noqa: E402
from incv4.trainer.recipe import RecipeError  # noqa: E402


def test_finetuning_loads_matching_weights_and_reinitialises_a_different_classifier(tmp_path):
    source = Tiny(classes=7)  # another num_classes
    source.conv.weight.set_data(ms.Tensor(np.full(source.conv.weight.shape, 0.25, np.float32)))
    ms.save_checkpoint(source, str(tmp_path / "pretrained.ckpt"))
    target = Tiny()
    fresh_fc = target.fc.weight.asnumpy().copy()
    lines = []
    load_finetune_weights(target, str(tmp_path / "pretrained.ckpt"), lines.append)
    assert np.allclose(target.conv.weight.asnumpy(), 0.25)
    assert np.array_equal(target.fc.weight.asnumpy(), fresh_fc)
    assert len(lines) == 1 and lines[0].startswith(f"fine-tuning from {tmp_path / 'pretrained.ckpt'}: loaded ")
    assert "re-initialised 2: fc.weight (checkpoint (7, 4), network (5, 4))" in lines[0] and "fc.bias" in lines[0]
    with pytest.raises(RecipeError, match="ckpt_path.*does not exist"):
        load_finetune_weights(target, str(tmp_path / "absent.ckpt"), lines.append)


def test_a_checkpoint_of_another_network_is_a_recipe_error(tmp_path):
    other = nn.Dense(3, 2)
    ms.save_checkpoint(other, str(tmp_path / "other.ckpt"))
    with pytest.raises(RecipeError, match="ckpt_path.*has no parameter of this network"):
        load_finetune_weights(Tiny(), str(tmp_path / "other.ckpt"), lambda _line: None)


def test_with_ema_the_checkpoints_ema_weights_are_loaded_as_mindcv_does(tmp_path):
    """MindCV's create_model(checkpoint_path, ema=True) takes the `ema.<name>` weights; without them: one line."""
    source = Tiny()
    ema_values = {p.name: np.full(p.shape, 0.5, np.float32) for p in source.get_parameters()}
    params = [{"name": p.name, "data": p.data} for p in source.get_parameters()]
    params += [{"name": f"ema.{name}", "data": ms.Tensor(value)} for name, value in ema_values.items()]
    path = str(tmp_path / "with_ema.ckpt")
    ms.save_checkpoint(params, path)
    target = Tiny()
    load_finetune_weights(target, path, lambda _line: None, ema=True)
    for param in target.get_parameters():
        np.testing.assert_array_equal(param.asnumpy(), ema_values[param.name])
    plain = str(tmp_path / "plain.ckpt")
    ms.save_checkpoint(source, plain)
    with pytest.raises(RecipeError) as info:
        load_finetune_weights(Tiny(), plain, lambda _line: None, ema=True)
    assert str(info.value) == (f"recipe key 'ema': checkpoint '{plain}' holds no EMA weights (ema.*); set ema: false "
                               "to use its weights")
