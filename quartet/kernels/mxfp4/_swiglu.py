"""gpt-oss's clamped SwiGLU on fp32 accumulators, shared by every MoE kernel.

``g`` is clamped above only, ``lin`` both ways and offset by one (gpt-oss ``MLPBlock``;
``swiglu_torch`` in ``reference.py`` is the oracle).
"""

from __future__ import annotations

import triton
import triton.language as tl

SWIGLU_ALPHA = 1.702
SWIGLU_LIMIT = 7.0


@triton.jit
def swiglu(acc_g, acc_l, alpha, limit):
    g = tl.minimum(acc_g, limit)
    lin = tl.minimum(tl.maximum(acc_l, -limit), limit)
    return g * tl.sigmoid(alpha * g) * (lin + 1.0)
