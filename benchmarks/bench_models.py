"""Models and measurements shared by the benchmark scripts.

* MossFormer (S), (M), (L): ``hparams/mossformer_{s,m,l}.yaml``, built with
  HyperPyYAML (random weights: the speed does not depend on them).
* SepFormer: SpeechBrain's WSJ0-2mix recipe configuration
  (``recipes/WSJ0Mix/separation/hparams/sepformer.yaml``), built from
  ``speechbrain.lobes.models.dual_path``: Encoder kernel 16 / N 256,
  Dual_Path_Model with two SBTransformerBlocks (8 layers, d_model 256,
  8 heads, d_ffn 1024, dropout 0, positional encoding, pre-norm),
  num_layers 2, K 250, norm "ln", skip_around_intra, no linear layer after
  inter/intra; Decoder. 25.7M parameters.

Authors
 * speechbrain-mossformer contributors 2026
"""

import gc
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_RATE = 8000
MOSSFORMER_SIZES = ("s", "m", "l")
ALL_MODELS = ("s", "m", "l", "sepformer")
LABELS = {
    "s": "MossFormer (S)",
    "m": "MossFormer (M)",
    "l": "MossFormer (L)",
    "sepformer": "SepFormer (SpeechBrain WSJ0-2mix)",
}


def model_list(parser, text):
    """The model names of a ``--models`` value (comma-separated); an
    argparse error for an unknown name or an empty list."""
    models = [m.strip().lower() for m in text.split(",") if m.strip()]
    unknown = [m for m in models if m not in ALL_MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {ALL_MODELS}")
    if not models:
        parser.error("--models is empty")
    return models


#: The shortest audio every benchmark model takes: one encoder frame (a
#: kernel of 16 samples at 8 kHz).
MIN_SECONDS = 16 / SAMPLE_RATE


def check_seconds(parser, seconds):
    """An argparse error unless ``seconds`` (one ``--seconds`` length) is
    a finite number of at least one encoder frame (``MIN_SECONDS``)."""
    if not math.isfinite(seconds) or seconds < MIN_SECONDS:
        parser.error(
            f"--seconds must be a finite length of at least {MIN_SECONDS:g} "
            f"(one encoder frame), got {seconds:g}"
        )
    return seconds


def seconds_list(parser, text):
    """The audio lengths of a ``--seconds`` value (comma-separated
    seconds); an argparse error for a non-number, an empty list or a
    length that ``check_seconds`` refuses."""
    try:
        seconds = [float(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seconds wants comma-separated numbers, got {text!r}")
    if not seconds:
        parser.error(f"--seconds is empty, got {text!r}")
    for value in seconds:
        check_seconds(parser, value)
    return seconds


def positive_int_list(parser, option, text):
    """``"1,2"`` -> ``[1, 2]``: a comma-separated list of integers of at
    least 1 (thread counts, lengths in samples); an argparse error for a
    non-integer, an empty list or a value below 1.

    Example
    -------
    >>> import argparse
    >>> positive_int_list(argparse.ArgumentParser(), "--threads", "1, 2")
    [1, 2]
    """
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        parser.error(f"{option}: expected a comma-separated list of "
                     f"positive integers, got {text!r}")
    return values


def output_folder(parser, path, option="--out-dir"):
    """Creates ``path`` (a results folder) before anything is measured;
    an argparse error when it cannot be (a file there, no permission), so
    that no measurement is lost at the end."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        parser.error(f"{option} {path}: {err.strerror or err}")
    if not os.access(path, os.W_OK):
        parser.error(f"{option} {path}: not writable")
    return path


def keep_full_run_results(parser, args, keys, attr="name", argv=None):
    """Gives the outputs of a run with other options than the defaults
    another name, so that it never replaces the full run's committed
    results (which the README quotes).

    When any option of ``keys`` differs from its default and ``attr`` (the
    output's base name, or a file path) is not given, ``_custom``
    is appended to it (before a path's extension) and a note says so.
    Call it before ``parse_args``'s own conversions of those options.

    Arguments
    ---------
    parser : argparse.ArgumentParser
        The script's parser (its defaults).
    args : argparse.Namespace
        The parsed options; ``attr`` is changed in place.
    keys : sequence of str
        The options that change what is measured.
    attr : str
        The option naming the outputs.
    argv : list of str, optional
        The command line parsed (default: ``sys.argv[1:]``): an ``attr``
        given there, even with its default value, is kept.

    Example
    -------
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> _ = parser.add_argument("--models", default="l,sepformer")
    >>> _ = parser.add_argument("--name", default="speed")
    >>> args = parser.parse_args(["--models", "s"])
    >>> keep_full_run_results(parser, args, ["models"])  # doctest: +ELLIPSIS
    --models differs from the default: writing speed_custom (...)
    >>> args.name
    'speed_custom'
    >>> argv = ["--models", "s", "--name", "speed"]
    >>> keep_full_run_results(parser, parser.parse_args(argv), ["models"],
    ...                       argv=argv)
    """
    changed = [k for k in keys if getattr(args, k) != parser.get_default(k)]
    option = "--" + attr.replace("_", "-")
    given = any(
        a == option or a.startswith(option + "=")
        for a in (sys.argv[1:] if argv is None else argv)
    )
    value = getattr(args, attr)
    if not changed or given or value != parser.get_default(attr):
        return
    root, ext = os.path.splitext(value) if os.sep in value else (value, "")
    setattr(args, attr, f"{root}_custom{ext}")
    options = ", ".join("--" + k.replace("_", "-") for k in changed)
    print(
        f"{options} differ{'s' if len(changed) == 1 else ''} from the "
        f"default{'s' if len(changed) > 1 else ''}: writing "
        f"{getattr(args, attr)} (the full run's results stay as they are; "
        f"{option} names the outputs)"
    )


def build_mossformer(size, overrides=None):
    """Encoder, mask net and decoder of MossFormer ``size`` (s, m or l);
    ``overrides``: hyperpyyaml overrides of ``hparams/mossformer_SIZE.yaml``."""
    from hyperpyyaml import load_hyperpyyaml

    path = os.path.join(REPO, "hparams", f"mossformer_{size}.yaml")
    with open(path, encoding="utf-8") as f:
        hparams = load_hyperpyyaml(f, overrides or {})
    return dict(hparams["modules"])


def build_sepformer():
    """SpeechBrain's SepFormer in its WSJ0-2mix recipe configuration."""
    from speechbrain.lobes.models.dual_path import (
        Decoder,
        Dual_Path_Model,
        Encoder,
        SBTransformerBlock,
    )

    def transformer():
        return SBTransformerBlock(
            num_layers=8,
            d_model=256,
            nhead=8,
            d_ffn=1024,
            dropout=0,
            use_positional_encoding=True,
            norm_before=True,
        )

    return {
        "encoder": Encoder(kernel_size=16, out_channels=256),
        "masknet": Dual_Path_Model(
            num_spks=2,
            in_channels=256,
            out_channels=256,
            num_layers=2,
            K=250,
            intra_model=transformer(),
            inter_model=transformer(),
            norm="ln",
            linear_layer_after_inter_intra=False,
            skip_around_intra=True,
        ),
        "decoder": Decoder(
            in_channels=256,
            out_channels=1,
            kernel_size=16,
            stride=8,
            bias=False,
        ),
    }


def build(name, train=False, overrides=None):
    """The three modules of benchmark model ``name``, in eval mode (train
    mode with ``train``); ``overrides`` go to a MossFormer's yaml."""
    torch.manual_seed(0)
    modules = build_sepformer() if name == "sepformer" else build_mossformer(
        name, overrides
    )
    for module in modules.values():
        module.train(train)
    return modules


def count(modules):
    """Trainable parameters of a module dict."""
    return sum(
        p.numel()
        for m in modules.values()
        for p in m.parameters()
        if p.requires_grad
    )


def separator(modules, num_spks=2):
    """A callable ``[B, T] -> [B, T, S]`` running the modules."""
    from speechbrain_mossformer.lobes.models.mossformer import (
        separate_with_modules,
    )

    def run(mix):
        return separate_with_modules(
            modules["encoder"],
            modules["masknet"],
            modules["decoder"],
            mix,
            num_spks,
        )

    return run


def training_step(run, modules, mix, optimizer=None):
    """A callable ``step(mix)``: one training step of separator ``run``
    (zeroed gradients, forward pass, SpeechBrain's PIT SI-SNR loss against
    two fixed random sources, backward pass, then ``optimizer.step()`` if
    given); returns the gradients of the modules' parameters."""
    from speechbrain.nnet.losses import get_si_snr_with_pitwrapper

    generator = torch.Generator().manual_seed(0)
    # [B, T, 2]
    sources = 0.1 * torch.randn(*mix.shape, 2, generator=generator)
    params = [p for m in modules.values() for p in m.parameters()]

    def step(mix):
        for p in params:
            p.grad = None
        # [B, T, 2]
        estimates = run(mix)
        get_si_snr_with_pitwrapper(sources, estimates).mean().backward()
        if optimizer is not None:
            optimizer.step()
        return [p.grad for p in params]

    return step


def mixture(seconds, batch=1):
    """A reproducible random mixture [batch, seconds * 8000]."""
    generator = torch.Generator().manual_seed(1234)
    return 0.1 * torch.randn(
        batch, int(seconds * SAMPLE_RATE), generator=generator
    )


def timed(fn, *args):
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def turn_order(names, index, alternate=False, rotate=False):
    """The order in which ``names`` take their turns in round ``index``.

    Arguments
    ---------
    names : list
        The callables' names, in their first round's order.
    index : int
        The round, from 0.
    alternate : bool
        Reverse the order in odd rounds.
    rotate : bool
        Start round ``index`` at name ``index`` (modulo their number), so
        that each takes the first place in turn; with ``alternate`` too,
        the rotated order of an odd round is then reversed, so that no
        name always runs right after the same one.

    Returns
    -------
    list
        Every name once.

    Example
    -------
    >>> turn_order(["a", "b", "c"], 1, alternate=True)
    ['c', 'b', 'a']
    >>> [turn_order(["a", "b", "c"], k, rotate=True) for k in range(3)]
    [['a', 'b', 'c'], ['b', 'c', 'a'], ['c', 'a', 'b']]
    >>> turn_order(["a", "b", "c", "d"], 1, alternate=True, rotate=True)
    ['a', 'd', 'c', 'b']
    """
    names = list(names)
    if rotate and names:
        shift = index % len(names)
        names = names[shift:] + names[:shift]
    return names[::-1] if alternate and index % 2 else names


def take_turns(runs, rounds, *args, alternate=False, rotate=False):
    """Times callables in turns, so that a change in the machine's load
    hits all of them alike.

    Arguments
    ---------
    runs : dict
        Name -> callable, each called with ``*args``.
    rounds : int
        Rounds; in each, every callable runs once, in the dict's order
        (changed from round to round by ``alternate`` and ``rotate``, see
        ``turn_order``).
    *args
        Arguments of every call.
    alternate : bool
        Reverse the order in odd rounds (two callables then go first
        equally often).
    rotate : bool
        Start each round at the next callable (every callable takes every
        place in turn); with ``alternate`` too, odd rounds run that order
        backwards, so a callable's predecessor changes as well.

    Returns
    -------
    dict
        Name -> list of wall-clock seconds, one per round.
    """
    names = list(runs)
    times = {name: [] for name in names}
    for index in range(rounds):
        for name in turn_order(names, index, alternate, rotate):
            times[name].append(timed(runs[name], *args))
    return times


def median(values):
    """Median of a non-empty list."""
    return statistics.median(values)


def current_rss_mb():
    """Resident set size of this process now, in MiB (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def max_rss_mb():
    """High-water mark of the resident set size, in MiB (Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss():
    """Resets the kernel's peak-RSS counter; False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb():
    """VmHWM of this process (peak RSS since the last reset), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return max_rss_mb()


def peak_memory(fn, *args):
    """Runs ``fn(*args)`` once and measures its resident memory: a dict
    with ``rss_before_mb`` (just before), ``peak_mb`` (the peak RSS during
    the call: the kernel's VmHWM, reset just before, or the process's
    ``ru_maxrss`` where it cannot be reset), ``above_mb`` (the peak minus
    the RSS before) and ``method``."""
    gc.collect()
    before = current_rss_mb()
    reset = reset_peak_rss()
    fn(*args)
    peak = peak_rss_mb() if reset else max_rss_mb()
    return {
        "rss_before_mb": before,
        "peak_mb": peak,
        "above_mb": max(peak - before, 0.0),
        "method": "VmHWM reset" if reset else "ru_maxrss",
    }


def child_result(cmd, threads, what, env=None):
    """Runs a benchmark's measuring child process ``cmd`` (a fresh
    interpreter, ``OMP_NUM_THREADS=threads``, plus the variables of
    ``env``); returns the JSON of its last output line, or None after
    printing why ``what`` failed."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), **(env or {}))
    out = subprocess.run(
        [sys.executable, *cmd], capture_output=True, text=True, env=env,
        check=False,
    )
    if out.returncode != 0:
        print(f"  {what} failed:\n{out.stderr}", flush=True)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def describe_cpu(text):
    r"""The CPU of a ``/proc/cpuinfo`` text (its first processor): the
    model name with the CPU family and model numbers (which tell CPU
    generations apart where a virtual machine shows a bare "AMD EPYC"),
    and its vector extensions (AVX2/AVX512F).

    Example
    -------
    >>> describe_cpu("model name\t: AMD EPYC\ncpu family\t: 25\n"
    ...              "model\t\t: 17\nflags\t\t: fpu avx2 avx512f\n")
    ('AMD EPYC, family 25 model 17', 'AVX2/AVX512F')
    >>> describe_cpu("model name\t: Some CPU\nflags\t: fpu\n")
    ('Some CPU', '')
    >>> describe_cpu("")
    ('unknown CPU', '')
    """
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = fields.get("flags", "").split()
    isa = [name for name in ("avx2", "avx512f") if name in flags]
    name = fields.get("model name") or "unknown CPU"
    numbers = [
        f"{label} {fields[key]}"
        for key, label in (("cpu family", "family"), ("model", "model"))
        if fields.get(key)
    ]
    if numbers:
        name += ", " + " ".join(numbers)
    return name, "/".join(isa).upper()


def cpu_description():
    """The CPU model name with its family and model numbers, and its
    vector extensions (AVX2/AVX512F), read from ``/proc/cpuinfo`` (see
    ``describe_cpu``); ``("unknown CPU", "")`` where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return "unknown CPU", ""
    return describe_cpu(text)


def _git(repo, *args):
    """The output of ``git args`` in ``repo`` (stripped), or None where git
    is missing or fails. ``--no-optional-locks``: reading the state never
    writes the index of a checkout others may be working in."""
    try:
        out = subprocess.run(
            ["git", "--no-optional-locks", "-C", repo, *args],
            capture_output=True, text=True, check=False, timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


#: Files whose changes do not make a results file's code version unclear:
#: the results themselves (a benchmark rewrites them).
RESULTS_PATHSPEC = ":(exclude)benchmarks/results"


def code_revision(repo=REPO):
    """The code version of the checkout at ``repo``, for a results file.

    Returns
    -------
    dict or None
        ``commit`` (``git rev-parse HEAD``), ``uncommitted_changes``
        (whether tracked files differ from it, staged or not; files under
        ``benchmarks/results`` and untracked files are not counted) and
        ``changed_files`` (those files); None where ``repo`` has no
        ``.git``, git is not installed or cannot read it.
    """
    if not os.path.exists(os.path.join(repo, ".git")):
        return None
    commit = _git(repo, "rev-parse", "--verify", "HEAD")
    if not commit:
        return None
    changed = _git(repo, "diff", "--name-only", "HEAD", "--", ".",
                   RESULTS_PATHSPEC)
    if changed is None:
        return {"commit": commit, "uncommitted_changes": None,
                "changed_files": None}
    files = changed.splitlines()
    return {"commit": commit, "uncommitted_changes": bool(files),
            "changed_files": files}


def commit_of(rev, repo=REPO):
    """The full commit id that revision ``rev`` names in ``repo``'s git
    history, or None where it names none (or git cannot tell)."""
    if not os.path.exists(os.path.join(repo, ".git")):
        return None
    return _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")


def revision_text(revision):
    """One line for a report's header: a ``code_revision`` result.

    Example
    -------
    >>> revision_text({"commit": "0123456789abcdef", "changed_files": [],
    ...                "uncommitted_changes": False})
    '`0123456789ab`'
    >>> revision_text({"commit": "0123456789abcdef",
    ...                "uncommitted_changes": True,
    ...                "changed_files": ["a.py", "b.py"]})
    '`0123456789ab` with uncommitted changes (2 files)'
    >>> revision_text(None)
    'unknown (no git checkout)'
    """
    if not revision:
        return "unknown (no git checkout)"
    text = f"`{revision['commit'][:12]}`"
    if revision.get("uncommitted_changes"):
        files = revision.get("changed_files") or []
        text += " with uncommitted changes" + (
            f" ({len(files)} file{'s' if len(files) != 1 else ''})"
            if files else "")
    elif revision.get("uncommitted_changes") is None:
        text += " (uncommitted changes unknown)"
    return text


def machine_description():
    """CPU model, core count and library versions, for the result table."""
    cpu, flags = cpu_description()
    info = {
        "cpu": cpu,
        "isa": flags,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    info["products"] = products_description()
    return info


# Environment variables that decide which library runs MossFormer's CPU
# products and how fast (see speechbrain_mossformer.cpu_blas)
PRODUCT_SETTINGS = (
    "MOSSFORMER_CPU_BLAS",
    "OMP_WAIT_POLICY",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
)


def products_description():
    """Which library runs MossFormer's inference products here, and the
    environment settings that decide it.

    Example
    -------
    >>> "products" in products_description()
    True
    """
    from speechbrain_mossformer import cpu_blas

    settings = [f"{k}={os.environ[k]}" for k in PRODUCT_SETTINGS
                if k in os.environ]
    return (
        f"MossFormer's inference products in {cpu_blas.describe()}; "
        + (" ".join(settings) if settings else "none of "
           + ", ".join(PRODUCT_SETTINGS) + " set")
    )


def ort_session(path, threads):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    )
    # no busy-waiting threads between runs: they would steal the cores from
    # the PyTorch model timed next
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(
        path, options, providers=["CPUExecutionProvider"]
    )


def export_onnx(modules, path):
    """Exports a MossFormer module dict to ``path``."""
    from speechbrain_mossformer.export_onnx import (
        SeparatorForExport,
        export_separator,
    )

    export_separator(
        SeparatorForExport(
            modules["encoder"], modules["masknet"], modules["decoder"], 2
        ),
        path,
    )


def ort_runner(session):
    """A callable running ``session`` on a torch mixture."""

    def run(mix):
        return session.run(None, {"mixture": mix.numpy()})

    return run
