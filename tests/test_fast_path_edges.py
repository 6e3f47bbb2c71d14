"""Edge cases of the fast MossFormer path: hooks that keep block inputs,
backward hooks, ``torch.func.vmap``, half-precision models and bad input
shapes (found by probing the fast path against the plain one)."""

import copy

import pytest
import torch

from speechbrain_mossformer.lobes.models.mossformer import (
    MossFormerBlock,
    MossFormerMaskNet,
    MossFormerStack,
    MossFormerWrapper,
    RotaryEmbedding,
    ScaledSinuEmbedding,
    ScaleNorm,
)

from test_fast_path import perturbed, ref_block


def test_block_inputs_kept_by_hooks_are_not_overwritten():
    # a hook on a block sees the previous block's output as its input;
    # at inference that output lived in a shared buffer that a later block
    # wrote over, so what a pre-hook or forward hook kept was garbage
    stack = perturbed(MossFormerStack(dim=16, num_blocks=5, group_size=4,
                                      query_key_dim=8, attn_dropout=0.0))
    stack.eval()
    kept = {}

    def keep_pre(module, args):
        kept["pre"] = args[0]

    def keep_fwd(module, args, output):
        kept["fwd"] = args[0]

    stack.blocks[1].register_forward_pre_hook(keep_pre)
    stack.blocks[3].register_forward_hook(keep_fwd)
    x = torch.randn(2, 11, 16)
    with torch.inference_mode():
        stack(x)
    with torch.no_grad():
        inputs, h = [], x
        for block in stack.blocks:
            inputs.append(h)
            h = ref_block(block, h)
    assert torch.allclose(kept["pre"], inputs[1], atol=1e-5)
    assert torch.allclose(kept["fwd"], inputs[3], atol=1e-5)


def test_backward_hooks_inside_a_block_fire_in_training():
    # the fused to_hidden/to_qk projection and the narrowing to_out call
    # none of their submodules, so backward hooks on them never fired
    block = perturbed(MossFormerBlock(dim=16, group_size=4, query_key_dim=8,
                                      dropout=0.0)).train()
    names = ["to_hidden.linear", "to_qk.conv.depthwise", "to_out.linear",
             "qk_offset_scale"]
    fired = set()
    for name in names:
        block.get_submodule(name).register_full_backward_hook(
            lambda m, gi, go, name=name: fired.add(name)
        )
    x = torch.randn(2, 9, 16, requires_grad=True)
    out = block(x)
    out.sum().backward()
    assert fired == set(names)
    with torch.no_grad():
        assert torch.allclose(out, ref_block(block, x), atol=1e-5)


