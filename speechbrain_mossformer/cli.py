"""``mossformer-separate``: separate audio files with a MossFormer model.

Usage::

    mossformer-separate --model PRETRAINED_FOLDER [options] INPUT [INPUT ...]

Each INPUT is an audio file or a folder (every audio file inside it;
``--recursive`` also looks in sub-folders). For ``<name>.<ext>`` the tracks
``<name>_spk1.wav``, ``<name>_spk2.wav``, ... are written to ``--out-dir``
as 16-bit PCM at the input file's rate (or ``--output-sample-rate``), with
exactly the input's duration. Long files are separated in overlapping
chunks with a consistent speaker order (``--chunk-seconds``,
``--overlap-seconds``) and never held in memory whole: tracks are streamed
to temporary float files, then converted to 16-bit. A track whose peak
exceeds full scale is scaled down to fit instead of being clipped (a note
says so); ``--normalize peak`` scales every track to full scale.

Exit codes: 0 every file was separated; 1 some files failed (the others
were still written; each failure is one ``error: <file>: <problem>`` line on
stderr); 2 usage error or the model could not be loaded.

Authors
 * speechbrain-mossformer contributors 2026
"""

import argparse
import os
import sys

import numpy as np
import soundfile as sf

from speechbrain_mossformer.inference import (
    AUDIO_EXTENSIONS,
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_OVERLAP_SECONDS,
    AudioInputError,
)

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2

_COPY_BLOCK = 1 << 16


class UsageError(Exception):
    """Bad command line (exit code 2)."""


def build_parser():
    """The argument parser of ``mossformer-separate``.

    Example
    -------
    >>> args = build_parser().parse_args(["--model", "m", "a.wav"])
    >>> args.chunk_seconds, args.overlap_seconds, args.normalize
    (8.0, 2.0, 'none')
    """
    parser = argparse.ArgumentParser(
        prog="mossformer-separate",
        description="Separate the speakers of audio files with a MossFormer "
        "pretrained folder. Writes <name>_spk1.wav, <name>_spk2.wav, ... "
        "(16-bit PCM).",
        epilog="Exit codes: 0 all files separated, 1 some files failed "
        "(others written), 2 usage or model error.",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="audio files and/or folders of audio files",
    )
    parser.add_argument(
        "--model", required=True, metavar="DIR",
        help="pretrained folder (hyperparams.yaml + encoder/masknet/"
        "decoder.ckpt), e.g. written by speechbrain_mossformer.convert",
    )
    parser.add_argument(
        "--out-dir", default=".", metavar="DIR",
        help="where the tracks are written (default: current folder)",
    )
    parser.add_argument(
        "--device", default=None,
        help="cpu, cuda or cuda:N (default: cuda if available, else cpu)",
    )
    parser.add_argument(
        "--chunk-seconds", type=float, default=DEFAULT_CHUNK_SECONDS,
        help="separate files longer than this in chunks of this length "
        "(default %(default)s; 0 = whole file at once)",
    )
    parser.add_argument(
        "--overlap-seconds", type=float, default=DEFAULT_OVERLAP_SECONDS,
        help="overlap between chunks, used to keep the speaker order and "
        "cross-faded (default %(default)s; at most half a chunk)",
    )
    parser.add_argument(
        "--output-sample-rate", type=int, default=None, metavar="HZ",
        help="rate of the written tracks (default: each input's rate)",
    )
    parser.add_argument(
        "--normalize", choices=("none", "peak"), default="none",
        help="none: the model's levels (scaled down only if they would "
        "clip); peak: every track scaled to full scale (default none)",
    )
    parser.add_argument(
        "--recursive", action="store_true",
        help="also take audio files in sub-folders of folder inputs",
    )
    parser.add_argument(
        "--quiet", action="store_true",
        help="no progress bar and no messages except errors",
    )
    return parser


def _check_options(args):
    """Raises ``UsageError`` for inconsistent numeric options."""
    if args.chunk_seconds < 0:
        raise UsageError("--chunk-seconds must be >= 0")
    if args.chunk_seconds > 0:
        if args.overlap_seconds <= 0:
            raise UsageError("--overlap-seconds must be > 0")
        if args.overlap_seconds > args.chunk_seconds / 2:
            raise UsageError(
                "--overlap-seconds must be at most half of --chunk-seconds"
            )
    if args.output_sample_rate is not None and args.output_sample_rate <= 0:
        raise UsageError("--output-sample-rate must be positive")


