"""The fused layer kernels (``quartet/kernels/fused``) against their torch references, on fresh random inputs."""

from __future__ import annotations

import pytest
import torch

from quartet.kernels.fused import add_rmsnorm, add_rmsnorm_torch, rope_qkv, rope_qkv_torch, route, route_torch
from quartet.kernels.fused._norm_kernel import launch_add_rmsnorm
from quartet.kernels.fused._rope_kernel import launch_rope_qkv
from quartet.kernels.fused._router_kernel import launch_route_splitk, launch_topk_softmax


def _close(out: torch.Tensor, ref: torch.Tensor, tol: float) -> None:
    assert out.shape == ref.shape and out.dtype == ref.dtype
    err = (out.float() - ref.float()).abs().max().item()
    assert err <= tol * max(1.0, ref.float().abs().max().item()), f"max error {err:.3e}"


@pytest.mark.parametrize("with_residual", [False, True])
@pytest.mark.parametrize("rows,n", [(1, 64), (5, 96)])
def test_add_rmsnorm_matches_reference(device, with_residual: bool, rows: int, n: int) -> None:
    g = torch.Generator().manual_seed(rows * n + with_residual)
    x = torch.randn(rows, n, generator=g).to(device)
    residual = torch.randn(rows, n, generator=g).to(device) if with_residual else None
    weight = (torch.rand(n, generator=g) + 0.5).to(device)
    y, r = launch_add_rmsnorm(x, residual, weight, 1e-5)
    y_ref, r_ref = add_rmsnorm_torch(x, residual, weight, 1e-5)
    _close(r, r_ref, 0.0)
    _close(y, y_ref, 1e-5)


def test_add_rmsnorm_rejects_mismatched_shapes(device) -> None:
    x = torch.zeros(2, 8, device=device)
    with pytest.raises(ValueError, match="residual"):
        add_rmsnorm(x, torch.zeros(3, 8, device=device), torch.ones(8, device=device), 1e-5)
    with pytest.raises(ValueError, match=r"\[T, 4\]"):
        add_rmsnorm(x, None, torch.ones(4, device=device), 1e-5)


def _inv_freq(half: int) -> torch.Tensor:
    return 1.0 / (10000.0 ** (torch.arange(half, dtype=torch.float32) / half))


