"""Tests for speechbrain_mossformer.metrics.

The BSS-Eval SDR is compared with ``mir_eval`` when it is installed (it is
a test-only reference, not a dependency); everything else runs without it.

Authors
 * speechbrain-mossformer contributors 2026
"""

import itertools
import warnings

import numpy as np
import pytest
import torch

from speechbrain_mossformer.metrics import (
    best_permutation_sdr,
    best_permutation_si_snr,
    bss_eval_sdr,
    pairwise_sdr,
    pairwise_si_snr,
    separation_metrics,
    si_snr,
)

FS = 8000


# ---------------------------------------------------------------------------
# Signal helpers
# ---------------------------------------------------------------------------
def _fir(x, h):
    """Causal FIR filtering with the output cut to the input length."""
    return np.convolve(x, h)[: x.shape[-1]]


def _speech_like(rng, n):
    """Noise through two random resonances with a syllable-rate envelope."""
    x = rng.randn(n + 400)
    for _ in range(2):  # two 2nd-order resonators (formant-like)
        f = rng.uniform(200, 3000) / FS
        r = rng.uniform(0.85, 0.97)
        a1, a2 = 2 * r * np.cos(2 * np.pi * f), -(r**2)
        y = np.zeros_like(x)
        for t in range(2, x.shape[0]):
            y[t] = x[t] + a1 * y[t - 1] + a2 * y[t - 2]
        x = y
    x = x[400:]
    rate = rng.uniform(3, 6)
    env = 0.2 + np.abs(np.sin(np.pi * rate * np.arange(n) / FS))
    return x * env / np.std(x * env)


def _lowpass_noise(rng, n):
    """White noise through a random decaying FIR (coloured noise)."""
    h = rng.randn(40) * np.exp(-np.arange(40) / 6.0)
    return _fir(rng.randn(n + 40), h)[40:]


def _degrade(rng, refs, leak, noise_db):
    """Mixes, filters and adds white noise to make estimates."""
    n_src, n = refs.shape
    mix = np.eye(n_src) + leak * rng.uniform(-1, 1, (n_src, n_src))
    ests = mix @ refs
    out = []
    for e in ests:
        h = np.zeros(16)
        h[0] = 1.0
        h[1:] = 0.3 * rng.randn(15) * np.exp(-np.arange(15) / 3.0)
        e = _fir(e, h)
        noise = rng.randn(n)
        noise *= np.std(e) * 10 ** (-noise_db / 20) / np.std(noise)
        out.append(e + noise)
    return np.stack(out)


# ---------------------------------------------------------------------------
# Agreement with mir_eval
# ---------------------------------------------------------------------------
def _mir_eval_sdr(refs, ests, compute_permutation=False):
    mir_eval = pytest.importorskip("mir_eval")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bss_eval_sources is deprecated
        sdr, _, _, perm = mir_eval.separation.bss_eval_sources(
            refs, ests, compute_permutation=compute_permutation
        )
    return sdr, perm


@pytest.mark.parametrize(
    "n_src, kind, leak, noise_db, seed",
    [
        (2, "white", 0.1, 20.0, 0),
        (2, "speech", 0.2, 10.0, 1),
        (2, "lowpass", 0.05, 30.0, 2),
        (2, "speech", 0.6, 0.0, 3),
        (3, "speech", 0.2, 15.0, 4),
        (3, "lowpass", 0.4, 5.0, 5),
    ],
)
def test_bss_eval_sdr_matches_mir_eval(n_src, kind, leak, noise_db, seed):
    pytest.importorskip("mir_eval")
    rng = np.random.RandomState(seed)
    n = FS  # 1 s keeps mir_eval fast
    make = {
        "white": lambda: rng.randn(n),
        "speech": lambda: _speech_like(rng, n),
        "lowpass": lambda: _lowpass_noise(rng, n),
    }[kind]
    refs = np.stack([make() for _ in range(n_src)])
    ests = _degrade(rng, refs, leak, noise_db)
    expected, _ = _mir_eval_sdr(refs, ests)
    got = bss_eval_sdr(refs, ests)
    assert got.shape == (n_src,)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    # torch float64 input gives the same numbers
    got_t = bss_eval_sdr(torch.from_numpy(refs), torch.from_numpy(ests))
    np.testing.assert_allclose(got_t, got, rtol=0, atol=1e-9)


