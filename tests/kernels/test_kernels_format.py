"""The MXFP4 format in torch: the OCP quantization rule, golden edge cases, the checkpoint layout."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from quartet.kernels.mxfp4.checkpoint import load_gpt_oss_experts, load_mxfp4
from quartet.kernels.mxfp4.format import E2M1_VALUES, MXFP4Tensor, e2m1_decode, e2m1_encode, quantize_torch
from quartet.kernels.mxfp4.reference import dequantize_torch
from quartet.kernels.mxfp4.layout import FMA8_POSITIONS, to_layout

GRID = [Fraction(v).limit_denominator() for v in (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)]


def naive_code(value: float) -> int:
    """Independent E2M1 rounding: nearest grid point by exact distance, ties to the even code."""
    mag = Fraction(abs(value))
    if mag >= 6:
        code = 7
    else:
        dist = [abs(mag - g) for g in GRID]
        best = min(dist)
        code = min((i for i, d in enumerate(dist) if d == best), key=lambda i: (i % 2, i))
    return code | (8 if math.copysign(1.0, value) < 0 else 0)


def gpt_oss_dequant(blocks: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """gpt-oss's own decode (lookup table + ldexp), written independently as a cross-check."""
    lut = torch.tensor(E2M1_VALUES, dtype=torch.float32)
    exp = scales.to(torch.int32) - 127
    out = torch.empty(*blocks.shape[:-1], 32)
    out[..., 0::2] = lut[(blocks & 0x0F).long()]
    out[..., 1::2] = lut[(blocks >> 4).long()]
    return torch.ldexp(out, exp.unsqueeze(-1)).flatten(-2)


def test_e2m1_golden_table() -> None:
    codes = torch.arange(16, dtype=torch.uint8)
    assert e2m1_decode(codes).tolist() == list(E2M1_VALUES)
    assert torch.equal(e2m1_encode(e2m1_decode(codes)), codes)  # every value, -0.0 included, round-trips


@pytest.mark.parametrize("tie,code", [(0.25, 0), (0.75, 2), (1.25, 2), (1.75, 4), (2.5, 4), (3.5, 6), (5.0, 6)])
def test_rounding_ties_go_to_even_code(tie: float, code: int) -> None:
    got = e2m1_encode(torch.tensor([tie, -tie]))
    assert got.tolist() == [code, code | 8]


def test_encode_matches_naive_rounding_on_random_and_boundary_values() -> None:
    near = [t + d for t in (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0) for d in (-1e-6, 0.0, 1e-6)]
    values = torch.cat([torch.tensor(near), -torch.tensor(near), torch.rand(2000) * 9 - 4.5, torch.tensor([7.99, 1e9])])
    got = e2m1_encode(values).tolist()
    assert got == [naive_code(v) for v in values.tolist()]


def test_scale_rule_is_floor_log2_of_amax_minus_two() -> None:
    w = torch.zeros(6, 32)
    amaxes = [1.0, 6.0, 7.9, 8.0, 0.3, 2.0**-100]
    for row, a in enumerate(amaxes):
        w[row, 5] = -a
        w[row, 9] = a / 3
    q = quantize_torch(w)
    expected = [math.floor(math.log2(a)) - 2 + 127 for a in amaxes]
    assert q.scales[:, 0].tolist() == expected
    # 7.9 / 2**0 saturates to 6; the spec clamps rather than bumping the scale.
    assert dequantize_torch(q)[2, 5].item() == -6.0


def test_all_zero_block_and_negative_zero() -> None:
    w = torch.zeros(2, 64)
    w[1, 32:] = -0.0
    w[1, 40] = -1e-30  # rounds to zero in its block, keeps its sign
    w[1, 41] = 1.0
    q = quantize_torch(w)
    assert q.scales[0].tolist() == [0, 0]
    assert torch.equal(q.blocks[0], torch.zeros_like(q.blocks[0]))
    deq = dequantize_torch(q)
    assert torch.equal(deq[0], torch.zeros(64)) and not torch.signbit(deq[0]).any()
    assert torch.signbit(deq[1, 40]) and deq[1, 40].item() == 0.0
    assert torch.signbit(deq[1, 32]) and deq[1, 41].item() == 1.0


def test_largest_and_smallest_scales_and_nan_decode_exactly() -> None:
    blocks = torch.tensor([[[0x21] + [0] * 15], [[0x71] + [0] * 15], [[0x21] + [0] * 15]], dtype=torch.uint8)
    scales = torch.tensor([[254], [0], [255]], dtype=torch.uint8)
    deq = dequantize_torch(MXFP4Tensor(blocks, scales, 32))
    assert deq[0, 0].item() == 0.5 * 2.0**127 and deq[0, 1].item() == 2.0**127
    assert deq[1, 0].item() == 0.5 * 2.0**-127 and deq[1, 1].item() == 6 * 2.0**-127
    assert torch.isnan(deq[2, :2]).all()