@pytest.mark.parametrize("tokens", [1, 6])
def test_rope_qkv_matches_reference_and_writes_cache(device, tokens: int) -> None:
    heads, kv_heads, dim, block = 4, 2, 16, 4
    g = torch.Generator().manual_seed(tokens)
    qkv = torch.randn(tokens, (heads + 2 * kv_heads) * dim, generator=g).to(device)
    positions = torch.randint(0, 5000, (tokens,), generator=g).to(device)
    inv = _inv_freq(dim // 2).to(device)
    k_cache = torch.zeros(8, block, kv_heads, dim, device=device)
    v_cache = torch.zeros_like(k_cache)
    slots = torch.randperm(8 * block, generator=g)[:tokens].to(device)
    q, k, v = launch_rope_qkv(qkv, positions, inv, 1.3, heads, kv_heads, k_cache, v_cache, slots)
    q_ref, k_ref, v_ref = rope_qkv_torch(qkv, positions, inv, 1.3, heads, kv_heads)
    _close(q, q_ref, 1e-5)
    _close(k, k_ref, 1e-5)
    _close(v, v_ref, 0.0)
    flat_k, flat_v = k_cache.view(-1, kv_heads, dim), v_cache.view(-1, kv_heads, dim)
    _close(flat_k[slots], k_ref, 1e-5)
    _close(flat_v[slots], v_ref, 0.0)
    untouched = torch.ones(flat_k.shape[0], dtype=torch.bool, device=device)
    untouched[slots] = False
    assert not flat_k[untouched].any() and not flat_v[untouched].any()


def test_rope_qkv_rotation_keeps_norms_and_position_zero_is_identity(device) -> None:
    heads, kv_heads, dim = 2, 1, 8
    qkv = torch.randn(2, (heads + 2 * kv_heads) * dim).to(device)
    q, k, _ = launch_rope_qkv(qkv, torch.tensor([0, 7], device=device), _inv_freq(dim // 2).to(device), 1.0, heads,
                              kv_heads, None, None, None)
    torch.testing.assert_close(q[0], qkv[0, : heads * dim].view(heads, dim))
    torch.testing.assert_close(q[1].norm(dim=-1), qkv[1, : heads * dim].view(heads, dim).norm(dim=-1))


@pytest.mark.parametrize("tokens,experts,k", [(1, 8, 2), (5, 32, 4), (3, 20, 3)])
def test_route_matches_reference(device, tokens: int, experts: int, k: int) -> None:
    g = torch.Generator().manual_seed(tokens * experts)
    hidden = 96
    x = torch.randn(tokens, hidden, generator=g).to(device)
    weight = (torch.randn(experts, hidden, generator=g) * 0.1).to(device)
    bias = torch.randn(experts, generator=g).to(device)
    ids, wts = launch_topk_softmax(torch.nn.functional.linear(x, weight, bias), k)
    ids_ref, wts_ref = route_torch(x, weight, bias, k)
    assert ids.dtype == torch.int32 and wts.dtype == torch.float32
    assert torch.equal(ids.cpu(), ids_ref.cpu())
    torch.testing.assert_close(wts, wts_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(wts.sum(-1), torch.ones(tokens, device=device))


@pytest.mark.parametrize("tokens,hidden", [(1, 300), (4, 2 * 128)])
def test_split_k_route_matches_reference(device, tokens: int, hidden: int) -> None:
    """The decode-batch router: feature slices of 128 (the last one partial at 300), summed in the top-k kernel."""
    g = torch.Generator().manual_seed(tokens + hidden)
    x = torch.randn(tokens, hidden, generator=g).to(device)
    weight = (torch.randn(32, hidden, generator=g) * 0.1).to(device)
    bias = torch.randn(32, generator=g).to(device)
    ids, wts = launch_route_splitk(x, weight, bias, 4)
    ids_ref, wts_ref = route_torch(x, weight, bias, 4)
    assert torch.equal(ids.cpu(), ids_ref.cpu())
    torch.testing.assert_close(wts, wts_ref, atol=1e-5, rtol=1e-5)
    ids_nb, _ = launch_route_splitk(x, weight, None, 4)
    assert torch.equal(ids_nb.cpu(), route_torch(x, weight, None, 4)[0].cpu())


def test_route_ties_go_to_the_lower_expert(device) -> None:
    x = torch.ones(1, 32, device=device)
    weight = torch.zeros(8, 32, device=device)
    weight[[2, 5, 6]] = 1.0  # three experts tie for the top logit
    ids, wts = launch_topk_softmax(torch.nn.functional.linear(x, weight), 2)
    assert ids.tolist() == [[2, 5]]
    torch.testing.assert_close(wts, torch.full((1, 2), 0.5, device=device))


def test_route_keeps_nan_rows_on_real_experts(device) -> None:
    logits = torch.full((2, 8), float("nan"), device=device)
    logits[1] = torch.arange(8, device=device, dtype=torch.float32)
    ids, _ = launch_topk_softmax(logits, 3)
    assert ids.min().item() >= 0 and ids.max().item() <= 7
    assert ids[1].tolist() == [7, 6, 5]


def test_route_rejects_bad_k(device) -> None:
    with pytest.raises(ValueError, match="k must be"):
        route(torch.zeros(1, 8, device=device), torch.zeros(4, 8, device=device), None, 5)


def test_public_ops_write_the_cache_on_every_device(device) -> None:
    """The dispatching ``rope_qkv`` (torch on the CPU, the kernel on CUDA) honours the cache arguments."""
    heads, kv_heads, dim = 2, 1, 8
    qkv = torch.randn(3, (heads + 2 * kv_heads) * dim).to(device)
    k_cache = torch.zeros(2, 4, kv_heads, dim, device=device)
    v_cache = torch.zeros_like(k_cache)
    slots = torch.tensor([5, 0, 2], device=device)
    _, k, v = rope_qkv(qkv, torch.arange(3, device=device), _inv_freq(dim // 2).to(device), 1.0, heads, kv_heads,
                       k_cache=k_cache, v_cache=v_cache, slots=slots)
    torch.testing.assert_close(k_cache.view(-1, kv_heads, dim)[slots], k)
    torch.testing.assert_close(v_cache.view(-1, kv_heads, dim)[slots], v)
    y, r = add_rmsnorm(qkv, qkv, torch.ones(qkv.shape[1], device=device), 1e-5)
    torch.testing.assert_close(r, 2 * qkv)
