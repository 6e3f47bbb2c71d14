"""Environment settings for fast MossFormer inference on the CPU.

PyTorch's OpenMP runtime reads ``OMP_WAIT_POLICY`` once, when torch is
loaded. With the default policy its threads keep spinning for a while
after each operation, so the threads of numpy's OpenBLAS, which the
MossFormer inference path uses for its matrix products on AMD CPUs with
AVX-512 (see ``speechbrain_mossformer.cpu_blas``), wait for a core:
MossFormer (L) took 5.2 s instead of 4.0 s for 4 s of audio that way,
and 2.5 s with ``OMP_WAIT_POLICY=PASSIVE`` (family 26 AMD EPYC, 2
threads; timed by hand). ``fast_cpu_environment()``
gives that setting where it helps; ``apply_fast_cpu_environment()`` puts
it into this process's environment, which works only before ``torch`` and
``numpy`` are imported (``mossformer-separate`` does so itself). From a
shell, run a program under it with::

    python -m speechbrain_mossformer.cpu_env my_script.py --its-options
    python -m speechbrain_mossformer.cpu_env -m some.module --its-options

or print it for ``export``/``env`` with
``python -m speechbrain_mossformer.cpu_env --print``.

numpy's OpenBLAS chooses its kernels from the CPU itself; a
``OPENBLAS_CORETYPE`` set in the environment overrides that choice (some
machines set it to an AVX2 core type such as ``Haswell``, to work around
older OpenBLAS builds). Such a setting is kept; with AVX2 kernels
OpenBLAS is no faster than MKL, and no setting is made.

This module imports neither torch nor numpy.

Authors
 * speechbrain-mossformer contributors 2026
"""

import os
import sys

__all__ = [
    "AVX512_CORES",
    "cpu_vendor_and_flags",
    "passive_openmp",
    "fast_cpu_environment",
    "apply_fast_cpu_environment",
]

# OpenBLAS core types with AVX-512 float32 kernels (lower case)
AVX512_CORES = ("skylakex", "cooperlake", "sapphirerapids")


def cpu_vendor_and_flags(cpuinfo="/proc/cpuinfo"):
    """The vendor and instruction-set flags of the first CPU listed in
    ``cpuinfo`` (Linux), or ``("", frozenset())`` where it cannot be read.

    Arguments
    ---------
    cpuinfo : str
        The file to read.

    Returns
    -------
    tuple of (str, frozenset of str)

    Example
    -------
    >>> vendor, flags = cpu_vendor_and_flags("/no/such/file")
    >>> vendor, len(flags)
    ('', 0)
    """
    vendor, flags = "", frozenset()
    try:
        with open(cpuinfo, encoding="utf-8") as info:
            for line in info:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "vendor_id" and not vendor:
                    vendor = value.strip()
                elif key == "flags":
                    flags = frozenset(value.split())
                    break
    except OSError:
        pass
    return vendor, flags


def passive_openmp(environ=None):
    """True when ``OMP_WAIT_POLICY`` is ``passive`` (any case).

    Arguments
    ---------
    environ : mapping, optional
        The environment (default ``os.environ``).

    Returns
    -------
    bool

    Example
    -------
    >>> passive_openmp({"OMP_WAIT_POLICY": "Passive"})
    True
    >>> passive_openmp({})
    False
    """
    environ = os.environ if environ is None else environ
    return environ.get("OMP_WAIT_POLICY", "").strip().lower() == "passive"


def fast_cpu_environment(cpuinfo="/proc/cpuinfo", environ=None):
    """The settings that let this CPU run MossFormer's products in numpy's
    OpenBLAS (see the module doc), or none.

    ``OMP_WAIT_POLICY=PASSIVE`` on an AMD CPU with AVX-512 (``avx512f``),
    unless ``OPENBLAS_CORETYPE`` names a core type without AVX-512
    kernels.

    Arguments
    ---------
    cpuinfo : str
        Where to read the CPU's vendor and flags.
    environ : mapping, optional
        The environment (default ``os.environ``).

    Returns
    -------
    dict
        Variable name -> value.

    Example
    -------
    >>> fast_cpu_environment("/no/such/file")
    {}
    """
    environ = os.environ if environ is None else environ
    vendor, flags = cpu_vendor_and_flags(cpuinfo)
    core = environ.get("OPENBLAS_CORETYPE", "").strip().lower()
    if (
        vendor != "AuthenticAMD"
        or "avx512f" not in flags
        or (core and core not in AVX512_CORES)
    ):
        return {}
    return {"OMP_WAIT_POLICY": "PASSIVE"}


def apply_fast_cpu_environment(environ=None, modules=None):
    """Puts ``fast_cpu_environment()`` into ``environ``, keeping any
    variable the user set, when neither torch nor numpy is loaded yet.

    Arguments
    ---------
    environ : mapping, optional
        The environment to change (default ``os.environ``).
    modules : mapping, optional
        The loaded modules (default ``sys.modules``).

    Returns
    -------
    dict
        The settings it made (empty when it was too late).

    Example
    -------
    >>> apply_fast_cpu_environment({}, modules={"torch": None})
    {}
    >>> env = {"OMP_WAIT_POLICY": "active"}
    >>> apply_fast_cpu_environment(env, modules={})
    {}
    >>> env["OMP_WAIT_POLICY"]
    'active'
    """
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if "torch" in modules or "numpy" in modules:
        return {}
    made = {}
    for name, value in fast_cpu_environment(environ=environ).items():
        if name not in environ:
            environ[name] = value
            made[name] = value
    return made


def main(argv=None):
    """``python -m speechbrain_mossformer.cpu_env (--print | PYTHON_ARGS)``.

    With ``--print``, prints the settings as ``NAME=value`` lines; else
    starts ``python PYTHON_ARGS`` (a script or ``-m module`` and its
    options) with them added to the environment (variables already set
    are kept).

    Arguments
    ---------
    argv : list of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status (starting a program replaces this process).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: python -m speechbrain_mossformer.cpu_env --print\n"
            "       python -m speechbrain_mossformer.cpu_env "
            "(SCRIPT.py | -m MODULE | -c CODE) [ARGS ...]\n\n"
            + __doc__.split("\n\n")[1]
        )
        return 0 if argv else 2
    if argv[0] == "--print":
        for name, value in fast_cpu_environment().items():
            print(f"{name}={value}")
        return 0  # nothing printed: no setting helps on this CPU
    if not argv[0].startswith("-") and not os.path.isfile(argv[0]):
        print(f"error: no such script: {argv[0]}", file=sys.stderr)
        return 2
    environ = dict(os.environ)
    apply_fast_cpu_environment(environ, modules={})
    os.execve(sys.executable, [sys.executable, *argv], environ)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
