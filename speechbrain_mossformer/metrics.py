"""Evaluation metrics for speech separation.

This module computes the per-utterance numbers that separation recipes
report in ``test_results.csv`` (SI-SNR, SI-SNRi, SDR, SDRi) using only
``torch`` and ``numpy``, so evaluation does not need ``mir_eval``.

* :func:`si_snr` is the scale-invariant signal-to-noise ratio, computed
  exactly like SpeechBrain's loss ``speechbrain.nnet.losses.cal_si_snr``
  (same zero-mean step, same ``eps`` placement, ``si_snr = -cal_si_snr``)
  but with the SpeechBrain batch layout ``[B, T, S]`` and without modifying
  its inputs.
* :func:`bss_eval_sdr` is the BSS-Eval v3 signal-to-distortion ratio with a
  512-tap time-invariant distortion filter, i.e. the ``sdr`` output of
  ``mir_eval.separation.bss_eval_sources(references, estimates,
  compute_permutation=False)``. The estimate of source ``j`` is projected
  (least squares) onto the span of the delayed copies ``s_j(t - k)``,
  ``k = 0 .. 511``, of its own reference; that projection is the allowed
  distortion ``s_target`` and everything else, ``e_interf + e_noise +
  e_artif = estimate - s_target``, is the error::

      SDR = 10 log10(||s_target||^2 / ||estimate - s_target||^2)

  (the interference/artifact split of BSS-Eval only matters for SIR and
  SAR, which are not computed here). The Gram matrix of the delayed
  references and the cross-correlations with the estimates come from FFTs
  and the filter from one symmetric linear solve per reference.
* :func:`best_permutation_sdr` / :func:`best_permutation_si_snr` match
  estimates to references, and :func:`separation_metrics` gives the four
  averaged numbers of one utterance, with the permutation chosen by SI-SNR
  (PIT) and reused for SDR.

Conventions: the one-utterance functions take ``[S, T]`` arrays (sources
first, like ``mir_eval``), accept numpy arrays or torch tensors and compute
in float64. A permutation ``perm`` always means "reference ``j`` is paired
with estimate ``perm[j]``", the convention of both ``mir_eval`` and
SpeechBrain's ``PitWrapper`` (whose per-utterance ``perms[b]`` can be passed
as-is).

Authors
 * speechbrain-mossformer contributors 2026
"""

import itertools

import numpy as np
import torch

__all__ = [
    "si_snr",
    "pairwise_si_snr",
    "best_permutation_si_snr",
    "bss_eval_sdr",
    "pairwise_sdr",
    "best_permutation_sdr",
    "separation_metrics",
]

#: Default ``eps`` of :func:`si_snr` (the value used by ``cal_si_snr``).
SI_SNR_EPS = 1e-8

#: Length of the BSS-Eval v3 distortion filter (``mir_eval`` default).
BSS_FILTER_LENGTH = 512


