"""Structured pruning of MossFormer at CPU scale (Chee et al. 2021).

One command runs the whole experiment (from the repository root)::

    python benchmarks/pruning_experiment.py            # full, ~20 min
    python benchmarks/pruning_experiment.py --quick    # smoke run, a few minutes
    python benchmarks/pruning_experiment.py --retime   # speed only, ~3 min
    python benchmarks/pruning_experiment.py --rewrite  # report only
    python benchmarks/pruning_experiment.py --seed 1   # a repetition
    python benchmarks/pruning_experiment.py --summarize 0,1,2

on a 2-core CPU when nothing else runs; other load stretches both (the
training runs use one thread each, two at a time) and the timing waits up
to 5 minutes for the machine to quieten. ``--retime`` re-measures the
speed of a finished run and rewrites the report (for a quieter moment).

What it does, following "Performance optimizations on deep noise
suppression models" (Chee et al., arXiv 2110.04378) at a small scale:

1. **Data.** A mini Libri2Mix (8 kHz, ``min``) built from the real speech
   bundled in ``data/speech`` by ``speechbrain_mossformer.dataprep
   .minidata``: validation and test mixtures from held-out speakers (the
   speaker split is disjoint), training by **dynamic mixing** from a mini
   LibriSpeech of the *training* speakers only (a new random pair and crop
   every step).
2. **Dense model.** A small MossFormer (N = 64 channels, 4 blocks, hidden
   256, query/key 64, groups of 128 frames) trained through the LibriMix
   recipe (``recipes/LibriMix/separation/train.py``) for ``P`` steps.
3. **Structured pruning.** The best checkpoint is exported and pruned by
   ``speechbrain_mossformer.pruning`` (L1 magnitude inside the layers,
   re-sizing every layer; blocks by greedy ablation on a few training
   mixtures) to eight sizes (``SIZES``), each fine-tuned for ``F`` steps
   through the recipe with ``--init_from``.
4. **Baselines.** (a) the dense model fine-tuned for the same ``F`` steps
   in the same way (the fair reference: every model has seen ``P + F``
   steps); (b) every pruned size trained **from scratch** through the
   recipe for ``P + F`` steps; (c) **unstructured** L1 magnitude pruning
   (``torch.nn.utils.prune``, global) of the dense fine-tuned model to the
   same parameter counts as each pruned size (no fine-tuning: it is the
   speed control).
5. **Measured speed.** Every architecture is timed on the same 8 s
   mixture, batch 1, with PyTorch (2 intra-op threads,
   ``torch.inference_mode``) and with ONNX Runtime (CPU provider, 2
   threads; graphs from ``speechbrain_mossformer.export_onnx``), in
   several fresh processes one after another (``timing_processes``): in
   each, warm-up runs, then the models take turns for several rounds (so
   load changes hit all alike; each process starts the turns at another
   model) and each model's median is kept; a model's time is the median of
   its per-process medians. A small model's time moves by up to a third
   from one process to the next (memory placement), more than between
   rounds inside one process, so the fresh processes are what makes the
   figure repeatable. Speedup = dense time / model time.
6. **Quality.** SI-SNRi (dB) on the held-out test mixtures, computed by
   this script from the exported best checkpoints with the package's
   metrics (cross-checked against the recipe's own ``test_results.csv``),
   with the standard error of each model's paired difference to the
   reference, robust to test mixtures that share a source utterance.

``--seed K`` repeats the experiment with other recipe seeds (same data,
sizes and steps) into ``pruning_seedK.md``; ``--summarize`` writes
``pruning_seeds.md``, the repetitions side by side.

Writes ``benchmarks/results/pruning.md`` (tables, machine, command, when
the models were trained and when timed, the git revisions of the code that
trained and timed them, runtimes, whether the target was met) and
``benchmarks/results/pruning.png`` (speedup against SI-SNRi, like Chee et
al.'s figure 1).
The working files (data, recipe outputs, pretrained folders, ONNX graphs,
``results.json``) go to ``--work`` (default ``/tmp/mossformer-pruning``).

Authors
 * speechbrain-mossformer contributors 2026
"""

import argparse
import csv
import datetime
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
# bench_models (imported where used), also when this file is loaded as a
# module
sys.path.insert(0, HERE)
RECIPE = os.path.join(REPO, "recipes", "LibriMix", "separation")
TRAIN = os.path.join(RECIPE, "train.py")
YAML = os.path.join(RECIPE, "hparams", "mossformer-libri2mix.yaml")
RESULTS = os.path.join(HERE, "results")
DEFAULT_WORK = "/tmp/mossformer-pruning"

# The target: some pruned size at least this much faster than the
# dense model (measured) ...
TARGET_SPEEDUP = 2.5
# ... while losing at most this much SI-SNRi (dB) against the dense model
# fine-tuned for the same steps
TARGET_LOSS_DB = 0.5
# How the target reads in reports and plots
TARGET_WORDS = (f">= {TARGET_SPEEDUP:g}x measured speedup at "
                f"<= {TARGET_LOSS_DB:g} dB")

#: The dense model (recipe overrides).
DENSE = {
    "N_encoder_out": 64,
    "out_channels": 64,
    "num_blocks": 4,
    "group_size": 128,
    "query_key_dim": 64,
    "expansion_factor": 4.0,
}

#: The pruned sizes (pruning specs, see speechbrain_mossformer.pruning).
SIZES = [
    ("P1", {"hidden_fraction": 0.5, "qk_fraction": 0.5}),
    ("P2", {"num_blocks": 3, "hidden_fraction": 0.5, "qk_fraction": 0.5}),
    ("P3", {"num_blocks": 2, "hidden_fraction": 0.5,
            "query_key_dims": 32}),
    ("P4", {"num_blocks": 2, "hidden_fraction": 0.25,
            "query_key_dims": 32}),
    ("P5", {"num_blocks": 2, "hidden_fraction": 0.25,
            "query_key_dims": 32, "width_fraction": 0.75}),
    # All four blocks, a query/key width below the rotary one (16 of 32:
    # every other rotary pair), narrower residual stream: measured faster
    # per dropped unit than removing blocks at this scale (see the README)
    ("P6", {"hidden_fraction": 0.25, "query_key_dims": 16}),
    ("P7", {"hidden_fraction": 0.25, "query_key_dims": 16,
            "width_fraction": 0.75}),
    ("P8", {"hidden_fraction": 0.25, "query_key_dims": 16,
            "width_fraction": 0.5}),
]

#: How the blocks to keep are chosen (units inside layers: L1 always).
BLOCK_SCORE = "ablation"
#: Calibration mixtures (from the training split) for the block choice.
N_CALIBRATION = 8

#: Scale of the two modes.
MODES = {
    "full": {
        "pretrain_steps": 2500,
        "finetune_steps": 1500,
        "epoch_steps": 500,
        "n_valid": 16,
        "n_test": 150,
        "duration": 2.0,
        "timing_seconds": 8.0,
        "timing_processes": 5,
        "warmup": 2,
        "repeats": 5,
    },
    "quick": {
        "pretrain_steps": 100,
        "finetune_steps": 50,
        "epoch_steps": 50,
        "n_valid": 4,
        "n_test": 8,
        "duration": 2.0,
        "timing_seconds": 4.0,
        "timing_processes": 2,
        "warmup": 1,
        "repeats": 2,
    },
}

TRAINING = {
    "training_signal_len": 4000,  # 0.5 s crops at 8 kHz
    "pretrain_lr": 1e-3,
    "finetune_lr": 5e-4,
    "batch_size": 1,
}


def parse_args(argv=None):
    """Command line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny smoke run (a few minutes)")
    parser.add_argument("--work", default=DEFAULT_WORK,
                        help="working folder (data, runs, models); "
                        "--quick adds '-quick' and a seed N other than 0 "
                        "'-seedN' to its name, so that runs of another "
                        "mode or seed never reuse each other's")
    parser.add_argument("--out", default=None,
                        help="folder for pruning.md and pruning.png "
                        "(default: benchmarks/results; --quick: the "
                        "working folder)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="training runs at a time (1 thread each)")
    parser.add_argument("--threads", type=int, default=2,
                        help="intra-op threads for the timing")
    parser.add_argument("--reuse", action="store_true",
                        help="keep finished recipe runs found in --work")
    parser.add_argument("--retime", action="store_true",
                        help="only re-measure the speed of a finished run "
                        "(results.json in --work) and rewrite the report")
    parser.add_argument("--seed", type=int, default=0,
                        help="training repetition K: the recipe seeds are "
                        "1 + 2K (pre-training, from scratch) and 2 + 2K "
                        "(fine-tuning); data and test set stay the same. "
                        "K > 0 works in WORK-seedK and writes "
                        "pruning_seedK.md/.png")
    parser.add_argument("--rewrite", action="store_true",
                        help="only rewrite the report of a finished run "
                        "from its results.json (the current code's "
                        "statistics; nothing is trained or timed)")
    parser.add_argument("--steps", default=None, metavar="P,F",
                        help="pre-training and fine-tuning steps instead "
                        "of the mode's (full: 2500,1500), each a multiple "
                        "of the mode's epoch (full: 500, quick: 50 steps); "
                        "use another --work and --out for them")
    parser.add_argument("--time-worker", default=None, metavar="SPEC",
                        help=argparse.SUPPRESS)  # one timing process
    parser.add_argument("--summarize", default=None, metavar="K,K,...",
                        help="only read the finished runs of these seeds "
                        "and write pruning_seeds.md (the spread of the "
                        "results over training repetitions)")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    if args.jobs < 1 or args.threads < 1:
        parser.error(f"--jobs and --threads must be >= 1, got "
                     f"{args.jobs} and {args.threads}")
    if args.steps is not None:
        try:
            steps = tuple(int(v) for v in args.steps.split(","))
        except ValueError:
            steps = ()
        if len(steps) != 2 or min(steps) < 1:
            parser.error(f"--steps wants two positive step counts P,F, got "
                         f"{args.steps!r}")
        # the recipe trains whole epochs: any other count would be rounded
        # down, and the report would name steps that were not trained
        epoch = MODES["quick" if args.quick else "full"]["epoch_steps"]
        if any(n % epoch for n in steps):
            parser.error(f"--steps wants multiples of the epoch of {epoch} "
                         f"steps (whole epochs are trained), got "
                         f"{args.steps!r}")
        args.steps = steps
    return args


def experiment_mode(args):
    """The mode's settings, with ``--steps`` applied."""
    mode = dict(MODES["quick" if args.quick else "full"])
    if args.steps:
        mode["pretrain_steps"], mode["finetune_steps"] = args.steps
    return mode


