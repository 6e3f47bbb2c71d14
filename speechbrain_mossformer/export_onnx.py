"""Export a pretrained MossFormer separator to ONNX.

Usage::

    python -m speechbrain_mossformer.export_onnx PRETRAINED_DIR OUT.onnx

``PRETRAINED_DIR`` is a SpeechBrain pretrained folder (``hyperparams.yaml``
plus ``encoder.ckpt``, ``masknet.ckpt`` and ``decoder.ckpt``, as written by
``speechbrain_mossformer.convert`` or ``speechbrain_mossformer.pretrained``).
The ONNX graph is the whole separator::

    mixture   float32 [batch, time]            (input)
    estimates float32 [batch, time, num_spks]  (output)

with dynamic ``batch`` and ``time`` axes: the group count of the local
attention, the zero padding of the last group, the ``1/T`` of the global
attention and the final padding to the input length all follow the input
length inside the graph. The mixture needs at least one encoder frame
(``kernel_size`` samples, 16).

The graph is made with PyTorch's TorchScript-based exporter
(``dynamo=False``: the dynamo exporter needs ``onnxscript``) at opset 17
(the first with a native ``LayerNormalization``). The graph is written to
a temporary file next to ``OUT.onnx``; when ``onnxruntime`` is installed,
its outputs are compared with PyTorch's on a few lengths (``check_lengths``:
up to one longer than four attention groups; ``--lengths`` sets others,
``--no-verify`` skips the check), and the file becomes ``OUT.onnx`` only
when the largest difference is at most ``--tolerance`` (1e-4) and both
sides' estimates are finite. A failed check exits with status 1 and
leaves ``OUT.onnx`` as it was, as do errors and interruptions.

Authors
 * speechbrain-mossformer contributors 2026
"""

import argparse
import math
import os
import signal
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn

from speechbrain_mossformer.errors import (
    Terminated,
    first_line,
    raise_terminated,
)
from speechbrain_mossformer.inference import (
    ModelLoadError,
    load_checked_state,
)
from speechbrain_mossformer.lobes.models.mossformer import (
    MossFormerBlock,
    pad_time,
)
from speechbrain_mossformer.pretrained import (
    MODULE_NAMES,
    load_modules,
    write_replacing,
)

#: ONNX opset used for the export.
OPSET = 17

#: Length (samples) of the input the graph is traced with.
TRACE_LENGTH = 4003

#: Batch size of the command line's check at lengths up to
#: ``TRACE_LENGTH`` (longer ones are checked at batch 1).
CHECK_BATCH = 2


class ExportError(ValueError):
    """The folder cannot be exported; the message says why."""


class SeparatorForExport(nn.Module):
    """Encoder, mask net and decoder as one traceable module.

    The same computation as ``separate_with_modules``, written without any
    Python branch on the input shape, so that a traced graph is right for
    every batch size and length:

    * the decoder's transposed convolution is called directly and its
      channel axis dropped by index (SpeechBrain's ``Decoder`` squeezes all
      size-1 axes, which a graph would apply to the batch axis too);
    * the estimates are always zero-padded by ``T - T'`` at the end (the
      decoder output ``T'`` is never longer than the input ``T``: the
      encoder drops the incomplete last frame).

    Arguments
    ---------
    encoder : torch.nn.Module
        ``[B, T] -> [B, N, L]``.
    masknet : torch.nn.Module
        ``[B, N, L] -> [S, B, N, L]``.
    decoder : torch.nn.ConvTranspose1d
        SpeechBrain's ``dual_path.Decoder`` (``[B, N, L] -> [B, 1, T']``).
    num_spks : int
        Number of speakers S.

    Example
    -------
    >>> from speechbrain_mossformer.lobes.models.mossformer import (
    ...     MossFormerWrapper)
    >>> model = MossFormerWrapper(encoder_out_nchannels=16, num_blocks=1,
    ...                           group_size=4, query_key_dim=8).eval()
    >>> sep = SeparatorForExport(model.encoder, model.masknet,
    ...                          model.decoder, 2)
    >>> mix = torch.randn(2, 101)
    >>> torch.allclose(sep(mix), model(mix), atol=1e-6)
    True
    """

    def __init__(self, encoder, masknet, decoder, num_spks):
        super().__init__()
        self.encoder = encoder
        self.masknet = masknet
        self.decoder = decoder
        self.num_spks = num_spks

    def forward(self, mix):
        """Separates ``mix`` [B, T] into estimates [B, T, S]."""
        # [B, N, L]
        mix_w = self.encoder(mix)
        # [S, B, N, L]
        masks = self.masknet(mix_w)
        # [S, B, N, L]
        separated = mix_w.unsqueeze(0) * masks
        # S x [B, T'] -> [B, T', S]
        est = torch.stack(
            [
                nn.ConvTranspose1d.forward(self.decoder, separated[k])[:, 0]
                for k in range(self.num_spks)
            ],
            dim=2,
        )
        # [B, T, S]: zero padding at the end, T' <= T
        return pad_time(est, mix.shape[1] - est.shape[1])