def test_best_permutation_sdr_matches_mir_eval_permutation():
    pytest.importorskip("mir_eval")
    rng = np.random.RandomState(7)
    refs = np.stack([_speech_like(rng, FS) for _ in range(2)])
    ests = _degrade(rng, refs, 0.2, 15.0)
    perm = np.array([1, 0])
    shuffled = np.empty_like(ests)
    shuffled[perm] = ests  # estimate perm[j] is the estimate of ref j
    expected, mir_perm = _mir_eval_sdr(refs, shuffled, True)
    got, got_perm = best_permutation_sdr(refs, shuffled)
    np.testing.assert_array_equal(got_perm, perm)
    np.testing.assert_array_equal(mir_perm, perm)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3)


# ---------------------------------------------------------------------------
# SI-SNR
# ---------------------------------------------------------------------------
def test_si_snr_matches_speechbrain_cal_si_snr():
    from speechbrain.nnet.losses import cal_si_snr

    torch.manual_seed(0)
    refs = torch.randn(4, FS, 3)
    ests = refs + 0.5 * torch.randn(4, FS, 3) + 0.3 * refs.roll(1, dims=2)
    refs_copy, ests_copy = refs.clone(), ests.clone()
    got = si_snr(ests, refs)
    assert got.shape == (4, 3)
    assert got.dtype == torch.float32
    # inputs are left untouched (cal_si_snr scales its estimate in place)
    assert torch.equal(refs, refs_copy) and torch.equal(ests, ests_copy)
    expected = -cal_si_snr(
        refs.transpose(0, 1).clone(), ests.transpose(0, 1).clone()
    )[0]
    assert torch.allclose(got, expected, rtol=0, atol=1e-4)


def test_si_snr_known_values():
    rng = np.random.RandomState(0)
    s = rng.randn(2 * FS)
    s -= s.mean()
    # scaled reference: eps-clipped "infinite" SI-SNR
    clip = 10 * np.log10(np.sum(s**2) / 1e-8)
    ref = torch.from_numpy(s)[None, :, None]
    value = si_snr(2 * ref, ref).item()
    assert value > 100 and abs(value - (clip + 6.02)) < 0.1
    # orthogonal, zero-mean noise at exactly 10 dB -> exactly 10 dB
    n = rng.randn(2 * FS)
    n -= n.mean()
    n -= n @ s / (s @ s) * s
    n *= np.sqrt(0.1 * (s @ s) / (n @ n))
    est = torch.from_numpy(s + n)[None, :, None]
    assert abs(si_snr(est, ref).item() - 10.0) < 1e-6
    # independent noise at 10 dB SNR -> about 10 dB
    n = rng.randn(2 * FS)
    n *= np.sqrt(0.1 * (s @ s) / (n @ n))
    est = torch.from_numpy(s + n)[None, :, None]
    assert abs(si_snr(est, ref).item() - 10.0) < 0.3
    # invariant to the estimate's scale and to DC offsets
    assert torch.allclose(si_snr(0.01 * est + 3.0, ref), si_snr(est, ref))
    # silent estimate: 10 log10(eps)
    assert abs(si_snr(0 * est, ref).item() + 80.0) < 1e-6


def test_si_snr_numpy_and_batches():
    rng = np.random.RandomState(1)
    refs = rng.randn(3, 1000, 2)
    ests = refs + rng.randn(3, 1000, 2)
    got = si_snr(ests, refs)
    assert isinstance(got, torch.Tensor) and got.shape == (3, 2)
    for b in range(3):
        single = si_snr(ests[b : b + 1], refs[b : b + 1])
        assert torch.allclose(got[b : b + 1], single)


