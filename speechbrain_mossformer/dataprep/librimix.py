"""Data preparation for Libri2Mix and Libri3Mix.

Layout made by the LibriMix scripts (github.com/JorisCos/LibriMix)::

    Libri2Mix|Libri3Mix/wav8k|wav16k/min|max/
        {train-360,train-100,dev,test}/{mix_clean,mix_both,s1,s2,[s3],noise}

:func:`prepare_librimix` writes one SpeechBrain CSV manifest per split.
Unlike the upstream recipe, ``sample_rate`` and ``version`` really select the
folders. The mixture is ``mix_clean`` or, with ``use_noise``, ``mix_both``;
the ``noise_wav`` columns are written whenever the ``noise`` folder exists
(and it must exist with ``use_noise``).

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

__all__ = ["prepare_librimix"]


def prepare_librimix(
    datapath,
    savepath,
    num_spks=2,
    sample_rate=8000,
    version="min",
    use_noise=False,
    train_set="train-360",
    skip_prep=False,
):
    """Writes the CSV manifests of Libri2Mix or Libri3Mix.

    Arguments
    ---------
    datapath : str
        The ``Libri2Mix`` or ``Libri3Mix`` folder (holding ``wav8k`` /
        ``wav16k``). Manifest paths are written relative to it.
    savepath : str
        Folder for ``libri<N>mix_<train_set>.csv``, ``libri<N>mix_dev.csv``
        and ``libri<N>mix_test.csv``.
    num_spks : int
        2 or 3.
    sample_rate : int
        8000 or 16000: reads ``wav8k`` or ``wav16k``; every file must have
        this rate.
    version : str
        ``"min"`` or ``"max"``.
    use_noise : bool
        Mixture from ``mix_both`` (speech + WHAM! noise) instead of
        ``mix_clean``.
    train_set : str
        ``"train-360"`` or ``"train-100"``.
    skip_prep : bool
        If True and the CSV files exist, they are only validated.

    Returns
    -------
    dict
        ``{"train": csv, "valid": csv, "test": csv}``.

    Raises
    ------
    DataPreparationError
        Or a subclass, naming the path and the problem.

    Example
    -------
    >>> from speechbrain_mossformer.dataprep.minidata import make_librimix
    >>> root = str(getfixture("tmpdir"))
    >>> data = make_librimix(root, n_train=2, n_valid=1, n_test=1)
    >>> csvs = prepare_librimix(data, root + "/save", use_noise=True)
    >>> import os; os.path.basename(csvs["train"])
    'libri2mix_train-360.csv'
    """
    if num_spks not in (2, 3):
        raise DataPreparationError(
            "num_spks must be 2 or 3 for LibriMix, got %r" % (num_spks,)
        )
    if train_set not in ("train-360", "train-100"):
        raise DataPreparationError(
            "train_set must be 'train-360' or 'train-100', got %r"
            % (train_set,)
        )
    _check_version(version)
    rate_folder = sample_rate_folder(sample_rate)
    datapath = str(datapath)
    name = "libri%dmix" % num_spks
    splits = {
        "train": (train_set, "%s_%s.csv" % (name, train_set)),
        "valid": ("dev", "%s_dev.csv" % name),
        "test": ("test", "%s_test.csv" % name),
    }
    folders = {"mix": "mix_both" if use_noise else "mix_clean"}
    for i in range(num_spks):
        folders["s%d" % (i + 1)] = "s%d" % (i + 1)
    split_root = os.path.join(datapath, rate_folder, version)
    if not skip_prep:
        check_data_folder(datapath, "LibriMix data folder")
        rate_dir = require_subfolder(
            datapath, rate_folder, _corpus_hint(datapath, num_spks)
        )
        require_subfolder(rate_dir, version)
        if _has_noise(split_root, splits) or use_noise:
            folders["noise"] = "noise"
        _check_num_sources(split_root, splits, num_spks)
    else:
        csv_path = os.path.join(savepath, splits["train"][1])
        if use_noise or _csv_has_noise(csv_path):
            folders["noise"] = "noise"
    return create_manifests(
        data_root=datapath,
        split_root=split_root,
        splits=splits,
        folders=folders,
        savepath=savepath,
        sample_rate=sample_rate,
        skip_prep=skip_prep,
    )


def _corpus_hint(datapath, num_spks):
    """Suggests the right folder if ``datapath`` is one level too high, or
    is the rate folder (``wav8k``) or a version folder (``min``) in it.

    Example
    -------
    >>> _corpus_hint("/data/Libri2Mix/wav8k/min", 2)
    'datapath must be the Libri2Mix folder itself, not a folder in it: /data/Libri2Mix.'
    """
    wanted = "Libri%dMix" % num_spks
    if os.path.isdir(datapath) and wanted in _subfolders(datapath):
        return "datapath must be the %s folder itself: %s." % (
            wanted,
            os.path.join(datapath, wanted),
        )
    parts = os.path.normpath(datapath).split(os.sep)
    for depth in (1, 2):
        if len(parts) > depth and parts[-depth].startswith("wav") and (
            parts[-depth].endswith("k") and parts[-depth][3:-1].isdigit()
        ):
            return "datapath must be the %s folder itself, not a folder " \
                "in it: %s." % (wanted, os.sep.join(parts[:-depth]) or os.sep)
    return ""


def _has_noise(split_root, splits):
    """True if every split folder that exists has a noise folder."""
    found = [
        os.path.isdir(os.path.join(split_root, split, "noise"))
        for split, _ in splits.values()
        if os.path.isdir(os.path.join(split_root, split))
    ]
    return bool(found) and all(found)


def _csv_has_noise(csv_path):
    """True if an existing manifest has the noise_wav column."""
    if not os.path.isfile(csv_path):
        return False
    with open(csv_path, encoding="utf-8") as f:
        return "noise_wav" in f.readline().strip().split(",")


def _check_num_sources(split_root, splits, num_spks):
    """Stops if the split folders hold more sources than ``num_spks``."""
    extra = "s%d" % (num_spks + 1)
    for split, _ in splits.values():
        split_dir = os.path.join(split_root, split)
        if os.path.isdir(os.path.join(split_dir, extra)):
            raise LayoutError(
                "num_spks=%d but %s has a '%s' folder (sub-folders %s): "
                "this looks like Libri%dMix; set num_spks accordingly."
                % (
                    num_spks,
                    split_dir,
                    extra,
                    _subfolders(split_dir),
                    num_spks + 1,
                )
            )
