"""The tensor-core decode at one activation row (``_dec2_mma.py``): the dense GEMV ("mma" variant)
and the MoE decode launches, on fresh random inputs against the float64 oracle / ``mxfp4_moe_torch``.

On the CPU the kernels run their fp32 fallback (the interpreter has no PTX): these tests then check
the loads, the activation pairs, split-K and the epilogues; on CUDA the same tests check the PTX.
"""

from __future__ import annotations

import pytest
import torch

from quartet.kernels.mxfp4._fma import MmaConfig
from quartet.kernels.mxfp4._launch import splitk_counters
from quartet.kernels.mxfp4.format import MXFP4Tensor, quantize_torch
from quartet.kernels.mxfp4.gemv import mxfp4_gemv
from quartet.kernels.mxfp4.layout import to_layout
from quartet.kernels.mxfp4.moe_decode import moe_decode_fma
from quartet.kernels.mxfp4.moe_layout import MoEWeights
from quartet.kernels.mxfp4.reference import mxfp4_moe_torch, route_torch
from tests.kernels.kernel_checks import assert_bf16_close, oracle
from tests.kernels.test_kernels_moe import assert_moe_close


def _linear(n: int, k: int, device, gen, bias: bool):
    w = quantize_torch(torch.randn(n, k, device=device, generator=gen) * 0.05)
    x = torch.randn(1, k, device=device, generator=gen).to(torch.bfloat16)
    b = torch.randn(n, device=device, generator=gen).to(torch.bfloat16) if bias else None
    return x, w, b


@pytest.mark.parametrize("n,k,cfg", [
    (70, 448, MmaConfig(num_warps=1, rpt=1, groups=4, prefetch=2)),  # one K slice (14 blocks in 16), ragged rows
    (70, 448, MmaConfig(num_warps=1, rpt=2, groups=1, hint=1)),  # two rows a thread, four K slices (last ragged)
    (40, 75, MmaConfig(num_warps=1, rpt=1, groups=1)),  # K not a multiple of 8: x zero-padded to whole blocks
    (24, 200, MmaConfig(num_warps=2, rpt=1, groups=1)),  # K padded to 224, two slices, a tile past the last row
])
def test_gemv_mma_matches_oracle(n: int, k: int, cfg: MmaConfig, device, gen) -> None:
    x, w, b = _linear(n, k, device, gen, bias=True)
    ref, mag = oracle(x, w, b)
    first = mxfp4_gemv(x, to_layout(w, "fma8"), b, variant="mma", config=cfg)
    assert_bf16_close(first, ref, mag)
    # The counters reset themselves and the slices are summed in a fixed order: bit-identical repeats.
    assert torch.equal(first, mxfp4_gemv(x, to_layout(w, "fma8"), b, variant="mma", config=cfg))
    assert int(splitk_counters(x.device, 1).abs().sum()) == 0


def test_gemv_mma_every_code_and_wide_scales(device, gen) -> None:
    """All 16 codes in every position of a word, and rows whose every block has one of the extreme
    scale bytes 0 (the subnormal 2**-127), 1, 10, 40, 200 and 245 (2**118): the weights enter the
    tensor cores unscaled and each block's sum is scaled in fp32 (module docstring)."""
    blocks = torch.randint(0, 256, (64, 8, 16), dtype=torch.uint8, device=device, generator=gen)
    blocks[:16, 0] = (torch.arange(16, device=device)[:, None] * 17).to(torch.uint8)  # a row per code, both nibbles
    scales = torch.randint(110, 140, (64, 8), dtype=torch.uint8, device=device, generator=gen)
    scales[16:22] = torch.tensor([0, 1, 10, 40, 200, 245], dtype=torch.uint8, device=device)[:, None]
    w = MXFP4Tensor(blocks, scales, 256)
    x = torch.randn(1, 256, device=device, generator=gen).to(torch.bfloat16)
    ref, mag = oracle(x, w, None)
    assert_bf16_close(mxfp4_gemv(x, to_layout(w, "fma8"), variant="mma", config=MmaConfig(num_warps=2, groups=1)),
                      ref, mag)


