"""gpt-oss MoE experts: the Triton paths against the reference, and the reference against gpt-oss's formulas."""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from quartet.kernels.mxfp4._bf16x2 import e8m0_bf16_pair
from quartet.kernels.mxfp4._tile import e8m0_to_f32
from quartet.kernels.mxfp4.format import quantize_torch
from quartet.kernels.mxfp4.reference import dequantize_torch
from quartet.kernels.mxfp4.moe import GroupedConfig, GroupedTiles, mxfp4_moe_triton
from quartet.kernels.mxfp4.moe_dense import DenseConfig
from quartet.kernels.mxfp4.moe_layout import MoEWeights, group_by_expert
from quartet.kernels.mxfp4.reference import mxfp4_moe_torch, route_torch

E, H, I, TOPK = 8, 96, 64, 4


def make_layer(device, gen, bias: bool, scale: float = 0.15):
    gate_up = quantize_torch(torch.randn(E, 2 * I, H, device=device, generator=gen) * scale)
    down = quantize_torch(torch.randn(E, H, I, device=device, generator=gen) * scale)
    gub = torch.randn(E, 2 * I, device=device, generator=gen).bfloat16() if bias else None
    db = torch.randn(E, H, device=device, generator=gen).bfloat16() if bias else None
    return gate_up, down, gub, db


def gpt_oss_formula(x, ids, wts, gate_up, down, gub, db) -> torch.Tensor:
    """gpt-oss's MLPBlock written out in float64 on the interleaved weights (bf16 between the matmuls)."""
    w1, w2 = dequantize_torch(gate_up).double(), dequantize_torch(down).double()
    t = torch.einsum("beck,bk->bec", w1[ids.long()], x.double())
    if gub is not None:
        t = t + gub.double()[ids.long()]
    glu, lin = t[..., ::2].clamp(max=7.0), t[..., 1::2].clamp(min=-7.0, max=7.0)
    act = (glu * torch.sigmoid(1.702 * glu) * (lin + 1)).to(torch.bfloat16).double()
    y = torch.einsum("beck,bek->bec", w2[ids.long()], act)
    if db is not None:
        y = y + db.double()[ids.long()]
    return torch.einsum("bec,be->bc", y, wts.double())


def assert_moe_close(out: torch.Tensor, ref: torch.Tensor) -> None:
    """Both sides round the activation to bf16; where their fp32 sums differ in the last bits that
    rounding can differ by one bf16 ulp, so the bound is a few bf16 ulps, norm-wise and per element."""
    out, ref = out.double(), ref.double()
    rel = ((out - ref).norm() / ref.norm()).item()
    worst = ((out - ref).abs().max() / ref.abs().max()).item()
    assert rel < 5e-3 and worst < 1e-2, f"rel L2 {rel:.2e}, max err / max |ref| {worst:.2e}"


@pytest.mark.parametrize("bias", [False, True])
def test_reference_matches_gpt_oss_formula(bias: bool, device, gen) -> None:
    gate_up, down, gub, db = make_layer(device, gen, bias)
    w = MoEWeights.from_gate_up(gate_up, down, gub, db)
    x = torch.randn(5, H, device=device, generator=gen).bfloat16()
    ids, wts = route_torch(torch.randn(5, E, device=device, generator=gen), TOPK)
    assert_moe_close(mxfp4_moe_torch(x, ids, wts, w), gpt_oss_formula(x, ids, wts, gate_up, down, gub, db))


MODES = [("ocp", "dot_scaled"), ("ocp", "dequant_dot"), ("fma8", None)]


