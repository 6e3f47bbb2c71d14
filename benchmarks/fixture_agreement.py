"""How close this implementation is to the official MossFormer code, measured.

Usage (from the repository root)::

    python benchmarks/fixture_agreement.py
    python benchmarks/fixture_agreement.py --fixtures DIR --threads 1,2,4

For each folder of the official-code fixtures (ModelScope layout: weights
in official naming, the mixture and the official code's estimates in
``io.pt``; by default ``../shared/fixtures/modelscope_mossformer`` beside
the checkout), this script converts the weights into a SpeechBrain
pretrained folder, loads it through SpeechBrain's stock
``SepformerSeparation.from_hparams`` and separates the fixture's mixture
with each ``--threads`` count: the largest absolute difference from the
official estimates. It also exports each folder to ONNX and reports ONNX
Runtime against the official estimates, and ONNX Runtime against PyTorch
on seeded random mixtures of ``--lengths`` samples. The tests require 1e-5
against the official estimates (``tests/test_model.py``) and 1e-4 between
ONNX Runtime and PyTorch (``tests/test_export_onnx.py``); this script
reports the figures themselves.

Writes ``benchmarks/results/fixture_agreement.md`` (with the code's git
revision); other options than the defaults write
``fixture_agreement_custom.md``.

Authors
 * speechbrain-mossformer contributors 2026
"""

import argparse
import datetime
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_models as bm  # noqa: E402
import torch  # noqa: E402

DEFAULT_FIXTURES = os.path.join(
    os.path.dirname(bm.REPO), "shared", "fixtures", "modelscope_mossformer"
)


def parse_args(argv=None):
    """Command line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--fixtures", default=DEFAULT_FIXTURES,
        help="folder holding one folder per fixture (default: %(default)s)",
    )
    parser.add_argument("--threads", default="1,2",
                        help="torch thread counts to try (default: 1,2)")
    parser.add_argument(
        "--lengths", default="4003,24003",
        help="random mixture lengths (samples) for ONNX Runtime against "
        "PyTorch (default: 4003,24003)",
    )
    parser.add_argument("--name", default="fixture_agreement",
                        help="report name under benchmarks/results/")
    args = parser.parse_args(argv)
    bm.keep_full_run_results(parser, args,
                             ("fixtures", "threads", "lengths"), argv=argv)
    args.threads = bm.positive_int_list(parser, "--threads", args.threads)
    args.lengths = bm.positive_int_list(parser, "--lengths", args.lengths)
    if not os.path.isdir(args.fixtures):
        parser.error(f"--fixtures: {args.fixtures} is not a folder (the "
                     "official-code fixtures are not in this repository)")
    args.names = sorted(
        d for d in os.listdir(args.fixtures)
        if os.path.isfile(os.path.join(args.fixtures, d, "io.pt"))
    )
    if not args.names:
        parser.error(f"--fixtures: no folder with an io.pt in "
                     f"{args.fixtures}")
    return args


def max_abs_diff(a, b):
    """Largest absolute difference of two tensors or arrays of one shape.

    Example
    -------
    >>> max_abs_diff(torch.zeros(2), torch.tensor([0.5, -1.0]))
    1.0
    >>> max_abs_diff(torch.zeros(2), torch.zeros(3))
    Traceback (most recent call last):
     ...
    ValueError: shapes differ: (2,) and (3,)
    """
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    return (a - b).abs().max().item()


def measure(fixture, args, tmp):
    """The figures of one fixture folder: a dict."""
    from speechbrain.inference.separation import SepformerSeparation

    from speechbrain_mossformer.convert import convert
    from speechbrain_mossformer.export_onnx import (
        export_separator,
        load_separator,
    )

    folder = os.path.join(tmp, os.path.basename(fixture))
    convert(fixture, folder)
    io = torch.load(os.path.join(fixture, "io.pt"), weights_only=True)
    model = SepformerSeparation.from_hparams(
        source=folder, savedir=os.path.join(folder, "cache"),
        run_opts={"device": "cpu"},
    )
    result = {
        "mixture": list(io["mixture"].shape),
        "params": sum(p.numel() for p in model.mods.parameters()),
        "torch": {},
    }
    for threads in args.threads:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            est = model.separate_batch(io["mixture"])
        result["torch"][threads] = max_abs_diff(est, io["estimates"])
    torch.set_num_threads(max(args.threads))
    separator, _ = load_separator(folder)
    path = os.path.join(folder, "model.onnx")
    export_separator(separator, path)
    session = bm.ort_session(path, max(args.threads))
    (got,) = session.run(None, {"mixture": io["mixture"].numpy()})
    result["onnx_official"] = max_abs_diff(got, io["estimates"])
    result["onnx_torch"] = {}
    generator = torch.Generator().manual_seed(0)
    for length in args.lengths:
        mix = torch.randn(1, length, generator=generator)
        with torch.inference_mode():
            expected = separator(mix)
        (got,) = session.run(None, {"mixture": mix.numpy()})
        result["onnx_torch"][length] = max_abs_diff(got, expected)
    return result


def write_markdown(path, args, results, revision, argv=None):
    """The report, with the machine, the code's ``revision`` and the
    command."""
    machine = bm.machine_description()
    given = sys.argv[1:] if argv is None else argv
    torch_cols = " | ".join(f"PyTorch, {t} thread{'s' * (t > 1)}"
                            for t in args.threads)
    onnx_cols = " | ".join(f"ONNX RT vs PyTorch, {n} samples"
                           for n in args.lengths)
    lines = [
        "# Agreement with the official MossFormer code",
        "",
        f"- machine: {machine['cpu']} ({machine['isa']}), "
        f"{machine['cores']} cores",
        f"- torch {machine['torch']}, onnxruntime {machine['onnxruntime']}",
        f"- products: {machine['products']}",
        f"- date: {datetime.datetime.now().strftime('%Y-%m-%dT%H:%M')}",
        f"- code: {bm.revision_text(revision)}",
        "- command: `python benchmarks/fixture_agreement.py"
        + "".join(" " + a for a in given) + "`",
        "- figures: largest absolute difference; PyTorch and ONNX Runtime "
        "(with the most threads listed) against the official estimates of "
        "the fixture's mixture, and ONNX Runtime against PyTorch on seeded "
        "random mixtures (N(0, 1) samples, as in the tests); the tests allow 1e-5 and 1e-4",
        "",
        f"| fixture | params | mixture | {torch_cols} | ONNX RT | "
        f"{onnx_cols} |",
        "|---|---|---|" + "---|" * (len(args.threads) + 1 + len(args.lengths)),
    ]
    for name, r in results.items():
        cells = [name, f"{r['params']:,}", " x ".join(map(str, r["mixture"]))]
        cells += [f"{r['torch'][t]:.1e}" for t in args.threads]
        cells.append(f"{r['onnx_official']:.1e}")
        cells += [f"{r['onnx_torch'][n]:.1e}" for n in args.lengths]
        lines.append("| " + " | ".join(cells) + " |")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None):
    """Measures every fixture and writes the report."""
    args = parse_args(argv)
    revision = bm.code_revision()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names:
            results[name] = measure(os.path.join(args.fixtures, name), args,
                                    tmp)
            r = results[name]
            print(f"{name}: PyTorch {r['torch']}, ONNX Runtime "
                  f"{r['onnx_official']:.1e}", flush=True)
    out = os.path.join(HERE, "results", f"{args.name}.md")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    write_markdown(out, args, results, revision, argv)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
