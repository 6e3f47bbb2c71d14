"""Export a recipe's best checkpoint as a pretrained folder.

Usage::

    python -m speechbrain_mossformer.export_checkpoint \\
        RECIPE_OUTPUT_FOLDER OUT_DIR [--ckpt CKPT_FOLDER] [--key si-snr]

``RECIPE_OUTPUT_FOLDER`` is what a separation recipe wrote
(``results/<model>/<seed>``): ``hyperparams.yaml`` (copied there by
SpeechBrain's ``create_experiment_directory``) and
``save/CKPT+<time>/`` folders with ``CKPT.yaml`` (the meta data, e.g.
``si-snr``) and ``encoder.ckpt``, ``masknet.ckpt``, ``decoder.ckpt``.

The model configuration is read from the top-level keys (and the
``MaskNet: !new:...MossFormerMaskNet`` arguments) of
``hyperparams.yaml`` without building anything (the recipe yaml creates
data loaders, optimisers, etc.). The chosen checkpoint is the one with the
smallest ``--key`` value: the recipes store the *negative* SI-SNR loss
under ``si-snr``, so smallest is best (``--mode max`` for other keys).
``OUT_DIR`` gets ``hyperparams.yaml``, the three ``.ckpt`` files (checked
strictly against the model) and ``custom.py`` (for ``foreign_class``).

Authors
 * speechbrain-mossformer contributors 2026
"""

import argparse
import glob
import math
import os
import sys

import torch

from speechbrain_mossformer.errors import first_line
from speechbrain_mossformer.inference import checkpoint_problem
from speechbrain_mossformer.pretrained import (
    MODULE_NAMES,
    OutputFolderError,
    check_output_folder,
    write_pretrained_folder,
)

#: Top-level keys of the recipe yaml that define the model.
REQUIRED_KEYS = (
    "sample_rate",
    "num_spks",
    "kernel_size",
    "N_encoder_out",
    "out_channels",
    "num_blocks",
    "group_size",
    "query_key_dim",
    "expansion_factor",
    "attn_dropout",
)
#: Optional keys (per-block widths of pruned models).
OPTIONAL_KEYS = ("hidden_dims", "query_key_dims")


class ExportError(ValueError):
    """The recipe output cannot be exported; the message says why."""


def plain_value(value):
    """ruamel round-trip values -> plain Python values.

    Example
    -------
    >>> from ruamel.yaml import YAML
    >>> data = YAML(typ="rt").load("lr: 1.5e-4\\nsizes: [1, 2]\\nname: x")
    >>> [type(plain_value(v)).__name__ for v in data.values()]
    ['float', 'list', 'str']
    """
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    return value


def yaml_tag(value):
    """The tag of a ruamel round-trip value (``"!ref"``, ``"!new:..."``),
    or None for a plain value.

    Example
    -------
    >>> from ruamel.yaml import YAML
    >>> data = YAML(typ="rt").load("a: !ref <b>\\nb: 2\\nc: !PLACEHOLDER")
    >>> [yaml_tag(v) for v in data.values()]
    ['!ref', None, '!PLACEHOLDER']
    """
    return getattr(getattr(value, "tag", None), "value", None)


def _follow_refs(data, key, where, depth=0):
    """Value of top-level ``key``, following ``!ref <other_key>`` links."""
    value = data.get(key)
    tag = yaml_tag(value)
    if tag is None:
        return value
    text = str(getattr(value, "value", "")).strip()
    if tag == "!ref" and text.startswith("<") and text.endswith(">"):
        if depth > 20:
            raise ExportError(f"{where}: '{key}': circular !ref")
        return _follow_refs(data, text[1:-1], where, depth + 1)
    raise ExportError(
        f"{where}: cannot evaluate '{key}: {tag} {text}' without "
        f"building objects; give it a plain value"
    )


#: ``MossFormerMaskNet`` argument -> model key it defines.
MASKNET_ARGUMENTS = {
    "in_channels": "N_encoder_out",
    "out_channels": "out_channels",
    "num_blocks": "num_blocks",
    "num_spks": "num_spks",
    "group_size": "group_size",
    "query_key_dim": "query_key_dim",
    "expansion_factor": "expansion_factor",
    "attn_dropout": "attn_dropout",
    "hidden_dims": "hidden_dims",
    "query_key_dims": "query_key_dims",
}


