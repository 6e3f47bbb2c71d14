"""Training memory and step time, with and without activation checkpointing.

Usage (from the repository root)::

    python benchmarks/train_memory.py                  # (L) and SepFormer, 4 s
    python benchmarks/train_memory.py --models s,l --seconds 2,4 --steps 3

Memory: each configuration runs in a fresh subprocess. The model is built
in train mode with an Adam optimizer and one training step is run
(forward pass, SpeechBrain's PIT SI-SNR loss, backward pass, optimizer
step) to allocate the optimizer's state; then the kernel's peak resident
set size is reset (``/proc/self/clear_refs``) and one more step is run.
The figure is the peak RSS during that step minus the RSS just before it:
the activations kept for the backward pass, the gradients and the
temporaries of a step, not the weights or the optimizer's state. The child
runs with glibc's mmap threshold fixed at 64 KiB (``MALLOC_MMAP_THRESHOLD_``,
see ``MEMORY_ENV``), so that every tensor of 64 KiB or more gets its own
pages and gives them back when freed. With glibc's default (a threshold
that grows up to 32 MiB as large blocks are freed) the first step's
tensors stay in the heap and the measured step reuses them without any
new resident memory: that undercounted a step's memory, most for small
models and short segments (a reviewer's run by hand, no file kept).

Time: in this process, one copy of each model; MossFormer's steps with
``activation_checkpointing`` off and on (each block keeps only its input
and is run again in the backward pass) and SepFormer's (WSJ0-2mix recipe
configuration, for comparison) take turns for ``--steps`` rounds after a
warm-up step each, so that the machine's drift hits them alike; the
figure is the median step.

Batch ``--batch`` of random mixtures (random targets), ``--threads``
intra-op threads (default 2), fp32 on the CPU. Writes ``train_memory.md``
and ``train_memory.json`` to ``--out-dir`` (default
``benchmarks/results``).

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


def parse_args(argv=None):
    """Command line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        default="l,sepformer",
        help="comma-separated subset of s,m,l,sepformer (default: l,sepformer)",
    )
    parser.add_argument(
        "--seconds",
        default="4",
        help="comma-separated training segment lengths in seconds (default "
        "4, the recipes' training_signal_len)",
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5,
                        help="timed rounds (default 5)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--out-dir", default=os.path.join(HERE, "results"), help="output"
    )
    parser.add_argument(
        "--name", default="train_memory", help="base name of the outputs"
    )
    # internal: one measurement in this (fresh) process
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.child:
        bm.keep_full_run_results(
            parser, args, ("models", "seconds", "batch", "steps", "threads"),
            argv=argv)
    args.models = bm.model_list(parser, args.models)
    args.seconds = bm.seconds_list(parser, args.seconds)
    if min(args.batch, args.steps, args.threads) < 1:
        parser.error("--batch, --steps and --threads must be >= 1")
    if not args.child:
        bm.output_folder(parser, args.out_dir)
    return args


def checkpointing_values(name):
    """The ``activation_checkpointing`` values measured for model ``name``
    (SepFormer has no such option)."""
    return (False,) if name == "sepformer" else (False, True)


def configurations(models):
    """``(model, activation_checkpointing)`` pairs to measure."""
    return [
        (name, checkpointing)
        for name in models
        for checkpointing in checkpointing_values(name)
    ]


def training_steps(name, seconds, batch, checkpointing=(False,)):
    """Step callables of model ``name`` (one copy) in train mode with Adam:
    one per ``activation_checkpointing`` value (SepFormer: just one); and
    the mixture they take."""
    overrides = None if name == "sepformer" else {
        "activation_checkpointing": False
    }
    modules = bm.build(name, train=True, overrides=overrides)
    params = [p for m in modules.values() for p in m.parameters()]
    # [B, T]
    mix = bm.mixture(seconds, batch)
    step = bm.training_step(
        bm.separator(modules), modules, mix,
        torch.optim.Adam(params, lr=1e-4),
    )
    if name == "sepformer":
        return {False: step}, mix
    stack = modules["masknet"].mossformer

    def switched(flag):
        def run(mix):
            stack.activation_checkpointing = flag
            return step(mix)

        return run

    return {flag: switched(flag) for flag in checkpointing}, mix


def child(name, seconds, checkpointing, batch, threads):
    """Measures the memory of one training step in this (fresh) process;
    prints JSON."""
    torch.set_num_threads(threads)
    steps, mix = training_steps(name, seconds, batch, (checkpointing,))
    step = steps[checkpointing]
    step(mix)  # allocates Adam's state
    memory = bm.peak_memory(step, mix)
    print(
        json.dumps(
            {"step_peak_mb": memory["above_mb"], "method": memory["method"]}
        )
    )


