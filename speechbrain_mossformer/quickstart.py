"""``make quickstart``: the whole plugin on real speech, in minutes, on a CPU.

1. builds a mini Libri2Mix (8 kHz) in the real folder layout from the real
   speech clips bundled in ``data/speech``, with speakers split between
   training and test, plus a LibriSpeech-layout training pool for dynamic
   mixing;
2. trains a small MossFormer through the LibriMix recipe
   (``recipes/LibriMix/separation/train.py``) for a few minutes;
3. evaluates it on mixtures of held-out speakers and prints the SI-SNRi
   table the recipe wrote (``test_results.csv``);
4. exports the best checkpoint as a SpeechBrain pretrained folder;
5. separates an example mixture of two held-out speakers (a female and a
   male one) with the ``mossformer-separate`` command line, and draws a
   PNG of the mixture, the estimates and the references.

The model is small and trained for minutes: it reports the SI-SNRi it
actually reached, which is far from a full-size model trained for days.

Usage::

    python -m speechbrain_mossformer.quickstart [--output DIR] [--epochs N]
        [--epoch-size N]

Authors
 * speechbrain-mossformer contributors 2026
"""

import argparse
import csv
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPO, "recipes", "LibriMix", "separation")

#: The small model and training settings (recipe overrides).
MODEL = {
    "N_encoder_out": 64,
    "out_channels": 64,
    "num_blocks": 2,
    "group_size": 64,
    "query_key_dim": 32,
}


def build_data(root, seed=0):
    """Mini Libri2Mix + LibriSpeech-layout training pool; returns paths."""
    from speechbrain_mossformer.dataprep import minidata

    libri2mix = minidata.make_librimix(
        root, num_spks=2, n_train=8, n_valid=6, n_test=6, duration=2.0,
        seed=seed,
    )
    librispeech = minidata.make_librispeech(
        root, sample_rate=8000, duration=3.0, seed=seed
    )
    return libri2mix, librispeech


def train(data_folder, pool, output, epochs, epoch_size):
    """Runs the LibriMix recipe; returns its exit code."""
    cmd = [
        sys.executable,
        os.path.join(RECIPE, "train.py"),
        os.path.join(RECIPE, "hparams", "mossformer-libri2mix.yaml"),
        f"--data_folder={data_folder}",
        f"--output_folder={output}",
        "--device=cpu",
        f"--N_epochs={epochs}",
        "--lr=0.001",
        "--batch_size=4",
        "--num_workers=1",
        "--use_speedperturb=False",
        "--dynamic_mixing=True",
        f"--base_folder_dm={pool}",
        "--training_signal_len=8000",
        f"--dm_epoch_size={epoch_size}",
        "--save_audio=False",
    ] + [f"--{k}={v}" for k, v in MODEL.items()]
    print("$ " + " ".join(os.path.relpath(c, REPO) if c.startswith(REPO)
                          else c for c in cmd), flush=True)
    return subprocess.call(cmd, cwd=REPO)


def print_results(results_csv):
    """Prints ``test_results.csv`` as a table; returns the mean row."""
    with open(results_csv) as f:
        rows = list(csv.DictReader(f))
    print("\n| mixture (held-out speakers) | SI-SNR | SI-SNRi | SDR | SDRi |")
    print("|---|---|---|---|---|")
    for row in rows:
        name = "**mean**" if row["snt_id"] == "avg" else row["snt_id"]
        print(
            f"| {name} | {float(row['si-snr']):.2f} | "
            f"{float(row['si-snr_i']):.2f} | {float(row['sdr']):.2f} | "
            f"{float(row['sdr_i']):.2f} |"
        )
    return rows[-1]


def speaker_genders(speech_dir=None):
    """Speaker id -> gender ("F", "M", "U") from the clips' manifest.

    Arguments
    ---------
    speech_dir : str, optional
        Folder of the clips and their ``manifest.csv`` (default: the
        bundled ``data/speech``).

    Returns
    -------
    dict
        ``{speaker: gender}``.

    Example
    -------
    >>> genders = speaker_genders()
    >>> len(genders), genders["p225"], genders["p226"]
    (21, 'F', 'M')
    """
    from speechbrain_mossformer.dataprep.minidata import default_speech_dir

    path = os.path.join(speech_dir or default_speech_dir(), "manifest.csv")
    with open(path) as f:
        return {row["speaker"]: row["gender"] for row in csv.DictReader(f)}


