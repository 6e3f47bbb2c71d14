"""README "Use MossFormer in a SepFormer pipeline": what a SepFormer user
does after training with the mask net swapped into a SepFormer yaml.

* the run folder's ``hyperparams.yaml`` gives the mask net its sizes
  inline (``MaskNet: !new:...MossFormerMaskNet``) and keeps SepFormer's
  own, now unused, top-level ``out_channels``; ``export_checkpoint`` reads
  the sizes the mask net was built with;
* a hand-written inference yaml whose Pretrainer ``paths:`` point at the
  run's checkpoint files (no ``.ckpt`` next to the yaml) loads in
  ``MossFormerSeparation`` as it does in ``SepformerSeparation``.

The yaml below is written for these tests (SepFormer-shaped, not a copy of
SpeechBrain's recipe file).
"""

import os

import pytest
import torch
import yaml
from speechbrain.inference.separation import SepformerSeparation

from speechbrain_mossformer.export_checkpoint import (
    export_checkpoint,
    read_model_config,
)
from speechbrain_mossformer.inference import (
    ModelLoadError,
    MossFormerSeparation,
)
from speechbrain_mossformer.pretrained import load_modules

MODEL_YAML = """\
sample_rate: 8000
num_spks: 2
N_encoder_out: 16
out_channels: 256          # SepFormer's width, left in place and unused
kernel_size: 16
kernel_stride: 8
Encoder: !new:speechbrain.lobes.models.dual_path.Encoder
    kernel_size: !ref <kernel_size>
    out_channels: !ref <N_encoder_out>
MaskNet: !new:speechbrain_mossformer.lobes.models.mossformer.MossFormerMaskNet
    in_channels: !ref <N_encoder_out>
    out_channels: 16
    num_blocks: 1
    num_spks: !ref <num_spks>
    group_size: 8
    query_key_dim: 8
Decoder: !new:speechbrain.lobes.models.dual_path.Decoder
    in_channels: !ref <N_encoder_out>
    out_channels: 1
    kernel_size: !ref <kernel_size>
    stride: !ref <kernel_stride>
    bias: False
modules:
    encoder: !ref <Encoder>
    decoder: !ref <Decoder>
    masknet: !ref <MaskNet>
"""


@pytest.fixture
def run(tmp_path):
    """A fabricated SepFormer-recipe run: yaml + one checkpoint folder."""
    root = tmp_path / "run"
    ckpt = root / "save" / "CKPT+2026-01-01+00-00-00+00"
    os.makedirs(ckpt)
    (root / "hyperparams.yaml").write_text(
        "data_folder: !PLACEHOLDER\n" + MODEL_YAML, encoding="utf-8")
    torch.manual_seed(0)
    modules = load_modules(MODEL_YAML)
    states = {name: m.state_dict() for name, m in modules.items()}
    for name, state in states.items():
        torch.save(state, ckpt / f"{name}.ckpt")
    (ckpt / "CKPT.yaml").write_text(yaml.safe_dump({"si-snr": -3.0}))
    return str(root), str(ckpt), states


def test_export_reads_the_sizes_the_mask_net_was_built_with(run, tmp_path):
    root, _, states = run
    cfg = read_model_config(os.path.join(root, "hyperparams.yaml"))
    assert (cfg["out_channels"], cfg["N_encoder_out"], cfg["num_blocks"],
            cfg["group_size"], cfg["query_key_dim"]) == (16, 16, 1, 8, 8)
    # arguments the yaml leaves out take MossFormerMaskNet's defaults
    assert (cfg["expansion_factor"], cfg["attn_dropout"]) == (4.0, 0.1)
    out = str(tmp_path / "exported")
    export_checkpoint(root, out)
    sep = MossFormerSeparation.from_hparams(source=out)
    for name, state in states.items():
        for key, value in sep.mods[name].state_dict().items():
            assert torch.equal(value, state[key]), (name, key)


def _inference_folder(tmp_path, ckpt):
    folder = tmp_path / "infer"
    folder.mkdir()
    (folder / "hyperparams.yaml").write_text(
        MODEL_YAML
        + "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer\n"
        "    loadables:\n"
        "        encoder: !ref <Encoder>\n"
        "        masknet: !ref <MaskNet>\n"
        "        decoder: !ref <Decoder>\n"
        "    paths:\n"
        f"        encoder: {ckpt}/encoder.ckpt\n"
        f"        masknet: {ckpt}/masknet.ckpt\n"
        f"        decoder: {ckpt}/decoder.ckpt\n",
        encoding="utf-8",
    )
    return str(folder) + "/"


def test_pretrainer_paths_load_like_stock(run, tmp_path):
    _, ckpt, states = run
    folder = _inference_folder(tmp_path, ckpt)
    ours = MossFormerSeparation.from_hparams(
        source=folder, savedir=str(tmp_path / "c1"))
    stock = SepformerSeparation.from_hparams(
        source=folder, savedir=str(tmp_path / "c2"))
    for key, value in ours.mods["masknet"].state_dict().items():
        assert torch.equal(value, states["masknet"][key]), key
    mix = torch.randn(1, 800)
    torch.testing.assert_close(ours.separate_batch(mix),
                               stock.separate_batch(mix))


def test_missing_pretrainer_path_is_named(run, tmp_path):
    _, ckpt, _ = run
    os.remove(os.path.join(ckpt, "masknet.ckpt"))
    folder = _inference_folder(tmp_path, ckpt)
    with pytest.raises(ModelLoadError,
                       match=r"missing \['masknet.ckpt'\] \(nor found at "
                       r"the pretrainer's paths"):
        MossFormerSeparation.from_hparams(source=folder)
