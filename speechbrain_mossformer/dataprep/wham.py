"""Data preparation for WHAM! and WHAMR! (two-speaker separation).

Layouts made by the official WHAM!/WHAMR! scripts::

    wham_original/wav8k|wav16k/min|max/{tr,cv,tt}/
        mix_both, mix_clean, mix_single, s1, s2, noise
    whamr/wav8k|wav16k/min|max/{tr,cv,tt}/
        mix_both_reverb, mix_clean_reverb, mix_single_reverb,
        mix_both_anechoic, ..., s1_anechoic, s2_anechoic,
        s1_reverb, s2_reverb, noise

:func:`prepare_wham` reads the noisy mixtures (``mix_both`` or
``mix_both_reverb``) and writes the noise too. Differences from the upstream
recipe: WHAM! versus WHAMR! is an explicit option (``reverb``) rather than
guessed from the folder name; for WHAMR! the targets of *all* splits are the
anechoic sources by default (the standard joint separation and
dereverberation protocol; upstream scores validation and test against the
reverberant sources), ``targets="reverb"`` selects ``s<i>_reverb``; and
``sample_rate``/``version`` are real options.

Authors
 * speechbrain-mossformer contributors 2026
"""

import os

from speechbrain_mossformer.dataprep.csv_manifest import (
    DataPreparationError,
    LayoutError,
    _check_version,
    _subfolders,
    check_data_folder,
    create_manifests,
    require_subfolder,
    sample_rate_folder,
)

__all__ = ["prepare_wham", "wham_folders"]

_SPLITS = {"train": "tr", "valid": "cv", "test": "tt"}


def wham_folders(reverb=False, targets="anechoic"):
    """Returns the sub-folder read for each manifest column.

    Arguments
    ---------
    reverb : bool
        False for WHAM!, True for WHAMR!.
    targets : str
        WHAMR! only: ``"anechoic"`` (default) or ``"reverb"``.

    Returns
    -------
    dict
        Column key (``mix``, ``s1``, ``s2``, ``noise``) -> sub-folder.

    Example
    -------
    >>> wham_folders()
    {'mix': 'mix_both', 's1': 's1', 's2': 's2', 'noise': 'noise'}
    >>> wham_folders(reverb=True)["s1"]
    's1_anechoic'
    """
    if targets not in ("anechoic", "reverb"):
        raise DataPreparationError(
            "whamr_targets must be 'anechoic' or 'reverb', got %r" % (targets,)
        )
    if not reverb:
        if targets != "anechoic":
            raise DataPreparationError(
                "targets=%r needs reverb=True (WHAM! has no reverberant "
                "sources)" % (targets,)
            )
        return {"mix": "mix_both", "s1": "s1", "s2": "s2", "noise": "noise"}
    return {
        "mix": "mix_both_reverb",
        "s1": "s1_" + targets,
        "s2": "s2_" + targets,
        "noise": "noise",
    }


def prepare_wham(
    datapath,
    savepath,
    sample_rate=8000,
    version="min",
    reverb=False,
    targets="anechoic",
    skip_prep=False,
):
    """Writes the CSV manifests of WHAM! or WHAMR!.

    Arguments
    ---------
    datapath : str
        The corpus folder holding ``wav8k``/``wav16k`` (``wham_original``
        or ``whamr``; the name itself is not used). Manifest paths are
        written relative to it.
    savepath : str
        Folder for ``wham_{tr,cv,tt}.csv`` (WHAM!) or
        ``whamr_{tr,cv,tt}.csv`` (WHAMR!).
    sample_rate : int
        8000 or 16000: reads ``wav8k`` or ``wav16k``; every file must have
        this rate.
    version : str
        ``"min"`` or ``"max"``.
    reverb : bool
        False: WHAM! (``mix_both``, ``s1``, ``s2``, ``noise``). True: WHAMR!
        (``mix_both_reverb`` and the ``targets`` sources, ``noise``).
    targets : str
        WHAMR! targets for every split: ``"anechoic"`` (default,
        separation + dereverberation) or ``"reverb"``.
    skip_prep : bool
        If True and the CSV files exist, they are only validated.

    Returns
    -------
    dict
        ``{"train": csv, "valid": csv, "test": csv}``; every CSV has the
        ``noise_wav`` columns.

    Raises
    ------
    DataPreparationError
        Or a subclass, naming the path and the problem.

    Example
    -------
    >>> from speechbrain_mossformer.dataprep.minidata import make_wham
    >>> root = str(getfixture("tmpdir"))
    >>> data = make_wham(root, reverb=True, n_train=2, n_valid=1, n_test=1)
    >>> csvs = prepare_wham(data, root + "/save", reverb=True)
    >>> import os; os.path.basename(csvs["valid"])
    'whamr_cv.csv'
    >>> "s1_anechoic" in open(csvs["valid"]).read()
    True
    """
    folders = wham_folders(reverb, targets)
    _check_version(version)
    rate_folder = sample_rate_folder(sample_rate)
    datapath = str(datapath)
    name = "whamr" if reverb else "wham"
    splits = {
        key: (split, "%s_%s.csv" % (name, split))
        for key, split in _SPLITS.items()
    }
    split_root = os.path.join(datapath, rate_folder, version)
    if not skip_prep:
        check_data_folder(datapath, "WHAM!/WHAMR! data folder")
        rate_dir = require_subfolder(
            datapath, rate_folder, _corpus_hint(datapath)
        )
        require_subfolder(rate_dir, version)
        _check_reverb_option(split_root, reverb)
    return create_manifests(
        data_root=datapath,
        split_root=split_root,
        splits=splits,
        folders=folders,
        savepath=savepath,
        sample_rate=sample_rate,
        skip_prep=skip_prep,
    )


def _corpus_hint(datapath):
    """Suggests the right folder if ``datapath`` is one level too high."""
    found = [
        d for d in _subfolders(datapath) if d in ("wham_original", "whamr")
    ]
    if found:
        return "datapath must be the corpus folder itself, e.g. %s." % (
            os.path.join(datapath, found[0])
        )
    return ""


def _check_reverb_option(split_root, reverb):
    """Says clearly when reverb does not match the corpus found."""
    for split in _SPLITS.values():
        split_dir = os.path.join(split_root, split)
        if not os.path.isdir(split_dir):
            continue
        subs = _subfolders(split_dir)
        if not reverb and "mix_both" not in subs and "mix_both_reverb" in subs:
            raise LayoutError(
                "%s has the WHAMR! folders %s, but the run is set up for "
                "WHAM! (whamr: False): for WHAMR! use the recipe's "
                "hparams/mossformer-whamr.yaml (in Python: prepare_wham "
                "with reverb=True)."
                % (split_dir, subs)
            )
        if reverb and "mix_both_reverb" not in subs and "mix_both" in subs:
            raise LayoutError(
                "%s has the WHAM! folders %s, but the run is set up for "
                "WHAMR! (whamr: True): for WHAM! use the recipe's "
                "hparams/mossformer-wham.yaml (in Python: prepare_wham "
                "with reverb=False)."
                % (split_dir, subs)
            )