def load_separator(folder):
    """Builds the separator of a pretrained folder, with its weights.

    Arguments
    ---------
    folder : str
        Pretrained folder (``hyperparams.yaml`` and the three checkpoints).

    Returns
    -------
    separator : SeparatorForExport
        The model in eval mode.
    hparams : dict
        ``num_spks``, ``sample_rate``, ``kernel_size`` and ``stride`` (of
        the encoder) and ``group_size`` (frames per attention group) of
        the folder.

    Example
    -------
    >>> try:
    ...     load_separator("/no/such/folder")
    ... except ExportError as err:
    ...     print(err)  # doctest: +NORMALIZE_WHITESPACE
    /no/such/folder: not a folder; give a pretrained folder
    (hyperparams.yaml, encoder.ckpt, masknet.ckpt, decoder.ckpt)
    """
    expected = "hyperparams.yaml, " + ", ".join(
        f"{name}.ckpt" for name in MODULE_NAMES
    )
    if not os.path.isdir(folder):
        raise ExportError(
            f"{folder}: not a folder; give a pretrained folder ({expected})"
        )
    missing = [
        name
        for name in ["hyperparams.yaml"]
        + [f"{m}.ckpt" for m in MODULE_NAMES]
        if not os.path.isfile(os.path.join(folder, name))
    ]
    if missing:
        run = os.path.isdir(os.path.join(folder, "save"))
        raise ExportError(
            f"{folder}: missing {', '.join(missing)}; a pretrained folder "
            f"holds {expected} (make one with "
            + ("python -m speechbrain_mossformer.export_checkpoint "
               f"{folder} OUT_DIR: this is a recipe's run folder)" if run
               else "python -m speechbrain_mossformer.convert from the "
               "official release, or export_checkpoint from a recipe run)")
        )
    from hyperpyyaml import load_hyperpyyaml

    with open(os.path.join(folder, "hyperparams.yaml"), encoding="utf-8") as f:
        text = f.read()
    try:
        hparams = load_hyperpyyaml(text)
        modules = load_modules(text)
    except Exception as err:
        raise ExportError(
            f"{os.path.join(folder, 'hyperparams.yaml')} cannot be loaded: "
            f"{first_line(err)}"
        ) from None
    if "num_spks" not in hparams:
        raise ExportError(
            f"{os.path.join(folder, 'hyperparams.yaml')} does not set "
            f"num_spks"
        )
    for name in MODULE_NAMES:
        path = os.path.join(folder, f"{name}.ckpt")
        try:
            state = load_checked_state(
                path, modules[name], name, "hyperparams.yaml"
            )
        except ModelLoadError as err:
            raise ExportError(str(err)) from None
        modules[name].load_state_dict(state, strict=True)
    separator = SeparatorForExport(
        modules["encoder"],
        modules["masknet"],
        modules["decoder"],
        int(hparams["num_spks"]),
    ).eval()
    group_sizes = [
        m.group_size
        for m in modules["masknet"].modules()
        if isinstance(m, MossFormerBlock)
    ]
    info = {
        "num_spks": int(hparams["num_spks"]),
        "sample_rate": int(hparams.get("sample_rate", 8000)),
        "kernel_size": int(modules["encoder"].conv1d.kernel_size[0]),
        "stride": int(modules["encoder"].conv1d.stride[0]),
        "group_size": int(
            group_sizes[0] if group_sizes
            else hparams.get("group_size", 256)
        ),
    }
    return separator, info


