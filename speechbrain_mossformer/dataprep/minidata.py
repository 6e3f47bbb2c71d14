"""Tiny separation corpora in the exact layouts of the real ones.

The builders below cut short utterances out of the real speech clips bundled
in ``data/speech`` (21 speakers, 16 kHz; see ``data/speech/manifest.csv`` and
``SOURCES.md`` for their origin and licences) and write small versions of
WSJ0-2/3mix, raw WSJ0 ``si_tr_s``, WHAM!, WHAMR!, WHAM! noise, Libri2/3Mix
and raw LibriSpeech, with the folder and file naming of the real corpora,
so that data preparation, dynamic mixing and recipe smoke tests can run
offline in seconds.

* Utterances: from each clip, the most energetic non-overlapping windows of
  ``duration`` seconds (at most 15 dB below the clip's best, so they hold
  speech), each cut to a random 60-100 % of ``duration`` so that ``min``
  and ``max`` modes differ.
* Speakers are split speaker-disjointly into train / valid / test (13 / 4 /
  4 speakers by default); everything is deterministic given ``seed``.
* Mixtures: WSJ0-mix style (sources at equal RMS, then relative gains of
  +-U(0, 2.5) dB written in the file name) or LibriMix style (sources at
  U(-33, -25) LUFS, noise at U(-38, -30) LUFS); ``min`` truncates to the
  shortest source, ``max`` zero-pads to the longest. If a mixture or a
  source would exceed a peak of 0.9, all its files are scaled together.
* Noise is **synthetic**: Gaussian noise shaped to a random 1/f^a spectrum
  (a in [0.5, 1.8]) with a slow random amplitude modulation. It is
  non-speech (no babble) and stands in for WHAM! noise.
* Room impulse responses are **synthetic**: a direct-path peak after a
  random delay of 1-5 ms, then exponentially decaying Gaussian noise with a
  random T60 in [0.2, 0.6] s.
* Files are 16-bit PCM wav (LibriSpeech: 16-bit FLAC; WHAM!/WHAMR!: 32-bit
  float wav, as their scripts write).

From the command line (every corpus under ``OUT_ROOT``, then the recipe
options that use each)::

    python -m speechbrain_mossformer.dataprep.minidata OUT_ROOT

Authors
 * speechbrain-mossformer contributors 2026
"""

import csv
import functools
import math
import os
import zlib

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from speechbrain_mossformer.dataprep.dynamic_mixing import (
    normalize_loudness,
    prepare_rir,
    reverberate_aligned,
)

__all__ = [
    "default_speech_dir",
    "speaker_splits",
    "synthetic_noise",
    "synthetic_rir",
    "make_wsj0mix",
    "make_wsj0_si_tr_s",
    "make_wham",
    "make_wham_noise",
    "make_rirs",
    "make_librimix",
    "make_librispeech",
    "make_all",
]

#: Chapter number used for every LibriSpeech-style utterance.
CHAPTER = "100"
_MAX_PEAK = 0.9
_SPLITS = ("train", "valid", "test")


def default_speech_dir():
    """Returns ``<repository root>/data/speech``, the bundled clips.

    Returns
    -------
    str
        The folder (computed from this file's location).

    Example
    -------
    >>> os.path.basename(default_speech_dir())
    'speech'
    """
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    return os.path.join(repo, "data", "speech")


def _rng(seed, *tags):
    """Independent generator for a (seed, tag...) combination."""
    keys = [int(seed)]
    for tag in tags:
        if isinstance(tag, str):
            keys.append(zlib.crc32(tag.encode("utf-8")))
        else:
            keys.append(int(tag))
    return np.random.default_rng(keys)


