"""``mossformer-separate``: separate audio files with a MossFormer model.

Usage::

    mossformer-separate --model PRETRAINED_FOLDER [options] INPUT [INPUT ...]

Each INPUT is an audio file or a folder (every audio file inside it;
``--recursive`` also looks in sub-folders). For ``<name>.<ext>`` the tracks
``<name>_spk1.wav``, ``<name>_spk2.wav``, ... are written to ``--out-dir``
(``<name>.<ext>_spk1.wav``, ... when inputs of the run differ only in their
extension, e.g. ``a.wav`` and ``a.flac``)
as 16-bit PCM at the input file's rate (or ``--output-sample-rate``), with
exactly the input's duration. Long files are separated in overlapping
chunks with a consistent speaker order (``--chunk-seconds``,
``--overlap-seconds``) and never held in memory whole: tracks are streamed
to temporary float files, then converted to 16-bit. A track whose peak
exceeds full scale is scaled down to fit instead of being clipped (a note
says so); ``--normalize peak`` scales every track to full scale.

Tracks never overwrite an input of the same run, a file that
``mossformer-separate`` did not write, nor (without ``--overwrite``) a track
that an earlier run made from another recording: that input fails with an
error naming the file; choose another ``--out-dir``. Each track records the
input it was made from in its header (its file name and a digest of its
path, not the folder itself), so a rerun on the same input rewrites
its tracks (and removes those of higher speaker numbers that a model with
more speakers left). A track of another input of the run (named or found
in a folder, left by an earlier run) is skipped with a note; given without
that input, it is separated like any recording.

Exit codes: 0 every file was separated; 1 some files failed (the others
were still written; each failure is one ``error: <file>: <problem>`` line on
stderr); 2 usage error or the model could not be loaded (before any file is
separated); 130 interrupted (Ctrl-C), 143 terminated (SIGTERM): the tracks
of the file being separated are removed.

On an AMD CPU with AVX-512 the tool starts with ``OMP_WAIT_POLICY=PASSIVE``
unless the environment sets it, so that the model's matrix products run
in numpy's OpenBLAS (``speechbrain_mossformer.cpu_env``, ``cpu_blas``).

Authors
 * speechbrain-mossformer contributors 2026
"""

import argparse
import contextlib
import logging
import math
import os
import re
import signal
import sys

from speechbrain_mossformer.cpu_env import apply_fast_cpu_environment

# before numpy and torch load their thread pools (see cpu_env)
apply_fast_cpu_environment()

import numpy as np  # noqa: E402
import soundfile as sf