def export_separator(separator, out_path, example_length=TRACE_LENGTH):
    """Traces ``separator`` and writes the ONNX graph to ``out_path``.

    Arguments
    ---------
    separator : torch.nn.Module
        ``[B, T] -> [B, T, S]`` (e.g. ``SeparatorForExport``), traceable.
    out_path : str
        Path of the ``.onnx`` file to write.
    example_length : int
        Length of the tracing input. Any length works; the graph does not
        depend on it.

    Example
    -------
    >>> from speechbrain_mossformer.lobes.models.mossformer import (
    ...     MossFormerWrapper)
    >>> model = MossFormerWrapper(encoder_out_nchannels=16, num_blocks=1,
    ...                           group_size=4, query_key_dim=8).eval()
    >>> sep = SeparatorForExport(model.encoder, model.masknet,
    ...                          model.decoder, 2)
    >>> path = os.path.join(getfixture("tmpdir"), "tiny.onnx")
    >>> export_separator(sep, path, example_length=203)
    >>> os.path.getsize(path) > 0
    True
    """
    separator = separator.eval()
    example = torch.randn(2, example_length)
    with torch.no_grad(), warnings.catch_warnings():
        # Shape checks in the modules evaluate once at tracing time; they
        # hold for every valid input, so the warnings about them are noise.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            separator,
            (example,),
            out_path,
            dynamo=False,
            opset_version=OPSET,
            input_names=["mixture"],
            output_names=["estimates"],
            dynamic_axes={
                "mixture": {0: "batch", 1: "time"},
                "estimates": {0: "batch", 1: "time"},
            },
            do_constant_folding=True,
        )


def verify(separator, onnx_path, lengths=(16, 1003, 4003), batch=2,
           batches=None):
    """Max absolute difference of ONNX Runtime and PyTorch outputs.

    Arguments
    ---------
    separator : torch.nn.Module
        The exported PyTorch module.
    onnx_path : str
        The exported graph.
    lengths : sequence of int
        Input lengths to compare at.
    batch : int
        Batch size of the comparison inputs.
    batches : sequence of int, optional
        Batch size for each of ``lengths`` (instead of ``batch``).

    Returns
    -------
    float
        Largest max-abs difference over the lengths.

    Raises
    ------
    ExportError
        On a shape mismatch, or when either side gives NaN or infinite
        estimates (a NaN difference would otherwise read as 0).

    Example
    -------
    >>> from speechbrain_mossformer.lobes.models.mossformer import (
    ...     MossFormerWrapper)
    >>> model = MossFormerWrapper(encoder_out_nchannels=16, num_blocks=1,
    ...                           group_size=4, query_key_dim=8).eval()
    >>> sep = SeparatorForExport(model.encoder, model.masknet,
    ...                          model.decoder, 2)
    >>> path = os.path.join(getfixture("tmpdir"), "tiny.onnx")
    >>> export_separator(sep, path, example_length=203)
    >>> verify(sep, path) < 1e-5  # ONNX Runtime vs PyTorch, 3 lengths
    True
    >>> verify(sep, path, lengths=(16, 9000), batches=(2, 1)) < 1e-5
    True
    """
    import onnxruntime as ort

    session = ort.InferenceSession(
        onnx_path, providers=["CPUExecutionProvider"]
    )
    if batches is None:
        batches = [batch] * len(lengths)
    if len(batches) != len(lengths):
        raise ValueError(
            f"{len(lengths)} lengths but {len(batches)} batch sizes"
        )
    worst = 0.0
    generator = torch.Generator().manual_seed(0)
    for length, batch in zip(lengths, batches):
        mix = torch.randn(batch, length, generator=generator)
        with torch.no_grad():
            expected = separator(mix).numpy()
        (got,) = session.run(None, {"mixture": mix.numpy()})
        if got.shape != expected.shape:
            raise ExportError(
                f"ONNX Runtime gave shape {got.shape} for a {length}-sample "
                f"input, PyTorch {expected.shape}"
            )
        # a NaN difference would be lost by max(): non-finite outputs fail
        for side, out in (("PyTorch", expected), ("ONNX Runtime", got)):
            if not np.isfinite(out).all():
                raise ExportError(
                    f"{side} gave NaN or infinite estimates for a "
                    f"{length}-sample input"
                    + (" (the model's weights may be diverged or corrupt)"
                       if side == "PyTorch" else "")
                )
        worst = max(worst, float(abs(got - expected).max()))
    return worst


