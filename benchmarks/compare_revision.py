"""Times the working tree's MossFormer against a git revision's, in turns.

Usage (from the repository root)::

    python benchmarks/compare_revision.py --rev HEAD~1
    python benchmarks/compare_revision.py --rev 7b4125b --size s --seconds 16
    python benchmarks/compare_revision.py --rev HEAD --onnx
    python benchmarks/compare_revision.py --rev HEAD~1 --out benchmarks/results/compare.md

For exact speedups, measured where they can be told apart from this
machine's drift: one process holds two copies of MossFormer ``--size``
with the same (random) weights, one running the model code of this
working tree and one the code of ``speechbrain_mossformer/lobes/models/
mossformer.py`` at ``--rev`` (read with ``git show``). Their outputs on
the same mixture are compared, then they take turns, the first of each
round alternating, for ``--rounds`` rounds under
``torch.inference_mode()``, batch 1, ``--threads`` threads. Prints the
median times, their ratio and the spread of the per-round ratios.

With ``--onnx`` both copies are exported to ONNX (the working tree's
``export_onnx``, tracing each copy's model code) and the two graphs are
timed in ONNX Runtime instead, with the session settings of ``speed.py``.

With ``--train`` each turn is a training step instead: train mode (with
dropout), forward pass, SpeechBrain's PIT SI-SNR loss against two random
sources, backward pass (no optimizer step, so the weights stay the same);
the check compares the two versions' gradients from the same random state.

With ``--out FILE`` the figures are also written to a markdown file, with
every round's times, the date, the machine, the command, the commit that
``--rev`` names and the working tree's revision (``HEAD`` and whether it
had uncommitted changes), so that a figure quoted elsewhere can cite it.

Authors
 * speechbrain-mossformer contributors 2026
"""

import argparse
import copy
import datetime
import importlib.util
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_models as bm  # noqa: E402
import torch  # noqa: E402

MODEL_FILE = "speechbrain_mossformer/lobes/models/mossformer.py"


