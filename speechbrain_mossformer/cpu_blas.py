"""Matrix products on the CPU through numpy's OpenBLAS, where it is faster.

PyTorch's CPU wheels multiply float32 matrices with Intel's MKL. On the
2-core AMD EPYC (family 26, Zen 5, AVX-512) this project is measured on,
MKL runs MossFormer (L)'s five largest product shapes at 80-89 GMAC/s
with 2 threads, while the AVX-512 kernels of the OpenBLAS that numpy's
wheels ship run them at 162-196 GMAC/s
(``benchmarks/results/matmul_floor_openblas.md``). Both are exact float32
products (they differ only in the order of the sums, as two thread counts
do); the model stays within 1e-5 of the official fixtures either way.

The MossFormer inference path (plain eager mode, no autograd, no autocast,
float32 on the CPU) sends its large products to ``gemm`` and
``batched_gemm``, which choose the library:

* ``MOSSFORMER_CPU_BLAS=torch`` in the environment: torch's own, always;
* ``MOSSFORMER_CPU_BLAS=openblas``: numpy's OpenBLAS whenever it is found;
* unset or ``auto``: numpy's OpenBLAS only where it was measured to be
  faster: an AMD CPU, torch's BLAS is MKL, OpenBLAS runs AVX-512 kernels
  and ``OMP_WAIT_POLICY=PASSIVE`` (see below); torch's own everywhere else.

``OMP_WAIT_POLICY=PASSIVE`` must be in the environment before torch is
loaded, or PyTorch's spinning OpenMP threads slow OpenBLAS's down
(``speechbrain_mossformer.cpu_env`` explains and applies it;
``mossformer-separate`` does so itself). numpy's OpenBLAS chooses its
kernels from the CPU unless ``OPENBLAS_CORETYPE`` says otherwise; with its
AVX2 kernels it is no faster than MKL, so ``auto`` leaves those to torch.

Authors
 * speechbrain-mossformer contributors 2026
"""

import ctypes
import functools
import os

import torch

from speechbrain_mossformer.cpu_env import (
    AVX512_CORES,
    cpu_vendor_and_flags,
    passive_openmp,
)

__all__ = [
    "ENV_VARIABLE",
    "gemm",
    "in_place_ok",
    "plain_eager",
    "batched_gemm",
    "openblas",
    "describe",
]

# The environment variable that chooses the library (see the module doc).
ENV_VARIABLE = "MOSSFORMER_CPU_BLAS"
_CHOICES = ("auto", "torch", "openblas")

# CBLAS constants (cblas.h)
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


class _OpenBLAS:
    """The ``cblas_sgemm`` of the OpenBLAS numpy loaded (its wheels')."""

    def __init__(self, path, lib, sgemm, index_type, set_threads, corename):
        self.path = path
        self.lib = lib
        self.sgemm = sgemm
        self.index_type = index_type
        self.set_threads = set_threads
        self.corename = corename
        self.threads = None


def _loaded_openblas_paths(folder):
    """Paths of the loaded shared libraries in ``folder`` named like
    OpenBLAS (Linux: read from ``/proc/self/maps``)."""
    paths = []
    folder = os.path.realpath(folder)
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            for line in maps:
                path = line.split(maxsplit=5)[-1].strip()
                name = os.path.basename(path).lower()
                if (
                    "openblas" in name
                    and os.path.dirname(os.path.realpath(path)) == folder
                    and path not in paths
                ):
                    paths.append(path)
    except OSError:
        pass
    return paths


@functools.lru_cache(maxsize=None)
def openblas():
    """numpy's OpenBLAS, or None where it is not found.

    Only the libraries numpy's own wheels ship are used (their symbols are
    named ``scipy_cblas_sgemm64_``, 64-bit indices, or
    ``scipy_cblas_sgemm``, 32-bit), so the index width is known.

    Returns
    -------
    _OpenBLAS or None

    Example
    -------
    >>> found = openblas()
    >>> found is None or found.index_type in (ctypes.c_int64, ctypes.c_int)
    True
    """
    import numpy  # loads its BLAS

    # the wheels' libraries sit in numpy.libs beside the package (scipy
    # ships another OpenBLAS, in scipy.libs, which is not used)
    numpy_libs = os.path.join(
        os.path.dirname(os.path.dirname(numpy.__file__)), "numpy.libs"
    )
    for path in _loaded_openblas_paths(numpy_libs):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol, suffix, index_type in (
            ("scipy_cblas_sgemm64_", "64_", ctypes.c_int64),
            ("scipy_cblas_sgemm", "", ctypes.c_int),
        ):
            sgemm = getattr(lib, symbol, None)
            if sgemm is None:
                continue
            sgemm.restype = None
            sgemm.argtypes = [ctypes.c_int] * 3 + [index_type] * 3 + [
                ctypes.c_float,
                ctypes.c_void_p,
                index_type,
                ctypes.c_void_p,
                index_type,
                ctypes.c_float,
                ctypes.c_void_p,
                index_type,
            ]
            set_threads = getattr(
                lib, f"scipy_openblas_set_num_threads{suffix}", None
            )
            if set_threads is not None:
                set_threads.restype = None
                set_threads.argtypes = [ctypes.c_int]
            corename = getattr(
                lib, f"scipy_openblas_get_corename{suffix}", None
            )
            name = ""
            if corename is not None:
                corename.restype = ctypes.c_char_p
                name = (corename() or b"").decode("ascii", "replace")
            return _OpenBLAS(path, lib, sgemm, index_type, set_threads, name)
    return None