@functools.lru_cache(maxsize=4)
def _load_clips(speech_dir):
    """Reads the manifest and every clip (16 kHz float32), once."""
    manifest = os.path.join(speech_dir, "manifest.csv")
    if not os.path.isfile(manifest):
        raise FileNotFoundError(
            "No manifest.csv in the speech folder %s" % speech_dir
        )
    clips = []
    with open(manifest, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            path = os.path.join(speech_dir, row["file"])
            signal, rate = sf.read(path, dtype="float32", always_2d=True)
            clips.append(
                {
                    "file": row["file"],
                    "speaker": row["speaker"],
                    "gender": row.get("gender", "U"),
                    "signal": signal[:, 0],
                    "rate": rate,
                }
            )
    return tuple(clips)


@functools.lru_cache(maxsize=8)
def _resampled_clips(speech_dir, sample_rate):
    """Clips resampled to ``sample_rate``."""
    out = []
    for clip in _load_clips(speech_dir):
        x = clip["signal"]
        if clip["rate"] != sample_rate:
            g = math.gcd(sample_rate, clip["rate"])
            x = resample_poly(x, sample_rate // g, clip["rate"] // g)
        out.append((clip["speaker"], np.asarray(x, dtype=np.float64)))
    return tuple(out)


def _utterances(speech_dir, sample_rate, duration, seed, per_clip):
    """``{speaker: [signal, ...]}``: the ``per_clip`` most energetic
    windows of each clip, each cut to 60-100 % of ``duration``."""
    win = max(1, int(round(duration * sample_rate)))
    bank = {}
    for k, (spk, x) in enumerate(_resampled_clips(speech_dir, sample_rate)):
        n_win = len(x) // win
        if n_win == 0:
            continue
        frames = x[: n_win * win].reshape(n_win, win)
        energy = np.mean(frames**2, axis=1)
        best = np.argsort(-energy, kind="stable")[:per_clip]
        # Drop near-silent windows (more than 15 dB below the best one).
        best = sorted(w for w in best if energy[w] >= energy[best[0]] / 31.6)
        rng = _rng(seed, "utt", k)
        for w in best:
            n = int(win * rng.uniform(0.6, 1.0))
            offset = int(rng.integers(0, win - n + 1))
            seg = frames[w, offset : offset + n].copy()
            bank.setdefault(spk, []).append(seg)
    return bank


def speaker_splits(speakers, seed=0, n_valid=4, n_test=4):
    """Splits speakers into disjoint train / valid / test sets.

    Arguments
    ---------
    speakers : list of str
        Speaker ids.
    seed : int
        Random seed.
    n_valid : int
        Number of validation speakers.
    n_test : int
        Number of test speakers.

    Returns
    -------
    dict
        ``{"train": [...], "valid": [...], "test": [...]}``, each sorted.

    Example
    -------
    >>> s = speaker_splits(["a%d" % i for i in range(10)], 0, 2, 2)
    >>> [len(s[k]) for k in ("train", "valid", "test")]
    [6, 2, 2]
    """
    order = sorted(speakers)
    _rng(seed, "split").shuffle(order)
    if len(order) < n_valid + n_test + 1:
        raise ValueError("Not enough speakers (%d) to split" % len(order))
    return {
        "test": sorted(order[:n_test]),
        "valid": sorted(order[n_test : n_test + n_valid]),
        "train": sorted(order[n_test + n_valid :]),
    }


def synthetic_noise(rng, num_samples, sample_rate):
    """Non-speech coloured noise: Gaussian noise with a random 1/f^a
    spectrum (a in [0.5, 1.8]) and a slow random amplitude modulation,
    at unit RMS.

    Arguments
    ---------
    rng : numpy.random.Generator
        Random generator.
    num_samples : int
        Length.
    sample_rate : int
        Sample rate in Hz.

    Returns
    -------
    numpy.ndarray
        ``[num_samples]``.

    Example
    -------
    >>> import numpy as np
    >>> n = synthetic_noise(np.random.default_rng(0), 8000, 8000)
    >>> n.shape, round(float(np.sqrt(np.mean(n ** 2))), 3)
    ((8000,), 1.0)
    """
    white = rng.standard_normal(num_samples)
    spec = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(num_samples, 1.0 / sample_rate)
    alpha = rng.uniform(0.5, 1.8)
    spec = spec / np.maximum(freqs, 20.0) ** (alpha / 2.0)
    noise = np.fft.irfft(spec, num_samples)
    t = np.arange(num_samples) / sample_rate
    rate = rng.uniform(0.3, 2.0)
    depth = rng.uniform(0.0, 0.5)
    noise *= 1.0 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 6))
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def synthetic_rir(rng, sample_rate, t60_range=(0.2, 0.6)):
    """A synthetic room impulse response: silence for a random 1-5 ms, a
    direct-path peak of 0.9, then exponentially decaying Gaussian noise
    (60 dB decay over a random T60) starting 2 ms later.

    Arguments
    ---------
    rng : numpy.random.Generator
        Random generator.
    sample_rate : int
        Sample rate in Hz.
    t60_range : tuple
        Range of the reverberation time in seconds.

    Returns
    -------
    numpy.ndarray
        The impulse response; its absolute peak is the direct path.

    Example
    -------
    >>> import numpy as np
    >>> h = synthetic_rir(np.random.default_rng(0), 8000)
    >>> float(np.max(np.abs(h))) == float(h[np.argmax(np.abs(h))]) == 0.9
    True
    """
    t60 = rng.uniform(*t60_range)
    delay = int(rng.uniform(0.001, 0.005) * sample_rate)
    gap = max(1, int(0.002 * sample_rate))
    n_tail = int(t60 * sample_rate)
    t = np.arange(n_tail) / sample_rate
    tail = rng.standard_normal(n_tail) * np.exp(-6.908 * t / t60)
    tail *= rng.uniform(0.2, 0.5) / np.max(np.abs(tail))
    rir = np.zeros(delay + gap + n_tail)
    rir[delay] = 1.0
    rir[delay + gap :] = tail
    return 0.9 * rir


