"""Convert an official ModelScope MossFormer checkpoint to SpeechBrain.

Usage::

    python -m speechbrain_mossformer.convert MODELSCOPE_DIR OUT_DIR

``MODELSCOPE_DIR`` is a downloaded ModelScope model folder (for example
``damo/speech_mossformer_separation_temporal_8k``) holding ``encoder.bin``,
``decoder.bin``, ``masknet.bin`` and the model settings, either in
``configuration.json`` (``{"model": {...}}``, as released) or in
``model_config.json`` (the keyword arguments alone). ``OUT_DIR`` becomes a
SpeechBrain pretrained folder (``hyperparams.yaml``, ``encoder.ckpt``,
``masknet.ckpt``, ``decoder.ckpt``).

Every key and shape is checked: a missing, unexpected or mis-shaped key is
an error that names it. The official model stores frozen rotary frequencies
under every block and the positional-encoding frequencies as a buffer; these
are checked against the values this implementation computes and dropped.

Authors
 * speechbrain-mossformer contributors 2026
"""

import argparse
import json
import os
import re
import sys

import torch

from speechbrain_mossformer.pretrained import write_pretrained_folder


class ConversionError(ValueError):
    """The ModelScope folder cannot be converted; the message says why."""


# Official ModelScope names -> our names (mask net, after "mask_net." is
# dropped, as in masknet.bin).
_BLOCK = r"mdl\.att_mdl\.mossformerM\.layers\.(\d+)\."
_FFCONVM = r"(to_hidden|to_qk|to_out)\."
_MASKNET_RULES = [
    (re.compile(_BLOCK + _FFCONVM + r"mdl\.0\.g$"), r"mossformer.blocks.\1.\2.norm.g"),
    (
        re.compile(_BLOCK + _FFCONVM + r"mdl\.1\.(weight|bias)$"),
        r"mossformer.blocks.\1.\2.linear.\3",
    ),
    (
        re.compile(_BLOCK + _FFCONVM + r"mdl\.3\.sequential\.1\.conv\.weight$"),
        r"mossformer.blocks.\1.\2.conv.depthwise.weight",
    ),
    (
        re.compile(_BLOCK + r"qk_offset_scale\.(gamma|beta)$"),
        r"mossformer.blocks.\1.qk_offset_scale.\2",
    ),
    (re.compile(r"^mdl\.att_mdl\.norm\.norm\.(weight|bias)$"), r"mossformer.norm.\1"),
    (re.compile(r"^mdl\.att_norm\.(weight|bias)$"), r"att_norm.\1"),
    (
        re.compile(
            r"^(norm|conv1d_encoder|conv1d_out|conv1_decoder|prelu|pos_enc"
            r"|output\.0|output_gate\.0)\.(weight|bias|scale)$"
        ),
        r"\1.\2",
    ),
]
_ROTARY_FREQS = re.compile(_BLOCK + r"rotary_pos_emb\.freqs$")
_POS_INV_FREQ = "pos_enc.inv_freq"

#: The official config keys the converter reads, with the official defaults.
OFFICIAL_DEFAULTS = {
    "kernel_size": 16,
    "out_channels": 512,
    "in_channels": 512,
    "stride": 8,
    "bias": False,
    "num_blocks": 24,
    "d_model": 512,
    "attn_dropout": 0.1,
    "group_size": 256,
    "query_key_dim": 128,
    "expansion_factor": 4.0,
    "causal": False,
    "norm": "ln",
    "num_spks": 2,
}


def read_modelscope_config(model_dir):
    """Reads the model keyword arguments of a ModelScope MossFormer folder.

    Arguments
    ---------
    model_dir : str
        Folder with ``configuration.json`` or ``model_config.json``.

    Returns
    -------
    dict
        The official keyword arguments (official defaults filled in).

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> with open(os.path.join(tmp, "configuration.json"), "w") as f:
    ...     json.dump({"framework": "pytorch",
    ...                "model": {"type": "speech_mossformer_separation_"
    ...                          "temporal_8k", "num_blocks": 2}}, f)
    >>> read_modelscope_config(str(tmp))["num_blocks"]
    2
    """
    for name in ("configuration.json", "model_config.json"):
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            break
    else:
        raise ConversionError(
            f"{model_dir}: no configuration.json or model_config.json found; "
            "a ModelScope MossFormer folder has configuration.json"
        )
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise ConversionError(f"{path}: cannot read JSON ({err})") from None
    if name == "configuration.json":
        if not isinstance(data.get("model"), dict):
            raise ConversionError(
                f"{path}: expected a 'model' object with the model settings"
            )
        data = {k: v for k, v in data["model"].items() if k != "type"}
    config = dict(OFFICIAL_DEFAULTS)
    config.update({k: v for k, v in data.items() if k in OFFICIAL_DEFAULTS})
    return config


