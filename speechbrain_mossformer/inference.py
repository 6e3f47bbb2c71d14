"""Ready-to-use MossFormer separation: files of any length, rate and layout.

``MossFormerSeparation`` is SpeechBrain's ``SepformerSeparation`` (same
pretrained folder, same ``separate_batch`` numbers) with what users of
separation models keep asking for:

* **strict loading**: a checkpoint that does not match ``hyperparams.yaml``
  is an error naming the module and the key (SpeechBrain's parameter
  transfer only logs a warning and keeps random weights);
* **any input file**: always downmixed to mono, resampled to the model's
  rate, results given back at the file's rate (or a chosen one) with the
  exact input length; empty, too short, corrupt or non-finite input is an
  ``AudioInputError`` that names the file and the problem;
* **long recordings**: the file is read in blocks and separated in
  overlapping chunks; consecutive chunks are put in the same speaker order
  by comparing them on their overlap, then cross-faded. Memory depends on
  the chunk length, not on the file length.

The chunking core, ``ChunkedSeparator``, takes any function
``separate_fn(mix[B, T]) -> estimates[B, T, S]``, so it also serves other
separators (and oracles in tests).

Example
-------
>>> from speechbrain_mossformer.inference import MossFormerSeparation
>>> model = MossFormerSeparation.from_hparams(source="my_model_folder")
... # doctest: +SKIP
>>> est = model.separate_file("meeting.wav")  # doctest: +SKIP

Authors
 * speechbrain-mossformer contributors 2026
"""

import contextlib
import itertools
import logging
import math
import numbers
import os
import re
import sys
import threading

import numpy as np
import soundfile as sf
import torch
from speechbrain.inference.separation import SepformerSeparation

from speechbrain_mossformer.errors import device_problem, first_line
from speechbrain_mossformer.lobes.models.mossformer import (
    check_input_length,
    separate_with_modules,
)
from speechbrain_mossformer.pretrained import (
    check_state_dict,
    load_modules,
    write_replacing,
)

logger = logging.getLogger(__name__)

__all__ = [
    "AudioInputError",
    "ModelLoadError",
    "AUDIO_EXTENSIONS",
    "AudioFile",
    "open_audio",
    "StreamResampler",
    "crossfade_window",
    "align_to_previous",
    "ChunkedSeparator",
    "separate_in_chunks",
    "SeparationStream",
    "MossFormerSeparation",
    "CUSTOM_INTERFACE",
    "add_custom_interface",
    "load_checked_state",
]

#: Default chunk length (seconds) for long files. WSJ0-2mix and Libri2Mix
#: mixtures, on which the models are trained and evaluated, last 2-15 s
#: (training crops 4 s): 8 s stays inside what the model knows while giving
#: it enough context to keep each speaker in one output.
DEFAULT_CHUNK_SECONDS = 8.0
#: Default overlap (seconds) between consecutive chunks. The overlap is what
#: the speaker order is matched on, so it should hold a few words of speech;
#: 2 s does, at a compute overhead of chunk / (chunk - overlap) = 1.33.
DEFAULT_OVERLAP_SECONDS = 2.0
#: Frames read from a file at a time.
READ_BLOCK_FRAMES = 1 << 16
#: A file whose audio ends more than this fraction short of the length its
#: header declares is refused as truncated (mpg123 warns at the same 1%);
#: a smaller gap (a compressed file's estimated length) is padded with
#: silence, so that the tracks keep the declared length.
TRUNCATION_TOLERANCE = 0.01

#: File name extensions treated as audio when a folder is scanned (formats
#: that libsndfile reads).
AUDIO_EXTENSIONS = (
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aif",
    ".aiff",
    ".aifc",
    ".au",
    ".snd",
    ".caf",
    ".w64",
    ".rf64",
)

_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")


class AudioInputError(ValueError):
    """An input file cannot be separated; ``str(err)`` is ``"<file>: why"``.

    Arguments
    ---------
    path : str
        The file.
    problem : str
        What is wrong with it.

    Example
    -------
    >>> err = AudioInputError("a.wav", "the file is empty")
    >>> str(err)
    'a.wav: the file is empty'
    >>> err.problem
    'the file is empty'
    """

    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


class ModelLoadError(ValueError):
    """A pretrained folder cannot be loaded; the message says why."""


# ---------------------------------------------------------------------------
# Reading audio with checks
# ---------------------------------------------------------------------------


class AudioFile:
    """An opened, checked audio file that yields mono blocks.

    Use ``open_audio`` to create one. Any integer PCM width (8, 16, 24,
    32 bit) and float files are read as float32 in [-1, 1] (float files may
    exceed it); all channels are averaged into one.

    Arguments
    ---------
    path : str
        The file.
    info : soundfile._SoundFileInfo
        What soundfile reports about it.

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> path = str(tmp / "stereo.wav")
    >>> sf.write(path, np.full((100, 2), [0.5, -0.25]), 8000)
    >>> audio = open_audio(path)
    >>> audio.sample_rate, audio.channels, audio.frames
    (8000, 2, 100)
    >>> block = next(audio.blocks())
    >>> block.shape, round(float(block[0, 0]), 4)
    (torch.Size([1, 100]), 0.125)
    """

    def __init__(self, path, info):
        self.path = str(path)
        self.sample_rate = int(info.samplerate)
        self.channels = int(info.channels)
        self.frames = int(info.frames)
        self.subtype = info.subtype
        self.format = info.format

    @property
    def duration(self):
        """Length in seconds."""
        return self.frames / self.sample_rate

    def blocks(self, block_frames=READ_BLOCK_FRAMES):
        """Yields the file as mono float32 tensors ``[1, n]``.

        Arguments
        ---------
        block_frames : int
            Frames per block (the last block may be shorter).

        Yields
        ------
        torch.Tensor
            Consecutive mono blocks.
        """
        position = 0
        try:
            with _quiet_stderr():
                handle = sf.SoundFile(_sf_name(self.path))
        except Exception as err:
            raise AudioInputError(self.path, _sf_problem(err)) from None
        with handle:
            while True:
                try:
                    with _quiet_stderr():
                        data = handle.read(
                            block_frames, dtype="float32", always_2d=True
                        )
                except Exception as err:
                    raise AudioInputError(
                        self.path,
                        f"cannot read audio after sample {position}: "
                        f"{_sf_problem(err)}",
                    ) from None
                if data.shape[0] == 0:
                    break
                _check_finite_block(self.path, data, position,
                                    self.sample_rate)
                if data.shape[1] > 1:
                    data = data.mean(axis=1, keepdims=True)
                position += data.shape[0]
                yield torch.from_numpy(np.ascontiguousarray(data.T))
        if position == 0:
            raise AudioInputError(self.path, "the file contains no samples")
        if self.frames - position > self.frames * TRUNCATION_TOLERANCE:
            # a cut-off file (e.g. an interrupted download): its header
            # still declares the whole length
            raise AudioInputError(
                self.path,
                f"truncated or damaged: the audio ends after {position} "
                f"of the {self.frames} samples its header declares",
            )


def _sf_name(path):
    """``path`` as soundfile should get it: bytes on POSIX, so that file
    names that are not UTF-8 (Python keeps their bytes as surrogates) open
    too; soundfile encodes a ``str`` strictly as UTF-8."""
    return os.fsencode(path) if os.name == "posix" else path


def _sf_problem(err):
    """Turns a soundfile/libsndfile exception into a short problem text."""
    text = getattr(err, "error_string", None) or str(err)
    text = text.strip().rstrip(".")
    if text.startswith("File does not exist or is not a regular file"):
        # libsndfile's message when no decoder accepts the data
        text = "unknown format or corrupt data"
    # "Error opening '<path>': Format not recognised" -> the reason only
    if text.startswith("Error opening") and "': " in text:
        text = text.split("': ", 1)[1]
    return f"not a readable audio file ({text})"


#: ``_quiet_stderr`` state, shared by the threads (file descriptor 2 is
#: the whole process's): how many are inside, and the real stderr.
_QUIET_LOCK = threading.Lock()
_QUIET = {"depth": 0, "saved": None}