@pytest.mark.parametrize("layout,mode", MODES)
@pytest.mark.parametrize("path,tokens", [("decode", 1), ("decode", 3), ("grouped", 1), ("grouped", 37)])
@pytest.mark.parametrize("bias", [False, True])
def test_triton_paths_match_reference(layout: str, mode: str | None, path: str, tokens: int, bias: bool, device,
                                      gen) -> None:
    gate_up, down, gub, db = make_layer(device, gen, bias)
    w = MoEWeights.from_gate_up(gate_up, down, gub, db).to_layout(layout)
    x = torch.randn(tokens, H, device=device, generator=gen).bfloat16()
    ids, wts = route_torch(torch.randn(tokens, E, device=device, generator=gen), TOPK)
    out = mxfp4_moe_triton(x, ids, wts, w, path=path, mode=mode)
    assert out.shape == (tokens, H) and out.dtype == torch.bfloat16
    assert_moe_close(out, mxfp4_moe_torch(x, ids, wts, w))


def test_swiglu_clamps_are_exercised_and_respected(device, gen) -> None:
    gate_up, down, gub, db = make_layer(device, gen, bias=True, scale=0.6)
    w = MoEWeights.from_gate_up(gate_up, down, gub, db)
    x = torch.randn(6, H, device=device, generator=gen).bfloat16()
    ids, wts = route_torch(torch.randn(6, E, device=device, generator=gen), TOPK)
    pre = x.float() @ dequantize_torch(gate_up[int(ids[0, 0])]).T
    assert (pre[:, 0::2] > 7).any() and (pre[:, 1::2].abs() > 7).any(), "the inputs must reach the clamps"
    ref = gpt_oss_formula(x, ids, wts, gate_up, down, gub, db)
    for layout in ("ocp", "fma8"):
        for path in ("decode", "grouped"):
            assert_moe_close(mxfp4_moe_triton(x, ids, wts, w.to_layout(layout), path=path), ref)
    assert_moe_close(mxfp4_moe_triton(x, ids, wts, w.to_layout("fma8"), path="dense"), ref)


def test_fma_decode_with_several_k_slices_and_chunks(device, gen) -> None:
    from quartet.kernels.mxfp4._fma import FmaConfig
    from quartet.kernels.mxfp4.moe_decode import moe_decode_fma

    gate_up, down, gub, db = make_layer(device, gen, bias=True)
    w = MoEWeights.from_gate_up(gate_up, down, gub, db).to_layout("fma8")
    x = torch.randn(2, H, device=device, generator=gen).bfloat16()
    ids, wts = route_torch(torch.randn(2, E, device=device, generator=gen), TOPK)
    ref = mxfp4_moe_torch(x, ids, wts, w)
    for cfg in (FmaConfig(bn=16, kw=4, chunks=2), FmaConfig(bn=32, kw=8, chunks=1)):
        for _ in range(2):
            assert_moe_close(moe_decode_fma(x, ids.to(torch.int32), wts, w, 1.702, 7.0, cfg), ref)


def test_group_by_expert_covers_every_pair_once(device, gen) -> None:
    ids = torch.randint(0, E, (50, TOPK), device=device, generator=gen)
    g = group_by_expert(ids, E, block=16)
    flat = ids.reshape(-1)
    assert sorted(g.order.tolist()) == list(range(flat.numel()))
    covered = []
    for e, s, t in zip(g.tile_expert.tolist(), g.tile_start.tolist(), g.tile_end.tolist()):
        assert 0 <= t - s <= 16
        rows = g.order[s:t]
        assert (flat[rows.long()] == e).all()
        covered += rows.tolist()
    assert sorted(covered) == list(range(flat.numel()))
    counts = torch.bincount(flat, minlength=E)
    assert g.expert_end.tolist() == torch.cumsum(counts, 0).tolist()


