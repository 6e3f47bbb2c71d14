"""SpeechBrain pretrained folders for MossFormer.

A pretrained folder is what ``SepformerSeparation.from_hparams(source=DIR)``
loads::

    DIR/hyperparams.yaml   modules (encoder, masknet, decoder), pretrainer,
                           num_spks, sample_rate
    DIR/encoder.ckpt       torch.save(state_dict) of each module
    DIR/masknet.ckpt
    DIR/decoder.ckpt

This module writes such folders from a model configuration and state dicts;
the ModelScope converter, the recipe-checkpoint exporter and structured
pruning all go through ``write_pretrained_folder``.

Authors
 * speechbrain-mossformer contributors 2026
"""

import itertools
import json
import os

import torch

#: Configuration keys of a MossFormer separator, with MossFormer (L) values.
DEFAULT_CONFIG = {
    "sample_rate": 8000,
    "num_spks": 2,
    "kernel_size": 16,
    "N_encoder_out": 512,
    "out_channels": 512,
    "num_blocks": 24,
    "group_size": 256,
    "query_key_dim": 128,
    "expansion_factor": 4.0,
    "attn_dropout": 0.1,
    "hidden_dims": None,
    "query_key_dims": None,
}

MODULE_NAMES = ("encoder", "masknet", "decoder")

#: First words of the provenance line of every yaml this package writes.
WRITTEN_BY = "# Pretrained folder written by speechbrain_mossformer"

_TEMPLATE = """\
# ############################################################################
# Model: MossFormer (Zhao & Ma, ICASSP 2023) for speech separation
{written_by} ({origin}).
# Load with:
#   from speechbrain.inference.separation import SepformerSeparation
#   model = SepformerSeparation.from_hparams(source="<this folder>")
# or speechbrain_mossformer.inference.MossFormerSeparation (chunking, checks).
# ############################################################################

sample_rate: {sample_rate}
num_spks: {num_spks}

kernel_size: {kernel_size}
kernel_stride: {kernel_stride}
N_encoder_out: {N_encoder_out}
out_channels: {out_channels}
num_blocks: {num_blocks}
group_size: {group_size}
query_key_dim: {query_key_dim}
expansion_factor: {expansion_factor}
attn_dropout: {attn_dropout}
hidden_dims: {hidden_dims}
query_key_dims: {query_key_dims}

Encoder: !new:speechbrain.lobes.models.dual_path.Encoder
    kernel_size: !ref <kernel_size>
    out_channels: !ref <N_encoder_out>

MaskNet: !new:speechbrain_mossformer.lobes.models.mossformer.MossFormerMaskNet
    in_channels: !ref <N_encoder_out>
    out_channels: !ref <out_channels>
    num_blocks: !ref <num_blocks>
    num_spks: !ref <num_spks>
    group_size: !ref <group_size>
    query_key_dim: !ref <query_key_dim>
    expansion_factor: !ref <expansion_factor>
    attn_dropout: !ref <attn_dropout>
    hidden_dims: !ref <hidden_dims>
    query_key_dims: !ref <query_key_dims>

Decoder: !new:speechbrain.lobes.models.dual_path.Decoder
    in_channels: !ref <N_encoder_out>
    out_channels: 1
    kernel_size: !ref <kernel_size>
    stride: !ref <kernel_stride>
    bias: False

modules:
    encoder: !ref <Encoder>
    masknet: !ref <MaskNet>
    decoder: !ref <Decoder>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        encoder: !ref <Encoder>
        masknet: !ref <MaskNet>
        decoder: !ref <Decoder>
"""


def _yaml_value(value):
    """Formats a config value for the yaml template."""
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(int(v)) for v in value) + "]"
    return str(value)


def render_hyperparams(config, origin="speechbrain_mossformer"):
    """Returns the text of a pretrained folder's ``hyperparams.yaml``.

    Arguments
    ---------
    config : dict
        Keys of ``DEFAULT_CONFIG``; missing keys take MossFormer (L) values.
    origin : str
        Where the folder came from, written as a comment.

    Returns
    -------
    str
        HyperPyYAML text.

    Example
    -------
    >>> text = render_hyperparams({"num_blocks": 2, "num_spks": 3})
    >>> "num_spks: 3" in text and "num_blocks: 2" in text
    True
    """
    unknown = set(config) - set(DEFAULT_CONFIG)
    if unknown:
        raise ValueError(
            f"unknown MossFormer configuration keys: {sorted(unknown)}; "
            f"known keys are {sorted(DEFAULT_CONFIG)}"
        )
    values = dict(DEFAULT_CONFIG, **config)
    values["kernel_stride"] = int(values["kernel_size"]) // 2
    values = {k: _yaml_value(v) for k, v in values.items()}
    return _TEMPLATE.format(origin=origin, written_by=WRITTEN_BY, **values)