def reproduce_command(args):
    """The command line that repeats this run, or this summary
    (``--summarize``), from the repository root."""
    command = "python benchmarks/pruning_experiment.py"
    if args.summarize:
        command += f" --summarize {args.summarize}"
    if args.quick:
        command += " --quick"
    if args.jobs != 2:
        command += f" --jobs {args.jobs}"
    if args.seed:
        command += f" --seed {args.seed}"
    if args.steps:
        command += " --steps {},{}".format(*args.steps)
    if args.work != DEFAULT_WORK:
        command += f" --work {args.work}"
    default_out = work_folder(args) if args.quick else RESULTS
    if os.path.abspath(args.out) != os.path.abspath(default_out):
        out = os.path.relpath(os.path.abspath(args.out), REPO)
        command += f" --out {args.out if out.startswith('..') else out}"
    return command


def work_folder(args, seed=None):
    """The working folder of one mode and seed."""
    seed = args.seed if seed is None else seed
    return os.path.abspath(
        args.work + ("-quick" if args.quick else "")
        + (f"-seed{seed}" if seed else ""))


def report_name(seed):
    """Base name of the report files of one seed."""
    return "pruning" + (f"_seed{seed}" if seed else "")


# ----------------------------------------------------------------------
# Data
def build_data(work, mode):
    """Mini Libri2Mix (valid/test) + mini LibriSpeech (training speakers)."""
    from speechbrain_mossformer.dataprep import minidata

    root = os.path.join(work, "data")
    libri2mix = os.path.join(root, "Libri2Mix")
    pool = os.path.join(root, "LibriSpeech", "train-clean-360")
    if not os.path.isdir(libri2mix):
        minidata.make_librimix(
            root, num_spks=2, sample_rate=8000, n_train=16,
            n_valid=mode["n_valid"], n_test=mode["n_test"],
            duration=mode["duration"], seed=0,
        )
        # same utterance duration, hence the same speaker split
        minidata.make_librispeech(
            root, duration=mode["duration"], per_clip=6, seed=0
        )
    test_dir = os.path.join(libri2mix, "wav8k", "min", "test")
    train_speakers = set(os.listdir(pool))
    test_speakers = set()
    for name in os.listdir(os.path.join(test_dir, "mix_clean")):
        for part in name[:-4].split("_"):
            if "-" in part:  # <spk>-<chapter>-<utt> (not a _1 suffix)
                test_speakers.add(part.split("-")[0])
    if train_speakers & test_speakers:
        raise RuntimeError("training and test speakers overlap")
    return {
        "libri2mix": libri2mix,
        "pool": pool,
        "test_dir": test_dir,
        "train_dir": os.path.join(libri2mix, "wav8k", "min", "train-360"),
        "train_speakers": len(train_speakers),
        "test_speakers": len(test_speakers),
        "pool_files": len(glob.glob(os.path.join(pool, "*", "*", "*.flac"))),
    }


# ----------------------------------------------------------------------
# Recipe runs
def model_args(config):
    """Recipe overrides for a model configuration."""
    from speechbrain_mossformer.pruning import recipe_overrides

    cfg = dict(DENSE, kernel_size=16)
    cfg.update(config)
    return recipe_overrides(cfg)


def recipe_command(data, output, steps, mode, lr, seed, model, init=None):
    """The exact recipe command line of one training run (``steps``: a
    positive multiple of the mode's ``epoch_steps``, see ``parse_args``)."""
    epochs, rest = divmod(steps, mode["epoch_steps"])
    if rest or epochs < 1:
        raise ValueError(
            f"{steps} steps are not whole epochs of {mode['epoch_steps']}")
    cmd = [
        sys.executable, TRAIN, YAML,
        f"--data_folder={data['libri2mix']}",
        f"--output_folder={output}",
        f"--seed={seed}",
        f"--N_epochs={epochs}",
        f"--lr={lr}",
        f"--batch_size={TRAINING['batch_size']}",
        "--num_workers=0",
        "--device=cpu",
        "--noprogressbar",
        "--use_speedperturb=False",
        "--limit_training_signal_len=True",
        f"--training_signal_len={TRAINING['training_signal_len']}",
        "--dynamic_mixing=True",
        f"--base_folder_dm={data['pool']}",
        f"--dm_epoch_size={mode['epoch_steps']}",
    ] + model
    if init:
        cmd.append(f"--init_from={init}")
    return cmd


class Run:
    """One recipe run: command, dependencies, timing."""

    def __init__(self, name, output, make_cmd, steps, after=()):
        self.name = name
        self.output = output
        self.make_cmd = make_cmd  # called when the run starts
        self.steps = steps
        self.after = set(after)
        self.cmd = None
        self.proc = None
        self.start = None
        self.seconds = None
        self.reused = False
        self.restarts = 0

    @property
    def done(self):
        return os.path.isfile(os.path.join(self.output, "test_results.csv"))


def run_all(runs, jobs, work, reuse, log):
    """Runs recipe runs, ``jobs`` at a time, respecting dependencies."""
    os.makedirs(os.path.join(work, "logs"), exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONUNBUFFERED="1")
    pending = list(runs)
    running = []
    finished = set()
    for run in runs:
        if reuse and run.done:
            run.reused = True
            run.cmd = run.make_cmd()
            seconds = os.path.join(run.output, "wall_seconds.txt")
            if os.path.isfile(seconds):
                with open(seconds) as f:
                    run.seconds = float(f.read())
            finished.add(run.name)
            log(f"  reusing {run.name}")
    pending = [r for r in pending if r.name not in finished]
    if not reuse:
        for run in pending:
            shutil.rmtree(run.output, ignore_errors=True)
    def launch(run):
        logfile = open(os.path.join(work, "logs", run.name + ".log"), "a")
        run.proc = subprocess.Popen(
            run.cmd, cwd=REPO, env=env, stdout=logfile,
            stderr=subprocess.STDOUT,
        )
        run.logfile = logfile

    while pending or running:
        for run in list(pending):
            if len(running) >= jobs:
                break
            if run.after <= finished:
                run.cmd = run.make_cmd()
                launch(run)
                run.start = time.time()
                running.append(run)
                pending.remove(run)
                log(f"  start {run.name} ({run.steps} steps)")
        time.sleep(0.5)
        for run in list(running):
            code = run.proc.poll()
            if code is None:
                continue
            run.logfile.close()
            if code < 0 and run.restarts < 3:
                # killed by a signal from outside (shared machine): the
                # recipe resumes from its last end-of-epoch checkpoint
                run.restarts += 1
                log(f"  {run.name} was killed (signal {-code}); resuming")
                launch(run)
                continue
            run.seconds = time.time() - run.start
            running.remove(run)
            if code != 0 or not run.done:
                for other in running:
                    other.proc.kill()
                raise RuntimeError(
                    f"recipe run {run.name} failed (exit {code}); see "
                    f"{work}/logs/{run.name}.log; command:\n"
                    + " ".join(run.cmd)
                )
            finished.add(run.name)
            with open(os.path.join(run.output, "wall_seconds.txt"), "w") as f:
                f.write(f"{run.seconds:.1f}\n")
            log(f"  done  {run.name} in {run.seconds:.0f} s")


def shell_line(cmd):
    """A command list as a copyable shell line (repository-relative)."""
    words = ["python"]
    for arg in cmd[1:]:
        arg = arg.replace(REPO + os.sep, "")
        words.append(f"'{arg}'" if "[" in arg else arg)
    return " ".join(words)


def recipe_average(output):
    """The ``avg`` row of a run's ``test_results.csv``."""
    with open(os.path.join(output, "test_results.csv")) as f:
        for row in csv.DictReader(f):
            if row["snt_id"] == "avg":
                return {k: float(v) for k, v in row.items() if k != "snt_id"}
    raise RuntimeError(f"{output}: no avg row")