@contextlib.contextmanager
def _quiet_stderr():
    """Silences C-level stderr (mpg123 prints notes on corrupt MP3s).

    Threads may overlap: the first one in saves the real stderr and the
    last one out puts it back (each restoring its own copy would leave
    stderr at ``/dev/null`` when they overlap).
    """
    with _QUIET_LOCK:
        if _QUIET["depth"] == 0:
            try:
                sys.stderr.flush()
                saved = os.dup(2)
            except (OSError, ValueError, AttributeError):
                saved = None
            if saved is not None:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
            _QUIET["saved"] = saved
        _QUIET["depth"] += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _QUIET["depth"] -= 1
            if _QUIET["depth"] == 0 and _QUIET["saved"] is not None:
                os.dup2(_QUIET["saved"], 2)
                os.close(_QUIET["saved"])
                _QUIET["saved"] = None


def _check_finite_block(path, data, position, sample_rate):
    """Raises ``AudioInputError`` if a block holds NaN or infinite values."""
    finite = np.isfinite(data)
    if not finite.all():
        first = position + int(np.argwhere(~finite.all(axis=1))[0, 0])
        raise AudioInputError(
            path,
            f"the audio contains NaN or infinite samples (first at sample "
            f"{first}, {first / sample_rate:.3f} s)",
        )


