"""SpeechBrain CSV manifests for separation corpora, with layout checks.

This module holds what the WSJ0-2/3mix, WHAM!/WHAMR! and LibriMix data
preparation functions share:

* the manifest format read by
  ``DynamicItemDataset.from_csv(csv, replacements={"data_root": folder})``:
  ``ID, duration, mix_wav, mix_wav_format, mix_wav_opts, s1_wav, ...,
  [s3_wav, ...], [noise_wav, ...]`` where every path is written as
  ``$data_root/<path relative to the data folder>`` and ``duration`` is the
  real duration of the mixture in seconds;
* checks of the folder layout that stop with a clear message
  (:class:`DataPreparationError` and its subclasses) naming the path and the
  problem, instead of a traceback from deep inside a library: a missing or
  empty folder, a layout that does not match the options (the message lists
  the sub-folders that do exist), a mixture without a matching source file,
  a file with the wrong sample rate or length, and unreadable audio.

Authors
 * speechbrain-mossformer contributors 2026
"""

import csv
import logging
import os
import re

import soundfile as sf

logger = logging.getLogger(__name__)

__all__ = [
    "AUDIO_EXTENSIONS",
    "DataPreparationError",
    "DataFolderNotFoundError",
    "EmptyDataFolderError",
    "LayoutError",
    "FileMismatchError",
    "SampleRateError",
    "AudioFileError",
    "manifest_columns",
    "sample_rate_folder",
    "check_data_folder",
    "require_subfolder",
    "list_audio_files",
    "audio_info",
    "build_manifest_rows",
    "write_manifest",
    "validate_manifest",
    "create_manifests",
]

#: File name endings recognised as audio when listing a folder.
AUDIO_EXTENSIONS = (".wav", ".flac")

_MAX_LISTED = 8


class DataPreparationError(ValueError):
    """Base class of every error raised by the data preparation.

    It is a ``ValueError``, so callers that catch ``ValueError`` keep working.

    Example
    -------
    >>> issubclass(DataFolderNotFoundError, DataPreparationError)
    True
    """


class DataFolderNotFoundError(DataPreparationError, FileNotFoundError):
    """A data folder or file that the preparation needs does not exist.

    Example
    -------
    >>> issubclass(DataFolderNotFoundError, FileNotFoundError)
    True
    """


class EmptyDataFolderError(DataPreparationError):
    """A data folder exists but holds nothing usable.

    Example
    -------
    >>> issubclass(EmptyDataFolderError, ValueError)
    True
    """


class LayoutError(DataPreparationError):
    """The folder layout does not match the options (sample rate, mode,
    number of speakers, reverb); the message lists what does exist.

    Example
    -------
    >>> issubclass(LayoutError, DataPreparationError)
    True
    """


class FileMismatchError(DataPreparationError):
    """A mixture has no source file of the same name (or a different length).

    Example
    -------
    >>> issubclass(FileMismatchError, DataPreparationError)
    True
    """


class SampleRateError(DataPreparationError):
    """An audio file does not have the requested sample rate.

    Example
    -------
    >>> issubclass(SampleRateError, DataPreparationError)
    True
    """


class AudioFileError(DataPreparationError):
    """An audio file cannot be read (corrupt, truncated or not audio).

    Example
    -------
    >>> issubclass(AudioFileError, DataPreparationError)
    True
    """


def _short_list(names):
    """Formats a list of names for an error message, shortened if long."""
    names = sorted(names)
    if len(names) > _MAX_LISTED:
        shown = names[:_MAX_LISTED] + ["... (%d more)" % (len(names) - 8)]
    else:
        shown = names
    return "[" + ", ".join(repr(n) for n in shown) + "]"


def manifest_columns(num_spks=2, noise=False):
    """Returns the CSV header of a separation manifest.

    Arguments
    ---------
    num_spks : int
        Number of source columns (``s1_wav`` ... ``s<num_spks>_wav``).
    noise : bool
        Whether the ``noise_wav`` columns are included.

    Returns
    -------
    list of str
        The column names, ``ID`` and ``duration`` first.

    Example
    -------
    >>> manifest_columns(2)[:5]
    ['ID', 'duration', 'mix_wav', 'mix_wav_format', 'mix_wav_opts']
    >>> len(manifest_columns(3, noise=True))
    17
    """
    keys = ["mix"] + ["s%d" % (i + 1) for i in range(num_spks)]
    if noise:
        keys.append("noise")
    return _columns_for_keys(keys)


