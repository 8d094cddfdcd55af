"""The CUDA-core MoE decode (``moe_decode.py``) at the engine's decode batches: 1, 2, 4 and 8 tokens
(4 to 32 (token, expert) pairs), its fixed defaults and split-K configs, bit-for-bit repeats and
CUDA-graph replay, each on fresh random inputs against ``mxfp4_moe_torch``."""

from __future__ import annotations

import pytest
import torch

from quartet.kernels.mxfp4._fma import FmaConfig
from quartet.kernels.mxfp4.moe import mxfp4_moe_triton
from quartet.kernels.mxfp4.moe_decode import moe_decode_fma
from quartet.kernels.mxfp4.moe_layout import MoEWeights
from quartet.kernels.mxfp4.reference import mxfp4_moe_torch, route_torch

from tests.kernels.test_kernels_moe import E, H, TOPK, assert_moe_close, make_layer


def _inputs(tokens: int, device, gen) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.randn(tokens, H, device=device, generator=gen).bfloat16()
    ids, wts = route_torch(torch.randn(tokens, E, device=device, generator=gen), TOPK)
    return x, ids.to(torch.int32), wts


@pytest.mark.parametrize("tokens", [1, 2, 4, 8])
def test_decode_defaults_match_reference(tokens: int, device, gen) -> None:
    w = MoEWeights.from_gate_up(*make_layer(device, gen, bias=True)).to_layout("fma8")
    x, ids, wts = _inputs(tokens, device, gen)
    out = mxfp4_moe_triton(x, ids, wts, w, path="decode")
    assert out.shape == (tokens, H) and out.dtype == torch.bfloat16
    assert_moe_close(out, mxfp4_moe_torch(x, ids, wts, w))


# Several K slices (the once-per-program fix-up, every slice's partial loaded as one tile) with
# row chunks that run past the last row (the prefetch of a chunk that does not exist is masked).
SPLIT_CONFIGS = [(FmaConfig(bn=16, kw=4, chunks=3), FmaConfig(bn=32, kw=4, chunks=2)),
                 (FmaConfig(bn=32, kw=8, chunks=1, num_warps=2), FmaConfig(bn=64, kw=4, chunks=1))]


@pytest.mark.parametrize("configs", SPLIT_CONFIGS)
def test_decode_split_k_and_chunks_match_reference(configs: tuple[FmaConfig, FmaConfig], device, gen) -> None:
    w = MoEWeights.from_gate_up(*make_layer(device, gen, bias=True)).to_layout("fma8")
    x, ids, wts = _inputs(3, device, gen)
    ref = mxfp4_moe_torch(x, ids, wts, w)
    first = moe_decode_fma(x, ids, wts, w, 1.702, 7.0, *configs)
    assert_moe_close(first, ref)
    # The arrival counters reset themselves, and the fix-up sums slices in a fixed order.
    assert torch.equal(first, moe_decode_fma(x, ids, wts, w, 1.702, 7.0, *configs))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_decode_replays_in_a_cuda_graph(device, gen) -> None:
    """The engine captures decode steps: captured once, replayed on new tokens and new routing."""
    w = MoEWeights.from_gate_up(*make_layer(device, gen, bias=True)).to_layout("fma8")
    x, ids, wts = _inputs(4, device, gen)
    mxfp4_moe_triton(x, ids, wts, w, path="decode")  # compile outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = mxfp4_moe_triton(x, ids, wts, w, path="decode")
    new_x, new_ids, new_wts = _inputs(4, device, gen)
    x.copy_(new_x)
    ids.copy_(new_ids)
    wts.copy_(new_wts)
    graph.replay()
    torch.cuda.synchronize()
    assert_moe_close(out, mxfp4_moe_torch(x, ids, wts, w))
