"""Paged attention over the engine's KV pool: Triton kernels beside their torch references.

* ``paged_decode`` (``decode.py``): one query token per sequence, K/V read in place through the
  block table, GQA heads of one KV head in one program, flash-decoding split along the
  sequence when the batch is small, CUDA-graph capturable.
* ``paged_prefill`` (``prefill.py``): varlen causal attention for new tokens after cached
  context (whole prompts, chunks, prefix-cache hits), FlashAttention-2 tiles over the pool.
* ``paged_attention_torch`` (``reference.py``): the oracle both are tested against.

Both kernels take an optional sliding window (a token at ``p`` sees keys ``p - window < j <= p``)
and optional sinks (one fp32 logit per query head, in the softmax denominator only).
Importing this package does not import Triton; the kernel modules load on first use.
"""

from quartet.kernels.attention.reference import paged_attention_torch

__all__ = ["paged_attention_torch", "paged_decode", "paged_prefill"]


def __getattr__(name: str):  # the kernels import Triton: load them only when asked for
    if name == "paged_decode":
        from quartet.kernels.attention.decode import paged_decode

        return paged_decode
    if name == "paged_prefill":
        from quartet.kernels.attention.prefill import paged_prefill

        return paged_prefill
    raise AttributeError(name)