# ----------------------------------------------------------------------
# Evaluation
def test_mixture_names(test_dir):
    """The mixture file names of a split, sorted (the order of every
    per-mixture list in ``results.json``)."""
    folder = os.path.join(test_dir, "mix_clean")
    if not os.path.isdir(folder):
        raise SystemExit(f"{folder} not found: the experiment's data is "
                         "gone; run the experiment again")
    return sorted(os.listdir(folder))


def load_test_set(test_dir):
    """Mixtures and references of the test split (sorted by name)."""
    import soundfile as sf

    items = []
    for name in test_mixture_names(test_dir):
        mix, _ = sf.read(os.path.join(test_dir, "mix_clean", name),
                         dtype="float32")
        refs = [
            torch.from_numpy(
                sf.read(os.path.join(test_dir, s, name), dtype="float32")[0]
            )
            for s in ("s1", "s2")
        ]
        items.append((torch.from_numpy(mix), torch.stack(refs)))
    return items


def load_model(folder):
    """Encoder, mask net and decoder of a pretrained folder (eval mode)."""
    from speechbrain_mossformer.pruning import _build_modules, read_pretrained

    config, states = read_pretrained(folder)
    return config, _build_modules(config, states)


def si_snri(folder, test_set):
    """SI-SNRi (dB) of a pretrained folder on every test mixture."""
    from speechbrain_mossformer.lobes.models.mossformer import (
        separate_with_modules,
    )
    from speechbrain_mossformer.metrics import best_permutation_si_snr

    _, mods = load_model(folder)
    values = []
    with torch.inference_mode():
        for mix, refs in test_set:
            est = separate_with_modules(
                mods["encoder"], mods["masknet"], mods["decoder"],
                mix[None], 2,
            )[0].t()
            # the SI-SNRi of metrics.separation_metrics, without the SDR
            sep, _ = best_permutation_si_snr(refs, est)
            base, _ = best_permutation_si_snr(refs, mix.expand(2, -1))
            values.append(float((sep - base).mean()))
    return values


def paired_se(values, reference):
    """Standard error of the mean per-mixture difference, taking the
    mixtures as independent."""
    diffs = [a - b for a, b in zip(values, reference)]
    return statistics.stdev(diffs) / len(diffs) ** 0.5


def mixture_utterances(name):
    """The source utterances of a LibriMix-style mixture file name
    (``minidata`` numbers a pair drawn again ``_1``, ``_2``, ...).

    Example
    -------
    >>> mixture_utterances("198-100-0000_2412-100-0002.wav")
    ('198-100-0000', '2412-100-0002')
    >>> mixture_utterances("198-100-0001_p226-100-0004_2.wav")
    ('198-100-0001', 'p226-100-0004')
    """
    parts = os.path.splitext(os.path.basename(name))[0].split("_")
    if len(parts) > 2 and parts[-1].isdigit():
        parts = parts[:-1]
    return tuple(parts)


def utterance_robust_se(diffs, mixtures):
    """Standard error of the mean of per-mixture values that allows any
    correlation between mixtures sharing a source utterance.

    The test mixtures reuse their utterances (150 mixtures from 27
    utterances here), so they are not independent samples. This is the
    dyadic cluster-robust estimator of Aronow, Samii and Assenova (2015,
    "Cluster-robust variance estimation for dyadic data"): the variance of
    the mean is ``sum(e_i * e_j) / n**2`` over every pair of mixtures
    ``i, j`` (``i == j`` included) that share an utterance, ``e`` being
    the deviations from the mean, times ``G / (G - 1)`` for ``G``
    utterances. It is never reported below the independent-mixture
    standard error.

    Arguments
    ---------
    diffs : list of float
        One value per mixture (e.g. SI-SNRi minus the reference's).
    mixtures : list of str
        The mixtures' file names, ``utt1_utt2.wav``, in the same order.

    Returns
    -------
    float
        The standard error of ``mean(diffs)``.

    Example
    -------
    >>> names = ["a_b.wav", "c_d.wav", "e_f.wav", "g_h.wav"]
    >>> round(utterance_robust_se([1.0, -1.0, 1.0, -1.0], names), 3)
    0.577
    >>> shared = ["a_b.wav", "a_c.wav", "d_e.wav", "d_f.wav"]
    >>> round(utterance_robust_se([1.0, 1.0, -1.0, -1.0], shared), 3)
    0.775
    """
    n = len(diffs)
    if n != len(mixtures) or n < 2:
        raise ValueError(
            f"{n} values for {len(mixtures)} mixtures: need the same "
            "number, at least 2")
    mean = statistics.fmean(diffs)
    dev = [d - mean for d in diffs]
    groups = [set(mixture_utterances(m)) for m in mixtures]
    total = sum(
        dev[i] * dev[j]
        for i in range(n) for j in range(n) if groups[i] & groups[j]
    )
    utterances = len(set().union(*groups))
    variance = total / n ** 2 * utterances / max(utterances - 1, 1)
    independent = statistics.stdev(diffs) / n ** 0.5
    return max(variance ** 0.5 if variance > 0 else 0.0, independent)


def test_set_description(names):
    """``"150 mixtures of 30 utterances by 4 speakers"`` for a list of
    LibriMix-style mixture names (the speaker is an utterance ID's part
    before its first ``-``).

    Example
    -------
    >>> test_set_description(["19-1-0_26-2-0.wav", "19-1-0_26-2-1.wav"])
    '2 mixtures of 3 utterances by 2 speakers'
    """
    utterances = {u for m in names for u in mixture_utterances(m)}
    speakers = {u.split("-")[0] for u in utterances}
    return (f"{len(names)} mixtures of {len(utterances)} utterances by "
            f"{len(speakers)} speakers")


def add_standard_errors(res):
    """Fills the standard errors of every model's paired difference to the
    dense fine-tuned model into ``res`` from its per-mixture SI-SNRi:
    ``paired_se`` (utterance-robust, the one reported) and
    ``paired_se_independent`` (mixtures taken as independent)."""
    if "test_mixtures" not in res:
        # results.json written before the names were stored: the test
        # split's files, in the order they were evaluated
        res["test_mixtures"] = test_mixture_names(res["data"]["test_dir"])
    per_mix = res["per_mixture"]
    ref = per_mix["dense-ft"]
    names = res["test_mixtures"]
    if any(len(v) != len(names) for v in per_mix.values()):
        raise SystemExit(
            f"{res['work']}: {len(names)} test mixtures but per-mixture "
            "lists of other lengths: the test split changed since the run")
    robust, independent = {}, {}
    for key, values in per_mix.items():
        if key == "dense-ft":
            continue
        diffs = [a - b for a, b in zip(values, ref)]
        robust[key] = utterance_robust_se(diffs, names)
        independent[key] = paired_se(values, ref)
    res["paired_se"] = robust
    res["paired_se_independent"] = independent
    for r in res["sizes"]:
        r["pruned_ft_se"] = robust[r["name"] + "-ft"]
        r["scratch_se"] = robust[r["name"] + "-scratch"]
    return res


# ----------------------------------------------------------------------
# Timing
def export_onnx(folder, path):
    """ONNX graph of a pretrained folder (speechbrain_mossformer.export_onnx
    when available, else the same TorchScript-based export here)."""
    try:
        from speechbrain_mossformer.export_onnx import (
            export_separator,
            load_separator,
        )
    except ImportError:
        export_separator = load_separator = None
    if load_separator is not None:
        separator, _ = load_separator(folder)
        export_separator(separator, path)
        return path
    from speechbrain_mossformer.lobes.models.mossformer import (
        separate_with_modules,
    )

    _, mods = load_model(folder)

    class Whole(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.m = torch.nn.ModuleDict(mods)

        def forward(self, mix):
            return separate_with_modules(
                self.m["encoder"], self.m["masknet"], self.m["decoder"],
                mix, 2,
            )

    torch.onnx.export(
        Whole().eval(), (torch.randn(1, 4003),), path, dynamo=False,
        opset_version=17, input_names=["mixture"],
        output_names=["estimates"],
        dynamic_axes={"mixture": {0: "batch", 1: "time"},
                      "estimates": {0: "batch", 1: "time"}},
    )
    return path


#: How ``time_worker`` sets up ONNX Runtime (recorded in ``results.json``).
ORT_SESSION = "speed.py settings (bench_models.ort_session): no spinning"


def ort_session_text(res):
    """The report's words for the ONNX Runtime session settings of a run.

    Runs timed before ``ORT_SESSION`` was recorded used ONNX Runtime's
    default settings, whose spinning worker threads slowed the model timed
    next.

    Example
    -------
    >>> ort_session_text({"ort_session": ORT_SESSION})[:34]
    'ONNX Runtime sessions as in speed.'
    >>> "default settings" in ort_session_text({})
    True
    """
    if res.get("ort_session") == ORT_SESSION:
        return (
            "ONNX Runtime sessions as in speed.py (no spinning worker "
            "threads)"
        )
    return (
        "ONNX Runtime sessions with default settings: each session's "
        "worker threads spin after its run and take the cores from the "
        "model timed next, which inflated the ONNX Runtime times, most for "
        "small models (timed before 2026-12-06; re-time with --retime)"
    )


def time_models(folders, onnx_dir, mix, settings, threads, log):
    """Median wall time (s) of each model, PyTorch and ONNX Runtime.

    Exports every model to ONNX, then runs ``settings["timing_processes"]``
    fresh timing processes one after another (``time_worker``); a
    model's time is the median of its per-process medians.

    Returns, per model: ``torch`` and ``onnx`` (that median, s),
    ``torch_process``/``onnx_process`` (the per-process medians) and
    ``torch_all``/``onnx_all`` (every timed run).
    """
    onnx = {
        name: export_onnx(folder, os.path.join(onnx_dir, name + ".onnx"))
        for name, folder in folders.items()
    }
    mix_path = os.path.join(onnx_dir, "timing_mixture.pt")
    torch.save(mix, mix_path)
    names = list(folders)
    per_process = []
    for k in range(settings["timing_processes"]):
        spec = {
            "folders": folders,
            "onnx": onnx,
            "order": names[k % len(names):] + names[: k % len(names)],
            "mix": mix_path,
            "threads": threads,
            "warmup": settings["warmup"],
            "repeats": settings["repeats"],
            "out": os.path.join(onnx_dir, f"timing_{k}.json"),
        }
        spec_path = os.path.join(onnx_dir, f"timing_{k}_spec.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--time-worker",
             spec_path],
            check=True,
        )
        with open(spec["out"]) as f:
            per_process.append(json.load(f))
        log(f"  timing process {k + 1}: {settings['repeats']} rounds per "
            "backend")
    timing = {}
    for name in names:
        t = {}
        for b in ("torch", "onnx"):
            medians = [statistics.median(p[name][b]) for p in per_process]
            t[b] = statistics.median(medians)
            t[b + "_process"] = medians
            t[b + "_all"] = [v for p in per_process for v in p[name][b]]
        timing[name] = t
    return timing


