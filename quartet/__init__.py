"""Quartet: the one import namespace of everything this project installs.

``quartet.services.<gateway|router|memory|engine|common>`` are the services,
``quartet.kernels`` the MXFP4 Triton kernels, and ``quartet.<service>.v1`` the
gRPC code generated from ``protos/`` by ``make`` (never committed).
"""
