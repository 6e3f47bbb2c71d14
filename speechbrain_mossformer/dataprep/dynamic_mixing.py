"""On-the-fly mixing of training mixtures ("dynamic mixing").

:class:`DynamicMixingDataset` is a *map-style* ``torch.utils.data.Dataset``
whose item ``i`` is generated deterministically from ``(seed, epoch, i)``
with its own ``numpy.random.Generator`` (no global random state). This makes
it correct under DDP and resumable, unlike the upstream recipes' plain
``DataLoader`` (which every rank iterates in full and which cannot be
checkpointed):

* ``Brain.make_dataloader`` wraps it in a ``DistributedSampler`` under DDP,
  so the ranks see disjoint items, and in a ``SaveableDataLoader`` that the
  checkpointer can save mid-epoch; since an item only depends on
  ``(seed, epoch, i)``, a resumed run regenerates exactly the same items;
* ``set_epoch(epoch)`` (called by the Brain at the start of every training
  epoch) changes all the mixtures of the epoch; the epoch is kept in shared
  memory, so DataLoader workers (persistent or not) see it;
* ``len(dataset)`` is a nominal epoch size: ``epoch_size``, else the number
  of rows of ``train_csv``, else the number of utterances in the pool.

How an item is made (choices documented here):

1. ``num_spks`` *different* speakers are drawn without replacement, with
   probability proportional to their number of utterances (as upstream),
   and one utterance uniformly for each (utterances shorter than
   ``min_length`` samples are skipped).
2. Files are read at ``sample_rate``; a file with another rate is resampled
   (``scipy.signal.resample_poly``) on the fly, only the segment needed.
   Multi-channel files use their first channel.
3. All sources are cropped to the same length ``L = min(training_signal_len,
   shortest utterance)`` at a random offset each, so every source is speech
   over the whole item (as upstream; no zero padding).
4. Gains. ``gain_style="wsj0"`` (WSJ0-mix, WHAM!, WHAMR!): the first source
   to an average amplitude of N(-27.43, 2.57) dB, the others to the first's
   level plus N(-2.51, 2.66) dB, all clipped to [-45, 0] dB.
   ``gain_style="loudness"`` (LibriMix): each source to U(-33, -25) LUFS and
   the noise to U(-38, -30) LUFS, with the ITU-R BS.1770 loudness of
   :func:`loudness` (pyloudnorm is not needed).
5. Optional reverberation (WHAMR!-style): each source is convolved with its
   own random room impulse response (RIR). The RIR is shifted so that its
   peak (the direct path) is at index 0 and scaled so that the peak is 1:
   the reverberant source stays time-aligned with, and at the direct-path
   level of, the anechoic source, which is the target (dereverberation;
   with ``reverberant_targets=True`` the reverberant sources are the
   targets, as in WHAMR! with reverberant targets).
6. Optional noise: a random file of ``noise_folder`` (WHAM! noise), cropped
   at a random offset or looped if too short. With ``gain_style="wsj0"`` it
   is scaled to an SNR drawn from ``noise_snr_range`` (default U(-6, 3) dB,
   as WHAM!) against the louder (reverberant) source; with ``"loudness"``
   to U(-38, -30) LUFS. It is returned as ``noise_sig`` at the level it was
   added to the mixture.
7. Mixture = sum of the (reverberant) sources + noise. If the peak of the
   mixture or of a target exceeds ``max_peak`` (0.9), everything (mixture,
   targets, noise) is scaled by the same factor to bring it to ``max_peak``.

Authors
 * speechbrain-mossformer contributors 2026
"""

import csv
import logging
import math
import os

import numpy as np
import soundfile as sf
import torch
from scipy.signal import fftconvolve, lfilter, resample_poly

from speechbrain_mossformer.dataprep.csv_manifest import (
    AUDIO_EXTENSIONS,
    DataFolderNotFoundError,
    DataPreparationError,
    EmptyDataFolderError,
    audio_info,
    check_data_folder,
)

logger = logging.getLogger(__name__)

__all__ = [
    "k_weighting_coefficients",
    "loudness",
    "normalize_loudness",
    "set_average_amplitude_db",
    "reverberate_aligned",
    "prepare_rir",
    "build_speaker_pool",
    "list_audio_tree",
    "read_rir_list",
    "read_segment",
    "DynamicMixingDataset",
]