def parse_args(argv=None):
    """Command line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", required=True, help="git revision to compare")
    parser.add_argument("--size", default="l", choices=bm.MOSSFORMER_SIZES)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--onnx", action="store_true",
                        help="time the two versions' ONNX graphs in ONNX "
                        "Runtime instead of PyTorch")
    parser.add_argument("--train", action="store_true",
                        help="time training steps (forward, loss, "
                        "backward) instead of inference")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="also write the figures, every round's times, "
                        "the date, machine, command and both revisions to "
                        "this markdown file")
    args = parser.parse_args(argv)
    if args.train and args.onnx:
        parser.error("--train and --onnx do not go together")
    if args.rounds < 1 or args.threads < 1:
        parser.error("--rounds and --threads must be >= 1")
    bm.check_seconds(parser, args.seconds)
    if args.out is not None:
        bm.output_folder(parser, os.path.dirname(os.path.abspath(args.out)),
                         "--out")
    return args


def load_revision_module(rev, folder):
    """The model module as it was at ``rev``, imported under another name.

    Raises ``SystemExit`` naming the revision when git cannot show it.
    """
    proc = subprocess.run(
        ["git", "show", f"{rev}:{MODEL_FILE}"],
        cwd=bm.REPO,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(
            f"error: cannot read {MODEL_FILE} at revision {rev!r}: "
            + proc.stderr.strip()
        )
    path = os.path.join(folder, "mossformer_at_revision.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(proc.stdout)
    spec = importlib.util.spec_from_file_location("mossformer_at_rev", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_revision(modules, current, revision):
    """A copy of ``modules`` whose MossFormer submodules run the code of
    ``revision`` (same weights: each class is swapped for the revision's
    class of the same name)."""
    copied = copy.deepcopy(modules)
    for module in copied.values():
        for sub in module.modules():
            if type(sub).__module__ == current.__name__:
                sub.__class__ = getattr(revision, type(sub).__name__)
    return copied


def largest_gradient_difference(steps, mix):
    """Largest difference between the gradients of two training steps run
    from the same random state, relative to the largest gradient."""
    grads = []
    for step in steps:
        torch.manual_seed(0)
        grads.append(step(mix))
    scale = max(g.abs().max().item() for g in grads[1])
    return max(
        (a - b).abs().max().item() for a, b in zip(*grads)
    ) / scale


def main(argv=None):
    """Loads both versions, checks their outputs and times them in turns."""
    args = parse_args(argv)
    from speechbrain_mossformer.lobes.models import mossformer as current

    # what is compared, read before anything is measured; the model code
    # is read at the commit found here (a commit made meanwhile cannot
    # change what --rev means)
    revisions = {
        "date": datetime.datetime.now().isoformat(timespec="minutes"),
        "machine": bm.machine_description(),
        "rev_commit": bm.commit_of(args.rev),
        "revision": bm.code_revision(),
    }
    torch.set_num_threads(args.threads)
    mix = bm.mixture(args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        revision = load_revision_module(
            revisions["rev_commit"] or args.rev, tmp)
        modules = bm.build(args.size)
        old = on_revision(modules, current, revision)
        if args.onnx:
            runs = {}
            for name, mods in ((args.rev, old), ("working tree", modules)):
                path = os.path.join(tmp, f"{len(runs)}.onnx")
                bm.export_onnx(mods, path)
                run = bm.ort_runner(bm.ort_session(path, args.threads))
                runs[name] = lambda mix, run=run: torch.from_numpy(
                    run(mix)[0])
        else:
            runs = {
                args.rev: lambda mix: revision.separate_with_modules(
                    old["encoder"], old["masknet"], old["decoder"], mix, 2
                ),
                "working tree": bm.separator(modules),
            }
        names = list(runs)
        if args.train:
            for module in (*old.values(), *modules.values()):
                module.train()
            runs = {
                name: bm.training_step(runs[name], mods, mix)
                for name, mods in zip(names, (old, modules))
            }
            difference = largest_gradient_difference(runs.values(), mix)
            times = bm.take_turns(runs, args.rounds, mix, alternate=True)
        else:
            with torch.inference_mode():
                outputs = [runs[name](mix) for name in names]
                difference = (outputs[0] - outputs[1]).abs().max().item()
                times = bm.take_turns(runs, args.rounds, mix, alternate=True)
    result = figures(args, names, times, difference)
    result.update(revisions)
    print("\n".join(summary_lines(result)))
    if args.out is not None:
        command = "python benchmarks/compare_revision.py " + " ".join(
            sys.argv[1:] if argv is None else argv
        )
        write_markdown(args.out, result, command.strip())
        print(f"wrote {args.out}")


def figures(args, names, times, difference):
    """The figures of a comparison: ``times`` (name -> seconds per round)
    of the revision (``names[0]``) and the working tree (``names[1]``),
    their medians and ratios, and ``difference`` (the largest output or
    relative gradient difference) with the settings that produced them."""
    medians = {name: bm.median(times[name]) for name in names}
    ratios = [a / b for a, b in zip(times[names[0]], times[names[1]])]
    return {
        "size": args.size,
        "seconds": args.seconds,
        "backend": "ONNX Runtime" if args.onnx else "PyTorch",
        "train": args.train,
        "threads": args.threads,
        "rounds": args.rounds,
        "rev": args.rev,
        "names": list(names),
        "times": {name: list(times[name]) for name in names},
        "medians": medians,
        "ratio": medians[names[0]] / medians[names[1]],
        "round_ratios": ratios,
        "difference": difference,
    }


def summary_lines(result):
    """The lines that sum up a comparison (``figures``), as printed."""
    names = result["names"]
    medians = result["medians"]
    ratios = result["round_ratios"]
    what = "relative gradient" if result["train"] else "output"
    lines = [
        f"MossFormer ({result['size'].upper()}), {result['seconds']:g} s, "
        f"{result['backend']}"
        f"{' training steps' if result['train'] else ''}, "
        f"{result['threads']} threads, {result['rounds']} rounds; largest "
        f"{what} difference {result['difference']:.1e}"
    ]
    lines += [f"  {name}: {medians[name]:.3f} s" for name in names]
    lines.append(
        f"  {result['rev']} / working tree: {result['ratio']:.3f} "
        f"(per-round ratios: median {bm.median(ratios):.3f}, "
        f"{min(ratios):.3f} to {max(ratios):.3f})"
    )
    return lines


def write_markdown(path, result, command):
    """Writes a comparison (``figures`` with ``date``, ``machine``,
    ``rev_commit`` and ``revision``, see ``main``) to the markdown file
    ``path``: the printed summary, every round's times, and what is needed
    to cite it."""
    machine = result["machine"]
    names = result["names"]
    rev_commit = result.get("rev_commit")
    lines = [
        f"# MossFormer ({result['size'].upper()}): working tree against "
        f"`{result['rev']}`",
        "",
        f"- date: {result['date']}",
        f"- machine: {machine['cpu']}"
        + (f" ({machine['isa']})" if machine.get("isa") else "")
        + f", {machine['cores']} cores; torch {machine['torch']}, "
        f"onnxruntime {machine.get('onnxruntime') or 'not installed'}",
        f"- revisions: `--rev {result['rev']}` is "
        + (f"commit `{rev_commit}`" if rev_commit else "an unknown commit")
        + f"; working tree: {bm.revision_text(result.get('revision'))}",
        f"- command: `{command}`",
        f"- method: {result['backend']}"
        f"{', training steps' if result['train'] else ''}, batch 1, "
        f"{result['seconds']:g} s of 8 kHz audio, {result['threads']} "
        f"threads; the two versions take turns for {result['rounds']} "
        "rounds, the first of each round alternating; medians",
        "",
        "```text",
        *summary_lines(result),
        "```",
        "",
        f"| round | {names[0]} (s) | {names[1]} (s) | ratio |",
        "|---|---|---|---|",
    ]
    for index, (a, b) in enumerate(
        zip(result["times"][names[0]], result["times"][names[1]])
    ):
        lines.append(f"| {index + 1} | {a:.3f} | {b:.3f} | {a / b:.3f} |")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