class OutputFolderError(ValueError):
    """A pretrained folder cannot be written there (it would overwrite
    something, or writing failed); the message says why."""


def _same_path(a, b):
    """Whether two paths name the same file or folder."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _inside(path, folder):
    """Whether ``path`` (existing or not) lies below ``folder``, symbolic
    links resolved.

    Example
    -------
    >>> _inside("/a/b/c", "/a/b"), _inside("/a/bc", "/a/b")
    (True, False)
    """
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path != folder and path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output_folder(out_dir, protected=()):
    """Checks that writing a pretrained folder to ``out_dir`` loses nothing.

    Refused: an ``out_dir`` that is a file, that is one of the
    ``protected`` folders (the folders being read: a model pruned into
    itself, a recipe run exported into its own run folder) or lies inside
    one (an export inside a ``CKPT+`` folder would be deleted with that
    checkpoint), or that holds
    a ``hyperparams.yaml`` not written by this package (e.g. a recipe's
    own yaml), which would be overwritten, or, without a
    ``hyperparams.yaml``, any file that writing the folder replaces
    (``config.json``, ``custom.py``, the module checkpoints: someone
    else's). A pretrained folder written by this package is replaced
    (writing the same export again). A
    SpeechBrain checkpoint folder (one holding ``CKPT.yaml``) is refused
    too: its module files would be replaced.

    Arguments
    ---------
    out_dir : str
        The folder to write.
    protected : sequence of str
        Folders that must not be written into.

    Raises
    ------
    OutputFolderError
        With a one-line message naming the folder or file.

    Example
    -------
    >>> tmp = str(getfixture("tmpdir"))
    >>> with open(os.path.join(tmp, "hyperparams.yaml"), "w") as f:
    ...     _ = f.write("seed: 1\\n")
    >>> try:
    ...     check_output_folder(tmp)
    ... except OutputFolderError as err:
    ...     print("not written by" in str(err))
    True
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutputFolderError(f"{out_dir}: exists and is not a folder")
    for source in protected:
        if source is None or not os.path.isdir(source):
            continue
        if os.path.isdir(out_dir) and _same_path(out_dir, source):
            raise OutputFolderError(
                f"{out_dir}: is the folder being read ({source}); writing "
                "there would overwrite it: give another output folder"
            )
        if _inside(out_dir, source):
            # e.g. into a CKPT+ folder, which SpeechBrain deletes whole
            # when a better checkpoint comes
            raise OutputFolderError(
                f"{out_dir}: is inside the folder being read ({source}); "
                "give an output folder outside it"
            )
    if not os.path.isdir(out_dir):
        return
    if os.path.isfile(os.path.join(out_dir, "CKPT.yaml")):
        # any SpeechBrain checkpoint (e.g. another CKPT+* folder of the run
        # being exported): its encoder/masknet/decoder.ckpt would be
        # replaced by other weights
        raise OutputFolderError(
            f"{out_dir}: is a SpeechBrain checkpoint folder (it holds "
            "CKPT.yaml); writing there would overwrite its weights: give "
            "another output folder"
        )
    yaml_path = os.path.join(out_dir, "hyperparams.yaml")
    if os.path.isfile(yaml_path):
        try:
            with open(yaml_path, encoding="utf-8", errors="replace") as f:
                head = f.read(4096)
        except OSError:
            head = ""
        if WRITTEN_BY not in head:
            raise OutputFolderError(
                f"{yaml_path}: exists and was not written by "
                "speechbrain_mossformer (e.g. a recipe's hyperparams.yaml); "
                "it would be overwritten: give another output folder"
            )
        return
    for name in ("config.json", "custom.py") + tuple(
        f"{module}.ckpt" for module in MODULE_NAMES
    ):
        path = os.path.join(out_dir, name)
        if os.path.exists(path):
            raise OutputFolderError(
                f"{path}: exists in a folder that is not a pretrained "
                "folder written by speechbrain_mossformer (it has no "
                "hyperparams.yaml); it would be overwritten: give another "
                "output folder"
            )


def folder_origin(folder):
    """What a pretrained folder written by this package was made from (the
    ``origin`` its ``hyperparams.yaml`` records), or None when ``folder``
    holds no such yaml.

    Example
    -------
    >>> tmp = str(getfixture("tmpdir"))
    >>> folder_origin(tmp) is None
    True
    >>> with open(os.path.join(tmp, "hyperparams.yaml"), "w") as f:
    ...     _ = f.write(render_hyperparams({}, "exported from CKPT+1"))
    >>> folder_origin(tmp)
    'exported from CKPT+1'
    """
    try:
        with open(os.path.join(folder, "hyperparams.yaml"),
                  encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return None
    for line in head.splitlines():
        if line.startswith(WRITTEN_BY + " (") and line.endswith(")."):
            return line[len(WRITTEN_BY) + 2:-2]
    return None


def write_replacing(path, write):
    """Writes ``path`` as a new file renamed over the old one.

    SpeechBrain's ``savedir`` holds symbolic links to the files of the
    folder a model was loaded from; writing through such a link replaced
    that other model's files. The new file replaces the link (or the old
    file) instead, and an interrupted write leaves the old one whole.

    Arguments
    ---------
    path : str
        The file to write.
    write : callable
        ``write(temporary_path)`` writes the content.

    Example
    -------
    >>> folder = str(getfixture("tmpdir"))
    >>> source = os.path.join(folder, "source.txt")
    >>> with open(source, "w") as f:
    ...     _ = f.write("another model")
    >>> link = os.path.join(folder, "link.txt")
    >>> os.symlink(source, link)
    >>> def write(path):
    ...     with open(path, "w") as f:
    ...         _ = f.write("new")
    >>> write_replacing(link, write)
    >>> open(source).read(), open(link).read(), os.path.islink(link)
    ('another model', 'new', False)
    """
    # a short hidden name in the same folder (one rename moves it into
    # place; a file name near the file system's limit still fits), unique
    # to this process and call
    temporary = os.path.join(
        os.path.dirname(path) or ".",
        f".mossformer-{os.getpid()}-{next(_TEMPORARY_NUMBERS)}.tmp",
    )
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.lexists(temporary):
            try:
                os.remove(temporary)
            except OSError:  # the error on its way out is the one to report
                pass


#: Numbers the temporary files of ``write_replacing``.
_TEMPORARY_NUMBERS = itertools.count()


def write_pretrained_folder(out_dir, config, state_dicts, origin=None):
    """Writes a SpeechBrain pretrained folder for a MossFormer separator.

    The state dicts are checked against the modules the yaml builds (strict:
    every key, every shape) before anything is written.

    Arguments
    ---------
    out_dir : str
        Folder to create (may exist; the model files of a pretrained
        folder written by this package are replaced; any other
        ``hyperparams.yaml`` there is an error, see
        ``check_output_folder``).
    config : dict
        Model configuration (see ``DEFAULT_CONFIG``).
    state_dicts : dict
        ``{"encoder": sd, "masknet": sd, "decoder": sd}``.
    origin : str, optional
        Provenance comment for the yaml.

    Returns
    -------
    str
        Path of the written ``hyperparams.yaml``.

    Example
    -------
    >>> from speechbrain_mossformer.pretrained import load_modules
    >>> tmp = getfixture("tmpdir")
    >>> cfg = {"N_encoder_out": 16, "out_channels": 16, "num_blocks": 1,
    ...        "group_size": 4, "query_key_dim": 8}
    >>> modules = load_modules(render_hyperparams(cfg))
    >>> sds = {k: m.state_dict() for k, m in modules.items()}
    >>> path = write_pretrained_folder(str(tmp), cfg, sds)
    >>> sorted(os.listdir(str(tmp)))[:4]
    ['config.json', 'custom.py', 'decoder.ckpt', 'encoder.ckpt']
    """
    text = render_hyperparams(config, origin or "speechbrain_mossformer")
    modules = load_modules(text)
    for name in MODULE_NAMES:
        if name not in state_dicts:
            raise KeyError(f"no state dict given for module '{name}'")
        check_state_dict(modules[name], state_dicts[name], name)
    check_output_folder(out_dir)
    # custom.py, for foreign_class(..., classname="MossFormerSeparation").
    # Imported here: the inference module imports this one.
    from speechbrain_mossformer.inference import add_custom_interface

    yaml_path = os.path.join(out_dir, "hyperparams.yaml")
    try:
        os.makedirs(out_dir, exist_ok=True)

        def write_text(content):
            def write(path):
                with open(path, "w", encoding="utf-8") as f:
                    f.write(content)

            return write

        # every file through write_replacing: a folder of symbolic links
        # (SpeechBrain's savedir) gets files, the linked model is untouched
        write_replacing(yaml_path, write_text(text))
        for name in MODULE_NAMES:
            state = {k: v.detach().cpu() for k, v in state_dicts[name].items()}
            write_replacing(
                os.path.join(out_dir, f"{name}.ckpt"),
                lambda path, state=state: torch.save(state, path),
            )
        # Lets the Hugging Face hub widget (and users) see the interface.
        write_replacing(
            os.path.join(out_dir, "config.json"),
            write_text(json.dumps(
                {"speechbrain_interface": "SepformerSeparation"}
            )),
        )
        add_custom_interface(out_dir)
    except OSError as err:
        raise OutputFolderError(
            f"{out_dir}: cannot write the pretrained folder: "
            f"{err.strerror or err}"
        ) from None
    return yaml_path


def load_modules(hyperparams_text, overrides=None):
    """Builds the ``modules`` dict of a hyperparams text.

    Arguments
    ---------
    hyperparams_text : str
        HyperPyYAML text defining ``modules``.
    overrides : dict, optional
        HyperPyYAML overrides.

    Returns
    -------
    dict
        ``{"encoder": ..., "masknet": ..., "decoder": ...}``.

    Example
    -------
    >>> mods = load_modules(render_hyperparams({"num_blocks": 1,
    ...     "N_encoder_out": 16, "out_channels": 16, "query_key_dim": 8}))
    >>> sorted(mods)
    ['decoder', 'encoder', 'masknet']
    """
    from hyperpyyaml import load_hyperpyyaml

    hparams = load_hyperpyyaml(hyperparams_text, overrides or {})
    return {name: hparams["modules"][name] for name in MODULE_NAMES}


def check_state_dict(module, state_dict, name):
    """Strictly checks a state dict against a module (keys and shapes).

    SpeechBrain's own parameter transfer only warns about missing or
    unexpected keys; a separator loaded that way silently keeps random
    weights. This check raises instead.

    Arguments
    ---------
    module : torch.nn.Module
        The module the state dict is meant for.
    state_dict : dict
        Parameter name -> tensor.
    name : str
        Module name used in messages (e.g. ``"masknet"``).

    Example
    -------
    >>> check_state_dict(torch.nn.Linear(2, 3),
    ...                  {"weight": torch.zeros(3, 2), "bias": torch.zeros(3)},
    ...                  "linear")
    >>> check_state_dict(torch.nn.Linear(2, 3),
    ...                  {"weight": torch.zeros(3, 4), "bias": torch.zeros(3)},
    ...                  "linear")
    Traceback (most recent call last):
      ...
    ValueError: linear: parameter 'weight' has shape (3, 4) in the checkpoint but (3, 2) in the model
    >>> check_state_dict(torch.nn.Linear(2, 3),
    ...                  {"weight": [[0.0] * 2] * 3, "bias": torch.zeros(3)},
    ...                  "linear")
    Traceback (most recent call last):
      ...
    ValueError: linear: 'weight' is a list in the checkpoint, not a tensor
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_short_list(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_short_list(unexpected)}")
        raise ValueError(
            f"{name}: checkpoint does not match the model: "
            + "; ".join(parts)
        )
    for key, tensor in expected.items():
        if not torch.is_tensor(state_dict[key]):
            raise ValueError(
                f"{name}: '{key}' is a {type(state_dict[key]).__name__} in "
                "the checkpoint, not a tensor"
            )
        got = tuple(state_dict[key].shape)
        if got != tuple(tensor.shape):
            raise ValueError(
                f"{name}: parameter '{key}' has shape {got} in the "
                f"checkpoint but {tuple(tensor.shape)} in the model"
            )


def _short_list(keys, limit=5):
    """Formats at most ``limit`` keys for an error message."""
    shown = ", ".join(repr(k) for k in keys[:limit])
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return f"[{shown}]{more}"
