"""The training (backward) pass of the depthwise convolution.

``ResidualDepthwiseConvFunction`` replaces PyTorch's slow CPU backward pass
of the channels-last depthwise convolution; its gradients must be those of
autograd on the plain expression, for the layer and for a whole model.
"""

import pytest
import torch

from speechbrain_mossformer.lobes.models import mossformer
from speechbrain_mossformer.lobes.models.mossformer import (
    MossFormerWrapper,
    ResidualDepthwiseConvFunction,
    residual_depthwise_conv,
)


def plain(x, weight):
    """``x + DWConv(x)`` as the official code writes it (``conv1d`` on the
    transposed input), which autograd differentiates by itself."""
    return residual_depthwise_conv(x, weight, channels_last=False)


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 5, 4), (3, 40, 7)])
def test_gradcheck_in_float64(shape):
    torch.manual_seed(0)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn(shape[-1], 1, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ResidualDepthwiseConvFunction.apply,
                                    (x, w))


@pytest.mark.parametrize("batch, frames", [(1, 700), (3, 129)])
def test_float32_gradients_match_autograd(batch, frames):
    torch.manual_seed(0)
    x = torch.randn(batch, frames, 300, requires_grad=True)
    w = torch.randn(300, 1, 17, requires_grad=True)
    g = torch.randn(batch, frames, 300)
    out = residual_depthwise_conv(x, w)
    assert out.grad_fn.name() == "ResidualDepthwiseConvFunctionBackward"
    out.backward(g)
    x2 = x.detach().clone().requires_grad_()
    w2 = w.detach().clone().requires_grad_()
    ref = plain(x2, w2)
    ref.backward(g)
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(x.grad, x2.grad, atol=1e-4)
    assert torch.allclose(w.grad, w2.grad, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("needed", ["input", "filters"])
def test_only_the_needed_gradient_is_computed(monkeypatch, needed):
    x = torch.randn(1, 20, 4, requires_grad=needed == "input")
    w = torch.randn(4, 1, 5, requires_grad=needed == "filters")
    out = ResidualDepthwiseConvFunction.apply(x, w)
    # the backward pass's two computations, counted
    calls = {"input": 0, "filters": 0}
    convolve = mossformer.residual_depthwise_conv
    kernel_grad = mossformer.depthwise_kernel_grad

    def counted_convolve(*args, **kwargs):
        calls["input"] += 1
        return convolve(*args, **kwargs)

    def counted_kernel_grad(*args):
        calls["filters"] += 1
        return kernel_grad(*args)

    monkeypatch.setattr(mossformer, "residual_depthwise_conv",
                        counted_convolve)
    monkeypatch.setattr(mossformer, "depthwise_kernel_grad",
                        counted_kernel_grad)
    out.sum().backward()
    other = "filters" if needed == "input" else "input"
    assert calls[needed] == 1 and calls[other] == 0, calls


def test_gradients_of_gradients_and_forward_mode():
    torch.manual_seed(0)
    x = torch.randn(2, 9, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 1, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(ResidualDepthwiseConvFunction.apply,
                                        (x, w))
    # a gradient penalty (create_graph=True) in float32, the training case
    x32 = torch.randn(1, 50, 8)
    w32 = torch.randn(8, 1, 17)

    def penalised(convolve):
        xx = x32.clone().requires_grad_()
        ww = w32.clone().requires_grad_()
        out = convolve(xx, ww)
        (grad_x,) = torch.autograd.grad(out.sum(), xx, create_graph=True)
        (grad_x.pow(2).sum() + out.pow(2).mean()).backward()
        return ww.grad

    fast = penalised(residual_depthwise_conv)
    reference = penalised(plain)
    assert torch.allclose(fast, reference, rtol=1e-4,
                          atol=1e-5 * reference.abs().max().item())
    # forward mode: the tangent of the output
    from torch.autograd import forward_ad

    dx, dw = torch.randn_like(x), torch.randn_like(w)
    tangents = []
    for convolve in (ResidualDepthwiseConvFunction.apply, plain):
        with forward_ad.dual_level():
            out = convolve(forward_ad.make_dual(x.detach(), dx),
                           forward_ad.make_dual(w.detach(), dw))
            tangents.append(forward_ad.unpack_dual(out).tangent)
    assert torch.allclose(*tangents, atol=1e-12)


def test_model_gradients_match_autograd_on_the_plain_layer(monkeypatch):
    """A whole model's gradients, with the custom backward and with
    autograd's own (the Function switched off)."""

    def grads():
        torch.manual_seed(0)
        model = MossFormerWrapper(
            num_spks=2, encoder_out_nchannels=32, num_blocks=2,
            group_size=16, query_key_dim=16, attn_dropout=0.1,
        ).train()
        torch.manual_seed(1)
        mix = torch.randn(2, 2400)
        model(mix).pow(2).mean().backward()
        return {n: p.grad for n, p in model.named_parameters()}

    fast = grads()
    monkeypatch.setattr(mossformer, "_records_gradients", lambda *t: False)
    reference = grads()
    for name, grad in reference.items():
        scale = grad.abs().max().item() + 1e-12
        assert (fast[name] - grad).abs().max().item() / scale < 1e-4, name