def to_speechbrain_config(official, sample_rate=8000):
    """Maps the official model settings to our configuration keys.

    Arguments
    ---------
    official : dict
        Official keyword arguments (see ``OFFICIAL_DEFAULTS``).
    sample_rate : int
        Sample rate the model was trained at (the release: 8000).

    Returns
    -------
    dict
        Configuration for ``write_pretrained_folder``.

    Example
    -------
    >>> cfg = to_speechbrain_config(OFFICIAL_DEFAULTS)
    >>> cfg["N_encoder_out"], cfg["num_blocks"], cfg["num_spks"]
    (512, 24, 2)
    """
    if official["causal"]:
        raise ConversionError(
            "causal=True checkpoints are not supported (the release is "
            "non-causal)"
        )
    if official["norm"] != "ln":
        raise ConversionError(
            f"norm={official['norm']!r} is not supported (the release uses "
            "'ln')"
        )
    if official["stride"] != official["kernel_size"] // 2:
        raise ConversionError(
            f"stride {official['stride']} must be kernel_size // 2 = "
            f"{official['kernel_size'] // 2}"
        )
    if official["bias"]:
        raise ConversionError(
            "decoder bias=True is not supported by SpeechBrain's Decoder "
            "configuration used here (the release has bias=False)"
        )
    if not (
        official["in_channels"]
        == official["out_channels"]
        == official["d_model"]
    ):
        raise ConversionError(
            "the official model needs in_channels == out_channels == "
            f"d_model, got {official['in_channels']}, "
            f"{official['out_channels']}, {official['d_model']}"
        )
    return {
        "sample_rate": int(sample_rate),
        "num_spks": int(official["num_spks"]),
        "kernel_size": int(official["kernel_size"]),
        "N_encoder_out": int(official["out_channels"]),
        "out_channels": int(official["d_model"]),
        "num_blocks": int(official["num_blocks"]),
        "group_size": int(official["group_size"]),
        "query_key_dim": int(official["query_key_dim"]),
        "expansion_factor": float(official["expansion_factor"]),
        "attn_dropout": float(official["attn_dropout"]),
    }


def convert_masknet_state(
    official_state, query_key_dim, out_channels, origin=None
):
    """Renames an official ``masknet.bin`` state dict to our names.

    Frozen frequency tables (rotary ``freqs`` under every block and the
    positional ``inv_freq`` buffer) are checked against ours and dropped.

    Arguments
    ---------
    official_state : dict
        The official mask-net state dict.
    query_key_dim : int
        Query/key width (sets the rotary size, ``min(32, query_key_dim)``).
    out_channels : int
        Model width (sets the positional-encoding size).
    origin : dict, optional
        Filled with ``our key -> official key`` (for error messages).

    Returns
    -------
    dict
        State dict for ``MossFormerMaskNet``.

    Example
    -------
    >>> sd = {"mdl.att_mdl.mossformerM.layers.3.to_qk.mdl.1.weight":
    ...       torch.zeros(2, 2)}
    >>> list(convert_masknet_state(sd, 8, 16))
    ['mossformer.blocks.3.to_qk.linear.weight']
    """
    from speechbrain_mossformer.lobes.models.mossformer import (
        RotaryEmbedding,
        ScaledSinuEmbedding,
    )

    rotary = RotaryEmbedding(min(32, query_key_dim)).inv_freq
    positional = ScaledSinuEmbedding(out_channels).inv_freq
    converted = {}
    for key, value in official_state.items():
        if _ROTARY_FREQS.search(key):
            _check_frozen(key, value, rotary)
            continue
        if key == _POS_INV_FREQ:
            _check_frozen(key, value, positional)
            continue
        for pattern, replacement in _MASKNET_RULES:
            if pattern.search(key):
                new_key = pattern.sub(replacement, key)
                break
        else:
            raise ConversionError(
                f"masknet.bin: unexpected key '{key}' (not part of the "
                "official MossFormer mask net)"
            )
        converted[new_key] = value
        if origin is not None:
            origin[new_key] = key
    return converted