def test_input_errors_are_clear(device, gen) -> None:
    gate_up, down, _, _ = make_layer(device, gen, bias=False)
    w = MoEWeights.from_gate_up(gate_up, down)
    x = torch.randn(2, H, device=device, generator=gen).bfloat16()
    ids, wts = route_torch(torch.randn(2, E, device=device, generator=gen), TOPK)
    with pytest.raises(ValueError, match="x must be"):
        mxfp4_moe_triton(x[:, :10], ids, wts, w)
    with pytest.raises(ValueError, match="ids and weights"):
        mxfp4_moe_triton(x, ids[:, :2], wts, w)
    with pytest.raises(ValueError, match="down must be"):
        MoEWeights(w.glu, w.linear, w.glu)
    with pytest.raises(ValueError, match="fma8"):
        mxfp4_moe_triton(x, ids, wts, w, path="decode", mode="fma")
    with pytest.raises(ValueError, match="multiplies bf16"):
        mxfp4_moe_triton(x, ids, wts, w, path="dense", mode="dot_scaled")
    with pytest.raises(TypeError, match="DenseConfig"):
        mxfp4_moe_triton(x, ids, wts, w, path="dense", config=GroupedTiles(block=16))
    with pytest.raises(ValueError, match="path must be"):
        mxfp4_moe_triton(x, ids, wts, w, path="prefill")


# Grouped and dense (prefill) paths. Small tiles force several row tiles per expert, several
# weight tiles per program band and a partial band; the defaults run the production shapes.
SMALL_DENSE = DenseConfig(block=16, bn_gate_up=32, bn_down=32, bk=64, group=2, num_warps=4, num_stages=2)
WIDE_TILES = GroupedTiles(block=128, bn=64, bn_down=64, bk_h=128, bk_i=128, num_warps=8)


@pytest.mark.parametrize("layout,config", [("fma8", None), ("ocp", SMALL_DENSE), ("fma8", SMALL_DENSE)])
@pytest.mark.parametrize("bias", [False, True])
def test_dense_path_matches_reference(layout: str, config: DenseConfig | None, bias: bool, device, gen) -> None:
    gate_up, down, gub, db = make_layer(device, gen, bias)
    w = MoEWeights.from_gate_up(gate_up, down, gub, db).to_layout(layout)
    x = torch.randn(29, H, device=device, generator=gen).bfloat16()
    ids, wts = route_torch(torch.randn(29, E, device=device, generator=gen), TOPK)
    out = mxfp4_moe_triton(x, ids, wts, w, path="dense", config=config)
    assert out.shape == (29, H) and out.dtype == torch.bfloat16
    assert_moe_close(out, mxfp4_moe_torch(x, ids, wts, w))


@pytest.mark.parametrize("path", ["dense_cublas", "dense_cublas_split"])
@pytest.mark.parametrize("bias", [False, True])
def test_dense_cublas_path_matches_reference(path: str, bias: bool, device, gen) -> None:
    """The cuBLAS GEMMs return bf16: gate, up and each expert's down output are rounded
    before SwiGLU and the weighted sum, three roundings of at most 2**-9 relative each that
    the reference does not make, plus the activation's rounding landing one ulp apart where
    those differ. Hence twice ``assert_moe_close``'s bound, and not looser."""
    gate_up, down, gub, db = make_layer(device, gen, bias)
    w = MoEWeights.from_gate_up(gate_up, down, gub, db)
    x = torch.randn(11, H, device=device, generator=gen).bfloat16()  # few rows: one interpreted program each
    logits = torch.randn(11, E, device=device, generator=gen)
    logits[:, 6] -= 100.0  # an expert no token picks: an empty group in the grouped GEMMs
    ids, wts = route_torch(logits, TOPK)
    assert_cublas_close(mxfp4_moe_triton(x, ids, wts, w, path=path), mxfp4_moe_torch(x, ids, wts, w))


def assert_cublas_close(out: torch.Tensor, ref: torch.Tensor) -> None:
    out, ref = out.double(), ref.double()
    rel = ((out - ref).norm() / ref.norm()).item()
    worst = ((out - ref).abs().max() / ref.abs().max()).item()
    assert rel < 1e-2 and worst < 2e-2, f"rel L2 {rel:.2e}, max err / max |ref| {worst:.2e}"