#: libsndfile's description of a WAV or AIFF file whose audio chunk holds
#: fewer bytes than its header declares (it then reads what is there and
#: reports that as the length): ``data : 64000 (should be 31978)``, or
#: ``SSND`` for AIFF. The outer sizes (``RIFF``, ``FORM``) are not used:
#: a cut or oversized metadata chunk after whole audio changes them too.
_AUDIO_CHUNK_SIZE = re.compile(
    r"^\s*(data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
#: The same for W64 and RF64, whose audio chunk line says nothing: their
#: 64-bit container size (``riff`` / ``Riff size``).
_CONTAINER_SIZE_64 = re.compile(
    r"^\s*(riff|Riff size)\s*:\s*(\d+)\s*\(should be (\d+)\)",
    re.MULTILINE)
#: 32-bit sizes at or above this mean "not known": a WAV written to a pipe
#: has 0xFFFFFFFF (most writers), 0x7FFFF000 (SoX) or 0x7FFFFF00
#: (arecord), or 0.
_UNKNOWN_SIZE_32 = 0x7F000000


def cut_off_bytes(extra_info):
    """The audio bytes a file holds and its header declares, if cut off.

    Arguments
    ---------
    extra_info : str
        libsndfile's description of the file (``soundfile.info(path)
        .extra_info``).

    Returns
    -------
    tuple of int, or None
        ``(held, declared)`` when the file holds more than
        ``TRUNCATION_TOLERANCE`` fewer bytes than its header declares for
        the audio; None otherwise (whole, a size left unknown, or a
        format whose description gives no sizes).

    Example
    -------
    >>> cut_off_bytes("RIFF : 64036 (should be 32014)\\n"
    ...               "data : 64000 (should be 31978)")
    (31978, 64000)
    >>> cut_off_bytes("data : 2147479552 (should be 64000)") is None  # SoX
    True
    >>> # whole audio, a cut metadata chunk after it
    >>> cut_off_bytes("RIFF : 70036 (should be 65036)\\ndata : 64000") is None
    True
    >>> cut_off_bytes("riff : 96104 (should be 48052)\\ndata : 96024")  # W64
    (48052, 96104)
    """
    text = extra_info or ""
    chunks = list(_AUDIO_CHUNK_SIZE.finditer(text))
    if chunks:
        sizes = [(int(m.group(2)), int(m.group(3))) for m in chunks
                 if 0 < int(m.group(2)) < _UNKNOWN_SIZE_32]
    else:  # W64, RF64 (for WAV/AIFF none: the audio chunk is whole)
        sizes = [(int(m.group(2)), int(m.group(3)))
                 for m in _CONTAINER_SIZE_64.finditer(text)
                 if int(m.group(2)) not in (0, 0xFFFFFFFFFFFFFFFF)]
    for declared, held in sizes:
        if declared - held > declared * TRUNCATION_TOLERANCE:
            return held, declared
    return None


def open_audio(path, min_frames=1, scan_float=True):
    """Opens and checks an audio file before anything is separated.

    Arguments
    ---------
    path : str
        The file.
    min_frames : int
        Fewest frames accepted (at the file's rate).
    scan_float : bool
        Read float files once to reject NaN/Inf before any output is made
        (integer PCM cannot hold them).

    Returns
    -------
    AudioFile
        The opened file.

    Raises
    ------
    AudioInputError
        Missing, unreadable, empty, too short or non-finite input.

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> path = str(tmp / "nan.wav")
    >>> sf.write(path, np.array([0.1, np.nan, 0.2]), 8000, subtype="FLOAT")
    >>> try:
    ...     open_audio(path)
    ... except AudioInputError as err:
    ...     print(err.problem)
    the audio contains NaN or infinite samples (first at sample 1, 0.000 s)
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise AudioInputError(path, "is a folder, not an audio file")
    if not os.path.exists(path):
        raise AudioInputError(path, "no such file")
    if not os.path.isfile(path):
        # a pipe (``<(cmd)``), a device, a socket: read twice below (the
        # header, then the audio), which a stream cannot be
        raise AudioInputError(
            path,
            "not a regular file (a pipe or device?): save the audio to a "
            "file first",
        )
    if os.path.getsize(path) == 0:
        raise AudioInputError(path, "the file is empty (0 bytes)")
    try:
        with _quiet_stderr():
            info = sf.info(_sf_name(path))
    except Exception as err:
        raise AudioInputError(path, _sf_problem(err)) from None
    audio = AudioFile(path, info)
    if audio.sample_rate <= 0 or audio.channels <= 0:
        raise AudioInputError(
            path,
            f"invalid header ({audio.channels} channels at "
            f"{audio.sample_rate} Hz)",
        )
    if audio.frames <= 0:
        raise AudioInputError(path, "the file contains no samples")
    cut = cut_off_bytes(getattr(info, "extra_info", ""))
    if cut is not None:
        # libsndfile gives a cut-off WAV/AIFF the length that is there,
        # so the check after reading (``AudioFile.blocks``) cannot see it
        raise AudioInputError(
            path,
            f"truncated or damaged: its header declares {cut[1]} bytes of "
            f"audio, the file holds {cut[0]} (the audio ends after "
            f"{audio.frames} samples)",
        )
    if audio.frames < min_frames:
        raise AudioInputError(
            path,
            f"too short: {audio.frames} samples "
            f"({1000 * audio.duration:.1f} ms at {audio.sample_rate} Hz); "
            f"at least {min_frames} samples "
            f"({1000 * min_frames / audio.sample_rate:.1f} ms) are needed",
        )
    if scan_float and audio.subtype in _FLOAT_SUBTYPES:
        for _ in audio.blocks():
            pass
    return audio


# ---------------------------------------------------------------------------
# Streaming resampling
# ---------------------------------------------------------------------------


class StreamResampler:
    """Block-wise resampling that equals resampling the whole signal.

    ``torchaudio``'s windowed-sinc resampler is a strided convolution:
    each output block of ``new / gcd`` samples depends on the inputs within
    ``width`` samples of its ``orig / gcd`` input samples. Cutting the input
    at multiples of ``orig / gcd`` and giving each piece ``margin`` samples
    of context on both sides therefore reproduces the whole-signal result
    (up to float rounding) with memory bounded by the block size.

    Rates that share almost no factor (44101 Hz and 8000 Hz: blocks of
    44101 samples and a kernel of 8000 x 44101 values, gigabytes) are
    resampled by the nearest ratio whose kernel stays small
    (``resampling_ratio``): a time stretch of at most 5 parts in 10,000
    (44101 Hz: 2 parts in 10 million; 8001 Hz is read as 8000 Hz, 1.25
    parts in 10,000), and none at all for a round trip to the model rate
    and back, which uses the same ratio both ways; the caller trims the
    output to its exact length.

    Arguments
    ---------
    orig_freq : int
        Input rate.
    new_freq : int
        Output rate.

    Example
    -------
    >>> import torchaudio
    >>> x = torch.randn(1, 20000)
    >>> res = StreamResampler(48000, 8000)
    >>> y = torch.cat([res.push(b) for b in x.split(3001, dim=1)]
    ...               + [res.flush()], dim=1)
    >>> full = torchaudio.functional.resample(x, 48000, 8000)
    >>> y.shape == full.shape, bool((y - full).abs().max() < 1e-5)
    (True, True)
    """

    LOWPASS_FILTER_WIDTH = 6
    ROLLOFF = 0.99

    def __init__(self, orig_freq, new_freq):
        orig_freq, new_freq = int(orig_freq), int(new_freq)
        if orig_freq <= 0 or new_freq <= 0:
            raise ValueError(
                f"sample rates must be positive, got {orig_freq} and "
                f"{new_freq}"
            )
        self.orig_freq, self.new_freq = orig_freq, new_freq
        self._orig, self._new = resampling_ratio(orig_freq, new_freq)
        self.identity = self._orig == self._new
        base = min(self._orig, self._new) * self.ROLLOFF
        width = math.ceil(self.LOWPASS_FILTER_WIDTH * self._orig / base)
        # context on each side, a multiple of the input stride
        self.margin = (width // self._orig + 2) * self._orig
        self._transform = None
        self._like = torch.zeros(1, 0)
        self._buf = None
        self._buf_start = 0
        self._done = 0
        self._total = 0

    def _resample(self, x):
        """Resamples one segment (the kernel is built once)."""
        if self._transform is None:
            import torchaudio

            # the reduced rates: the same kernel as the rates themselves
            # (torchaudio divides them by their gcd)
            self._transform = torchaudio.transforms.Resample(
                self._orig,
                self._new,
                lowpass_filter_width=self.LOWPASS_FILTER_WIDTH,
                rolloff=self.ROLLOFF,
                dtype=x.dtype,
            )
        return self._transform(x)

    def push(self, x):
        """Adds input ``x`` [C, n]; returns the output that is final now."""
        self._like = x[:, :0]
        if self.identity:
            return x
        self._buf = x if self._buf is None else torch.cat([self._buf, x], 1)
        self._total += x.shape[1]
        end = (self._total - self.margin) // self._orig * self._orig
        if end <= self._done:
            return x.new_zeros(x.shape[0], 0)
        return self._emit(end, final=False)

    def flush(self):
        """Returns the rest of the output once the input has ended."""
        if self.identity or self._buf is None:
            return self._like
        return self._emit(self._total, final=True)

    def _emit(self, end, final):
        """Output for inputs [done, end) (to the end if ``final``)."""
        seg_start = max(0, self._done - self.margin)
        seg_end = self._total if final else end + self.margin
        seg = self._buf[
            :, seg_start - self._buf_start : seg_end - self._buf_start
        ]
        y = self._resample(seg)
        offset = (self._done - seg_start) // self._orig * self._new
        if final:
            y = y[:, offset:]
        else:
            y = y[:, offset : offset + (end - self._done) // self._orig
                  * self._new]
        self._done = end
        keep_from = max(0, end - self.margin)
        self._buf = self._buf[:, keep_from - self._buf_start :]
        self._buf_start = keep_from
        return y


#: Largest resampling kernel (``orig / gcd`` x ``new / gcd`` values) built
#: for an exact ratio; rates that need a larger one are approximated.
MAX_KERNEL_VALUES = 2**22


def resampling_ratio(orig_freq, new_freq):
    """The (input, output) block sizes ``StreamResampler`` uses.

    The exact ratio (the rates divided by their gcd) when its kernel has
    at most ``MAX_KERNEL_VALUES`` values; otherwise the nearest fraction
    whose kernel does, the same one (inverted) for the opposite direction.

    Arguments
    ---------
    orig_freq, new_freq : int
        The rates.

    Returns
    -------
    tuple of int

    Example
    -------
    >>> resampling_ratio(44100, 8000)
    (441, 80)
    >>> down = resampling_ratio(44101, 8000)
    >>> down, resampling_ratio(8000, 44101) == down[::-1]
    ((2183, 396), True)
    >>> abs(396 / 2183 - 8000 / 44101) < 1e-6 * 8000 / 44101
    True
    """
    from fractions import Fraction

    gcd = math.gcd(orig_freq, new_freq)
    exact = (orig_freq // gcd, new_freq // gcd)
    if exact[0] * exact[1] <= MAX_KERNEL_VALUES:
        return exact
    low, high = sorted((orig_freq, new_freq))
    ratio = Fraction(low, high)
    # p = ratio * q and p * q <= MAX_KERNEL_VALUES
    approx = ratio.limit_denominator(
        max(1, math.isqrt(int(MAX_KERNEL_VALUES / ratio)))
    )
    small, large = approx.numerator, approx.denominator
    return (large, small) if orig_freq > new_freq else (small, large)


def resampled_length(frames, orig_freq, new_freq):
    """Number of samples of ``frames`` samples resampled (torchaudio rule).

    Example
    -------
    >>> resampled_length(48001, 48000, 8000)
    8001
    """
    if orig_freq == new_freq:
        return int(frames)
    return math.ceil(int(new_freq) * int(frames) / int(orig_freq))


# ---------------------------------------------------------------------------
# Chunked separation with speaker-order alignment
# ---------------------------------------------------------------------------


def crossfade_window(length, dtype=torch.float32):
    """Raised-cosine fade-in of ``length`` samples (fade-out = 1 - it).

    The two weights add up to one at every sample, so two identical chunk
    estimates cross-fade into themselves.

    Example
    -------
    >>> w = crossfade_window(4)
    >>> [round(float(v), 3) for v in w]
    [0.038, 0.309, 0.691, 0.962]
    """
    t = (torch.arange(length, dtype=torch.float64) + 0.5) / length
    return (0.5 - 0.5 * torch.cos(math.pi * t)).to(dtype)


def align_to_previous(previous, current):
    """Speaker permutation of ``current`` that best matches ``previous``.

    Both hold estimates of the same stretch of audio (a chunk overlap).
    The chosen permutation maximises the summed inner product between
    matched tracks, which is the same as minimising the summed squared
    distance (the energies do not depend on the permutation). Silent
    tracks contribute nothing, so one active speaker is enough to decide.
    Ties keep the current order.

    Arguments
    ---------
    previous : torch.Tensor
        [B, T, S] reference estimates.
    current : torch.Tensor
        [B, T, S] estimates to reorder.

    Returns
    -------
    torch.Tensor
        [B, S] long: ``current[b, :, perm[b]]`` matches ``previous[b]``.

    Example
    -------
    >>> prev = torch.randn(2, 50, 3)
    >>> cur = prev[:, :, [2, 0, 1]] + 0.1 * torch.randn(2, 50, 3)
    >>> align_to_previous(prev, cur).tolist()
    [[1, 2, 0], [1, 2, 0]]
    """
    if previous.shape != current.shape or previous.dim() != 3:
        raise ValueError(
            f"expected two [B, T, S] tensors of one shape, got "
            f"{tuple(previous.shape)} and {tuple(current.shape)}"
        )
    S = previous.shape[2]
    # [B, S, S]: score[b, i, j] = <previous[b, :, i], current[b, :, j]>
    score = torch.einsum(
        "bti,btj->bij", previous.double(), current.double()
    )
    perms = torch.tensor(list(itertools.permutations(range(S))))
    # [P, B]: total score of each permutation
    totals = score[:, torch.arange(S), perms].sum(-1).transpose(0, 1)
    best = totals.argmax(0)
    return perms[best].to(previous.device)


#: A track whose mean power in an overlap is below this fraction of the
#: loudest track's mean power over the chunk (-30 dB) counts as silent
#: there when checking the speaker order.
SILENT_TRACK_RATIO = 1e-3


def _order_is_undetermined(overlap, chunk):
    """Whether an overlap [B, T, S] has fewer than S - 1 active tracks in
    some item: then the silent tracks can be swapped at no cost, and no
    alignment on the overlap can tell their order.

    A track is active when its mean power in the overlap reaches
    ``SILENT_TRACK_RATIO`` of the loudest track's mean power over
    ``chunk`` [B, T', S] (the chunk being aligned), so that a pause full
    of low-level residue counts as silent too. An item whose chunk and
    overlap are all digital silence has nothing that could swap.

    Example
    -------
    >>> speech, pause = torch.ones(1, 100, 2), torch.zeros(1, 10, 2)
    >>> _order_is_undetermined(speech[:, :10], speech)
    False
    >>> _order_is_undetermined(pause + 1e-3, speech)
    True
    >>> _order_is_undetermined(pause, torch.zeros(1, 100, 2))
    False
    """
    # [B, S]: mean power of each track in the overlap
    power = overlap.double().pow(2).mean(1)
    # [B, 1]: the loudest track of the chunk (or of the overlap)
    reference = torch.maximum(
        chunk.double().pow(2).mean(1).amax(1, keepdim=True),
        power.amax(1, keepdim=True),
    )
    active = power > SILENT_TRACK_RATIO * reference
    guessed = (active.sum(1) < overlap.shape[2] - 1) & (reference[:, 0] > 0)
    return bool(guessed.any())


class ChunkedSeparator:
    """Overlap-add separation of a stream, in a consistent speaker order.

    The input is cut into chunks of ``chunk_size`` samples that overlap by
    ``overlap_size``; the last chunk is moved back to end at the end of the
    input so it is as long as possible. Each chunk is separated by
    ``separate_fn``; its speakers are permuted to match the previous chunk
    on their overlap (``align_to_previous``), and the overlap is
    cross-faded (``crossfade_window``). Output is given back as soon as no
    later chunk can change it, so at most about two chunks of input and
    one chunk of output are held, whatever the length of the stream.

    Arguments
    ---------
    separate_fn : callable
        ``mix [B, T] -> estimates [B, T, S]``.
    chunk_size : int or None
        Samples per chunk; ``None`` separates the whole input at once.
    overlap_size : int
        Overlap between chunks, at least 1 and at most half a chunk.
    sample_rate : int, optional
        Rate of the stream, to give positions in seconds in warnings (the
        same in the file whatever its own rate).
    source : str, optional
        What is separated (a file name), to name it in warnings.

    Borders whose speaker order could not be checked are listed in
    ``undetermined_borders`` and, once the input has ended (``flush``),
    in one warning.

    Example
    -------
    >>> def split_halves(mix):  # a "separator": first/second half of a sum
    ...     return torch.stack([mix * 0.25, mix * 0.75], dim=-1)
    >>> sep = ChunkedSeparator(split_halves, chunk_size=100, overlap_size=20)
    >>> mix = torch.randn(1, 1000)
    >>> out = torch.cat([o for b in mix.split(64, dim=1)
    ...                  for o in sep.push(b)] + sep.flush(), dim=1)
    >>> out.shape, sep.num_chunks
    (torch.Size([1, 1000, 2]), 13)
    >>> torch.allclose(out[..., 1], 0.75 * mix)
    True
    """

    def __init__(self, separate_fn, chunk_size, overlap_size,
                 sample_rate=None, source=None):
        self.sample_rate = sample_rate
        self.source = source
        if chunk_size is not None:
            chunk_size, overlap_size = int(chunk_size), int(overlap_size)
            if chunk_size < 2:
                raise ValueError(f"chunk_size must be >= 2, got {chunk_size}")
            if not 1 <= overlap_size <= chunk_size // 2:
                raise ValueError(
                    f"overlap_size must be between 1 and half the chunk "
                    f"({chunk_size // 2}), got {overlap_size}"
                )
        self.separate_fn = separate_fn
        self.chunk_size = chunk_size
        self.overlap_size = overlap_size
        self.num_chunks = 0
        #: starts of chunks whose speaker order could not be checked (the
        #: overlap had fewer than S - 1 active tracks)
        self.undetermined_borders = []
        self._buf = None
        self._buf_start = 0
        self._total = 0
        self._next_start = 0
        self._pending = None
        self._pending_start = 0
        self._pending_end = 0
        self._cross_end = 0

    @property
    def hop_size(self):
        """Distance between the starts of consecutive chunks."""
        return self.chunk_size - self.overlap_size

    def push(self, x):
        """Adds input ``x`` [B, n]; returns a list of final output blocks."""
        if x.dim() != 2:
            raise ValueError(
                f"expected input blocks [batch, time], got "
                f"{tuple(x.shape)}"
            )
        self._buf = x if self._buf is None else torch.cat([self._buf, x], 1)
        self._total += x.shape[1]
        out = []
        if self.chunk_size is None:
            return out
        while self._total >= self._next_start + self.chunk_size:
            start = self._next_start
            out += self._process(start, start + self.chunk_size)
        return out

    def flush(self):
        """Separates what is left; returns the last output blocks."""
        out = []
        if self._total == 0:
            return out
        if self.num_chunks == 0:
            out += self._process(0, self._total)
        elif self._total > self._pending_end:
            start = max(self._total - self.chunk_size, self._cross_end)
            out += self._process(start, self._total)
        self._warn_undetermined(self._pending.shape[2])
        out.append(self._pending)
        self._pending = None
        self._buf = None
        return [o for o in out if o.shape[1] > 0]

    def _warn_undetermined(self, num_spks):
        """One warning for all the borders of ``undetermined_borders``."""
        borders = self.undetermined_borders
        if not borders:
            return
        where = ", ".join(
            f"{b / self.sample_rate:.2f} s" if self.sample_rate
            else f"sample {b}"
            for b in borders[:5]
        ) + (f" and {len(borders) - 5} more" if len(borders) > 5 else "")
        logger.warning(
            "%s%d chunk border%s (at %s): the overlap has too little "
            "activity to tell the speakers apart (at least %d of the %d "
            "tracks must be active), so the speaker order cannot be checked "
            "there and may swap (a longer overlap avoids this)",
            f"{self.source}: " if self.source else "", len(borders),
            "s" if len(borders) > 1 else "", where, num_spks - 1, num_spks,
        )

    def _process(self, start, end):
        """Separates input [start, end), aligns and cross-fades it with the
        previous chunk; returns the output that became final."""
        mix = self._buf[:, start - self._buf_start : end - self._buf_start]
        est = self.separate_fn(mix)
        if (
            est.dim() != 3
            or est.shape[:2] != mix.shape
            or (self._pending is not None
                and est.shape[2] != self._pending.shape[2])
        ):
            raise ValueError(
                f"separate_fn returned shape {tuple(est.shape)} for a chunk "
                f"of shape {tuple(mix.shape)}; expected [B, T, S] with the "
                f"same S for every chunk"
            )
        out = []
        if self._pending is None:
            self._pending = est
        else:
            # everything before this chunk is final
            out.append(self._pending[:, : start - self._pending_start])
            # [B, ov, S]: the previous chunk's estimate on the overlap
            prev = self._pending[:, start - self._pending_start :]
            ov = prev.shape[1]
            perm = align_to_previous(prev, est[:, :ov])
            if _order_is_undetermined(prev, est):
                # the overlap cannot tell the quiet tracks apart: the order
                # kept is a guess, and speakers may swap at this border
                self.undetermined_borders.append(start)
            # [B, T, S]: reorder each item's speakers
            est = torch.gather(
                est, 2, perm[:, None, :].expand(-1, est.shape[1], -1)
            )
            w = crossfade_window(ov, est.dtype).to(est.device)[None, :, None]
            head = prev * (1 - w) + est[:, :ov] * w
            self._pending = torch.cat([head, est[:, ov:]], dim=1)
            self._cross_end = self._pending_end
        self._pending_start, self._pending_end = start, end
        if self.chunk_size is not None:
            self._next_start = start + self.hop_size
        # a later chunk never starts before the end of this cross-fade
        keep_from = max(self._cross_end, self._buf_start)
        self._buf = self._buf[:, keep_from - self._buf_start :]
        self._buf_start = keep_from
        self.num_chunks += 1
        return out


def separate_in_chunks(separate_fn, mix, chunk_size, overlap_size):
    """Separates a whole tensor with ``ChunkedSeparator``.

    Arguments
    ---------
    separate_fn : callable
        ``mix [B, T] -> estimates [B, T, S]``.
    mix : torch.Tensor
        [B, T] mixture.
    chunk_size : int or None
        Samples per chunk (``None``: no chunking).
    overlap_size : int
        Overlap between chunks.

    Returns
    -------
    torch.Tensor
        [B, T, S] estimates.

    Example
    -------
    >>> fn = lambda m: torch.stack([m, -m], dim=-1)
    >>> separate_in_chunks(fn, torch.ones(2, 50), 20, 5).shape
    torch.Size([2, 50, 2])
    """
    sep = ChunkedSeparator(separate_fn, chunk_size, overlap_size)
    out = sep.push(mix) + sep.flush()
    return torch.cat(out, dim=1)


# ---------------------------------------------------------------------------
# The pretrained interface
# ---------------------------------------------------------------------------


class SeparationStream:
    """The separated tracks of one file, produced block by block.

    Created by ``MossFormerSeparation.stream_file``. Iterating yields CPU
    float32 tensors ``[n, num_spks]`` at ``sample_rate``; together they
    hold exactly ``num_frames`` samples. ``progress`` (a callable or
    ``None``, settable before iterating) is called with the number of input
    frames read so far.

    Arguments
    ---------
    audio : AudioFile
        The checked input.
    blocks : iterator
        The output blocks.
    sample_rate : int
        Output rate.
    num_frames : int
        Output length.
    num_spks : int
        Number of tracks.

    Example
    -------
    >>> from speechbrain_mossformer.pretrained import (
    ...     render_hyperparams, write_pretrained_folder)
    >>> tmp = getfixture("tmpdir")
    >>> cfg = {"N_encoder_out": 16, "out_channels": 16, "num_blocks": 1,
    ...        "group_size": 4, "query_key_dim": 8}
    >>> mods = load_modules(render_hyperparams(cfg))
    >>> _ = write_pretrained_folder(str(tmp / "tiny"), cfg,
    ...     {k: m.state_dict() for k, m in mods.items()})
    >>> model = MossFormerSeparation.from_hparams(
    ...     source=str(tmp / "tiny"), run_opts={"device": "cpu"})
    >>> sf.write(str(tmp / "a.wav"), np.random.randn(16000, 2) * 0.1, 16000)
    >>> stream = model.stream_file(str(tmp / "a.wav"), chunk_seconds=0.4,
    ...                            overlap_seconds=0.1)
    >>> stream.sample_rate, stream.num_frames, stream.num_spks
    (16000, 16000, 2)
    >>> blocks = list(stream)  # a 1 s stereo file, separated in chunks
    >>> len(blocks) > 1, torch.cat(blocks).shape
    (True, torch.Size([16000, 2]))
    """

    def __init__(self, audio, blocks, sample_rate, num_frames, num_spks):
        self.audio = audio
        self.path = audio.path
        self.sample_rate = sample_rate
        self.num_frames = num_frames
        self.num_spks = num_spks
        self.progress = None
        self._blocks = blocks
        self._started = False

    def __iter__(self):
        if self._started:
            raise RuntimeError(
                f"{self.path}: this stream has already been read (it "
                "separates the file once, as it goes): call stream_file "
                "again to separate it again"
            )
        self._started = True
        return iter(self._blocks)

    def read_all(self):
        """Returns all tracks as one tensor ``[num_frames, num_spks]``.

        The blocks are copied into it as they come, so the result is the
        only copy held (concatenating a list of blocks held two).
        """
        # every row is written below, or the stream is refused
        tracks = torch.empty(self.num_frames, self.num_spks)
        position = 0
        for block in self:
            # [n, num_spks] -> rows position .. position + n of the result
            end = position + block.shape[0]
            if end > self.num_frames:
                raise RuntimeError(
                    f"{self.path}: the separation gave more than the "
                    f"{self.num_frames} samples expected"
                )
            tracks[position:end] = block
            position = end
        if position < self.num_frames:
            raise RuntimeError(
                f"{self.path}: the separation gave {position} of the "
                f"{self.num_frames} samples expected"
            )
        return tracks


class MossFormerSeparation(SepformerSeparation):
    """MossFormer speech separation from a pretrained folder.

    Loads the same folders as ``SepformerSeparation`` (``hyperparams.yaml``
    and ``encoder/masknet/decoder.ckpt``) and gives the same
    ``separate_batch`` numbers, but checks the checkpoints strictly, and
    ``separate_file`` handles any channel count, sample rate and length
    (see the module docstring).

    Load with ``MossFormerSeparation.from_hparams(source=FOLDER)``, or with
    ``speechbrain.inference.interfaces.foreign_class(source=FOLDER,
    pymodule_file="custom.py", classname="MossFormerSeparation")`` for a
    folder that has a ``custom.py`` (see ``add_custom_interface``). Choose
    the device with ``run_opts={"device": "cuda:0"}``.

    Example
    -------
    >>> from speechbrain_mossformer.pretrained import (
    ...     render_hyperparams, write_pretrained_folder)
    >>> folder = str(getfixture("tmpdir") / "tiny")
    >>> cfg = {"N_encoder_out": 16, "out_channels": 16, "num_blocks": 1,
    ...        "group_size": 4, "query_key_dim": 8}
    >>> mods = load_modules(render_hyperparams(cfg))
    >>> _ = write_pretrained_folder(
    ...     folder, cfg, {k: m.state_dict() for k, m in mods.items()})
    >>> model = MossFormerSeparation.from_hparams(
    ...     source=folder, run_opts={"device": "cpu"})
    >>> model.separate_batch(torch.randn(1, 800)).shape
    torch.Size([1, 800, 2])
    >>> path = str(getfixture("tmpdir") / "mix.wav")  # stereo, 16 kHz
    >>> sf.write(path, np.random.randn(4000, 2) * 0.1, 16000)
    >>> model.separate_file(path).shape  # mono tracks at the file's rate
    torch.Size([1, 4000, 2])
    """

    HPARAMS_NEEDED = ["num_spks", "sample_rate"]
    MODULES_NEEDED = ["encoder", "masknet", "decoder"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for key in self.HPARAMS_NEEDED:
            value = getattr(self.hparams, key)
            if (not isinstance(value, numbers.Integral)
                    or isinstance(value, bool) or value <= 0):
                raise ModelLoadError(
                    f"hyperparams.yaml: '{key}' must be a positive integer, "
                    f"got {value!r}"
                )
        missing = [
            name for name in self.MODULES_NEEDED
            if name not in self.mods or self.mods[name] is None
        ]
        if missing:
            raise ModelLoadError(
                f"hyperparams.yaml: 'modules' lacks {missing}; a MossFormer "
                f"separator needs {self.MODULES_NEEDED}"
            )
        pretrainer = getattr(self.hparams, "pretrainer", None)
        if pretrainer is not None:
            self._check_checkpoints(pretrainer)

    def _check_checkpoints(self, pretrainer):
        """Re-reads each ``<name>.ckpt`` and checks it strictly."""
        for name in self.MODULES_NEEDED:
            loadable = pretrainer.loadables.get(name)
            if loadable is None or loadable is not self.mods[name]:
                raise ModelLoadError(
                    f"hyperparams.yaml: the pretrainer does not load module "
                    f"'{name}' (its weights would stay random)"
                )
            path = pretrainer.paths.get(name)
            if path is None:
                raise ModelLoadError(f"no checkpoint collected for '{name}'")
            load_checked_state(
                path, self.mods[name], name, "hyperparams.yaml"
            )

    @classmethod
    def from_hparams(cls, source, hparams_file="hyperparams.yaml", **kwargs):
        """Loads a pretrained folder (works offline for a local folder).

        Unlike SpeechBrain's loader, a local folder is checked first (a
        mistyped path is an error, not a Hugging Face download), and any
        loading problem is a one-line ``ModelLoadError``: for a local folder
        it names the file and the problem (unreadable yaml or checkpoint,
        missing entry, a key or shape that does not match the yaml).
        SpeechBrain's parameter-transfer warnings are held back while
        loading, and dropped if loading fails.

        A source is taken as a local folder when it exists, is absolute,
        starts with ``.`` or ``~``, ends with a path separator, or has no
        ``/`` or more than one; only ``<owner>/<name>`` is a Hugging Face
        id, and a source with ``://`` a URL.

        Arguments
        ---------
        source : str
            Pretrained folder (or a Hugging Face id / URL, as in
            SpeechBrain).
        hparams_file : str
            Name of the yaml inside ``source``.
        **kwargs
            Passed on (``savedir``, ``run_opts``, ``overrides``, ...).

        Returns
        -------
        MossFormerSeparation
        """
        local = None
        if isinstance(source, (str, os.PathLike)):
            local = os.fspath(source)
            if not _looks_local(local):
                local = None
        if local is not None:
            # "~/model": SpeechBrain would take it as it is
            local = source = os.path.expanduser(local)
            _check_folder(
                local, hparams_file, cls.MODULES_NEEDED,
                kwargs.get("overrides"),
            )
        run_opts = kwargs.get("run_opts")
        if isinstance(run_opts, dict) and "device" in run_opts:
            # SpeechBrain takes device strings only ("cuda:0", not objects)
            device = run_opts["device"]
            if isinstance(device, torch.device):
                device = str(device)
                kwargs["run_opts"] = dict(run_opts, device=device)
            _check_device(device)
        try:
            with _held_back_transfer_warnings():
                return super().from_hparams(
                    source, hparams_file=hparams_file, **kwargs
                )
        except ModelLoadError:
            raise
        except Exception as err:
            # e.g. torch's load_state_dict on shape mismatches, an
            # unreadable checkpoint, a yaml without 'pretrainer': say which
            # file and what, in our words, when the folder is local.
            if local is not None:
                _strict_check_folder(
                    local, hparams_file, cls.MODULES_NEEDED,
                    kwargs.get("overrides"),
                    kwargs.get("overrides_must_match", True),
                )
            # "owner/name" went to Hugging Face: it may be a local folder
            hub_hint = (
                f" (if {source} is a local folder, give it as ./{source})"
                if local is None and isinstance(source, str)
                and "://" not in source else ""
            )
            raise ModelLoadError(
                f"{source}: cannot load the model: {first_line(err)}"
                f"{hub_hint}"
            ) from None

    def _dtype(self):
        """The floating point type of the model's weights (float32 unless
        cast)."""
        for param in self.mods.parameters():
            if param.is_floating_point():
                return param.dtype
        return torch.float32

    @property
    def kernel_size(self):
        """Encoder kernel (samples per frame): the shortest valid input."""
        conv = getattr(self.mods.encoder, "conv1d", None)
        if conv is not None:
            return int(conv.kernel_size[0])
        return int(getattr(self.hparams, "kernel_size", 16))

    @property
    def sample_rate(self):
        """The model's sample rate."""
        return int(self.hparams.sample_rate)

    @property
    def num_spks(self):
        """Number of separated tracks."""
        return int(self.hparams.num_spks)

    def separate_batch(self, mix):
        """Separates a batch of mixtures at the model's rate.

        Same computation as ``SepformerSeparation.separate_batch``, run
        under ``torch.no_grad()``, with checks first. The model normalises
        and averages over the whole length, so a mixture zero-padded to the
        batch's length is not separated exactly as it would be alone
        (``separate_file`` and the CLI take one recording at a time).

        Arguments
        ---------
        mix : torch.Tensor
            [B, T] mixtures, at least one encoder frame long, finite.

        Returns
        -------
        torch.Tensor
            [B, T, num_spks] float32 estimates (on the model's device), also
            when called under ``torch.autocast``.

        Raises
        ------
        ValueError
            For a mixture that is not a finite floating point [B, T] tensor
            of at least one encoder frame, and when the model's estimates are
            not finite (diverged weights).
        """
        if not isinstance(mix, torch.Tensor):
            raise ValueError(
                f"expected a torch.Tensor mixture, got {type(mix).__name__}"
            )
        check_input_length(mix, self.kernel_size, "MossFormerSeparation")
        if not mix.is_floating_point():
            raise ValueError(
                f"MossFormerSeparation: expected a floating point mixture, "
                f"got {mix.dtype}"
            )
        if not torch.isfinite(mix).all():
            raise ValueError(
                "MossFormerSeparation: the mixture contains NaN or infinite "
                "values"
            )
        # the weights' precision (a model cast with mods.to(dtype), as
        # SepformerSeparation allows)
        mix = mix.to(self.device, self._dtype())
        with torch.no_grad():
            est = separate_with_modules(
                self.mods.encoder,
                self.mods.masknet,
                self.mods.decoder,
                mix,
                self.num_spks,
            )
        if not torch.isfinite(est).all():
            raise ValueError(
                "MossFormerSeparation: the model gave NaN or infinite "
                "estimates for a finite mixture (diverged or corrupt "
                "weights, or an overflow under fp16 autocast)"
            )
        # [B, T, S]: bf16/fp16 under autocast
        return est.float()

    def min_input_frames(self, sample_rate):
        """Fewest samples at ``sample_rate`` that give one encoder frame.

        Example
        -------
        >>> MossFormerSeparation.min_input_frames(
        ...     type("M", (), {"kernel_size": 16, "sample_rate": 8000})(),
        ...     48000)
        91
        """
        k, m = self.kernel_size, self.sample_rate
        if sample_rate == m:
            return k
        # smallest T with ceil(T * m / sample_rate) >= k
        return (k - 1) * sample_rate // m + 1

    def _chunk_sizes(self, chunk_seconds, overlap_seconds):
        """Chunk and overlap lengths in model samples."""
        if chunk_seconds is None or chunk_seconds == 0:
            return None, 0
        for name, value in (("chunk_seconds", chunk_seconds),
                            ("overlap_seconds", overlap_seconds)):
            if (not isinstance(value, numbers.Real)
                    or isinstance(value, bool) or not math.isfinite(value)):
                raise ValueError(
                    f"{name} must be a finite number of seconds when "
                    f"chunking, got {value!r}"
                )
        if chunk_seconds < 0 or overlap_seconds < 0:
            raise ValueError("chunk and overlap lengths must be positive")
        chunk = int(round(chunk_seconds * self.sample_rate))
        overlap = int(round(overlap_seconds * self.sample_rate))
        min_overlap = self.kernel_size
        if overlap < min_overlap or overlap > chunk // 2:
            raise ValueError(
                f"the overlap must be between {min_overlap} samples "
                f"({min_overlap / self.sample_rate:.3f} s) and half the "
                f"chunk ({chunk_seconds / 2:g} s); got {overlap_seconds:g} s"
            )
        return chunk, overlap

    def stream_file(
        self,
        path,
        chunk_seconds=DEFAULT_CHUNK_SECONDS,
        overlap_seconds=DEFAULT_OVERLAP_SECONDS,
        output_sample_rate=None,
        progress=None,
    ):
        """Opens and checks ``path``; returns a ``SeparationStream``.

        The file is read in blocks, downmixed, resampled to the model rate,
        separated in overlapping chunks (files no longer than one chunk are
        separated in one go), resampled to the output rate and trimmed to
        the exact output length. Input problems are raised here, before any
        output is produced, as ``AudioInputError``.

        Arguments
        ---------
        path : str
            Local audio file.
        chunk_seconds : float or None
            Chunk length; ``None`` or 0 separates the whole file at once.
        overlap_seconds : float
            Overlap between chunks (a finite number when chunking).
        output_sample_rate : int, optional
            Rate of the tracks, positive (default ``None``: the file's
            rate).
        progress : callable, optional
            Called with the number of input frames read after each block.

        Returns
        -------
        SeparationStream
        """
        chunk, overlap = self._chunk_sizes(chunk_seconds, overlap_seconds)
        if output_sample_rate is not None and not (
            isinstance(output_sample_rate, numbers.Real)
            and not isinstance(output_sample_rate, bool)
            and output_sample_rate > 0
            and float(output_sample_rate).is_integer()
        ):
            raise ValueError(
                f"output_sample_rate must be a whole positive rate in Hz "
                f"(or None for the file's rate), got {output_sample_rate!r}"
            )
        path = os.fspath(path)
        audio = open_audio(path)
        rate_in = audio.sample_rate
        need = self.min_input_frames(rate_in)
        if audio.frames < need:
            raise AudioInputError(
                path,
                f"too short: {audio.frames} samples "
                f"({1000 * audio.duration:.2f} ms at {rate_in} Hz); the "
                f"model needs at least one encoder frame, {need} samples "
                f"({1000 * need / rate_in:.2f} ms) at this rate",
            )
        rate_out = int(output_sample_rate or rate_in)
        if rate_out <= 0:
            raise ValueError(f"invalid output sample rate {rate_out}")
        num_frames = resampled_length(audio.frames, rate_in, rate_out)

        def separate_fn(mix):
            # float32 tracks whatever the model's precision
            return self.separate_batch(mix).cpu().float()

        stream = SeparationStream(
            audio, None, rate_out, num_frames, self.num_spks
        )
        stream.progress = progress

        def report(frames):
            if stream.progress is not None:
                stream.progress(frames)

        stream._blocks = self._stream_blocks(
            audio, chunk, overlap, separate_fn, rate_out, num_frames, report
        )
        return stream

    def _stream_blocks(
        self, audio, chunk, overlap, separate_fn, rate_out, total, progress
    ):
        """Generator behind ``stream_file``: yields [n, S] CPU tensors."""
        down = StreamResampler(audio.sample_rate, self.sample_rate)
        up = StreamResampler(self.sample_rate, rate_out)
        chunker = ChunkedSeparator(separate_fn, chunk, overlap,
                                   self.sample_rate, source=audio.path)
        emitted = 0

        def out_blocks(est_blocks):
            # est [1, n, S] at the model rate -> [n', S] at the output rate
            nonlocal emitted
            for est in est_blocks:
                y = up.push(est[0].transpose(0, 1)).transpose(0, 1)
                y = y[: total - emitted]
                emitted += y.shape[0]
                if y.shape[0]:
                    yield y

        read = 0
        for block in audio.blocks():
            read += block.shape[1]
            x = down.push(block)
            if x.shape[1]:
                yield from out_blocks(chunker.push(x))
            progress(read)
        tail = down.flush()
        est_blocks = (chunker.push(tail) if tail.shape[1] else [])
        yield from out_blocks(est_blocks + chunker.flush())
        rest = up.flush().transpose(0, 1)[: total - emitted]
        emitted += rest.shape[0]
        if rest.shape[0]:
            yield rest
        if emitted < total:
            # resampling round trips can be a sample short
            yield torch.zeros(total - emitted, self.num_spks)

    def separate_file(
        self,
        path,
        savedir=None,
        normalize="none",
        chunk_seconds=DEFAULT_CHUNK_SECONDS,
        overlap_seconds=DEFAULT_OVERLAP_SECONDS,
        output_sample_rate=None,
    ):
        """Separates an audio file.

        Arguments
        ---------
        path : str
            Local file, or an http(s) URL (fetched into ``savedir``).
        savedir : str, optional
            Where a downloaded file is stored.
        normalize : str
            ``"none"`` (default): the model's estimates as they are;
            ``"peak"``: each track scaled to a peak of 1 (SpeechBrain's
            ``separate_file`` behaviour; silent tracks stay silent).
        chunk_seconds : float or None
            Chunk length for long files (``None``/0: no chunking).
        overlap_seconds : float
            Overlap between chunks (a finite number when chunking).
        output_sample_rate : int, optional
            Rate of the result, positive (default ``None``: the file's
            rate).

        Returns
        -------
        torch.Tensor
            [1, T, num_spks] on the CPU, where T is the file's length at
            the output rate.
        """
        if normalize not in ("none", "peak", None):
            raise ValueError(
                f"normalize must be 'none' or 'peak', got {normalize!r}"
            )
        path = os.fspath(path)
        if path.startswith(("http://", "https://")):
            from speechbrain.utils.data_utils import split_path
            from speechbrain.utils.fetching import LocalStrategy, fetch

            source, name = split_path(path)
            path = str(fetch(name, source=source, savedir=savedir,
                             local_strategy=LocalStrategy.SYMLINK))
        stream = self.stream_file(
            path, chunk_seconds, overlap_seconds, output_sample_rate
        )
        est = stream.read_all().unsqueeze(0)
        if normalize == "peak":
            est = peak_normalize(est)
        return est

    def separate_files(self, paths, **kwargs):
        """Separates several files; returns a list of ``separate_file``
        results (keyword arguments as there)."""
        return [self.separate_file(p, **kwargs) for p in paths]