def _check_frozen(key, value, expected):
    """Checks a frozen frequency table against the one we compute."""
    if tuple(value.shape) != tuple(expected.shape) or not torch.allclose(
        value.float(), expected, rtol=1e-6, atol=0
    ):
        raise ConversionError(
            f"masknet.bin: '{key}' holds frequencies {tuple(value.shape)} "
            f"that differ from the standard ones {tuple(expected.shape)}; "
            "this checkpoint was not made by the official MossFormer code"
        )


def _load_bin(model_dir, name):
    """Loads one of the official ``*.bin`` state dicts."""
    path = os.path.join(model_dir, name)
    if not os.path.isfile(path):
        raise ConversionError(f"{path}: file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt file, pickle error, ...
        from speechbrain_mossformer.inference import checkpoint_problem

        raise ConversionError(f"{path}: {checkpoint_problem(err)}") from None
    if not isinstance(state, dict):
        raise ConversionError(f"{path}: expected a state dict")
    return state


def convert(model_dir, out_dir, sample_rate=8000):
    """Converts a ModelScope MossFormer folder to a SpeechBrain folder.

    Arguments
    ---------
    model_dir : str
        ModelScope folder (``encoder.bin``, ``decoder.bin``,
        ``masknet.bin``, ``configuration.json``).
    out_dir : str
        SpeechBrain pretrained folder to write.
    sample_rate : int
        Sample rate of the model (the official release is 8 kHz).

    Returns
    -------
    dict
        The configuration written to ``hyperparams.yaml``.

    Example
    -------
    >>> import glob
    >>> fixtures = glob.glob("../shared/fixtures/modelscope_mossformer/tiny-2spk")
    >>> if fixtures:
    ...     cfg = convert(fixtures[0], str(getfixture("tmpdir")))
    ...     assert cfg["num_blocks"] == 2
    """
    if not os.path.isdir(model_dir):
        raise ConversionError(f"{model_dir}: not a folder")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ConversionError(f"{out_dir}: exists and is not a folder")
    official = read_modelscope_config(model_dir)
    config = to_speechbrain_config(official, sample_rate)
    origin = {}
    states = {
        "encoder": _load_bin(model_dir, "encoder.bin"),
        "decoder": _load_bin(model_dir, "decoder.bin"),
        "masknet": convert_masknet_state(
            _load_bin(model_dir, "masknet.bin"),
            config["query_key_dim"],
            config["out_channels"],
            origin,
        ),
    }
    _check_shapes(config, states, origin)
    try:
        write_pretrained_folder(
            out_dir,
            config,
            states,
            origin=f"converted from ModelScope folder "
            f"{os.path.basename(os.path.abspath(model_dir))}",
        )
    except (KeyError, ValueError) as err:
        raise ConversionError(str(err)) from None
    except OSError as err:
        raise ConversionError(
            f"{out_dir}: cannot write the pretrained folder: "
            f"{err.strerror or err}"
        ) from None
    return config


def _check_shapes(config, states, origin):
    """Names the official key of any tensor whose shape does not fit."""
    from speechbrain_mossformer.pretrained import (
        load_modules,
        render_hyperparams,
    )

    modules = load_modules(render_hyperparams(config))
    for name, state in states.items():
        expected = modules[name].state_dict()
        for key, value in state.items():
            if key in expected and value.shape != expected[key].shape:
                official = origin.get(key, key) if name == "masknet" else key
                raise ConversionError(
                    f"{name}.bin: '{official}' has shape "
                    f"{tuple(value.shape)} but the configuration "
                    f"({config['num_blocks']} blocks, "
                    f"{config['out_channels']} channels, query/key "
                    f"{config['query_key_dim']}) needs "
                    f"{tuple(expected[key].shape)}"
                )


def main(argv=None):
    """Command line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_mossformer.convert",
        description="Convert an official ModelScope MossFormer checkpoint "
        "into a SpeechBrain pretrained folder.",
    )
    parser.add_argument("modelscope_dir", help="ModelScope model folder")
    parser.add_argument("out_dir", help="SpeechBrain folder to write")
    parser.add_argument(
        "--sample-rate",
        type=int,
        default=8000,
        help="sample rate of the model (default 8000, as released)",
    )
    args = parser.parse_args(argv)
    try:
        config = convert(args.modelscope_dir, args.out_dir, args.sample_rate)
    except ConversionError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.out_dir}: {config['num_blocks']} blocks, "
        f"{config['N_encoder_out']} channels, {config['num_spks']} speakers, "
        f"{config['sample_rate']} Hz"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