from speechbrain_mossformer.errors import (
    Terminated,
    first_line,
    raise_terminated,
)
from speechbrain_mossformer.inference import (
    AUDIO_EXTENSIONS,
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_OVERLAP_SECONDS,
    AudioInputError,
    ModelLoadError,
    _check_device,
    _sf_name,
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
    (8.0, None, 'none')
    >>> _check_options(args); args.overlap_seconds  # default: 2 s
    2.0
    >>> args = build_parser().parse_args(["--model", "m", "a.wav",
    ...                                   "--chunk-seconds", "3"])
    >>> _check_options(args); args.overlap_seconds  # a quarter chunk
    0.75
    >>> args.overwrite
    False
    """
    parser = argparse.ArgumentParser(
        prog="mossformer-separate",
        description="Separate the speakers of audio files with a MossFormer "
        "pretrained folder. Writes <name>_spk1.wav, <name>_spk2.wav, ... "
        "(16-bit PCM); inputs of the run whose names differ only in the "
        "extension keep it: a.wav and a.flac give a.wav_spk1.wav and "
        "a.flac_spk1.wav.",
        epilog="Exit codes: 0 all files separated, 1 some files failed "
        "(others written), 2 usage or model error, 130 interrupted, "
        "143 terminated.",
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
        help="where the tracks are written (default: current folder); "
        "tracks never overwrite an input of the run, nor files that "
        "mossformer-separate did not write",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace tracks that an earlier run made from another "
        "recording (default: that input fails with an error); tracks of "
        "the same input are always rewritten",
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
        "--overlap-seconds", type=float, default=None,
        help="overlap between chunks, used to keep the speaker order and "
        f"cross-faded (default {DEFAULT_OVERLAP_SECONDS:g}, or a quarter "
        "of --chunk-seconds when that is shorter than "
        f"{4 * DEFAULT_OVERLAP_SECONDS:g}; at most half a chunk)",
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
        help="no progress bar and no notes: only errors, and warnings "
        "about the result (a chunk border whose speaker order could not "
        "be told)",
    )
    return parser


def _check_options(args):
    """Raises ``UsageError`` for inconsistent numeric options or paths;
    sets the default ``overlap_seconds`` (``DEFAULT_OVERLAP_SECONDS``, at
    most a quarter of the chunk) when it is not given."""
    if args.overlap_seconds is None:
        chunk = args.chunk_seconds
        args.overlap_seconds = (
            min(DEFAULT_OVERLAP_SECONDS, chunk / 4)
            if math.isfinite(chunk) and chunk > 0
            else DEFAULT_OVERLAP_SECONDS
        )
    for name in ("chunk_seconds", "overlap_seconds"):
        if not math.isfinite(getattr(args, name)):
            option = "--" + name.replace("_", "-")
            raise UsageError(
                f"{option} must be a finite number, got {getattr(args, name)}"
            )
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
    _check_out_dir(args.out_dir)


def _check_out_dir(out_dir):
    """Raises ``UsageError`` if ``out_dir`` cannot be made or written in.

    Checked before any input is read, so that one usage error replaces an
    error per input file.
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UsageError(f"--out-dir {out_dir}: exists and is not a folder")
    # the folder itself, or the nearest part of its path that exists
    existing = os.path.abspath(out_dir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UsageError(
            f"--out-dir {out_dir}: cannot be made, {existing} is not a "
            f"folder"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f"--out-dir {out_dir}: no permission to write in {existing}"
        )


def _check_chunking(model, args):
    """Raises ``UsageError`` if the model rejects the chunk/overlap sizes
    (e.g. an overlap shorter than one encoder frame)."""
    try:
        model._chunk_sizes(args.chunk_seconds or None, args.overlap_seconds)
    except ValueError as err:
        raise UsageError(
            f"--chunk-seconds {args.chunk_seconds:g} --overlap-seconds "
            f"{args.overlap_seconds:g}: {err}"
        ) from None


def _is_audio_name(name):
    return name.lower().endswith(AUDIO_EXTENSIONS)


#: Written into each track's header (WAV LIST/INFO "software"): how a
#: later run tells the tracks it may rewrite from anyone's recordings.
TRACK_SOFTWARE = "mossformer-separate"

#: Each track's header comment (WAV LIST/INFO "comment") is this followed
#: by the file name of the input it was made from and a digest of its
#: resolved path (``_source_record``; the path itself would tell whoever
#: gets the track where the user keeps their files), so that a later run
#: tells a rerun of the same input from another recording of the same name.
_SOURCE_TAG = "source: "
#: libsndfile reads back header strings of up to about 2 kB: a longer
#: source is not recorded (the track's source is then unknown).
_SOURCE_MAX = 2000

#: ``<stem>_spk<N>.wav``, N = 1, 2, ...: the name of a track we write.
_TRACK_NAME = re.compile(r"^(.+)_spk([1-9][0-9]*)\.wav$")
#: Temporary files of a track being written (``separate_to_files``), and
#: those of earlier versions (``<track>.wav.part.caf``).
_TEMP_NAME = re.compile(
    r"^\.mossformer-[0-9]+-spk[0-9]+\.part\.(caf|wav)$"
    r"|_spk[0-9]+\.wav\.part\.(caf|wav)$"
)


def _encode_source(path):
    """``path`` as UTF-8 text for a header: ``%`` and the bytes of a name
    that are not UTF-8 (kept by Python as surrogates) as ``%XX``, the
    rest as it is; ``_decode_source`` gives ``path`` back.

    Example
    -------
    >>> _encode_source("/rec/100% caf\\udce9.wav")
    '/rec/100%25 caf%E9.wav'
    >>> _decode_source(_) == "/rec/100% caf\\udce9.wav"
    True
    """
    out = []
    for c in path:
        if c == "%":
            out.append("%25")
        elif "\udc80" <= c <= "\udcff":
            out.append(f"%{ord(c) - 0xDC00:02X}")
        elif "\ud800" <= c <= "\udfff":  # not a file name byte: lost
            out.append("\ufffd")
        else:
            out.append(c)
    return "".join(out)


def _decode_source(text):
    """The path that ``_encode_source`` wrote as ``text``."""
    from urllib.parse import unquote

    return unquote(text, errors="surrogateescape")


def _source_digest(path):
    """A digest of the resolved path of ``path``: the same for every path
    of one file (relative, through a symbolic link), other for another.

    Example
    -------
    >>> _source_digest("/rec/day1/a.wav") == _source_digest(
    ...     "/rec/day1/../day1/a.wav")
    True
    >>> _source_digest("/rec/day1/a.wav")[:7]
    'sha256:'
    """
    import hashlib

    resolved = os.path.normcase(os.path.realpath(path))
    return "sha256:" + hashlib.sha256(os.fsencode(resolved)).hexdigest()[:32]


def _source_record(path):
    """What a track's header records of its input ``path``: its file name
    and ``_source_digest`` (not the folder).

    Example
    -------
    >>> _source_record("/rec/day1/meeting 1.wav")  # doctest: +ELLIPSIS
    'meeting 1.wav sha256:...'
    """
    name = _encode_source(os.path.basename(path))
    return f"{name} {_source_digest(path)}"


def track_made_from(record, path):
    """Whether a track whose header records ``record`` (``track_source``)
    was made from the input ``path``.

    Example
    -------
    >>> record = _source_record("/rec/day1/a.wav")
    >>> track_made_from(record, "/rec/day1/a.wav")
    True
    >>> track_made_from(record, "/rec/day2/a.wav")
    False
    """
    return bool(record) and record.rsplit(" ", 1)[-1] == _source_digest(path)


def _source_name(record):
    """The input's file name in ``record``, for messages."""
    return _decode_source(record.rsplit(" ", 1)[0])


def track_source(path):
    """What the track ``path`` records of the input it was made from (its
    file name and a digest of its path, see ``track_made_from``); ``""``
    if ``path`` is a track of ``mossformer-separate`` (``is_our_track``)
    that does not say (written by an earlier version, or a file name
    over 2 kB); ``None`` if it is not a track of ours.

    Example
    -------
    >>> path = str(getfixture("tmpdir") / "a_spk1.wav")
    >>> sf.write(path, np.zeros(80), 8000)
    >>> track_source(path) is None
    True
    >>> with sf.SoundFile(path, "w", samplerate=8000, channels=1) as f:
    ...     f.software = TRACK_SOFTWARE
    ...     f.write(np.zeros(80))
    >>> track_source(path)
    ''
    >>> _float_to_pcm16(path, path, 1.0, source="/rec/day1/a.wav")
    >>> track_source(path)  # doctest: +ELLIPSIS
    'a.wav sha256:...'
    >>> track_made_from(track_source(path), "/rec/day1/a.wav")
    True
    """
    try:
        with sf.SoundFile(_sf_name(path)) as f:
            if not (f.software or "").startswith(TRACK_SOFTWARE):
                return None
            comment = f.comment or ""
    except Exception:  # unreadable: not a track of ours
        return None
    record = comment[len(_SOURCE_TAG):]
    if comment.startswith(_SOURCE_TAG) and " sha256:" in record:
        return record
    return ""


def is_our_track(path):
    """Whether ``path`` is a track that ``mossformer-separate`` wrote (its
    header says so: ``TRACK_SOFTWARE``), so that a later run may skip it
    as an input and rewrite it. Any other file, however it is named, is
    somebody's recording.

    Example
    -------
    >>> path = str(getfixture("tmpdir") / "a_spk1.wav")
    >>> sf.write(path, np.zeros(80), 8000)
    >>> is_our_track(path)
    False
    >>> with sf.SoundFile(path, "w", samplerate=8000, channels=1) as f:
    ...     f.software = TRACK_SOFTWARE
    ...     f.write(np.zeros(80))
    >>> is_our_track(path)
    True
    """
    return track_source(path) is not None


def _file_key(path):
    """What tells two paths of one file apart from other files: device and
    inode, or the resolved path of a file that cannot be examined."""
    try:
        st = os.stat(path)
        return (st.st_dev, st.st_ino)
    except (OSError, ValueError):
        return os.path.normcase(os.path.realpath(path))


def unsearched_subfolders(inputs, out_dir="."):
    """The input folders with sub-folders that only ``--recursive``
    searches: ``(folder, number of sub-folders)``, ``out_dir`` not counted.

    Example
    -------
    >>> root = getfixture("tmp_path")
    >>> for sub in ("day1", "day2", "separated"):
    ...     (root / sub).mkdir()
    >>> unsearched_subfolders([str(root), "a.wav"], str(root / "separated"))
    ... # doctest: +ELLIPSIS
    [('...', 2)]
    """
    out = os.path.realpath(out_dir)
    found = []
    for item in inputs:
        if not os.path.isdir(item):
            continue
        subs = [
            entry for entry in os.scandir(item)
            if entry.is_dir() and os.path.realpath(entry.path) != out
        ]
        if subs:
            found.append((item, len(subs)))
    return found


def collect_inputs(inputs, recursive=False, out_dir=".", skipped=None,
                   num_spks=None):
    """Expands files and folders into ``(path, relative_output_prefix)``.

    Files in folders keep their sub-folder below ``--out-dir`` (so that
    equal names in different sub-folders do not collide). The prefix is
    the input's name without its extension, or with it (``a.wav``,
    ``a.flac``) for inputs whose prefixes would be the same and whose
    extensions differ, so that each gets its own tracks.

    A track that ``mossformer-separate`` wrote is skipped when it was made
    from another input of this run: the input its header records
    (``track_source``, anywhere), or for a track that records none (an
    earlier version), the input whose track it is exactly
    (``<out_dir>/<its prefix>_spk<N>.wav``, same real path). Given without
    that input, a track is separated like any recording. Our temporary
    files (``.mossformer-*.part.caf`` / ``.part.wav``) in folders are
    skipped too. Paths that do not exist are returned as they are (they
    fail later, with the other per-file errors).

    Arguments
    ---------
    inputs : list of str
        Command line inputs.
    recursive : bool
        Look into sub-folders.
    out_dir : str
        Output folder.
    skipped : list, optional
        Gets ``(skipped file, the input it was made from, fate)``, fate:
        ``"overwritten"`` (it is one of the tracks that input writes now),
        ``"removed"`` (a track of a higher speaker number, at the same
        place), ``"repeated"`` (the same file given again: the input is
        where it was given first) or ``None``.
    num_spks : int, optional
        Tracks per input (the model's speakers); ``None``: unknown (the
        fates are then ``"overwritten"`` or ``None``).

    Returns
    -------
    list of (str, str)
        Input path and output prefix (relative, without ``_spkN.wav``).

    Example
    -------
    >>> collect_inputs(["x/a.wav"])
    [('x/a.wav', 'a')]
    >>> collect_inputs(["x/a.wav", "x/a.flac", "x/b.wav"])
    [('x/a.wav', 'a.wav'), ('x/a.flac', 'a.flac'), ('x/b.wav', 'b')]
    >>> collect_inputs(["x/a.wav", "x/../x/a.wav", "x/a.wav"])  # one file
    [('x/a.wav', 'a')]
    >>> folder = getfixture("tmpdir")
    >>> for name in ["a.wav", "a_spk1.wav", "b_spk1.wav"]:
    ...     with sf.SoundFile(str(folder / name), "w", 8000, 1) as f:
    ...         f.software = TRACK_SOFTWARE  # as if we wrote them all
    ...         f.write(np.zeros(80))
    >>> notes = []
    >>> [os.path.basename(p) for p, _ in collect_inputs(
    ...     [str(folder)], out_dir=str(folder), skipped=notes)]
    ['a.wav', 'b_spk1.wav']
    >>> [(os.path.basename(f), os.path.basename(i), fate)
    ...  for f, i, fate in notes]
    [('a_spk1.wav', 'a.wav', 'overwritten')]
    """
    items = []  # (path, its name below the input folder, with extension)
    for item in inputs:
        if not os.path.isdir(item):
            items.append((item, os.path.basename(item)))
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
            if _is_audio_name(path) and not _TEMP_NAME.search(
                os.path.basename(path)
            ):
                items.append((path, os.path.relpath(path, item)))
    # paths are compared with their folders resolved, through one dict
    # lookup each
    real_dirs = {}

    def where(path):
        folder, name = os.path.split(path)
        if folder not in real_dirs:
            real_dirs[folder] = os.path.realpath(folder or ".")
        return os.path.join(real_dirs[folder], name)

    # a path given twice (overlapping globs, a folder and a file in it) is
    # separated once, where it was first given; other names of one file
    # (links) are inputs of their own, with tracks of their own names
    first = {}  # resolved path -> the index of the item that first gave it
    given = [first.setdefault(where(p), i) for i, (p, _) in enumerate(items)]
    if skipped is not None:
        skipped += [
            (path, items[given[i]][0], "repeated")
            for i, (path, _) in enumerate(items) if given[i] != i
        ]
    items = [item for i, item in enumerate(items) if given[i] == i]

    def stem_key(rel):  # where an input's tracks go, without the extension
        return where(os.path.join(out_dir, os.path.splitext(rel)[0]))

    by_stem = {}
    for index, (_, rel) in enumerate(items):
        by_stem.setdefault(stem_key(rel), []).append(index)
    by_digest = {}

    def input_of(record):
        if not by_digest:  # first needed
            for index in reversed(range(len(items))):
                by_digest[_source_digest(items[index][0])] = index
        return by_digest.get(record.rsplit(" ", 1)[-1])

    # the input each of our tracks was made from (its index), if it is an
    # input of this run: the track is skipped, even if that input is
    # itself skipped (a track of a track is no recording either)
    writer = [None] * len(items)
    for index, (path, _) in enumerate(items):
        match = _TRACK_NAME.match(os.path.basename(path))
        source = track_source(path) if match else None
        if source:
            candidates = [input_of(source)]
        elif source == "":  # an earlier version's track: by its name
            key = where(os.path.join(os.path.dirname(path), match[1]))
            candidates = by_stem.get(key, [])
        else:
            continue
        writer[index] = next(
            (o for o in candidates if o is not None and o != index), None
        )
    kept = [i for i in range(len(items)) if writer[i] is None]
    # inputs whose tracks would have the same names keep their extension
    # when that tells them apart
    collisions = {}
    for index in kept:
        collisions.setdefault(stem_key(items[index][1]), []).append(index)
    prefixes = {}
    for members in collisions.values():
        extensions = {os.path.splitext(items[i][1])[1] for i in members}
        for i in members:
            rel = items[i][1]
            prefixes[i] = rel if len(extensions) > 1 else \
                os.path.splitext(rel)[0]
    if skipped is not None:
        for index, w in enumerate(writer):
            if w is None:
                continue
            path = items[index][0]
            match = _TRACK_NAME.match(os.path.basename(path))
            fate = None
            if writer[w] is None and where(
                os.path.join(os.path.dirname(path), match[1])
            ) == where(os.path.join(out_dir, prefixes[w])):
                if num_spks is None or int(match[2]) <= num_spks:
                    fate = "overwritten"
                elif track_source(path):  # of w, by how w was found
                    fate = "removed"
            skipped.append((path, items[w][0], fate))
    return [(items[i][0], prefixes[i]) for i in kept]


def separate_to_files(model, path, prefix, args, progress_factory=None):
    """Separates one file and writes its tracks; returns their paths.

    Tracks are streamed to temporary float files, then converted to 16-bit
    PCM with a per-track gain (peak normalisation, or clip protection), so
    memory does not depend on the file length. Each track's header marks
    it as ours and records ``path`` as its source (its file name and a
    digest of its path, ``track_source``). Nothing is left behind on
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
    source = os.path.abspath(path)
    finals = [f"{prefix}_spk{k + 1}.wav" for k in range(S)]
    temps = [_temp_name(f, "caf") for f in finals]
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
            _float_to_pcm16(temps[k], finals[k], gain, source)
            written.append(finals[k])
    except BaseException:
        for writer in writers:
            writer.close()
        # no half set of tracks: remove what this call wrote
        for f in temps + [_temp_name(f, "wav") for f in finals] + written:
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


def _name_max(path):
    """The longest file name (bytes) allowed in ``path``'s folder (its
    nearest existing folder; 255, the usual limit, when unknown)."""
    folder = os.path.dirname(os.path.abspath(path))
    while folder and not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        return int(os.pathconf(folder or os.sep, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def _temp_name(track, kind):
    """The temporary file (``kind``: ``"caf"`` or ``"wav"``) of ``track``
    (``<prefix>_spk<N>.wav``) while it is written: a short name in the
    same folder, so that a track whose name is near the file system's
    limit still fits, and one that no other run writing there uses.

    Example
    -------
    >>> _temp_name("out/a_spk2.wav", "caf") == (
    ...     f"out/.mossformer-{os.getpid()}-spk2.part.caf")
    True
    """
    folder, name = os.path.split(track)
    speaker = _TRACK_NAME.match(name)[2]
    return os.path.join(
        folder, f".mossformer-{os.getpid()}-spk{speaker}.part.{kind}"
    )


def _float_to_pcm16(src, dst, gain, source=None):
    """Copies a float file into 16-bit PCM WAV, scaled and clip-safe,
    marked as our track (``TRACK_SOFTWARE``) made from ``source`` (a path,
    recorded as ``_source_record``; ``None``: not recorded)."""
    tmp = _temp_name(dst, "wav")
    comment = None
    if source is not None:
        comment = _SOURCE_TAG + _source_record(source)
        if len(comment.encode("utf-8")) > _SOURCE_MAX:
            comment = None  # would not be read back: unknown source
    with sf.SoundFile(src) as fin:
        with sf.SoundFile(
            tmp, "w", samplerate=fin.samplerate, channels=1,
            format="WAV", subtype="PCM_16",
        ) as fout:
            fout.software = TRACK_SOFTWARE
            if comment is not None:
                fout.comment = comment
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

    SIGTERM (``kill``) is handled like Ctrl-C: the tracks being written are
    removed and the exit code is 143 (130 for Ctrl-C).

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 all separated, 1 some files failed, 2 usage or model error,
        130/143 interrupted/terminated.

    Example
    -------
    >>> main(["--model", "/no/such/folder", "a.wav"])
    2
    """
    try:
        previous = signal.signal(signal.SIGTERM, raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        with _warnings_as_lines():
            return _main(argv)
    except Terminated:  # (a KeyboardInterrupt: caught first)
        print("error: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _WarningLines(logging.Handler):
    """The package's warnings as ``warning: ...`` lines on stderr, written
    above a progress bar (``tqdm.write``), not into it."""

    def emit(self, record):
        try:
            from tqdm import tqdm

            tqdm.write(f"warning: {record.getMessage()}", file=sys.stderr)
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def _warnings_as_lines():
    """``_WarningLines`` for the package's loggers during the block."""
    package = logging.getLogger("speechbrain_mossformer")
    handler = _WarningLines(logging.WARNING)
    propagate = package.propagate
    package.addHandler(handler)
    package.propagate = False
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.propagate = propagate


def _main(argv):
    """``main`` without the signal handling."""
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
    # any audio at all? (what is skipped is decided once the model, and so
    # the number of tracks per input, is known)
    items = collect_inputs(args.inputs, args.recursive, args.out_dir)
    unsearched = ([] if args.recursive
                  else unsearched_subfolders(args.inputs, args.out_dir))
    if not items:
        hint = (
            f"; sub-folders of {', '.join(f for f, _ in unsearched)} were "
            "not searched (--recursive searches them)" if unsearched else ""
        )
        print(
            f"error: no audio files found in {', '.join(args.inputs)} "
            f"(extensions: {' '.join(AUDIO_EXTENSIONS)}){hint}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if not os.path.isdir(args.model):
        print(f"error: --model {args.model}: not a folder", file=sys.stderr)
        return EXIT_USAGE
    try:
        _check_device(args.device)  # named as --device, not as the model
    except ModelLoadError as err:
        print(f"error: --device: {err}", file=sys.stderr)
        return EXIT_USAGE
    try:
        model = _load_model(args)
    except Exception as err:  # any loading problem is a model error
        print(
            f"error: --model {args.model}: {first_line(err)}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        _check_chunking(model, args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    skipped = []
    items = collect_inputs(args.inputs, args.recursive, args.out_dir,
                           skipped, model.num_spks)
    if not args.quiet:
        for folder, count in unsearched:
            print(f"note: {folder}: {count} sub-folder"
                  f"{'s' if count != 1 else ''} not searched (--recursive "
                  "searches them)", file=sys.stderr)
        for path, writer, fate in skipped:
            if fate == "repeated":
                print(f"note: {path}: given again (as {writer}), separated "
                      f"once", file=sys.stderr)
                continue
            why = {
                "overwritten": "it will be overwritten",
                "removed": f"it will be removed, this model has "
                f"{model.num_spks} speakers",
                None: f"to separate it, give it without {writer}",
            }[fate]
            print(
                f"note: {path}: skipped, an earlier output of {writer} "
                f"({why})",
                file=sys.stderr,
            )
    announced = {_file_key(p) for p, _, fate in skipped if fate == "removed"}
    factory = _progress_factory(args)
    inputs = {os.path.realpath(path) for path, _ in items}
    failures = 0
    used = {}
    this_run = {}  # _file_key of each track written -> its input
    listings = {}
    for path, rel_prefix in items:
        prefix = os.path.join(args.out_dir, rel_prefix)
        key = os.path.normcase(os.path.abspath(prefix))
        if key in used:
            print(
                f"error: {path}: its outputs {rel_prefix}_spk*.wav would "
                f"overwrite those of {used[key]}; separate it in another "
                "run with another --out-dir",
                file=sys.stderr,
            )
            failures += 1
            continue
        tracks = [f"{prefix}_spk{k + 1}.wav" for k in range(model.num_spks)]
        clash = [t for t in tracks if os.path.realpath(t) in inputs]
        if clash:
            print(
                f"error: {path}: its output {clash[0]} would overwrite an "
                f"input of this run; use another --out-dir",
                file=sys.stderr,
            )
            failures += 1
            continue
        problem, replaced = _check_existing_tracks(
            path, rel_prefix, tracks, this_run, args.overwrite
        )
        if problem:
            print(f"error: {path}: {problem}", file=sys.stderr)
            failures += 1
            continue
        longest = max(
            tracks, key=lambda t: len(os.fsencode(os.path.basename(t)))
        )
        name_max = _name_max(longest)
        if len(os.fsencode(os.path.basename(longest))) > name_max:
            print(
                f"error: {path}: its output name {os.path.basename(longest)}"
                f" is longer than the file system allows "
                f"({name_max} bytes); rename the input",
                file=sys.stderr,
            )
            failures += 1
            continue
        try:
            written = separate_to_files(model, path, prefix, args, factory)
        except AudioInputError as err:
            print(f"error: {err}", file=sys.stderr)
            failures += 1
            continue
        except Terminated:  # (a KeyboardInterrupt: caught first)
            print(f"error: {path}: terminated", file=sys.stderr)
            return 143
        except KeyboardInterrupt:
            print(f"error: {path}: interrupted", file=sys.stderr)
            return 130
        except Exception as err:
            print(f"error: {path}: {first_line(err)}", file=sys.stderr)
            failures += 1
            continue
        # only written outputs are reserved: a failed file leaves nothing
        used[key] = path
        for track in written:
            this_run[_file_key(track)] = path
        if not args.quiet:
            for other in replaced:
                print(
                    f"note: {path}: its tracks replace those of another "
                    f"recording named {other} (--overwrite)",
                    file=sys.stderr,
                )
        _remove_stale_tracks(path, prefix, model.num_spks, args, inputs,
                             listings, announced)
        if not args.quiet:
            print(f"{path} -> {', '.join(written)}")
    return EXIT_SOME_FAILED if failures else EXIT_OK


def _check_existing_tracks(path, rel_prefix, tracks, this_run, overwrite):
    """Checks the files already where the tracks of ``path`` go.

    Arguments
    ---------
    path : str
        The input.
    rel_prefix : str
        Its output prefix, relative to ``--out-dir`` (for messages).
    tracks : list of str
        Its tracks.
    this_run : dict
        ``_file_key`` of each track written by this run -> its input.
    overwrite : bool
        ``--overwrite``: tracks made from another recording may be
        replaced.

    Returns
    -------
    problem : str or None
        Why ``path`` must not be separated (the text of its error line).
    replaced : list of str
        Other recordings whose tracks ``path``'s replace (``overwrite``).

    Example
    -------
    >>> out = getfixture("tmpdir")
    >>> track = str(out / "a_spk1.wav")
    >>> _check_existing_tracks("a.wav", "a", [track], {}, False)
    (None, [])
    >>> sf.write(track, np.zeros(80), 8000)  # somebody's recording
    >>> _check_existing_tracks("a.wav", "a", [track], {}, False)[0]
    ... # doctest: +ELLIPSIS
    'its output ...a_spk1.wav exists and is not a track of an earlier run...'
    >>> _float_to_pcm16(track, track, 1.0, source="/day1/a.wav")
    >>> _check_existing_tracks("/day1/a.wav", "a", [track], {}, False)
    (None, [])
    >>> _check_existing_tracks("/day2/a.wav", "a", [track], {}, False)[0]
    ... # doctest: +ELLIPSIS
    'its output ...a_spk1.wav is a track of another recording named a.wav...'
    >>> _check_existing_tracks("/day2/a.wav", "a", [track], {}, True)
    (None, ['a.wav'])
    """
    found = [(t, track_source(t)) for t in tracks if os.path.lexists(t)]
    for track, source in found:
        if source is None:
            return (
                f"its output {track} exists and is not a track of an "
                "earlier run (mossformer-separate marks its own); use "
                "another --out-dir, or remove it",
                [],
            )
    for track, source in found:
        other = this_run.get(_file_key(track))
        if other is not None:  # e.g. names that differ only in case
            return (
                f"its outputs {rel_prefix}_spk*.wav would overwrite those "
                f"of {other}",
                [],
            )
    replaced = []
    for track, source in found:
        if source and not track_made_from(source, path):
            if not overwrite:
                return (
                    f"its output {track} is a track of another recording "
                    f"named {_source_name(source)} (in another folder); use "
                    "another --out-dir, or --overwrite to replace it",
                    [],
                )
            if _source_name(source) not in replaced:
                replaced.append(_source_name(source))
    return None, replaced


def _stale_tracks(prefix, num_spks, listings):
    """The files ``<prefix>_spk<N>.wav`` with N above ``num_spks`` (left
    by a model with more speakers), by N. ``listings`` caches the track
    names of each folder, by prefix (one listing per folder and run).

    Example
    -------
    >>> out = getfixture("tmpdir")
    >>> for name in ["a_spk1.wav", "a_spk3.wav", "a_spk10.wav", "b_spk3.wav"]:
    ...     sf.write(str(out / name), np.zeros(80), 8000)
    >>> [os.path.basename(t) for t in _stale_tracks(str(out / "a"), 2, {})]
    ['a_spk3.wav', 'a_spk10.wav']
    """
    folder, name = os.path.split(prefix)
    if folder not in listings:
        by_prefix = {}
        try:
            names = os.listdir(folder or ".")
        except OSError:
            names = []
        for other in names:
            match = _TRACK_NAME.match(other)
            if match:
                by_prefix.setdefault(match[1], []).append(
                    (int(match[2]), other)
                )
        listings[folder] = by_prefix
    return [
        os.path.join(folder, track)
        for n, track in sorted(listings[folder].get(name, []))
        if n > num_spks
    ]


def _remove_stale_tracks(path, prefix, num_spks, args, inputs, listings,
                         announced):
    """After ``path`` was separated into ``<prefix>_spk1..num_spks.wav``:
    removes the higher-numbered tracks that an earlier run made from the
    same input (from another recording too, with ``--overwrite``), with a
    note (none for the files in ``announced``); notes those it leaves
    (tracks whose source is unknown or another recording). Files that
    ``mossformer-separate`` did not write, and inputs of the run, are left
    alone."""
    for track in _stale_tracks(prefix, num_spks, listings):
        if not os.path.lexists(track) or os.path.realpath(track) in inputs:
            continue
        source = track_source(track)
        if source is None:  # somebody's recording
            continue
        made_here = track_made_from(source, path)
        if source and (args.overwrite or made_here):
            source = (
                path if made_here
                else f"another recording named {_source_name(source)}"
            )
            noted = _file_key(track) in announced
            try:
                os.remove(track)
            except OSError as err:
                print(
                    f"warning: {track}: an earlier track of {source} could "
                    f"not be removed ({err.strerror or err})",
                    file=sys.stderr,
                )
                continue
            if not args.quiet and not noted:
                print(
                    f"note: {track}: removed, an earlier track of {source} "
                    f"(this model has {num_spks} speakers)",
                    file=sys.stderr,
                )
        elif not args.quiet:
            made_from = (
                f"another recording named {_source_name(source)}"
                if source else "an unknown recording"
            )
            print(
                f"note: {track}: left as it is, an earlier track of "
                f"{made_from} (this model has {num_spks} speakers)",
                file=sys.stderr,
            )


def _load_model(args):
    """Loads the pretrained folder (offline) with the chosen device."""
    from speechbrain_mossformer.inference import MossFormerSeparation

    run_opts = {"device": args.device} if args.device else None
    return MossFormerSeparation.from_hparams(
        source=args.model, run_opts=run_opts
    )

if __name__ == "__main__":
    sys.exit(main())