def _columns_for_keys(keys):
    """Header for the given path keys (mix, s1, ..., noise)."""
    columns = ["ID", "duration"]
    for key in keys:
        columns += [key + "_wav", key + "_wav_format", key + "_wav_opts"]
    return columns


def sample_rate_folder(sample_rate):
    """Returns the name of the sample-rate folder of the mixing scripts.

    Arguments
    ---------
    sample_rate : int
        Sample rate in Hz, a multiple of 1000 (8000 or 16000 in practice).

    Returns
    -------
    str
        ``"wav8k"`` for 8000, ``"wav16k"`` for 16000, and so on.

    Example
    -------
    >>> sample_rate_folder(8000), sample_rate_folder(16000)
    ('wav8k', 'wav16k')
    """
    if int(sample_rate) != sample_rate or sample_rate <= 0:
        raise DataPreparationError(
            "sample_rate must be a positive integer, got %r" % (sample_rate,)
        )
    if sample_rate % 1000:
        raise DataPreparationError(
            "sample_rate=%d has no 'wav<N>k' folder in the mixing scripts' "
            "layout; use 8000 or 16000" % sample_rate
        )
    return "wav%dk" % (sample_rate // 1000)


def _check_version(version):
    """Validates the min/max mode option."""
    if version not in ("min", "max"):
        raise DataPreparationError(
            "version must be 'min' or 'max', got %r" % (version,)
        )


def check_data_folder(path, what="data folder"):
    """Checks that a folder exists and is not empty.

    Arguments
    ---------
    path : str
        The folder.
    what : str
        How the folder is called in the error message.

    Returns
    -------
    str
        ``path`` itself.

    Raises
    ------
    DataFolderNotFoundError
        If the folder does not exist (or is a file).
    EmptyDataFolderError
        If the folder is empty.

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> try:
    ...     check_data_folder(str(tmp))
    ... except EmptyDataFolderError as err:
    ...     print("empty" in str(err))
    True
    """
    path = str(path)
    if not os.path.exists(path):
        parent = os.path.dirname(os.path.abspath(path))
        hint = ""
        if os.path.isdir(parent):
            hint = " (its parent %s holds %s)" % (
                parent,
                _short_list(_visible(os.listdir(parent))),
            )
        raise DataFolderNotFoundError(
            "The %s %s does not exist%s." % (what, path, hint)
        )
    if not os.path.isdir(path):
        raise DataFolderNotFoundError(
            "The %s %s is a file, not a folder." % (what, path)
        )
    if not _visible(os.listdir(path)):
        raise EmptyDataFolderError("The %s %s is empty." % (what, path))
    return path


def _visible(names):
    """Drops hidden entries (.DS_Store, .ipynb_checkpoints, ...)."""
    return [n for n in names if not n.startswith(".")]


def _subfolders(path):
    """Names of the visible sub-folders of ``path``."""
    return sorted(
        n
        for n in _visible(os.listdir(path))
        if os.path.isdir(os.path.join(path, n))
    )


def require_subfolder(parent, name, hint=""):
    """Returns ``parent/name`` or raises a :class:`LayoutError` saying which
    sub-folders ``parent`` does have.

    Arguments
    ---------
    parent : str
        An existing folder.
    name : str
        The sub-folder the options require.
    hint : str
        Extra sentence appended to the error message.

    Returns
    -------
    str
        The path of the sub-folder.

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> _ = tmp.mkdir("wav8k")
    >>> try:
    ...     require_subfolder(str(tmp), "wav16k")
    ... except LayoutError as err:
    ...     print("'wav8k'" in str(err))
    True
    """
    path = os.path.join(parent, name)
    if not os.path.isdir(path):
        existing = _subfolders(parent)
        message = "Expected the folder %s, but %s has %s." % (
            path,
            parent,
            "the sub-folders " + _short_list(existing)
            if existing
            else "no sub-folders",
        )
        if hint:
            message += " " + hint
        raise LayoutError(message)
    return path


def list_audio_files(folder):
    """Lists the audio files (``.wav``, ``.flac``) directly in ``folder``.

    Arguments
    ---------
    folder : str
        The folder to list.

    Returns
    -------
    list of str
        Sorted file names (not paths).

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> for name in ["b.wav", "a.flac", "notes.txt", ".hidden.wav"]:
    ...     _ = tmp.join(name).write("")
    >>> list_audio_files(str(tmp))
    ['a.flac', 'b.wav']
    """
    return sorted(
        n
        for n in _visible(os.listdir(folder))
        if n.lower().endswith(AUDIO_EXTENSIONS)
        and os.path.isfile(os.path.join(folder, n))
    )


def audio_info(path, sample_rate=None):
    """Reads the header of an audio file with soundfile, with clear errors.

    Arguments
    ---------
    path : str
        The audio file.
    sample_rate : int or None
        If given, the file must have this sample rate.

    Returns
    -------
    soundfile._SoundFileInfo
        With ``samplerate``, ``frames``, ``channels`` and ``duration``.

    Raises
    ------
    AudioFileError
        If the file cannot be read as audio.
    SampleRateError
        If ``sample_rate`` is given and differs from the file's.

    Example
    -------
    >>> import numpy as np, soundfile as sf, os
    >>> tmp = str(getfixture("tmpdir"))
    >>> wav = os.path.join(tmp, "x.wav")
    >>> sf.write(wav, np.zeros(800), 8000)
    >>> audio_info(wav, 8000).duration
    0.1
    >>> try:
    ...     audio_info(wav, 16000)
    ... except SampleRateError as err:
    ...     print("8000" in str(err), "16000" in str(err))
    True True
    """
    if not os.path.isfile(path):
        raise DataFolderNotFoundError(
            "The audio file %s does not exist." % path
        )
    try:
        info = sf.info(path)
    except Exception as err:  # soundfile raises several types
        raise AudioFileError(
            "Cannot read the audio file %s (corrupt or not audio): %s"
            % (path, str(err).strip() or type(err).__name__)
        ) from None
    if info.frames <= 0:
        raise AudioFileError("The audio file %s holds no samples." % path)
    if sample_rate is not None and info.samplerate != sample_rate:
        raise SampleRateError(
            "The audio file %s has a sample rate of %d Hz, but %d Hz was "
            "requested (check the sample_rate option and the wav<N>k "
            "folder)." % (path, info.samplerate, sample_rate)
        )
    return info


def _relative(path, data_root):
    """``$data_root/...`` form of a path inside ``data_root``."""
    rel = os.path.relpath(path, data_root).replace(os.sep, "/")
    return "$data_root/" + rel


def build_manifest_rows(data_root, split_dir, folders, sample_rate):
    """Builds the manifest rows of one split, checking every file.

    Arguments
    ---------
    data_root : str
        The folder that ``$data_root`` stands for.
    split_dir : str
        The split folder (e.g. ``<data_root>/wav8k/min/tr``).
    folders : dict
        Maps a column key (``"mix"``, ``"s1"``, ..., ``"noise"``) to its
        sub-folder of ``split_dir``; the ``"mix"`` entry comes first and
        every other folder must hold a file of the same name for each
        mixture, with the same sample rate and number of samples.
    sample_rate : int
        Required sample rate of every file.

    Returns
    -------
    list of dict
        One row per mixture, keyed by the manifest columns.

    Example
    -------
    >>> import numpy as np, soundfile as sf, os
    >>> root = str(getfixture("tmpdir"))
    >>> for sub in ["mix", "s1", "s2"]:
    ...     os.makedirs(os.path.join(root, "tt", sub))
    ...     sf.write(os.path.join(root, "tt", sub, "a_b.wav"),
    ...              np.zeros(400), 8000)
    >>> rows = build_manifest_rows(root, os.path.join(root, "tt"),
    ...     {"mix": "mix", "s1": "s1", "s2": "s2"}, 8000)
    >>> rows[0]["ID"], rows[0]["duration"], rows[0]["s2_wav"]
    ('a_b', '0.05', '$data_root/tt/s2/a_b.wav')
    """
    keys = list(folders)
    if not keys or keys[0] != "mix":
        raise ValueError("folders must start with the 'mix' entry")
    paths = {}
    for key in keys:
        paths[key] = require_subfolder(split_dir, folders[key])
    mix_dir = paths["mix"]
    mix_files = list_audio_files(mix_dir)
    if not mix_files:
        raise EmptyDataFolderError(
            "The mixture folder %s holds no .wav/.flac files." % mix_dir
        )
    seen = {}
    for name in mix_files:
        stem = os.path.splitext(name)[0]
        if stem in seen:
            raise FileMismatchError(
                "The mixture folder %s holds both %s and %s: two files with "
                "the same name (ID %r) but different extensions; keep one."
                % (mix_dir, seen[stem], name, stem)
            )
        seen[stem] = name
    listed = {key: set(list_audio_files(paths[key])) for key in keys[1:]}
    for key in keys[1:]:
        missing = [f for f in mix_files if f not in listed[key]]
        if missing:
            raise FileMismatchError(
                "The mixture %s has no matching file in %s (%d of %d "
                "mixtures lack one: %s). Mixture and source folders must "
                "hold files of the same names."
                % (
                    os.path.join(mix_dir, missing[0]),
                    paths[key],
                    len(missing),
                    len(mix_files),
                    _short_list(missing),
                )
            )
        extra = listed[key] - set(mix_files)
        if extra:
            logger.warning(
                "%d files in %s have no mixture in %s and are ignored: %s",
                len(extra),
                paths[key],
                mix_dir,
                _short_list(extra),
            )
    rows = []
    for name in mix_files:
        mix_path = os.path.join(mix_dir, name)
        mix_info = _mono(audio_info(mix_path, sample_rate), mix_path)
        row = {
            "ID": os.path.splitext(name)[0],
            "duration": repr(mix_info.frames / mix_info.samplerate),
        }
        for key in keys:
            path = os.path.join(paths[key], name)
            if key != "mix":
                _source_of(path, sample_rate, mix_path, mix_info.frames)
            row[key + "_wav"] = _relative(path, data_root)
            row[key + "_wav_format"] = os.path.splitext(name)[1][1:].lower()
            row[key + "_wav_opts"] = ""
        rows.append(row)
    return rows


def _source_of(path, sample_rate, mix_path, mix_frames, where=""):
    """Checks a source file like its mixture: readable, mono, at
    ``sample_rate`` and ``mix_frames`` long (``where``: e.g. the manifest
    row, added to the message)."""
    info = _mono(audio_info(path, sample_rate), path)
    if info.frames != mix_frames:
        raise FileMismatchError(
            "The file %s has %d samples but its mixture %s has %d; sources "
            "and mixtures must have the same length%s."
            % (path, info.frames, mix_path, mix_frames, where)
        )
    return info


def _mono(info, path):
    """Returns ``info`` if the file is mono, else raises AudioFileError
    (the recipes read every signal as ``[T]``: a multi-channel file would
    only fail, deep in the model, once training reaches it)."""
    if info.channels != 1:
        binaural = re.search(r"_(anechoic|reverb)\b", str(path))
        raise AudioFileError(
            "The audio file %s has %d channels; the mixtures, sources and "
            "noise of a separation corpus must be mono (1 channel)%s."
            % (path, info.channels,
               " (a WHAMR! made with MONO = False in its scripts, i.e. "
               "binaural? generate it again with MONO = True)"
               if binaural else "")
        )
    return info


def write_manifest(rows, csv_path, columns):
    """Writes manifest rows to a CSV file (atomically: a temporary file is
    renamed, so that a crash never leaves a half-written manifest).

    Arguments
    ---------
    rows : list of dict
        The rows, keyed by the column names.
    csv_path : str
        The CSV file to write; its folder is created if needed.
    columns : list of str
        The header.

    Example
    -------
    >>> import os
    >>> path = os.path.join(str(getfixture("tmpdir")), "x.csv")
    >>> write_manifest([{"ID": "a", "duration": "1.0"}], path,
    ...                ["ID", "duration"])
    >>> open(path).read().split()
    ['ID,duration', 'a,1.0']
    """
    folder = os.path.dirname(os.path.abspath(csv_path))
    os.makedirs(folder, exist_ok=True)
    tmp_path = csv_path + ".tmp%d" % os.getpid()
    with open(tmp_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    os.replace(tmp_path, csv_path)


def validate_manifest(
    csv_path,
    columns,
    fragments=None,
    data_root=None,
    remedy="Delete it or run with skip_prep=False.",
):
    """Checks an existing manifest against the requested configuration.

    Arguments
    ---------
    csv_path : str
        The CSV file.
    columns : list of str
        Columns it must have (e.g. ``s3_wav`` for three speakers).
    fragments : dict or None
        ``{column: fragment}``: a string every path of that column must
        contain (e.g. ``mix_wav`` in ``"/wav8k/min/tr/mix/"``, ``s1_wav`` in
        ``/s1_anechoic/``), to detect a CSV made with other options or of
        other sources.
    data_root : str or None
        If given, the first row's paths must exist once ``$data_root`` is
        replaced by it.
    remedy : str
        What the messages advise (a prepared manifest: make it again).

    A manifest with more source columns (``s<k>_wav``) than ``columns`` is
    refused too: it was made for more speakers.

    Returns
    -------
    int
        The number of rows.

    Example
    -------
    >>> import os
    >>> path = os.path.join(str(getfixture("tmpdir")), "x.csv")
    >>> write_manifest([{"ID": "a", "mix_wav": "$data_root/tr/mix/a.wav"}],
    ...                path, ["ID", "mix_wav"])
    >>> validate_manifest(path, ["ID", "mix_wav"], {"mix_wav": "/tr/mix/"})
    1
    """
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataPreparationError(
            "Cannot read the manifest %s: %s" % (csv_path, err)
        ) from None
    absent = [c for c in columns if c not in header]
    if absent:
        raise DataPreparationError(
            "The existing manifest %s lacks the columns %s needed by the "
            "current options (it has %s). %s"
            % (csv_path, absent, header, remedy)
        )
    extra = [
        c
        for c in header
        if re.fullmatch(r"s\d+_wav", c) and c not in columns
    ]
    if extra:
        raise DataPreparationError(
            "The existing manifest %s has the source columns %s that the "
            "current options do not use: it was made for more speakers "
            "(check num_spks). %s" % (csv_path, extra, remedy)
        )
    if not rows:
        raise DataPreparationError(
            "The existing manifest %s has no rows. %s" % (csv_path, remedy)
        )
    for col, fragment in (fragments or {}).items():
        for row in rows:
            if fragment not in (row.get(col) or ""):
                raise DataPreparationError(
                    "The existing manifest %s was made with other options: "
                    "its %s %s is not in a '%s' folder. %s"
                    % (
                        csv_path,
                        "mixture" if col == "mix_wav" else col,
                        row.get(col),
                        fragment,
                        remedy,
                    )
                )
    if data_root is not None:
        for col in header:
            value = rows[0].get(col) or ""
            if col.endswith("_wav") and value.startswith("$data_root"):
                path = value.replace("$data_root", str(data_root), 1)
                if not os.path.isfile(path):
                    raise DataPreparationError(
                        "The manifest %s refers to %s (column %s), which "
                        "does not exist under the data folder %s."
                        % (csv_path, path, col, data_root)
                    )
    return len(rows)


def check_manifest_audio(csv_path, columns, sample_rate, data_root=None):
    """Checks every file a manifest names, as preparation checks a
    corpus: readable, mono, at ``sample_rate``, and each source as long as
    its mixture (a manifest of one's own is otherwise read as it is: a
    16 kHz file trained on as 8 kHz audio, twice as long and an octave
    low).

    Arguments
    ---------
    csv_path : str
        The manifest.
    columns : list of str
        Its audio columns, the mixture's (``mix_wav``) first.
    sample_rate : int
        The rate every file must have.
    data_root : str or None
        What ``$data_root`` in its paths stands for.

    Raises
    ------
    DataPreparationError
        Naming the file and the problem (``SampleRateError``,
        ``AudioFileError``, ``FileMismatchError``, ...).

    Example
    -------
    >>> import numpy as np, soundfile as sf
    >>> tmp = str(getfixture("tmpdir"))
    >>> for name, rate in (("m.wav", 8000), ("a.wav", 8000),
    ...                    ("b.wav", 16000)):
    ...     sf.write(os.path.join(tmp, name), np.zeros(800), rate)
    >>> path = os.path.join(tmp, "own.csv")
    >>> write_manifest([{"ID": "x", "mix_wav": "$data_root/m.wav",
    ...                  "s1_wav": "$data_root/a.wav",
    ...                  "s2_wav": "$data_root/b.wav"}],
    ...                path, ["ID", "mix_wav", "s1_wav", "s2_wav"])
    >>> try:
    ...     check_manifest_audio(path, ["mix_wav", "s1_wav", "s2_wav"],
    ...                          8000, tmp)
    ... except SampleRateError as err:
    ...     print("b.wav has a sample rate of 16000 Hz" in str(err))
    True
    """
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        paths = [row.get(col) or "" for col in columns]
        if data_root is not None:
            paths = [p.replace("$data_root", str(data_root), 1) for p in paths]
        mix_path = paths[0]
        frames = _mono(audio_info(mix_path, sample_rate), mix_path).frames
        for path in paths[1:]:
            _source_of(path, sample_rate, mix_path, frames,
                       " (manifest %s, row %s)" % (csv_path, row.get("ID")))


def create_manifests(
    data_root,
    split_root,
    splits,
    folders,
    savepath,
    sample_rate,
    skip_prep=False,
):
    """Writes (or, with ``skip_prep``, validates) one manifest per split.

    Arguments
    ---------
    data_root : str
        The folder ``$data_root`` stands for.
    split_root : str
        Folder holding the split folders (e.g. ``<data_root>/wav8k/min``).
    splits : dict
        Maps a key (``"train"``, ``"valid"``, ``"test"``) to a pair
        ``(split folder name, csv file name)``.
    folders : dict
        Column key -> sub-folder name, ``"mix"`` first (see
        :func:`build_manifest_rows`).
    savepath : str
        Folder where the CSV files are written.
    sample_rate : int
        Required sample rate of every file.
    skip_prep : bool
        If True, existing CSV files are only validated (columns, options,
        first row's files) and the data folder is not scanned; CSV files
        that do not exist are reported with a warning and not created.

    Returns
    -------
    dict
        ``{key: csv path}`` for every split.

    Example
    -------
    >>> import numpy as np, soundfile as sf, os
    >>> root = str(getfixture("tmpdir"))
    >>> for sub in ["mix", "s1", "s2"]:
    ...     os.makedirs(os.path.join(root, "d", "tt", sub))
    ...     sf.write(os.path.join(root, "d", "tt", sub, "a_b.wav"),
    ...              np.zeros(400), 8000)
    >>> out = create_manifests(os.path.join(root, "d"),
    ...     os.path.join(root, "d"), {"test": ("tt", "x_tt.csv")},
    ...     {"mix": "mix", "s1": "s1", "s2": "s2"},
    ...     os.path.join(root, "save"), 8000)
    >>> os.path.basename(out["test"])
    'x_tt.csv'
    """
    columns = _columns_for_keys(list(folders))
    csv_paths = {
        key: os.path.join(savepath, csv_name)
        for key, (_, csv_name) in splits.items()
    }
    if skip_prep:
        for key, (split, _) in splits.items():
            path = csv_paths[key]
            if os.path.isfile(path):
                # every path column in its own folder of this split
                fragments = {
                    k + "_wav": _relative(
                        os.path.join(split_root, split, sub), data_root
                    )
                    + "/"
                    for k, sub in folders.items()
                }
                validate_manifest(path, columns, fragments, data_root)
            else:
                logger.warning(
                    "skip_prep=True but the manifest %s does not exist; "
                    "it is not created.",
                    path,
                )
        logger.info("Skipping data preparation (skip_prep=True).")
        return csv_paths
    check_data_folder(data_root)
    all_rows = {}
    for key, (split, _) in splits.items():
        split_dir = require_subfolder(split_root, split)
        all_rows[key] = build_manifest_rows(
            data_root, split_dir, folders, sample_rate
        )
    for key, rows in all_rows.items():
        write_manifest(rows, csv_paths[key], columns)
        logger.info("Wrote %s (%d rows)", csv_paths[key], len(rows))
    return csv_paths
