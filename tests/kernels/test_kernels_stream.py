"""The tensor-core decode under programmatic dependent launch (``MmaConfig.pdl``), and the activation
rows it reads without a copy (``_launch.whole_blocks``).

PDL changes when programs start, never what they compute: every launch here must equal the plain
launch bit for bit. On the CPU the interpreter ignores it (it runs no PTX), so there these cases
check the plumbing; on CUDA the chained cases put a call that reads the previous call's output
right behind it, in a CUDA graph, so a read issued before ``griddepcontrol.wait`` would show as a
wrong result.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from quartet.kernels.mxfp4._env import is_interpreter
from quartet.kernels.mxfp4._fma import MmaConfig
from quartet.kernels.mxfp4._launch import whole_blocks
from quartet.kernels.mxfp4.format import quantize_torch
from quartet.kernels.mxfp4.gemv import mxfp4_gemv
from quartet.kernels.mxfp4.layout import to_layout
from quartet.kernels.mxfp4.moe_decode import moe_decode_fma
from quartet.kernels.mxfp4.moe_layout import MoEWeights
from quartet.kernels.mxfp4.reference import mxfp4_linear_torch, mxfp4_moe_torch, route_torch

PDL = {"pdl": True}


def test_whole_blocks_reads_aligned_rows_in_place() -> None:
    x = torch.randn(3, 64).bfloat16()
    assert whole_blocks(x, 2) is x  # bf16, whole blocks, aligned: no copy kernel


@pytest.mark.parametrize("case", ["k not whole blocks", "fp32", "misaligned", "row stride"])
def test_whole_blocks_copies_what_the_kernels_cannot_read(case: str) -> None:
    base = torch.randn(3, 72)
    if case == "row stride":  # rows 68 elements (136 bytes) apart: the second row is not 16-byte aligned
        x = torch.empty(3, 68, dtype=torch.bfloat16)[:, :64]
        x.copy_(base[:, :64])
    else:
        x = {"k not whole blocks": base[:, :40].bfloat16().contiguous(), "fp32": base[:, :64],
             "misaligned": base.bfloat16()[:, 1:65]}[case]
    out = whole_blocks(x, 2)
    assert out.dtype == torch.bfloat16 and out.shape == (3, 64) and out.is_contiguous()
    assert out.data_ptr() % 16 == 0 and out.data_ptr() != x.data_ptr()
    k = x.shape[1]
    assert torch.equal(out[:, :k], x.bfloat16()) and not out[:, k:].any()


def test_launch_options_carry_pdl_only_on_cuda() -> None:
    cfg = MmaConfig(**PDL)
    assert ("launch_pdl" in cfg.launch_options()) == (not is_interpreter())
    assert cfg.meta()["PDL"] == int(not is_interpreter())
    assert MmaConfig().meta()["PDL"] == 0 and "launch_pdl" not in MmaConfig().launch_options()


GEMV = [MmaConfig(num_warps=1, rpt=2, groups=2, prefetch=1, hint=1), MmaConfig(num_warps=2, rpt=1, groups=1),
        MmaConfig(num_warps=4, rpt=2, groups=4, prefetch=2, hint=1)]


@pytest.mark.parametrize("layout", ["fma8", "fma8t"])
@pytest.mark.parametrize("cfg", GEMV, ids=["1x2", "2x1", "4x2"])
@pytest.mark.parametrize("n,k", [(40, 200), (136, 512)])  # an odd last block and a partial tile; whole groups
def test_gemv_pdl_equals_plain(layout: str, cfg: MmaConfig, n: int, k: int, device, gen) -> None:
    w = to_layout(quantize_torch(torch.randn(n, k, device=device, generator=gen) * 0.1), layout)
    x = torch.randn(1, k, device=device, generator=gen).bfloat16()
    plain = mxfp4_gemv(x, w, variant="mma", config=cfg)
    out = mxfp4_gemv(x, w, variant="mma", config=dataclasses.replace(cfg, **PDL))
    assert torch.equal(out, plain)
    ref = mxfp4_linear_torch(x.float(), w)
    assert ((plain.double() - ref.double()).norm() / ref.double().norm()).item() < 1e-2


def test_gemv_mma_refuses_more_row_groups_than_the_grid_holds(device) -> None:
    """Row groups are the grid's second dimension (at most 65535): a clear error, not a launch failure."""
    n = 65536 * 2 * 8  # one warp of one row: 16 rows a program
    w = to_layout(quantize_torch(torch.zeros(n, 32, device=device)), "fma8")
    with pytest.raises(ValueError, match="at most 1048560 rows"):
        mxfp4_gemv(torch.zeros(1, 32, device=device, dtype=torch.bfloat16), w, variant="mma",
                   config=MmaConfig(num_warps=1, rpt=1, groups=1))


E, TOPK = 8, 4