# --------------------------------------------------------------------------
# Loudness (ITU-R BS.1770), written here instead of depending on pyloudnorm
# --------------------------------------------------------------------------


def k_weighting_coefficients(sample_rate):
    """Biquad coefficients of the BS.1770 K-weighting filter at any rate.

    The two stages (a high-frequency shelf of about +4 dB modelling the head,
    and the RLB high-pass) are the bilinear transforms of the analogue
    prototypes that give the 48 kHz coefficients tabulated in ITU-R BS.1770.

    Arguments
    ---------
    sample_rate : int
        Sample rate in Hz.

    Returns
    -------
    list of tuple
        ``[(b_shelf, a_shelf), (b_highpass, a_highpass)]``, numpy arrays of
        3 coefficients each, ``a[0] == 1``.

    Example
    -------
    >>> (b, a), _ = k_weighting_coefficients(48000)
    >>> [round(float(v), 4) for v in b]
    [1.5351, -2.6917, 1.1984]
    """
    # High shelf: centre, gain (dB) and quality of the analogue prototype.
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / sample_rate)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh**0.4996667741545416
    a0 = 1.0 + k / q + k * k
    b_shelf = np.array(
        [
            vh + vb * k / q + k * k,
            2.0 * (k * k - vh),
            vh - vb * k / q + k * k,
        ]
    ) / a0
    a_shelf = np.array([a0, 2.0 * (k * k - 1.0), 1.0 - k / q + k * k]) / a0
    # Second-order high-pass (revised low-frequency B-weighting).
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / sample_rate)
    a0 = 1.0 + k / q + k * k
    b_hp = np.array([1.0, -2.0, 1.0])
    a_hp = np.array([a0, 2.0 * (k * k - 1.0), 1.0 - k / q + k * k]) / a0
    return [(b_shelf, a_shelf), (b_hp, a_hp)]


def loudness(signal, sample_rate, block_s=0.4, overlap=0.75):
    """Integrated loudness of a mono signal in LUFS (ITU-R BS.1770-4).

    K-weighting, mean square over 400 ms blocks with 75 % overlap, an
    absolute gate at -70 LUFS and a relative gate 10 LU below the
    absolute-gated loudness. A signal shorter than one block is measured as
    a single block. This is a small self-contained implementation, not a
    certified meter.

    Arguments
    ---------
    signal : numpy.ndarray or torch.Tensor
        Mono waveform ``[T]`` (float, full scale 1.0).
    sample_rate : int
        Sample rate in Hz.
    block_s : float
        Block length in seconds.
    overlap : float
        Block overlap fraction.

    Returns
    -------
    float
        Loudness in LUFS; ``-inf`` for silence.

    Example
    -------
    >>> import numpy as np
    >>> t = np.arange(16000) / 16000
    >>> round(loudness(np.sin(2 * np.pi * 997 * t), 16000), 1)
    -3.0
    """
    x = _to_numpy(signal).astype(np.float64)
    for b, a in k_weighting_coefficients(sample_rate):
        x = lfilter(b, a, x)
    block = int(round(block_s * sample_rate))
    if len(x) < block or block <= 0:
        z = np.array([np.mean(x**2)]) if len(x) else np.zeros(1)
    else:
        step = max(1, int(round(block * (1.0 - overlap))))
        n_blocks = 1 + (len(x) - block) // step
        csum = np.concatenate([[0.0], np.cumsum(x**2)])
        starts = np.arange(n_blocks) * step
        z = (csum[starts + block] - csum[starts]) / block
    with np.errstate(divide="ignore"):
        levels = -0.691 + 10.0 * np.log10(z)
    gated = z[levels > -70.0]
    if gated.size == 0:
        return float("-inf")
    relative = -0.691 + 10.0 * np.log10(np.mean(gated)) - 10.0
    gated = z[(levels > -70.0) & (levels > relative)]
    return float(-0.691 + 10.0 * np.log10(np.mean(gated)))