def _write(path, signal, sample_rate, subtype="PCM_16"):
    """Writes 16-bit PCM (wav or flac by extension), or another WAV
    ``subtype`` (``"FLOAT"``: 32-bit float, as the WHAM! scripts write)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fmt = "FLAC" if path.endswith(".flac") else "WAV"
    sf.write(
        path,
        np.clip(signal, -1.0, 1.0).astype(np.float32),
        sample_rate,
        format=fmt,
        subtype=subtype,
    )


def _fit_length(signals, version):
    """Truncates (min) or zero-pads at the end (max) to a common length."""
    lengths = [len(s) for s in signals]
    if version == "min":
        n = min(lengths)
        return [s[:n] for s in signals]
    n = max(lengths)
    return [np.pad(s, (0, n - len(s))) for s in signals]


def _limit_peak(signals):
    """Scales a dict of signals together so that no peak exceeds 0.9."""
    peak = max(float(np.max(np.abs(s))) for s in signals.values())
    if peak > _MAX_PEAK:
        return {k: s * (_MAX_PEAK / peak) for k, s in signals.items()}
    return signals


def _rms_normalize(x, level_db=-25.0):
    """Sets the RMS level in dB (re 1.0)."""
    rms = np.sqrt(np.mean(x**2))
    return x if rms == 0 else x * (10.0 ** (level_db / 20.0) / rms)


def _check_args(sample_rate, version, num_spks=2):
    """Validates the common options."""
    if version not in ("min", "max"):
        raise ValueError("version must be 'min' or 'max', got %r" % version)
    if sample_rate % 1000:
        raise ValueError("sample_rate must be a multiple of 1000")
    if num_spks not in (2, 3):
        raise ValueError("num_spks must be 2 or 3, got %r" % num_spks)
    return "wav%dk" % (sample_rate // 1000)


def _wsj_codes(speakers):
    """Three-character WSJ0-like speaker codes (``s00`` ...)."""
    return {spk: "s%02d" % k for k, spk in enumerate(sorted(speakers))}


class _Corpus:
    """Utterance bank split by speakers, shared by the builders."""

    def __init__(self, speech_dir, sample_rate, duration, seed, per_clip=3):
        speech_dir = os.path.abspath(speech_dir or default_speech_dir())
        self.bank = _utterances(
            speech_dir, sample_rate, duration, seed, per_clip
        )
        # Split every speaker of the clips, not only those with a clip long
        # enough for ``duration``: the split must not depend on it, or a
        # mixture set and a dynamic-mixing pool built with other durations
        # would share test speakers. A speaker without a long enough clip
        # is left out of its split.
        speakers = {spk for spk, _ in _resampled_clips(speech_dir, sample_rate)}
        self.splits = {
            split: [spk for spk in members if spk in self.bank]
            for split, members in speaker_splits(sorted(speakers), seed).items()
        }
        self.codes = _wsj_codes(self.bank)

    def draw(self, rng, split, num_spks):
        """Distinct speakers and one utterance index each."""
        speakers = self.splits[split]
        chosen = rng.choice(len(speakers), num_spks, replace=False)
        out = []
        for k in chosen:
            spk = speakers[k]
            out.append((spk, int(rng.integers(len(self.bank[spk])))))
        return out

    def wsj_id(self, spk, utt):
        """8-character WSJ0-like utterance id (speaker code first)."""
        return "%sc%04d" % (self.codes[spk], utt)


def _wsj_mixture(corpus, rng, split, num_spks, version):
    """Sources with WSJ0-mix style relative gains and the file name."""
    draws = corpus.draw(rng, split, num_spks)
    if num_spks == 2:
        snr = rng.uniform(0.0, 2.5)
        gains = [snr, -snr]
    else:
        gains = list(rng.uniform(-2.5, 2.5, num_spks))
    parts, sources = [], []
    for (spk, utt), gain in zip(draws, gains):
        parts += [corpus.wsj_id(spk, utt), "%.4f" % gain]
        x = _rms_normalize(corpus.bank[spk][utt])
        sources.append(x * 10.0 ** (gain / 20.0))
    return "_".join(parts) + ".wav", _fit_length(sources, version)


def _unique(name, used):
    """Makes a file name unique within a split."""
    base, k = name, 1
    while name in used:
        name = base[:-4] + "_%d.wav" % k
        k += 1
    used.add(name)
    return name


def _write_splits(base, folders, counts, rng_tags, sample_rate, mixture,
                  subtype="PCM_16"):
    """Writes the mixtures of every split, one file per signal.

    Arguments
    ---------
    base : str
        ``<dataset>/wav<R>k/<version>`` folder.
    folders : sequence of str
        The train / valid / test folder names of the dataset.
    counts : sequence of int
        Number of mixtures per split, in the same order.
    rng_tags : tuple
        Tags of the per-split random generator (with the split name).
    sample_rate : int
        Sample rate of the files.
    mixture : callable
        ``mixture(rng, split) -> (file name, {subfolder: signal})``; the
        signals are scaled together to a safe peak, the name made unique
        within the split.
    subtype : str
        The files' sample format (``_write``).
    """
    for split, folder, count in zip(_SPLITS, folders, counts):
        split_dir = os.path.join(base, folder)
        rng = _rng(*rng_tags, split)
        used = set()
        for _ in range(count):
            name, files = mixture(rng, split)
            name = _unique(name, used)
            for sub, x in _limit_peak(files).items():
                _write(os.path.join(split_dir, sub, name), x, sample_rate,
                       subtype)


def make_wsj0mix(
    root,
    num_spks=2,
    sample_rate=8000,
    version="min",
    n_train=8,
    n_valid=4,
    n_test=4,
    duration=0.5,
    seed=0,
    speech_dir=None,
):
    """Builds a mini WSJ0-2mix / WSJ0-3mix.

    Layout: ``root/wsj0-mix/<N>speakers/wav<R>k/<version>/{tr,cv,tt}/
    {mix,s1,s2[,s3]}/<utt1>_<gain1>_<utt2>_<gain2>[...].wav``.

    Arguments
    ---------
    root : str
        Output root folder.
    num_spks : int
        2 or 3.
    sample_rate : int
        Sample rate (folder ``wav8k`` / ``wav16k``).
    version : str
        ``"min"`` or ``"max"``.
    n_train : int
        Number of training mixtures.
    n_valid : int
        Number of validation mixtures.
    n_test : int
        Number of test mixtures.
    duration : float
        Maximum utterance duration in seconds.
    seed : int
        Random seed.
    speech_dir : str or None
        Folder of the speech clips (default :func:`default_speech_dir`).

    Returns
    -------
    str
        The ``<N>speakers`` folder (the ``datapath`` of data preparation).

    Example
    -------
    >>> root = str(getfixture("tmpdir"))
    >>> path = make_wsj0mix(root, n_train=2, n_valid=1, n_test=1)
    >>> sorted(os.listdir(os.path.join(path, "wav8k", "min", "tr")))
    ['mix', 's1', 's2']
    """
    rate_folder = _check_args(sample_rate, version, num_spks)
    corpus = _Corpus(speech_dir, sample_rate, duration, seed)
    base = os.path.join(root, "wsj0-mix", "%dspeakers" % num_spks)

    def mixture(rng, split):
        name, sources = _wsj_mixture(corpus, rng, split, num_spks, version)
        files = {"mix": np.sum(sources, axis=0)}
        for i, s in enumerate(sources):
            files["s%d" % (i + 1)] = s
        return name, files

    _write_splits(
        os.path.join(base, rate_folder, version),
        ("tr", "cv", "tt"),
        (n_train, n_valid, n_test),
        (seed, "wsj0mix", num_spks),
        sample_rate,
        mixture,
    )
    return base


def make_wsj0_si_tr_s(
    root, sample_rate=16000, duration=1.0, per_clip=3, seed=0, speech_dir=None
):
    """Builds a mini raw WSJ0 training set for dynamic mixing.

    Layout: ``root/wsj0/si_tr_s/<spk>/<utt>.wav`` where ``<spk>`` is a
    3-character code and ``<utt>`` an 8-character id starting with it (as
    in WSJ0), for the *training* speakers only.

    Arguments
    ---------
    root : str
        Output root folder.
    sample_rate : int
        Sample rate (raw WSJ0 is 16 kHz).
    duration : float
        Maximum utterance duration in seconds.
    per_clip : int
        Utterances cut from each clip.
    seed : int
        Random seed.
    speech_dir : str or None
        Folder of the speech clips.

    Returns
    -------
    str
        The ``si_tr_s`` folder.

    Example
    -------
    >>> path = make_wsj0_si_tr_s(str(getfixture("tmpdir")))
    >>> len(os.listdir(path))
    13
    """
    corpus = _Corpus(speech_dir, sample_rate, duration, seed, per_clip)
    base = os.path.join(root, "wsj0", "si_tr_s")
    for spk in corpus.splits["train"]:
        code = corpus.codes[spk]
        for utt, x in enumerate(corpus.bank[spk]):
            path = os.path.join(base, code, corpus.wsj_id(spk, utt) + ".wav")
            _write(path, _rms_normalize(x), sample_rate)
    return base


def make_wham(
    root,
    reverb=False,
    sample_rate=8000,
    version="min",
    n_train=8,
    n_valid=4,
    n_test=4,
    duration=0.5,
    seed=0,
    speech_dir=None,
):
    """Builds a mini WHAM! (or, with ``reverb``, WHAMR!).

    WHAM!: ``root/wham_original/wav<R>k/<version>/{tr,cv,tt}/{mix_both,
    mix_clean,mix_single,s1,s2,noise}``. WHAMR!: ``root/whamr/...`` with
    ``mix_{both,clean,single}_{reverb,anechoic}``, ``s{1,2}_anechoic``,
    ``s{1,2}_reverb`` and ``noise``. The noise (synthetic, see the module
    docstring) is at an SNR of U(-6, 3) dB against the louder source; each
    WHAMR! source has its own synthetic RIR, aligned on the direct path so
    that ``s<i>_reverb`` and ``s<i>_anechoic`` are time-aligned. The
    files are 32-bit float WAVs, as the corpus' own scripts write them.

    Arguments
    ---------
    root : str
        Output root folder.
    reverb : bool
        WHAMR! instead of WHAM!.
    sample_rate : int
        Sample rate.
    version : str
        ``"min"`` or ``"max"``.
    n_train : int
        Number of training mixtures.
    n_valid : int
        Number of validation mixtures.
    n_test : int
        Number of test mixtures.
    duration : float
        Maximum utterance duration in seconds.
    seed : int
        Random seed.
    speech_dir : str or None
        Folder of the speech clips.

    Returns
    -------
    str
        The ``wham_original`` or ``whamr`` folder.

    Example
    -------
    >>> root = str(getfixture("tmpdir"))
    >>> path = make_wham(root, n_train=1, n_valid=1, n_test=1)
    >>> sorted(os.listdir(os.path.join(path, "wav8k", "min", "cv")))
    ['mix_both', 'mix_clean', 'mix_single', 'noise', 's1', 's2']
    """
    rate_folder = _check_args(sample_rate, version)
    corpus = _Corpus(speech_dir, sample_rate, duration, seed)
    base = os.path.join(root, "whamr" if reverb else "wham_original")

    def mixture(rng, split):
        name, (s1, s2) = _wsj_mixture(corpus, rng, split, 2, version)
        noise = synthetic_noise(rng, len(s1), sample_rate)
        snr = rng.uniform(-6.0, 3.0)
        if reverb:
            r1, r2 = (
                reverberate_aligned(
                    s, prepare_rir(synthetic_rir(rng, sample_rate))
                )
                for s in (s1, s2)
            )
        else:
            r1, r2 = s1, s2
        power = max(np.mean(r1**2), np.mean(r2**2))
        noise *= np.sqrt(power / 10.0 ** (snr / 10.0))
        if not reverb:
            return name, {
                "mix_both": s1 + s2 + noise,
                "mix_clean": s1 + s2,
                "mix_single": s1 + noise,
                "s1": s1,
                "s2": s2,
                "noise": noise,
            }
        return name, {
            "mix_both_reverb": r1 + r2 + noise,
            "mix_clean_reverb": r1 + r2,
            "mix_single_reverb": r1 + noise,
            "mix_both_anechoic": s1 + s2 + noise,
            "mix_clean_anechoic": s1 + s2,
            "mix_single_anechoic": s1 + noise,
            "s1_anechoic": s1,
            "s2_anechoic": s2,
            "s1_reverb": r1,
            "s2_reverb": r2,
            "noise": noise,
        }

    _write_splits(
        os.path.join(base, rate_folder, version),
        ("tr", "cv", "tt"),
        (n_train, n_valid, n_test),
        (seed, "wham", int(reverb)),
        sample_rate,
        mixture,
        # 32-bit float, as the WHAM! and WHAMR! scripts write
        # (sf.write(..., subtype='FLOAT'))
        subtype="FLOAT",
    )
    return base


def make_wham_noise(
    root,
    sample_rate=8000,
    n_train=4,
    n_valid=2,
    n_test=2,
    duration=2.0,
    seed=0,
):
    """Builds a mini WHAM! noise set (synthetic, non-speech noise).

    Layout: ``root/wham_noise/{tr,cv,tt}/<name>.wav``, mono, at random RMS
    levels between -35 and -25 dB, each file of ``duration`` times
    U(0.5, 1) seconds.

    Arguments
    ---------
    root : str
        Output root folder.
    sample_rate : int
        Sample rate.
    n_train : int
        Number of training noise files.
    n_valid : int
        Number of validation noise files.
    n_test : int
        Number of test noise files.
    duration : float
        Maximum duration in seconds.
    seed : int
        Random seed.

    Returns
    -------
    str
        The ``wham_noise`` folder (dynamic mixing uses its ``tr``).

    Example
    -------
    >>> path = make_wham_noise(str(getfixture("tmpdir")))
    >>> sorted(os.listdir(path)), len(os.listdir(os.path.join(path, "tr")))
    (['cv', 'tr', 'tt'], 4)
    """
    base = os.path.join(root, "wham_noise")
    counts = dict(zip(("tr", "cv", "tt"), (n_train, n_valid, n_test)))
    for split, n in counts.items():
        rng = _rng(seed, "wham_noise", split)
        for k in range(n):
            length = int(duration * rng.uniform(0.5, 1.0) * sample_rate)
            noise = synthetic_noise(rng, length, sample_rate)
            noise *= 10.0 ** (rng.uniform(-35.0, -25.0) / 20.0)
            path = os.path.join(base, split, "noise_%s_%03d.wav" % (split, k))
            _write(path, noise, sample_rate)
    return base


def make_rirs(root, n=8, sample_rate=8000, seed=0):
    """Writes synthetic room impulse responses (see :func:`synthetic_rir`)
    and a CSV list of them.

    Layout: ``root/rirs/rir_<k>.wav`` and ``root/rirs.csv`` with the columns
    ``ID,duration,wav,wav_format,wav_opts`` (as SpeechBrain's
    ``AddReverb``) and paths ``$rir_root/rirs/rir_<k>.wav``, where
    ``$rir_root`` is the CSV's folder.

    Arguments
    ---------
    root : str
        Output root folder.
    n : int
        Number of RIRs.
    sample_rate : int
        Sample rate.
    seed : int
        Random seed.

    Returns
    -------
    tuple
        ``(folder, csv_path)``.

    Example
    -------
    >>> folder, csv_path = make_rirs(str(getfixture("tmpdir")), n=2)
    >>> len(os.listdir(folder)), os.path.basename(csv_path)
    (2, 'rirs.csv')
    """
    folder = os.path.join(root, "rirs")
    csv_path = os.path.join(root, "rirs.csv")
    rng = _rng(seed, "rirs")
    rows = []
    for k in range(n):
        rir = synthetic_rir(rng, sample_rate)
        name = "rir_%03d.wav" % k
        _write(os.path.join(folder, name), rir, sample_rate)
        rows.append(
            [
                "rir_%03d" % k,
                "%.4f" % (len(rir) / sample_rate),
                "$rir_root/rirs/" + name,
                "wav",
                "",
            ]
        )
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["ID", "duration", "wav", "wav_format", "wav_opts"])
        writer.writerows(rows)
    return folder, csv_path


def _libri_id(spk, utt):
    """``<spk>-<chapter>-<utt>`` LibriSpeech-like id."""
    return "%s-%s-%04d" % (spk, CHAPTER, utt)


def make_librimix(
    root,
    num_spks=2,
    sample_rate=8000,
    version="min",
    n_train=8,
    n_valid=4,
    n_test=4,
    duration=0.5,
    seed=0,
    speech_dir=None,
):
    """Builds a mini Libri2Mix / Libri3Mix.

    Layout: ``root/Libri<N>Mix/wav<R>k/<version>/{train-360,dev,test}/
    {mix_clean,mix_both,mix_single,s1,s2,[s3],noise}/<id1>_<id2>[...].wav``
    with LibriSpeech-like ids ``<spk>-<chapter>-<utt>``. Sources are at
    U(-33, -25) LUFS and the (synthetic) noise at U(-38, -30) LUFS.

    Arguments
    ---------
    root : str
        Output root folder.
    num_spks : int
        2 or 3.
    sample_rate : int
        Sample rate.
    version : str
        ``"min"`` or ``"max"``.
    n_train : int
        Number of training mixtures.
    n_valid : int
        Number of validation mixtures.
    n_test : int
        Number of test mixtures.
    duration : float
        Maximum utterance duration in seconds.
    seed : int
        Random seed.
    speech_dir : str or None
        Folder of the speech clips.

    Returns
    -------
    str
        The ``Libri<N>Mix`` folder.

    Example
    -------
    >>> root = str(getfixture("tmpdir"))
    >>> path = make_librimix(root, num_spks=3, n_train=1, n_valid=1,
    ...                      n_test=1)
    >>> sorted(os.listdir(os.path.join(path, "wav8k", "min", "dev")))
    ['mix_both', 'mix_clean', 'mix_single', 'noise', 's1', 's2', 's3']
    """
    rate_folder = _check_args(sample_rate, version, num_spks)
    corpus = _Corpus(speech_dir, sample_rate, duration, seed)
    base = os.path.join(root, "Libri%dMix" % num_spks)

    def mixture(rng, split):
        draws = corpus.draw(rng, split, num_spks)
        name = "_".join(_libri_id(s, u) for s, u in draws) + ".wav"
        sources = [
            normalize_loudness(
                corpus.bank[s][u], sample_rate, rng.uniform(-33.0, -25.0)
            )
            for s, u in draws
        ]
        sources = _fit_length(sources, version)
        noise = synthetic_noise(rng, len(sources[0]), sample_rate)
        noise = normalize_loudness(
            noise, sample_rate, rng.uniform(-38.0, -30.0)
        )
        clean = np.sum(sources, axis=0)
        files = {
            "mix_clean": clean,
            "mix_both": clean + noise,
            "mix_single": sources[0] + noise,
            "noise": noise,
        }
        for i, s in enumerate(sources):
            files["s%d" % (i + 1)] = s
        return name, files

    _write_splits(
        os.path.join(base, rate_folder, version),
        ("train-360", "dev", "test"),
        (n_train, n_valid, n_test),
        (seed, "librimix", num_spks),
        sample_rate,
        mixture,
    )
    return base


def make_librispeech(
    root,
    split="train-clean-360",
    sample_rate=16000,
    duration=1.0,
    per_clip=3,
    seed=0,
    speech_dir=None,
):
    """Builds a mini raw LibriSpeech split for dynamic mixing.

    Layout: ``root/LibriSpeech/<split>/<spk>/<chapter>/<spk>-<chapter>-
    <utt>.flac`` (speaker id from the clips' manifest, chapter
    :data:`CHAPTER`), training speakers only.

    Arguments
    ---------
    root : str
        Output root folder.
    split : str
        Split folder name.
    sample_rate : int
        Sample rate (raw LibriSpeech is 16 kHz).
    duration : float
        Maximum utterance duration in seconds.
    per_clip : int
        Utterances cut from each clip.
    seed : int
        Random seed.
    speech_dir : str or None
        Folder of the speech clips.

    Returns
    -------
    str
        The split folder.

    Example
    -------
    >>> path = make_librispeech(str(getfixture("tmpdir")))
    >>> spk = sorted(os.listdir(path))[0]
    >>> os.listdir(os.path.join(path, spk))
    ['100']
    """
    corpus = _Corpus(speech_dir, sample_rate, duration, seed, per_clip)
    base = os.path.join(root, "LibriSpeech", split)
    for spk in corpus.splits["train"]:
        for utt, x in enumerate(corpus.bank[spk]):
            path = os.path.join(
                base, spk, CHAPTER, _libri_id(spk, utt) + ".flac"
            )
            _write(path, _rms_normalize(x), sample_rate)
    return base


def make_all(root, sample_rate=8000, seed=0, speech_dir=None):
    """Builds every mini corpus under ``root``.

    Arguments
    ---------
    root : str
        Output root folder.
    sample_rate : int
        Sample rate of the mixtures, noise and RIRs (raw WSJ0 and
        LibriSpeech stay at 16 kHz, as the real ones).
    seed : int
        Random seed.
    speech_dir : str or None
        Folder of the speech clips.

    Returns
    -------
    dict
        Paths: ``wsj0_2mix``, ``wsj0_3mix``, ``wsj0_si_tr_s``, ``wham``,
        ``whamr``, ``wham_noise``, ``rirs_csv``, ``libri2mix``,
        ``libri3mix``, ``librispeech``.

    Example
    -------
    >>> paths = make_all(str(getfixture("tmpdir")))
    >>> os.path.basename(paths["whamr"])
    'whamr'
    """
    kw = {"sample_rate": sample_rate, "seed": seed, "speech_dir": speech_dir}
    raw = {"seed": seed, "speech_dir": speech_dir}
    return {
        "wsj0_2mix": make_wsj0mix(root, num_spks=2, **kw),
        "wsj0_3mix": make_wsj0mix(root, num_spks=3, **kw),
        "wsj0_si_tr_s": make_wsj0_si_tr_s(root, **raw),
        "wham": make_wham(root, reverb=False, **kw),
        "whamr": make_wham(root, reverb=True, **kw),
        "wham_noise": make_wham_noise(
            root, sample_rate=sample_rate, seed=seed
        ),
        "rirs_csv": make_rirs(root, sample_rate=sample_rate, seed=seed)[1],
        "libri2mix": make_librimix(root, num_spks=2, **kw),
        "libri3mix": make_librimix(root, num_spks=3, **kw),
        "librispeech": make_librispeech(root, **raw),
    }


#: What each mini corpus of ``make_all`` is to the recipes.
RECIPE_USE = {
    "wsj0_2mix": "--data_folder of recipes/WSJ0Mix (hparams/mossformer.yaml)",
    "wsj0_3mix": "--data_folder of recipes/WSJ0Mix "
                 "(hparams/mossformer-3mix.yaml)",
    "wsj0_si_tr_s": "--base_folder_dm of recipes/WSJ0Mix and "
                    "recipes/WHAMandWHAMR (dynamic mixing)",
    "wham": "--data_folder of recipes/WHAMandWHAMR "
            "(hparams/mossformer-wham.yaml)",
    "whamr": "--data_folder of recipes/WHAMandWHAMR "
             "(hparams/mossformer-whamr.yaml)",
    "wham_noise": "--noise_folder_dm (dynamic mixing with noise)",
    "rirs_csv": "--rir_csv (reverberation)",
    "libri2mix": "--data_folder of recipes/LibriMix "
                 "(hparams/mossformer-libri2mix.yaml)",
    "libri3mix": "--data_folder of recipes/LibriMix "
                 "(hparams/mossformer-libri3mix.yaml)",
    "librispeech": "--base_folder_dm of recipes/LibriMix (dynamic mixing)",
}


def main(argv=None):
    """Builds every mini corpus (``make_all``) and prints where each went.

    Arguments
    ---------
    argv : list of str, optional
        ``OUT_ROOT [--sample-rate SR] [--seed N]``.

    Returns
    -------
    int
        The exit code.

    Example
    -------
    >>> main([str(getfixture("tmpdir")), "--seed", "x"])  # argparse error
    2
    """
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_mossformer.dataprep.minidata",
        description="Build tiny WSJ0-2/3mix, WHAM!/WHAMR!, Libri2/3Mix (and "
        "raw WSJ0 si_tr_s, LibriSpeech, noise, RIRs) in the real corpora's "
        "layouts from the speech bundled in data/speech.",
    )
    parser.add_argument("out_root", help="folder to build them in")
    parser.add_argument("--sample-rate", type=int, default=8000,
                        choices=(8000, 16000))
    parser.add_argument("--seed", type=int, default=0)
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    if os.path.exists(args.out_root) and not os.path.isdir(args.out_root):
        print(f"error: {args.out_root}: not a folder", file=sys.stderr)
        return 2
    try:
        paths = make_all(
            args.out_root, sample_rate=args.sample_rate, seed=args.seed
        )
    except OSError as err:  # an unwritable place, a full disk
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    width = max(len(name) for name in paths)
    for name, path in paths.items():
        print(f"{name:<{width}}  {path}  ({RECIPE_USE[name]})")
    print(
        "a tiny training run: python recipes/LibriMix/separation/train.py "
        "recipes/LibriMix/separation/hparams/mossformer-libri2mix.yaml "
        f"--data_folder {paths['libri2mix']} --output_folder /tmp/tiny "
        "--N_epochs 1 --N_encoder_out 64 --out_channels 64 --num_blocks 2 "
        "--device cpu"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
