"""The fused linear + sigmoid of models/kernels.py against the plain torch expression."""
from __future__ import annotations

import pytest
import torch

from models import calibrate, kernels
from models.kernels import onednn_available, sigmoid_linear


def crossover_at(macs: float) -> calibrate.Calibration:
    """A calibration in which addmm wins below `macs` multiply-adds and oneDNN from there on."""
    sizes = tuple(float(r * i * o) for r, i, o in calibrate.LADDER)
    fused = tuple(1e-6 * m / sizes[0] + 1e-5 for m in sizes)
    addmm = tuple(f * (0.5 if m < macs else 1.5) for f, m in zip(fused, sizes))
    return calibrate.Calibration(sizes, {"addmm": addmm, "fused": fused}, 1.0, 1e-9, 1)


@pytest.mark.parametrize("rows,n_in,n_out", [(8, 16, 4), (64, 784, 500)])
def test_sigmoid_linear_matches_torch_for_small_and_large_products(rows, n_in, n_out, monkeypatch):
    g = torch.Generator().manual_seed(rows)
    W = torch.randn(n_in, n_out, generator=g) * 0.1  # an RBM's [V, H]
    b = torch.randn(n_out, generator=g)
    x = (torch.rand(rows, n_in, generator=g) < 0.3).float()
    calls = []
    real = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(kernels.torch.ops.mkldnn, "_linear_pointwise", lambda *a: calls.append(1) or real(*a), raising=False)
    with torch.no_grad(), calibrate.use(crossover_at(8e6)):
        got = sigmoid_linear(x, W.t(), b)  # W.t(): the linear weight, a transposed view
    want = torch.sigmoid(torch.addmm(b, x, W))
    assert got.shape == (rows, n_out)
    assert torch.allclose(got, want, atol=2e-6)
    assert (calls == [1]) == (rows == 64 and onednn_available())  # the large one takes oneDNN


def test_large_products_go_through_onednn_and_gradients_through_torch(monkeypatch):
    if not onednn_available():
        pytest.skip("this torch has no oneDNN linear")
    calls = []
    real = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(kernels.torch.ops.mkldnn, "_linear_pointwise", lambda *a: calls.append(1) or real(*a), raising=False)
    W = torch.randn(784, 500, requires_grad=True)
    b = torch.zeros(500, requires_grad=True)
    x = torch.rand(64, 784)
    with torch.no_grad(), calibrate.use(calibrate.only("fused")):
        sigmoid_linear(x, W.t(), b)
    assert calls == [1]
    with calibrate.use(calibrate.only("fused")):
        y = sigmoid_linear(x, W.t(), b)  # autograd wants a graph: the plain path
    assert calls == [1] and y.requires_grad
    y.sum().backward()
    assert torch.allclose(W.grad, x.t() @ (y * (1 - y)).detach(), atol=1e-4)
    assert torch.allclose(b.grad, (y * (1 - y)).sum(0).detach(), atol=1e-4)
