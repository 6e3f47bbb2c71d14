"""Shared helpers for the inference, CLI and export tests (plain functions).

Authors
 * speechbrain-mossformer contributors 2026
"""

import csv
import os
import socket

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_mossformer.convert import convert
from speechbrain_mossformer.pretrained import (
    load_modules,
    render_hyperparams,
    write_pretrained_folder,
)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
FIXTURES = os.path.join(
    REPO, "..", "shared", "fixtures", "modelscope_mossformer"
)
SPEECH = os.path.join(REPO, "data", "speech")

#: A very small random MossFormer (fast enough for 10 minutes of audio).
MICRO_CONFIG = {
    "N_encoder_out": 16,
    "out_channels": 16,
    "num_blocks": 1,
    "group_size": 16,
    "query_key_dim": 8,
    "expansion_factor": 2.0,
}


def fixture_dir(name):
    """Path of an official-code fixture folder (skips if absent)."""
    path = os.path.join(FIXTURES, name)
    if not os.path.isdir(path):
        pytest.skip(f"official fixtures not found at {FIXTURES}")
    return path


def converted_fixture(name, out_dir):
    """Converts an official fixture into a pretrained folder; returns it."""
    convert(fixture_dir(name), str(out_dir))
    return str(out_dir)


def fixture_difference(name, out_dir):
    """Largest absolute difference between the official code's estimates
    for a fixture and ours, loaded through ``MossFormerSeparation``."""
    from speechbrain_mossformer.inference import MossFormerSeparation

    sep = MossFormerSeparation.from_hparams(
        source=converted_fixture(name, out_dir), run_opts={"device": "cpu"}
    )
    io = torch.load(
        os.path.join(fixture_dir(name), "io.pt"), weights_only=True
    )
    est = sep.separate_batch(io["mixture"])
    assert est.shape == io["estimates"].shape
    return (est - io["estimates"]).abs().max().item()


def random_folder(out_dir, seed=0, **config):
    """Writes a pretrained folder with random weights; returns it."""
    cfg = dict(MICRO_CONFIG, **config)
    torch.manual_seed(seed)
    modules = load_modules(render_hyperparams(cfg))
    states = {k: m.state_dict() for k, m in modules.items()}
    write_pretrained_folder(str(out_dir), cfg, states)
    return str(out_dir)


def block_network(monkeypatch):
    """Makes any attempt to open a network connection fail loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def speaker_signal(speaker_dir, seconds, sample_rate=8000):
    """Concatenates a speaker's clips (looping) to ``seconds`` of audio."""
    import torchaudio

    folder = os.path.join(SPEECH, speaker_dir)
    clips = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".wav"):
            data, rate = sf.read(os.path.join(folder, name), dtype="float32")
            x = torch.from_numpy(data)[None]
            if rate != sample_rate:
                x = torchaudio.functional.resample(x, rate, sample_rate)
            clips.append(x[0])
    if not clips:
        pytest.skip(f"no clips in {folder}")
    need = int(seconds * sample_rate)
    out = torch.cat(clips)
    while out.shape[0] < need:
        out = torch.cat([out, out])
    out = out[:need]
    return out / out.abs().max() * 0.5


def speakers_by_gender():
    """``{"M": [folder, ...], "F": [...]}`` from data/speech/manifest.csv."""
    folders = {"M": [], "F": []}
    with open(os.path.join(SPEECH, "manifest.csv"), newline="") as f:
        for row in csv.DictReader(f):
            folder = row["file"].split("/")[0]
            gender = row["gender"]
            if gender in folders and folder not in folders[gender]:
                folders[gender].append(folder)
    return folders


def band_filter(x, sample_rate, cutoff, low=True):
    """Ideal (FFT) low- or high-pass of ``x`` [..., T]."""
    spec = torch.fft.rfft(x, dim=-1)
    freqs = torch.fft.rfftfreq(x.shape[-1], 1 / sample_rate)
    keep = freqs < cutoff if low else freqs >= cutoff
    return torch.fft.irfft(spec * keep, n=x.shape[-1], dim=-1)


class BandOracle:
    """A separator for band-limited voices that forgets speaker order.

    Splits each chunk at ``cutoff`` Hz (low band = one voice, high band =
    the other), adds a little noise and returns the two tracks in a random
    order on every call, so every chunk border can swap speakers unless
    the chunks are re-aligned.
    """

    def __init__(self, sample_rate, cutoff, noise=1e-3, seed=0):
        self.sample_rate = sample_rate
        self.cutoff = cutoff
        self.noise = noise
        self.gen = torch.Generator().manual_seed(seed)
        self.orders = []

    def __call__(self, mix):
        low = band_filter(mix, self.sample_rate, self.cutoff, True)
        high = band_filter(mix, self.sample_rate, self.cutoff, False)
        est = torch.stack([low, high], dim=-1)
        est = est + self.noise * torch.randn(est.shape, generator=self.gen)
        order = torch.randperm(2, generator=self.gen)
        self.orders.append(order.tolist())
        return est[..., order]


def segment_assignments(est, refs, sample_rate, seconds=1.0, active=0.05):
    """Per segment, which reference each estimate track matches best.

    Only segments where every reference is active (RMS above ``active``
    times its overall RMS) are judged.

    Arguments
    ---------
    est : torch.Tensor
        [T, S] estimates.
    refs : torch.Tensor
        [T, S] references.

    Returns
    -------
    list of (int, tuple, float)
        Segment start (samples), matched reference per track, and the
        smallest correlation of a matched pair.
    """
    seg = int(seconds * sample_rate)
    overall = refs.pow(2).mean(0).sqrt()
    out = []
    for start in range(0, refs.shape[0] - seg + 1, seg):
        r = refs[start : start + seg]
        e = est[start : start + seg]
        if (r.pow(2).mean(0).sqrt() < active * overall).any():
            continue
        rn = r / r.norm(dim=0, keepdim=True)
        en = e / e.norm(dim=0, keepdim=True).clamp_min(1e-12)
        corr = en.T @ rn  # [track, ref]
        match = tuple(corr.argmax(1).tolist())
        out.append((start, match, float(corr.max(1).values.min())))
    return out


def write(path, data, sample_rate, subtype=None):
    """Writes a numpy/torch signal [T] or [T, C]; returns the path."""
    if isinstance(data, torch.Tensor):
        data = data.numpy()
    sf.write(str(path), np.asarray(data), sample_rate, subtype=subtype)
    return str(path)


def snr_db(est, ref):
    """SNR of ``est`` against ``ref`` in dB."""
    return float(
        10 * torch.log10(ref.pow(2).sum() / (est - ref).pow(2).sum())
    )