def test_si_snr_gradient_flows():
    ref = torch.randn(1, 500, 2)
    est = torch.randn(1, 500, 2, requires_grad=True)
    si_snr(est, ref).sum().backward()
    assert est.grad is not None and torch.isfinite(est.grad).all()


# ---------------------------------------------------------------------------
# SDR known values
# ---------------------------------------------------------------------------
def test_sdr_known_values():
    rng = np.random.RandomState(2)
    n = 2 * FS
    refs = np.stack([_speech_like(rng, n), _speech_like(rng, n)])
    refs[:, -600:] = 0.0  # so that the delayed copies below are not cut
    # short filtering is free in BSS-Eval: near-perfect SDR
    h = np.array([0.5, -0.3, 0.2, 0.1])
    ests = np.stack([_fir(r, h) for r in refs])
    assert np.all(bss_eval_sdr(refs, ests) > 100)
    # ... unless the filter is longer than 512 taps (delay of 600 samples)
    delayed = np.concatenate([np.zeros((2, 600)), refs[:, :-600]], axis=1)
    assert np.all(bss_eval_sdr(refs, delayed) < 0)
    assert np.all(bss_eval_sdr(refs, delayed, filter_length=1024) > 100)
    # white noise at 10 dB: 10 dB plus the small share of noise the
    # 512-tap filter can absorb (about 512 / T of it)
    noise = rng.randn(2, n)
    noise *= np.sqrt(0.1 * np.sum(refs**2, 1) / np.sum(noise**2, 1))[:, None]
    sdr = bss_eval_sdr(refs, refs + noise)
    assert np.all(sdr > 10.0) and np.all(sdr < 10.5)
    # scale invariance
    np.testing.assert_allclose(
        bss_eval_sdr(refs, 1e-3 * (refs + noise)), sdr, atol=1e-9
    )
    # exact scaled copy: +inf or huge
    assert np.all(bss_eval_sdr(refs, 2.0 * refs) > 150)
    # silent estimate: -inf (mir_eval refuses it)
    silent = refs.copy()
    silent[1] = 0.0
    got = bss_eval_sdr(refs, silent)
    assert got[1] == -np.inf and got[0] > 150
    # float32 torch input is evaluated in float64
    got32 = bss_eval_sdr(
        torch.from_numpy(refs).float(), torch.from_numpy(refs + noise).float()
    )
    np.testing.assert_allclose(got32, sdr, atol=1e-3)


def test_pairwise_sdr_diagonal_is_bss_eval_sdr():
    rng = np.random.RandomState(3)
    refs = rng.randn(3, 3000)
    ests = _degrade(rng, refs, 0.3, 10.0)
    mat = pairwise_sdr(refs, ests)
    assert mat.shape == (3, 3)
    np.testing.assert_allclose(np.diag(mat), bss_eval_sdr(refs, ests))
    for j, k in itertools.product(range(3), repeat=2):
        one = bss_eval_sdr(refs[j], ests[k])
        np.testing.assert_allclose(mat[j, k], one[0], atol=1e-9)


# ---------------------------------------------------------------------------
# Permutations
# ---------------------------------------------------------------------------
def test_permutations_are_recovered():
    rng = np.random.RandomState(4)
    refs = np.stack([_lowpass_noise(rng, 4000) for _ in range(3)])
    ests = _degrade(rng, refs, 0.1, 20.0)
    in_order = bss_eval_sdr(refs, ests)
    for perm in itertools.permutations(range(3)):
        perm = np.array(perm)
        shuffled = np.empty_like(ests)
        shuffled[perm] = ests  # shuffled[perm[j]] is the estimate of ref j
        values, found = best_permutation_si_snr(refs, shuffled)
        np.testing.assert_array_equal(found, perm)
        sdr, found_sdr = best_permutation_sdr(refs, shuffled)
        np.testing.assert_array_equal(found_sdr, perm)
        np.testing.assert_allclose(sdr, in_order, atol=1e-9)
        fixed = bss_eval_sdr(refs, shuffled, permutation=perm)
        np.testing.assert_allclose(fixed, in_order, atol=1e-9)
        np.testing.assert_allclose(
            values, np.diag(pairwise_si_snr(refs, ests)), atol=1e-9
        )


