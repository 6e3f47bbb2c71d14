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
import difflib
import json
import os
import re
import sys

import torch

from speechbrain_mossformer.pretrained import (
    OutputFolderError,
    check_output_folder,
    write_pretrained_folder,
)


class ConversionError(ValueError):
    """The ModelScope folder cannot be converted; the message says why."""


# Mask-net parameter names: (official name in masknet.bin, after "mask_net."
# is dropped; our name). "{block}" is a block index, the other fields take
# one of the words listed in _NAME_FIELDS. One table serves both directions.
_NAME_PAIRS = [
    (
        "mdl.att_mdl.mossformerM.layers.{block}.{ffconvm}.mdl.0.g",
        "mossformer.blocks.{block}.{ffconvm}.norm.g",
    ),
    (
        "mdl.att_mdl.mossformerM.layers.{block}.{ffconvm}.mdl.1.{param}",
        "mossformer.blocks.{block}.{ffconvm}.linear.{param}",
    ),
    (
        "mdl.att_mdl.mossformerM.layers.{block}.{ffconvm}"
        ".mdl.3.sequential.1.conv.weight",
        "mossformer.blocks.{block}.{ffconvm}.conv.depthwise.weight",
    ),
    (
        "mdl.att_mdl.mossformerM.layers.{block}.qk_offset_scale.{offset}",
        "mossformer.blocks.{block}.qk_offset_scale.{offset}",
    ),
    ("mdl.att_mdl.norm.norm.{param}", "mossformer.norm.{param}"),
    ("mdl.att_norm.{param}", "att_norm.{param}"),
    ("{top}.{tensor}", "{top}.{tensor}"),
]
_NAME_FIELDS = {
    "block": r"\d+",
    "ffconvm": "to_hidden|to_qk|to_out",
    "param": "weight|bias",
    "offset": "gamma|beta",
    "top": "norm|conv1d_encoder|conv1d_out|conv1_decoder|prelu|pos_enc"
    r"|output\.0|output_gate\.0",
    "tensor": "weight|bias|scale",
}


def _name_rule(source, target):
    """A (regex, template) pair that renames ``source`` names to ``target``."""
    pattern = re.escape(source)
    for field, choices in _NAME_FIELDS.items():
        pattern = pattern.replace(
            re.escape("{" + field + "}"), f"(?P<{field}>{choices})"
        )
    return re.compile(f"^{pattern}$"), target


_MASKNET_RULES = [_name_rule(official, ours) for official, ours in _NAME_PAIRS]
_REVERSE_RULES = [_name_rule(ours, official) for official, ours in _NAME_PAIRS]
_ROTARY_FREQS = re.compile(
    r"^mdl\.att_mdl\.mossformerM\.layers\.\d+\.rotary_pos_emb\.freqs$"
)


def _rename(key, rules):
    """``key`` renamed by the first matching rule, or None."""
    for pattern, template in rules:
        match = pattern.match(key)
        if match:
            return template.format(**match.groupdict())
    return None


def official_masknet_key(key):
    """The official ``masknet.bin`` name of one of our mask-net keys.

    Example
    -------
    >>> official_masknet_key("mossformer.blocks.1.to_qk.linear.weight")
    'mdl.att_mdl.mossformerM.layers.1.to_qk.mdl.1.weight'
    >>> official_masknet_key("conv1d_out.bias")
    'conv1d_out.bias'
    """
    return _rename(key, _REVERSE_RULES) or key


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
    if not isinstance(data, dict):
        raise ConversionError(
            f"{path}: expected a JSON object, got {type(data).__name__}"
        )
    if name == "configuration.json":
        if not isinstance(data.get("model"), dict):
            raise ConversionError(
                f"{path}: expected a 'model' object with the model settings"
            )
        data = {k: v for k, v in data["model"].items() if k != "type"}
    config = dict(OFFICIAL_DEFAULTS)
    config.update({k: v for k, v in data.items() if k in OFFICIAL_DEFAULTS})
    for key in data:
        # the official code ignores unknown settings too, but a misspelt
        # one (num_block) leaves its default in place: say so
        close = difflib.get_close_matches(str(key), OFFICIAL_DEFAULTS, n=1)
        if key not in OFFICIAL_DEFAULTS and close:
            print(
                f"warning: {path}: '{key}' is not a model setting (did you "
                f"mean '{close[0]}'?); {close[0]} stays "
                f"{config[close[0]]!r}",
                file=sys.stderr,
            )
    for key, default in OFFICIAL_DEFAULTS.items():
        value = config[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
            wanted = "true or false"
        elif isinstance(default, int):
            ok = (isinstance(value, int) and not isinstance(value, bool)
                  and value > 0)
            wanted = "a positive integer"
        elif isinstance(default, float):
            ok = (isinstance(value, (int, float))
                  and not isinstance(value, bool) and value >= 0)
            wanted = "a non-negative number"
        else:
            ok = isinstance(value, str)
            wanted = "a string"
        if not ok:
            raise ConversionError(
                f"{path}: '{key}' must be {wanted}, got {value!r}"
            )
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
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, (int, float))
        or not float(sample_rate).is_integer()
        or sample_rate <= 0
    ):
        raise ConversionError(
            f"the sample rate must be a positive integer (Hz), got "
            f"{sample_rate!r}"
        )
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