def _with_masknet_arguments(data, where):
    """Top-level keys overlaid with the arguments the ``MaskNet`` entry
    was built with, when it is a ``MossFormerMaskNet``.

    A SepFormer recipe yaml edited as the README says gives the mask net
    its sizes inline and keeps SepFormer's own top-level ``out_channels``
    (unused); the mask net's arguments are what the checkpoint was trained
    with, so they win. Arguments it leaves out take their default in
    ``MossFormerMaskNet`` unless a top-level key gives them.
    """
    node = data.get("MaskNet")
    tag = str(yaml_tag(node) or "")
    if not isinstance(node, dict) or not tag.endswith("MossFormerMaskNet"):
        return data
    import inspect

    from speechbrain_mossformer.lobes.models.mossformer import (
        MossFormerMaskNet,
    )

    defaults = {
        name: param.default
        for name, param in inspect.signature(
            MossFormerMaskNet.__init__).parameters.items()
        if param.default is not inspect.Parameter.empty
    }
    merged = dict(data)
    for arg, key in MASKNET_ARGUMENTS.items():
        if arg in node:
            value = node[arg]
            ref = yaml_tag(value)
            text = str(getattr(value, "value", "")).strip()
            if ref == "!ref" and text.startswith("<") and text.endswith(">"):
                # an unresolved "!ref <key>" (raw yaml): follow it
                value = _follow_refs(data, text[1:-1], where)
            merged[key] = value
        elif key not in merged and arg in defaults:
            merged[key] = defaults[arg]
    return merged


def read_model_config(hparams_path):
    """Reads the model configuration from a recipe's ``hyperparams.yaml``.

    Top-level keys are read, and the arguments of a ``MaskNet:
    !new:...MossFormerMaskNet`` entry take precedence over them (a
    SepFormer yaml with the mask net swapped in, see the README); ``!ref``
    references are resolved with HyperPyYAML's ``resolve_references`` and
    every other tag (``!new:``, ``!name:``, ``!apply:``) is parsed but
    never executed.

    Arguments
    ---------
    hparams_path : str
        The yaml file.

    Returns
    -------
    dict
        Keys of ``REQUIRED_KEYS`` and ``OPTIONAL_KEYS`` (missing optional
        keys are ``None``).

    Example
    -------
    >>> path = getfixture("tmpdir") / "hyperparams.yaml"
    >>> _ = path.write_text(
    ...     "sample_rate: 8000\\nnum_spks: 2\\nkernel_size: 16\\n"
    ...     "N_encoder_out: 64\\nout_channels: !ref <N_encoder_out>\\n"
    ...     "num_blocks: 2\\ngroup_size: 16\\nquery_key_dim: 32\\n"
    ...     "expansion_factor: 4.0\\nattn_dropout: 0.1\\n"
    ...     "seed: 3\\nrun: !apply:not.a.module.run [!ref <seed>]\\n",
    ...     encoding="utf-8")
    >>> cfg = read_model_config(str(path))
    >>> cfg["out_channels"], cfg["hidden_dims"]
    (64, None)
    """
    from hyperpyyaml import resolve_references
    from ruamel.yaml import YAML

    if not os.path.isfile(hparams_path):
        raise ExportError(f"{hparams_path}: no such file")
    with open(hparams_path, encoding="utf-8") as f:
        text = f.read()
    try:
        resolved = resolve_references(text).getvalue()
    except Exception:
        # e.g. an unfilled !PLACEHOLDER elsewhere in the file: read the raw
        # file and follow plain "!ref <key>" links of the model keys only
        resolved = None
    try:
        data = YAML(typ="rt").load(resolved if resolved is not None
                                   else text)
    except Exception as err:
        raise ExportError(
            f"{hparams_path}: not valid yaml: {first_line(err)}"
        ) from None
    if not isinstance(data, dict):
        raise ExportError(f"{hparams_path}: expected a mapping at top level")
    data = _with_masknet_arguments(data, hparams_path)
    missing = [k for k in REQUIRED_KEYS if k not in data]
    masknet = str(yaml_tag(data.get("MaskNet")) or "").split(":", 1)[-1]
    if missing and masknet.startswith("speechbrain."):
        # one of SpeechBrain's own models (a SepFormer run's
        # Dual_Path_Model): say that, not the MossFormer sizes it lacks
        raise ExportError(
            f"{hparams_path}: MaskNet is {masknet}, not a MossFormerMaskNet:"
            " only MossFormer runs can be exported"
        )
    if missing:
        raise ExportError(
            f"{hparams_path}: missing model keys {missing} (needed: "
            f"{list(REQUIRED_KEYS)})"
        )
    config = {}
    for key in REQUIRED_KEYS + OPTIONAL_KEYS:
        value = plain_value(_follow_refs(data, key, hparams_path))
        if key in REQUIRED_KEYS and (
            isinstance(value, bool) or not isinstance(value, (int, float))
        ):
            raise ExportError(
                f"{hparams_path}: '{key}' must be a number, got {value!r}"
            )
        if key in OPTIONAL_KEYS and value is not None and not (
            isinstance(value, list)
            and all(isinstance(v, int) and not isinstance(v, bool)
                    for v in value)
        ):
            raise ExportError(
                f"{hparams_path}: '{key}' must be a list of integers or "
                f"null, got {value!r}"
            )
        config[key] = value
    return config