def example_mixture(data_folder):
    """A test mixture (held-out speakers) and its references.

    The first one that mixes a female and a male speaker, chosen from the
    speakers' metadata (not from any score): the usual demo case. The
    same-gender test mixtures are in the printed table.

    Arguments
    ---------
    data_folder : str
        A ``Libri2Mix`` folder (``wav8k/min/test``).

    Returns
    -------
    tuple
        ``(mixture_path, [s1_path, s2_path])``.

    Example
    -------
    >>> from speechbrain_mossformer.dataprep.minidata import make_librimix
    >>> data = make_librimix(str(getfixture("tmpdir")), n_train=1,
    ...                      n_valid=1, n_test=3)
    >>> mix, refs = example_mixture(data)
    >>> [os.path.basename(os.path.dirname(p)) for p in [mix] + refs]
    ['mix_clean', 's1', 's2']
    >>> utts = os.path.basename(mix)[:-4].split("_")
    >>> sorted(speaker_genders()[u.split("-")[0]] for u in utts)
    ['F', 'M']
    """
    test = os.path.join(data_folder, "wav8k", "min", "test")
    names = sorted(os.listdir(os.path.join(test, "mix_clean")))
    genders = speaker_genders()

    def mixed_gender(name):
        speakers = [utt.split("-")[0] for utt in name[:-4].split("_")]
        return {genders.get(s) for s in speakers} == {"F", "M"}

    name = next((n for n in names if mixed_gender(n)), names[0])
    return (
        os.path.join(test, "mix_clean", name),
        [os.path.join(test, f"s{k}", name) for k in (1, 2)],
    )


def plot(mixture, estimates, references, png):
    """Spectrograms of the mixture, estimates and references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf

    panels = [("mixture", mixture)]
    panels += [(f"estimate {k + 1}", p) for k, p in enumerate(estimates)]
    panels += [(f"reference {k + 1}", p) for k, p in enumerate(references)]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2 * len(panels)),
                             sharex=True)
    for ax, (title, path) in zip(axes, panels):
        signal, rate = sf.read(path)
        ax.specgram(signal, NFFT=256, Fs=rate, noverlap=192, cmap="magma")
        ax.set_title(f"{title}: {os.path.basename(path)}", fontsize=9)
        ax.set_ylabel("Hz")
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


def main(argv=None):
    """Runs the quickstart; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=os.path.join(
        REPO, "quickstart_output"))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--epoch-size", type=int, default=200,
                        help="dynamic-mixing mixtures per epoch")
    args = parser.parse_args(argv)
    start = time.time()
    out = os.path.abspath(args.output)
    os.makedirs(out, exist_ok=True)

    print("== 1/5 building a mini Libri2Mix from the bundled real speech")
    data_folder, pool = build_data(os.path.join(out, "data"))
    print(f"   {data_folder}\n   {pool}")

    print("== 2/5 training a small MossFormer with the LibriMix recipe")
    exp = os.path.join(out, "experiment")
    code = train(data_folder, pool, exp, args.epochs, args.epoch_size)
    if code != 0:
        print(f"error: training failed (exit {code})", file=sys.stderr)
        return 1

    print("== 3/5 results on mixtures of held-out speakers")
    mean = print_results(os.path.join(exp, "test_results.csv"))

    print("== 4/5 exporting the best checkpoint as a pretrained folder")
    model_dir = os.path.join(out, "pretrained")
    code = subprocess.call([
        sys.executable, "-m", "speechbrain_mossformer.export_checkpoint",
        exp, model_dir,
    ])
    if code != 0:
        return 1

    print("== 5/5 separating a held-out mixture with mossformer-separate")
    mixture, references = example_mixture(data_folder)
    sep_dir = os.path.join(out, "separated")
    cli = os.path.join(os.path.dirname(sys.executable), "mossformer-separate")
    code = subprocess.call([
        cli, mixture, "--model", model_dir, "--out-dir", sep_dir,
    ])
    if code != 0:
        return 1
    stem = os.path.splitext(os.path.basename(mixture))[0]
    estimates = [os.path.join(sep_dir, f"{stem}_spk{k}.wav") for k in (1, 2)]
    png = os.path.join(out, "separation.png")
    try:
        import matplotlib  # noqa: F401  (the "plot" extra)
    except ImportError:
        png = "none (matplotlib is not installed: pip install matplotlib)"
    else:
        plot(mixture, estimates, references, png)

    from speechbrain_mossformer.metrics import separation_metrics
    import soundfile as sf

    est = [sf.read(p)[0] for p in estimates]
    ref = [sf.read(p)[0] for p in references]
    mix = sf.read(mixture)[0]
    example = separation_metrics(mix, ref, est)
    minutes = (time.time() - start) / 60
    print(
        f"\nDone in {minutes:.1f} min.\n"
        f"  test-set mean SI-SNRi (held-out speakers): "
        f"{float(mean['si-snr_i']):.2f} dB\n"
        f"  example mixture SI-SNRi: {example['si-snr_i']:.2f} dB "
        f"({os.path.basename(mixture)})\n"
        f"  training log:       {os.path.join(exp, 'train_log.txt')}\n"
        f"  results per file:   {os.path.join(exp, 'test_results.csv')}\n"
        f"  pretrained folder:  {model_dir}\n"
        f"  mixture:            {mixture}\n"
        f"  separated speech:   {estimates[0]}\n"
        f"                      {estimates[1]}\n"
        f"  picture:            {png}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