def test_permutation_convention_matches_speechbrain_pitwrapper():
    from speechbrain.nnet.losses import PitWrapper, cal_si_snr

    rng = np.random.RandomState(5)
    refs = rng.randn(3, 2000)
    ests = _degrade(rng, refs, 0.2, 10.0)[[1, 2, 0]]
    _, perms = PitWrapper(cal_si_snr)(
        torch.from_numpy(ests.T[None]).clone(),
        torch.from_numpy(refs.T[None]).clone(),
    )
    _, perm = best_permutation_si_snr(refs, ests)
    np.testing.assert_array_equal(perm, np.array(perms[0]))
    # a PitWrapper permutation can be handed to bss_eval_sdr directly
    np.testing.assert_allclose(
        bss_eval_sdr(refs, ests, permutation=perms[0]),
        bss_eval_sdr(refs, ests[perm]),
    )


# ---------------------------------------------------------------------------
# separation_metrics
# ---------------------------------------------------------------------------
def test_separation_metrics_perfect_separation():
    rng = np.random.RandomState(6)
    a, b = rng.randn(2, FS)
    a -= a.mean()
    b -= b.mean()
    b -= b @ a / (a @ a) * a  # orthogonal ...
    b *= np.sqrt((a @ a) / (b @ b))  # ... and equal level
    refs = np.stack([a, b])
    mix = a + b
    m = separation_metrics(mix, refs, refs[::-1].copy())
    assert set(m) == {"si-snr", "si-snr_i", "sdr", "sdr_i"}
    clip = 10 * np.log10((a @ a) / 1e-8)  # eps-clipped "infinity"
    assert abs(m["si-snr"] - clip) < 0.1
    # the mixture is at exactly 0 dB SI-SNR for each source
    assert abs(m["si-snr_i"] - m["si-snr"]) < 1e-6
    assert m["sdr"] > 150 and m["sdr_i"] > 150


def test_separation_metrics_values_and_improvement():
    rng = np.random.RandomState(7)
    refs = np.stack([_speech_like(rng, FS), 0.5 * _speech_like(rng, FS)])
    mix = refs.sum(0)
    ests = _degrade(rng, refs, 0.1, 15.0)
    m = separation_metrics(mix, refs, ests[::-1].copy())
    si = si_snr(ests.T[None], refs.T[None])[0].numpy()
    base = si_snr(np.repeat(mix[None, :, None], 2, 2), refs.T[None])[0]
    assert abs(m["si-snr"] - si.mean()) < 1e-9
    assert abs(m["si-snr_i"] - (si - base.numpy()).mean()) < 1e-9
    sdr = bss_eval_sdr(refs, ests)
    sdr_mix = bss_eval_sdr(refs, np.stack([mix, mix]))
    assert abs(m["sdr"] - sdr.mean()) < 1e-9
    assert abs(m["sdr_i"] - (sdr - sdr_mix).mean()) < 1e-9
    # the quieter source gains more from separation than the louder one
    assert m["si-snr_i"] > m["si-snr"]
    # torch inputs (float32, [1, T] mixture) give the same numbers
    m_t = separation_metrics(
        torch.from_numpy(mix)[None].float(),
        torch.from_numpy(refs).float(),
        torch.from_numpy(ests[::-1].copy()).float(),
    )
    for key in m:
        assert abs(m_t[key] - m[key]) < 1e-3


