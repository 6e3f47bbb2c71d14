"""MossFormer model: numerical identity with the official code, contract with
SpeechBrain's separation pipeline, sizes, gradients and input lengths."""

import os

import numpy as np
import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_mossformer.convert import ConversionError, convert
from speechbrain_mossformer.lobes.models.mossformer import (
    MossFormerBlock,
    MossFormerMaskNet,
    MossFormerStack,
    MossFormerWrapper,
    count_parameters,
    separate_with_modules,
)
from speechbrain_mossformer.model_sizes import PAPER_SIZES, model_sizes

from inference_helpers import fixture_dir

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
FIXTURE_NAMES = ["tiny-2spk", "tiny-3spk", "full-width-2blocks"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Converts each official fixture once for the module."""
    out = {}
    for name in FIXTURE_NAMES:
        folder = tmp_path_factory.mktemp(name)
        convert(fixture_dir(name), str(folder))
        out[name] = str(folder)
    return out


def _modules(folder):
    with open(os.path.join(folder, "hyperparams.yaml")) as f:
        hparams = load_hyperpyyaml(f)
    mods = hparams["modules"]
    for name in ("encoder", "masknet", "decoder"):
        state = torch.load(os.path.join(folder, f"{name}.ckpt"))
        mods[name].load_state_dict(state, strict=True)
        mods[name].eval()
    return hparams, mods


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_converted_checkpoint_reproduces_official_outputs(converted, name):
    from speechbrain_mossformer.lobes.models.mossformer import (
        separate_with_modules,
    )

    hparams, mods = _modules(converted[name])
    io = torch.load(os.path.join(fixture_dir(name), "io.pt"))
    with torch.no_grad():
        est = separate_with_modules(
            mods["encoder"],
            mods["masknet"],
            mods["decoder"],
            io["mixture"],
            hparams["num_spks"],
        )
    assert est.shape == io["estimates"].shape
    assert (est - io["estimates"]).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_stock_sepformer_interface_loads_converted_folder_offline(
    converted, name, tmp_path, monkeypatch
):
    import socket

    from speechbrain.inference.separation import SepformerSeparation

    def no_network(*args, **kwargs):
        raise OSError("network access attempted during offline loading")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    model = SepformerSeparation.from_hparams(
        source=converted[name],
        savedir=str(tmp_path / "cache"),
        run_opts={"device": "cpu"},
    )
    io = torch.load(os.path.join(fixture_dir(name), "io.pt"))
    with torch.no_grad():
        est = model.separate_batch(io["mixture"])
    assert (est - io["estimates"]).abs().max().item() <= 1e-5


def test_converter_names_missing_unexpected_and_misshaped_keys(tmp_path):
    import shutil

    src = fixture_dir("tiny-2spk")
    for case in ("missing", "unexpected", "shape"):
        bad = tmp_path / case
        shutil.copytree(src, bad)
        state = torch.load(bad / "masknet.bin")
        key = "mdl.att_mdl.mossformerM.layers.1.to_qk.mdl.1.weight"
        if case == "missing":
            del state[key]
            # named as the official file holds it
            expected = (
                r"masknet\.bin: missing 'mdl\.att_mdl\.mossformerM\.layers\.1"
                r"\.to_qk\.mdl\.1\.weight'"
            )
        elif case == "unexpected":
            state["mdl.extra.weight"] = torch.zeros(1)
            expected = "unexpected key 'mdl.extra.weight'"
        else:
            state[key] = torch.zeros(3, 3)
            expected = (
                r"'mdl\.att_mdl\.mossformerM\.layers\.1\.to_qk\.mdl\.1\."
                r"weight' has shape \(3, 3\)"
            )
        torch.save(state, bad / "masknet.bin")
        with pytest.raises(ConversionError, match=expected):
            convert(str(bad), str(tmp_path / f"out-{case}"))


@pytest.mark.parametrize("num_blocks, word", [(1, "unexpected"),
                                               (3, "missing")])
def test_converter_names_a_block_count_that_does_not_fit(tmp_path,
                                                        num_blocks, word):
    # weights of 2 blocks with a configuration of 1 or 3: the official key
    # names and the configuration's block count, either way round
    import json
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(fixture_dir("tiny-2spk"), bad)
    with open(bad / "model_config.json") as f:
        config = json.load(f)
    config["num_blocks"] = num_blocks
    with open(bad / "model_config.json", "w") as f:
        json.dump(config, f)
    with pytest.raises(ConversionError) as err:
        convert(str(bad), str(tmp_path / "out"))
    assert str(err.value).startswith(
        f"masknet.bin: {word} 'mdl.att_mdl.mossformerM.layers.")
    assert f"the configuration has {num_blocks} block" in str(err.value)


def test_converter_reads_modelscope_configuration_json(tmp_path):
    import json
    import shutil

    src = fixture_dir("tiny-3spk")
    folder = tmp_path / "modelscope"
    shutil.copytree(src, folder)
    with open(folder / "model_config.json") as f:
        kwargs = json.load(f)
    os.remove(folder / "model_config.json")
    with open(folder / "configuration.json", "w") as f:
        json.dump(
            {
                "framework": "pytorch",
                "task": "speech-separation",
                "model": dict(type="speech_mossformer_separation", **kwargs),
            },
            f,
        )
    config = convert(str(folder), str(tmp_path / "out"))
    assert config["num_spks"] == 3 and config["N_encoder_out"] == 64


def test_converter_cli_exit_codes(tmp_path):
    from speechbrain_mossformer.convert import main

    assert main([fixture_dir("tiny-2spk"), str(tmp_path / "ok")]) == 0
    assert main([str(tmp_path / "nope"), str(tmp_path / "out")]) == 2


def test_converter_never_writes_into_the_modelscope_folder(tmp_path, capsys):
    import shutil

    from speechbrain_mossformer.convert import main

    src = tmp_path / "modelscope"
    shutil.copytree(fixture_dir("tiny-2spk"), src)
    before = sorted(os.listdir(src))
    assert main([str(src), str(src)]) == 2
    err = capsys.readouterr().err
    assert "folder being read" in err and len(err.splitlines()) == 1
    assert sorted(os.listdir(src)) == before


@pytest.mark.parametrize("size", ["s", "m", "l"])
def test_model_sizes_match_the_paper(size):
    counts = model_sizes(os.path.join(REPO, "hparams"))
    count = counts[size]
    paper = PAPER_SIZES[size]
    if size == "l":
        assert count == 42_101_834
    assert abs(count - paper) / paper < 0.01


@pytest.mark.parametrize("size", ["s", "m", "l"])
@pytest.mark.parametrize("num_spks", [2, 3])
@pytest.mark.parametrize("sample_rate", [8000, 16000])
def test_hparams_yamls_load_with_overrides(size, num_spks, sample_rate):
    path = os.path.join(REPO, "hparams", f"mossformer_{size}.yaml")
    with open(path) as f:
        hparams = load_hyperpyyaml(
            f,
            {
                "num_spks": num_spks,
                "sample_rate": sample_rate,
                "num_blocks": 1,
            },
        )
    assert set(hparams["modules"]) == {"encoder", "masknet", "decoder"}
    assert hparams["num_spks"] == num_spks
    assert hparams["sample_rate"] == sample_rate
    mix = torch.randn(1, 200)
    mods = hparams["modules"]
    masks = mods["masknet"](mods["encoder"](mix))
    assert masks.shape[0] == num_spks


def _tiny_sepformer_style_hparams():
    """A SepFormer yaml with our MaskNet swapped in for Dual_Path_Model."""
    return """
num_spks: 2
N_encoder_out: 32
kernel_size: 16
kernel_stride: 8
Encoder: !new:speechbrain.lobes.models.dual_path.Encoder
    kernel_size: !ref <kernel_size>
    out_channels: !ref <N_encoder_out>
MaskNet: !new:speechbrain_mossformer.lobes.models.mossformer.MossFormerMaskNet
    num_spks: !ref <num_spks>
    in_channels: !ref <N_encoder_out>
    out_channels: !ref <N_encoder_out>
    num_blocks: 2
    group_size: 8
    query_key_dim: 16
Decoder: !new:speechbrain.lobes.models.dual_path.Decoder
    in_channels: !ref <N_encoder_out>
    out_channels: 1
    kernel_size: !ref <kernel_size>
    stride: !ref <kernel_stride>
    bias: False
optimizer: !name:torch.optim.Adam
    lr: 0.001
loss: !name:speechbrain.nnet.losses.get_si_snr_with_pitwrapper
modules:
    encoder: !ref <Encoder>
    decoder: !ref <Decoder>
    masknet: !ref <MaskNet>
"""


def test_sepformer_style_yaml_trains_one_step_and_every_parameter_learns():
    torch.manual_seed(0)
    hparams = load_hyperpyyaml(_tiny_sepformer_style_hparams())
    modules = torch.nn.ModuleDict(hparams["modules"])
    optimizer = hparams["optimizer"](modules.parameters())
    sources = torch.randn(2, 400, 2)
    mix = sources.sum(-1)
    # The recipe's forward (SepFormer train.py): encoder, masks, decoder.
    mix_w = modules["encoder"](mix)
    masks = modules["masknet"](mix_w)
    sep = torch.stack([mix_w] * 2) * masks
    est = torch.cat(
        [modules["decoder"](sep[i]).unsqueeze(-1) for i in range(2)], dim=-1
    )
    est = est[:, : mix.shape[1]]
    loss = hparams["loss"](sources, est).mean()
    before = {n: p.detach().clone() for n, p in modules.named_parameters()}
    loss.backward()
    no_grad = [
        n
        for n, p in modules.named_parameters()
        if p.grad is None or p.grad.abs().sum() == 0
    ]
    assert no_grad == []
    optimizer.step()
    unchanged = [
        n
        for n, p in modules.named_parameters()
        if torch.equal(p.detach(), before[n])
    ]
    assert unchanged == []
    assert torch.isfinite(loss)


@pytest.mark.parametrize(
    "num_samples",
    # 1 frame; 7 frames (< one group of 8); exactly 1 and 2 groups; ragged.
    [16, 64, 16 + 8 * 7, 16 + 8 * 15, 1001],
)
def test_any_length_of_at_least_one_frame_works(num_samples):
    torch.manual_seed(0)
    model = MossFormerWrapper(
        encoder_out_nchannels=16, num_blocks=2, group_size=8, query_key_dim=8
    ).eval()
    mix = torch.randn(2, num_samples)
    with torch.no_grad():
        first = model(mix)
        second = model(mix)
    assert first.shape == (2, num_samples, 2)
    assert torch.isfinite(first).all()
    assert torch.equal(first, second)  # eval mode is deterministic


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("trace_length", [1504, 1500])
def test_a_traced_model_keeps_every_input_length(trace_length):
    # (1504 - 16) % 8 == 0: the decoder gives back all samples, which used
    # to bake a crop (not the padding) into the trace
    torch.manual_seed(0)
    model = MossFormerWrapper(
        encoder_out_nchannels=16, num_blocks=1, group_size=8, query_key_dim=8
    ).eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(1, trace_length))
        for batch, length in ((2, 1500), (1, 17), (1, 16), (3, 1504)):
            mix = torch.randn(batch, length)
            got, expected = traced(mix), model(mix)
            assert got.shape == expected.shape == (batch, length, 2)
            assert (got - expected).abs().max() < 1e-5


def test_torch_jit_script_says_what_to_use_instead():
    model = MossFormerWrapper(
        encoder_out_nchannels=16, num_blocks=1, group_size=8, query_key_dim=8
    )
    with pytest.raises(TypeError, match="use torch.jit.trace"):
        torch.jit.script(model)


def test_input_shorter_than_one_frame_is_a_clear_error():
    model = MossFormerWrapper(
        encoder_out_nchannels=16, num_blocks=1, group_size=8, query_key_dim=8
    )
    with pytest.raises(ValueError, match="fewer than one encoder frame"):
        model(torch.randn(1, 15))
    with pytest.raises(ValueError, match=r"\[batch, time\]"):
        model(torch.randn(15))


def test_masknet_rejects_wrong_channel_count():
    masknet = MossFormerMaskNet(16, 16, num_blocks=1, group_size=4,
                                query_key_dim=8)
    with pytest.raises(ValueError, match=r"expects encoder output \[B, 16"):
        masknet(torch.randn(1, 8, 10))


def test_a_mask_net_for_another_number_of_speakers_is_named():
    # num_spks was passed along but never checked: a 3-speaker mask net
    # under a 2-speaker yaml returned 3 sources without a word
    model = MossFormerWrapper(encoder_out_nchannels=16, num_blocks=1,
                              group_size=4, query_key_dim=8, num_spks=3)
    with pytest.raises(ValueError, match="masks for 3 sources but num_spks "
                       "is 2"):
        separate_with_modules(model.encoder, model.masknet, model.decoder,
                              torch.randn(1, 50), 2)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"group_size": 0}, "group_size must be an integer of at least 1, "
         "got 0"),
        ({"group_size": -4}, "group_size must be an integer of at least 1"),
        ({"group_size": 2.5}, "group_size must be an integer of at least 1, "
         "got 2.5"),
        ({"group_size": True}, "group_size must be an integer of at least 1"),
        ({"num_spks": 0}, "num_spks must be an integer of at least 1, got 0"),
        ({"num_spks": -1}, "num_spks must be an integer of at least 1"),
        ({"query_key_dim": 0}, "query_key_dim must be an integer of at "
         "least 1"),
        ({"expansion_factor": 0}, "hidden_dim must be an integer of at "
         "least 2, got 0"),
        ({"encoder_kernel_size": 1}, "encoder_kernel_size must be an integer "
         "of at least 2, got 1"),
    ],
)
def test_impossible_sizes_name_the_argument(overrides, message):
    settings = dict(encoder_out_nchannels=16, num_blocks=1, group_size=4,
                    query_key_dim=8)
    settings.update(overrides)
    with pytest.raises(ValueError, match=message):
        MossFormerWrapper(**settings)


def test_inputs_of_another_dtype_than_the_model_name_both():
    model = MossFormerWrapper(encoder_out_nchannels=16, num_blocks=1,
                              group_size=4, query_key_dim=8).eval()
    with pytest.raises(ValueError, match=r"MossFormerWrapper: the mixture "
                       r"is torch.float64 but the model is torch.float32"):
        model(torch.randn(1, 200, dtype=torch.float64))
    with pytest.raises(ValueError, match="expected a floating point "
                       "encoder output, got torch.int64"):
        model.masknet(torch.ones(1, 16, 20, dtype=torch.long))
    # autocast takes care of mixed types itself
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.randn(1, 200)).shape == (1, 200, 2)


def test_arrays_and_lists_are_named_not_torch_errors():
    # a NumPy array or a list failed inside torch ('no attribute dim')
    model = MossFormerWrapper(encoder_out_nchannels=16, num_blocks=1,
                              group_size=4, query_key_dim=8).eval()
    with pytest.raises(TypeError, match=r"MossFormerWrapper: expected the "
                       r"mixture \[batch, time\] as a torch.Tensor, got a "
                       r"numpy.ndarray"):
        model(np.zeros((1, 200), dtype="float32"))
    with pytest.raises(TypeError, match="got a list"):
        model([[0.0] * 200])
    with pytest.raises(TypeError, match="MossFormerMaskNet: expected the "
                       "encoder output"):
        model.masknet(np.zeros((1, 16, 20), dtype="float32"))
    # the block stack on its own (float64 failed inside a matmul)
    stack = MossFormerStack(16, num_blocks=1, group_size=4, query_key_dim=8)
    with pytest.raises(TypeError, match=r"MossFormerStack: expected the "
                       r"input \[B, T, 16\] as a torch.Tensor"):
        stack(np.zeros((1, 10, 16), dtype="float32"))
    with pytest.raises(ValueError, match="MossFormerStack: the input is "
                       "torch.float64 but the model is torch.float32"):
        stack(torch.zeros(1, 10, 16, dtype=torch.float64))


def test_numpy_integer_sizes_are_accepted():
    model = MossFormerWrapper(
        encoder_out_nchannels=np.int64(16), num_blocks=np.int64(1),
        group_size=np.int64(4), query_key_dim=np.int64(8),
        num_spks=np.int64(2),
    ).eval()
    assert model(torch.randn(1, 200)).shape == (1, 200, 2)


def test_tables_are_rebuilt_when_a_meta_device_model_loads_weights():
    # build on the meta device, materialise, load: the rotary and position
    # tables are not in checkpoints, so they held uninitialised memory
    settings = dict(encoder_out_nchannels=32, num_blocks=2, group_size=8,
                    query_key_dim=16)
    torch.manual_seed(0)
    ref = MossFormerWrapper(**settings).eval()
    with torch.device("meta"):
        model = MossFormerWrapper(**settings)
    model = model.to_empty(device="cpu").eval()
    model.load_state_dict(ref.state_dict())
    mix = torch.randn(2, 800)
    with torch.no_grad():
        assert torch.equal(model(mix), ref(mix))


def test_joint_attention_matches_a_loop_over_unpadded_groups():
    """Zero padding of the last group changes nothing: compare with a naive
    per-group loop that never pads (scores scaled by 1/group_size)."""
    torch.manual_seed(0)
    block = MossFormerBlock(dim=16, group_size=8, query_key_dim=8).eval()
    T, g = 13, 8
    qq, lq, qk, lk = (torch.randn(1, T, 8) for _ in range(4))
    values = torch.randn(1, T, 64)
    with torch.no_grad():
        got = block.joint_attention(torch.stack((qq, lq, qk, lk)), values)
        rot = [block.rotary(t) for t in (qq, lq, qk, lk)]
        qq, lq, qk, lk = rot
        expected = torch.zeros_like(values)
        for start in range(0, T, g):
            sl = slice(start, min(start + g, T))
            scores = torch.relu(qq[:, sl] @ qk[:, sl].transpose(1, 2) / g)
            expected[:, sl] = scores**2 @ values[:, sl]
        expected = expected + lq @ (lk.transpose(1, 2) @ values) / T
    assert torch.allclose(got, expected, atol=1e-5)


def test_parameter_count_of_one_official_block():
    block = MossFormerBlock(dim=512, group_size=256, query_key_dim=128)
    assert count_parameters(block) == 1_687_811


def _one_training_step(activation_checkpointing):
    """Loss, gradients and bytes kept for the backward pass of one step of
    a small 4-block model with dropout."""
    torch.manual_seed(0)
    model = MossFormerWrapper(
        num_spks=2, encoder_out_nchannels=32, num_blocks=4, group_size=16,
        query_key_dim=16, attn_dropout=0.1,
        activation_checkpointing=activation_checkpointing,
    ).train()
    mix = torch.randn(2, 3000)
    kept = []

    def pack(tensor):
        kept.append(tensor.numel() * tensor.element_size())
        return tensor

    torch.manual_seed(1)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(mix).pow(2).mean()
    loss.backward()
    return loss.item(), [p.grad for p in model.parameters()], sum(kept)


def test_activation_checkpointing_keeps_gradients_and_saves_memory():
    loss, grads, kept = _one_training_step(False)
    loss_ac, grads_ac, kept_ac = _one_training_step(True)
    # same dropout masks and the same arithmetic: identical numbers
    assert loss_ac == loss
    for grad, grad_ac in zip(grads, grads_ac):
        assert torch.equal(grad, grad_ac)
    # only each block's input is kept, not the activations inside it
    assert kept_ac < 0.25 * kept


def test_activation_checkpointing_changes_nothing_at_inference():
    torch.manual_seed(0)
    model = MossFormerWrapper(
        num_spks=2, encoder_out_nchannels=32, num_blocks=2, group_size=16,
        query_key_dim=16, activation_checkpointing=True,
    ).eval()
    mix = torch.randn(1, 2000)
    with torch.no_grad():
        fast = model(mix)
    model.masknet.mossformer.activation_checkpointing = False
    with torch.no_grad():
        assert torch.equal(model(mix), fast)