def _choice():
    """The value of ``MOSSFORMER_CPU_BLAS`` (``auto`` when unset)."""
    value = os.environ.get(ENV_VARIABLE, "auto").strip().lower() or "auto"
    if value not in _CHOICES:
        raise ValueError(
            f"{ENV_VARIABLE}={os.environ[ENV_VARIABLE]!r}: expected one of "
            f"{', '.join(_CHOICES)}"
        )
    return value


@functools.lru_cache(maxsize=None)
def _selected(choice):
    """numpy's OpenBLAS when ``choice`` (see the module doc) selects it."""
    if choice == "torch":
        return None
    found = openblas()
    if choice == "auto" and found is not None:
        vendor, _ = cpu_vendor_and_flags()
        if not (
            vendor == "AuthenticAMD"
            and torch.backends.mkl.is_available()
            and found.corename.lower() in AVX512_CORES
            and passive_openmp()
        ):
            return None
    return found


def plain_eager():
    """True in plain eager mode: no ``torch.func`` transform, no tracing
    (ONNX export, ``torch.jit.trace``) and no compilation, all of which
    must see the plain operations.

    Returns
    -------
    bool

    Example
    -------
    >>> plain_eager()
    True
    """
    # torch's private test for torch.func transforms (torch 2.x); should
    # it disappear, assume one is active and take the plain path
    functorch_active = getattr(
        torch._C, "_are_functorch_transforms_active", lambda: True
    )
    return not (
        functorch_active()
        or torch.jit.is_tracing()
        or torch.compiler.is_compiling()
    )


# Device types whose autocast state ``in_place_ok`` checks.
_AUTOCAST_DEVICES = ("cpu", "cuda", "xpu", "mps")


def in_place_ok():
    """True when the model's inference shortcuts cannot break anything:
    in-place operations, shared buffers and the products in OpenBLAS.

    That is when autograd records no graph (``torch.no_grad`` or
    ``torch.inference_mode``), no graph is being traced or compiled
    (ONNX export, ``torch.compile``: the shared ``Scratch`` buffers are
    chosen by memory address, which a compiled graph cannot follow; the
    compiler plans its own buffers) and no autocast region is active
    (``--eval_precision=bf16``, ``torch.autocast``: the matmuls then return
    bf16/fp16 tensors, which cannot be written into float32 buffers), nor
    a ``torch.func`` transform (``vmap``: its batched tensors take no
    ``out=`` arguments and have no memory address of their own). The
    fast in-place variants give the same numbers as the plain
    expressions they replace.

    Returns
    -------
    bool

    Example
    -------
    >>> with torch.no_grad():
    ...     in_place_ok()
    True
    >>> with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
    ...     in_place_ok()
    False
    """
    return (
        not torch.is_grad_enabled()
        and plain_eager()
        and not any(map(torch.is_autocast_enabled, _AUTOCAST_DEVICES))
    )


def _library_for(*tensors):
    """numpy's OpenBLAS when it is selected and may run a product of
    ``tensors`` (float32 CPU tensors, ``in_place_ok()``), else None."""
    blas = _selected(_choice())
    if (
        blas is None
        or not in_place_ok()
        or not all(
            t.dtype == torch.float32 and t.device.type == "cpu"
            for t in tensors
        )
    ):
        return None
    return blas


def _operand(t):
    """(transpose flag, leading dimension) of a 2-D float32 tensor a BLAS
    can read as it is, or None."""
    rows, cols = t.shape
    s0, s1 = t.stride()
    if s1 == 1 or cols == 1:
        lead = s0 if rows > 1 else cols
        if lead >= max(1, cols):
            return _NO_TRANS, lead
    if s0 == 1 or rows == 1:
        lead = s1 if cols > 1 else rows
        if lead >= max(1, rows):
            return _TRANS, lead
    return None


