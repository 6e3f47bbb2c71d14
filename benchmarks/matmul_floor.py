"""How fast could each model be? Its matrix products alone, timed.

Usage (from the repository root)::

    python benchmarks/matmul_floor.py                    # L and SepFormer, 4 s
    python benchmarks/matmul_floor.py --models s,m,l,sepformer --seconds 4

Any exact fp32 implementation of a model has to do its matrix products.
This script runs one forward pass of each model under ``torch.profiler``
(eval mode, ``torch.inference_mode()``, batch 1, ``--threads`` threads),
records every matrix-product call (``mm``, ``addmm``, ``bmm``,
``baddbmm``) and every 1x1 (pointwise) convolution with its input shapes,
then *replays* each of those calls alone on random tensors of the same
shapes and sums their best times (minimum over ``--repeats`` passes over
all the shapes, see ``floor_of``). That sum is the **matmul floor**: the
time the model's products take on this machine with nothing else running,
i.e. what the forward pass would cost if every other operation (depthwise
convolutions, normalisations, activations, memory traffic) were free. The
full forward pass is timed in the same run for comparison (median of
``--repeats``).

Each product is replayed twice: with the call the model makes (torch's
CPU BLAS, Intel MKL in PyPI's torch) and with oneDNN's fp32 matrix
product (``torch.ops.mkldnn._linear_pointwise``, the kernel Inductor uses;
a private operator, so the script skips it where it is missing): on this
project's AMD CPU, oneDNN runs several of these shapes faster than MKL.
oneDNN's operator has no ``out=``: its times include allocating the
output, and an accumulating product (``baddbmm_``) is replayed as the
product alone. Where numpy's OpenBLAS is found, each product is replayed a
third time through it (``speechbrain_mossformer.cpu_blas.gemm``, which
MossFormer's inference path uses on AMD CPUs with AVX-512; into
preallocated outputs, accumulating as the model does). The floor of a
model is then the sum, over its calls, of the fastest library per call.
The products are recorded with torch's BLAS (``MOSSFORMER_CPU_BLAS=torch``
while recording: the profiler does not see OpenBLAS's calls); the measured
forward pass uses whatever this environment selects (the results name
it).

The ratio ``floor(MossFormer L) / measured(SepFormer)`` is the smallest
L-to-SepFormer time ratio that an exact fp32 MossFormer could reach on this
machine against SepFormer as SpeechBrain runs it, with any of these
libraries (a faster GEMM would lower it).

Writes ``benchmarks/results/matmul_floor.md`` and ``.json`` (with the
code's git revision); a run with other options than the defaults writes
``matmul_floor_custom.*`` unless ``--name`` is given.

Authors
 * speechbrain-mossformer contributors 2026
"""

import argparse
import collections
import datetime
import json
import math
import os
import sys
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_models as bm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from speechbrain_mossformer import cpu_blas  # noqa: E402

MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm_",
              "aten::baddbmm")


