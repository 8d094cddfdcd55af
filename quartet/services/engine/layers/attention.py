"""Attention over a paged KV cache: causal, optionally sliding-window, optionally with sinks.

The interface every model uses (the seam between the runner and the models):

* The runner owns a block pool per layer, ``k_cache``/``v_cache`` of shape
  ``[num_blocks, block_size, num_kv_heads, head_dim]`` (see ``kv_cache.py``),
  and binds them to each ``Attention`` module before the first forward
  (``KVCache.bind(model)`` sets ``module.k_cache``/``module.v_cache`` in
  module order). A model never allocates KV memory itself.
* Each step the runner builds one ``AttentionMetadata`` (``AttentionMetadata.build``)
  and passes it down ``model.forward(input_ids, positions, meta)``. Tokens are
  laid out sequence by sequence: the prefill sequences first (a whole prompt or
  a chunk of one, possibly after a cached prefix), then the decode sequences
  with one token each. Sequence ``i`` brings ``query_lens[i]`` new tokens and has
  ``seq_lens[i]`` tokens cached after the step, so its new tokens sit at
  positions ``seq_lens[i] - query_lens[i] ... seq_lens[i] - 1``.
* ``Attention.forward(q, k, v, meta, sinks=None)`` takes the projected and
  rotated ``q [T, num_heads, head_dim]``, ``k``/``v [T, num_kv_heads, head_dim]``,
  writes k/v into the pool at ``meta.slot_mapping`` (flat index
  ``block * block_size + offset``), and returns ``[T, num_heads * head_dim]``.
  Query head ``h`` reads KV head ``h // (num_heads // num_kv_heads)`` (GQA,
  as Hugging Face's ``repeat_kv``).
* ``sliding_window`` (per layer, constructor): a token at position ``p`` sees
  keys at positions ``p - sliding_window < j <= p`` (Hugging Face's rule; the
  window counts the token itself).
* ``sinks`` (per call, a ``[num_heads]`` tensor the model owns, gpt-oss):
  one extra logit per head in the softmax denominator that takes probability
  mass but has no value (OpenAI gpt-oss model card, "attention sinks").

Two implementations behind one switch (``attention_backend``: ``ENGINE_ATTENTION`` =
``auto`` (default: Triton for CUDA tensors, torch elsewhere), ``torch`` or ``triton``):

* Triton (``quartet/kernels/attention``): decode reads K/V blocks in place through the block table
  and only the step's tensors (``block_tables``, ``seq_lens_tensor``), so it is CUDA-graph
  capturable; prefill (whole prompts, chunks, prefix hits) runs FlashAttention-2 style tiles
  over the pool. Sinks and windows are handled inside both kernels.
* torch (below; the CPU path and the reference the kernels are checked against in tests).

Torch implementation:
Decode sequences are gathered into one padded batch, ``[B, kv_heads, L, D]``,
and share one ``scaled_dot_product_attention`` call; the query heads that share
a KV head become that head's query rows, so K/V are never repeated. A prefill
with no cached context attends to its own fresh keys with ``is_causal``; a
chunk after cached context gathers its sequence's blocks. Sinks go through an
explicit softmax (SDPA has no sink term).
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F
from torch import nn

from quartet.services.engine.layers.attention_metadata import AttentionMetadata

__all__ = ["BACKENDS", "Attention", "AttentionMetadata", "attention_backend", "reference_attention"]

BACKENDS = ("auto", "torch", "triton")


@functools.cache
def attention_backend() -> str:
    """``ENGINE_ATTENTION``, read once: auto (Triton on CUDA, torch elsewhere), torch, or triton.

    An environment variable rather than an ``EngineSettings`` field because layers are built deep
    inside model constructors that never see the settings; ``Attention(backend=...)`` overrides it.
    """
    value = os.environ.get("ENGINE_ATTENTION", "auto").strip().lower() or "auto"
    if value not in BACKENDS:
        raise ValueError(f"ENGINE_ATTENTION={value!r} is unknown; use one of {', '.join(BACKENDS)}")
    return value


class Attention(nn.Module):
    """Scaled dot-product attention of new tokens against everything their sequence has cached."""

    def __init__(
        self,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        scale: float,
        sliding_window: int | None = None,
        *,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})")
        self.backend = backend or attention_backend()
        if self.backend not in BACKENDS:
            raise ValueError(f"attention backend {self.backend!r} is unknown; use one of {', '.join(BACKENDS)}")
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scale = scale
        self.sliding_window = sliding_window
        self.k_cache: torch.Tensor | None = None  # [num_blocks, block_size, kv_heads, head_dim], bound by the runner
        self.v_cache: torch.Tensor | None = None

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        meta: AttentionMetadata,
        sinks: torch.Tensor | None = None,
        *,
        kv_written: bool = False,
    ) -> torch.Tensor:
        """``kv_written``: the caller already stored k/v at ``meta.slot_mapping`` (a fused RoPE kernel did)."""
        if self.k_cache is None or self.v_cache is None:
            raise RuntimeError("no KV cache bound to this attention layer; the runner binds one (KVCache.bind)")
        if not kv_written:
            self.k_cache.view(-1, self.num_kv_heads, self.head_dim).index_copy_(0, meta.slot_mapping, k)
            self.v_cache.view(-1, self.num_kv_heads, self.head_dim).index_copy_(0, meta.slot_mapping, v)
        if self._uses_triton(q):
            return self._forward_triton(q, meta, sinks).view(q.shape[0], self.num_heads * self.head_dim)
        if meta.num_prefills == 0:  # the common decode step: no scatter into an output buffer
            return self._decode(q, meta, sinks).view(q.shape[0], self.num_heads * self.head_dim)
        out = q.new_empty(q.shape)
        for i in range(meta.num_prefills):
            start, n = meta.query_starts[i], meta.query_lens[i]
            rows = slice(start, start + n)
            out[rows] = self._prefill(q[rows], k[rows], v[rows], meta, i, sinks)
        if meta.num_decodes:
            first = meta.num_prefill_tokens
            out[first:] = self._decode(q[first:], meta, sinks)
        return out.view(q.shape[0], self.num_heads * self.head_dim)

    def _uses_triton(self, q: torch.Tensor) -> bool:
        if self.backend == "torch" or (self.backend == "auto" and not q.is_cuda):
            return False
        from quartet.kernels.attention._launch import can_launch

        if not can_launch(q):
            raise RuntimeError("ENGINE_ATTENTION=triton needs a CUDA device (or TRITON_INTERPRET=1 on the CPU); "
                               "use ENGINE_ATTENTION=torch or auto")
        return True

    def _forward_triton(self, q: torch.Tensor, meta: AttentionMetadata, sinks: torch.Tensor | None) -> torch.Tensor:
        """Both kernels read every key from the pool, the step's own included (written just before)."""
        from quartet.kernels.attention.decode import paged_decode
        from quartet.kernels.attention.prefill import paged_prefill, plan_for

        sinks = None if sinks is None else sinks.float()
        common = dict(scale=self.scale, sliding_window=self.sliding_window, sinks=sinks)
        prefills = meta.num_prefills
        if prefills == 0:  # decode only: tensors alone, so a captured graph replays with new lengths
            return paged_decode(q, self.k_cache, self.v_cache, meta.block_tables, meta.seq_lens_tensor, **common)
        groups = self.num_heads // self.num_kv_heads
        key = ("triton_prefill_plan", groups)
        plan = meta._masks.get(key)
        if plan is None:  # one tile list per step, shared by every layer
            lens = (meta.query_starts[:prefills], meta.query_lens[:prefills], meta.seq_lens[:prefills])
            plan = meta._masks[key] = plan_for(*lens, groups=groups, device=q.device)
        first = meta.num_prefill_tokens
        out = paged_prefill(
            q[:first], self.k_cache, self.v_cache, meta.block_tables[:prefills],
            query_starts=meta.query_starts[:prefills], query_lens=meta.query_lens[:prefills],
            seq_lens=meta.seq_lens[:prefills], plan=plan, **common,
        )
        if not meta.num_decodes:
            return out
        tail = paged_decode(q[first:], self.k_cache, self.v_cache, meta.block_tables[prefills:],
                            meta.seq_lens_tensor[prefills:], **common)
        return torch.cat([out, tail])

    def _prefill(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        meta: AttentionMetadata,
        index: int,
        sinks: torch.Tensor | None,
    ) -> torch.Tensor:
        """One sequence's ``n`` new tokens [n, H, D] against its ``length`` cached tokens; returns [n, H, D]."""
        n, length = meta.query_lens[index], meta.seq_lens[index]
        has_window = self.sliding_window is not None and self.sliding_window < length
        if n == length and not has_window and sinks is None:  # a fresh prompt: its own keys, plain causal
            q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale, enable_gqa=True)
            return out.transpose(0, 1)
        if n < length:  # context cached earlier (prefix cache or an earlier chunk): read it from the pool
            blocks = meta.block_tables[index, : -(-length // meta.block_size)]
            k = self.k_cache.index_select(0, blocks).flatten(0, 1)[:length]
            v = self.v_cache.index_select(0, blocks).flatten(0, 1)[:length]
        groups = self.num_heads // self.num_kv_heads
        query_pos = torch.arange(length - n, length, device=q.device).view(-1, 1)
        key_pos = torch.arange(length, device=q.device).view(1, -1)
        mask = key_pos <= query_pos
        if self.sliding_window is not None:
            mask &= key_pos > query_pos - self.sliding_window
        # [kv_heads, groups * n, D]: query heads sharing a KV head stacked as that head's query rows.
        kv_heads, dim = self.num_kv_heads, self.head_dim
        qg = q.view(n, kv_heads, groups, dim).permute(1, 2, 0, 3).reshape(kv_heads, groups * n, dim)
        sink_rows = None
        if sinks is not None:
            sink_rows = sinks.view(kv_heads, groups, 1, 1).expand(-1, -1, n, 1).reshape(kv_heads, groups * n, 1)
        out = _attend(qg, k.transpose(0, 1), v.transpose(0, 1), mask.repeat(groups, 1), self.scale, sink_rows)
        return out.view(kv_heads, groups, n, dim).permute(2, 0, 1, 3).reshape(n, self.num_heads, dim)

    def _decode(self, q: torch.Tensor, meta: AttentionMetadata, sinks: torch.Tensor | None) -> torch.Tensor:
        """One new token for each decode sequence, [B, H, D]; keys gathered from the pool into [B, kv, L, D]."""
        batch = q.shape[0]
        mask = meta.decode_mask(self.sliding_window)
        width = mask.shape[-1]
        blocks = meta.decode_blocks()
        # index_select, not k_cache[tables]: advanced indexing costs ~25x more per call on CPU.
        shape = (batch, -1, self.num_kv_heads, self.head_dim)
        k = self.k_cache.index_select(0, blocks).view(shape)[:, :width].transpose(1, 2)
        v = self.v_cache.index_select(0, blocks).view(shape)[:, :width].transpose(1, 2)
        groups = self.num_heads // self.num_kv_heads
        qg = q.view(batch, self.num_kv_heads, groups, self.head_dim)
        sink_rows = None if sinks is None else sinks.view(1, self.num_kv_heads, groups, 1)
        return _attend(qg, k, v, mask, self.scale, sink_rows).reshape(batch, self.num_heads, self.head_dim)


def _attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor,
    scale: float,
    sinks: torch.Tensor | None,
) -> torch.Tensor:
    """softmax(q k^T * scale, masked) v over [..., M, D] x [..., L, D]; ``sinks`` [..., M, 1] adds denominator terms."""
    if sinks is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    scores = torch.matmul(q, k.transpose(-1, -2)).float() * scale
    scores = scores.masked_fill(~mask, float("-inf"))
    sink = sinks.float().expand(*scores.shape[:-1], 1)
    probs = torch.softmax(torch.cat([scores, sink], dim=-1), dim=-1)[..., :-1]
    return torch.matmul(probs.to(v.dtype), v)


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float,
    sliding_window: int | None = None,
    sinks: torch.Tensor | None = None,
) -> torch.Tensor:
    """The slow, obvious definition for one whole sequence: q [T, H, D], k/v [T, KV, D] -> [T, H, D].

    The oracle the paged path is tested against (expands K/V per query head, explicit mask and softmax).
    """
    length, heads = q.shape[0], q.shape[1]
    groups = heads // k.shape[1]
    k = k.repeat_interleave(groups, dim=1).transpose(0, 1).float()
    v = v.repeat_interleave(groups, dim=1).transpose(0, 1).float()
    scores = torch.matmul(q.transpose(0, 1).float(), k.transpose(-1, -2)) * scale  # [H, T, T]
    pos = torch.arange(length)
    mask = pos.view(1, -1) <= pos.view(-1, 1)
    if sliding_window is not None:
        mask &= pos.view(1, -1) > pos.view(-1, 1) - sliding_window
    scores = scores.masked_fill(~mask, float("-inf"))
    if sinks is not None:
        scores = torch.cat([scores, sinks.float().view(heads, 1, 1).expand(heads, length, 1)], dim=-1)
    probs = torch.softmax(scores, dim=-1)[..., :length]
    return torch.matmul(probs, v).transpose(0, 1).to(q.dtype)
