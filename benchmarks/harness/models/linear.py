"""A dense layer ``y = x @ W^T`` with W in MXFP4: torch bf16 baseline vs the MXFP4 kernels.

The bf16 baseline multiplies by the *dequantized* MXFP4 weight, so both compute the same
function and parity is a real check. Weights are N(0, 0.02), quantized by the OCP rule.
Bytes counted per call (for GB/s): the op's minimum, each input read once and the output
written once: packed codes + scales + x + y for MXFP4 variants, bf16 weight + x + y for
the baseline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmarks.harness.case import Forward, Inputs, Manifest, Work
from quartet.kernels.mxfp4.format import MXFP4Tensor, quantize_torch
from quartet.kernels.mxfp4.layout import to_layout
from quartet.kernels.mxfp4.ops import dequantize

WEIGHT_STD = 0.02
QUANT_ROWS = 8192  # quantize in row chunks: bounds the fp32 temporaries for 201088 x 2880


def quantize_random(shape: tuple[int, ...], gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    *lead, n, k = shape
    rows = torch.Size(lead).numel() * n
    blocks, scales = [], []
    for r0 in range(0, rows, QUANT_ROWS):
        w = torch.randn((min(QUANT_ROWS, rows - r0), k), generator=gen, device=device) * WEIGHT_STD
        q = quantize_torch(w)
        blocks.append(q.blocks)
        scales.append(q.scales)
    b = torch.cat(blocks).reshape(*lead, n, -1, 16)
    return {"blocks": b, "scales": torch.cat(scales).reshape(*lead, n, b.shape[-2])}


def clone_mx(w: MXFP4Tensor) -> MXFP4Tensor:
    return MXFP4Tensor(w.blocks.clone(), w.scales.clone(), w.k, w.layout)


class LinearModel:
    def __init__(self, manifest: Manifest) -> None:
        self.n, self.k = int(manifest.shape["n"]), int(manifest.shape["k"])

    def make_weights(self, gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
        q = quantize_random((self.n, self.k), gen, device)
        return {"w_blocks": q["blocks"], "w_scales": q["scales"]}

    def make_activations(self, m: int, gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
        return {"x": torch.randn((m, self.k), generator=gen, device=device).to(torch.bfloat16)}

    def prepare(self, tensors: dict[str, torch.Tensor]) -> Inputs:
        w = MXFP4Tensor(tensors["w_blocks"], tensors["w_scales"], self.k)
        return {"ocp": w, "fma8": to_layout(w, "fma8"), "fma8t": to_layout(w, "fma8t"),
                "w_bf16": dequantize(w, torch.bfloat16), "x": tensors["x"]}

    def rotate(self, inputs: Inputs, index: int) -> Inputs:
        return {"ocp": clone_mx(inputs["ocp"]), "fma8": clone_mx(inputs["fma8"]), "fma8t": clone_mx(inputs["fma8t"]),
                "w_bf16": inputs["w_bf16"].clone(), "x": inputs["x"].clone()}

    def baseline(self, m: int) -> tuple[str, Forward]:
        return "torch_bf16", lambda inp: F.linear(inp["x"], inp["w_bf16"])

    def variants(self, m: int) -> dict[str, Forward]:
        from quartet.kernels.mxfp4.gemm import GEMM_VARIANTS, mxfp4_gemm
        from quartet.kernels.mxfp4.gemv import GEMV_VARIANTS, ONE_ROW_VARIANTS, mxfp4_gemv

        # Each variant reads the layout it was built for: dot_scaled the checkpoint's, the rest fma8.
        if m <= 16:  # the CUDA-core fma variant pays one FMA per weight and row: not past 4 rows
            out = {f"gemv_{v}": (lambda inp, v=v: mxfp4_gemv(inp["x"], inp[_layout(v)], variant=v))
                   for v in GEMV_VARIANTS if v != "fma" or m <= 4}
            if m == 1:  # the one-row tensor-core decode, the default from K > 4096 (gemv.MMA_MIN_K_BLOCKS),
                # on row-major and on tiled codes ("fma8t", to_kernel_layout(w, "fma8t"))
                out.update({f"gemv_{v}": (lambda inp, v=v: mxfp4_gemv(inp["x"], inp["fma8"], variant=v))
                            for v in ONE_ROW_VARIANTS})
                out.update({f"gemv_{v}_fma8t": (lambda inp, v=v: mxfp4_gemv(inp["x"], inp["fma8t"], variant=v))
                            for v in ONE_ROW_VARIANTS})
            return out
        return {f"gemm_{v}": (lambda inp, v=v: mxfp4_gemm(inp["x"], inp[_layout(v)], variant=v))
                for v in GEMM_VARIANTS}

    def work(self, m: int, label: str) -> Work:
        n, k = self.n, self.k
        weight = n * k * 2 if label == "torch_bf16" else n * k // 2 + n * (-(-k // 32))
        return Work(bytes_read=weight + m * k * 2, bytes_written=m * n * 2, flops=2 * m * n * k)


def _layout(variant: str) -> str:
    return "ocp" if variant == "dot_scaled" else "fma8"


Model = LinearModel