def peak_normalize(est):
    """Scales each track of ``est`` [B, T, S] to a peak of 1.

    All-zero tracks are left as they are (SpeechBrain divides them by zero).

    Example
    -------
    >>> est = torch.tensor([[[0.5, 0.0], [-0.25, 0.0]]])
    >>> peak_normalize(est)[0].tolist()
    [[1.0, 0.0], [-0.5, 0.0]]
    """
    peak = est.abs().amax(dim=1, keepdim=True)
    return est / torch.where(peak > 0, peak, torch.ones_like(peak))


def _looks_local(source):
    """Whether a model source is meant as a local path (not a HF id/URL).

    Only ``<owner>/<name>`` is a Hugging Face id and only ``...://...`` a
    URL; anything else is a local path (a mistyped folder then fails at
    once instead of going to the network).

    Example
    -------
    >>> [_looks_local(s) for s in ["mymodel", "models/", "a/b/c",
    ...                            "speechbrain/sepformer-wsj02mix",
    ...                            "https://example.org/a/b"]]
    [True, True, True, False, False]
    """
    if "://" in source:
        return False
    return (
        os.path.exists(source)
        or os.path.isabs(source)
        or source.startswith((".", "~"))
        or source.endswith(("/", os.sep))
        or source.count("/") != 1
        or os.sep != "/" and os.sep in source
    )


