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
shapes and sums their best times (minimum of ``--repeats``). That sum is
the **matmul floor**: the time the model's products take on this machine's
BLAS with nothing else running, i.e. what the forward pass would cost if every other operation
(depthwise convolutions, normalisations, activations, memory traffic) were
free. The full forward pass is timed in the same run for comparison.

The ratio ``floor(MossFormer L) / measured(SepFormer)`` is the smallest
L-to-SepFormer time ratio that an exact fp32 MossFormer could reach on this
machine against SepFormer as SpeechBrain runs it.

Writes ``benchmarks/results/matmul_floor.md`` and ``.json``.

Authors
 * speechbrain-mossformer contributors 2026
"""

import argparse
import datetime
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_models as bm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

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
    args = parser.parse_args(argv)
    args.models = [m.strip().lower() for m in args.models.split(",") if m]
    unknown = [m for m in args.models if m not in bm.ALL_MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {bm.ALL_MODELS}")
    if not args.models:
        parser.error("--models is empty")
    if args.repeats < 1 or args.threads < 1 or args.seconds <= 0:
        parser.error("--repeats and --threads must be >= 1, --seconds > 0")
    return args


def record_products(run, mix):
    """The matrix-product calls of one forward pass.

    Returns a list of ``(op, shapes)``: ``op`` one of ``MATMUL_OPS`` or
    ``"pointwise_conv"``, ``shapes`` the input shapes the profiler saw.
    """
    from torch.profiler import profile

    with torch.inference_mode(), profile(record_shapes=True) as prof:
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


def time_call(fn, repeats, best=False):
    """Median (or with ``best``, minimum) wall time of ``fn`` after one
    warm-up call."""
    fn()
    times = [bm.timed(fn) for _ in range(repeats)]
    return min(times) if best else bm.median(times)


def floor_of(calls, repeats):
    """Sum of the replayed best times of ``calls`` (same shapes once)."""
    cache = {}
    total = 0.0
    with torch.inference_mode():
        for op, shapes in calls:
            key = (op, json.dumps(shapes))
            if key not in cache:
                cache[key] = time_call(replay(op, shapes), repeats, best=True)
            total += cache[key]
    return total


def main(argv=None):
    """Runs the measurement and writes the table."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    mix = bm.mixture(args.seconds)
    rows = {}
    for name in args.models:
        run = bm.separator(bm.build(name))
        with torch.inference_mode():
            measured = time_call(lambda: run(mix), args.repeats)
        calls = record_products(run, mix)
        floor = floor_of(calls, args.repeats)
        gmac = sum(macs(op, s) for op, s in calls) / 1e9
        rows[name] = {
            "measured_s": measured,
            "floor_s": floor,
            "product_gmac": gmac,
            "product_calls": len(calls),
        }
        print(
            f"{name}: forward {measured:.2f} s, products {gmac:.1f} GMAC in "
            f"{len(calls)} calls, floor {floor:.2f} s "
            f"({gmac / floor:.1f} GMAC/s)",
            flush=True,
        )
    write_results(args, rows)


def write_results(args, rows):
    """Writes matmul_floor.md/.json into ``args.out_dir``."""
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
        "| model | products (GMAC) | matmul floor (s) | floor RTF | "
        "measured forward (s) | measured RTF | floor / measured |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {bm.LABELS.get(name, name)} | {r['product_gmac']:.1f} | "
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
            f"**{ratio:.2f}** (the lowest L/SepFormer time ratio any exact "
            f"fp32 MossFormer (L) could reach here); measured "
            f"L / SepFormer = {measured_ratio:.2f}.",
        ]
    lines += [
        "",
        "The floor replays every recorded matrix product (mm, addmm, bmm, "
        "baddbmm, 1x1 convolutions) alone on random tensors of the same "
        "shapes and adds up their best times: everything else the "
        "forward pass does is counted as free.",
    ]
    with open(os.path.join(args.out_dir, "matmul_floor.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out_dir, "matmul_floor.json"), "w") as f:
        json.dump(
            {"machine": machine, "seconds": seconds, "threads": args.threads,
             "rows": rows},
            f,
            indent=1,
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
