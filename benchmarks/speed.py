"""Real-time factor and peak memory of MossFormer (S/M/L) and SepFormer.

Usage (from the repository root)::

    python benchmarks/speed.py                 # full run: 4, 16, 60 s
    python benchmarks/speed.py --quick         # 4 s only, 2 repeats
    python benchmarks/speed.py --models l,sepformer --seconds 4 --repeats 5

All models run side by side in one process on the same random 8 kHz
mixture, batch 1, ``--threads`` intra-op threads (default 2), in eval mode
under ``torch.inference_mode()``. For each length, every model is first run
``--warmup`` times, then the models take turns for ``--repeats`` rounds (so
that a change in machine load hits all of them alike); each round starts
at the next model and every other round runs backwards (``bm.turn_order``),
so no model always holds the same place or runs right after the same one.
The figure is the median. RTF = wall time / audio duration (below 1 is
faster than real time).

The MossFormer models are also exported to ONNX (with
``speechbrain_mossformer.export_onnx``) and timed in ONNX Runtime (CPU
provider, ``--threads`` intra-op threads) in the same rounds, each
ONNX Runtime session taking its own turn.

Peak memory is measured per configuration in a fresh subprocess: the model
is built (weights resident) and run once on a 0.1 s mixture (PyTorch and
ONNX Runtime alike), then the peak resident set size is reset
(``/proc/self/clear_refs``) and one forward pass is run; the figure is the
peak RSS during the pass minus the RSS just before it, i.e. the activation
memory of the pass (not counting the weights).

Writes ``benchmarks/results/speed.md`` (table, with the machine's CPU model,
core count, library versions and the code's git revision), ``speed.png``
and ``speed.json``.

Authors
 * speechbrain-mossformer contributors 2026
"""

import argparse
import datetime
import gc
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_models as bm  # noqa: E402
import torch  # noqa: E402

from speechbrain_mossformer.cpu_env import (  # noqa: E402
    apply_fast_cpu_environment,
)


# glibc malloc settings for --tuned-malloc: no mmap for large blocks (up to
# 4 GiB), and freed heap memory is kept rather than returned to the kernel
TUNED_MALLOC = {
    "MALLOC_MMAP_THRESHOLD_": "4294967296",
    "MALLOC_TRIM_THRESHOLD_": "68719476736",
}


def allocator_description():
    """How this process's allocator was set, for the result table: glibc
    malloc's settings, and PyTorch's ``THP_MEM_ALLOC_ENABLE`` (large CPU
    tensors on transparent huge pages) when set."""
    tuned = {k: os.environ[k] for k in TUNED_MALLOC if k in os.environ}
    if not tuned:
        text = "default glibc malloc"
    else:
        text = "glibc malloc with " + " ".join(
            f"{k}={v}" for k, v in tuned.items()
        )
    if os.environ.get("THP_MEM_ALLOC_ENABLE"):
        text += (
            "; THP_MEM_ALLOC_ENABLE="
            f"{os.environ['THP_MEM_ALLOC_ENABLE']} (PyTorch's large CPU "
            "tensors on transparent huge pages)"
        )
    return text