def test_gemv_zero_weights_give_exactly_the_bias(device, gen) -> None:
    w = to_layout(quantize_torch(torch.zeros(48, 160, device=device)), "fma8")
    x = torch.randn(1, 160, device=device, generator=gen).to(torch.bfloat16)
    b = torch.randn(48, device=device, generator=gen).to(torch.bfloat16)
    assert torch.equal(mxfp4_gemv(x, w, b), b[None])
    assert torch.equal(mxfp4_gemv(x, w, b, variant="mma"), b[None])


def test_gemv_mma_errors_are_clear(device, gen) -> None:
    x, w, _ = _linear(16, 64, device, gen, bias=False)
    with pytest.raises(ValueError, match="one row"):
        mxfp4_gemv(torch.cat([x, x]), to_layout(w, "fma8"), variant="mma")
    with pytest.raises(ValueError, match="fma8 layout"):
        mxfp4_gemv(x, w, variant="mma")
    with pytest.raises(TypeError, match="MmaConfig"):
        from quartet.kernels.mxfp4._fma import FmaConfig
        mxfp4_gemv(x, to_layout(w, "fma8"), variant="mma", config=FmaConfig())
    with pytest.raises(ValueError, match="rpt"):
        MmaConfig(rpt=3)


# A layer whose K spans two 4-block groups in both launches (H = I = 160: 5 blocks, the second group ragged).
E2, H2, I2 = 4, 160, 160


@pytest.mark.parametrize("tokens,configs", [
    (1, (MmaConfig(num_warps=2, groups=1), MmaConfig(num_warps=2, groups=1))),  # split-K in both launches
    (2, (MmaConfig(num_warps=4, groups=2, prefetch=2), MmaConfig(num_warps=2, rpt=2, groups=2))),  # whole rows
])
def test_moe_mma_split_k_matches_reference(tokens: int, configs: tuple[MmaConfig, MmaConfig], device, gen) -> None:
    gate_up = quantize_torch(torch.randn(E2, 2 * I2, H2, device=device, generator=gen) * 0.1)
    down = quantize_torch(torch.randn(E2, H2, I2, device=device, generator=gen) * 0.1)
    gub = torch.randn(E2, 2 * I2, device=device, generator=gen).bfloat16()
    db = torch.randn(E2, H2, device=device, generator=gen).bfloat16()
    w = MoEWeights.from_gate_up(gate_up, down, gub, db).to_layout("fma8")
    x = torch.randn(tokens, H2, device=device, generator=gen).bfloat16()
    ids, wts = route_torch(torch.randn(tokens, E2, device=device, generator=gen), 4)
    ids = ids.to(torch.int32)
    first = moe_decode_fma(x, ids, wts, w, 1.702, 7.0, *configs)
    assert_moe_close(first, mxfp4_moe_torch(x, ids, wts, w))
    assert torch.equal(first, moe_decode_fma(x, ids, wts, w, 1.702, 7.0, *configs))


def test_moe_configs_of_two_kinds_are_refused(device, gen) -> None:
    from quartet.kernels.mxfp4._fma import FmaConfig
    w = MoEWeights.from_gate_up(quantize_torch(torch.zeros(2, 64, 32, device=device)),
                                quantize_torch(torch.zeros(2, 32, 32, device=device)), None, None).to_layout("fma8")
    x = torch.zeros(1, 32, device=device, dtype=torch.bfloat16)
    ids = torch.zeros(1, 2, device=device, dtype=torch.int32)
    with pytest.raises(TypeError, match="both be MmaConfig or both FmaConfig"):
        moe_decode_fma(x, ids, torch.ones(1, 2, device=device), w, 1.702, 7.0, FmaConfig(), MmaConfig())
