"""The training (backward) pass of the depthwise convolution.

``ResidualDepthwiseConvFunction`` replaces PyTorch's slow CPU backward pass
of the channels-last depthwise convolution; its gradients must be those of
autograd on the plain expression, for the layer and for a whole model.
"""

import pytest
import torch
import torch.nn.functional as F

from speechbrain_mossformer.lobes.models import mossformer
from speechbrain_mossformer.lobes.models.mossformer import (
    MossFormerWrapper,
    ResidualDepthwiseConvFunction,
    residual_depthwise_conv,
)


def plain(x, weight):
    """``x + DWConv(x)`` as the official code writes it, for autograd."""
    y = F.conv1d(
        x.transpose(1, 2), weight, padding=weight.shape[-1] // 2,
        groups=weight.shape[0],
    )
    return x + y.transpose(1, 2)


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


def test_only_the_needed_gradient_is_computed():
    x = torch.randn(1, 20, 4)
    w = torch.randn(4, 1, 5, requires_grad=True)
    residual_depthwise_conv(x, w).sum().backward()
    assert x.grad is None and w.grad is not None


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