def parse_args(argv=None):
    """Command line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        default=",".join(bm.ALL_MODELS),
        help="comma-separated subset of s,m,l,sepformer (default: all)",
    )
    parser.add_argument(
        "--seconds",
        default="4,16,60",
        help="comma-separated audio lengths in seconds (default 4,16,60)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="4 s only, 2 repeats (overrides --seconds and --repeats); "
        "writes speed_quick.* unless --name is given",
    )
    parser.add_argument(
        "--no-onnx", action="store_true", help="skip ONNX Runtime timing"
    )
    parser.add_argument(
        "--no-memory", action="store_true", help="skip peak memory"
    )
    parser.add_argument(
        "--out-dir", default=os.path.join(HERE, "results"), help="output"
    )
    parser.add_argument(
        "--name",
        default="speed",
        help="base name of the output files (default: speed -> speed.md, "
        "speed.png, speed.json; with --quick: speed_quick)",
    )
    parser.add_argument(
        "--fast-cpu",
        action="store_true",
        help="run with speechbrain_mossformer.cpu_env's settings for this "
        "CPU (OMP_WAIT_POLICY=PASSIVE on an AMD CPU with AVX-512, so that "
        "MossFormer's products run in numpy's OpenBLAS); applies to every "
        "model alike; variables already set are kept",
    )
    parser.add_argument(
        "--tuned-malloc",
        action="store_true",
        help="run with glibc's allocator told to keep freed memory "
        f"({' '.join(k + '=' + v for k, v in TUNED_MALLOC.items())}): "
        "large tensors then reuse memory instead of page-faulting in fresh "
        "pages on every allocation; applies to every model alike",
    )
    # internal: one peak-memory measurement in this (fresh) process
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--onnx-path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.repeats = "4", 2
        if args.name == "speed":
            # never replace the full run's speed.md/.png/.json
            args.name = "speed_quick"
    elif not (args.memory_child or args.onnx_path):
        bm.keep_full_run_results(parser, args, (
            "models", "seconds", "threads", "repeats", "warmup", "no_onnx",
            "no_memory", "tuned_malloc", "fast_cpu"), argv=argv)
    args.models = bm.model_list(parser, args.models)
    args.seconds = bm.seconds_list(parser, args.seconds)
    if args.threads < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--threads and --repeats must be >= 1, --warmup >= 0")
    if not (args.memory_child or args.onnx_path):
        bm.output_folder(parser, args.out_dir)
    return args


# --------------------------------------------------------------------------
# Peak memory (fresh subprocess per configuration)
# --------------------------------------------------------------------------


#: Length (s) of the warm-up pass before a peak-memory measurement.
MEMORY_WARMUP_SECONDS = 0.1


def memory_child(name, seconds, threads, onnx_path=None):
    """Measures one forward pass; prints a JSON line."""
    torch.set_num_threads(threads)
    if name.startswith("onnx:"):
        run = bm.ort_runner(bm.ort_session(onnx_path, threads))
    else:
        run = bm.separator(bm.build(name))
    mix = bm.mixture(seconds)

    def forward(mix):
        with torch.inference_mode():
            run(mix)

    # Both runtimes get the same tiny warm-up pass before the measured
    # one: the first pass of either allocates once-per-process state that
    # is not the activation memory of a pass (ONNX Runtime: the session's
    # transient initialisation buffers; PyTorch: the OpenMP thread pool,
    # MKL/oneDNN workspaces, lazily built tables). Without it, a pass of
    # one runtime would carry its set-up and the other's not. The warm-up
    # is short, so the buffers that grow with the audio length are still
    # allocated in the measured pass.
    forward(bm.mixture(MEMORY_WARMUP_SECONDS))
    memory = bm.peak_memory(forward, mix)
    print(
        json.dumps(
            {
                "name": name,
                "seconds": seconds,
                "rss_before_mb": memory["rss_before_mb"],
                "peak_mb": memory["peak_mb"],
                "forward_peak_mb": memory["above_mb"],
                "method": memory["method"],
            }
        )
    )


def measure_memory(name, seconds, threads, onnx_path=None):
    """Runs ``memory_child`` in a fresh interpreter; returns its dict."""
    cmd = [
        os.path.abspath(__file__),
        "--memory-child",
        name,
        str(seconds),
        "--threads",
        str(threads),
    ]
    if onnx_path:
        cmd += ["--onnx-path", onnx_path]
    return bm.child_result(
        cmd, threads, f"memory of {name} at {seconds:g} s"
    )


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def _fmt(value, digits=2):
    return "–" if value is None else f"{value:.{digits}f}"


def write_markdown(path, results, machine, args, command):
    """Writes the result table."""
    seconds = results["seconds"]
    lines = [
        "# Speed and memory: MossFormer (S/M/L) vs SpeechBrain SepFormer",
        "",
        f"- machine: {machine['cpu']}"
        + (f" ({machine['isa']})" if machine["isa"] else "")
        + f", {machine['cores']} cores",
        f"- torch {machine['torch']}, onnxruntime "
        f"{machine['onnxruntime'] or 'not installed'}; "
        f"{args.threads} threads, batch 1, 8 kHz, eval, "
        "`torch.inference_mode()`",
        f"- allocator: {machine.get('allocator', 'default glibc malloc')}",
        f"- products: {machine.get('products', 'not recorded')}",
        f"- timing: {args.warmup} warm-up run(s), then the median of "
        f"{args.repeats} runs, models taking turns (each round starting "
        "at the next model, every other round backwards; ONNX Runtime "
        "sessions take their own turns)",
        f"- date: {results['date']}",
        f"- code: {bm.revision_text(results.get('revision'))}",
        f"- command: `{command}`",
        "",
        "## Real-time factor (wall time / audio duration; lower is faster)",
        "",
    ]
    head = ["model", "params"]
    head += [f"PyTorch {s:g} s" for s in seconds]
    if len(seconds) > 1:
        head.append(f"PyTorch {seconds[-1]:g} s / {seconds[0]:g} s")
    onnx = any(r.get("onnx_rtf") for r in results["models"].values())
    if onnx:
        head += [f"ONNX RT {s:g} s" for s in seconds]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for name, r in results["models"].items():
        row = [bm.LABELS[name], f"{r['params'] / 1e6:.1f}M"]
        rtf = [r["rtf"].get(str(s)) for s in seconds]
        row += [_fmt(v) for v in rtf]
        if len(seconds) > 1:
            ratio = (
                rtf[-1] / rtf[0] if rtf[0] and rtf[-1] is not None else None
            )
            row.append(_fmt(ratio))
        if onnx:
            row += [
                _fmt(r.get("onnx_rtf", {}).get(str(s))) for s in seconds
            ]
        lines.append("| " + " | ".join(row) + " |")
    memory = any(r.get("memory") for r in results["models"].values())
    if memory:
        lines += [
            "",
            "## Peak memory of one forward pass (MiB)",
            "",
            "Each figure comes from a fresh process: peak resident set size "
            "during one forward pass (kernel VmHWM, reset just before the "
            "pass) minus the resident set size just before it, i.e. the "
            "activations and workspace, not the weights. Before it, one "
            f"{MEMORY_WARMUP_SECONDS:g} s pass in both runtimes (their "
            "once-per-process set-up is not counted).",
            "",
        ]
        head = ["model"] + [f"PyTorch {s:g} s" for s in seconds]
        if onnx:
            head += [f"ONNX RT {s:g} s" for s in seconds]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for name, r in results["models"].items():
            mem = r.get("memory", {})
            row = [bm.LABELS[name]]
            row += [_fmt(mem.get(str(s)), 0) for s in seconds]
            if onnx:
                row += [
                    _fmt(r.get("onnx_memory", {}).get(str(s)), 0)
                    for s in seconds
                ]
            lines.append("| " + " | ".join(row) + " |")
    targets = target_lines(results)
    if targets:
        lines += ["", "## Targets", "", *targets]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def target_lines(results):
    """The lines of the report's "Targets" section (none where the run
    has neither MossFormer (L) and SepFormer nor MossFormer (L) at two
    lengths)."""
    lines = []
    seconds = results["seconds"]
    models = results["models"]
    first = str(seconds[0])
    if "l" in models and "sepformer" in models:
        l_rtf = models["l"]["rtf"].get(first)
        s_rtf = models["sepformer"]["rtf"].get(first)
        if l_rtf and s_rtf:
            ratio = l_rtf / s_rtf
            lines.append(
                f"- MossFormer (L) RTF / SepFormer RTF at {seconds[0]:g} s: "
                f"{ratio:.2f} (target <= 0.65: "
                f"{'met' if ratio <= 0.65 else 'NOT met'})"
            )
        l_all, s_all = models["l"]["rtf"], models["sepformer"]["rtf"]
        others = [
            f"{s:g} s: {l_all[str(s)] / s_all[str(s)]:.2f}"
            for s in seconds[1:]
            if l_all.get(str(s)) and s_all.get(str(s))
        ]
        if others:
            lines.append(
                "- the same ratio at the other lengths: " + ", ".join(others)
            )
    if "l" in models and len(seconds) > 1:
        rtf = models["l"]["rtf"]
        a, b = rtf.get(str(seconds[0])), rtf.get(str(seconds[-1]))
        if a and b:
            ratio = b / a
            lines.append(
                f"- MossFormer (L) cost per audio second, {seconds[-1]:g} s "
                f"/ {seconds[0]:g} s: {ratio:.2f} (target <= 1.2: "
                f"{'met' if ratio <= 1.2 else 'NOT met'})"
            )
    return lines


def write_plot(path, results, machine, args):
    """RTF and memory against audio length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = results["seconds"]
    memory = any(r.get("memory") for r in results["models"].values())
    fig, axes = plt.subplots(1, 2 if memory else 1, figsize=(11, 4.2))
    axes = axes if memory else [axes]
    # (axis, result key, line style, label suffix)
    curves = [
        (axes[0], "rtf", "o-", ""),
        (axes[0], "onnx_rtf", "s--", ", ONNX RT"),
    ]
    if memory:
        curves += [
            (axes[1], "memory", "o-", ""),
            (axes[1], "onnx_memory", "s--", ", ONNX RT"),
        ]
    for name, r in results["models"].items():
        color = None
        for ax, key, style, suffix in curves:
            values = r.get(key) or {}
            xs = [s for s in seconds if values.get(str(s)) is not None]
            if not xs:
                continue
            line = ax.plot(
                xs,
                [values[str(s)] for s in xs],
                style,
                color=color,
                label=bm.LABELS[name] + suffix,
            )[0]
            # one colour per model, taken from its first curve
            color = color or line.get_color()
    for ax in axes:
        if len(seconds) > 1:
            ax.set_xscale("log")
            ax.set_xticks(seconds)
            ax.set_xticklabels([f"{s:g}" for s in seconds])
            ax.minorticks_off()
    axes[0].set_xlabel("audio length (s)")
    axes[0].set_ylabel("real-time factor (lower is faster)")
    axes[0].set_title(
        f"{machine['cpu']}, {args.threads} threads, batch 1", fontsize=10
    )
    axes[0].set_ylim(bottom=0)
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if memory:
        axes[1].set_xlabel("audio length (s)")
        axes[1].set_ylabel("forward-pass peak memory (MiB)")
        axes[1].set_title("fresh process per point", fontsize=10)
        if len(seconds) > 1:
            axes[1].set_yscale("log")
        axes[1].grid(alpha=0.3)
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def turns(runners, onnx_runners):
    """The callables that take turns: each model's PyTorch runner, followed
    (in the first round) by its ONNX Runtime runner as ``onnx:NAME``.

    Example
    -------
    >>> list(turns({"s": print, "l": print}, {"s": print}))
    ['s', 'onnx:s', 'l']
    """
    runs = {}
    for name, run in runners.items():
        runs[name] = run
        if name in onnx_runners:
            runs["onnx:" + name] = onnx_runners[name]
    return runs