def time_worker(spec_path):
    """One timing process (``--time-worker``): loads every model, times it
    and writes every run's wall time (s) to ``spec["out"]``.

    PyTorch first, then ONNX Runtime; for each, ``warmup`` runs of every
    model, then ``repeats`` rounds in which all models take turns in
    ``spec["order"]``.
    """
    with open(spec_path) as f:
        spec = json.load(f)
    sys.path.insert(0, REPO)
    from bench_models import ort_session
    from speechbrain_mossformer.lobes.models.mossformer import (
        separate_with_modules,
    )

    threads = spec["threads"]
    torch.set_num_threads(threads)
    mix = torch.load(spec["mix"])
    runners = {}
    for name in spec["order"]:
        _, mods = load_model(spec["folders"][name])

        def run_torch(mods=mods):
            with torch.inference_mode():
                separate_with_modules(
                    mods["encoder"], mods["masknet"], mods["decoder"],
                    mix, 2,
                )

        # speed.py's session settings; above all no spinning: every
        # model's session has its own thread pool, whose threads would
        # busy-wait after each run and take the cores from the model
        # timed next (it doubled a small model's time)
        session = ort_session(spec["onnx"][name], threads)
        feed = {"mixture": mix.numpy()}

        def run_ort(session=session, feed=feed):
            session.run(None, feed)

        runners[name] = {"torch": run_torch, "onnx": run_ort}
    times = {name: {"torch": [], "onnx": []} for name in runners}
    # One backend at a time (a thread pool of one spinning after its run
    # would slow the other down), the models taking turns in every round.
    for backend in ("torch", "onnx"):
        for _ in range(spec["warmup"]):
            for r in runners.values():
                r[backend]()
        for _ in range(spec["repeats"]):
            for name, r in runners.items():
                start = time.perf_counter()
                r[backend]()
                times[name][backend].append(time.perf_counter() - start)
    with open(spec["out"], "w") as f:
        json.dump(times, f)
    return 0


# ----------------------------------------------------------------------
# Report
def machine():
    """CPU model, core count, library versions."""
    from bench_models import cpu_description

    cpu = cpu_description()[0]
    if cpu.startswith("unknown CPU"):
        cpu = platform.processor() or cpu
    import onnxruntime
    import speechbrain

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "speechbrain": speechbrain.__version__,
        "python": platform.python_version(),
    }


def busy_fraction(seconds=2.0):
    """Fraction of all CPU time that was busy over ``seconds`` (Linux)."""
    def sample():
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return idle, sum(values)

    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except OSError:
        return None
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def wait_for_quiet(log, threshold=0.25, max_wait=240.0):
    """Waits until other processes use less than ``threshold`` of the
    CPUs (or ``max_wait`` seconds pass); returns the last busy fraction."""
    start = time.time()
    busy = busy_fraction()
    while busy is not None and busy > threshold:
        if time.time() - start > max_wait:
            log(f"  machine still {busy:.0%} busy; timing anyway")
            break
        log(f"  machine {busy:.0%} busy; waiting for it to quieten")
        time.sleep(8.0)
        busy = busy_fraction()
    return busy