def describe_meta(key, value):
    """A checkpoint's meta value as a user reads it: the recipes keep the
    loss, the negative SI-SNR, under ``si-snr`` (as SpeechBrain's do), so
    that one is given as the SI-SNR in dB, with its sign.

    Example
    -------
    >>> describe_meta("si-snr", -15.08114)
    'validation SI-SNR 15.08 dB'
    >>> describe_meta("epoch", 4)
    'epoch: 4'
    """
    if key == "si-snr" and isinstance(value, (int, float)):
        return f"validation SI-SNR {-value:.2f} dB"
    return f"{key}: {value}"


def read_checkpoint_meta(ckpt_dir):
    """Reads ``CKPT.yaml`` of a checkpoint folder (plain yaml) as a dict.

    Arguments
    ---------
    ckpt_dir : str
        A ``CKPT+*`` folder.

    Returns
    -------
    dict
        The meta data (``{}`` when there is no ``CKPT.yaml`` or it is not
        a mapping).

    Example
    -------
    >>> from speechbrain_mossformer.checkpoints import AtomicCheckpointer
    >>> tmp = str(getfixture("tmpdir"))
    >>> ckpter = AtomicCheckpointer(tmp, {"model": torch.nn.Linear(2, 2)})
    >>> ckpt = ckpter.save_checkpoint(meta={"si-snr": -11.5})
    >>> meta = read_checkpoint_meta(str(ckpt.path))
    >>> sorted(meta), meta["si-snr"]
    (['end-of-epoch', 'si-snr', 'unixtime', 'world_size'], -11.5)
    >>> read_checkpoint_meta(tmp)  # no CKPT.yaml there
    {}
    """
    import yaml

    path = os.path.join(ckpt_dir, "CKPT.yaml")
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            meta = yaml.safe_load(f)
    except Exception as err:
        raise ExportError(
            f"{path}: not valid yaml: {first_line(err)}"
        ) from None
    return meta if isinstance(meta, dict) else {}