def gemm(a, b, out, accumulate=False, bias=None):
    """``out = a @ b`` (``out += a @ b`` with ``accumulate``; ``out = bias
    + a @ b`` with ``bias``), 2-D.

    Runs in numpy's OpenBLAS when it is selected (see the module doc) and
    the operands are float32 CPU tensors it can read in place (each with
    one axis of stride 1, e.g. a transposed view, or ``out`` with padded
    rows); otherwise in torch (``torch.mm``/``addmm_``). No autograd:
    the inference path only.

    Arguments
    ---------
    a : torch.Tensor
        [M, K].
    b : torch.Tensor
        [K, N].
    out : torch.Tensor
        [M, N], written (or added to) in place; its rows may be padded.
    accumulate : bool
        Add the product to ``out`` instead of replacing it.
    bias : torch.Tensor, optional
        [N], added to every row (instead of ``accumulate``).

    Returns
    -------
    torch.Tensor
        ``out``.

    Example
    -------
    >>> a, b = torch.randn(5, 3), torch.randn(4, 3).t()
    >>> out = torch.ones(5, 6)[:, :4]
    >>> _ = gemm(a, b, out, accumulate=True)
    >>> torch.allclose(out, 1 + a @ b, atol=1e-5)
    True
    """
    return _gemm_with(_library_for(a, b, out), a, b, out, accumulate, bias)


def _gemm_with(blas, a, b, out, accumulate=False, bias=None):
    """``gemm`` in ``blas`` (an ``_OpenBLAS``, or None for torch's own);
    torch's own too where ``blas`` cannot read the operands in place."""
    m, k = a.shape
    n = b.shape[1]
    layout = None
    if (
        blas is not None
        and m > 0
        and n > 0
        and k > 0
        and out.stride(1) == 1
        and (out.stride(0) >= n or m == 1)
    ):
        layout = (_operand(a), _operand(b))
    if layout is None or None in layout:
        if bias is not None:
            return torch.addmm(bias, a, b, out=out)
        if accumulate:
            return out.addmm_(a, b)
        return torch.mm(a, b, out=out)
    if bias is not None:
        # [M, N]: the bias in every row, then the product added to it
        out.copy_(bias.expand(m, n))
        accumulate = True
    threads = torch.get_num_threads()
    if blas.set_threads is not None and blas.threads != threads:
        blas.set_threads(threads)
        blas.threads = threads
    (trans_a, lda), (trans_b, ldb) = layout
    blas.sgemm(
        _ROW_MAJOR,
        trans_a,
        trans_b,
        m,
        n,
        k,
        1.0,
        a.data_ptr(),
        lda,
        b.data_ptr(),
        ldb,
        1.0 if accumulate else 0.0,
        out.data_ptr(),
        out.stride(0) if m > 1 else n,
    )
    return out


def batched_gemm(a, b, out, accumulate=False):
    """``out[i] = a[i] @ b[i]`` (or ``+=`` with ``accumulate``), 3-D.

    One ``gemm`` per item when numpy's OpenBLAS is selected, else
    ``torch.bmm``/``baddbmm_``.

    Arguments
    ---------
    a : torch.Tensor
        [G, M, K].
    b : torch.Tensor
        [G, K, N].
    out : torch.Tensor
        [G, M, N], written (or added to) in place.
    accumulate : bool
        Add the products to ``out``.

    Returns
    -------
    torch.Tensor
        ``out``.

    Example
    -------
    >>> a, b = torch.randn(3, 5, 4), torch.randn(3, 4, 2)
    >>> out = torch.zeros(3, 5, 2)
    >>> torch.allclose(batched_gemm(a, b, out), a @ b, atol=1e-5)
    True
    """
    blas = _library_for(a, b, out)
    if blas is None:
        if accumulate:
            return out.baddbmm_(a, b)
        return torch.bmm(a, b, out=out)
    for i in range(a.shape[0]):
        _gemm_with(blas, a[i], b[i], out[i], accumulate)
    return out


def describe():
    """One line naming the library that runs the inference products.

    Returns
    -------
    str

    Example
    -------
    >>> isinstance(describe(), str)
    True
    """
    blas = _selected(_choice())
    if blas is None:
        return "torch's own BLAS"
    core = f", {blas.corename} kernels" if blas.corename else ""
    return f"numpy's OpenBLAS ({os.path.basename(blas.path)}{core})"