def time_in_turns(models, seconds, args):
    """Median step times {(model, checkpointing): (median, times)} of all
    configurations at ``seconds``, taking turns in this process."""
    runs, mixes = {}, {}
    for name in models:
        steps, mixes[name] = training_steps(
            name, seconds, args.batch, checkpointing_values(name)
        )
        for flag, step in steps.items():
            runs[(name, flag)] = step
    # the same mixture for all (bm.mixture is reproducible)
    mix = mixes[models[0]]
    for step in runs.values():
        step(mix)  # warm-up, and Adam's state
    times = bm.take_turns(runs, args.steps, mix, alternate=True)
    return {key: (bm.median(t), t) for key, t in times.items()}


#: The measuring child's environment: glibc's mmap threshold fixed (which
#: also stops it from growing), so that the RSS follows the live tensors.
MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}


def measure(name, seconds, checkpointing, args):
    """Runs ``child`` in a fresh interpreter; returns its dict or None."""
    cmd = [
        os.path.abspath(__file__),
        "--child", name, str(seconds), str(int(checkpointing)),
        "--batch", str(args.batch), "--threads", str(args.threads),
    ]
    return bm.child_result(cmd, args.threads, f"{name} at {seconds:g} s",
                           env=MEMORY_ENV)


def write_markdown(path, rows, machine, args, command, revision=None):
    """The result table, with each MossFormer's checkpointed row compared
    with its plain one; ``revision``: the code's ``bm.code_revision()``."""
    plain = {
        (r["model"], r["seconds"]): r
        for r in rows
        if not r["activation_checkpointing"]
    }
    lines = [
        "# Training memory and step time: activation checkpointing",
        "",
        f"- machine: {machine['cpu']} ({machine['isa']}), "
        f"{machine['cores']} cores",
        f"- torch {machine['torch']}; {args.threads} threads, batch "
        f"{args.batch}, fp32, 8 kHz, random mixtures and targets; Adam",
        f"- step: median of {args.steps} rounds in one process, all rows "
        f"taking turns after a warm-up step each; memory: in a fresh "
        f"process per row, after a step that allocates Adam's state, the "
        f"peak RSS of one step minus the RSS before it (activations, "
        f"gradients, temporaries; not the weights or Adam's state), with "
        f"glibc's mmap threshold fixed at 64 KiB "
        f"(`MALLOC_MMAP_THRESHOLD_=65536`: freed tensors give their pages "
        f"back, so the first step's memory is not reused unseen)",
        f"- date: {datetime.datetime.now().isoformat(timespec='minutes')}",
        f"- code: {bm.revision_text(revision)}",
        f"- command: `{command}`",
        "",
        "| model | segment (s) | activation checkpointing | step (s) | "
        "step memory (MiB) | memory vs plain | time vs plain |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = plain.get((r["model"], r["seconds"]))
        memory_ratio = time_ratio = "–"
        if r["activation_checkpointing"] and base:
            memory_ratio = f"{r['step_peak_mb'] / base['step_peak_mb']:.2f}x"
            time_ratio = f"{r['step_s'] / base['step_s']:.2f}x"
        lines.append(
            f"| {bm.LABELS[r['model']]} | {r['seconds']:g} | "
            f"{'on' if r['activation_checkpointing'] else 'off'} | "
            f"{r['step_s']:.2f} | {r['step_peak_mb']:.0f} | "
            f"{memory_ratio} | {time_ratio} |"
        )
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None):
    """Runs the benchmark; returns the exit status."""
    args = parse_args(argv)
    if args.child:
        name, seconds, checkpointing = args.child
        child(
            name, float(seconds), checkpointing == "1", args.batch,
            args.threads,
        )
        return 0
    torch.set_num_threads(args.threads)
    # the code that runs: read before anything is measured
    revision = bm.code_revision()
    machine = bm.machine_description()
    rows = []
    for seconds in args.seconds:
        for name, checkpointing in configurations(args.models):
            result = measure(name, seconds, checkpointing, args)
            if result is None:
                return 1
            rows.append(dict(result, model=name, seconds=seconds,
                             activation_checkpointing=checkpointing))
            print(
                f"{bm.LABELS[name]:36s} {seconds:g} s, checkpointing "
                f"{'on ' if checkpointing else 'off'}: "
                f"{result['step_peak_mb']:.0f} MiB",
                flush=True,
            )
        print(f"--- step times at {seconds:g} s, in turns", flush=True)
        times = time_in_turns(args.models, seconds, args)
        for row in rows:
            key = (row["model"], row["activation_checkpointing"])
            if row["seconds"] == seconds and key in times:
                row["step_s"], row["times"] = times[key]
                print(
                    f"{bm.LABELS[key[0]]:36s} checkpointing "
                    f"{'on ' if key[1] else 'off'}: {row['step_s']:.2f} s",
                    flush=True,
                )
    os.makedirs(args.out_dir, exist_ok=True)
    command = "python benchmarks/train_memory.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    base = os.path.join(args.out_dir, args.name)
    write_markdown(base + ".md", rows, machine, args, command.strip(),
                   revision)
    with open(base + ".json", "w", encoding="utf-8") as f:
        json.dump({"machine": machine, "revision": revision, "rows": rows},
                  f, indent=1)
    print(f"wrote {base}.md, .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