# ---------------------------------------------------------------------------
# Input checking
# ---------------------------------------------------------------------------
def _as_float64_array(x, name):
    """Returns ``x`` (numpy array, torch tensor or sequence) as float64."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().to(torch.float64).numpy()
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array: {err}") from err
    return x


def _check_finite(x, name):
    """Raises ValueError naming ``name`` if ``x`` has NaN or Inf values."""
    if isinstance(x, torch.Tensor):
        bad = not bool(torch.isfinite(x).all())
    else:
        bad = not bool(np.isfinite(x).all())
    if bad:
        raise ValueError(f"{name} contains NaN or Inf values")


def _check_sources(references, estimates):
    """Validates and converts one utterance's ``[S, T]`` sources.

    A 1-D input is read as a single source ``[1, T]``.
    """
    arrays = []
    for x, name in ((references, "references"), (estimates, "estimates")):
        x = _as_float64_array(x, name)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2:
            raise ValueError(
                f"{name} must have shape [S, T] (sources, samples), got "
                f"shape {tuple(x.shape)}"
            )
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
        if x.shape[0] > x.shape[1]:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)}: more sources than "
                "samples. Expected [S, T]; did you pass [T, S]?"
            )
        _check_finite(x, name)
        arrays.append(x)
    references, estimates = arrays
    if references.shape[0] != estimates.shape[0]:
        raise ValueError(
            f"references have {references.shape[0]} sources but estimates "
            f"have {estimates.shape[0]}"
        )
    if references.shape[1] != estimates.shape[1]:
        raise ValueError(
            f"references have {references.shape[1]} samples but estimates "
            f"have {estimates.shape[1]} (lengths must match)"
        )
    silent = np.flatnonzero(~np.any(references != 0, axis=1))
    if silent.size:
        raise ValueError(
            f"reference source(s) {silent.tolist()} are all zeros (silent); "
            "SDR and SI-SNR are undefined for a silent reference"
        )
    return references, estimates


def _check_permutation(permutation, n_sources):
    """Returns ``permutation`` as an int array after checking it."""
    try:
        perm = np.asarray(permutation, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise ValueError(f"invalid permutation {permutation!r}") from err
    if sorted(perm.tolist()) != list(range(n_sources)):
        raise ValueError(
            f"permutation {list(perm)} is not a permutation of "
            f"range({n_sources})"
        )
    return perm


def _best_permutation(score):
    """Permutation maximising the mean of ``score[j, perm[j]]``.

    Exhaustive search (``S!`` candidates); ties keep the first permutation
    in lexicographic order, so the identity wins among equals. NaN scores
    count as ``-inf``.
    """
    n = score.shape[0]
    rows = np.arange(n)
    best, best_perm = None, None
    for perm in itertools.permutations(range(n)):
        value = np.mean(score[rows, list(perm)])
        if np.isnan(value):
            value = -np.inf
        if best is None or value > best:
            best, best_perm = value, perm
    return np.asarray(best_perm, dtype=np.int64)


# ---------------------------------------------------------------------------
# SI-SNR
# ---------------------------------------------------------------------------
def si_snr(estimates, references, eps=SI_SNR_EPS):
    """Scale-invariant SNR of every source, in dB.

    For zero-mean ``s`` (reference) and ``s_hat`` (estimate)::

        s_target = <s_hat, s> s / (||s||^2 + eps)
        e_noise  = s_hat - s_target
        SI-SNR   = 10 log10(||s_target||^2 / (||e_noise||^2 + eps) + eps)

    which is ``-speechbrain.nnet.losses.cal_si_snr`` (same formula, same
    ``eps`` places). The ``eps`` terms keep the result finite: a perfect
    estimate gives about ``10 log10(||s_target||^2 / eps)`` instead of
    ``+inf`` (about +119 dB for a unit-power signal of 1 s at 8 kHz) and a
    silent estimate, or a silent reference, gives
    ``10 log10(eps) = -80`` dB. The mean over time is removed first, so a
    DC offset does not count. Computed in the dtype of the inputs
    (float32 inputs give float32 rounding, like the training loss); the
    inputs are not modified and gradients flow through.

    Arguments
    ---------
    estimates : torch.Tensor
        Estimated sources, shape ``[B, T, S]`` (numpy arrays are converted).
    references : torch.Tensor
        Reference sources, shape ``[B, T, S]``, paired with ``estimates``
        source by source (no permutation search).
    eps : float
        Regularisation constant (``1e-8`` as in ``cal_si_snr``).

    Returns
    -------
    torch.Tensor
        SI-SNR in dB, shape ``[B, S]``.

    Example
    -------
    >>> t = torch.arange(8000) / 8000.0
    >>> s = torch.sin(2 * torch.pi * 440 * t)
    >>> n = 0.1 * torch.sin(2 * torch.pi * 1000 * t)  # orthogonal to s
    >>> references = torch.stack([s, n], dim=-1)[None]  # [1, 8000, 2]
    >>> estimates = torch.stack([3 * s + n, n + s], dim=-1)[None]
    >>> si_snr(estimates, references).double().round(decimals=2)
    tensor([[ 29.5400, -20.0000]], dtype=torch.float64)
    """
    if not isinstance(estimates, torch.Tensor):
        estimates = torch.as_tensor(np.ascontiguousarray(estimates))
    if not isinstance(references, torch.Tensor):
        references = torch.as_tensor(np.ascontiguousarray(references))
    if estimates.ndim != 3 or references.ndim != 3:
        raise ValueError(
            "si_snr expects [B, T, S] tensors, got estimates "
            f"{tuple(estimates.shape)} and references "
            f"{tuple(references.shape)}"
        )
    if estimates.shape != references.shape:
        raise ValueError(
            f"estimates {tuple(estimates.shape)} and references "
            f"{tuple(references.shape)} must have the same [B, T, S] shape"
        )
    if not estimates.is_floating_point():
        estimates = estimates.to(torch.get_default_dtype())
    if not references.is_floating_point():
        references = references.to(torch.get_default_dtype())
    _check_finite(estimates, "estimates")
    _check_finite(references, "references")

    est = estimates - estimates.mean(dim=1, keepdim=True)
    ref = references - references.mean(dim=1, keepdim=True)
    dot = torch.sum(est * ref, dim=1, keepdim=True)
    ref_energy = torch.sum(ref**2, dim=1, keepdim=True) + eps
    s_target = dot * ref / ref_energy
    e_noise = est - s_target
    ratio = torch.sum(s_target**2, dim=1) / (torch.sum(e_noise**2, dim=1) + eps)
    return 10 * torch.log10(ratio + eps)


def _si_snr_single(references, estimates, eps):
    """SI-SNR of ``estimates[j]`` vs ``references[j]`` for ``[S, T]``
    float64 arrays (already checked); returns a float64 array ``[S]``.

    Same formula as :func:`si_snr`, in numpy: one utterance is too small
    for torch's intra-op threads to pay off (they only add latency).
    """
    est = estimates - estimates.mean(axis=1, keepdims=True)
    ref = references - references.mean(axis=1, keepdims=True)
    dot = np.sum(est * ref, axis=1, keepdims=True)
    s_target = dot * ref / (np.sum(ref**2, axis=1, keepdims=True) + eps)
    e_noise = est - s_target
    ratio = np.sum(s_target**2, axis=1) / (np.sum(e_noise**2, axis=1) + eps)
    return 10 * np.log10(ratio + eps)


def pairwise_si_snr(references, estimates, eps=SI_SNR_EPS):
    """SI-SNR of every (reference, estimate) pair of one utterance.

    Arguments
    ---------
    references : numpy.ndarray or torch.Tensor
        Reference sources ``[S, T]``.
    estimates : numpy.ndarray or torch.Tensor
        Estimated sources ``[S, T]``.
    eps : float
        See :func:`si_snr`.

    Returns
    -------
    numpy.ndarray
        ``[S, S]`` float64 matrix; entry ``[j, k]`` is the SI-SNR (dB) of
        estimate ``k`` measured against reference ``j``.

    Example
    -------
    >>> rng = np.random.RandomState(0)
    >>> refs = rng.randn(2, 4000)
    >>> pairwise_si_snr(refs, refs[::-1] + 0.1 * rng.randn(2, 4000)).round(1)
    array([[-30. ,  20. ],
           [ 19.9, -30.2]])
    """
    references, estimates = _check_sources(references, estimates)
    n = references.shape[0]
    refs = np.repeat(references, n, axis=0)  # row j*n + k -> reference j
    ests = np.tile(estimates, (n, 1))  # row j*n + k -> estimate k
    return _si_snr_single(refs, ests, eps).reshape(n, n)


def best_permutation_si_snr(references, estimates, eps=SI_SNR_EPS):
    """SI-SNR of one utterance with the best (PIT) permutation.

    The permutation maximises the mean SI-SNR over sources, like
    SpeechBrain's ``PitWrapper(cal_si_snr)``.

    Arguments
    ---------
    references : numpy.ndarray or torch.Tensor
        Reference sources ``[S, T]``.
    estimates : numpy.ndarray or torch.Tensor
        Estimated sources ``[S, T]`` in any order.
    eps : float
        See :func:`si_snr`.

    Returns
    -------
    si_snr : numpy.ndarray
        ``[S]`` SI-SNR in dB; entry ``j`` is for reference ``j``.
    perm : numpy.ndarray
        ``[S]`` int array: reference ``j`` is paired with estimate
        ``perm[j]`` (so ``estimates[perm]`` is in reference order).

    Example
    -------
    >>> rng = np.random.RandomState(0)
    >>> refs = rng.randn(2, 4000)
    >>> ests = refs[::-1] + 0.1 * rng.randn(2, 4000)
    >>> values, perm = best_permutation_si_snr(refs, ests)
    >>> values.round(1), perm
    (array([20. , 19.9]), array([1, 0]))
    """
    score = pairwise_si_snr(references, estimates, eps=eps)
    perm = _best_permutation(score)
    return score[np.arange(score.shape[0]), perm], perm


# ---------------------------------------------------------------------------
# BSS-Eval v3 SDR
# ---------------------------------------------------------------------------
def _check_sdr_inputs(references, estimates, filter_length):
    """``_check_sources`` plus a check of the distortion filter length."""
    references, estimates = _check_sources(references, estimates)
    if int(filter_length) < 1:
        raise ValueError(f"filter_length must be >= 1, got {filter_length}")
    return references, estimates


#: Largest relative residual ``|gram @ coef - rhs| / |rhs|`` accepted from
#: the LU solve before falling back to least squares.
SOLVE_RESIDUAL = 1e-6


def _solve_or_least_squares(gram, rhs):
    """``gram^-1 rhs`` for one source, checked by its residual.

    Arguments
    ---------
    gram : numpy.ndarray
        [taps, taps] float64, the source's Gram (autocorrelation) matrix.
    rhs : numpy.ndarray
        [taps, M] float64, its cross-correlations with the estimates.

    Returns
    -------
    numpy.ndarray
        [taps, M]: the solution of torch's LU solve, or the least-squares
        solution when the matrix is singular or the solve's residual is
        above ``SOLVE_RESIDUAL`` (a wrong solve gave finite garbage too).

    Example
    -------
    >>> gram = np.array([[2.0, 1.0], [1.0, 2.0]])
    >>> _solve_or_least_squares(gram, np.array([[3.0], [3.0]])).ravel()
    array([1., 1.])
    >>> _solve_or_least_squares(np.ones((2, 2)), np.ones((2, 1))).ravel()
    array([0.5, 0.5])
    """
    try:
        coef = torch.linalg.solve(
            torch.from_numpy(gram), torch.from_numpy(rhs)
        ).numpy()
        residual = np.linalg.norm(gram @ coef - rhs)
        if np.isfinite(coef).all() and residual <= SOLVE_RESIDUAL * max(
            np.linalg.norm(rhs), np.finfo(float).tiny
        ):
            return coef
    except RuntimeError:  # torch.linalg.LinAlgError: exactly singular
        pass
    return np.linalg.lstsq(gram, rhs, rcond=None)[0]


def _sdr_core(references, estimates, filter_length, all_pairs):
    """BSS-Eval SDR for checked float64 ``[S, T]`` arrays.

    Returns ``[S, S]`` (all reference/estimate pairs, rows = references)
    when ``all_pairs`` else ``[S]`` (reference ``j`` with estimate ``j``).
    """
    n_src, n_samples = references.shape
    taps = int(filter_length)
    out_len = n_samples + taps - 1  # length of a filtered reference
    n_fft = 1 << int(np.ceil(np.log2(out_len)))  # linear = circular here

    ref_f = np.fft.rfft(references, n=n_fft, axis=-1)  # [S, K]
    est_f = np.fft.rfft(estimates, n=n_fft, axis=-1)  # [S, K]

    # Gram matrix of the delayed copies s_j(t - k), k = 0 .. taps - 1:
    # <s_j(. - k), s_j(. - l)> = r_j(|k - l|), with r_j the autocorrelation.
    autocorr = np.fft.irfft(np.abs(ref_f) ** 2, n=n_fft, axis=-1)
    lag = np.abs(np.arange(taps)[:, None] - np.arange(taps)[None, :])
    gram = autocorr[:, lag]  # [S, taps, taps], symmetric Toeplitz

    # Right-hand sides <s_j(. - k), s_hat_m> = xcorr(s_j, s_hat_m)[k].
    if all_pairs:
        cross_f = np.conj(ref_f)[:, None, :] * est_f[None, :, :]  # [S, S, K]
    else:
        cross_f = (np.conj(ref_f) * est_f)[:, None, :]  # [S, 1, K]
    xcorr = np.fft.irfft(cross_f, n=n_fft, axis=-1)[..., :taps]
    rhs = np.swapaxes(xcorr, 1, 2)  # [S, taps, M]

    # torch's LAPACK solve: unlike numpy's multi-threaded OpenBLAS it does
    # not slow down by an order of magnitude on a busy CPU. One source at a
    # time: the batched solve of torch 2.14's MKL, once
    # torch.set_num_threads(2) has been called on an idle 2-core CPU, gave
    # invalid pivots ("Parameter 6 was incorrect on entry to DLASWP") and
    # NaN or finite garbage without raising.
    coef = np.stack(
        [_solve_or_least_squares(g, b) for g, b in zip(gram, rhs)]
    )  # [S, taps, M]

    # s_target = distortion filter applied to the own reference.
    coef_f = np.fft.rfft(np.swapaxes(coef, 1, 2), n=n_fft, axis=-1)
    target = np.fft.irfft(coef_f * ref_f[:, None, :], n=n_fft, axis=-1)
    target = target[..., :out_len]  # [S, M, out_len]

    padded = np.zeros((estimates.shape[0], out_len))
    padded[:, :n_samples] = estimates
    if all_pairs:
        padded = padded[None, :, :]  # [1, S, out_len]
    else:
        padded = padded[:, None, :]  # [S, 1, out_len]

    num = np.sum(target**2, axis=-1)
    den = np.sum((padded - target) ** 2, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sdr = 10 * np.log10(num / den)
    sdr = np.where(den == 0, np.inf, sdr)  # perfect reconstruction
    est_silent = ~np.any(padded != 0, axis=-1)
    sdr = np.where(np.broadcast_to(est_silent, sdr.shape), -np.inf, sdr)
    return sdr if all_pairs else sdr[:, 0]


def bss_eval_sdr(
    references, estimates, permutation=None, filter_length=BSS_FILTER_LENGTH
):
    """BSS-Eval v3 SDR of one utterance, in dB.

    Gives the ``sdr`` of ``mir_eval.separation.bss_eval_sources(
    references, estimates, compute_permutation=False)`` (to within 1e-11
    dB in the tests, i.e. float64 round-off). The estimate of each source
    may differ from its reference by a time-invariant FIR filter of
    ``filter_length`` taps without penalty::

        s_target = argmin_{h} || s_hat - h * s ||  (least squares over
                   causal filters h of length filter_length)
        SDR      = 10 log10(||s_target||^2 / ||s_hat - s_target||^2)

    computed with FFT correlations and one linear solve per source in
    float64. A perfect estimate (``s_hat`` = filtered ``s``) gives
    ``+inf``; a silent (all-zero) estimate gives ``-inf`` (``mir_eval``
    raises an error instead). The value is independent of the estimate's
    scale.

    Arguments
    ---------
    references : numpy.ndarray or torch.Tensor
        Reference sources ``[S, T]`` (a 1-D input is one source). No
        reference may be all zeros.
    estimates : numpy.ndarray or torch.Tensor
        Estimated sources ``[S, T]``.
    permutation : sequence of int, optional
        If given, reference ``j`` is evaluated against estimate
        ``permutation[j]`` (e.g. the permutation chosen by SI-SNR PIT, or a
        ``PitWrapper`` ``perms[b]``). Default: estimate ``j``.
    filter_length : int
        Number of taps of the distortion filter (512 in BSS-Eval v3).

    Returns
    -------
    numpy.ndarray
        ``[S]`` float64 SDR in dB, entry ``j`` for reference ``j``.

    Example
    -------
    >>> rng = np.random.RandomState(0)
    >>> refs = rng.randn(2, 8000)
    >>> ests = refs + 0.1 * rng.randn(2, 8000)  # 20 dB of white noise
    >>> bss_eval_sdr(refs, ests).round(2)
    array([20.2 , 20.18])
    >>> bss_eval_sdr(refs, ests[::-1], permutation=[1, 0]).round(2)
    array([20.2 , 20.18])
    """
    references, estimates = _check_sdr_inputs(
        references, estimates, filter_length
    )
    if permutation is not None:
        perm = _check_permutation(permutation, references.shape[0])
        estimates = estimates[perm]
    return _sdr_core(references, estimates, filter_length, all_pairs=False)


def pairwise_sdr(references, estimates, filter_length=BSS_FILTER_LENGTH):
    """BSS-Eval v3 SDR of every (reference, estimate) pair of one utterance.

    Arguments
    ---------
    references : numpy.ndarray or torch.Tensor
        Reference sources ``[S, T]``.
    estimates : numpy.ndarray or torch.Tensor
        Estimated sources ``[S, T]``.
    filter_length : int
        Number of taps of the distortion filter.

    Returns
    -------
    numpy.ndarray
        ``[S, S]`` float64 matrix; entry ``[j, k]`` is the SDR (dB) of
        estimate ``k`` measured against reference ``j``.

    Example
    -------
    >>> rng = np.random.RandomState(0)
    >>> refs = rng.randn(2, 8000)
    >>> pairwise_sdr(refs, refs[::-1] + 0.1 * rng.randn(2, 8000)).round(1)
    array([[-12.2,  20.2],
           [ 20.2, -11.4]])
    """
    references, estimates = _check_sdr_inputs(
        references, estimates, filter_length
    )
    return _sdr_core(references, estimates, filter_length, all_pairs=True)


def best_permutation_sdr(
    references, estimates, filter_length=BSS_FILTER_LENGTH
):
    """BSS-Eval v3 SDR with the permutation maximising the mean SDR.

    Note that ``mir_eval.separation.bss_eval_sources`` with
    ``compute_permutation=True`` picks the permutation by mean SIR
    instead; both agree whenever the separation is reasonable.

    Arguments
    ---------
    references : numpy.ndarray or torch.Tensor
        Reference sources ``[S, T]``.
    estimates : numpy.ndarray or torch.Tensor
        Estimated sources ``[S, T]`` in any order.
    filter_length : int
        Number of taps of the distortion filter.

    Returns
    -------
    sdr : numpy.ndarray
        ``[S]`` SDR in dB; entry ``j`` is for reference ``j``.
    perm : numpy.ndarray
        ``[S]`` int array: reference ``j`` is paired with estimate
        ``perm[j]``.

    Example
    -------
    >>> rng = np.random.RandomState(0)
    >>> refs = rng.randn(2, 8000)
    >>> ests = refs[::-1] + 0.1 * rng.randn(2, 8000)
    >>> values, perm = best_permutation_sdr(refs, ests)
    >>> values.round(1), perm
    (array([20.2, 20.2]), array([1, 0]))
    """
    score = pairwise_sdr(references, estimates, filter_length=filter_length)
    perm = _best_permutation(score)
    return score[np.arange(score.shape[0]), perm], perm


# ---------------------------------------------------------------------------
# Everything for one utterance
# ---------------------------------------------------------------------------
def separation_metrics(
    mixture,
    references,
    estimates,
    eps=SI_SNR_EPS,
    filter_length=BSS_FILTER_LENGTH,
):
    """SI-SNR, SI-SNRi, SDR and SDRi of one separated utterance.

    The estimates are matched to the references by SI-SNR PIT (the
    permutation maximising the mean SI-SNR, as in training) and the same
    permutation is used for the SDR. The improvements are measured against
    the mixture used as the estimate of every source::

        si-snr_i = mean_j SI-SNR(est[perm[j]], ref[j]) - SI-SNR(mix, ref[j])
        sdr_i    = mean_j SDR(est[perm[j]], ref[j]) - SDR(mix, ref[j])

    SI-SNR is computed in float64 with :func:`si_snr` (so a perfect
    estimate is clipped at about ``10 log10(||s||^2 / eps)``); SDR with
    :func:`bss_eval_sdr` (a perfect estimate gives ``inf``).

    Arguments
    ---------
    mixture : numpy.ndarray or torch.Tensor
        Input mixture ``[T]`` (``[1, T]`` is accepted too).
    references : numpy.ndarray or torch.Tensor
        Reference sources ``[S, T]``; none may be all zeros or constant.
    estimates : numpy.ndarray or torch.Tensor
        Estimated sources ``[S, T]`` in any order.
    eps : float
        See :func:`si_snr`.
    filter_length : int
        See :func:`bss_eval_sdr`.

    Returns
    -------
    dict
        ``{"si-snr", "si-snr_i", "sdr", "sdr_i"}`` -> float (dB), each
        averaged over the sources.

    Raises
    ------
    ValueError
        For shapes other than ``[T]`` / ``[S, T]``, a different number of
        sources or samples, NaN or Inf values, and a silent (all-zero) or
        constant reference.

    Example
    -------
    >>> rng = np.random.RandomState(0)
    >>> refs = rng.randn(2, 8000)
    >>> mix = refs.sum(axis=0)
    >>> ests = refs[::-1] + 0.1 * rng.randn(2, 8000)  # swapped, 20 dB
    >>> m = separation_metrics(mix, refs, ests)
    >>> {key: round(value, 1) for key, value in m.items()}
    {'si-snr': 19.9, 'si-snr_i': 20.0, 'sdr': 20.2, 'sdr_i': 19.7}
    """
    references, estimates = _check_sources(references, estimates)
    mixture = _as_float64_array(mixture, "mixture")
    if mixture.ndim == 2 and mixture.shape[0] == 1:
        mixture = mixture[0]
    if mixture.ndim != 1:
        raise ValueError(
            f"mixture must have shape [T], got {tuple(mixture.shape)}"
        )
    if mixture.shape[0] != references.shape[1]:
        raise ValueError(
            f"mixture has {mixture.shape[0]} samples but references have "
            f"{references.shape[1]} (lengths must match)"
        )
    _check_finite(mixture, "mixture")
    centred = references - references.mean(axis=1, keepdims=True)
    # constant up to float rounding: removing the mean of 0.1 leaves
    # residues of about 1e-17, not exact zeros
    scale = np.abs(references).max(axis=1)
    constant = np.flatnonzero(
        np.abs(centred).max(axis=1) <= 1e-9 * scale
    )
    if constant.size:
        raise ValueError(
            f"reference source(s) {constant.tolist()} are constant (zero "
            "after removing the mean); SI-SNR is undefined"
        )

    n_src = references.shape[0]
    si_snr_values, perm = best_permutation_si_snr(
        references, estimates, eps=eps
    )
    mixtures = np.repeat(mixture[None, :], n_src, axis=0)
    si_snr_base = _si_snr_single(references, mixtures, eps)
    sdr_values = _sdr_core(
        references, estimates[perm], filter_length, all_pairs=False
    )
    sdr_base = _sdr_core(references, mixtures, filter_length, all_pairs=False)
    return {
        "si-snr": float(np.mean(si_snr_values)),
        "si-snr_i": float(np.mean(si_snr_values - si_snr_base)),
        "sdr": float(np.mean(sdr_values)),
        "sdr_i": float(np.mean(sdr_values - sdr_base)),
    }