def _is_audio_name(name):
    return name.lower().endswith(AUDIO_EXTENSIONS)


def collect_inputs(inputs, recursive=False, out_dir=None):
    """Expands files and folders into ``(path, relative_output_prefix)``.

    Files in folders keep their sub-folder below ``--out-dir`` (so that
    equal names in different sub-folders do not collide). Our own outputs
    (``*_spkN.wav`` inside ``out_dir``) are skipped when scanning folders.
    Paths that do not exist are returned as they are (they fail later,
    with the other per-file errors).

    Arguments
    ---------
    inputs : list of str
        Command line inputs.
    recursive : bool
        Look into sub-folders.
    out_dir : str, optional
        Output folder.

    Returns
    -------
    list of (str, str)
        Input path and output prefix (relative, without ``_spkN.wav``).

    Example
    -------
    >>> collect_inputs(["x/a.wav"])
    [('x/a.wav', 'a')]
    """
    out_real = os.path.realpath(out_dir) if out_dir else None
    items = []
    for item in inputs:
        if not os.path.isdir(item):
            stem = os.path.splitext(os.path.basename(item))[0]
            items.append((item, stem))
            continue
        found = []
        if recursive:
            for root, dirs, files in os.walk(item):
                dirs.sort()
                found += [os.path.join(root, f) for f in sorted(files)]
        else:
            found = [
                os.path.join(item, f) for f in sorted(os.listdir(item))
                if os.path.isfile(os.path.join(item, f))
            ]
        for path in found:
            if not _is_audio_name(path) or _is_our_output(path, out_real):
                continue
            rel = os.path.relpath(path, item)
            items.append((path, os.path.splitext(rel)[0]))
    return items


def _is_our_output(path, out_real):
    if out_real is None:
        return False
    name = os.path.basename(path)
    stem = os.path.splitext(name)[0]
    head, _, tail = stem.rpartition("_spk")
    return (
        bool(head) and tail.isdigit() and name.lower().endswith(".wav")
        and os.path.dirname(os.path.realpath(path)).startswith(out_real)
    )


def separate_to_files(model, path, prefix, args, progress_factory=None):
    """Separates one file and writes its tracks; returns their paths.

    Tracks are streamed to temporary float files, then converted to 16-bit
    PCM with a per-track gain (peak normalisation, or clip protection), so
    memory does not depend on the file length. Nothing is left behind on
    failure.

    Arguments
    ---------
    model : MossFormerSeparation
        The loaded model.
    path : str
        Input file.
    prefix : str
        Output path without ``_spkN.wav``.
    args : argparse.Namespace
        Options (chunking, rate, normalisation, quiet).
    progress_factory : callable, optional
        ``progress_factory(audio) -> (callback, close)``.

    Returns
    -------
    list of str
        Written files.
    """
    chunk = args.chunk_seconds or None
    stream = model.stream_file(
        path,
        chunk_seconds=chunk,
        overlap_seconds=args.overlap_seconds,
        output_sample_rate=args.output_sample_rate,
    )
    close = None
    if progress_factory is not None:
        stream.progress, close = progress_factory(stream.audio)
    S, rate = stream.num_spks, stream.sample_rate
    finals = [f"{prefix}_spk{k + 1}.wav" for k in range(S)]
    temps = [f"{f}.part.caf" for f in finals]
    writers = []
    written = []
    peaks = np.zeros(S)
    try:
        os.makedirs(os.path.dirname(prefix) or ".", exist_ok=True)
        writers = [
            sf.SoundFile(t, "w", samplerate=rate, channels=1,
                         format="CAF", subtype="FLOAT")
            for t in temps
        ]
        for block in stream:
            data = block.numpy()
            peaks = np.maximum(peaks, np.abs(data).max(axis=0))
            for k, writer in enumerate(writers):
                writer.write(data[:, k])
        for writer in writers:
            writer.close()
        if close is not None:
            close()
            close = None
        for k in range(S):
            gain = 1.0
            if peaks[k] > 0 and (args.normalize == "peak" or peaks[k] > 1):
                gain = 1.0 / peaks[k]
                if args.normalize != "peak" and not args.quiet:
                    print(
                        f"note: {finals[k]}: peak {peaks[k]:.2f} is above "
                        f"full scale; scaled by {gain:.3f} to avoid "
                        f"clipping",
                        file=sys.stderr,
                    )
            _float_to_pcm16(temps[k], finals[k], gain)
            written.append(finals[k])
    except BaseException:
        for writer in writers:
            writer.close()
        # no half set of tracks: remove what this call wrote
        for f in temps + [f + ".part.wav" for f in finals] + written:
            if os.path.exists(f):
                os.remove(f)
        raise
    finally:
        if close is not None:
            close()
        for t in temps:
            if os.path.exists(t):
                os.remove(t)
    return finals