def _experts(h: int, i: int, device, gen, std: float = 0.15) -> MoEWeights:
    gate_up = quantize_torch(torch.randn(E, 2 * i, h, device=device, generator=gen) * std)
    down = quantize_torch(torch.randn(E, h, i, device=device, generator=gen) * std)
    return MoEWeights.from_gate_up(gate_up, down, torch.randn(E, 2 * i, device=device, generator=gen) * 0.1,
                                   torch.randn(E, h, device=device, generator=gen) * 0.1)


def _routing(tokens: int, device, gen) -> tuple[torch.Tensor, torch.Tensor]:
    ids, wts = route_torch(torch.randn(tokens, E, device=device, generator=gen), TOPK)
    return ids.to(torch.int32), wts


MOE = [(MmaConfig(num_warps=1, rpt=1, groups=1, prefetch=1, hint=1), MmaConfig(num_warps=1, rpt=2, groups=2)),
       (MmaConfig(num_warps=2, rpt=2, groups=1, prefetch=2), MmaConfig(num_warps=1, rpt=1, groups=1, hint=1))]


@pytest.mark.parametrize("layout", ["fma8", "fma8t"])
@pytest.mark.parametrize("configs,tokens", [(MOE[0], 1), (MOE[1], 2)], ids=["a-1", "b-2"])
def test_moe_decode_pdl_equals_plain(layout: str, configs, tokens: int, device, gen) -> None:
    w = _experts(160, 64, device, gen).to_layout(layout)  # 5 MX blocks along H: an odd last one
    x = torch.randn(tokens, 160, device=device, generator=gen).bfloat16()
    ids, wts = _routing(tokens, device, gen)
    plain = moe_decode_fma(x, ids, wts, w, 1.702, 7.0, *configs)
    out = moe_decode_fma(x, ids, wts, w, 1.702, 7.0, *(dataclasses.replace(c, **PDL) for c in configs))
    assert torch.equal(out, plain)
    ref = mxfp4_moe_torch(x.float(), ids, wts, w).to(plain.dtype)
    assert ((plain.double() - ref.double()).norm() / ref.double().norm()).item() < 1e-2


def _replayed(run, inputs: list[torch.Tensor], fresh) -> torch.Tensor:
    """``run()`` captured in a CUDA graph, replayed after refilling ``inputs`` from ``fresh()``."""
    run()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = run()
    for dst, src in zip(inputs, fresh()):
        dst.copy_(src)
    graph.replay()
    torch.cuda.synchronize()
    return out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="programmatic dependent launch needs a GPU")
@pytest.mark.parametrize("layout", ["fma8", "fma8t"])
def test_gemv_chain_waits_for_the_previous_launch(layout: str, device, gen) -> None:
    """Eight GEMVs in a row, each reading the one before's output, launched with PDL in a graph."""
    k = 1024
    ws = [to_layout(quantize_torch(torch.randn(k, k, device=device, generator=gen) * (1.5 / k**0.5)), layout)
          for _ in range(8)]
    cfg = MmaConfig(num_warps=4, rpt=2, groups=2, prefetch=1, hint=1, **PDL)
    x = torch.randn(1, k, device=device, generator=gen).bfloat16()

    def run() -> torch.Tensor:
        y = x
        for w in ws:
            y = mxfp4_gemv(y, w, variant="mma", config=cfg)
        return y

    out = _replayed(run, [x], lambda: [torch.randn(1, k, device=device, generator=gen).bfloat16()])
    ref = x
    for w in ws:
        ref = mxfp4_linear_torch(ref.float(), w).bfloat16()
    assert ((out.double() - ref.double()).norm() / ref.double().norm()).item() < 3e-2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="programmatic dependent launch needs a GPU")
def test_moe_chain_waits_for_the_previous_launch(device, gen) -> None:
    """Four MoE layers in a row (gate_up and down each launched with PDL), each layer's input the
    previous layer's output, in a graph."""
    h, i, tokens = 2880, 2880, 1
    layers = [_experts(h, i, device, gen, 2 / h**0.5).to_layout("fma8t") for _ in range(2)] * 2
    routes = [_routing(tokens, device, gen) for _ in layers]
    gu = MmaConfig(num_warps=4, rpt=1, groups=3, prefetch=1, hint=1, **PDL)
    dn = MmaConfig(num_warps=4, rpt=2, groups=3, prefetch=1, hint=1, **PDL)
    x = torch.randn(tokens, h, device=device, generator=gen).bfloat16()

    def run() -> torch.Tensor:
        y = x
        for w, (ids, wts) in zip(layers, routes):
            y = moe_decode_fma(y, ids, wts, w, 1.702, 7.0, gu, dn)
        return y

    fresh = [torch.randn(tokens, h, device=device, generator=gen).bfloat16()]
    for _ in routes:
        fresh += list(_routing(tokens, device, gen))
    inputs = [x] + [t for r in routes for t in r]
    out = _replayed(run, inputs, lambda: fresh)
    ref = x
    for w, (ids, wts) in zip(layers, routes):
        ref = mxfp4_moe_torch(ref.float(), ids, wts, w).bfloat16()
    assert ((out.double() - ref.double()).norm() / ref.double().norm()).item() < 3e-2