def main(argv=None):
    """Runs the benchmark; returns the exit status."""
    args = parse_args(argv)
    if args.memory_child:
        name, seconds = args.memory_child
        memory_child(name, float(seconds), args.threads, args.onnx_path)
        return 0
    env = dict(os.environ)
    if args.tuned_malloc:
        env.update(TUNED_MALLOC)
    if args.fast_cpu:
        apply_fast_cpu_environment(env, modules={})
    if env != dict(os.environ):
        # the allocator and the OpenMP runtime read these once, at
        # start-up: start again with them
        argv = sys.argv[1:] if argv is None else list(argv)
        os.execve(
            sys.executable, [sys.executable, os.path.abspath(__file__), *argv],
            env,
        )
    torch.set_num_threads(args.threads)
    # the code that runs: read before anything is measured
    revision = bm.code_revision()
    machine = bm.machine_description()
    machine["allocator"] = allocator_description()
    print(
        f"{machine['cpu']} ({machine['cores']} cores), torch "
        f"{machine['torch']}, {args.threads} threads"
    )
    models = {name: bm.build(name) for name in args.models}
    runners = {name: bm.separator(mods) for name, mods in models.items()}
    results = {
        "seconds": args.seconds,
        "date": datetime.datetime.now().isoformat(timespec="minutes"),
        "revision": revision,
        "machine": machine,
        "models": {
            name: {"params": bm.count(mods), "rtf": {}, "times": {}}
            for name, mods in models.items()
        },
    }
    onnx_dir = tempfile.mkdtemp(prefix="mossformer_onnx_")
    onnx_paths, onnx_runners = {}, {}
    if not args.no_onnx and machine["onnxruntime"]:
        for name in args.models:
            if name in bm.MOSSFORMER_SIZES:
                path = os.path.join(onnx_dir, f"mossformer_{name}.onnx")
                print(f"exporting {bm.LABELS[name]} to ONNX ...", flush=True)
                bm.export_onnx(models[name], path)
                onnx_paths[name] = path
                onnx_runners[name] = bm.ort_runner(
                    bm.ort_session(path, args.threads)
                )
                results["models"][name].update(onnx_rtf={}, onnx_times={})
    for seconds in args.seconds:
        mix = bm.mixture(seconds)
        key = str(seconds)
        print(f"--- {seconds:g} s of audio", flush=True)
        runs = turns(runners, onnx_runners)
        with torch.inference_mode():
            for _ in range(args.warmup):
                for run in runs.values():
                    run(mix)
            times = bm.take_turns(
                runs, args.repeats, mix, alternate=True, rotate=True
            )
        for name in args.models:
            r = results["models"][name]
            r["times"][key] = times[name]
            r["rtf"][key] = bm.median(times[name]) / seconds
            line = f"{bm.LABELS[name]:36s} RTF {r['rtf'][key]:.3f}"
            if name in onnx_runners:
                r["onnx_times"][key] = times["onnx:" + name]
                r["onnx_rtf"][key] = (
                    bm.median(times["onnx:" + name]) / seconds
                )
                line += f"   ONNX RT RTF {r['onnx_rtf'][key]:.3f}"
            print(line, flush=True)
    if not args.no_memory:
        del models, runners, onnx_runners, runs
        gc.collect()
        print("--- peak memory (fresh process per point)", flush=True)
        for name in args.models:
            r = results["models"][name]
            r["memory"], mem_onnx = {}, {}
            for seconds in args.seconds:
                m = measure_memory(name, seconds, args.threads)
                if m:
                    r["memory"][str(seconds)] = m["forward_peak_mb"]
                    r["memory_method"] = m["method"]
                if name in onnx_paths:
                    m = measure_memory(
                        "onnx:" + name, seconds, args.threads,
                        onnx_paths[name],
                    )
                    if m:
                        mem_onnx[str(seconds)] = m["forward_peak_mb"]
                print(
                    f"{bm.LABELS[name]:36s} {seconds:g} s: "
                    f"{_fmt(r['memory'].get(str(seconds)), 0)} MiB"
                    + (
                        f", ONNX RT {_fmt(mem_onnx.get(str(seconds)), 0)} MiB"
                        if name in onnx_paths
                        else ""
                    ),
                    flush=True,
                )
            if mem_onnx:
                r["onnx_memory"] = mem_onnx
    for path in onnx_paths.values():
        os.remove(path)
    os.rmdir(onnx_dir)
    os.makedirs(args.out_dir, exist_ok=True)
    command = "python benchmarks/speed.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    base = os.path.join(args.out_dir, args.name)
    write_markdown(base + ".md", results, machine, args, command.strip())
    with open(base + ".json", "w") as f:
        json.dump(results, f, indent=1)
    try:
        import matplotlib  # noqa: F401  (the "plot" extra)
    except ImportError:
        print(f"wrote {base}.md, .json (no .png: matplotlib is not "
              "installed)")
        return 0
    write_plot(base + ".png", results, machine, args)
    print(f"wrote {base}.md, .png, .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
