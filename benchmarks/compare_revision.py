"""Times the working tree's MossFormer against a git revision's, in turns.

Usage (from the repository root)::

    python benchmarks/compare_revision.py --rev HEAD~1
    python benchmarks/compare_revision.py --rev 7b4125b --size s --seconds 16
    python benchmarks/compare_revision.py --rev HEAD --onnx

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

Authors
 * speechbrain-mossformer contributors 2026
"""

import argparse
import copy
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
    args = parser.parse_args(argv)
    if args.train and args.onnx:
        parser.error("--train and --onnx do not go together")
    if args.rounds < 1 or args.threads < 1:
        parser.error("--rounds and --threads must be >= 1")
    bm.check_seconds(parser, args.seconds)
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

    torch.set_num_threads(args.threads)
    mix = bm.mixture(args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        revision = load_revision_module(args.rev, tmp)
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
    medians = {name: bm.median(t) for name, t in times.items()}
    ratios = [a / b for a, b in zip(times[names[0]], times[names[1]])]
    what = "relative gradient" if args.train else "output"
    print(
        f"MossFormer ({args.size.upper()}), {args.seconds:g} s, "
        f"{'ONNX Runtime' if args.onnx else 'PyTorch'}"
        f"{' training steps' if args.train else ''}, "
        f"{args.threads} threads, {args.rounds} rounds; largest {what} "
        f"difference {difference:.1e}"
    )
    for name in names:
        print(f"  {name}: {medians[name]:.3f} s")
    print(
        f"  {args.rev} / working tree: "
        f"{medians[names[0]] / medians[names[1]]:.3f} (per-round ratios: "
        f"median {bm.median(ratios):.3f}, {min(ratios):.3f} to "
        f"{max(ratios):.3f})"
    )


if __name__ == "__main__":
    main()
