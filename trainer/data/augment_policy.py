"""The `auto_augment` strings incv4 runs, read part by part as MindCV 0.3.0 reads them: each part is done as
MindCV does it or refused in one line (so is a part MindCV would silently ignore).

MindCV (mindspore-lab/mindcv f9478c6, mindcv/data/transforms_factory.py and auto_augment.py): the string is split
at "-"; the first part picks the policy (`randaug...` rand_augment_transform, `autoaug`/`3a` auto_augment_transform,
`trivialaugwide` trivial_augment_wide_transform, `augmix`); each further part is a key and a number
(`re.split(r"(\\d.*)", part)`: `m9`, `mstd0.5`, `inc1`). RandAugment's parts:

- `m`: the level of every op, 0..10 (`_LEVEL_DENOM`; level 10 is each op's full range), default 10.
- `n`: how many ops per image, default 2.
- `mmax`: the level's upper bound instead of 10 (`magnitude_max or _LEVEL_DENOM`, so mmax0 is no bound).
- `inc`: the "increasing" ops (enhance 1 +- 0.9 x level/10 with a random sign, solarize threshold falling with the
  level); MindCV tests `bool(value)` on the text, so `inc0` turns them on too. They are the ops MindSpore's
  RandAugment runs, with or without `inc` (trainer/data/transforms.py lists how they differ from MindCV's).
- `mstd`: magnitude noise. MindCV sets magnitude_std to 0.5 before it reads the string (`hparams.setdefault`), so
  the part never changes it; incv4 draws no noise. Refused unless 0.5, which says what MindCV does.
- `w`: weighted op choice; MindSpore's RandAugment picks ops uniformly: refused.

Pure Python, no MindSpore: the recipe checks the string with it before any work starts, and
trainer/data/transforms.py builds MindSpore's op from the parsed policy.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, Optional

LEVEL_DENOM = 10  # MindCV's _LEVEL_DENOM: RandAugment level 10 is an op's full range
MINDCV_MAGNITUDE_STD = 0.5  # what MindCV's magnitude noise always is (see `mstd` above)
SUPPORTED = "use autoaug, randaug-mM-nN, trivialaugwide or null"


class PolicyError(ValueError):
    """An auto_augment string incv4 refuses, in one line."""


@dataclass(frozen=True)
class AugmentPolicy:
    name: str  # autoaug | randaug | trivialaugwide
    num_ops: int = 2  # randaug only
    level: int = LEVEL_DENOM  # randaug only: MindCV's level after its clipping, 0..LEVEL_DENOM


def parse(text: str) -> Optional[AugmentPolicy]:
    """The policy an auto_augment string asks for (None for null or ""), or PolicyError naming the part."""
    if not text:
        return None
    name, *parts = text.split("-")
    if name == "randaug":
        return _randaug(text, parts)
    if name == "autoaug":
        for key, value, part in _sections(text, parts):
            _only_mstd(text, key, value, part, "AutoAugment")
        return AugmentPolicy("autoaug")
    if name == "trivialaugwide" and not parts:
        return AugmentPolicy("trivialaugwide")
    if name == "trivialaugwide":
        raise PolicyError(f"'{text}': -{parts[0]} is not supported: MindSpore's TrivialAugmentWide samples "
                          f"levels over its own 31 bins ({SUPPORTED})")
    raise PolicyError(f"'{text}' is not supported ({SUPPORTED})")


def _randaug(text: str, parts: list) -> AugmentPolicy:
    num_ops, magnitude, magnitude_max = 2, LEVEL_DENOM, 0
    for key, value, part in _sections(text, parts):
        if key == "m":
            magnitude = _integer(text, part, value)
        elif key == "n":
            num_ops = _integer(text, part, value)
        elif key == "mmax":
            magnitude_max = _integer(text, part, value)
        elif key == "w":
            raise PolicyError(f"'{text}': -{part} (weighted op choice) is not supported: MindSpore's RandAugment "
                              f"picks its ops uniformly")
        elif key != "inc":  # inc: MindSpore's ops are MindCV's increasing ones (module docstring)
            _only_mstd(text, key, value, part, "RandAugment")
    level = max(0, min(magnitude, magnitude_max or LEVEL_DENOM))  # MindCV's AugmentOp clipping
    if level > LEVEL_DENOM:
        raise PolicyError(f"'{text}': level {level} (m{magnitude} under mmax{magnitude_max}) is not supported: "
                          f"MindSpore's RandAugment stops at MindCV's level {LEVEL_DENOM}, each op's full range")
    return AugmentPolicy("randaug", num_ops=num_ops, level=level)


def _sections(text: str, parts: list) -> Iterator[tuple]:
    """(key, number text, part) of each part, split as MindCV splits it. A part without a number, which MindCV
    skips, is refused: it would say something and do nothing."""
    for part in parts:
        pieces = re.split(r"(\d.*)", part)
        if len(pieces) < 2:
            raise PolicyError(f"'{text}': -{part} has no number and MindCV ignores it; leave it out")
        yield pieces[0], pieces[1], part


def _integer(text: str, part: str, value: str) -> int:
    if not value.isdigit():
        raise PolicyError(f"'{text}': -{part} needs a whole number")
    return int(value)


def _only_mstd(text: str, key: str, value: str, part: str, policy: str) -> None:
    """mstd0.5 (what MindCV's noise is anyway) is accepted; any other part is not MindCV's."""
    if key != "mstd":
        raise PolicyError(f"'{text}': -{part} is not a part of MindCV's {policy}")
    try:
        std = float(value)
    except ValueError:
        raise PolicyError(f"'{text}': -{part} needs a number") from None
    if std != MINDCV_MAGNITUDE_STD:
        raise PolicyError(f"'{text}': -{part} is not supported: MindCV 0.3.0 keeps its magnitude noise at "
                          f"{MINDCV_MAGNITUDE_STD} whatever -mstd says, and incv4 draws none; leave it out")