def find_best_checkpoint(recipe_dir, key="si-snr", mode="min"):
    """Finds the best ``save/CKPT+*`` folder of a recipe output.

    Arguments
    ---------
    recipe_dir : str
        Recipe output folder.
    key : str
        Meta key of ``CKPT.yaml`` to rank by.
    mode : str
        ``"min"`` (loss-like keys, e.g. the negative SI-SNR ``si-snr``)
        or ``"max"``.

    Returns
    -------
    (str, float)
        The checkpoint folder and its key value. Checkpoints whose value is
        missing, not a number, NaN or infinite are not candidates.

    Example
    -------
    >>> root = str(getfixture("tmpdir"))
    >>> for name, value in [("a", -10.0), ("b", -12.5), ("c", -11.0)]:
    ...     d = os.path.join(root, "save", "CKPT+" + name)
    ...     os.makedirs(d)
    ...     with open(os.path.join(d, "CKPT.yaml"), "w") as f:
    ...         _ = f.write(f"si-snr: {value}\\n")
    >>> path, value = find_best_checkpoint(root)
    >>> os.path.basename(path), value
    ('CKPT+b', -12.5)
    """
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    if not os.path.isdir(recipe_dir):
        raise ExportError(f"{recipe_dir}: no such folder")
    save_dir = os.path.join(recipe_dir, "save")
    ckpts = sorted(
        d for d in glob.glob(os.path.join(glob.escape(save_dir), "CKPT+*"))
        if os.path.isdir(d)
    )
    if not ckpts:
        raise ExportError(
            f"{recipe_dir}: no checkpoint (no save/CKPT+* folder)"
        )
    scored = []
    not_finite = 0
    for ckpt in ckpts:
        value = read_checkpoint_meta(ckpt).get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(value):
                scored.append((float(value), ckpt))
            else:
                not_finite += 1
    if not scored:
        if not_finite:
            raise ExportError(
                f"{save_dir}: none of the {len(ckpts)} checkpoints has a "
                f"finite '{key}' in its CKPT.yaml ({not_finite} NaN or "
                f"infinite; use --ckpt to pick one)"
            )
        raise ExportError(
            f"{save_dir}: none of the {len(ckpts)} checkpoints has "
            f"'{key}' in its CKPT.yaml (use --ckpt to pick one)"
        )
    pick = min if mode == "min" else max
    value, ckpt = pick(scored, key=lambda item: item[0])
    return ckpt, value


