"""Data preparation for WSJ0-2mix and WSJ0-3mix.

The corpora made by the original MATLAB mixing scripts are laid out as::

    wsj0-mix/{2,3}speakers/wav8k|wav16k/min|max/{tr,cv,tt}/{mix,s1,s2[,s3]}

:func:`prepare_wsj0mix` writes one SpeechBrain CSV manifest per split. Unlike
the upstream recipe, ``sample_rate`` and ``version`` (min/max) really select
the folders, and a layout that does not match the options stops with a
clear error.

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

__all__ = ["prepare_wsj0mix", "WSJ0MIX_SPLITS"]

#: Split key -> (folder name, CSV file name).
WSJ0MIX_SPLITS = {
    "train": ("tr", "wsj0mix_tr.csv"),
    "valid": ("cv", "wsj0mix_cv.csv"),
    "test": ("tt", "wsj0mix_tt.csv"),
}


def prepare_wsj0mix(
    datapath,
    savepath,
    num_spks=2,
    sample_rate=8000,
    version="min",
    skip_prep=False,
):
    """Writes the CSV manifests of WSJ0-2mix or WSJ0-3mix.

    Arguments
    ---------
    datapath : str
        The ``2speakers`` or ``3speakers`` folder (the one holding
        ``wav8k``/``wav16k``). Manifest paths are written relative to it
        (``$data_root/wav8k/min/tr/mix/...``).
    savepath : str
        Folder for ``wsj0mix_tr.csv``, ``wsj0mix_cv.csv`` and
        ``wsj0mix_tt.csv``.
    num_spks : int
        2 or 3; selects the ``s3`` column and checks the folder has exactly
        that many source folders.
    sample_rate : int
        8000 or 16000: reads ``wav8k`` or ``wav16k``, and every file must
        have this rate.
    version : str
        ``"min"`` or ``"max"``.
    skip_prep : bool
        If True and the CSV files exist, they are only validated against
        the options; the data folder is not scanned.

    Returns
    -------
    dict
        ``{"train": csv, "valid": csv, "test": csv}``.

    Raises
    ------
    DataPreparationError
        (a ``ValueError``) or one of its subclasses, naming the path and the
        problem: missing or empty folder, layout not matching the options,
        mixture without a source file, wrong sample rate, unreadable audio.

    Example
    -------
    >>> from speechbrain_mossformer.dataprep.minidata import make_wsj0mix
    >>> root = str(getfixture("tmpdir"))
    >>> data = make_wsj0mix(root, n_train=2, n_valid=1, n_test=1)
    >>> csvs = prepare_wsj0mix(data, root + "/save")
    >>> sorted(csvs)
    ['test', 'train', 'valid']
    >>> open(csvs["test"]).readline().split(",")[:3]
    ['ID', 'duration', 'mix_wav']
    """
    if num_spks not in (2, 3):
        raise DataPreparationError(
            "num_spks must be 2 or 3 for WSJ0-mix, got %r" % (num_spks,)
        )
    _check_version(version)
    rate_folder = sample_rate_folder(sample_rate)
    datapath = str(datapath)
    folders = {"mix": "mix"}
    for i in range(num_spks):
        folders["s%d" % (i + 1)] = "s%d" % (i + 1)
    split_root = os.path.join(datapath, rate_folder, version)
    if not skip_prep:
        check_data_folder(datapath, "WSJ0-mix data folder")
        spk_dirs = [
            d for d in _subfolders(datapath) if d.endswith("speakers")
        ]
        hint = ""
        if spk_dirs:
            hint = (
                "datapath must be the %dspeakers folder itself, e.g. %s."
                % (num_spks, os.path.join(datapath, "%dspeakers" % num_spks))
            )
        rate_dir = require_subfolder(datapath, rate_folder, hint)
        require_subfolder(rate_dir, version)
        _check_num_sources(split_root, num_spks)
    return create_manifests(
        data_root=datapath,
        split_root=split_root,
        splits=WSJ0MIX_SPLITS,
        folders=folders,
        savepath=savepath,
        sample_rate=sample_rate,
        skip_prep=skip_prep,
    )


def _check_num_sources(split_root, num_spks):
    """Stops if the split folders hold a different number of sources."""
    for split, _ in WSJ0MIX_SPLITS.values():
        split_dir = os.path.join(split_root, split)
        if not os.path.isdir(split_dir):
            continue
        extra = "s%d" % (num_spks + 1)
        if os.path.isdir(os.path.join(split_dir, extra)):
            raise LayoutError(
                "num_spks=%d but %s has a '%s' folder (sub-folders %s): "
                "this looks like a %d-speaker set; set num_spks accordingly."
                % (
                    num_spks,
                    split_dir,
                    extra,
                    _subfolders(split_dir),
                    num_spks + 1,
                )
            )
