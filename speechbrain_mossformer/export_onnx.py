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
(the first with a native ``LayerNormalization``). After writing the file,
the outputs of ONNX Runtime are compared with PyTorch's on a few lengths
when ``onnxruntime`` is installed (``--no-verify`` skips this).

Authors
 * speechbrain-mossformer contributors 2026
"""

import argparse
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn

from speechbrain_mossformer.errors import first_line
from speechbrain_mossformer.inference import (
    ModelLoadError,
    load_checked_state,
)
from speechbrain_mossformer.lobes.models.mossformer import pad_time
from speechbrain_mossformer.pretrained import (
    MODULE_NAMES,
    load_modules,
)

#: ONNX opset used for the export.
OPSET = 17


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
        ``num_spks``, ``sample_rate`` and ``kernel_size`` of the folder.

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
            f"{folder}/hyperparams.yaml cannot be loaded: {first_line(err)}"
        ) from None
    if "num_spks" not in hparams:
        raise ExportError(f"{folder}/hyperparams.yaml does not set num_spks")
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
    info = {
        "num_spks": int(hparams["num_spks"]),
        "sample_rate": int(hparams.get("sample_rate", 8000)),
        "kernel_size": int(modules["encoder"].conv1d.kernel_size[0]),
    }
    return separator, info


def export_separator(separator, out_path, example_length=4003):
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


def verify(separator, onnx_path, lengths=(16, 1003, 4003), batch=2):
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
    """
    import onnxruntime as ort

    session = ort.InferenceSession(
        onnx_path, providers=["CPUExecutionProvider"]
    )
    worst = 0.0
    generator = torch.Generator().manual_seed(0)
    for length in lengths:
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


def main(argv=None):
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_mossformer.export_onnx",
        description=(
            "Export a MossFormer pretrained folder to ONNX: mixture "
            "[batch, time] -> estimates [batch, time, num_spks], dynamic "
            f"batch and time axes, opset {OPSET}."
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
        help="largest max-abs difference accepted by the check (1e-4)",
    )
    args = parser.parse_args(argv)
    try:
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
        separator, info = load_separator(args.pretrained_dir)
        try:
            export_separator(separator, args.out)
        except OSError as err:
            raise ExportError(
                f"{args.out}: cannot write: {err.strerror or err}"
            ) from None
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    size_mb = os.path.getsize(args.out) / 2**20
    print(
        f"wrote {args.out} ({size_mb:.1f} MiB, opset {OPSET}, "
        f"{info['num_spks']} speakers, {info['sample_rate']} Hz): "
        "mixture [batch, time] -> estimates [batch, time, num_spks]"
    )
    if args.no_verify:
        return 0
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("onnxruntime is not installed: outputs not checked")
        return 0
    lengths = (info["kernel_size"], 1003, 4003)
    try:
        diff = verify(separator, args.out, lengths=lengths)
    except ExportError as err:
        print(f"error: {args.out}: {err}", file=sys.stderr)
        return 1
    print(f"ONNX Runtime vs PyTorch, lengths {lengths}: max |diff| {diff:.2e}")
    if diff > args.tolerance:
        print(
            f"error: difference {diff:.2e} above tolerance "
            f"{args.tolerance:.0e}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