def load_average():
    """1-minute load average (or None)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def fmt(value, spec=".2f"):
    """Formats a number, or '-' for None."""
    return "-" if value is None else format(value, spec)


def write_plot(res, path):
    """Speedup vs SI-SNRi: pruned+fine-tuned, from scratch, unstructured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharey=True)
    ref = res["dense"]["finetuned"]
    for ax, backend, title in zip(
        axes, ("torch", "onnx"),
        ("PyTorch, %d threads" % res["threads"],
         "ONNX Runtime, %d threads" % res["threads"]),
    ):
        # points joined in order of measured speedup
        rows = sorted(res["sizes"], key=lambda r: r["speedup"][backend])
        sp = [r["speedup"][backend] for r in rows]
        ax.plot(sp, [r["pruned_ft"] for r in rows], "o-", color="C0",
                label="structured pruning + fine-tuning")
        ax.plot(sp, [r["scratch"] for r in rows], "s--", color="C1",
                label="same size trained from scratch")
        ax.plot(sp, [r["pruned_0"] for r in rows], "o", color="C0",
                mfc="none", alpha=0.6, label="pruned, before fine-tuning")
        for r, x in zip(rows, sp):
            ax.annotate(r["name"], (x, r["pruned_ft"]),
                        textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
        un = res["unstructured"]
        ax.plot([u["speedup"][backend] for u in un],
                [u["si_snri"] for u in un], "x", color="C3", ms=8,
                label="unstructured sparsity (same params, no fine-tuning)")
        ax.plot([1.0], [ref], "*", color="k", ms=12,
                label="dense, fine-tuned the same steps")
        ax.axhline(ref - TARGET_LOSS_DB, color="grey", ls=":", lw=1)
        ax.axvline(TARGET_SPEEDUP, color="grey", ls=":", lw=1)
        ax.set_xlabel("measured speedup over dense (x)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("SI-SNRi on held-out speakers (dB)")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(
        "MossFormer at CPU scale: measured speedup vs quality "
        f"(dotted: {TARGET_SPEEDUP:g}x, dense - {TARGET_LOSS_DB:g} dB)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def written_line(res):
    """The report's line on when the run was made: when its models were
    trained and scored (``trained``; ``trained_by`` for a run written
    before that was recorded and then re-timed) and when they were timed
    (``date``).

    Example
    -------
    >>> res = {"mode_name": "full", "date": "2026-12-07 09:00"}
    >>> written_line(res)[-32:]
    'on 2026-12-07 09:00 (full mode).'
    >>> written_line(dict(res, trained="2026-12-06 02:10"))[-66:]
    'trained and scored on 2026-12-06 02:10, timed on 2026-12-07 09:00.'
    >>> written_line(dict(res, retimed="2026-12-07 09:00")).endswith(
    ...     "when they were trained and scored is not recorded here (the "
    ...     "run's earlier reports give it).")
    True
    """
    script = "`benchmarks/pruning_experiment.py`"
    if res.get("trained"):
        return (f"Written by {script} ({res['mode_name']} mode): models "
                f"trained and scored on {res['trained']}, timed on "
                f"{res['date']}.")
    if res.get("trained_by"):
        return (f"Written by {script} ({res['mode_name']} mode): models "
                f"trained and scored by {res['trained_by']} (when the "
                f"original run ended), timed on {res['date']}.")
    if res.get("retimed"):
        # re-timed more than once before the training date was kept
        return (f"Written by {script} ({res['mode_name']} mode): models "
                f"timed on {res['date']} by `--retime`; when they were "
                "trained and scored is not recorded here (the run's "
                "earlier reports give it).")
    return f"Written by {script} on {res['date']} ({res['mode_name']} mode)."


def revision_text(revision):
    """``bench_models.revision_text`` (imported when used, like this
    script's other helpers from bench_models)."""
    from bench_models import revision_text as text

    return text(revision)


def code_line(res):
    """The report's line on the code that trained and timed the models
    (git revisions in ``revision`` and ``timing_revision``), or None for a
    run that recorded neither."""
    if "revision" not in res and "timing_revision" not in res:
        return None
    train = (revision_text(res["revision"]) if "revision" in res
             else "not recorded")
    timing = (revision_text(res["timing_revision"])
              if "timing_revision" in res else "not recorded")
    if ("revision" in res and "timing_revision" in res
            and res["revision"] == res["timing_revision"]):
        return f"Code: {train} (training and timing)."
    return f"Code: training {train}; timing {timing}."


def write_markdown(res, path):
    """The results table and everything needed to read it."""
    m = res["machine"]
    mode = res["mode"]
    dense = res["dense"]
    ref = dense["finetuned"]
    seed = res.get("seed", 0)
    lines = [
        "# Structured pruning of MossFormer at CPU scale",
        "",
        "Reproduces the method of Chee et al. 2021 (\"Performance "
        "optimizations on deep noise suppression models\", "
        "arXiv 2110.04378) on a small MossFormer: L1-magnitude "
        "structured pruning that **re-sizes** each layer into a smaller "
        "dense model, then fine-tuning, against training the same sizes "
        "from scratch and against unstructured sparsity; speed is "
        "**measured**, not counted.",
        "",
        written_line(res),
        "",
        "```",
        res["command"],
        "```",
        "",
    ]
    code = code_line(res)
    if code:
        lines += [code, ""]
    if res.get("rewritten"):
        lines += [
            f"Report rewritten on {res['rewritten']} from the run's "
            f"`results.json` with `{res['command']} --rewrite` (the "
            "standard errors of the current code"
            + (f", {revision_text(res['rewrite_revision'])}"
               if "rewrite_revision" in res else "")
            + "; models, scores and timings unchanged).",
            "",
        ]
    if res.get("retimed"):
        if res.get("retime_replaced_timing", True):
            lines += [
                f"Speed re-measured on {res['retimed']} with "
                f"`{res['command']} --retime`: the same trained models, "
                "timed with the code and timing protocol of that date.",
                "",
            ]
        else:
            lines += [
                f"Speed measured on {res['retimed']} with "
                f"`{res['command']} --retime`: the run stopped before its "
                "timing stage, and that command timed its trained models "
                "with the code and timing protocol of that date.",
                "",
            ]
    lines += [
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores visible",
        f"- timing: {res['threads']} intra-op threads (PyTorch and ONNX "
        f"Runtime), batch 1, one {mode['timing_seconds']:.0f} s mixture at "
        f"8 kHz; {mode.get('timing_processes', 1)} fresh processes one "
        "after another, in each PyTorch first, then ONNX Runtime: "
        f"{mode['warmup']} warm-up runs, then {mode['repeats']} rounds in "
        "which every model takes its turn (each process starting at "
        "another model); per process the median, and the median of those; "
        + ort_session_text(res),
        f"- the machine is shared: CPU busy (all processes) just before "
        f"timing {fmt(res['busy_before'], '.0%')} and just after "
        f"{fmt(res['busy_after'], '.0%')}; load average (1 min) "
        f"{fmt(res['load_before'], '.1f')} / "
        f"{fmt(res['load_after'], '.1f')}; see the spread column",
        f"- torch {m['torch']}, onnxruntime {m['onnxruntime']}, "
        f"speechbrain {m['speechbrain']}, Python {m['python']}",
        "",
        "## Setup",
        "",
        f"- data: mini Libri2Mix (8 kHz, min) from the real speech in "
        f"`data/speech`; training by dynamic mixing from "
        f"{res['data']['pool_files']} utterances of "
        f"{res['data']['train_speakers']} training speakers "
        f"({TRAINING['training_signal_len']}-sample crops, batch "
        f"{TRAINING['batch_size']}); validation {mode['n_valid']} and test "
        f"{mode['n_test']} mixtures from held-out speakers "
        f"({res['data']['test_speakers']} test speakers, disjoint from "
        "training)",
        f"- dense model: N = {DENSE['N_encoder_out']}, width "
        f"{DENSE['out_channels']}, {DENSE['num_blocks']} blocks, hidden "
        f"{int(DENSE['out_channels'] * DENSE['expansion_factor'])}, "
        f"query/key {DENSE['query_key_dim']}, group size "
        f"{DENSE['group_size']}; {dense['params']:,} parameters",
        f"- steps: pre-training P = {mode['pretrain_steps']} (lr "
        f"{TRAINING['pretrain_lr']}), fine-tuning F = "
        f"{mode['finetune_steps']} (lr {TRAINING['finetune_lr']}, a new "
        "data seed); from scratch: P + F steps at the pre-training lr; "
        f"recipe seeds {1 + 2 * seed} (pre-training, from scratch) and "
        f"{2 + 2 * seed} (fine-tuning) (`--seed {seed}`); "
        f"validation every {mode['epoch_steps']} steps, the best "
        "checkpoint is tested",
        "- **fair baseline**: the dense model fine-tuned for the same F "
        "steps from the same checkpoint with the same settings as the "
        "pruned models (so every model has P + F steps); its SI-SNRi is "
        f"**{ref:.2f} dB** (dense before fine-tuning: "
        f"{dense['pretrained']:.2f} dB)",
        "- pruning: `speechbrain_mossformer.pruning.prune_pretrained` "
        "(units inside layers by L1 magnitude: U/V pairs, query/key "
        "features beyond the rotary ones, width split evenly between the "
        "token-shifted and unshifted halves; blocks by greedy ablation "
        f"(`block_score=\"{BLOCK_SCORE}\"`) measured on "
        f"{N_CALIBRATION} training mixtures; kept blocks: "
        + ", ".join(f"{r['name']} {r['blocks_kept']}" for r in res["sizes"])
        + "); "
        "unstructured: `torch.nn.utils.prune.global_unstructured` (L1) of "
        "all mask-net Linear/Conv1d weights of the dense fine-tuned model, "
        "made permanent, to the pruned sizes' parameter counts",
        "",
        "## Results",
        "",
        "SI-SNRi in dB on the held-out test mixtures; Δ is against the "
        "dense model fine-tuned for the same steps, ± the standard error "
        "of the per-mixture paired difference, robust to mixtures sharing "
        "a source utterance (the test set is "
        f"{test_set_description(res['test_mixtures'])}; "
        "`utterance_robust_se`; the standard error taking the mixtures "
        "as independent is in `results.json`). It covers the sampling of "
        "test utterances only: with this few test speakers, their own "
        "sampling is not estimated, and run-to-run training noise comes "
        "on top (see the repetitions with other seeds). Times are medians "
        "(ms) for the whole separator on the "
        f"{mode['timing_seconds']:.0f} s mixture; spread = (max - min) / "
        "median of the per-process medians.",
        "",
        "| model | spec | blocks | width | hidden | q/k | params | "
        "torch ms (spread) | torch speedup | ONNX ms | ONNX speedup | "
        "pruned, no FT | pruned + FT | Δ | from scratch | Δ |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    dt = res["timing"]["dense"]
    lines.append(
        f"| dense | - | {DENSE['num_blocks']} | {DENSE['out_channels']} | "
        f"{int(DENSE['out_channels'] * DENSE['expansion_factor'])} | "
        f"{DENSE['query_key_dim']} | {dense['params']:,} | "
        f"{dt['torch'] * 1e3:.0f} ({dt['torch_spread']:.0%}) | 1.00 | "
        f"{dt['onnx'] * 1e3:.0f} | 1.00 | - | {ref:.2f} (FT) | 0 | - | - |"
    )
    for r in res["sizes"]:
        c = r["config"]
        t = res["timing"][r["name"]]
        hidden = sorted(set(c["hidden_dims"]))
        qk = sorted(set(c["query_key_dims"]))
        lines.append(
            f"| {r['name']} | `{json.dumps(r['spec'], sort_keys=True)}` | "
            f"{c['num_blocks']} | {c['out_channels']} | "
            f"{'/'.join(map(str, hidden))} | {'/'.join(map(str, qk))} | "
            f"{r['params']:,} | {t['torch'] * 1e3:.0f} "
            f"({t['torch_spread']:.0%}) | "
            f"**{r['speedup']['torch']:.2f}** | {t['onnx'] * 1e3:.0f} | "
            f"{r['speedup']['onnx']:.2f} | {r['pruned_0']:.2f} | "
            f"**{r['pruned_ft']:.2f}** | {r['pruned_ft'] - ref:+.2f} "
            f"± {r['pruned_ft_se']:.2f} | "
            f"{r['scratch']:.2f} | {r['scratch'] - ref:+.2f} "
            f"± {r['scratch_se']:.2f} |"
        )
    lines += [
        "",
        "Unstructured sparsity (same shapes, zeros; no fine-tuning):",
        "",
        "| matches | zeroed fraction of prunable weights | nonzero params | "
        "torch ms | torch speedup | ONNX ms | ONNX speedup | SI-SNRi | Δ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for u in res["unstructured"]:
        t = res["timing"][u["name"]]
        lines.append(
            f"| {u['matches']} | {u['amount']:.1%} | {u['nonzero']:,} | "
            f"{t['torch'] * 1e3:.0f} | {u['speedup']['torch']:.2f} | "
            f"{t['onnx'] * 1e3:.0f} | {u['speedup']['onnx']:.2f} | "
            f"{u['si_snri']:.2f} | {u['si_snri'] - ref:+.2f} |"
        )
    best = res["target"]
    lines += [
        "",
        f"## Target: {TARGET_WORDS} SI-SNRi loss",
        "",
        best["text"],
        "",
        "## Checks",
        "",
        f"- this script's SI-SNRi vs the recipe's own `test_results.csv` "
        f"(same best checkpoints): largest difference "
        f"{res['check_recipe_max_diff']:.4f} dB",
        "- the recipe command of every run is in `results.json` in the "
        "working folder; an example (the P3 fine-tuning):",
        "",
        "```",
        res["example_command"],
        "```",
        "",
        "## Runtimes",
        "",
        f"- total: {res['runtime']['total'] / 60:.1f} min (data "
        f"{res['runtime']['data']:.0f} s, training "
        f"{res['runtime']['training'] / 60:.1f} min with {res['jobs']} "
        f"runs at a time, evaluation {res['runtime']['evaluation']:.0f} s, "
        f"ONNX export + timing {res['runtime']['timing']:.0f} s)",
        "- recipe runs (wall seconds, including start-up, validation and "
        "testing): "
        + ", ".join(f"{k} {v:.0f}" for k, v in res["run_seconds"].items()),
        "- runs killed from outside (the machine is shared) and resumed "
        "from their last checkpoint: "
        + (", ".join(f"{k} ({v}x)" for k, v in res.get("restarts", {})
                     .items()) or "none")
        + "; runs finished by an earlier, interrupted invocation and "
        "reused with `--reuse`: "
        + (", ".join(res.get("reused", [])) or "none")
        + " (their wall time is that of the invocation that finished "
        "them)",
        "",
        "## Reading the numbers",
        "",
        "- Parameters are not time: unstructured sparsity removes as many "
        "parameters as the re-sized models but runs at the dense speed "
        "(speedups near 1.0), because the kernels stay dense.",
        "- At this scale (a few thousand steps on minutes of speech) the "
        "models are far from converged, so differences of a few tenths of "
        "a dB are within run-to-run noise; the comparison between pruning "
        "and training from scratch is the paper's question, and the "
        "fine-tuned pruned models have seen exactly as many steps as the "
        "from-scratch ones.",
        "- Width pruning is approximate before fine-tuning (the sinusoidal "
        "position table and LayerNorm/GroupNorm statistics depend on the "
        "width); hidden, query/key and block pruning keep the model "
        "unchanged up to the removed units (see `tests/test_pruning.py`).",
        "",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


# ----------------------------------------------------------------------
def main(argv=None):
    """Runs the experiment (or only its timing, with ``--retime``)."""
    args = parse_args(argv)
    # One thread outside the timing: two OpenMP threads on a busy 2-core
    # machine can be 10-100x slower than one (spinning threads).
    torch.set_num_threads(1)
    if args.time_worker:
        return time_worker(args.time_worker)
    if args.summarize:
        return summarize(args)
    if args.retime:
        return retime(args)
    if args.rewrite:
        return rewrite(args)
    mode_name = "quick" if args.quick else "full"
    mode = experiment_mode(args)
    work = work_folder(args)
    os.makedirs(work, exist_ok=True)
    if args.out is None:
        args.out = work if args.quick else RESULTS
    os.makedirs(args.out, exist_ok=True)
    command = reproduce_command(args)
    t0 = time.time()
    from bench_models import code_revision

    # the code that trains: read before anything runs
    revision = code_revision()

    def log(msg):
        print(f"[{time.time() - t0:7.1f}s] {msg}", flush=True)

    sys.path.insert(0, REPO)
    from speechbrain_mossformer import pruning
    from speechbrain_mossformer.export_checkpoint import export_checkpoint

    # 1. data
    log("building the mini Libri2Mix and the dynamic-mixing pool")
    data = build_data(work, mode)
    t_data = time.time() - t0

    # 2-4. runs
    runs_dir = os.path.join(work, "runs")
    models_dir = os.path.join(work, "models")
    os.makedirs(models_dir, exist_ok=True)
    P, F = mode["pretrain_steps"], mode["finetune_steps"]
    dense_args = model_args({})
    dense_dir = os.path.join(models_dir, "dense")
    pruned_configs = {}

    def out(name):
        return os.path.join(runs_dir, name)

    def prune_all():
        """Export the dense best checkpoint and prune it (once)."""
        if pruned_configs:
            return
        export_checkpoint(out("dense"), dense_dir)
        calibration = [mix for mix, _ in load_test_set(
            data["train_dir"])[:N_CALIBRATION]]
        for name, spec in SIZES:
            result = pruning.prune_pretrained(
                dense_dir, os.path.join(models_dir, name + "-pruned"), spec,
                calibration, BLOCK_SCORE,
            )
            pruned_configs[name] = result

    def finetune_cmd(name):
        def make():
            prune_all()
            if name == "dense":
                init, margs = dense_dir, dense_args
            else:
                init = os.path.join(models_dir, name + "-pruned")
                margs = pruned_configs[name]["overrides"]
            return recipe_command(
                data, out(name + "-ft"), F, mode,
                TRAINING["finetune_lr"], 2 + 2 * args.seed, margs, init,
            )

        return make

    def scratch_sizes():
        """Sizes of the pruned models without training the dense one:
        prune a randomly initialised dense model (sizes only)."""
        from speechbrain_mossformer.pretrained import (
            load_modules,
            render_hyperparams,
        )

        cfg = dict(DENSE, kernel_size=16, sample_rate=8000, num_spks=2,
                   attn_dropout=0.1)
        mods = load_modules(render_hyperparams(cfg))
        states = {k: m.state_dict() for k, m in mods.items()}
        return {
            name: pruning.structured_prune(cfg, states, spec)[0]
            for name, spec in SIZES
        }

    scratch_cfgs = scratch_sizes()
    runs = [
        Run("dense", out("dense"),
            lambda: recipe_command(data, out("dense"), P, mode,
                                   TRAINING["pretrain_lr"], 1 + 2 * args.seed,
                                   dense_args),
            P),
        Run("dense-ft", out("dense-ft"), finetune_cmd("dense"), F,
            after=["dense"]),
    ]
    for name, _ in SIZES:
        runs.append(Run(name + "-ft", out(name + "-ft"), finetune_cmd(name),
                        F, after=["dense"]))
    for name, _ in SIZES:
        cfg = scratch_cfgs[name]
        runs.append(Run(
            name + "-scratch", out(name + "-scratch"),
            lambda cfg=cfg, name=name: recipe_command(
                data, out(name + "-scratch"), P + F, mode,
                TRAINING["pretrain_lr"], 1 + 2 * args.seed,
                pruning.recipe_overrides(cfg)),
            P + F))
    # the long runs first: dense pre-training, then the from-scratch ones
    log(f"training: {len(runs)} recipe runs, {args.jobs} at a time")
    t1 = time.time()
    run_all(runs, args.jobs, work, args.reuse, log)
    prune_all()
    t_train = time.time() - t1

    # exports
    for run in runs:
        if run.name != "dense":
            export_checkpoint(run.output, os.path.join(models_dir, run.name))

    # 5. quality
    log("evaluating on the test set")
    t2 = time.time()
    test_set = load_test_set(data["test_dir"])
    per_mix = {}
    check = []
    for run in runs:
        folder = dense_dir if run.name == "dense" else os.path.join(
            models_dir, run.name)
        per_mix[run.name] = si_snri(folder, test_set)
        check.append(abs(statistics.fmean(per_mix[run.name])
                         - recipe_average(run.output)["si-snr_i"]))
    for name, _ in SIZES:
        per_mix[name + "-pruned"] = si_snri(
            os.path.join(models_dir, name + "-pruned"), test_set)
    # unstructured control at the pruned sizes' parameter counts
    dense_cfg, dense_states = pruning.read_pretrained(
        os.path.join(models_dir, "dense-ft"))
    dense_params = pruning.count_parameters(dense_states)
    unstructured = []
    for name, _ in SIZES:
        target = pruning.count_parameters(
            pruning.read_pretrained(
                os.path.join(models_dir, name + "-pruned"))[1])
        mods = pruning._build_modules(dense_cfg, dense_states)
        amount = pruning.unstructured_amount(mods, target)
        folder = os.path.join(models_dir, "U-" + name)
        result = pruning.unstructured_prune_pretrained(
            os.path.join(models_dir, "dense-ft"), folder, amount)
        per_mix["U-" + name] = si_snri(folder, test_set)
        unstructured.append({
            "name": "U-" + name, "matches": name, "amount": amount,
            "nonzero": result["nonzero"],
            "si_snri": statistics.fmean(per_mix["U-" + name]),
        })
    quality = {k: statistics.fmean(v) for k, v in per_mix.items()}
    t_eval = time.time() - t2

    res = {
        "seed": args.seed,
        "mode_name": mode_name,
        "mode": mode,
        "command": command,
        # when the models were trained and scored ("date" is when they
        # were timed, later, or again with --retime)
        "trained": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "revision": revision,
        "jobs": args.jobs,
        "work": work,
        "data": data,
        "dense": {"params": dense_params, "pretrained": quality["dense"],
                  "finetuned": quality["dense-ft"]},
        "sizes": [
            {
                "name": name,
                "spec": spec,
                "config": pruned_configs[name]["config"],
                "params": pruned_configs[name]["params"][1],
                "pruned_0": quality[name + "-pruned"],
                "pruned_ft": quality[name + "-ft"],
                "scratch": quality[name + "-scratch"],
                "blocks_kept": pruned_configs[name]["report"]["blocks"],
            }
            for name, spec in SIZES
        ],
        "unstructured": unstructured,
        "quality": quality,
        "test_mixtures": test_mixture_names(data["test_dir"]),
        "per_mixture": per_mix,
        "check_recipe_max_diff": max(check),
        "example_command": shell_line(
            next(r for r in runs if r.name == "P3-ft").cmd),
        "run_seconds": {r.name: (r.seconds or 0.0) for r in runs},
        "commands": {r.name: r.cmd for r in runs},
        "reused": [r.name for r in runs if r.reused],
        "restarts": {r.name: r.restarts for r in runs if r.restarts},
        "runtime": {"data": t_data, "training": t_train,
                    "evaluation": t_eval},
    }
    add_standard_errors(res)
    save_results(res)
    timing_stage(res, args, log)
    res["runtime"]["total"] = time.time() - t0
    return finish(res, args, log)


def save_results(res):
    """Writes ``results.json`` into the working folder."""
    with open(os.path.join(res["work"], "results.json"), "w") as f:
        json.dump(res, f, indent=1, default=str)


def timing_stage(res, args, log):
    """Exports every architecture to ONNX, times it, computes speedups and
    the verdict on the target; fills ``res`` in place."""
    from bench_models import code_revision

    # the code that times (a --retime may run later code than the training)
    res["timing_revision"] = code_revision()
    mode = res["mode"]
    models_dir = os.path.join(res["work"], "models")
    log("exporting to ONNX and timing")
    t3 = time.time()
    onnx_dir = os.path.join(res["work"], "onnx")
    os.makedirs(onnx_dir, exist_ok=True)
    mix = load_test_set(res["data"]["test_dir"])[0][0]
    length = int(mode["timing_seconds"] * 8000)
    reps = -(-length // mix.shape[0])
    mix = mix.repeat(reps)[:length][None].contiguous()
    folders = {"dense": os.path.join(models_dir, "dense-ft")}
    for r in res["sizes"]:
        folders[r["name"]] = os.path.join(models_dir, r["name"] + "-ft")
    for u in res["unstructured"]:
        folders[u["name"]] = os.path.join(models_dir, u["name"])
    res["busy_before"] = wait_for_quiet(
        log, max_wait=60.0 if res["mode_name"] == "quick" else 300.0)
    res["load_before"] = load_average()
    # the timing settings of this script (a --retime of an older run
    # measures with the current protocol)
    settings = MODES[res["mode_name"]]
    for key in ("timing_processes", "warmup", "repeats"):
        mode[key] = settings[key]
    timing = time_models(folders, onnx_dir, mix, mode, args.threads, log)
    res["load_after"] = load_average()
    res["busy_after"] = busy_fraction()
    for t in timing.values():
        t["torch_spread"] = (
            max(t["torch_process"]) - min(t["torch_process"])) / t["torch"]
    res["timing"] = timing
    res["ort_session"] = ORT_SESSION
    res["threads"] = args.threads
    res["machine"] = machine()
    res["date"] = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    res["runtime"]["timing"] = time.time() - t3

    dense_t = timing["dense"]
    for r in res["sizes"] + res["unstructured"]:
        r["speedup"] = {b: dense_t[b] / timing[r["name"]][b]
                        for b in ("torch", "onnx")}
    res["target"] = verdict(res)


def meets_target(size, ref, backend="torch"):
    """Whether a pruned ``size`` of a results.json is ``TARGET_SPEEDUP``
    times faster in ``backend`` ("torch" or "onnx") at a loss of at most
    ``TARGET_LOSS_DB`` against ``ref``, the SI-SNRi of the dense model
    fine-tuned for the same steps.

    Example
    -------
    >>> p8 = {"pruned_ft": 1.8, "speedup": {"torch": 4.4, "onnx": 2.4}}
    >>> meets_target(p8, 2.0), meets_target(p8, 2.0, "onnx")
    (True, False)
    >>> meets_target(p8, 2.4)
    False
    """
    return (size["speedup"][backend] >= TARGET_SPEEDUP
            and size["pruned_ft"] >= ref - TARGET_LOSS_DB)


def verdict(res):
    """Whether some pruned size meets ``meets_target`` in PyTorch (at
    least ``TARGET_SPEEDUP`` times faster, at most ``TARGET_LOSS_DB`` lost)
    against the dense model fine-tuned for the same steps; the same
    question for the ONNX Runtime times (``met_onnx``) in the text's last
    sentence."""
    sizes = res["sizes"]
    ref = res["dense"]["finetuned"]
    ok = [s for s in sizes if meets_target(s, ref)]
    if ok:
        best = max(ok, key=lambda s: s["speedup"]["torch"])
        text = (
            f"**Met.** {best['name']} runs {best['speedup']['torch']:.2f}x "
            f"faster than the dense model in PyTorch "
            f"({best['speedup']['onnx']:.2f}x in ONNX Runtime) at "
            f"{best['pruned_ft']:.2f} dB SI-SNRi after fine-tuning, "
            f"{best['pruned_ft'] - ref:+.2f} ± {best['pruned_ft_se']:.2f} dB "
            f"against the dense model fine-tuned for the same steps "
            f"({ref:.2f} dB)."
        )
    else:
        fast = [s for s in sizes if s["speedup"]["torch"] >= TARGET_SPEEDUP]
        close = [s for s in sizes if s["pruned_ft"] >= ref - TARGET_LOSS_DB]
        text = "**Not met.** "
        if close:
            b = max(close, key=lambda s: s["speedup"]["torch"])
            text += (
                f"Within {TARGET_LOSS_DB:g} dB of the dense model the "
                f"largest measured "
                f"speedup is {b['speedup']['torch']:.2f}x ({b['name']}, "
                f"{b['pruned_ft'] - ref:+.2f} dB). "
            )
        if fast:
            b = max(fast, key=lambda s: s["pruned_ft"])
            text += (
                f"At >= {TARGET_SPEEDUP:g}x the smallest loss is "
                f"{b['pruned_ft'] - ref:+.2f} dB ({b['name']}, "
                f"{b['speedup']['torch']:.2f}x)."
            )
    ok_onnx = [s for s in sizes if meets_target(s, ref, "onnx")]
    if ok_onnx:
        b = max(ok_onnx, key=lambda s: s["speedup"]["onnx"])
        text += (
            f" Timed in ONNX Runtime the target is met{' too' if ok else ''}:"
            f" fastest within "
            f"{TARGET_LOSS_DB:g} dB {b['name']}, "
            f"{b['speedup']['onnx']:.2f}x at "
            f"{b['pruned_ft'] - ref:+.2f} dB."
        )
    else:
        text += " Timed in ONNX Runtime no size meets the target."
    if res["mode_name"] == "quick":
        text += (
            " (Quick mode: the models are barely trained, so this is a "
            "smoke test of the pipeline, not a result.)"
        )
    return {"met": bool(ok), "met_onnx": bool(ok_onnx), "text": text}


def finish(res, args, log):
    """Writes results.json, pruning.md and pruning.png (pruning_seedK.*
    for seed K > 0)."""
    save_results(res)
    os.makedirs(args.out, exist_ok=True)
    name = report_name(res.get("seed", 0))
    md = os.path.join(args.out, name + ".md")
    png = os.path.join(args.out, name + ".png")
    write_markdown(res, md)
    write_plot(res, png)
    log(f"wrote {md} and {png}")
    print(res["target"]["text"])
    return 0


def read_results(args, seed=None, timed=True):
    """The ``results.json`` of a run (``timed``: one that finished,
    timing included)."""
    seed = args.seed if seed is None else seed
    path = os.path.join(work_folder(args, seed), "results.json")
    if not os.path.isfile(path):
        again = "the experiment" + (f" with --seed {seed}" if seed else "")
        raise SystemExit(f"{path} not found: run {again} first")
    with open(path) as f:
        res = json.load(f)
    if timed and "timing" not in res:
        raise SystemExit(f"{path} has no timing: the run did not finish")
    relocate(res, os.path.dirname(path))
    return res


def relocate(res, work):
    """Points a run's paths at ``work``, the folder its ``results.json``
    was read from: a copied working folder (``cp -r``, then ``--work``) is
    timed and written there, not in the folder the run was made in.

    Example
    -------
    >>> res = {"work": "/tmp/a", "data": {"test_dir": "/tmp/a/data/test",
    ...                                   "test_speakers": 4}}
    >>> relocate(res, "/tmp/b")
    >>> res["work"], res["data"]["test_dir"], res["data"]["test_speakers"]
    ('/tmp/b', '/tmp/b/data/test', 4)
    """
    old = res.get("work")
    if not old or os.path.abspath(old) == os.path.abspath(work):
        return
    for key, value in res.get("data", {}).items():
        if isinstance(value, str) and (
            value == old or value.startswith(old.rstrip(os.sep) + os.sep)
        ):
            res["data"][key] = work + value[len(old.rstrip(os.sep)):]
    res["work"] = work


def retime(args):
    """Re-measures the speed of a finished run (``--retime``) and rewrites
    the report: for a quieter machine than during the full run. A run
    stopped while timing (its models trained and scored, ``results.json``
    written without speed) gets its timing and report here."""
    res = read_results(args, timed=False)
    if args.out is None:
        args.out = res["work"] if args.quick else RESULTS
    t0 = time.time()

    def log(msg):
        print(f"[{time.time() - t0:7.1f}s] {msg}", flush=True)

    add_standard_errors(res)
    timed_before = "timing" in res
    if timed_before and "trained" not in res and not res.get("retimed"):
        # written before "trained" was recorded: "date", about to be
        # overwritten, is when the original run ended
        res.setdefault("trained_by", res.get("date"))
    previous = res["runtime"].get("timing", 0.0)
    timing_stage(res, args, log)
    add_timing_to_runtime(res["runtime"], previous)
    # the report says the speed is this command's, whether it replaced an
    # earlier timing or completed a run stopped before its own
    res["retimed"] = res["date"]
    res["retime_replaced_timing"] = timed_before
    return finish(res, args, log)


def add_timing_to_runtime(runtime, previous):
    """Puts a new timing stage's seconds into a run's total ``runtime``:
    in place of the ``previous`` timing, or, for a run stopped before its
    total was written, as the sum of its stages.

    Example
    -------
    >>> runtime = {"data": 1.0, "training": 10.0, "evaluation": 2.0,
    ...            "timing": 3.0}
    >>> add_timing_to_runtime(runtime, 0.0)
    >>> runtime["total"]
    16.0
    >>> runtime["timing"] = 5.0
    >>> add_timing_to_runtime(runtime, 3.0)
    >>> runtime["total"]
    18.0
    """
    if "total" in runtime:
        runtime["total"] += runtime["timing"] - previous
    else:
        runtime["total"] = sum(
            runtime.get(k, 0.0)
            for k in ("data", "training", "evaluation", "timing"))


def rewrite(args):
    """Rewrites the report of a finished run from its ``results.json``
    (``--rewrite``) with the current code's statistics: nothing is
    trained, scored or timed again."""
    res = read_results(args)
    if args.out is None:
        args.out = res["work"] if args.quick else RESULTS
    from bench_models import code_revision

    add_standard_errors(res)
    res["target"] = verdict(res)
    res["rewritten"] = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    res["rewrite_revision"] = code_revision()
    return finish(res, args, print)


def summarize(args):
    """Writes ``pruning_seeds.md``: the finished runs of several seeds
    (``--summarize 0,1,2``) side by side, with the mean and spread of each
    size's SI-SNRi change and speedup over the training repetitions."""
    try:
        seeds = [int(k) for k in args.summarize.split(",") if k.strip()]
    except ValueError:
        seeds = None
    if not seeds or min(seeds) < 0:
        raise SystemExit(
            f"--summarize wants seeds like 0,1,2 (each >= 0), got "
            f"{args.summarize!r}")
    args.summarize = ",".join(str(k) for k in seeds)
    runs = [add_standard_errors(read_results(args, seed)) for seed in seeds]
    if len({tuple(r["test_mixtures"]) for r in runs}) > 1:
        raise SystemExit(
            f"the runs of seeds {seeds} were tested on different mixtures: "
            "summarize repetitions on one test set")
    steps = {(r["mode"]["pretrain_steps"], r["mode"]["finetune_steps"])
             for r in runs}
    if len(steps) > 1:
        raise SystemExit(
            f"the runs of seeds {seeds} used different step counts "
            f"{sorted(steps)}: summarize repetitions of one setting")
    if args.out is None:
        args.out = work_folder(args, 0) if args.quick else RESULTS
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "pruning_seeds.md")
    with open(path, "w") as f:
        f.write("\n".join(
            seeds_markdown(seeds, runs, reproduce_command(args))) + "\n")
    print(f"wrote {path}")
    targets = [verdict(r) for r in runs]
    print(f"target met in {sum(t['met'] for t in targets)} of {len(runs)} "
          f"repetitions timed in PyTorch, "
          f"{sum(t['met_onnx'] for t in targets)} in ONNX Runtime")
    return 0


def _mean_sd(values):
    """``mean ± sd`` of a list (sd over the repetitions)."""
    if len(values) < 2:
        return f"{values[0]:+.2f}"
    return f"{statistics.fmean(values):+.2f} ± {statistics.stdev(values):.2f}"


def pooled_difference(runs, key):
    """Mean paired difference of model ``key`` to the dense fine-tuned
    model over repetitions on one test set, and its standard error.

    The error adds the two sources of variation: the training
    repetitions (sd of the per-repetition means / sqrt(repetitions)) and
    the test utterances (``utterance_robust_se`` of the per-mixture
    differences averaged over the repetitions). The second term holds
    some repetition noise too, so the sum errs on the large side.
    """
    diffs = [
        [a - b for a, b in zip(r["per_mixture"][key],
                               r["per_mixture"]["dense-ft"])]
        for r in runs
    ]
    means = [statistics.fmean(d) for d in diffs]
    averaged = [statistics.fmean(col) for col in zip(*diffs)]
    test = utterance_robust_se(averaged, runs[0]["test_mixtures"])
    seeds = 0.0
    if len(runs) > 1:
        seeds = statistics.stdev(means) / len(runs) ** 0.5
    return statistics.fmean(means), (test ** 2 + seeds ** 2) ** 0.5


def seeds_markdown(seeds, runs, command):
    """The lines of ``pruning_seeds.md`` (``command``: the summary's)."""
    mode = runs[0]["mode"]
    names = [s["name"] for s in runs[0]["sizes"]]
    head = "| model | spec | " + " | ".join(
        f"seed {k}: speedup torch / ONNX, Δ FT" for k in seeds
    ) + (" | mean Δ FT ± sd | mean Δ FT ± SE | mean Δ scratch ± sd | "
         "target met (torch / ONNX) |")
    lines = [
        "# Structured pruning: repetitions with other training seeds",
        "",
        "The experiment of [pruning.md](pruning.md) run again with other "
        "recipe seeds (model initialisation, dynamic-mixing draws, "
        "dropout); the data, the held-out test mixtures, the sizes and "
        f"the step counts (P = {mode['pretrain_steps']} pre-training, "
        f"F = {mode['finetune_steps']} fine-tuning) are the same. Δ is "
        "each model's SI-SNRi minus "
        "that of the dense model fine-tuned for the same steps *in the "
        "same repetition*; speedup is measured time, dense / model "
        "(8 s mixture, batch 1), in PyTorch and in ONNX Runtime. sd is "
        "over the repetitions, so "
        "it is the training noise the single-run table does not show. "
        "SE is the standard error of the mean Δ as an estimate of the "
        "expected loss on new utterances: training repetitions and test "
        "utterances together (`pooled_difference`; the test set is "
        f"{test_set_description(runs[0]['test_mixtures'])}, too few "
        "speakers to estimate their own sampling).",
        "",
        "```",
        "\n".join(r["command"] for r in runs),
        command,
        "```",
        "",
        f"Machine: {runs[0]['machine']['cpu']}; timed "
        + ", ".join(f"{r['date']} (seed {k})" for k, r in zip(seeds, runs))
        + ".",
        "",
        "Dense model fine-tuned (the reference), SI-SNRi: "
        + ", ".join(f"{r['dense']['finetuned']:.2f} dB (seed {k})"
                    for k, r in zip(seeds, runs)) + ".",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for i, name in enumerate(names):
        per = [r["sizes"][i] for r in runs]
        ref = [r["dense"]["finetuned"] for r in runs]
        d_ft = [p["pruned_ft"] - d for p, d in zip(per, ref)]
        d_sc = [p["scratch"] - d for p, d in zip(per, ref)]
        cells = [
            f"{p['speedup']['torch']:.2f}x / {p['speedup']['onnx']:.2f}x, "
            f"{p['pruned_ft'] - d:+.2f}"
            for p, d in zip(per, ref)
        ]
        met = [sum(meets_target(p, d, backend) for p, d in zip(per, ref))
               for backend in ("torch", "onnx")]
        mean, se = pooled_difference(runs, name + "-ft")
        lines.append(
            f"| {name} | `{json.dumps(per[0]['spec'], sort_keys=True)}` | "
            + " | ".join(cells)
            + f" | {_mean_sd(d_ft)} | {mean:+.2f} ± {se:.2f} | "
            f"{_mean_sd(d_sc)} | {met[0]} / {met[1]} of {len(runs)} |"
        )
    targets = [verdict(r) for r in runs]
    met = sum(t["met"] for t in targets)
    met_onnx = sum(t["met_onnx"] for t in targets)
    lines += [
        "",
        f"Target ({TARGET_WORDS} loss after "
        f"fine-tuning, by some size): met in **{met} of {len(runs)}** "
        f"repetitions timed in PyTorch, in **{met_onnx} of {len(runs)}** "
        "timed in ONNX Runtime.",
        "",
    ]
    lines += [f"- seed {k}: {t['text']}" for k, t in zip(seeds, targets)]
    return lines


if __name__ == "__main__":
    sys.exit(main())