@pytest.mark.parametrize("tiles", [WIDE_TILES, GroupedTiles(block=16, bn=32, bn_down=32)])
def test_grouped_tiles_match_reference(tiles: GroupedTiles, device, gen) -> None:
    gate_up, down, gub, db = make_layer(device, gen, bias=True)
    w = MoEWeights.from_gate_up(gate_up, down, gub, db).to_layout("fma8")
    x = torch.randn(41, H, device=device, generator=gen).bfloat16()
    ids, wts = route_torch(torch.randn(41, E, device=device, generator=gen), TOPK)
    assert_moe_close(mxfp4_moe_triton(x, ids, wts, w, path="grouped", config=tiles), mxfp4_moe_torch(x, ids, wts, w))


def test_every_path_repeats_bit_for_bit_and_sees_skewed_routing(device, gen) -> None:
    """No atomics on data: a second call gives the same bits. All tokens on two experts leaves
    the others empty and fills many tiles of one expert (empty groups and empty tiles)."""
    gate_up, down, gub, db = make_layer(device, gen, bias=True)
    w = MoEWeights.from_gate_up(gate_up, down, gub, db).to_layout("fma8")
    x = torch.randn(40, H, device=device, generator=gen).bfloat16()
    logits = torch.randn(40, E, device=device, generator=gen)
    logits[:, 3] += 100.0
    logits[:, 5] += 50.0
    ids, wts = route_torch(logits, TOPK)
    ref = mxfp4_moe_torch(x, ids, wts, w)
    bf16x2 = GroupedConfig(block=16, decode="bf16x2", prefetch_scales=True)
    for path, config in (("grouped", None), ("grouped", bf16x2), ("dense", SMALL_DENSE), ("dense_cublas", None)):
        first = mxfp4_moe_triton(x, ids, wts, w, path=path, config=config)
        assert torch.equal(first, mxfp4_moe_triton(x, ids, wts, w, path=path, config=config)), path
        if path != "dense_cublas":
            assert_moe_close(first, ref)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_grouped_and_dense_paths_replay_in_a_cuda_graph(device, gen) -> None:
    """The engine captures decode steps up to batch 256 (the grouped path): no host sync, no
    data-dependent sizes. Captured once, replayed on new tokens and new routing."""
    gate_up, down, gub, db = make_layer(device, gen, bias=True)
    w = MoEWeights.from_gate_up(gate_up, down, gub, db).to_layout("fma8")
    x = torch.randn(70, H, device=device, generator=gen).bfloat16()
    ids, wts = route_torch(torch.randn(70, E, device=device, generator=gen), TOPK)
    bf16x2 = GroupedConfig(block=32, decode="bf16x2", prefetch_scales=True)
    for path, config in (("grouped", None), ("grouped", bf16x2), ("dense", None), ("dense_cublas", None)):
        mxfp4_moe_triton(x, ids, wts, w, path=path, config=config)  # compile outside the capture
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = mxfp4_moe_triton(x, ids, wts, w, path=path, config=config)
        x.copy_(torch.randn(x.shape, device=device, generator=gen).bfloat16())
        new_ids, new_wts = route_torch(torch.randn(70, E, device=device, generator=gen), TOPK)
        ids.copy_(new_ids)
        wts.copy_(new_wts)
        graph.replay()
        torch.cuda.synchronize()
        (assert_cublas_close if path == "dense_cublas" else assert_moe_close)(out, mxfp4_moe_torch(x, ids, wts, w))