def parse_args(argv=None):
    """Command line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="l,sepformer")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--out-dir", default=os.path.join(HERE, "results"), help="output"
    )
    parser.add_argument(
        "--name", default="matmul_floor", help="base name of the outputs"
    )
    args = parser.parse_args(argv)
    bm.keep_full_run_results(
        parser, args, ("models", "seconds", "threads", "repeats"),
        argv=argv)
    args.models = bm.model_list(parser, args.models)
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be >= 1")
    bm.check_seconds(parser, args.seconds)
    bm.output_folder(parser, args.out_dir)
    return args


def record_products(run, mix):
    """The matrix-product calls of one forward pass.

    Returns a list of ``(op, shapes)``: ``op`` one of ``MATMUL_OPS`` or
    ``"pointwise_conv"``, ``shapes`` the input shapes the profiler saw.
    """
    from torch.profiler import profile

    with products_in("torch"), torch.inference_mode(), profile(
        record_shapes=True
    ) as prof:
        run(mix)
    calls = []
    for event in prof.events():
        shapes = [list(s) for s in event.input_shapes]
        if event.name in MATMUL_OPS:
            calls.append((event.name, shapes))
        elif event.name == "aten::mkldnn_convolution":
            weight = shapes[1]
            # [C_out, C_in/groups, 1, 1] with no grouping: a matrix product
            if len(weight) == 4 and weight[2:] == [1, 1] and weight[1] > 1:
                calls.append(("pointwise_conv", shapes))
    return calls


def macs(op, shapes):
    """Multiply-accumulates of one recorded call."""
    if op == "aten::mm":
        (m, k), (_, n) = shapes[0], shapes[1]
        return m * k * n
    if op == "aten::addmm":
        (m, k), (_, n) = shapes[1], shapes[2]
        return m * k * n
    if op == "aten::bmm":
        (b, m, k), (_, _, n) = shapes[0], shapes[1]
        return b * m * k * n
    if op in ("aten::baddbmm_", "aten::baddbmm"):
        (b, m, k), (_, _, n) = shapes[1], shapes[2]
        return b * m * k * n
    # pointwise conv: input [B, C_in, 1, T], weight [C_out, C_in, 1, 1]
    batch, _, height, width = shapes[0]
    c_out, c_in = shapes[1][:2]
    return batch * height * width * c_in * c_out


def replay(op, shapes):
    """A zero-argument callable doing the call on random tensors.

    The outputs are preallocated (``out=``, or in place), so that memory
    allocation is not counted either.
    """
    t = [torch.randn(s) if s else None for s in shapes]
    if op == "aten::mm":
        out = torch.empty(t[0].shape[0], t[1].shape[1])
        return lambda: torch.mm(t[0], t[1], out=out)
    if op == "aten::addmm":
        out = torch.empty(t[1].shape[0], t[2].shape[1])
        return lambda: torch.addmm(t[0], t[1], t[2], out=out)
    if op == "aten::bmm":
        out = torch.empty(t[0].shape[0], t[0].shape[1], t[1].shape[2])
        return lambda: torch.bmm(t[0], t[1], out=out)
    if op in ("aten::baddbmm_", "aten::baddbmm"):
        return lambda: t[0].baddbmm_(t[1], t[2])
    # channels-last input, as the models feed it
    image = t[0].contiguous(memory_format=torch.channels_last)
    return lambda: F.conv2d(image, t[1], t[2] if len(t) > 2 else None)


def time_call(fn, repeats):
    """Median wall time of ``fn`` after one warm-up call."""
    fn()
    return bm.median([bm.timed(fn) for _ in range(repeats)])


def onednn_available():
    """True when this torch build has oneDNN's fp32 linear operator.

    Example
    -------
    >>> isinstance(onednn_available(), bool)
    True
    """
    return torch.backends.mkldnn.is_available() and hasattr(
        torch.ops.mkldnn, "_linear_pointwise"
    )


def replay_onednn(op, shapes):
    """``replay`` with oneDNN's fp32 product instead of torch's BLAS.

    ``A @ B`` is ``_linear_pointwise(A, B^T)`` (oneDNN reads the transposed
    view as it is); batched products run item by item; a ``baddbmm_`` is
    replayed as its product alone (a GEMM with beta = 1 accumulates at no
    extra cost; the operator has no beta). Returns ``None`` for a 1x1
    convolution, which torch already runs with oneDNN.

    Example
    -------
    >>> run = replay_onednn("aten::mm", [[8, 4], [4, 6]])
    >>> None if run is None else tuple(run().shape)
    (8, 6)
    """
    linear = torch.ops.mkldnn._linear_pointwise.default
    t = [torch.randn(s) if s else None for s in shapes]
    if op == "aten::mm":
        return lambda: linear(t[0], t[1].t(), None, "none", [], "")
    if op == "aten::addmm":
        if t[0].dim() != 1:
            # a bias of another shape: not what _linear_pointwise takes
            return None
        return lambda: linear(t[1], t[2].t(), t[0], "none", [], "")
    if op == "aten::bmm":
        a, b = t[0], t[1]
    elif op in ("aten::baddbmm_", "aten::baddbmm"):
        a, b = t[1], t[2]
    else:
        return None
    return lambda: [
        linear(a[i], b[i].t(), None, "none", [], "") for i in range(len(a))
    ]


def products_in(choice):
    """A context setting ``MOSSFORMER_CPU_BLAS`` to ``choice`` inside a
    ``with`` block (and putting back what was there).

    Example
    -------
    >>> with products_in("torch"):
    ...     os.environ[cpu_blas.ENV_VARIABLE]
    'torch'
    """
    return mock.patch.dict(os.environ, {cpu_blas.ENV_VARIABLE: choice})


def replay_openblas(op, shapes):
    """``replay`` through numpy's OpenBLAS (``cpu_blas.gemm``), or None
    where it is missing or for a 1x1 convolution. Run it inside
    ``products_in("openblas")`` and ``torch.inference_mode()``.

    Example
    -------
    >>> run = replay_openblas("aten::addmm", [[6], [8, 4], [4, 6]])
    >>> with products_in("openblas"), torch.inference_mode():
    ...     None if run is None else tuple(run().shape)
    (8, 6)
    """
    if cpu_blas.openblas() is None:
        return None
    t = [torch.randn(s) if s else None for s in shapes]
    if op == "aten::mm":
        out = torch.empty(t[0].shape[0], t[1].shape[1])
        return lambda: cpu_blas.gemm(t[0], t[1], out)
    if op == "aten::addmm":
        if t[0].dim() != 1:
            return None
        out = torch.empty(t[1].shape[0], t[2].shape[1])
        return lambda: cpu_blas.gemm(t[1], t[2], out, bias=t[0])
    if op == "aten::bmm":
        out = torch.empty(t[0].shape[0], t[0].shape[1], t[1].shape[2])
        return lambda: cpu_blas.batched_gemm(t[0], t[1], out)
    if op in ("aten::baddbmm_", "aten::baddbmm"):
        return lambda: cpu_blas.batched_gemm(
            t[1], t[2], t[0], accumulate=True)
    return None


def floor_of(calls, repeats, use_onednn=True, use_openblas=True):
    """Replayed best times of ``calls``.

    Each distinct call (operator and shapes) is replayed with torch's BLAS
    and, where ``replay_onednn`` and ``replay_openblas`` can express it,
    with oneDNN and numpy's OpenBLAS. For each library in turn, the
    replays run in ``repeats`` passes over all of them, each once per
    pass, and a replay's time is its best over the passes: a slow spell of
    this shared machine then spoils one pass of every shape, not every
    pass of the few shapes timed during it.

    Returns ``(blas, onednn, openblas, best), shapes``: the sums over
    ``calls`` of the BLAS replays, of the oneDNN replays and of the OpenBLAS
    replays (each the BLAS time where that library has no replay; ``None``
    without the library) and of the fastest per call; and one dict per
    distinct call (``op``, ``shapes``, ``calls``, the summed ``blas_s``,
    ``onednn_s`` and ``openblas_s``, ``None`` where not replayed).
    """
    libraries = {"blas": replay}
    if use_onednn and onednn_available():
        libraries["onednn"] = replay_onednn
    if use_openblas and cpu_blas.openblas() is not None:
        libraries["openblas"] = replay_openblas
    counts = collections.Counter(
        (op, json.dumps(shapes)) for op, shapes in calls)
    replays = {
        key: {
            lib: make(key[0], json.loads(key[1]))
            for lib, make in libraries.items()
        }
        for key in counts
    }
    best = {
        key: {lib: math.inf for lib, run in runs.items() if run is not None}
        for key, runs in replays.items()
    }
    with products_in("openblas"), torch.inference_mode():
        for runs in replays.values():
            for run in runs.values():
                if run is not None:
                    run()  # warm-up
        # one library at a time: OpenBLAS's threads spin for a while
        # after each call, which slows the next library's threads
        for lib in libraries:
            for _ in range(repeats):
                for key, runs in replays.items():
                    if runs[lib] is not None:
                        best[key][lib] = min(
                            best[key][lib], bm.timed(runs[lib]))

    def total(lib):
        if lib not in libraries:
            return None
        return sum(
            n * best[key].get(lib, best[key]["blas"])
            for key, n in counts.items()
        )

    fastest = sum(n * min(best[key].values()) for key, n in counts.items())
    shapes = [
        {
            "op": op,
            "shapes": json.loads(sizes),
            "calls": n,
            **{
                f"{lib}_s": (
                    n * best[op, sizes][lib] if lib in best[op, sizes]
                    else None
                )
                for lib in ("blas", "onednn", "openblas")
            },
        }
        for (op, sizes), n in counts.items()
    ]
    return (
        total("blas"), total("onednn"), total("openblas"), fastest
    ), shapes


def main(argv=None):
    """Runs the measurement and writes the table."""
    args = parse_args(argv)
    # the code that runs: read before anything is measured
    revision = bm.code_revision()
    torch.set_num_threads(args.threads)
    mix = bm.mixture(args.seconds)
    rows = {}
    for name in args.models:
        run = bm.separator(bm.build(name))
        with torch.inference_mode():
            measured = time_call(lambda: run(mix), args.repeats)
        calls = record_products(run, mix)
        (blas, onednn, openblas, floor), shapes = floor_of(
            calls, args.repeats)
        gmac = sum(macs(op, s) for op, s in calls) / 1e9
        rows[name] = {
            "measured_s": measured,
            "floor_s": floor,
            "floor_blas_s": blas,
            "floor_onednn_s": onednn,
            "floor_openblas_s": openblas,
            "product_gmac": gmac,
            "product_calls": len(calls),
            "per_shape": shapes,
        }
        print(
            f"{name}: forward {measured:.2f} s, products {gmac:.1f} GMAC in "
            f"{len(calls)} calls, floor {floor:.2f} s "
            f"({gmac / floor:.1f} GMAC/s; BLAS alone {blas:.2f} s"
            + ("" if onednn is None else f", oneDNN alone {onednn:.2f} s")
            + ("" if openblas is None
               else f", OpenBLAS alone {openblas:.2f} s")
            + ")",
            flush=True,
        )
    write_results(args, rows, revision)


def write_results(args, rows, revision=None):
    """Writes matmul_floor.md/.json into ``args.out_dir``; ``revision``:
    the code's ``bm.code_revision()``."""
    os.makedirs(args.out_dir, exist_ok=True)
    machine = bm.machine_description()
    seconds = args.seconds
    lines = [
        "# Matmul floor: each model's matrix products alone",
        "",
        f"`python benchmarks/matmul_floor.py --models "
        f"{','.join(args.models)} --seconds {seconds:g}` on "
        f"{datetime.date.today().isoformat()}: {machine['cpu']} "
        f"({machine['isa']}), {machine['cores']} cores, "
        f"{args.threads} threads, torch {machine['torch']}; "
        f"{seconds:g} s of 8 kHz audio, batch 1; forward: median of "
        f"{args.repeats}, products: best of {args.repeats}.",
        "",
        f"Code: {bm.revision_text(revision)}.",
        "",
        f"Products: {machine['products']}.",
        "",
        "| model | products (GMAC) | products, torch's BLAS (s) | "
        "products, oneDNN (s) | products, numpy's OpenBLAS (s) | "
        "matmul floor (s) | floor RTF | "
        "measured forward (s) | measured RTF | floor / measured |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        onednn = r["floor_onednn_s"]
        openblas = r.get("floor_openblas_s")
        lines.append(
            f"| {bm.LABELS.get(name, name)} | {r['product_gmac']:.1f} | "
            f"{r['floor_blas_s']:.2f} | "
            f"{'-' if onednn is None else f'{onednn:.2f}'} | "
            f"{'-' if openblas is None else f'{openblas:.2f}'} | "
            f"{r['floor_s']:.2f} | {r['floor_s'] / seconds:.3f} | "
            f"{r['measured_s']:.2f} | {r['measured_s'] / seconds:.3f} | "
            f"{r['floor_s'] / r['measured_s']:.0%} |"
        )
    if "l" in rows and "sepformer" in rows:
        ratio = rows["l"]["floor_s"] / rows["sepformer"]["measured_s"]
        measured_ratio = (
            rows["l"]["measured_s"] / rows["sepformer"]["measured_s"]
        )
        lines += [
            "",
            f"MossFormer (L) matmul floor / SepFormer measured = "
            f"**{ratio:.2f}** (the lowest L/SepFormer time ratio an exact "
            f"fp32 MossFormer (L) could reach here with these GEMM "
            f"libraries); measured "
            f"L / SepFormer = {measured_ratio:.2f}.",
        ]
    lines += [
        "",
        "The floor replays every recorded matrix product (mm, addmm, bmm, "
        "baddbmm, 1x1 convolutions) alone on random tensors of the same "
        "shapes, with torch's BLAS (into preallocated outputs) and with "
        "oneDNN's fp32 product (outputs allocated by the operator; "
        "accumulating products as the product alone) and with numpy's "
        "OpenBLAS (``cpu_blas.gemm``, into preallocated outputs), and adds "
        "up the fastest per call: everything else the forward pass "
        "does is counted as free.",
    ]
    for name, r in rows.items():
        lines += [
            "",
            f"{bm.LABELS.get(name, name)}, by product shape (seconds summed "
            "over the calls of one forward pass, largest first):",
            "",
            "| op | input shapes | calls | torch's BLAS (s) | oneDNN (s) | "
            "OpenBLAS (s) | torch's BLAS GMAC/s | OpenBLAS GMAC/s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for shape in sorted(r["per_shape"], key=lambda x: -x["blas_s"]):
            onednn = shape["onednn_s"]
            openblas = shape.get("openblas_s")
            gmac = shape["calls"] * macs(shape["op"], shape["shapes"]) / 1e9
            rate = "-" if openblas is None else f"{gmac / openblas:.0f}"
            lines.append(
                f"| {shape['op']} | {[x for x in shape['shapes'] if x]} | "
                f"{shape['calls']} | "
                f"{shape['blas_s']:.3f} | "
                f"{'-' if onednn is None else f'{onednn:.3f}'} | "
                f"{'-' if openblas is None else f'{openblas:.3f}'} | "
                f"{gmac / shape['blas_s']:.0f} | {rate} |"
            )
    with open(os.path.join(args.out_dir, args.name + ".md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out_dir, args.name + ".json"), "w") as f:
        json.dump(
            {"machine": machine, "revision": revision, "seconds": seconds,
             "threads": args.threads, "rows": rows},
            f,
            indent=1,
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
