"""Gradient averaging across ranks in a few large all-reduces instead of one per parameter.

MindSpore's `nn.DistributedGradReducer` issues one AllReduce per tensor (InceptionV4 has 449); on the CPU each one
is a round of messages between all ranks, so with several workers on one host those latency-bound collectives
dominate a step. Here the gradients are flattened into a few buckets (consecutive parameters of one
dtype, up to `bucket_bytes` each), each bucket is summed with one AllReduce and divided by the world size, and the
pieces are cut back to their shapes. The result is the same mean `DistributedGradReducer(mean=True)` gives.
"""
from __future__ import annotations

from typing import Sequence

DEFAULT_BUCKET_BYTES = 64 * 1024 * 1024


def plan_buckets(nbytes: Sequence[int], dtypes: Sequence[object], bucket_bytes: int = DEFAULT_BUCKET_BYTES
                 ) -> tuple:
    """Group parameter indices into buckets: consecutive, one dtype each, at most bucket_bytes (a single tensor
    larger than that gets a bucket of its own). Returns a tuple of index tuples covering 0..n-1 in order."""
    if bucket_bytes <= 0:
        raise ValueError(f"bucket_bytes must be positive, got {bucket_bytes}")
    buckets, current, current_bytes = [], [], 0
    for index, (size, dtype) in enumerate(zip(nbytes, dtypes)):
        starts_new = current and (dtype != dtypes[current[0]] or current_bytes + size > bucket_bytes)
        if starts_new:
            buckets.append(tuple(current))
            current, current_bytes = [], 0
        current.append(index)
        current_bytes += size
    if current:
        buckets.append(tuple(current))
    return tuple(buckets)


def bucketed_grad_reducer(parameters, degree: int, bucket_bytes: int = DEFAULT_BUCKET_BYTES):
    """A Cell mapping the tuple of gradients of `parameters` to their mean over `degree` ranks."""
    from mindspore import nn, ops

    sizes = [int(p.size) for p in parameters]
    buckets = plan_buckets([size * p.itemsize for size, p in zip(sizes, parameters)],
                           [p.dtype for p in parameters], bucket_bytes)
    # Graph mode unrolls Python loops recursively (449 tensors overflow its depth limit), so per-tensor work goes
    # through HyperMap; only the loop over the few buckets is unrolled. (SplitV would cut a bucket in one op, but
    # the CPU backend has no kernel for it.)
    flatten = ops.MultitypeFuncGraph("flatten")
    take_like = ops.MultitypeFuncGraph("take_like")

    @flatten.register("Tensor")
    def _flatten(grad):
        return ops.reshape(grad, (-1,))

    @take_like.register("Tensor", "Number", "Tensor")
    def _take_like(flat, offset, grad):  # grad's piece of the reduced bucket, in grad's shape
        return ops.reshape(ops.slice(flat, (offset,), (grad.size,)), ops.shape(grad))

    class Bucket(nn.Cell):
        """Gradients first..last-1: concatenated, summed across ranks, divided by degree, cut back."""

        def __init__(self, first: int, last: int):
            super().__init__()
            self.first, self.last = first, last
            self.hyper_map = ops.HyperMap()
            self.all_reduce = ops.AllReduce()
            self.offsets = tuple(sum(sizes[first:i]) for i in range(first, last))
            self.inverse_degree = 1.0 / degree

        def construct(self, grads):
            mine = grads[self.first:self.last]
            flat = ops.concat(self.hyper_map(flatten, mine))
            mean = self.all_reduce(flat) * self.inverse_degree
            return self.hyper_map(ops.partial(take_like, mean), self.offsets, mine)

    class BucketedGradReducer(nn.Cell):
        def __init__(self):
            super().__init__()
            self.buckets = nn.CellList([Bucket(bucket[0], bucket[-1] + 1) for bucket in buckets])

        def construct(self, grads):
            reduced = ()
            for bucket in self.buckets:
                reduced = reduced + bucket(grads)
            return reduced

    return BucketedGradReducer()
