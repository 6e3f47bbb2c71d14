"""Does ``torch.compile`` make MossFormer faster on this CPU? Measured.

Usage (from the repository root)::

    python benchmarks/torch_compile.py                    # (L), 4 s
    python benchmarks/torch_compile.py --size s --seconds 16 --repeats 3

The mask net of MossFormer ``--size`` (random weights) runs eager and
compiled with Inductor in three ways: the default mode, with
``torch._inductor.config.freezing`` (weights folded in as constants,
oneDNN weight packing and fused epilogues) and freezing plus
``mode="max-autotune"`` (Inductor's own C++ GEMM templates benchmarked
against the BLAS). Each variant runs in a fresh process: it is compiled
and checked against eager on the same mixture (compile time and largest
difference reported), then it and the eager model take turns for
``--repeats`` rounds under ``torch.inference_mode()``, batch 1,
``--threads`` threads; the figures are the medians. While compiling, the
model takes its plain path (no shared ``Scratch`` buffers, see
``_in_place_ok``); eager inference keeps them.

Writes ``benchmarks/results/torch_compile.md`` (with the code's git
revision).

Authors
 * speechbrain-mossformer contributors 2026
"""

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_models as bm  # noqa: E402
import torch  # noqa: E402

# name -> (freezing, torch.compile mode)
VARIANTS = {
    "compiled (default)": (False, None),
    "compiled (freezing)": (True, None),
    "compiled (freezing, max-autotune)": (True, "max-autotune"),
}


def parse_args(argv=None):
    """Command line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="l", choices=bm.MOSSFORMER_SIZES)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--variant",
        choices=list(VARIANTS),
        help=argparse.SUPPRESS,  # internal: measure one variant, in a child
    )
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument(
        "--out",
        default=os.path.join(HERE, "results", "torch_compile.md"),
        help="markdown file to write",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be >= 1")
    bm.check_seconds(parser, args.seconds)
    if not args.json and not args.variant:
        bm.keep_full_run_results(
            parser, args, ("size", "seconds", "repeats", "threads"),
            attr="out", argv=argv)
    if not args.json:
        bm.output_folder(parser, os.path.dirname(os.path.abspath(args.out)),
                         "--out")
    return args


def compiled_separator(modules, mode):
    """A separator whose mask net is compiled (on its first call)."""
    variant = dict(modules)
    variant["masknet"] = torch.compile(
        modules["masknet"], dynamic=False, mode=mode
    )
    return bm.separator(variant)


def measure_variant(name, args):
    """Compiles variant ``name``, checks it against eager and times both,
    taking turns; returns a dict of the figures."""
    torch.set_num_threads(args.threads)
    freezing, mode = VARIANTS[name]
    modules = bm.build(args.size)
    mix = bm.mixture(args.seconds)
    eager = bm.separator(modules)
    import torch._inductor.config as inductor_config

    # read by Inductor while compiling; this process measures one variant
    inductor_config.freezing = freezing
    with torch.inference_mode():
        reference = eager(mix)
        compiled = compiled_separator(modules, mode)
        start = time.perf_counter()
        out = compiled(mix)
        compile_s = time.perf_counter() - start
        runs = {"eager": eager, "compiled": compiled}
        for run in runs.values():
            run(mix)  # warm-up
        times = bm.take_turns(runs, args.repeats, mix)
    return {
        "compile_s": compile_s,
        "max_diff": (out - reference).abs().max().item(),
        "eager_s": bm.median(times["eager"]),
        "compiled_s": bm.median(times["compiled"]),
    }


def main(argv=None):
    """Measures each variant in a fresh process; writes the table.

    One process per variant: compiled code is cached per function and
    module, so variants of one model in one process could share it (and
    ``torch._dynamo.reset`` would drop the earlier ones).
    """
    args = parse_args(argv)
    if args.variant is not None:
        result = measure_variant(args.variant, args)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f)
        return
    # the code that runs: read before anything is measured
    revision = bm.code_revision()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for index, name in enumerate(VARIANTS):
            path = os.path.join(tmp, f"{index}.json")
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                f"--size={args.size}",
                f"--seconds={args.seconds}",
                f"--repeats={args.repeats}",
                f"--threads={args.threads}",
                f"--variant={name}",
                f"--json={path}",
            ]
            subprocess.run(cmd, check=True)
            with open(path, encoding="utf-8") as f:
                results[name] = json.load(f)
            r = results[name]
            print(
                f"{name}: compiled in {r['compile_s']:.0f} s; "
                f"{r['compiled_s']:.3f} s against eager {r['eager_s']:.3f} s",
                flush=True,
            )
    write_markdown(args, results, argv, revision)
    print(f"wrote {args.out}")


def write_markdown(args, results, argv, revision=None):
    """The result table, with the machine, the code's ``revision``
    (``bm.code_revision()``) and the command."""
    machine = bm.machine_description()
    given = sys.argv[1:] if argv is None else argv
    lines = [
        f"# torch.compile: MossFormer ({args.size.upper()}) at "
        f"{args.seconds:g} s",
        "",
        f"- machine: {machine['cpu']} ({machine['isa']}), "
        f"{machine['cores']} cores",
        f"- torch {machine['torch']}; {args.threads} threads, batch 1, "
        "8 kHz, eval, `torch.inference_mode()`; only the mask net compiled",
        "- each variant in a fresh process: compiled and checked against "
        f"eager, 1 warm-up run, then the median of {args.repeats} runs, "
        "eager and compiled taking turns",
        f"- date: {datetime.datetime.now().strftime('%Y-%m-%dT%H:%M')}",
        f"- code: {bm.revision_text(revision)}",
        "- command: `python benchmarks/torch_compile.py"
        + "".join(" " + a for a in given)
        + "`",
        "",
        "| variant | compile s | eager s | compiled s | compiled / eager "
        "| max abs diff to eager |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['compile_s']:.0f} | {r['eager_s']:.3f} | "
            f"{r['compiled_s']:.3f} | {r['compiled_s'] / r['eager_s']:.2f} | "
            f"{r['max_diff']:.1e} |"
        )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
