"""MXFP4 (OCP MX) weights: the format, its torch references, and the Triton kernels."""
