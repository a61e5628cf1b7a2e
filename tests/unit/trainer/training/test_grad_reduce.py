"""The bucket plan behind the fused gradient all-reduce (the all-reduce itself runs in the launcher's probe test,
tests/test_launch.py, and in every multi-worker InceptionV4 test)."""
from __future__ import annotations

import pytest

from incv4.trainer.training.grad_reduce import plan_buckets


def test_buckets_are_consecutive_cover_every_parameter_and_respect_the_size():
    sizes = [40, 30, 20, 50, 10, 10]
    buckets = plan_buckets(sizes, ["f32"] * 6, bucket_bytes=70)
    assert buckets == ((0, 1), (2, 3), (4, 5))
    assert [i for bucket in buckets for i in bucket] == list(range(6))
    assert all(sum(sizes[i] for i in bucket) <= 70 for bucket in buckets)


def test_a_tensor_larger_than_a_bucket_travels_alone():
    assert plan_buckets([10, 500, 10], ["f32"] * 3, bucket_bytes=100) == ((0,), (1,), (2,))


def test_a_dtype_change_starts_a_new_bucket():
    assert plan_buckets([4, 4, 2, 2, 4], ["f32", "f32", "f16", "f16", "f32"], bucket_bytes=1000) == (
        (0, 1), (2, 3), (4,))


def test_inception_v4_travels_in_a_handful_of_buckets():
    ms = pytest.importorskip("mindspore")
    from incv4.trainer.training.grad_reduce import DEFAULT_BUCKET_BYTES
    from incv4.trainer.model.inception_v4 import inception_v4

    params = inception_v4(num_classes=10).trainable_params()
    buckets = plan_buckets([p.size * p.itemsize for p in params], [p.dtype for p in params])
    assert len(params) > 400 and 2 <= len(buckets) <= 4
    assert sum(p.size * p.itemsize for p in params) <= len(buckets) * DEFAULT_BUCKET_BYTES
    assert ms is not None


def test_bucket_size_must_be_positive():
    with pytest.raises(ValueError, match="bucket_bytes must be positive"):
        plan_buckets([1], ["f32"], bucket_bytes=0)