def test_sdr_permutation_follows_si_snr():
    """SDR uses the SI-SNR (PIT) permutation even if SDR would prefer
    another one."""
    rng = np.random.RandomState(8)
    refs = rng.randn(2, 4000)
    ests = refs[::-1] + 0.3 * rng.randn(2, 4000)
    _, perm = best_permutation_si_snr(refs, ests)
    m = separation_metrics(refs.sum(0), refs, ests)
    assert abs(m["sdr"] - bss_eval_sdr(refs, ests, perm).mean()) < 1e-9


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------
def test_errors_name_the_problem():
    rng = np.random.RandomState(9)
    refs = rng.randn(2, 1000)
    ests = rng.randn(2, 1000)
    mix = refs.sum(0)
    with pytest.raises(ValueError, match="2 sources but estimates have 3"):
        bss_eval_sdr(refs, rng.randn(3, 1000))
    with pytest.raises(ValueError, match="1000 samples but estimates"):
        bss_eval_sdr(refs, rng.randn(2, 999))
    with pytest.raises(ValueError, match="mixture has 999 samples"):
        separation_metrics(mix[:999], refs, ests)
    with pytest.raises(ValueError, match=r"did you pass \[T, S\]"):
        separation_metrics(mix, refs.T, ests.T)
    with pytest.raises(ValueError, match="mixture must have shape"):
        separation_metrics(refs, refs, ests)
    with pytest.raises(ValueError, match="shape \\[S, T\\]"):
        bss_eval_sdr(refs[None], ests[None])
    bad = ests.copy()
    bad[1, 10] = np.nan
    with pytest.raises(ValueError, match="estimates contains NaN or Inf"):
        separation_metrics(mix, refs, bad)
    bad[1, 10] = np.inf
    with pytest.raises(ValueError, match="estimates contains NaN or Inf"):
        bss_eval_sdr(refs, bad)
    bad_mix = mix.copy()
    bad_mix[0] = -np.inf
    with pytest.raises(ValueError, match="mixture contains NaN or Inf"):
        separation_metrics(bad_mix, refs, ests)
    silent = refs.copy()
    silent[1] = 0.0
    with pytest.raises(ValueError, match=r"reference source\(s\) \[1\] are"):
        separation_metrics(mix, silent, ests)
    with pytest.raises(ValueError, match="all zeros"):
        best_permutation_sdr(silent, ests)
    constant = refs.copy()
    for value in (0.5, 0.1, 0.3):  # 0.1, 0.3: residues after the mean
        constant[0] = value
        with pytest.raises(ValueError, match="constant"):
            separation_metrics(mix, constant, ests)
    with pytest.raises(ValueError, match="not a permutation"):
        bss_eval_sdr(refs, ests, permutation=[0, 0])
    with pytest.raises(ValueError, match=r"expects \[B, T, S\]"):
        si_snr(torch.randn(100, 2), torch.randn(100, 2))
    with pytest.raises(ValueError, match="same \\[B, T, S\\] shape"):
        si_snr(torch.randn(1, 100, 2), torch.randn(1, 99, 2))
    with pytest.raises(ValueError, match="references contains NaN"):
        si_snr(torch.randn(1, 100, 2), torch.full((1, 100, 2), np.nan))


def test_sdr_stays_finite_after_the_thread_count_is_set():
    # torch 2.14's batched MKL solve gave NaN (invalid pivots, nothing
    # raised) once torch.set_num_threads(2) had been called on an idle
    # 2-core CPU: every SDR of a recipe's test_results.csv would be NaN
    rng = np.random.RandomState(0)
    refs = np.stack([_speech_like(rng, FS) for _ in range(3)])
    ests = _degrade(rng, refs, 0.2, 15.0)
    first = bss_eval_sdr(refs, ests)
    torch.set_num_threads(2)  # put back after the test (conftest)
    got = bss_eval_sdr(refs, ests)
    assert np.isfinite(got).all() and (got > 0).all(), got
    np.testing.assert_allclose(got, first, rtol=0, atol=1e-9)
