"""The fast MossFormer implementation against a plain reference.

``speechbrain_mossformer.lobes.models.mossformer`` computes MossFormer with
several shortcuts (channels-last depthwise convolution with the residual in
the kernel, ``to_hidden`` and ``to_qk`` as one matmul, unpadded local
attention, in-place operations and shared buffers when no autograd graph is
recorded, a separate traceable path for ONNX export). These tests check each
shortcut, and whole blocks and stacks, against a plain re-statement of the
model (written from the spec, sharing only the parameters): outputs in eval
mode, and gradients of the input and every parameter in train mode.
"""

import pytest
import torch
import torch.nn.functional as F

import speechbrain_mossformer.lobes.models.mossformer as mossformer_module
from speechbrain_mossformer.lobes.models.mossformer import (
    FFConvM,
    MossFormerBlock,
    MossFormerMaskNet,
    MossFormerWrapper,
    MossFormerStack,
    OffsetScale,
    Scratch,
    decode_sources,
    residual_depthwise_conv,
    shared_input_ffconvm,
)

# ---------------------------------------------------------------------------
# Plain reference (spec: MOSSFORMER.md section 1.4), on our modules' weights
# ---------------------------------------------------------------------------


def ref_scale_norm(norm, x):
    rms = torch.norm(x, dim=-1, keepdim=True) * norm.scale
    return x / rms.clamp(min=norm.eps) * norm.g


def ref_ffconvm(ff, x):
    x = ref_scale_norm(ff.norm, x)
    x = F.silu(F.linear(x, ff.linear.weight, ff.linear.bias))
    w = ff.conv.depthwise.weight
    y = F.conv1d(x.transpose(1, 2), w, padding=w.shape[-1] // 2,
                 groups=w.shape[0]).transpose(1, 2)
    return ff.dropout(x + y)


def ref_token_shift(x):
    half = x.shape[-1] // 2
    shifted = F.pad(x[..., :half], (0, 0, 1, -1))
    return torch.cat((shifted, x[..., half:]), dim=-1)


def ref_rotary(dim, inv_freq, x):
    T = x.shape[-2]
    freqs = torch.outer(torch.arange(T).float(), inv_freq)
    freqs = freqs.repeat_interleave(2, dim=-1)
    rot, rest = x[..., :dim], x[..., dim:]
    pairs = rot.unflatten(-1, (-1, 2))
    half = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    rot = rot * freqs.cos() + half * freqs.sin()
    return torch.cat((rot, rest), dim=-1)


def ref_block(block, x):
    g = block.group_size
    shifted = ref_token_shift(x)
    hidden = ref_ffconvm(block.to_hidden, shifted)
    qk = ref_ffconvm(block.to_qk, shifted)
    v, u = hidden.chunk(2, dim=-1)
    os_ = block.qk_offset_scale
    heads = [qk * os_.gamma[h] + os_.beta[h] for h in range(4)]
    heads = [ref_rotary(block.rotary.dim, block.rotary.inv_freq, t)
             for t in heads]
    quad_q, lin_q, quad_k, lin_k = heads
    B, T, _ = x.shape
    pad = (-T) % g
    qq, qk_, vv, uu = (F.pad(t, (0, 0, 0, pad))
                       for t in (quad_q, quad_k, v, u))
    G = (T + pad) // g
    qq, qk_, vv, uu = (t.reshape(B, G, g, -1) for t in (qq, qk_, vv, uu))
    attn = block.attn_dropout(
        F.relu(qq @ qk_.transpose(-1, -2) / g) ** 2
    )
    quad_v = (attn @ vv).reshape(B, G * g, -1)[:, :T]
    quad_u = (attn @ uu).reshape(B, G * g, -1)[:, :T]
    lin_v = lin_q @ (lin_k.transpose(1, 2) @ v) / T
    lin_u = lin_q @ (lin_k.transpose(1, 2) @ u) / T
    att_v, att_u = quad_v + lin_v, quad_u + lin_u
    gated = (att_u * v) * torch.sigmoid(att_v * u)
    return x + ref_ffconvm(block.to_out, gated)