# torch's own note that vmap has no fast batching rule for baddbmm_
@pytest.mark.filterwarnings("ignore:There is a performance drop")
@pytest.mark.parametrize("context", [torch.inference_mode, torch.no_grad])
def test_vmap_without_autograd_matches_the_batch(context):
    # vmap's batched tensors take no out= arguments: the fast path failed
    # with "Batching rule not implemented for aten::addmm.out"
    masknet = perturbed(MossFormerMaskNet(12, 16, num_blocks=2, num_spks=2,
                                          group_size=4, query_key_dim=8,
                                          attn_dropout=0.0)).eval()
    x = torch.randn(3, 12, 10).relu()
    ref = masknet(x).detach()
    with context():
        out = torch.vmap(lambda t: masknet(t.unsqueeze(0))[:, 0])(x)
    assert torch.allclose(out.transpose(0, 1), ref, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("context", [torch.inference_mode, torch.enable_grad])
def test_half_precision_model_runs(dtype, context):
    # model.half() / model.bfloat16(): float32 position tables promoted
    # the activations to float32 and the next matmul failed ("mat1 and
    # mat2 must have the same dtype"); the official code runs
    torch.manual_seed(0)
    wrapper = perturbed(MossFormerWrapper(encoder_out_nchannels=16,
                                          num_blocks=2, group_size=4,
                                          query_key_dim=40,
                                          attn_dropout=0.0)).eval()
    mix = torch.randn(2, 120)
    ref = wrapper(mix).detach()
    half = copy.deepcopy(wrapper).to(dtype)
    with context():
        out = half(mix.to(dtype))
    assert out.dtype == dtype and out.shape == ref.shape
    scale = ref.abs().max()
    assert (out.float() - ref).abs().max() <= 0.05 * scale


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_model_places_late_frames_right(dtype):
    # model.half() rounded the position frequencies to 3 significant
    # digits: the rotary angle of frame 4000 (4 s at 8 kHz) was off by up
    # to 0.7 rad and the global embedding by up to 1 (the official code
    # has the same flaw); the angles are now formed in float32
    T = 4000
    rotary, pos = RotaryEmbedding(32), ScaledSinuEmbedding(64)
    ref_cos, ref_sin = rotary.angles(T, "cpu")
    ref_emb = pos(torch.zeros(1, T, 64))
    cos, sin = copy.deepcopy(rotary).to(dtype).angles(T, "cpu")
    assert (cos - ref_cos).abs().max() < 1e-6
    assert (sin - ref_sin).abs().max() < 1e-6
    emb = copy.deepcopy(pos).to(dtype)(torch.zeros(1, T, 64, dtype=dtype))
    assert emb.dtype == dtype
    # only the final rounding to the model's dtype remains
    assert (emb.float() - ref_emb).abs().max() <= torch.finfo(dtype).eps


def test_float16_model_fresh_from_init_stays_finite():
    # at initialisation the input of to_out is about 1e-5, whose RMS is
    # clamped at eps = 1e-5: g / rms = 1e5 overflowed float16 (65504) and
    # 0 * inf made the masks NaN; the official x / rms * g stays finite
    torch.manual_seed(0)
    masknet = MossFormerMaskNet(32, 32, num_blocks=2, num_spks=2,
                                group_size=8, query_key_dim=16).eval()
    encoded = torch.randn(2, 32, 45).abs()
    with torch.no_grad():
        ref = masknet(encoded)
        half = copy.deepcopy(masknet).half()
        out = half(encoded.half())
    assert torch.isfinite(out).all()
    assert (out.float() - ref).abs().max() <= 0.01 * ref.abs().max()
    silent = torch.zeros(1, 2, 8, dtype=torch.float16)
    assert torch.equal(ScaleNorm(8).half()(silent), silent)


def test_bad_shapes_give_one_line_errors():
    masknet = MossFormerMaskNet(12, 16, num_blocks=1, num_spks=2,
                                group_size=4, query_key_dim=8).eval()
    stack = MossFormerStack(dim=16, num_blocks=1, group_size=4,
                            query_key_dim=8).eval()
    wrapper = MossFormerWrapper(encoder_out_nchannels=16, num_blocks=1,
                                group_size=4, query_key_dim=8).eval()
    for context in (torch.inference_mode, torch.enable_grad):
        with context():
            # inference: ZeroDivisionError deep in the depthwise conv
            with pytest.raises(ValueError, match=r"empty.*\(0, 12, 10\)"):
                masknet(torch.randn(0, 12, 10))
            for shape in [(1, 10, 12), (10, 16), (1, 0, 16), (0, 5, 16)]:
                with pytest.raises(ValueError, match=r"MossFormerStack.*"
                                   + repr(shape).replace("(", r"\(")
                                   .replace(")", r"\)")):
                    stack(torch.randn(shape))
            # int16 PCM: "expected scalar type Short but found Float"
            with pytest.raises(ValueError, match="floating point.*int16"):
                wrapper(torch.ones(1, 100, dtype=torch.int16))


class AdapterLinear(torch.nn.Linear):
    """An ``nn.Linear`` with a low-rank adapter added in ``forward`` (as
    LoRA libraries do): the weight alone does not give its output."""

    def __init__(self, base):
        super().__init__(base.in_features, base.out_features)
        self.load_state_dict(base.state_dict())
        self.down = torch.nn.Parameter(torch.randn(2, base.in_features))
        self.up = torch.nn.Parameter(torch.randn(base.out_features, 2))

    def forward(self, x):
        return super().forward(x) + x @ self.down.t() @ self.up.t()


# torch.ao.quantization's deprecation notices (the API still works here)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor")
@pytest.mark.parametrize("context", [torch.inference_mode, torch.no_grad,
                                     torch.enable_grad])
def test_replaced_layers_are_called(context):
    # the fused to_hidden/to_qk projection and the narrowing to_out read
    # ``linear.weight`` and never call the layer: an adapter (or a
    # dynamically quantized Linear, whose weight is a method) was ignored
    # or crashed; with a replaced layer the block is called layer by layer
    block = perturbed(MossFormerBlock(dim=16, group_size=4, query_key_dim=8,
                                      dropout=0.0)).eval()
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        base = block(x)
    for name in ("to_hidden", "to_qk", "to_out"):
        ff = block.get_submodule(name)
        ff.linear = AdapterLinear(ff.linear)
    with torch.no_grad():
        ref = ref_block_with_adapters(block, x)
    with context():
        out = block(x)
    assert not torch.allclose(ref, base, atol=1e-3)
    assert torch.allclose(out.detach(), ref, atol=1e-5)
    quantized = torch.ao.quantization.quantize_dynamic(
        perturbed(MossFormerMaskNet(12, 16, num_blocks=1, num_spks=2,
                                    group_size=4, query_key_dim=8,
                                    attn_dropout=0.0)).eval(),
        {torch.nn.Linear}, dtype=torch.qint8)
    e = torch.randn(1, 12, 10).relu()
    with torch.inference_mode():
        fast = quantized(e)
    assert torch.allclose(fast, quantized(e).detach(), atol=1e-5)


def ref_block_with_adapters(block, x):
    # ref_block with each FFConvM's linear called as a module
    import test_fast_path as ref

    def ffconvm(ff, t):
        t = ref.ref_scale_norm(ff.norm, t)
        t = torch.nn.functional.silu(ff.linear(t))
        w = ff.conv.depthwise.weight
        y = torch.nn.functional.conv1d(
            t.transpose(1, 2), w, padding=w.shape[-1] // 2,
            groups=w.shape[0]).transpose(1, 2)
        return ff.dropout(t + y)

    saved = ref.ref_ffconvm
    ref.ref_ffconvm = ffconvm
    try:
        return ref.ref_block(block, x)
    finally:
        ref.ref_ffconvm = saved