def normalize_loudness(signal, sample_rate, target_lufs):
    """Scales a signal to a target loudness (see :func:`loudness`).

    Arguments
    ---------
    signal : numpy.ndarray
        Mono waveform ``[T]``.
    sample_rate : int
        Sample rate in Hz.
    target_lufs : float
        Target loudness in LUFS.

    Returns
    -------
    numpy.ndarray
        The scaled signal (unchanged if it is silent).

    Example
    -------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(8000) * 0.1
    >>> y = normalize_loudness(x, 8000, -30.0)
    >>> round(loudness(y, 8000), 2)
    -30.0
    """
    current = loudness(signal, sample_rate)
    if not np.isfinite(current):
        return signal
    return signal * 10.0 ** ((target_lufs - current) / 20.0)


def set_average_amplitude_db(signal, target_db):
    """Scales a signal so that its average absolute amplitude is
    ``target_db`` dB (re 1.0), like SpeechBrain's ``rescale(..., "dB")``.

    Arguments
    ---------
    signal : numpy.ndarray
        Waveform.
    target_db : float
        Target mean absolute amplitude in dB.

    Returns
    -------
    numpy.ndarray
        The scaled signal (unchanged if it is silent).

    Example
    -------
    >>> import numpy as np
    >>> y = set_average_amplitude_db(np.array([0.5, -0.5]), -20.0)
    >>> round(float(np.abs(y).mean()), 6)
    0.1
    """
    level = np.mean(np.abs(signal))
    if level <= 0:
        return signal
    return signal * (10.0 ** (target_db / 20.0) / level)


# --------------------------------------------------------------------------
# Reverberation
# --------------------------------------------------------------------------


def prepare_rir(rir):
    """Aligns a room impulse response on its direct path.

    The samples before the peak (the direct path) are dropped and the RIR is
    divided by the peak value, so that the peak is ``+1`` at index 0.

    Arguments
    ---------
    rir : numpy.ndarray
        Impulse response ``[T]``.

    Returns
    -------
    numpy.ndarray
        The aligned impulse response.

    Example
    -------
    >>> import numpy as np
    >>> prepare_rir(np.array([0.0, 0.1, -0.5, 0.2])).tolist()
    [1.0, -0.4]
    """
    rir = np.asarray(rir, dtype=np.float64)
    peak = int(np.argmax(np.abs(rir)))
    if rir[peak] == 0:
        raise DataPreparationError("The impulse response is all zeros.")
    return rir[peak:] / rir[peak]


def reverberate_aligned(signal, rir):
    """Convolves a signal with an aligned RIR (see :func:`prepare_rir`),
    keeping the original length, so the result is time-aligned with the
    anechoic signal.

    Arguments
    ---------
    signal : numpy.ndarray
        Anechoic waveform ``[T]``.
    rir : numpy.ndarray
        Impulse response whose direct path is at index 0.

    Returns
    -------
    numpy.ndarray
        Reverberant waveform ``[T]``.

    Example
    -------
    >>> import numpy as np
    >>> reverberate_aligned(np.array([1.0, 0.0, 0.0]),
    ...                     np.array([1.0, 0.5])).tolist()
    [1.0, 0.5, 0.0]
    """
    n = len(signal)
    if len(rir) == 1:
        return signal * rir[0]
    return fftconvolve(signal, rir)[:n]


# --------------------------------------------------------------------------
# File pools and reading
# --------------------------------------------------------------------------


def _to_numpy(signal):
    """Tensor or array -> 1-D numpy array."""
    if isinstance(signal, torch.Tensor):
        signal = signal.detach().cpu().numpy()
    return np.asarray(signal)


