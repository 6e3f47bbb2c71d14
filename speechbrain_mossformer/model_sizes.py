"""Parameter counts of MossFormer (S), (M) and (L) against the paper.

Usage::

    python -m speechbrain_mossformer.model_sizes [HPARAMS_DIR]

Prints the trainable parameter count of ``hparams/mossformer_{s,m,l}.yaml``
next to the paper's figure and exits with status 1 if L is not exactly
42,101,834 or S/M are more than 1% away from 10.8M / 25.3M; status 2 (one
line on stderr) for a folder or yaml that cannot be read.

Authors
 * speechbrain-mossformer contributors 2026
"""

import argparse
import os
import sys

from hyperpyyaml import load_hyperpyyaml

from speechbrain_mossformer.lobes.models.mossformer import count_parameters

#: Paper sizes (MossFormer, ICASSP 2023): S 10.8M, M 25.3M, L 42.1M.
PAPER_SIZES = {"s": 10_800_000, "m": 25_300_000, "l": 42_100_000}

#: The exact count of the official code's defaults (MossFormer (L)).
OFFICIAL_L = 42_101_834


def default_hparams_dir():
    """The repository's ``hparams/`` folder.

    Example
    -------
    >>> os.path.basename(default_hparams_dir())
    'hparams'
    """
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(os.path.dirname(here), "hparams")


def model_sizes(hparams_dir=None):
    """Trainable parameters of the S, M and L yamls.

    Arguments
    ---------
    hparams_dir : str, optional
        Folder with ``mossformer_{s,m,l}.yaml``.

    Returns
    -------
    dict
        ``{"s": int, "m": int, "l": int}``.

    Example
    -------
    >>> model_sizes()["l"]
    42101834
    """
    hparams_dir = hparams_dir or default_hparams_dir()
    counts = {}
    for size in ("s", "m", "l"):
        path = os.path.join(hparams_dir, f"mossformer_{size}.yaml")
        with open(path, encoding="utf-8") as f:
            hparams = load_hyperpyyaml(f)
        counts[size] = sum(
            count_parameters(m) for m in hparams["modules"].values()
        )
    return counts


def main(argv=None):
    """Prints the table; returns 0 when all sizes match the paper, 1 when
    one does not, 2 when the yamls cannot be read.

    Example
    -------
    >>> main(["/no/such/folder"])
    2
    """
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_mossformer.model_sizes",
        description="Parameter counts of MossFormer (S), (M) and (L) "
        "against the paper.",
    )
    parser.add_argument(
        "hparams_dir", nargs="?", default=None,
        help="folder with mossformer_{s,m,l}.yaml (default: the "
        "repository's hparams/)",
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    folder = args.hparams_dir or default_hparams_dir()
    if not os.path.isdir(folder):
        print(f"error: {folder}: no such folder", file=sys.stderr)
        return 2
    try:
        counts = model_sizes(folder)
    except OSError as err:
        print(f"error: {err.filename}: {err.strerror}", file=sys.stderr)
        return 2
    except Exception as err:  # a yaml that does not build a model
        from speechbrain_mossformer.errors import first_line

        print(f"error: {folder}: {first_line(err)}", file=sys.stderr)
        return 2
    ok = counts["l"] == OFFICIAL_L
    print("| model | our parameters | paper | difference |")
    print("|---|---|---|---|")
    for size in ("s", "m", "l"):
        diff = (counts[size] - PAPER_SIZES[size]) / PAPER_SIZES[size]
        ok = ok and abs(diff) < 0.01
        print(
            f"| MossFormer ({size.upper()}) | {counts[size]:,} | "
            f"{PAPER_SIZES[size] / 1e6:.1f}M | {100 * diff:+.2f}% |"
        )
    print("all sizes match" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