def test_extreme_inputs_quantize_to_extreme_scales() -> None:
    fmax = torch.finfo(torch.float32).max
    w = torch.tensor([[fmax] + [1.0] * 31, [1e-44] + [0.0] * 31, [float("inf")] + [0.0] * 31])
    q = quantize_torch(w)
    assert q.scales.flatten().tolist() == [127 + 127 - 2, 0, 255]
    assert dequantize_torch(q)[0, 0].item() == 6 * 2.0**125  # saturated, not inf
    assert torch.isnan(dequantize_torch(q)[2]).all()


def test_requantizing_a_dequantized_tensor_is_exact() -> None:
    blocks = torch.randint(0, 256, (8, 4, 16), dtype=torch.uint8)
    q = MXFP4Tensor(blocks, torch.randint(100, 150, (8, 4), dtype=torch.uint8), 128)
    once = dequantize_torch(q)
    assert torch.equal(dequantize_torch(quantize_torch(once)), once)


def test_k_not_a_multiple_of_32_is_zero_padded() -> None:
    w = torch.randn(3, 5, 70)
    q = quantize_torch(w)
    assert q.shape == (3, 5, 70) and q.blocks.shape == (3, 5, 3, 16) and q.k_padded == 96
    padded = quantize_torch(torch.nn.functional.pad(w, (0, 26)))
    assert torch.equal(q.blocks, padded.blocks) and torch.equal(q.scales, padded.scales)
    assert dequantize_torch(q).shape == (3, 5, 70)


def test_quantization_error_is_within_half_a_step() -> None:
    w = torch.randn(64, 256)
    q = quantize_torch(w)
    err = (dequantize_torch(q) - w).abs().reshape(64, 8, 32)
    step = torch.ldexp(torch.ones(64, 8), q.scales.to(torch.int32) - 127).unsqueeze(-1)  # value of E2M1 "1.0"
    # Worst case is the gap between 4 and 6 (2 units): half is 1 unit; plus clamping of [6, 8) costs < 2 units.
    assert (err <= 2 * step).all()


def test_dequantize_matches_the_gpt_oss_decoder_bit_for_bit() -> None:
    blocks = torch.randint(0, 256, (2, 6, 5, 16), dtype=torch.uint8)
    scales = torch.randint(90, 160, (2, 6, 5), dtype=torch.uint8)
    ours = dequantize_torch(MXFP4Tensor(blocks, scales, 160))
    assert torch.equal(ours.view(torch.int32), gpt_oss_dequant(blocks, scales).view(torch.int32))


def test_invalid_tensors_are_rejected_with_clear_errors() -> None:
    with pytest.raises(ValueError, match="scales"):
        MXFP4Tensor(torch.zeros(4, 2, 16, dtype=torch.uint8), torch.zeros(4, 3, dtype=torch.uint8), 64)
    with pytest.raises(TypeError, match="uint8"):
        MXFP4Tensor(torch.zeros(4, 2, 16), torch.zeros(4, 2, dtype=torch.uint8), 64)
    with pytest.raises(ValueError, match="k=10"):
        MXFP4Tensor(torch.zeros(4, 2, 16, dtype=torch.uint8), torch.zeros(4, 2, dtype=torch.uint8), 10)


@pytest.mark.parametrize("naming", ["hf", "original"])
def test_gpt_oss_checkpoint_loading_and_gate_up_split(naming: str) -> None:
    e, i, h = 3, 32, 64
    gate_up = quantize_torch(torch.randn(e, 2 * i, h))
    down = quantize_torch(torch.randn(e, h, i))
    if naming == "hf":
        p = "model.layers.2.mlp.experts."
        names = {p + "gate_up_proj_blocks": gate_up.blocks, p + "gate_up_proj_scales": gate_up.scales,
                 p + "down_proj_blocks": down.blocks, p + "down_proj_scales": down.scales,
                 p + "gate_up_proj_bias": torch.randn(e, 2 * i), p + "down_proj_bias": torch.randn(e, h)}
        bias = names[p + "gate_up_proj_bias"]
    else:
        p = "block.2.mlp."
        names = {p + "mlp1_weight.blocks": gate_up.blocks, p + "mlp1_weight.scales": gate_up.scales,
                 p + "mlp2_weight.blocks": down.blocks, p + "mlp2_weight.scales": down.scales,
                 p + "mlp1_bias": torch.randn(e, 2 * i), p + "mlp2_bias": torch.randn(e, h)}
        bias = names[p + "mlp1_bias"]
    w = load_gpt_oss_experts(names if naming == "hf" else names.__getitem__, 2)  # a mapping or a getter
    full = dequantize_torch(gate_up)
    assert torch.equal(dequantize_torch(w.glu), full[:, 0::2]) and torch.equal(dequantize_torch(w.linear), full[:, 1::2])
    assert torch.equal(w.glu_bias, bias[:, 0::2].float()) and torch.equal(w.linear_bias, bias[:, 1::2].float())
    with pytest.raises(KeyError, match="no MXFP4 tensor"):
        load_mxfp4(names.__getitem__, "missing")