def convert_masknet_state(official_state, query_key_dim, out_channels):
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
        ScaledSinuEmbedding,
        rotary_for,
    )

    rotary = rotary_for(query_key_dim).inv_freq
    positional = ScaledSinuEmbedding(out_channels).inv_freq
    converted = {}
    for key, value in official_state.items():
        if _ROTARY_FREQS.search(key):
            _check_frozen(key, value, rotary,
                          f"query_key_dim {query_key_dim}")
            continue
        if key == _POS_INV_FREQ:
            _check_frozen(key, value, positional, f"d_model {out_channels}")
            continue
        new_key = _rename(key, _MASKNET_RULES)
        if new_key is None:
            raise ConversionError(
                f"masknet.bin: unexpected key '{key}' (not part of the "
                "official MossFormer mask net)"
            )
        converted[new_key] = value
    return converted


def _check_frozen(key, value, expected, setting):
    """Checks a frozen frequency table against the one we compute.

    ``setting`` names the configuration value that sets its size (e.g.
    ``"query_key_dim 128"``): a table of another size means that the
    configuration does not match the checkpoint. The values are compared
    at the precision the checkpoint was saved in (a half-precision copy of
    the official weights is accepted).
    """
    if tuple(value.shape) != tuple(expected.shape):
        raise ConversionError(
            f"masknet.bin: '{key}' holds {value.numel()} frequencies but the "
            f"configuration's {setting} makes {expected.numel()}: the "
            "configuration does not match this checkpoint"
        )
    if value.is_floating_point() and value.dtype not in (
        torch.float32, torch.float64
    ):
        # the table rounded to the checkpoint's precision, exactly
        expected = expected.to(value.dtype).float()
    if not torch.allclose(value.float(), expected, rtol=1e-6, atol=0):
        raise ConversionError(
            f"masknet.bin: '{key}' holds other frequencies than the official "
            "code computes; this checkpoint was not made by the official "
            "MossFormer code"
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
    for key, value in state.items():
        if not torch.is_tensor(value):
            raise ConversionError(
                f"{path}: '{key}' is a {type(value).__name__}, not a tensor"
            )
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
    try:
        # never into the ModelScope folder being read
        check_output_folder(out_dir, protected=(model_dir,))
    except OutputFolderError as err:
        raise ConversionError(str(err)) from None
    official = read_modelscope_config(model_dir)
    config = to_speechbrain_config(official, sample_rate)
    states = {
        "encoder": _load_bin(model_dir, "encoder.bin"),
        "decoder": _load_bin(model_dir, "decoder.bin"),
        "masknet": convert_masknet_state(
            _load_bin(model_dir, "masknet.bin"),
            config["query_key_dim"],
            config["out_channels"],
        ),
    }
    _check_shapes(config, states)
    try:
        write_pretrained_folder(
            out_dir,
            config,
            states,
            origin=f"converted from ModelScope folder "
            f"{os.path.basename(os.path.abspath(model_dir))}",
        )
    except (KeyError, ValueError) as err:  # incl. OutputFolderError
        raise ConversionError(str(err)) from None
    return config


def _blocks(config):
    """``"1 block"``, ``"2 blocks"``: the configuration's block count.

    Example
    -------
    >>> _blocks({"num_blocks": 1}), _blocks({"num_blocks": 24})
    ('1 block', '24 blocks')
    """
    n = int(config["num_blocks"])
    return f"{n} block{'s' if n != 1 else ''}"


def _check_shapes(config, states):
    """Names the official key of any tensor whose shape does not fit."""
    from speechbrain_mossformer.pretrained import (
        load_modules,
        render_hyperparams,
    )

    modules = load_modules(render_hyperparams(config))
    for name, state in states.items():
        expected = modules[name].state_dict()
        # the official file's names, which the user can look up
        official = official_masknet_key if name == "masknet" else str
        # keys of the model not in the file (the configuration has more
        # blocks or speakers), then keys of the file not in the model
        for word, keys, other in (("missing", expected, state),
                                  ("unexpected", state, expected)):
            names = [official(key) for key in keys if key not in other]
            if names:
                more = (f" (+{len(names) - 3} more)" if len(names) > 3
                        else "")
                raise ConversionError(
                    f"{name}.bin: {word} "
                    + ", ".join(f"'{k}'" for k in names[:3])
                    + more
                    + f" (the configuration has {_blocks(config)}, "
                    f"{config['num_spks']} speakers)"
                )
        for key, value in state.items():
            if (name == "masknet" and key == "conv1d_out.weight"
                    and value.shape[1:] == expected[key].shape[1:]
                    and value.shape[0] % config["out_channels"] == 0
                    and value.shape != expected[key].shape):
                raise ConversionError(
                    f"{name}.bin: '{official(key)}' makes masks for "
                    f"{value.shape[0] // config['out_channels']} speakers "
                    f"but the configuration has num_spks "
                    f"{config['num_spks']}"
                )
            if key in expected and value.shape != expected[key].shape:
                raise ConversionError(
                    f"{name}.bin: '{official(key)}' has shape "
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