def checkpoint_problem(err):
    """Says in one line why ``torch.load`` could not read a file.

    Arguments
    ---------
    err : Exception
        What ``torch.load(path, weights_only=True)`` raised.

    Returns
    -------
    str
        E.g. ``"not a PyTorch checkpoint (Unsupported operand 103)"``.

    Example
    -------
    >>> checkpoint_problem(KeyError(174812789))
    'not a PyTorch checkpoint (unrecognised data)'
    >>> checkpoint_problem(RuntimeError("PytorchStreamReader failed. More"))
    'not a PyTorch checkpoint (RuntimeError: PytorchStreamReader failed)'
    """
    text = str(err)
    marker = "WeightsUnpickler error:"
    if marker in text:
        # torch's weights-only message: the reason follows the marker
        detail = text.split(marker, 1)[1].strip().splitlines()
        detail = detail[0] if detail else "unsupported content"
        detail = detail.split(". ")[0].rstrip(".")
        return f"not a PyTorch checkpoint of plain tensors ({detail})"
    if isinstance(err, KeyError):
        # torch's legacy reader looked its first bytes up as a magic number
        return "not a PyTorch checkpoint (unrecognised data)"
    if isinstance(err, EOFError):
        return "not a PyTorch checkpoint (empty or truncated file)"
    detail = text.strip().splitlines()[0] if text.strip() else ""
    detail = detail.split(". ")[0].rstrip(".")
    name = type(err).__name__
    return (
        f"not a PyTorch checkpoint ({name}: {detail})" if detail
        else f"not a PyTorch checkpoint ({name})"
    )