# The grouped path's register-decoded tiles (moe_grouped.py): both operand orientations, the
# unmasked K steps with and without a peeled tail (H = 96 is 64 + 32), and routings that leave
# experts empty, give one expert every token (several tiles of one expert), or spread evenly.
def _routing(kind: str, tokens: int, device, gen) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.randn(tokens, E, device=device, generator=gen)
    if kind == "one_expert_all_rows":
        logits[:, 3] += 100.0
    elif kind == "half_experts_empty":
        logits[:, E // 2:] -= 100.0
    return route_torch(logits, TOPK)


GROUPED_CONFIGS = [
    ("fma8", GroupedConfig(block=16)),
    ("ocp", GroupedConfig(block=32, bn=32, bn_down=32, w_left=True)),
    ("fma8", GroupedConfig(block=16, bk=128, num_warps=8)),
    # The bf16x2 decode (PTX on CUDA; the interpreter runs the f32 decode in its place) with
    # next-step scale prefetch, in both orientations, with and without a peeled tail.
    ("fma8", GroupedConfig(block=16, decode="bf16x2", prefetch_scales=True)),
    ("fma8", GroupedConfig(block=32, bk=128, w_left=True, decode="bf16x2", prefetch_scales=True)),
    # Gate and up rows interleaved in one tile of 2 bn rows.
    ("fma8", GroupedConfig(block=16, bn=64, decode="bf16x2", prefetch_scales=True, pair_rows=True)),
    ("ocp", GroupedConfig(block=32, bn=16, bk=128, pair_rows=True)),
]


@pytest.mark.parametrize("layout,config", GROUPED_CONFIGS)
@pytest.mark.parametrize("kind", ["spread", "one_expert_all_rows", "half_experts_empty"])
def test_grouped_config_tiles_match_reference(layout: str, config: GroupedConfig, kind: str, device, gen) -> None:
    gate_up, down, gub, db = make_layer(device, gen, bias=kind != "spread")
    w = MoEWeights.from_gate_up(gate_up, down, gub, db).to_layout(layout)
    x = torch.randn(37, H, device=device, generator=gen).bfloat16()
    ids, wts = _routing(kind, 37, device, gen)
    counts = torch.bincount(ids.reshape(-1).long(), minlength=E)
    assert (kind == "spread") or (counts == 0).any() or counts.max() == 37
    out = mxfp4_moe_triton(x, ids, wts, w, path="grouped", config=config)
    assert out.shape == (37, H) and out.dtype == torch.bfloat16
    assert_moe_close(out, mxfp4_moe_torch(x, ids, wts, w))


def test_grouped_config_gives_most_experts_one_tile(device, gen) -> None:
    """The default block covers the busiest expert of a random routing at the decode batch sizes,
    so each expert's weights are decoded once (a spill costs a second decode of that expert)."""
    from quartet.kernels.mxfp4.moe_grouped import grouped_config

    experts, k = 32, 4
    for tokens in (16, 64, 128, 256):
        block = grouped_config(tokens * k, experts).block
        ids, _ = route_torch(torch.randn(tokens, experts, device=device, generator=gen), k)
        groups = group_by_expert(ids, experts, block)
        busy = int((groups.tile_end > groups.tile_start).sum())
        used = int((torch.bincount(ids.reshape(-1).long(), minlength=experts) > 0).sum())
        assert busy <= used + 3, f"{tokens} tokens, block {block}: {busy} tiles for {used} experts"
    with pytest.raises(ValueError, match="power of two"):
        GroupedConfig(block=24)
    gate_up, down, _, _ = make_layer(device, gen, bias=False)
    x = torch.randn(2, H, device=device, generator=gen).bfloat16()
    ids, wts = route_torch(torch.randn(2, E, device=device, generator=gen), TOPK)
    with pytest.raises(ValueError, match="mode 'dequant_dot'"):
        mxfp4_moe_triton(x, ids, wts, MoEWeights.from_gate_up(gate_up, down), path="grouped", mode="dot_scaled",
                         config=GroupedConfig(block=16))


@triton.jit
def _pairs(s_ptr, pair_ptr, f32_ptr):
    s = tl.load(s_ptr + tl.arange(0, 256))
    tl.store(pair_ptr + tl.arange(0, 256), e8m0_bf16_pair(s))
    tl.store(f32_ptr + tl.arange(0, 256), e8m0_to_f32(s))


def test_bf16_scale_pairs_match_the_fp32_scales_for_every_byte(device) -> None:
    """The bf16x2 decode's E8M0 -> bf16 pair: both halves are the top half of the fp32 scale
    (2**(s-127) is exact in bf16, 0 the subnormal 2**-127, 255 NaN)."""
    scales = torch.arange(256, device=device, dtype=torch.int32).to(torch.uint8)
    pair = torch.empty(256, dtype=torch.int32, device=device)
    f32 = torch.empty(256, dtype=torch.float32, device=device)
    _pairs[(1,)](scales, pair, f32)
    top = (f32.view(torch.int32).long() >> 16) & 0xFFFF
    assert torch.equal(pair.long() & 0xFFFF, top) and torch.equal((pair.long() >> 16) & 0xFFFF, top)


def test_grouped_config_decode_is_checked(device, gen) -> None:
    with pytest.raises(ValueError, match="decode must be"):
        GroupedConfig(block=16, decode="fp4")
    gate_up, down, _, _ = make_layer(device, gen, bias=False)
    x = torch.randn(2, H, device=device, generator=gen).bfloat16()
    ids, wts = route_torch(torch.randn(2, E, device=device, generator=gen), TOPK)
    with pytest.raises(ValueError, match="reads fma8 codes"):
        mxfp4_moe_triton(x, ids, wts, MoEWeights.from_gate_up(gate_up, down), path="grouped",
                         config=GroupedConfig(block=16, decode="bf16x2"))


def test_default_grouped_tiles_switch_to_paired_bf16x2_on_fma8(device, gen) -> None:
    """From ``PAIRED_MIN_PAIRS`` the default tiles of fma8 experts are the paired bf16x2 ones
    (ocp experts keep the f32 decode, which reads either layout); the default path runs them."""
    from quartet.kernels.mxfp4.moe_grouped import PAIRED_MIN_PAIRS, grouped_config

    paired = grouped_config(PAIRED_MIN_PAIRS, E)
    assert (paired.decode, paired.prefetch_scales, paired.pair_rows) == ("bf16x2", True, True)
    assert grouped_config(PAIRED_MIN_PAIRS, E, "ocp").decode == "f32"
    assert not grouped_config(PAIRED_MIN_PAIRS - 1, E).pair_rows
    gate_up, down, gub, db = make_layer(device, gen, bias=True)
    w = MoEWeights.from_gate_up(gate_up, down, gub, db).to_layout("fma8")
    tokens = PAIRED_MIN_PAIRS // TOPK
    x = torch.randn(tokens, H, device=device, generator=gen).bfloat16()
    ids, wts = route_torch(torch.randn(tokens, E, device=device, generator=gen), TOPK)
    assert_moe_close(mxfp4_moe_triton(x, ids, wts, w, path="grouped"), mxfp4_moe_torch(x, ids, wts, w))


@pytest.mark.parametrize("tokens,k,h", [(5, 4, 2880 // 16 + 3), (1, 1, 64), (0, 4, 32)])
def test_sum_slots_adds_slots_in_order_then_casts(tokens: int, k: int, h: int, device, gen) -> None:
    from quartet.kernels.mxfp4._epilogue import sum_slots

    rows = torch.randn(tokens * k, h, device=device, generator=gen)
    want = rows.view(tokens, k, h)[:, 0].clone()
    for j in range(1, k):  # slot order, in fp32: the same rounding as the kernel's loop
        want += rows.view(tokens, k, h)[:, j]
    assert torch.equal(sum_slots(rows, k, torch.float32), want)
    got = sum_slots(rows, k, torch.bfloat16)
    assert got.dtype == torch.bfloat16 and torch.equal(got, want.to(torch.bfloat16))