def test_fma8_layout_is_a_bit_permutation_that_round_trips() -> None:
    assert sorted(b for bits in FMA8_POSITIONS for b in bits) == list(range(32))
    w = quantize_torch(torch.randn(2, 9, 100))
    s = to_layout(w, "fma8")
    assert s.layout == "fma8" and s.blocks.shape == w.blocks.shape and torch.equal(s.scales, w.scales)
    assert not torch.equal(s.blocks, w.blocks)
    assert torch.equal(to_layout(s, "ocp").blocks, w.blocks)
    assert torch.equal(dequantize_torch(s), dequantize_torch(w))
    with pytest.raises(ValueError, match="layout"):
        to_layout(w, "nope")


@pytest.mark.parametrize("shape", [(16, 352), (2, 8, 4096), (24, 2880), (8, 96)])
def test_fma8t_tiles_blocks_of_8_rows_by_2_and_round_trips(shape: tuple[int, ...]) -> None:
    w = quantize_torch(torch.randn(shape))
    row_major = to_layout(w, "fma8")
    t = to_layout(w, "fma8t")
    assert t.layout == "fma8t" and t.blocks.shape == w.blocks.shape and t.scales.shape == w.scales.shape
    assert torch.equal(dequantize_torch(t), dequantize_torch(w))
    assert torch.equal(to_layout(t, "ocp").blocks, w.blocks) and torch.equal(to_layout(t, "fma8").blocks,
                                                                              row_major.blocks)
    # Golden placement, written out independently of tile_slot: rows in tiles of 8, each tile's
    # blocks in groups of 2 (an odd last block alone).
    n, kb = shape[-2], shape[-1] // 32 + (shape[-1] % 32 > 0)
    src = row_major.blocks.reshape(-1, n, kb, 16)
    dst = t.blocks.reshape(-1, n * kb, 16)
    src_s, dst_s = w.scales.reshape(-1, n, kb), t.scales.reshape(-1, n * kb)
    slot = 0
    for tile in range(0, n, 8):
        for g in range(0, kb, 2):
            width = min(2, kb - g)
            for r in range(8):
                for b in range(width):
                    assert torch.equal(dst[:, slot], src[:, tile + r, g + b])
                    assert torch.equal(dst_s[:, slot], src_s[:, tile + r, g + b])
                    slot += 1
    assert slot == n * kb


def test_fma8t_needs_whole_row_tiles_and_is_not_split_by_row() -> None:
    from quartet.kernels.mxfp4.moe_layout import MoEWeights

    with pytest.raises(ValueError, match="multiple of 8"):
        to_layout(quantize_torch(torch.randn(12, 64)), "fma8t")
    gate_up = to_layout(quantize_torch(torch.randn(2, 16, 64)), "fma8t")
    with pytest.raises(ValueError, match="fma8t"):
        MoEWeights.from_gate_up(gate_up, to_layout(quantize_torch(torch.randn(2, 64, 8)), "fma8t"))


def test_loading_from_a_safetensors_file(tmp_path) -> None:
    safetensors = pytest.importorskip("safetensors")
    from safetensors.torch import save_file

    e, i, h = 2, 32, 64
    gate_up, down = quantize_torch(torch.randn(e, 2 * i, h)), quantize_torch(torch.randn(e, h, i))
    p = "block.0.mlp."
    save_file({p + "mlp1_weight.blocks": gate_up.blocks, p + "mlp1_weight.scales": gate_up.scales,
               p + "mlp2_weight.blocks": down.blocks, p + "mlp2_weight.scales": down.scales,
               p + "mlp1_bias": torch.randn(e, 2 * i), p + "mlp2_bias": torch.randn(e, h)}, tmp_path / "m.safetensors")
    with safetensors.safe_open(tmp_path / "m.safetensors", "pt") as f:
        w = load_gpt_oss_experts(f, 0)
        single = load_mxfp4(f, p + "mlp2_weight")
    assert torch.equal(dequantize_torch(w.down), dequantize_torch(down)) and single.shape == (e, h, i)