#: Loggers of SpeechBrain's parameter transfer (their warnings repeat the
#: whole module for every key that does not match).
_TRANSFER_LOGGERS = (
    "speechbrain.utils.checkpoints",
    "speechbrain.utils.parameter_transfer",
)


class _HoldBack(logging.Filter):
    """Logger filter that keeps warnings (and worse) for later."""

    def __init__(self):
        super().__init__()
        self.records = []

    def filter(self, record):
        if record.levelno >= logging.WARNING:
            self.records.append(record)
            return False
        return True


@contextlib.contextmanager
def _held_back_transfer_warnings():
    """Holds back SpeechBrain's parameter-transfer warnings: dropped if the
    block raises (our error says it better), re-emitted if it succeeds."""
    loggers = [logging.getLogger(name) for name in _TRANSFER_LOGGERS]
    hold = _HoldBack()
    for logger in loggers:
        logger.addFilter(hold)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(hold)
    for record in hold.records:
        logging.getLogger(record.name).handle(record)


def _declared_paths(yaml_path, overrides=None):
    """The ``pretrainer: ... paths:`` entries of a folder's yaml, read
    without building anything, with ``overrides`` (a dict or yaml text, as
    in ``from_hparams``) applied; ``{}`` when there are none. A yaml whose
    references cannot be resolved is a ``ModelLoadError``.

    A SpeechBrain user's own inference yaml often points its Pretrainer at
    a training run's checkpoint files instead of copying them next to the
    yaml; SpeechBrain's loader follows those paths, and so do we.

    Example
    -------
    >>> path = os.path.join(str(getfixture("tmpdir")), "h.yaml")
    >>> _ = open(path, "w").write(
    ...     "ckpt: /run/save/CKPT+1\\n"
    ...     "pretrainer: !new:speechbrain.utils.parameter_transfer."
    ...     "Pretrainer\\n    paths:\\n"
    ...     "        masknet: !ref <ckpt>/masknet.ckpt\\n")
    >>> _declared_paths(path)
    {'masknet': '/run/save/CKPT+1/masknet.ckpt'}
    >>> _declared_paths(path, {"ckpt": "/run/save/CKPT+2"})
    {'masknet': '/run/save/CKPT+2/masknet.ckpt'}
    """
    from hyperpyyaml import resolve_references
    from ruamel.yaml import YAML

    try:
        with open(yaml_path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as err:
        raise ModelLoadError(
            f"{yaml_path}: cannot be read: {first_line(err)}"
        ) from None
    try:
        top = YAML(typ="rt").load(text)
    except Exception:
        top = {}  # a syntax error: named by resolve_references below
    if top is None:  # nothing, or only comments
        raise ModelLoadError(f"{yaml_path}: is empty (no settings)")
    if not isinstance(top, dict):
        raise ModelLoadError(
            f"{yaml_path}: is not a mapping of settings (key: value lines)"
        )
    try:
        text = resolve_references(text, overrides).getvalue()
    except Exception as err:
        # e.g. a !ref to an entry the yaml lacks: said here, not taken for
        # checkpoints missing from the folder
        raise ModelLoadError(
            f"{yaml_path}: cannot be loaded: {first_line(err)}"
        ) from None
    try:
        paths = YAML(typ="rt").load(text)["pretrainer"]["paths"]
        return {str(k): str(v) for k, v in paths.items()}
    except Exception:
        return {}


def _checkpoint_path(folder, declared, name):
    """Where the ``name`` checkpoint of a local folder is: its entry in
    ``declared`` (the yaml's Pretrainer ``paths``) when that names an
    existing local file (a relative one as SpeechBrain reads it: from the
    working folder), else ``<folder>/<name>.ckpt``.

    Example
    -------
    >>> _checkpoint_path("model", {"masknet": "/nowhere/m.ckpt"}, "masknet")
    'model/masknet.ckpt'
    """
    path = _declared_path(declared, name)
    if path and os.path.isfile(path):
        return path
    return os.path.join(folder, f"{name}.ckpt")


def _declared_path(declared, name):
    """The yaml's Pretrainer path of ``name`` (``~`` expanded), or ``""``
    when the yaml gives none."""
    return os.path.expanduser(str(declared.get(name, "")))


def _check_folder(folder, hparams_file, module_names, overrides=None):
    """Clear errors for a missing folder or missing files (checkpoints
    where the yaml's Pretrainer ``paths``, with ``overrides``, put them)."""
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            raise ModelLoadError(
                f"{folder}: is a file, not a model folder (give the folder "
                "that holds hyperparams.yaml and the checkpoints)"
            )
        raise ModelLoadError(f"{folder}: model folder not found")
    run_hint = (
        " (it is a recipe's run folder: export a pretrained folder from its "
        "best checkpoint with python -m speechbrain_mossformer."
        "export_checkpoint FOLDER OUT_DIR, then load OUT_DIR)"
        if os.path.isdir(os.path.join(folder, "save")) else ""
    )
    if not os.path.isfile(os.path.join(folder, hparams_file)):
        hint = run_hint
        if os.path.isfile(os.path.join(folder, "masknet.bin")):
            # the official release, as downloaded
            hint = (
                " (it holds masknet.bin, as the official ModelScope release "
                "does: convert it first with python -m "
                "speechbrain_mossformer.convert FOLDER OUT_DIR, then load "
                "OUT_DIR)"
            )
        raise ModelLoadError(
            f"{folder}: not a pretrained folder, missing {[hparams_file]}"
            + hint
        )
    declared = _declared_paths(os.path.join(folder, hparams_file), overrides)
    missing = [
        f"{name}.ckpt" for name in module_names
        if not os.path.isfile(_checkpoint_path(folder, declared, name))
    ]
    if missing:
        where = [
            declared[name] for name in module_names
            if name in declared and f"{name}.ckpt" in missing
        ]
        raise ModelLoadError(
            f"{folder}: not a pretrained folder, missing {missing}"
            + (f" (nor found at the pretrainer's paths {where})"
               if where else run_hint)
        )
    for name in module_names:
        path = _declared_path(declared, name)
        if path and not os.path.isfile(path):
            # the folder holds it, but SpeechBrain follows the yaml and
            # would take the path's folder for a Hugging Face id
            raise ModelLoadError(
                f"{os.path.join(folder, hparams_file)}: the pretrainer's "
                f"path for '{name}' ({path}) is not a file (relative paths "
                "are read from the working folder)"
            )


def _strict_check_folder(folder, hparams_file, module_names,
                         overrides=None, overrides_must_match=True):
    """Checks a folder's yaml and every checkpoint against it.

    Raises a one-line ``ModelLoadError`` naming the file and the problem
    (unreadable yaml, missing 'modules' or 'pretrainer' entry, unreadable
    checkpoint, missing/unexpected key or shape mismatch); returns if all
    is well. ``overrides`` are applied as in ``from_hparams``.
    """
    from hyperpyyaml import load_hyperpyyaml

    yaml_path = os.path.join(folder, hparams_file)
    try:
        with open(yaml_path, encoding="utf-8") as f:
            hparams = load_hyperpyyaml(
                f, overrides or {}, overrides_must_match
            )
    except Exception as err:
        raise ModelLoadError(
            f"{yaml_path}: cannot be loaded: {first_line(err)}"
        ) from None
    if not isinstance(hparams, dict):
        raise ModelLoadError(f"{yaml_path}: expected a mapping of entries")
    for entry in ("modules", "pretrainer"):
        if entry not in hparams:
            raise ModelLoadError(
                f"{yaml_path}: no '{entry}' entry (a pretrained folder's "
                f"yaml defines 'modules' and 'pretrainer')"
            )
    modules = hparams["modules"]
    lacking = [
        name for name in module_names
        if not isinstance(modules, dict) or modules.get(name) is None
    ]
    if lacking:
        raise ModelLoadError(
            f"{yaml_path}: 'modules' lacks {lacking}; a MossFormer "
            f"separator needs {list(module_names)}"
        )
    given = f" with overrides {overrides}" if overrides else ""
    declared = getattr(hparams["pretrainer"], "paths", None) or {}
    for name in module_names:
        load_checked_state(
            _checkpoint_path(folder, declared, name), modules[name],
            name, f"{hparams_file}{given}",
        )


def load_checked_state(path, module, name, yaml_name):
    """Reads one checkpoint and checks it strictly against ``module``.

    Arguments
    ---------
    path : str
        The ``.ckpt`` file.
    module : torch.nn.Module
        The module the yaml builds.
    name : str
        The module's name (``encoder``, ``masknet``, ``decoder``).
    yaml_name : str
        How to name the yaml in a mismatch message.

    Returns
    -------
    dict
        The state dict, every key and shape matching ``module``.

    Raises
    ------
    ModelLoadError
        One line naming ``path``: unreadable, not a state dict, or a key
        or shape that does not match ``yaml_name``.

    Example
    -------
    >>> path = os.path.join(str(getfixture("tmpdir")), "lin.ckpt")
    >>> torch.save(torch.nn.Linear(2, 3).state_dict(), path)
    >>> sorted(load_checked_state(path, torch.nn.Linear(2, 3), "lin", "y"))
    ['bias', 'weight']
    >>> try:
    ...     load_checked_state(path, torch.nn.Linear(2, 4), "lin", "y")
    ... except ModelLoadError as err:
    ...     print("does not match y" in str(err))
    True
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ModelLoadError(f"{path}: {checkpoint_problem(err)}") from None
    if not isinstance(state, dict):
        raise ModelLoadError(
            f"{path}: expected a state dict, got {type(state).__name__}"
        )
    try:
        check_state_dict(module, state, name)
    except ValueError as err:
        raise ModelLoadError(
            f"{path}: does not match {yaml_name}: {err}"
        ) from None
    return state


def _check_device(device):
    """Clear error for a device that this machine does not have."""
    problem = device_problem(device)
    if problem is not None:
        raise ModelLoadError(problem)


# ---------------------------------------------------------------------------
# foreign_class support
# ---------------------------------------------------------------------------

#: Text of the ``custom.py`` placed in pretrained folders.
CUSTOM_INTERFACE = '''\
"""Interface for speechbrain.inference.interfaces.foreign_class.

    from speechbrain.inference.interfaces import foreign_class
    model = foreign_class(source="<this folder>", pymodule_file="custom.py",
                          classname="MossFormerSeparation")

Needs the speechbrain_mossformer package (hyperparams.yaml uses it too).
"""

from speechbrain_mossformer.inference import MossFormerSeparation

__all__ = ["MossFormerSeparation"]
'''


def add_custom_interface(folder):
    """Writes ``custom.py`` into a pretrained folder, for ``foreign_class``.

    Arguments
    ---------
    folder : str
        A pretrained folder.

    Returns
    -------
    str
        Path of the written file.

    Example
    -------
    >>> path = add_custom_interface(str(getfixture("tmpdir")))
    >>> os.path.basename(path)
    'custom.py'
    """
    def write(temporary):
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(CUSTOM_INTERFACE)

    path = os.path.join(folder, "custom.py")
    write_replacing(path, write)
    return path