def check_lengths(kernel_size, stride, group_size):
    """Default input lengths (samples) of the command line's check.

    One encoder frame, a ragged length, the tracing length, and a long one:
    at least four attention groups and more than twice the tracing length,
    ending part-way through a group and between two frames. Errors that
    grow with the length (sums over all frames, the global attention's
    ``1/T``) or that need several groups show at the long one, while the
    check stays short: 1.1 s of audio for MossFormer (L), whose groups span
    2048 samples (checked at batch 1, it about doubles the time of the
    three shorter lengths at batch 2; ``--lengths`` checks longer inputs).

    Arguments
    ---------
    kernel_size : int
        Encoder kernel size (samples of one frame).
    stride : int
        Encoder stride (samples between frames).
    group_size : int
        Frames per attention group.

    Returns
    -------
    tuple of int
        Increasing lengths, the first one frame long.

    Example
    -------
    >>> check_lengths(16, 8, 256)  # MossFormer (L)
    (16, 1003, 4003, 8893)
    >>> (8893 - 16) // 8 + 1  # frames: 4 groups of 256 and 86 more
    1110
    >>> check_lengths(16, 8, 16)  # small groups: over twice 4003
    (16, 1003, 4003, 8125)
    """
    # frames of the tracing input
    trace_frames = (TRACE_LENGTH - kernel_size) // stride + 1
    groups = max(4, -(-2 * trace_frames // group_size))
    # a partial last group, then samples beyond the last whole frame
    frames = groups * group_size + group_size // 3 + 1
    long = kernel_size + stride * (frames - 1) + stride // 2 + 1
    return tuple(sorted({kernel_size, max(kernel_size, 1003),
                         max(kernel_size, TRACE_LENGTH), long}))


def _check_options(args):
    """Checks ``--tolerance`` and parses ``--lengths`` (before any work).

    Arguments
    ---------
    args : argparse.Namespace
        The parsed command line.

    Returns
    -------
    tuple of int or None
        The ``--lengths`` (None: the defaults of ``check_lengths``).

    Raises
    ------
    ExportError
        Naming the option: a NaN tolerance would pass every check, a
        negative one fail every check.

    Example
    -------
    >>> args = argparse.Namespace(tolerance=float("nan"), lengths=None)
    >>> try:
    ...     _check_options(args)
    ... except ExportError as err:
    ...     print(err)
    --tolerance must be a finite number >= 0, got nan
    >>> _check_options(argparse.Namespace(tolerance=0.0,
    ...                                   lengths="16, 4003,64000"))
    (16, 4003, 64000)
    """
    if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise ExportError(
            "--tolerance must be a finite number >= 0, got "
            f"{args.tolerance:g}"
        )
    if args.lengths is None:
        return None
    try:
        lengths = tuple(int(p) for p in args.lengths.split(","))
    except ValueError:
        lengths = ()
    if not lengths or min(lengths) <= 0:
        raise ExportError(
            "--lengths must be comma-separated numbers of samples (e.g. "
            f"16,4003,64000), got {args.lengths!r}"
        )
    return lengths


class _CheckFailed(Exception):
    """The check of a written graph failed (its error line is printed)."""

    def __init__(self, status):
        super().__init__(status)
        self.status = status


def is_onnx_model(path):
    """Whether ``path`` holds an ONNX model (a graph with nodes), which an
    export may replace; any other file is the user's and is kept.

    Arguments
    ---------
    path : str
        An existing path.

    Returns
    -------
    bool

    Example
    -------
    >>> path = str(getfixture("tmpdir") / "notes.onnx")
    >>> with open(path, "w") as f:
    ...     _ = f.write("my notes")
    >>> is_onnx_model(path)
    False
    """
    import onnx

    if not os.path.isfile(path):
        return False
    with open(path, "rb") as f:
        # a model's first field is ir_version (field 1, a varint: 0x08); a
        # recording or checkpoint is refused without being read whole
        if f.read(1) != b"\x08":
            return False
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception:  # not a protobuf message of this kind
        return False
    return model.ir_version > 0 and len(model.graph.node) > 0


def main(argv=None):
    """Command line entry point; returns the exit status.

    The graph is written to a temporary file next to ``OUT.onnx`` and
    renamed to ``OUT.onnx`` only once the check has passed (or is
    skipped): a failed check, an error, Ctrl-C or SIGTERM leave
    ``OUT.onnx`` as it was (absent, or the earlier file) and remove the
    temporary file.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 written, 1 the check failed (nothing written), 2 usage, folder
        or write error, 130/143 interrupted/terminated.

    Example
    -------
    >>> main(["/no/such/folder", "x.onnx", "--tolerance", "-1"])
    2
    """
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_mossformer.export_onnx",
        description=(
            "Export a MossFormer pretrained folder to ONNX: mixture "
            "[batch, time] -> estimates [batch, time, num_spks], dynamic "
            f"batch and time axes, opset {OPSET}. OUT is written only "
            "once ONNX Runtime's outputs match PyTorch's."
        ),
    )
    parser.add_argument("pretrained_dir", help="SpeechBrain pretrained folder")
    parser.add_argument("out", help="ONNX file to write")
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="do not compare ONNX Runtime outputs with PyTorch",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest max-abs difference accepted by the check, a finite "
        "number >= 0 (1e-4)",
    )
    parser.add_argument(
        "--lengths",
        metavar="N,N,...",
        help="input lengths (samples) of the check, e.g. 16,4003,64000 for "
        "8 s at 8 kHz (default: one encoder frame, 1003, the tracing "
        f"length {TRACE_LENGTH}, and one of over four attention groups, "
        "1.1 s for MossFormer (L)); lengths up to "
        f"{TRACE_LENGTH} are checked at batch {CHECK_BATCH}, longer ones "
        "at batch 1",
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    try:
        lengths = _check_options(args)
        if args.out.endswith(("/", os.sep)):
            # abspath drops the slash: a file named like the folder
            raise ExportError(
                f"{args.out}: names a folder; give the path of the .onnx "
                f"file to write, e.g. {os.path.join(args.out, 'model.onnx')}"
            )
        out_dir = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(out_dir):
            raise ExportError(f"output folder {out_dir} does not exist")
        if os.path.isdir(args.out):
            raise ExportError(
                f"{args.out}: is a folder; give the path of the .onnx file "
                f"to write"
            )
        model_files = ["hyperparams.yaml"] + [
            f"{name}.ckpt" for name in MODULE_NAMES
        ]
        for name in model_files:
            path = os.path.join(args.pretrained_dir, name)
            if os.path.isfile(args.out) and os.path.isfile(path) and (
                os.path.samefile(args.out, path)
            ):
                raise ExportError(
                    f"{args.out}: is the pretrained folder's {name}; "
                    "writing the graph there would destroy the model: give "
                    "another .onnx path"
                )
        try:
            import onnx  # noqa: F401  (torch's exporter needs it)
        except ImportError:
            raise ExportError(
                "ONNX export needs the onnx package: pip install onnx "
                "onnxruntime (or pip install -e \".[onnx]\")"
            ) from None
        if os.path.exists(args.out) and not is_onnx_model(args.out):
            # a checkpoint, a recording, a script: not ours to replace
            raise ExportError(
                f"{args.out}: exists and is not an ONNX model; refusing to "
                f"replace it: give another path, or remove it first"
            )
        separator, info = load_separator(args.pretrained_dir)
        if lengths is None:
            lengths = check_lengths(
                info["kernel_size"], info["stride"], info["group_size"]
            )
        elif min(lengths) < info["kernel_size"]:
            raise ExportError(
                f"--lengths: {min(lengths)} samples is shorter than one "
                f"encoder frame ({info['kernel_size']} samples)"
            )
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # a symbolic link is written through, as an open() would
    dest = os.path.realpath(args.out)

    status = None

    def export_and_check(temporary):
        nonlocal status
        export_separator(separator, temporary)
        # 0 passed, None skipped, 1 failed (the error line is printed)
        status = _check_export(separator, temporary, args, lengths)
        if status:
            raise _CheckFailed(status)

    try:
        previous = signal.signal(signal.SIGTERM, raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        # into a temporary file, renamed to dest once checked (removed on
        # any failure or interruption)
        write_replacing(dest, export_and_check)
    except _CheckFailed as failed:
        return failed.status
    except OSError as err:
        print(
            f"error: {args.out}: cannot write: {err.strerror or err}",
            file=sys.stderr,
        )
        return 2
    except Terminated:  # (a KeyboardInterrupt: caught first)
        print(f"error: terminated; {args.out} not written", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"error: interrupted; {args.out} not written", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    size_mb = os.path.getsize(dest) / 2**20
    print(
        f"wrote {args.out} ({size_mb:.1f} MiB, opset {OPSET}, "
        f"{info['num_spks']} speakers, {info['sample_rate']} Hz): "
        "mixture [batch, time] -> estimates [batch, time, num_spks]"
    )
    if not args.no_verify and status is None:
        print("onnxruntime is not installed: outputs not checked")
    return 0


def _check_export(separator, onnx_path, args, lengths):
    """The command line's check of the graph at ``onnx_path``.

    Returns 0 when it passes, None when it is skipped (``--no-verify`` or
    no ``onnxruntime``), 1 after printing the one-line error of a failure.
    Lengths up to ``TRACE_LENGTH`` run at batch ``CHECK_BATCH``, longer
    ones at batch 1 (the batch axis is checked on the short ones; a batch
    of long inputs would double the time of the check).
    """
    if args.no_verify:
        return None
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    batches = [CHECK_BATCH if n <= TRACE_LENGTH else 1 for n in lengths]
    try:
        diff = verify(separator, onnx_path, lengths, batches=batches)
    except ExportError as err:
        print(f"error: {args.out}: not written: {err}", file=sys.stderr)
        return 1
    print(
        f"ONNX Runtime vs PyTorch, lengths {tuple(lengths)}: "
        f"max |diff| {diff:.2e}"
    )
    if diff > args.tolerance:
        print(
            f"error: {args.out}: not written: difference {diff:.2e} above "
            f"tolerance {args.tolerance:g}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