def _float_to_pcm16(src, dst, gain):
    """Copies a float file into 16-bit PCM WAV, scaled and clip-safe."""
    tmp = dst + ".part.wav"
    with sf.SoundFile(src) as fin:
        with sf.SoundFile(
            tmp, "w", samplerate=fin.samplerate, channels=1,
            format="WAV", subtype="PCM_16",
        ) as fout:
            while True:
                data = fin.read(_COPY_BLOCK, dtype="float32")
                if len(data) == 0:
                    break
                fout.write(np.clip(data * gain, -1.0, 1.0))
    os.replace(tmp, dst)


def _progress_factory(args):
    """Makes a tqdm bar for files longer than one chunk (not ``--quiet``)."""
    if args.quiet:
        return None
    from tqdm import tqdm

    def factory(audio):
        if args.chunk_seconds and audio.duration <= args.chunk_seconds:
            return None, None
        bar = tqdm(
            total=round(audio.duration, 1),
            unit="s",
            desc=os.path.basename(audio.path),
            file=sys.stderr,
            leave=False,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/"
            "{total:.1f} s [{elapsed}<{remaining}]",
        )
        last = [0.0]

        def callback(frames):
            now = round(frames / audio.sample_rate, 1)
            bar.update(now - last[0])
            last[0] = now

        return callback, bar.close

    return factory


def main(argv=None):
    """Runs ``mossformer-separate``; returns the exit code.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 all separated, 1 some files failed, 2 usage or model error.

    Example
    -------
    >>> main(["--model", "/no/such/folder", "a.wav"])
    2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    try:
        _check_options(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    items = collect_inputs(args.inputs, args.recursive, args.out_dir)
    if not items:
        print(
            f"error: no audio files found in {', '.join(args.inputs)} "
            f"(extensions: {' '.join(AUDIO_EXTENSIONS)})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if not os.path.isdir(args.model):
        print(f"error: --model {args.model}: not a folder", file=sys.stderr)
        return EXIT_USAGE
    try:
        model = _load_model(args)
    except Exception as err:  # any loading problem is a model error
        msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(
            f"error: --model {args.model}: {msg or type(err).__name__}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    factory = _progress_factory(args)
    failures = 0
    used = {}
    for path, rel_prefix in items:
        prefix = os.path.join(args.out_dir, rel_prefix)
        key = os.path.normcase(os.path.abspath(prefix))
        if key in used:
            print(
                f"error: {path}: its outputs {rel_prefix}_spk*.wav would "
                f"overwrite those of {used[key]}",
                file=sys.stderr,
            )
            failures += 1
            continue
        used[key] = path
        try:
            written = separate_to_files(model, path, prefix, args, factory)
        except AudioInputError as err:
            print(f"error: {err}", file=sys.stderr)
            failures += 1
            continue
        except KeyboardInterrupt:
            print(f"error: {path}: interrupted", file=sys.stderr)
            return 130
        except Exception as err:
            text = str(err).strip().splitlines()
            problem = text[0] if text else type(err).__name__
            print(f"error: {path}: {problem}", file=sys.stderr)
            failures += 1
            continue
        if not args.quiet:
            print(f"{path} -> {', '.join(written)}")
    return EXIT_SOME_FAILED if failures else EXIT_OK


def _load_model(args):
    """Loads the pretrained folder (offline) with the chosen device."""
    from speechbrain_mossformer.inference import MossFormerSeparation

    run_opts = {"device": args.device} if args.device else None
    return MossFormerSeparation.from_hparams(
        source=args.model, run_opts=run_opts
    )

if __name__ == "__main__":
    sys.exit(main())