def _strip_prefixes(state):
    """Removes DDP (``module.``) and torch.compile (``_orig_mod.``)
    prefixes that every key shares."""
    for prefix in ("module.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_checkpoint_states(ckpt_dir):
    """Reads ``encoder/masknet/decoder.ckpt`` of a checkpoint folder.

    Arguments
    ---------
    ckpt_dir : str
        A ``CKPT+*`` folder.

    Returns
    -------
    dict
        ``{"encoder": state_dict, "masknet": ..., "decoder": ...}``, with
        the ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes
        that all keys of a file share removed.

    Example
    -------
    >>> from speechbrain_mossformer.pretrained import (load_modules,
    ...     render_hyperparams)
    >>> ckpt = str(getfixture("tmpdir"))
    >>> mods = load_modules(render_hyperparams({"N_encoder_out": 16,
    ...     "out_channels": 16, "num_blocks": 1, "query_key_dim": 8}))
    >>> for name, module in mods.items():  # as saved from DDP wrappers
    ...     sd = {"module." + k: v for k, v in module.state_dict().items()}
    ...     torch.save(sd, os.path.join(ckpt, name + ".ckpt"))
    >>> states = load_checkpoint_states(ckpt)
    >>> sorted(states), list(states["encoder"])
    (['decoder', 'encoder', 'masknet'], ['conv1d.weight'])
    """
    if not os.path.isdir(ckpt_dir):
        raise ExportError(f"{ckpt_dir}: no such checkpoint folder")
    states = {}
    for name in MODULE_NAMES:
        path = os.path.join(ckpt_dir, f"{name}.ckpt")
        if not os.path.isfile(path):
            raise ExportError(f"{ckpt_dir}: missing {name}.ckpt")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ExportError(f"{path}: {checkpoint_problem(err)}") from None
        if not isinstance(state, dict):
            raise ExportError(f"{path}: expected a state dict")
        states[name] = _strip_prefixes(state)
    return states


def export_checkpoint(recipe_dir, out_dir, ckpt=None, key="si-snr",
                      mode="min"):
    """Writes a pretrained folder from a recipe output folder.

    Arguments
    ---------
    recipe_dir : str
        Recipe output folder (``hyperparams.yaml``, ``save/CKPT+*``).
    out_dir : str
        Pretrained folder to write.
    ckpt : str, optional
        Checkpoint folder to export instead of the best one.
    key : str
        ``CKPT.yaml`` key that ranks checkpoints.
    mode : str
        ``"min"`` or ``"max"``.

    Returns
    -------
    dict
        ``{"checkpoint": folder, "value": key value or None,
        "config": model config}``.

    Example
    -------
    >>> from speechbrain_mossformer.checkpoints import AtomicCheckpointer
    >>> from speechbrain_mossformer.pretrained import (load_modules,
    ...     render_hyperparams)
    >>> run = getfixture("tmpdir") / "run"  # a recipe's output folder
    >>> text = render_hyperparams({"N_encoder_out": 16, "out_channels": 16,
    ...     "num_blocks": 1, "group_size": 4, "query_key_dim": 8})
    >>> (run / "hyperparams.yaml").write_text(text, "utf-8", ensure=True)
    >>> ckpter = AtomicCheckpointer(str(run / "save"), load_modules(text))
    >>> for loss in (-9.0, -11.5, -10.0):  # negative SI-SNR per epoch
    ...     _ = ckpter.save_checkpoint(meta={"si-snr": loss})
    >>> out_dir = str(getfixture("tmpdir") / "pretrained")
    >>> result = export_checkpoint(str(run), out_dir)
    >>> result["value"], result["config"]["num_blocks"]
    (-11.5, 1)
    >>> sorted(os.listdir(out_dir))  # doctest: +NORMALIZE_WHITESPACE
    ['config.json', 'custom.py', 'decoder.ckpt', 'encoder.ckpt',
     'hyperparams.yaml', 'masknet.ckpt']
    """
    if not os.path.isdir(recipe_dir):
        raise ExportError(f"{recipe_dir}: no such folder")
    name = os.path.basename(os.path.normpath(recipe_dir))
    if (name == "save" or name.startswith("CKPT+")) and not os.path.isfile(
        os.path.join(recipe_dir, "hyperparams.yaml")
    ):
        # the run's save/ folder or one of its checkpoints
        run = os.path.dirname(os.path.normpath(recipe_dir))
        if name.startswith("CKPT+"):
            run = os.path.dirname(run)
        raise ExportError(
            f"{recipe_dir}: give the run folder ({run or '.'}, the one that "
            "holds hyperparams.yaml and save/), and --ckpt for one "
            "checkpoint"
        )
    config = read_model_config(os.path.join(recipe_dir, "hyperparams.yaml"))
    value = None
    if ckpt is None:
        ckpt, value = find_best_checkpoint(recipe_dir, key, mode)
    else:
        value = read_checkpoint_meta(ckpt).get(key)
    try:
        # never into the run folder (its hyperparams.yaml) or a checkpoint
        check_output_folder(
            out_dir,
            protected=(recipe_dir, os.path.join(recipe_dir, "save"), ckpt),
        )
    except OutputFolderError as err:
        raise ExportError(str(err)) from None
    states = load_checkpoint_states(ckpt)
    origin = f"exported from {os.path.basename(os.path.normpath(ckpt))}"
    if value is not None:
        origin += f" ({describe_meta(key, value)})"
    try:
        write_pretrained_folder(out_dir, config, states, origin=origin)
    except OutputFolderError as err:
        raise ExportError(str(err)) from None
    except (KeyError, ValueError) as err:
        raise ExportError(
            f"{ckpt}: the checkpoint does not match the model in "
            f"hyperparams.yaml: {err}"
        ) from None
    return {"checkpoint": ckpt, "value": value, "config": config}


def main(argv=None):
    """Command line entry point; returns the exit code (0 ok, 2 error)."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_mossformer.export_checkpoint",
        description="Write a SpeechBrain pretrained folder from the best "
        "checkpoint of a MossFormer recipe output folder.",
    )
    parser.add_argument("recipe_output_folder",
                        help="folder with hyperparams.yaml and save/CKPT+*")
    parser.add_argument("out_dir", help="pretrained folder to write")
    parser.add_argument("--ckpt", default=None, metavar="PATH",
                        help="export this CKPT+* folder instead of the best")
    parser.add_argument("--key", default="si-snr",
                        help="CKPT.yaml key to rank checkpoints "
                        "(default si-snr, the negative SI-SNR loss)")
    parser.add_argument("--mode", choices=("min", "max"), default="min",
                        help="best = smallest (default) or largest key")
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    try:
        result = export_checkpoint(
            args.recipe_output_folder, args.out_dir, args.ckpt, args.key,
            args.mode,
        )
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cfg = result["config"]
    value = result["value"]
    print(
        f"wrote {args.out_dir} from {result['checkpoint']}"
        + (f" ({describe_meta(args.key, value)})" if value is not None
           else "")
        + f": {cfg['num_blocks']} blocks, {cfg['N_encoder_out']} encoder "
        f"channels, width {cfg['out_channels']}, {cfg['num_spks']} speakers, "
        f"{cfg['sample_rate']} Hz"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