def list_audio_tree(folder, extensions=AUDIO_EXTENSIONS):
    """Lists the audio files under a folder, recursively, sorted.

    Arguments
    ---------
    folder : str
        The folder.
    extensions : tuple of str
        File name endings to keep.

    Returns
    -------
    list of str
        Sorted paths (sorted so that every process sees the same order).

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> _ = tmp.mkdir("a").join("x.wav").write("")
    >>> [os.path.basename(p) for p in list_audio_tree(str(tmp))]
    ['x.wav']
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(extensions):
                found.append(os.path.join(dirpath, name))
    return sorted(found)


def build_speaker_pool(folder, speaker_from="stem"):
    """Groups the utterances under a folder by speaker.

    Arguments
    ---------
    folder : str
        WSJ0 ``si_tr_s`` (``<spk>/<utt>.wav``) or a LibriSpeech split
        (``<spk>/<chapter>/<utt>.flac``).
    speaker_from : str
        ``"stem"``: the first 3 characters of the file name (WSJ0
        convention, as upstream); ``"folder"``: the parent folder's name;
        ``"librispeech"``: the folder two levels up (``<spk>``).

    Returns
    -------
    dict
        ``{speaker: [sorted paths]}``, speakers sorted.

    Example
    -------
    >>> from speechbrain_mossformer.dataprep.minidata import (
    ...     make_wsj0_si_tr_s)
    >>> si_tr_s = make_wsj0_si_tr_s(str(getfixture("tmpdir")))
    >>> pool = build_speaker_pool(si_tr_s)
    >>> len(pool) >= 2
    True
    """
    if speaker_from not in ("stem", "folder", "librispeech"):
        raise ValueError(
            "speaker_from must be 'stem', 'folder' or 'librispeech', got %r"
            % (speaker_from,)
        )
    check_data_folder(folder, "dynamic mixing folder")
    files = list_audio_tree(folder)
    if not files:
        hint = ""
        if list_audio_tree(folder, (".wv1", ".wv2")):
            # WSJ0 as LDC ships it: shorten-compressed NIST SPHERE
            hint = (
                " It holds WSJ0's .wv1/.wv2 (NIST SPHERE) files: convert "
                "them to .wav first (e.g. sph2pipe -f wav), as for "
                "SpeechBrain's own WSJ0 recipes."
            )
        raise EmptyDataFolderError(
            "The dynamic mixing folder %s holds no .wav/.flac files.%s"
            % (folder, hint)
        )
    pool = {}
    for path in files:
        if speaker_from == "stem":
            spk = os.path.basename(path)[:3]
        elif speaker_from == "folder":
            spk = os.path.basename(os.path.dirname(path))
        else:
            spk = os.path.basename(os.path.dirname(os.path.dirname(path)))
        pool.setdefault(spk, []).append(path)
    return {spk: sorted(pool[spk]) for spk in sorted(pool)}


def read_rir_list(rirs, replacements=None):
    """Reads the list of room impulse response files.

    Arguments
    ---------
    rirs : str or list of str
        A list of audio paths, a folder of RIR files, or a CSV file with a
        ``wav`` column (the format of SpeechBrain's ``AddReverb`` and of
        :func:`~speechbrain_mossformer.dataprep.minidata.make_rirs`).
    replacements : dict or None
        ``$key`` substitutions for the CSV paths; by default ``$rir_root``
        is the CSV's folder.

    Returns
    -------
    list of str
        The RIR files.

    Example
    -------
    >>> read_rir_list(["a.wav", "b.wav"])
    ['a.wav', 'b.wav']
    """
    if isinstance(rirs, (list, tuple)):
        return [str(p) for p in rirs]
    rirs = str(rirs)
    if os.path.isdir(rirs):
        files = list_audio_tree(rirs)
        if not files:
            raise EmptyDataFolderError("The RIR folder %s is empty." % rirs)
        return files
    if not os.path.isfile(rirs):
        raise DataFolderNotFoundError("The RIR list %s does not exist." % rirs)
    subs = {"rir_root": os.path.dirname(os.path.abspath(rirs))}
    subs.update(replacements or {})
    files = []
    with open(rirs, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if "wav" not in (reader.fieldnames or []):
            raise DataPreparationError(
                "The RIR list %s has no 'wav' column (it has %s)."
                % (rirs, reader.fieldnames)
            )
        for row in reader:
            path = row["wav"]
            for key, value in subs.items():
                path = path.replace("$" + key, str(value))
            files.append(path)
    if not files:
        raise EmptyDataFolderError("The RIR list %s has no rows." % rirs)
    return files


def _num_samples(info, sample_rate):
    """Length of a file once resampled to ``sample_rate``."""
    return int(info.frames * sample_rate // info.samplerate)


def read_segment(path, start, length, sample_rate, info=None):
    """Reads ``length`` samples at ``sample_rate`` from ``start`` (counted
    at ``sample_rate``), resampling the segment if the file has another
    rate; zero-padded at the end if the file is too short.

    Arguments
    ---------
    path : str
        Audio file.
    start : int
        First sample, at ``sample_rate``.
    length : int
        Number of samples to return.
    sample_rate : int
        Output sample rate.
    info : soundfile info or None
        The file's header, if already read.

    Returns
    -------
    numpy.ndarray
        ``[length]`` float64, first channel.

    Example
    -------
    >>> import numpy as np, soundfile as sf
    >>> path = os.path.join(str(getfixture("tmpdir")), "a.wav")
    >>> sf.write(path, np.full(1600, 0.5), 16000)
    >>> x = read_segment(path, 100, 200, 8000)
    >>> x.shape, round(float(x[100]), 3)
    ((200,), 0.5)
    """
    if info is None:
        info = audio_info(path)
    rate = info.samplerate
    try:
        if rate == sample_rate:
            data = sf.read(
                path,
                start=start,
                stop=min(start + length, info.frames),
                dtype="float64",
                always_2d=True,
            )[0][:, 0]
        else:
            g = math.gcd(sample_rate, rate)
            up, down = sample_rate // g, rate // g
            margin = 64 * max(1, down // up)
            # First file sample to read: a multiple of `down`, so that the
            # resampled segment is exactly aligned with output sample grid.
            lo = max(0, (start * down // up - margin) // down * down)
            hi = min(info.frames, (start + length) * down // up + margin)
            raw = sf.read(
                path, start=lo, stop=hi, dtype="float64", always_2d=True
            )[0][:, 0]
            data = resample_poly(raw, up, down)
            offset = start - lo * up // down
            data = data[offset : offset + length]
    except DataPreparationError:
        raise
    except Exception as err:
        raise DataPreparationError(
            "Cannot read %s: %s" % (path, str(err).strip())
        ) from None
    if len(data) < length:
        data = np.pad(data, (0, length - len(data)))
    return data


# --------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------


class DynamicMixingDataset(torch.utils.data.Dataset):
    """Map-style dataset of mixtures made on the fly (see module docstring).

    Arguments
    ---------
    base_folder : str or None
        Folder of single-speaker utterances: WSJ0 ``si_tr_s`` or a
        LibriSpeech split such as ``train-clean-360``. Ignored if ``pool``
        is given.
    sample_rate : int
        Output sample rate (files with another rate are resampled).
    num_spks : int
        Number of sources per mixture (different speakers).
    training_signal_len : int or None
        Maximum item length in samples; None keeps the shortest drawn
        utterance's full length.
    epoch_size : int or None
        Nominal number of items per epoch (``len``), at least 1.
    train_csv : str or None
        If ``epoch_size`` is None, ``len`` is its number of rows (the
        upstream convention); else the number of utterances in the pool.
    corpus : str
        ``"wsj0"`` (speakers from ``speaker_from``, WSJ0 gains by default)
        or ``"librispeech"`` (speaker = ``<spk>`` folder, loudness gains by
        default).
    gain_style : str or None
        ``"wsj0"`` or ``"loudness"``; None picks from ``corpus``.
    speaker_from : str or None
        See :func:`build_speaker_pool`; None: ``"stem"`` for WSJ0,
        ``"librispeech"`` for LibriSpeech.
    noise_folder : str or None
        Folder of noise files (WHAM! noise); None: no noise.
    noise_snr_range : tuple
        SNR range (dB) of the louder source against the noise, for
        ``gain_style="wsj0"``.
    rirs : str, list or None
        Room impulse responses (see :func:`read_rir_list`); None: no
        reverberation. They should be mono: a multichannel file's first
        channel is used (the recipes refuse multichannel RIRs at setup,
        ``recipe.check_rirs``).
    seed : int
        Base seed; item ``i`` of epoch ``e`` uses the seed ``(seed, e, i)``.
    max_peak : float
        Peak level that mixture and targets may not exceed.
    source_lufs_range : tuple
        Loudness range of the sources for ``gain_style="loudness"``.
    noise_lufs_range : tuple
        Loudness range of the noise for ``gain_style="loudness"``.
    pool : dict or None
        Ready ``{speaker: [paths]}`` to use instead of ``base_folder``.
    reverberant_targets : bool
        With ``rirs``: return the reverberant sources as the targets
        (``s<k>_sig``), for the WHAMR! task with reverberant targets;
        False (default): the anechoic sources (dereverberation).
    min_length : int
        Utterances shorter than this many samples (at ``sample_rate``) are
        never drawn (with a warning): each speaker's utterance is drawn
        among its long enough ones, and a speaker with none is an error
        naming its files. A mixture shorter than the model's encoder
        kernel cannot be separated.

    Example
    -------
    >>> from speechbrain.dataio.batch import PaddedBatch
    >>> from speechbrain_mossformer.dataprep.minidata import (
    ...     make_wsj0_si_tr_s)
    >>> si_tr_s = make_wsj0_si_tr_s(str(getfixture("tmpdir")))
    >>> dm = DynamicMixingDataset(si_tr_s, sample_rate=8000,
    ...     training_signal_len=4000, epoch_size=4)
    >>> dm.set_epoch(1)
    >>> item = dm[0]
    >>> sorted(item)
    ['id', 'mix_sig', 's1_sig', 's2_sig']
    >>> item["mix_sig"].shape
    torch.Size([4000])
    >>> batch = PaddedBatch([dm[0], dm[1]])
    >>> batch.mix_sig.data.shape
    torch.Size([2, 4000])
    """

    def __init__(
        self,
        base_folder,
        sample_rate=8000,
        num_spks=2,
        training_signal_len=32000,
        epoch_size=None,
        train_csv=None,
        corpus="wsj0",
        gain_style=None,
        speaker_from=None,
        noise_folder=None,
        noise_snr_range=(-6.0, 3.0),
        rirs=None,
        seed=1234,
        max_peak=0.9,
        source_lufs_range=(-33.0, -25.0),
        noise_lufs_range=(-38.0, -30.0),
        pool=None,
        reverberant_targets=False,
        min_length=1,
    ):
        super().__init__()
        if corpus not in ("wsj0", "librispeech"):
            raise ValueError(
                "corpus must be 'wsj0' or 'librispeech', got %r" % (corpus,)
            )
        if gain_style is None:
            gain_style = "wsj0" if corpus == "wsj0" else "loudness"
        if gain_style not in ("wsj0", "loudness"):
            raise ValueError(
                "gain_style must be 'wsj0' or 'loudness', got %r"
                % (gain_style,)
            )
        if speaker_from is None:
            speaker_from = "stem" if corpus == "wsj0" else "librispeech"
        if num_spks < 1:  # a user setting: one line in the recipes
            raise DataPreparationError(
                "num_spks must be >= 1, got %r" % (num_spks,)
            )
        self.sample_rate = int(sample_rate)
        self.num_spks = int(num_spks)
        self.training_signal_len = (
            None if training_signal_len is None else int(training_signal_len)
        )
        self.gain_style = gain_style
        self.seed = int(seed)
        self.max_peak = float(max_peak)
        self.noise_snr_range = tuple(noise_snr_range)
        self.source_lufs_range = tuple(source_lufs_range)
        self.noise_lufs_range = tuple(noise_lufs_range)

        if pool is None:
            pool = build_speaker_pool(base_folder, speaker_from)
        self.pool = {spk: list(files) for spk, files in sorted(pool.items())}
        self.speakers = list(self.pool)
        if len(self.speakers) < self.num_spks:
            raise DataPreparationError(
                "Dynamic mixing needs at least num_spks=%d speakers, but "
                "%s has %d: %s (speaker_from=%r)."
                % (
                    self.num_spks,
                    base_folder,
                    len(self.speakers),
                    self.speakers,
                    speaker_from,
                )
            )
        counts = np.array([len(self.pool[s]) for s in self.speakers], float)
        self._spk_prob = counts / counts.sum()

        self.noise_files = None
        if noise_folder is not None:
            check_data_folder(noise_folder, "noise folder")
            self.noise_files = list_audio_tree(noise_folder)
            if not self.noise_files:
                raise EmptyDataFolderError(
                    "The noise folder %s holds no .wav/.flac files."
                    % noise_folder
                )
        self.rir_files = None if rirs is None else read_rir_list(rirs)
        self.reverberant_targets = bool(reverberant_targets)
        if self.reverberant_targets and self.rir_files is None:
            raise ValueError("reverberant_targets=True needs rirs")
        self.min_length = max(1, int(min_length))
        # {speaker: the utterances long enough to draw}, filled on first use
        self._long_enough = {}

        if epoch_size is None:
            if train_csv is not None:
                epoch_size = _count_csv_rows(train_csv)
            else:
                epoch_size = int(counts.sum())
        if epoch_size < 1:  # a user setting: one line in the recipes
            raise DataPreparationError(
                "epoch_size must be >= 1, got %r" % (epoch_size,)
            )
        self.epoch_size = int(epoch_size)

        # Shared memory: DataLoader workers see set_epoch() updates.
        self._epoch = torch.zeros(1, dtype=torch.long).share_memory_()
        self._info_cache = {}
        self._rir_cache = {}

    def __len__(self):
        """The nominal epoch size."""
        return self.epoch_size

    @property
    def epoch(self):
        """The current epoch (the one items are generated for)."""
        return int(self._epoch[0])

    def set_epoch(self, epoch):
        """Selects the epoch whose mixtures ``__getitem__`` generates.

        Arguments
        ---------
        epoch : int
            The epoch number (the Brain's epoch counter).
        """
        self._epoch[0] = int(epoch)

    def _info(self, path):
        """Cached soundfile header."""
        info = self._info_cache.get(path)
        if info is None:
            info = audio_info(path)
            self._info_cache[path] = info
        return info

    def plan(self, index, epoch=None):
        """Draws the random choices of an item (no audio is read).

        Arguments
        ---------
        index : int
            Item index, ``0 <= index < len(self)``.
        epoch : int or None
            The epoch; None uses the current one.

        Returns
        -------
        dict
            ``speakers``, ``files``, ``starts``, ``length``, ``gains``
            (dB of average amplitude, or LUFS), and ``noise`` / ``rirs``
            entries when enabled.
        """
        if not 0 <= index < len(self):
            raise IndexError(
                "index %d out of range for %d items" % (index, len(self))
            )
        epoch = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng([self.seed, epoch, int(index)])
        chosen = rng.choice(
            len(self.speakers), self.num_spks, replace=False, p=self._spk_prob
        )
        speakers = [self.speakers[k] for k in chosen]
        files = [self._draw_file(rng, s) for s in speakers]
        lengths = [
            _num_samples(self._info(f), self.sample_rate) for f in files
        ]
        length = min(lengths)
        if self.training_signal_len is not None:
            length = min(length, self.training_signal_len)
        starts = [int(rng.integers(0, n - length + 1)) for n in lengths]
        if self.gain_style == "wsj0":
            first = float(np.clip(rng.normal(-27.43, 2.57), -45.0, 0.0))
            gains = [first]
            for _ in range(1, self.num_spks):
                rel = rng.normal(-2.51, 2.66)
                gains.append(float(np.clip(first + rel, -45.0, 0.0)))
        else:
            gains = [
                float(rng.uniform(*self.source_lufs_range))
                for _ in range(self.num_spks)
            ]
        plan = {
            "index": int(index),
            "epoch": epoch,
            "speakers": speakers,
            "files": files,
            "starts": starts,
            "length": int(length),
            "gains": gains,
        }
        if self.noise_files is not None:
            path = self.noise_files[int(rng.integers(len(self.noise_files)))]
            n = _num_samples(self._info(path), self.sample_rate)
            start = int(rng.integers(0, max(n - length, 0) + 1))
            if self.gain_style == "wsj0":
                level = float(rng.uniform(*self.noise_snr_range))
            else:
                level = float(rng.uniform(*self.noise_lufs_range))
            plan["noise"] = {"file": path, "start": start, "level": level}
        if self.rir_files is not None:
            plan["rirs"] = [
                self.rir_files[int(rng.integers(len(self.rir_files)))]
                for _ in range(self.num_spks)
            ]
        return plan

    def _draw_file(self, rng, speaker):
        """One utterance of ``speaker``, drawn uniformly among those at
        least ``min_length`` long (a function of ``(seed, epoch, i)``)."""
        files = self._long_enough.get(speaker)
        if files is None:
            files = self.pool[speaker]
            if self.min_length > 1:
                files = [f for f in files if self._long_enough_file(f)]
            if not files:
                raise DataPreparationError(
                    "Dynamic mixing: every utterance of speaker %r is "
                    "shorter than %d samples at %d Hz (%s); remove them "
                    "from the dynamic mixing folder."
                    % (
                        speaker,
                        self.min_length,
                        self.sample_rate,
                        self.pool[speaker][:4],
                    )
                )
            self._long_enough[speaker] = files
        return files[int(rng.integers(len(files)))]

    def _long_enough_file(self, path):
        """Whether ``path`` has ``min_length`` samples (warns if not)."""
        n = _num_samples(self._info(path), self.sample_rate)
        if n < self.min_length:
            logger.warning(
                "dynamic mixing: %s has %d samples at %d Hz, fewer than "
                "%d; it is skipped",
                path,
                n,
                self.sample_rate,
                self.min_length,
            )
        return n >= self.min_length

    def _rir(self, path):
        """Reads, resamples and aligns an RIR (cached)."""
        rir = self._rir_cache.get(path)
        if rir is None:
            info = self._info(path)
            n = _num_samples(info, self.sample_rate)
            rir = prepare_rir(read_segment(path, 0, n, self.sample_rate, info))
            self._rir_cache[path] = rir
        return rir

    def _read_noise(self, path, start, length):
        """Noise segment, looped if the file is shorter than ``length``."""
        info = self._info(path)
        n = _num_samples(info, self.sample_rate)
        if n >= length:
            return read_segment(path, start, length, self.sample_rate, info)
        whole = read_segment(path, 0, n, self.sample_rate, info)
        reps = int(math.ceil(length / max(n, 1)))
        return np.tile(whole, reps)[:length]

    def __getitem__(self, index):
        """Generates item ``index`` of the current epoch.

        Arguments
        ---------
        index : int
            Item index.

        Returns
        -------
        dict
            ``id`` (str), ``mix_sig``, ``s1_sig`` ... ``s<N>_sig`` and, with
            noise, ``noise_sig``: float32 tensors ``[L]``.
        """
        plan = self.plan(index)
        length, sr = plan["length"], self.sample_rate
        sources = []
        for path, start, gain in zip(
            plan["files"], plan["starts"], plan["gains"]
        ):
            x = read_segment(path, start, length, sr, self._info(path))
            if self.gain_style == "wsj0":
                x = set_average_amplitude_db(x, gain)
            else:
                x = normalize_loudness(x, sr, gain)
            sources.append(x)
        if "rirs" in plan:
            wet = [
                reverberate_aligned(x, self._rir(r))
                for x, r in zip(sources, plan["rirs"])
            ]
        else:
            wet = sources
        if self.reverberant_targets:
            sources = wet
        mix = np.sum(wet, axis=0)
        noise = None
        if "noise" in plan:
            spec = plan["noise"]
            noise = self._read_noise(spec["file"], spec["start"], length)
            if self.gain_style == "wsj0":
                power = max(float(np.mean(w**2)) for w in wet)
                noise_power = float(np.mean(noise**2))
                if noise_power > 0:
                    noise = noise * math.sqrt(
                        power / noise_power / 10.0 ** (spec["level"] / 10.0)
                    )
            else:
                noise = normalize_loudness(noise, sr, spec["level"])
            mix = mix + noise
        peak = max([np.max(np.abs(mix))] + [np.max(np.abs(s)) for s in sources])
        if peak > self.max_peak:
            scale = self.max_peak / peak
            mix = mix * scale
            sources = [s * scale for s in sources]
            if noise is not None:
                noise = noise * scale
        item = {
            "id": "dm_e%d_%06d" % (plan["epoch"], plan["index"]),
            "mix_sig": _tensor(mix),
        }
        for i, s in enumerate(sources):
            item["s%d_sig" % (i + 1)] = _tensor(s)
        if noise is not None:
            item["noise_sig"] = _tensor(noise)
        return item


def _tensor(x):
    """float64 numpy -> float32 torch."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _count_csv_rows(path):
    """Number of data rows of a CSV file."""
    if not os.path.isfile(path):
        raise DataFolderNotFoundError("The CSV file %s does not exist." % path)
    with open(path, newline="", encoding="utf-8") as f:
        return sum(1 for _ in csv.DictReader(f))