def ref_stack(stack, x):
    for block in stack.blocks:
        x = ref_block(block, x)
    return stack.norm(x)


def perturbed(module, seed=0, scale=0.05):
    """Moves every parameter away from its initial value."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * scale)
    return module


def grads(module, x, fn):
    """Output and gradients (input first, then parameters) of fn."""
    module.zero_grad()
    x = x.clone().requires_grad_(True)
    out = fn(x)
    weight = torch.randn_like(out, generator=torch.Generator().manual_seed(1))
    (out * weight).sum().backward()
    return out.detach(), [x.grad] + [
        p.grad.clone() for p in module.parameters()
    ]


# group size 8: 3 frames (< 1 group), 8 and 16 (whole groups), 13 (ragged)
LENGTHS = [3, 8, 13, 16]


# ---------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("B, T", [(1, 1), (1, 30), (2, 17)])
def test_channels_last_depthwise_conv_matches_conv1d(B, T):
    torch.manual_seed(0)
    w = torch.randn(6, 1, 17, requires_grad=True)
    results = []
    for channels_last in (True, False):
        x = torch.randn(B, T, 6, generator=torch.Generator().manual_seed(2))
        x.requires_grad_(True)
        w.grad = None
        y = residual_depthwise_conv(x, w, channels_last=channels_last)
        y.pow(2).sum().backward()
        results.append((y.detach(), x.grad, w.grad.clone()))
    for fast, ref in zip(*results):
        assert torch.allclose(fast, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("B, T, values", [(1, 30, 42), (2, 40, 48),
                                          (1, 5, 1 << 20), (2, 1100, 6000),
                                          (3, 50, 1)])
def test_depthwise_conv_into_buffer_piece_by_piece(monkeypatch, B, T, values):
    # pieces (values // (B * 6) frames) shorter than the kernel's context,
    # a single piece, several pieces, one frame each: every output frame
    # as the whole conv's
    monkeypatch.setattr(mossformer_module, "CONV_CHUNK_VALUES", values)
    x = torch.randn(B, T, 6, generator=torch.Generator().manual_seed(3))
    w = torch.randn(6, 1, 17, generator=torch.Generator().manual_seed(4))
    out = torch.full((B, T, 6), float("nan"))
    with torch.inference_mode():
        y = residual_depthwise_conv(x, w, channels_last=True, out=out)
        ref = residual_depthwise_conv(x, w, channels_last=False)
    assert y.data_ptr() == out.data_ptr()
    assert torch.allclose(y, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("width, dim", [(16, 16), (40, 32), (20, 16),
                                        (21, 16)])
def test_rotary_in_place_matches_the_reference(width, dim):
    # even widths take the complex in-place product (rotary features only,
    # or followed by unrotated ones); an odd width cannot be viewed as
    # complex numbers and takes the real in-place path
    rotary = mossformer_module.RotaryEmbedding(dim)
    x = torch.randn(4, 2, 37, width, generator=torch.Generator().manual_seed(5))
    ref = ref_rotary(dim, rotary.inv_freq, x)
    with torch.inference_mode():
        y = x.clone()
        out = rotary(y, rotary.angles(37, y.device), inplace=True)
    assert out.data_ptr() == y.data_ptr()
    assert torch.equal(out[..., dim:], x[..., dim:])
    assert torch.allclose(out, ref, atol=1e-6, rtol=1e-5)
    assert mossformer_module._complex_view_ok(x, dim) == (width % 2 == 0)


@pytest.mark.parametrize("kernel, stride, bias", [(16, 8, False),
                                                 (2, 1, True), (4, 4, False),
                                                 (12, 4, True), (5, 2, False)])
def test_decode_sources_matches_the_decoder_per_source(kernel, stride, bias):
    # overlaps of 2, 1 and 3 frames, with and without bias; kernel 5,
    # stride 2 is no multiple and calls the decoder itself
    from speechbrain.lobes.models.dual_path import Decoder

    decoder = Decoder(in_channels=8, out_channels=1, kernel_size=kernel,
                      stride=stride, bias=bias)
    if bias:
        torch.nn.init.normal_(decoder.bias)
    separated = torch.randn(3, 2, 8, 11,
                            generator=torch.Generator().manual_seed(6))
    calls = []
    decoder.register_forward_pre_hook(lambda *_: calls.append(1))
    ref = torch.stack([decoder(s).view(2, -1) for s in separated], dim=-1)
    calls.clear()
    with torch.inference_mode():
        hooked = decode_sources(decoder, separated)
    assert len(calls) == 3  # a hook on the decoder: it is called
    decoder._forward_pre_hooks.clear()
    with torch.inference_mode():
        fast = decode_sources(decoder, separated)
        assert mossformer_module._overlap_add_ok(decoder) == (
            kernel % stride == 0)
    assert not mossformer_module._overlap_add_ok(decoder)  # autograd on
    assert fast.shape == ref.shape == (2, (11 - 1) * stride + kernel, 3)
    assert torch.allclose(fast, ref.detach(), atol=1e-5)
    assert torch.allclose(hooked, ref.detach(), atol=1e-5)


def test_scratch_get_unlike_never_returns_the_avoided_buffer():
    scratch = Scratch()
    like = torch.zeros(1)
    a = scratch.get_unlike(("a", "b"), (2, 3), like, like)
    b = scratch.get_unlike(("a", "b"), (2, 3), like, a)
    c = scratch.get_unlike(("a", "b"), (2, 3), like, b)
    assert a.data_ptr() != b.data_ptr()
    assert c.data_ptr() == a.data_ptr()


def test_hooked_block_outputs_are_not_overwritten():
    # block outputs live in shared buffers at inference, except when a
    # forward hook could keep them
    stack = perturbed(MossFormerStack(dim=16, num_blocks=4, group_size=4,
                                      query_key_dim=8, attn_dropout=0.0))
    stack.eval()
    kept = []
    for block in stack.blocks:
        block.register_forward_hook(lambda m, a, out: kept.append(out))
    x = torch.randn(1, 11, 16)
    with torch.inference_mode():
        stack(x)
    with torch.no_grad():
        expected, h = [], x
        for block in stack.blocks:
            h = ref_block(block, h)
            expected.append(h)
    for got, ref in zip(kept, expected):
        assert torch.allclose(got, ref, atol=1e-5)


def test_hooks_inside_a_block_fire_and_keep_valid_tensors():
    # a hook on any submodule of a block (to_hidden, its linear, the
    # depthwise conv, the rotary, ...) switches that block to its plain
    # path: every submodule is called, and what a hook keeps is not
    # changed afterwards (recomputing from the kept inputs gives the kept
    # output); the stack's output stays the same
    stack = perturbed(MossFormerStack(dim=16, num_blocks=3, group_size=4,
                                      query_key_dim=8, attn_dropout=0.0))
    stack.eval()
    x = torch.randn(1, 11, 16)
    with torch.inference_mode():
        expected = stack(x)
    calls = []
    handles = []
    for name, module in stack.blocks[1].named_modules():
        if module is stack.blocks[1]:
            continue

        def keep(m, args, kwargs, out, name=name):
            calls.append((name, m, args, kwargs, out))

        handles.append(module.register_forward_hook(keep, with_kwargs=True))
    try:
        with torch.inference_mode():
            got = stack(x)
    finally:
        for handle in handles:
            handle.remove()
    fired = {name for name, *_ in calls}
    with torch.inference_mode():
        for name, m, args, kwargs, out in calls:
            again = m(*args, **kwargs)
            if isinstance(out, tuple):
                out, again = torch.stack(out), torch.stack(again)
            assert torch.allclose(out, again, atol=1e-5), name
    every = {name for name, _ in stack.blocks[1].named_modules() if name}
    assert "to_out.conv.depthwise" in every and fired == every
    assert torch.allclose(got, expected, atol=1e-5)


def test_inference_follows_parameter_changes():
    # inference fuses the to_hidden/to_qk weights; changing a parameter in
    # place (optimizer step, load_state_dict) must show up
    block = perturbed(MossFormerBlock(dim=16, group_size=4, query_key_dim=8,
                                      dropout=0.0)).eval()
    x = torch.randn(1, 9, 16)
    with torch.inference_mode():
        before = block(x)
    with torch.no_grad():
        block.to_hidden.linear.weight.mul_(0.5)
        block.to_qk.norm.g.fill_(2.0)
    with torch.inference_mode():
        after = block(x)
    with torch.no_grad():
        expected = ref_block(block, x)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, expected, atol=1e-5)
    fresh = perturbed(MossFormerBlock(dim=16, group_size=4, query_key_dim=8,
                                      dropout=0.0)).eval()
    block.load_state_dict(fresh.state_dict())
    with torch.inference_mode():
        assert torch.allclose(block(x), fresh(x), atol=1e-6)


def test_shared_input_ffconvm_matches_separate_modules():
    a = perturbed(FFConvM(8, 16, dropout=0.0))
    b = perturbed(FFConvM(8, 4, dropout=0.0), seed=1)
    mods = torch.nn.ModuleList([a, b])
    x = torch.randn(2, 21, 8)
    out, g_fast = grads(mods, x, lambda t: shared_input_ffconvm((a, b), t))
    ref, g_ref = grads(
        mods, x, lambda t: torch.cat((ref_ffconvm(a, t), ref_ffconvm(b, t)),
                                     -1)
    )
    assert torch.allclose(out, ref, atol=1e-5)
    for gf, gr in zip(g_fast, g_ref):
        assert torch.allclose(gf, gr, atol=1e-4, rtol=1e-4)


def test_narrowing_ffconvm_matches_reference():
    ff = perturbed(FFConvM(16, 8, dropout=0.0))
    x = torch.randn(2, 19, 16)
    out, g_fast = grads(ff, x, ff)
    ref, g_ref = grads(ff, x, lambda t: ref_ffconvm(ff, t))
    assert torch.allclose(out, ref, atol=1e-5)
    for gf, gr in zip(g_fast, g_ref):
        assert torch.allclose(gf, gr, atol=1e-4, rtol=1e-4)
    with torch.inference_mode():
        assert torch.allclose(ff(x), ref, atol=1e-5)


def test_offset_scale_heads():
    os_ = OffsetScale(8, heads=4)
    x = torch.randn(2, 5, 8)
    heads = os_(x)
    assert len(heads) == 4
    for h, t in enumerate(heads):
        assert torch.allclose(t, x * os_.gamma[h] + os_.beta[h])


# ---------------------------------------------------------------------------
# Whole blocks and stacks
# ---------------------------------------------------------------------------


def tiny_block(dropout=0.0):
    return perturbed(
        MossFormerBlock(dim=16, group_size=8, query_key_dim=8,
                        dropout=dropout)
    )


@pytest.mark.parametrize("B", [1, 2])
@pytest.mark.parametrize("T", LENGTHS)
def test_block_outputs_match_reference_in_every_mode(B, T):
    block = tiny_block().eval()
    x = torch.randn(B, T, 16)
    with torch.no_grad():
        ref = ref_block(block, x)
    with torch.inference_mode():  # in-place fast path
        fast = block(x)
    with torch.no_grad():
        no_grad = block(x)
    graph = block(x)  # autograd path
    for out in (fast, no_grad, graph.detach()):
        assert torch.allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("B, T", [(1, 13), (2, 16), (2, 3)])
def test_block_gradients_match_reference(B, T):
    block = tiny_block().train()  # dropout 0: deterministic
    x = torch.randn(B, T, 16)
    out, g_fast = grads(block, x, block)
    ref, g_ref = grads(block, x, lambda t: ref_block(block, t))
    assert torch.allclose(out, ref, atol=1e-5)
    names = ["input"] + [n for n, _ in block.named_parameters()]
    for name, gf, gr in zip(names, g_fast, g_ref):
        assert gf is not None, name
        assert torch.allclose(gf, gr, atol=1e-4, rtol=1e-3), name


def test_stack_with_shared_buffers_matches_reference():
    stack = perturbed(
        MossFormerStack(dim=16, num_blocks=3, group_size=8, query_key_dim=8,
                        attn_dropout=0.0)
    ).eval()
    x = torch.randn(2, 21, 16)
    with torch.no_grad():
        ref = ref_stack(stack, x)
    with torch.inference_mode():
        first = stack(x)
        second = stack(x)
    assert torch.equal(first, second)
    assert torch.allclose(first, ref, atol=1e-5)
    out, g_fast = grads(stack, x, stack)
    ref2, g_ref = grads(stack, x, lambda t: ref_stack(stack, t))
    assert torch.allclose(out, ref, atol=1e-5)
    for gf, gr in zip(g_fast, g_ref):
        assert torch.allclose(gf, gr, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("B, T", [(1, 21), (2, 13)])
def test_stack_with_padded_rows_and_gate_pieces_matches_reference(
    monkeypatch, B, T
):
    # hidden widths of 512 and 1024 floats (2 and 4 KiB rows): the
    # attention output buffer gets padded rows; small gate pieces (3 frames
    # for B = 1 at width 256) make gate_in_place loop over ragged pieces
    monkeypatch.setattr(mossformer_module, "GATE_CHUNK_VALUES", 3 * 256)
    stack = perturbed(
        MossFormerStack(dim=16, num_blocks=3, group_size=8, query_key_dim=8,
                        attn_dropout=0.0, hidden_dims=[512, 1024, 40],
                        query_key_dims=[8, 8, 8])
    ).eval()
    x = torch.randn(B, T, 16)
    with torch.no_grad():
        ref = ref_stack(stack, x)
    with torch.inference_mode():
        fast = stack(x)
    assert torch.allclose(fast, ref, atol=1e-5)


def test_scratch_pads_rows_of_2_kib_multiples_only():
    scratch, like = Scratch(), torch.zeros(1)
    padded = scratch.get("a", (2, 5, 512), like, padded=True)
    assert padded.shape == (2, 5, 512)
    assert padded.stride() == (5 * (512 + mossformer_module.ROW_PAD),
                               512 + mossformer_module.ROW_PAD, 1)
    plain = scratch.get("b", (2, 5, 520), like, padded=True)
    assert plain.is_contiguous()
    assert scratch.get("c", (2, 5, 512), like).is_contiguous()


def test_dropout_in_train_mode_is_random_and_trains():
    block = tiny_block(dropout=0.5).train()
    x = torch.randn(1, 13, 16, requires_grad=True)
    a, b = block(x), block(x)
    assert not torch.equal(a, b)
    (a.sum() + b.sum()).backward()
    assert torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in block.parameters())


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_traced_block_follows_the_input_length():
    """The tracing path (padded groups) gives a length-generic graph."""
    block = tiny_block().eval()
    with torch.no_grad():
        traced = torch.jit.trace(block, torch.randn(2, 13, 16),
                                 check_trace=False)
        for B, T in [(1, 3), (2, 8), (1, 16), (2, 29)]:
            x = torch.randn(B, T, 16)
            assert torch.allclose(traced(x), block(x), atol=1e-5)


@pytest.mark.parametrize("B, spks, skip, pos", [(2, 2, True, True),
                                              (1, 3, False, True),
                                              (3, 2, True, False)])
def test_masknet_fast_path_matches_autograd_path(B, spks, skip, pos):
    # the channels-last head (1x1 convolutions as matmuls, GroupNorm by
    # hand, masks written per speaker) against the module-by-module path
    masknet = perturbed(
        MossFormerMaskNet(12, 16, num_blocks=2, num_spks=spks, group_size=8,
                          query_key_dim=8, attn_dropout=0.0,
                          skip_around_mossformer=skip,
                          use_global_pos_enc=pos)
    ).eval()
    x = torch.randn(B, 12, 21, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        fast = masknet(x.relu())
    slow = masknet(x.relu()).detach()
    assert fast.shape == (spks, B, 12, 21) and fast.is_contiguous()
    assert torch.allclose(fast, slow, atol=1e-5)
    assert (slow > 0).float().mean() > 0.2  # masks not all cut by the ReLU


@pytest.mark.parametrize("context", [torch.inference_mode, torch.no_grad])
def test_compiled_masknet_matches_eager(context):
    # torch.compile (e.g. a recipe's --compile at validation time) traces
    # the plain path: the Scratch buffers, chosen by memory address, are
    # off while compiling. The "eager" backend runs dynamo's tracing alone
    # (fast); inductor builds from the same graph.
    torch._dynamo.reset()
    masknet = perturbed(
        MossFormerMaskNet(12, 16, num_blocks=2, num_spks=2, group_size=8,
                          query_key_dim=8, attn_dropout=0.0)
    ).eval()
    compiled = torch.compile(masknet, backend="eager", dynamic=False)
    x = torch.randn(2, 12, 21, generator=torch.Generator().manual_seed(3))
    with context():
        ref = masknet(x.relu())
        out = compiled(x.relu())
    assert out.shape == ref.shape == (2, 2, 12, 21)
    assert torch.allclose(out, ref, atol=1e-5)


def autocast_masknet_and_input():
    """A small perturbed mask net (2 blocks, query/key narrower than the
    model) and an encoder output for it."""
    masknet = perturbed(
        MossFormerMaskNet(12, 16, num_blocks=2, num_spks=2, group_size=8,
                          query_key_dim=8, attn_dropout=0.0)
    ).eval()
    x = torch.randn(2, 12, 21, generator=torch.Generator().manual_seed(4))
    return masknet, x


@pytest.mark.parametrize("context", [torch.inference_mode, torch.no_grad])
def test_masknet_runs_under_autocast_like_the_plain_path(context):
    # SpeechBrain's --eval_precision=bf16 evaluates under torch.no_grad()
    # inside torch.autocast: the matmuls then return bf16 tensors, so the
    # float32 Scratch buffers must stay off and the plain path runs.
    masknet, x = autocast_masknet_and_input()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = masknet(x.relu())
        with context():
            out = masknet(x.relu())
    assert out.shape == ref.shape == (2, 2, 12, 21)
    assert torch.equal(out, ref)
    with torch.no_grad():
        fp32 = masknet(x.relu())
    # bf16 keeps about 3 significant digits
    assert torch.allclose(out.float(), fp32, atol=0.05, rtol=0.05)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_hooked_block_runs_under_autocast(dtype):
    # a hook (or a swapped layer) sends a block down its plain path, whose
    # narrowing to_qk once returned float32 beside to_hidden's bf16 and
    # crashed the in-place attention product ("Bad in-place call")
    masknet, x = autocast_masknet_and_input()
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        ref = masknet(x.relu())
    seen = []
    block = masknet.mossformer.blocks[0]
    block.to_out.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        out = masknet(x.relu())
    assert seen == [dtype]
    assert torch.allclose(out.float(), ref.float(), atol=0.05, rtol=0.05)


def test_float64_under_autocast_is_named():
    # autocast casts float32 inputs, never float64 ones: the dtype check
    # must not wave them through (a conv error 12 frames deep)
    model = MossFormerWrapper(encoder_out_nchannels=16, num_blocks=1,
                              group_size=4, query_key_dim=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(ValueError, match="torch.float64 but the model"):
            model(torch.randn(1, 800, dtype=torch.float64))


def test_depthwise_conv_under_autocast_avoids_channels_last(monkeypatch):
    # torch 2.14's CPU depthwise conv2d in bf16 on channels-last memory
    # hangs (e.g. [1, 16, 1, 100]), so under autocast the conv1d way runs
    def no_conv2d(*args, **kwargs):
        raise AssertionError("channels-last conv2d called under autocast")

    x, w = torch.randn(1, 100, 16), torch.randn(16, 1, 17)
    ref = residual_depthwise_conv(x, w, channels_last=False)
    monkeypatch.setattr(mossformer_module.F, "conv2d", no_conv2d)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = residual_depthwise_conv(x, w)
    assert not torch.equal(y, ref)  # the convolution ran in bf16
    assert torch.allclose(y, ref, atol=0.1, rtol=0.02)
