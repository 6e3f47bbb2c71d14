"""The training script shared by every recipe (``recipes/*/separation``).

Each recipe's ``train.py`` is one call::

    run_recipe(sys.argv[1:], dataset="wsj0mix")   # or "wham", "librimix"

and is run the SpeechBrain way::

    python train.py hparams/mossformer.yaml --data_folder /data/...
    torchrun --nproc_per_node=8 train.py hparams/mossformer.yaml ...

The flow: parse arguments, load the yaml, start DDP, create the experiment
folder, prepare the data (main process only), build the datasets (static
CSVs, or dynamic mixing for training), fit the shared ``Separation`` Brain,
then evaluate the best checkpoint and write ``test_results.csv``.

Authors
 * speechbrain-mossformer contributors 2026
"""

import dataclasses
import logging
import os
import shutil
import signal
import sys
import threading
import time

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.distributed import (
    if_main_process,
    is_distributed_initialized,
    run_on_main,
)

from speechbrain_mossformer.brain import (
    Separation,
    Terminated,
    raise_terminated,
)
from speechbrain_mossformer.checkpoints import (
    CheckpointSaveError,
    checkpoint_folders,
    process_count,
    unfinished_checkpoints,
)
from speechbrain_mossformer.dataprep.csv_manifest import DataPreparationError
from speechbrain_mossformer.errors import device_problem, first_line

logger = logging.getLogger(__name__)

DATASETS = ("wsj0mix", "wham", "librimix")


class RecipeError(ValueError):
    """A recipe option is missing or inconsistent; the message says which."""


class AudioReadError(RecipeError):
    """An audio file named in a data CSV cannot be read."""


def prepare_data(hparams, dataset):
    """Writes the CSV manifests of ``dataset``; returns their paths.

    Arguments
    ---------
    hparams : dict
        Loaded recipe hyperparameters.
    dataset : str
        ``"wsj0mix"``, ``"wham"`` or ``"librimix"``.

    Returns
    -------
    dict
        ``{"train": csv, "valid": csv, "test": csv}``.

    Example
    -------
    >>> from speechbrain_mossformer.dataprep.minidata import make_wsj0mix
    >>> root = str(getfixture("tmpdir"))
    >>> data = make_wsj0mix(root, n_train=2, n_valid=1, n_test=1)
    >>> hparams = {"data_folder": data, "save_folder": root + "/save",
    ...            "sample_rate": 8000, "num_spks": 2}
    >>> csvs = prepare_data(hparams, "wsj0mix")
    >>> os.path.basename(csvs["train"]), os.path.basename(csvs["test"])
    ('wsj0mix_tr.csv', 'wsj0mix_tt.csv')
    """
    common = dict(
        datapath=hparams["data_folder"],
        savepath=hparams["save_folder"],
        sample_rate=hparams["sample_rate"],
        version=hparams.get("version", "min"),
        skip_prep=hparams.get("skip_prep", False),
    )
    if dataset == "wsj0mix":
        from speechbrain_mossformer.dataprep.wsj0mix import prepare_wsj0mix

        return prepare_wsj0mix(num_spks=hparams["num_spks"], **common)
    if dataset == "wham":
        from speechbrain_mossformer.dataprep.wham import prepare_wham

        if hparams["num_spks"] != 2:
            raise RecipeError("WHAM! and WHAMR! have 2 speakers (num_spks)")
        return prepare_wham(
            reverb=hparams.get("whamr", False),
            targets=hparams.get("whamr_targets", "anechoic"),
            **common,
        )
    if dataset == "librimix":
        from speechbrain_mossformer.dataprep.librimix import prepare_librimix

        return prepare_librimix(
            num_spks=hparams["num_spks"],
            use_noise=hparams.get("use_noise", False),
            train_set=hparams.get("train_set", "train-360"),
            **common,
        )
    raise RecipeError(f"unknown dataset {dataset!r}; one of {DATASETS}")


#: The settings naming a manifest of one's own for each split.
MANIFEST_KEYS = {"train": "train_data", "valid": "valid_data",
                 "test": "test_data"}


def own_manifests_only(hparams):
    """True when all three manifests are the user's (``train_data``,
    ``valid_data``, ``test_data``): nothing to prepare from a corpus.

    Example
    -------
    >>> own_manifests_only({"train_data": "a.csv", "valid_data": "b.csv"})
    False
    >>> own_manifests_only({"train_data": "a.csv", "valid_data": "b.csv",
    ...                     "test_data": "c.csv"})
    True
    """
    return all(hparams.get(key) for key in MANIFEST_KEYS.values())


def default_data_folder(overrides):
    """Adds ``data_folder`` to the command-line overrides when all three
    manifests are given without it: the training manifest's folder, which
    ``$data_root`` in the manifests then stands for (the recipes' yamls
    require a ``data_folder``, which only names the corpus to prepare).

    Arguments
    ---------
    overrides : str
        The overrides as SpeechBrain's ``parse_arguments`` gives them (yaml
        text ``key: value``, one a line).

    Returns
    -------
    str
        The overrides, with ``data_folder`` where it was added.

    Example
    -------
    >>> print(default_data_folder(
    ...     "train_data: /d/tr.csv\\nvalid_data: /d/cv.csv\\n"
    ...     "test_data: /d/tt.csv"))
    train_data: /d/tr.csv
    valid_data: /d/cv.csv
    test_data: /d/tt.csv
    data_folder: "/d"
    >>> default_data_folder("train_data: /d/tr.csv")
    'train_data: /d/tr.csv'
    """
    import json

    from ruamel.yaml import YAML

    try:
        given = YAML(typ="safe").load(overrides) if overrides else {}
    except Exception:  # check_overrides names the problem
        return overrides
    if not isinstance(given, dict) or "data_folder" in given:
        return overrides
    if not own_manifests_only(given):
        return overrides
    folder = os.path.dirname(os.path.abspath(str(given["train_data"])))
    return f"{overrides}\ndata_folder: {json.dumps(folder)}"


def use_own_manifests(hparams, csvs):
    """Puts the manifests given as ``train_data``, ``valid_data`` and
    ``test_data`` (SpeechBrain's names) in place of the prepared ones,
    after checking they exist and have the columns the recipe reads.

    Arguments
    ---------
    hparams : dict
        Recipe hyperparameters (``num_spks``, the three keys, null when
        not given).
    csvs : dict
        ``{"train": csv, "valid": csv, "test": csv}``: the prepared ones.

    Returns
    -------
    dict
        The manifests to use.

    Example
    -------
    >>> hparams = {"num_spks": 2, "train_data": "/no/such.csv"}
    >>> use_own_manifests(hparams, {"train": "a", "valid": "b", "test": "c"})
    Traceback (most recent call last):
     ...
    speechbrain_mossformer.recipe.RecipeError: --train_data /no/such.csv: no such file
    """
    from speechbrain_mossformer.dataprep.csv_manifest import (
        check_manifest_audio,
        validate_manifest,
    )

    audio = ["mix_wav"] + [
        f"s{k}_wav" for k in range(1, hparams["num_spks"] + 1)
    ]
    if hparams.get("use_noise", False):
        audio.append("noise_wav")  # read by the recipe, so checked too
    columns = ["ID"] + audio
    csvs = dict(csvs)
    for split, key in MANIFEST_KEYS.items():
        path = hparams.get(key)
        if not path:
            continue
        if not os.path.isfile(path):
            raise RecipeError(f"--{key} {path}: no such file")
        try:
            validate_manifest(path, columns, remedy="")
            # every file, as preparation checks a corpus's
            check_manifest_audio(
                path, audio, int(hparams.get("sample_rate", 8000)),
                hparams.get("data_folder"),
            )
        except DataPreparationError as err:
            raise RecipeError(f"--{key}: {first_line(err)}") from None
        logger.info(f"{split}: {path} (--{key})")
        csvs[split] = path
    return csvs


def audio_datasets(hparams, csvs):
    """DynamicItemDatasets reading the audio named in the CSV manifests.

    Arguments
    ---------
    hparams : dict
        Recipe hyperparameters (``data_folder``, ``num_spks``, ``use_noise``).
    csvs : dict
        ``{"train": csv, "valid": csv, "test": csv}``.

    Returns
    -------
    dict
        ``{"train": ds, "valid": ds, "test": ds}``.

    Example
    -------
    >>> from speechbrain_mossformer.dataprep.minidata import make_wsj0mix
    >>> root = str(getfixture("tmpdir"))
    >>> data = make_wsj0mix(root, n_train=1, n_valid=1, n_test=1)
    >>> hparams = {"data_folder": data, "save_folder": root + "/save",
    ...            "sample_rate": 8000, "num_spks": 2}
    >>> datasets = audio_datasets(hparams, prepare_data(hparams, "wsj0mix"))
    >>> item = datasets["test"][0]
    >>> sorted(item)
    ['id', 'mix_sig', 's1_sig', 's2_sig']
    >>> item["mix_sig"].dim(), item["mix_sig"].shape == item["s2_sig"].shape
    (1, True)
    """
    signals = ["mix"] + [f"s{k}" for k in range(1, hparams["num_spks"] + 1)]
    if hparams.get("use_noise", False):
        signals.append("noise")
    datasets = {}
    for split, path in csvs.items():
        if "noise" in signals:
            with open(path, encoding="utf-8") as f:
                header = f.readline().strip().split(",")
            if "noise_wav" not in header:
                raise RecipeError(
                    f"use_noise is True but {path} has no noise_wav column "
                    "(the corpus has no noise folder: WSJ0-mix has none, "
                    "LibriMix needs <split>/noise in every split); set "
                    "use_noise False"
                )
        try:
            ds = DynamicItemDataset.from_csv(
                csv_path=path,
                replacements={"data_root": hparams["data_folder"]},
            )
        except ValueError as err:  # e.g. "Duplicate id: ..."
            raise RecipeError(f"{path}: {first_line(err)}") from None
        for name in signals:
            ds.add_dynamic_item(
                _audio_reader(name), takes=f"{name}_wav", provides=f"{name}_sig"
            )
        ds.set_output_keys(["id"] + [f"{name}_sig" for name in signals])
        datasets[split] = ds
    return datasets


def _audio_reader(name):
    """Returns a pipeline function reading one signal, with a clear error."""

    def read(path):
        if not os.path.isfile(path):
            raise AudioReadError(
                f"cannot read the {name} audio file {path}: not found (the "
                "data CSVs name it; was the data folder changed after "
                "preparation? run without --skip_prep to rebuild them)"
            )
        try:
            return sb.dataio.dataio.read_audio(path)
        except Exception as err:
            raise AudioReadError(
                f"cannot read the {name} audio file {path}: "
                f"{first_line(err)}"
            ) from None

    return read


def dm_reverberant_targets(hparams):
    """True when dynamic mixing must make reverberant targets: WHAMR! with
    ``whamr_targets: reverb`` (its validation and test targets are the
    reverberant sources, so the training mixtures and targets must be
    reverberant too, although ``use_reverb`` is off).

    Example
    -------
    >>> dm_reverberant_targets({"dynamic_mixing": True, "whamr": True,
    ...                         "whamr_targets": "reverb"})
    True
    >>> dm_reverberant_targets({"dynamic_mixing": True, "whamr": True,
    ...                         "whamr_targets": "anechoic"})
    False
    """
    return bool(
        hparams.get("dynamic_mixing", False)
        and hparams.get("whamr", False)
        and hparams.get("whamr_targets") == "reverb"
    )


def needs_rirs(hparams):
    """True when the run uses room impulse responses.

    Example
    -------
    >>> needs_rirs({"use_reverb": True}), needs_rirs({"use_reverb": False})
    (True, False)
    """
    return bool(hparams.get("use_reverb", False)) or dm_reverberant_targets(
        hparams
    )


def mixture_speakers(csv_path, dataset):
    """Speakers of the mixtures of a manifest, read from their IDs.

    WSJ0-mix and WHAM! IDs are ``<utt1>_<gain1>_<utt2>_<gain2>...`` with
    the speaker as the first 3 characters of each utterance (WSJ0);
    LibriMix IDs are ``<spk>-<chapter>-<utt>_<spk>-...``.

    Example
    -------
    >>> import os
    >>> path = os.path.join(str(getfixture("tmpdir")), "t.csv")
    >>> _ = open(path, "w").write(
    ...     "ID,duration\\n445c020f_1.9_442o030z_-1.9,1.0\\n")
    >>> sorted(mixture_speakers(path, "wsj0mix"))
    ['442', '445']
    >>> _ = open(path, "w").write(
    ...     "ID,duration\\n19-198-0001_26-495-0002,1.0\\n")
    >>> sorted(mixture_speakers(path, "librimix"))
    ['19', '26']
    """
    import csv

    speakers = set()
    with open(csv_path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            parts = (row.get("ID") or "").split("_")
            if dataset == "librimix":
                speakers.update(p.split("-")[0] for p in parts if "-" in p)
            else:
                speakers.update(p[:3] for p in parts[0::2] if len(p) > 3)
    return speakers


def dynamic_mixing_dataset(hparams, dataset, train_csv, test_csv=None,
                           valid_csv=None):
    """The on-the-fly training set (see ``dataprep.dynamic_mixing``).

    Arguments
    ---------
    hparams : dict
        ``base_folder_dm`` (WSJ0 ``si_tr_s`` or a LibriSpeech split),
        ``training_signal_len``, ``dm_epoch_size``, ``use_noise``,
        ``noise_folder_dm``, ``use_reverb``, ``rir_csv``, ``seed``.
    dataset : str
        Recipe dataset name.
    train_csv : str
        The static training CSV (its row count is the default epoch size).
    test_csv : str or None
        The test CSV: dynamic mixing may not draw a speaker of its
        mixtures (e.g. ``base_folder_dm`` given as the whole WSJ0 or
        LibriSpeech folder instead of its training split).
    valid_csv : str or None
        The validation CSV, checked the same way for LibriMix only (its dev
        speakers are held out; WSJ0-mix and WHAM! validate on training
        speakers).

    Returns
    -------
    DynamicMixingDataset
    """
    from speechbrain_mossformer.dataprep.dynamic_mixing import (
        DynamicMixingDataset,
    )

    base = hparams.get("base_folder_dm")
    if not base or not os.path.isdir(base):
        raise RecipeError(
            "dynamic_mixing is True but base_folder_dm "
            f"({base!r}) is not a folder: give the WSJ0 si_tr_s folder "
            "(WSJ0-mix, WHAM!) or a LibriSpeech split such as "
            "train-clean-360 (LibriMix)"
        )
    base_real = os.path.realpath(base)
    data_real = os.path.realpath(hparams["data_folder"])
    if os.path.commonpath([base_real, data_real]) in (base_real, data_real):
        raise RecipeError(
            f"base_folder_dm ({base}) and data_folder "
            f"({hparams['data_folder']}) overlap: dynamic mixing draws from "
            "the single-speaker corpus (WSJ0 si_tr_s, a LibriSpeech split), "
            "not from the mixtures, whose test speakers would leak into "
            "training"
        )
    noise_folder = None
    if hparams.get("use_noise", False):
        noise_folder = hparams.get("noise_folder_dm") or default_noise_folder(
            hparams, dataset
        )
        check_training_noise_folder(noise_folder)
    epoch_size = hparams.get("dm_epoch_size")
    if epoch_size is not None and (
        isinstance(epoch_size, bool)
        or not isinstance(epoch_size, int)
        or epoch_size < 1
    ):
        raise RecipeError(
            f"dm_epoch_size {epoch_size}: expected a whole number of at "
            "least 1 (items per epoch), or null (as many as the training CSV)"
        )
    rirs = None
    if needs_rirs(hparams):
        rirs = hparams.get("rir_csv")
    dm = DynamicMixingDataset(
        base,
        sample_rate=hparams["sample_rate"],
        num_spks=hparams["num_spks"],
        training_signal_len=hparams["training_signal_len"],
        epoch_size=epoch_size,
        train_csv=train_csv,
        corpus="librispeech" if dataset == "librimix" else "wsj0",
        noise_folder=noise_folder,
        rirs=rirs,
        seed=hparams.get("seed", 1234),
        reverberant_targets=dm_reverberant_targets(hparams),
        # shorter items cannot go through the encoder (and speed
        # perturbation shortens them by up to 5 %)
        min_length=4 * int(hparams.get("kernel_size") or 16),
    )
    held_out = {"test": test_csv}
    if dataset == "librimix":
        held_out["validation"] = valid_csv
    for split, csv_path in held_out.items():
        if csv_path is None or not os.path.isfile(csv_path):
            continue
        leaked = sorted(set(dm.speakers) & mixture_speakers(csv_path, dataset))
        if leaked:
            raise RecipeError(
                f"base_folder_dm ({base}) holds {len(leaked)} speakers of the "
                f"{split} mixtures ({', '.join(leaked[:8])}"
                f"{', ...' if len(leaked) > 8 else ''}): dynamic mixing "
                "would train on held-out speakers; give the training split "
                "only (WSJ0 si_tr_s, LibriSpeech train-clean-360)"
            )
    return dm


#: Names of held-out split folders (WHAM! noise: cv, tt; LibriMix: dev,
#: test); dynamic mixing must not draw noise from them.
HELD_OUT_SPLITS = ("cv", "tt", "dev", "test")


def check_training_noise_folder(noise_folder):
    """Refuses a dynamic-mixing noise folder that holds held-out splits.

    The noise files are searched recursively, so the root of the WHAM!
    noise release (``wham_noise/`` with ``tr``, ``cv`` and ``tt`` inside)
    would mix validation and test noise into training.

    Example
    -------
    >>> root = str(getfixture("tmpdir"))
    >>> for split in ("tr", "cv", "tt"):
    ...     os.makedirs(os.path.join(root, split))
    >>> check_training_noise_folder(os.path.join(root, "tr"))
    >>> try:
    ...     check_training_noise_folder(root)
    ... except RecipeError as err:
    ...     print("held-out" in str(err))
    True
    """
    if not os.path.isdir(noise_folder):
        return
    held_out = sorted(
        name
        for name in os.listdir(noise_folder)
        if name in HELD_OUT_SPLITS
        and os.path.isdir(os.path.join(noise_folder, name))
    )
    if held_out:
        raise RecipeError(
            f"noise_folder_dm ({noise_folder}) holds the held-out folders "
            f"{', '.join(held_out)}: dynamic mixing would train on their "
            "noise; give the training part only (e.g. wham_noise/tr)"
        )


def default_noise_folder(hparams, dataset):
    """The training-split noise folder of the corpus itself.

    Example
    -------
    >>> default_noise_folder({"data_folder": "/d", "sample_rate": 8000},
    ...                      "wham")
    '/d/wav8k/min/tr/noise'
    """
    rate = "wav8k" if int(hparams["sample_rate"]) == 8000 else "wav16k"
    split = (
        hparams.get("train_set", "train-360") if dataset == "librimix" else "tr"
    )
    return os.path.join(
        hparams["data_folder"], rate, hparams.get("version", "min"), split,
        "noise",
    )


#: Settings that define a run's network or task. A run folder that holds
#: checkpoints is only resumed with the same values (SpeechBrain would
#: overwrite its hyperparams.yaml, then resume, or fail deep in torch).
RUN_DEFINING_KEYS = (
    "experiment_name", "num_spks", "sample_rate", "whamr", "whamr_targets",
    "use_noise", "kernel_size", "kernel_stride", "N_encoder_out",
    "out_channels", "num_blocks", "group_size", "query_key_dim",
    "expansion_factor", "hidden_dims", "query_key_dims",
)


def check_settings(hparams):
    """Checks option combinations; returns notes to log once logging runs.

    * ``kernel_stride`` must be half of ``kernel_size``: SpeechBrain's
      ``Encoder`` always strides by half its kernel, so another decoder
      stride would silently train a model that cannot rebuild the signal.
    * ``use_reverb`` needs the yaml's ``reverb`` (AddReverb) and an existing
      ``rir_csv`` when one is given.
    * WHAMR! with reverberant targets (``whamr_targets: reverb``): the
      sources are already reverberant, so reverberating rebuilt mixtures
      again is turned off (``use_reverb``), with a note.
    * Validation and test in batches of more than one mixture
      (``eval_dataloader_opts``): a note that the shorter mixtures of a
      batch are separated with zero padding after them, which changes
      their estimates (the scores leave the padding out), so the results
      differ from separating each mixture alone.

    Example
    -------
    >>> check_settings({"kernel_size": 16, "kernel_stride": 8})
    []
    >>> check_settings({"eval_dataloader_opts": {"batch_size": 4}})[0][:52]
    'eval_dataloader_opts batch_size 4: the shorter mixtu'
    >>> check_settings({"kernel_size": 32, "kernel_stride": 8})
    Traceback (most recent call last):
     ...
    speechbrain_mossformer.recipe.RecipeError: kernel_stride is 8 but ...
    """
    notes = []
    kernel = hparams.get("kernel_size")
    stride = hparams.get("kernel_stride")
    if kernel is not None and stride is not None and stride != kernel // 2:
        raise RecipeError(
            f"kernel_stride is {stride} but kernel_size is {kernel}: "
            "SpeechBrain's Encoder strides by half its kernel, so the "
            f"decoder's stride must be {kernel // 2} (leave kernel_stride "
            "to the yaml)"
        )
    if hparams.get("use_reverb", False) and (
        hparams.get("whamr_targets") == "reverb"
    ):
        hparams["use_reverb"] = False
        notes.append(
            "whamr_targets=reverb: the sources are already reverberant, so "
            "use_reverb (reverberating rebuilt training mixtures) is off"
            + (
                "; dynamic mixing reverberates its sources and trains on "
                "the reverberant ones as targets"
                if hparams.get("dynamic_mixing", False)
                else ""
            )
        )
    evaluation = hparams.get("eval_dataloader_opts") or {}
    eval_batch = evaluation.get("batch_size", 1) if isinstance(
        evaluation, dict) else 1
    if isinstance(eval_batch, int) and eval_batch > 1:
        notes.append(
            f"eval_dataloader_opts batch_size {eval_batch}: the shorter "
            "mixtures of a validation or test batch are separated with "
            "zero padding after them, which changes their estimates (the "
            "scores leave the padding out): the results differ from "
            "separating each mixture alone (batch_size 1, the recipes' "
            "default)"
        )
    if hparams.get("use_reverb", False):
        if hparams.get("reverb") is None:
            raise RecipeError(
                "use_reverb is True but the yaml defines no 'reverb' "
                "(speechbrain.augment.time_domain.AddReverb)"
            )
        rir_csv = hparams.get("rir_csv")
        if rir_csv and not os.path.isfile(rir_csv):
            raise RecipeError(
                f"rir_csv: {rir_csv} not found (a CSV of room impulse "
                "responses: ID,duration,wav,wav_format,wav_opts; or null "
                "for synthetic ones)"
            )
    return notes


def check_run_folder(hparams):
    """Refuses to resume a run folder with another network or task.

    A folder whose ``save/`` holds checkpoints keeps them and its
    ``hyperparams.yaml``: a run with other values of ``RUN_DEFINING_KEYS``
    is an error (before anything is written). Other changed settings are
    returned as notes (e.g. ``lr``: the learning rate comes from the
    checkpoint's optimizer state when resuming), except ``batch_size``
    when the checkpoint to resume from is an intra-epoch one (see
    :func:`check_intra_epoch_batch_size`; the number of processes may not
    change there either, see :func:`check_intra_epoch_world_size`). Only
    complete checkpoints count (the folders interrupted saves left are
    named in a note). A folder with checkpoints but
    without ``hyperparams.yaml`` (e.g. ``save/`` copied alone) is checked
    by the shapes of its newest checkpoint (see
    :func:`check_checkpoint_shapes`).

    Arguments
    ---------
    hparams : dict
        The new run's hyperparameters.

    Returns
    -------
    list of str
        Notes to log.

    Example
    -------
    >>> run = getfixture("tmpdir")
    >>> _ = (run / "save" / "CKPT+1" / "CKPT.yaml").write_text(
    ...     "unixtime: 1\\nend-of-epoch: true\\n", encoding="utf-8",
    ...     ensure=True)
    >>> _ = (run / "hyperparams.yaml").write_text(
    ...     "sample_rate: 8000\\nlr: 0.00015\\n", encoding="utf-8")
    >>> check_run_folder({"output_folder": str(run), "sample_rate": 8000,
    ...                   "lr": 0.01})[0][:45]
    'resuming with changed settings: lr: 0.00015 -'
    >>> check_run_folder({"output_folder": str(run), "sample_rate": 16000})
    Traceback (most recent call last):
     ...
    speechbrain_mossformer.recipe.RecipeError: ... (sample_rate: 8000 -> 16000); ...
    """
    import ruamel.yaml

    from speechbrain_mossformer.export_checkpoint import plain_value

    folder = hparams["output_folder"]
    saved = os.path.join(folder, "hyperparams.yaml")
    save_folder = hparams.get("save_folder", os.path.join(folder, "save"))
    unfinished = unfinished_checkpoints(save_folder)
    left = (
        [
            f"{save_folder} holds {len(unfinished)} unfinished checkpoint "
            f"folder(s) that interrupted saves left ({', '.join(unfinished)})"
            ": they cannot be resumed and are removed once this run saves "
            "its first checkpoint"
        ]
        if unfinished else []
    )
    if not checkpoint_folders(save_folder):
        return left
    check_intra_epoch_world_size(hparams)
    if not os.path.isfile(saved):
        check_checkpoint_shapes(hparams)
        return left
    try:
        with open(saved, encoding="utf-8") as f:
            old = ruamel.yaml.YAML(typ="rt").load(f) or {}
    except Exception as err:
        raise RecipeError(
            f"{saved}: cannot read the earlier run's settings: "
            f"{first_line(err)}"
        ) from None
    conflicts, notes = [], []
    for key, old_value in old.items():
        if key not in hparams or isinstance(old_value, dict):
            continue
        new_value = hparams[key]
        if not isinstance(new_value, (bool, int, float, str, list, tuple)) \
                and new_value is not None:
            continue  # objects (modules, loggers, ...)
        if plain_value(old_value) == plain_value(new_value):
            continue
        change = f"{key}: {old_value} -> {new_value}"
        if key == "init_from" and new_value and not old_value:
            # the run's own checkpoints win when resuming: the weights the
            # user asked to fine-tune from would never be loaded
            raise RecipeError(
                f"{folder} holds checkpoints of a run trained without "
                f"init_from: resuming it would not load {new_value}; give "
                "another --output_folder to fine-tune from it (or leave "
                "--init_from out to resume that run)"
            )
        if key in RUN_DEFINING_KEYS:
            conflicts.append(change)
        else:
            notes.append(change)
    if conflicts:
        raise RecipeError(
            f"{folder} holds checkpoints of a run with other settings "
            f"({'; '.join(conflicts)}); resume it with its own settings or "
            "give another --output_folder (its checkpoints and "
            "hyperparams.yaml are left as they are)"
        )
    if "batch_size" in old and "batch_size" in hparams:
        check_intra_epoch_batch_size(
            hparams, plain_value(old["batch_size"]), hparams["batch_size"]
        )
    if notes:
        note = "resuming with changed settings: " + "; ".join(notes)
        if any(n.startswith("lr:") for n in notes):
            note += (
                " (the learning rate comes from the checkpoint's optimizer "
                "state, not from lr)"
            )
        return left + [note]
    return left


def resumed_checkpoint(hparams):
    """The checkpoint a run of ``hparams`` resumes training from, or None.

    That is the newest complete checkpoint of ``save_folder``, as the
    Brain's ``recover_if_possible`` picks it.

    Example
    -------
    >>> from speechbrain_mossformer.checkpoints import AtomicCheckpointer
    >>> save = str(getfixture("tmpdir"))
    >>> checkpointer = AtomicCheckpointer(save, {"model": torch.nn.Linear(
    ...     2, 2)})
    >>> resumed_checkpoint({"save_folder": save}) is None
    True
    >>> ckpt = checkpointer.save_checkpoint(end_of_epoch=False)
    >>> resumed_checkpoint({"save_folder": save}).meta["end-of-epoch"]
    False
    """
    checkpointer = hparams.get("checkpointer")
    if checkpointer is None:
        save_folder = hparams.get("save_folder") or os.path.join(
            hparams["output_folder"], "save"
        )
        if not os.path.isdir(save_folder):
            return None
        checkpointer = sb.utils.checkpoints.Checkpointer(save_folder)
    try:
        return checkpointer.find_checkpoint()
    except Exception as err:  # e.g. an unreadable CKPT.yaml
        raise RecipeError(
            f"{checkpointer.checkpoints_dir}: cannot list its checkpoints: "
            f"{first_line(err)}"
        ) from None


def check_intra_epoch_batch_size(hparams, old_batch_size, new_batch_size):
    """Refuses another ``batch_size`` when resuming within an epoch.

    An intra-epoch checkpoint (Ctrl-C, SIGTERM, ``ckpt_interval_*``) saves
    the number of *batches* of the epoch already trained; the resumed run
    skips that many batches at its own batch size, so a larger one would
    silently leave the rest of the epoch untrained, and a smaller one
    train part of it twice. At an epoch boundary (an end-of-epoch
    checkpoint) the batch size may change.

    Arguments
    ---------
    hparams : dict
        The new run's hyperparameters (``save_folder`` or ``output_folder``;
        ``checkpointer`` if built).
    old_batch_size : int
        The batch size of the run that saved the checkpoints.
    new_batch_size : int
        The new run's batch size.

    Example
    -------
    >>> from speechbrain_mossformer.checkpoints import AtomicCheckpointer
    >>> save = str(getfixture("tmpdir"))
    >>> checkpointer = AtomicCheckpointer(save, {"model": torch.nn.Linear(
    ...     2, 2)})
    >>> ckpt = checkpointer.save_checkpoint(end_of_epoch=True)
    >>> check_intra_epoch_batch_size({"save_folder": save}, 1, 4)
    >>> ckpt = checkpointer.save_checkpoint(end_of_epoch=False)
    >>> check_intra_epoch_batch_size({"save_folder": save}, 1, 1)
    >>> check_intra_epoch_batch_size({"save_folder": save}, 1, 4)
    Traceback (most recent call last):
     ...
    speechbrain_mossformer.recipe.RecipeError: ... resume with --batch_size=1 ...
    """
    if old_batch_size == new_batch_size:
        return
    ckpt, where = _intra_epoch_resume(hparams)
    if ckpt is None:
        return
    batches = _read_int(ckpt.paramfiles.get("dataloader-TRAIN"))
    if batches is None:
        done, skip = "", "the batches already trained at the new size"
    else:
        done = f", after {batches} batches,"
        skip = f"{batches} batches of {new_batch_size}, not of " \
            f"{old_batch_size}"
    raise RecipeError(
        f"{ckpt.path} was saved within {where}{done} with batch_size "
        f"{old_batch_size}: resuming it with batch_size {new_batch_size} "
        f"would skip {skip}; resume with --batch_size={old_batch_size} to "
        "finish the epoch (the batch size may change after it, at an "
        "end-of-epoch checkpoint)"
    )


def check_intra_epoch_world_size(hparams, processes=None):
    """Refuses another number of processes when resuming within an epoch.

    An intra-epoch checkpoint saves how many batches *each process* trained
    (``DistributedSampler`` gives each its share of the epoch); resumed
    with more processes, the rest of the epoch would be silently skipped,
    with fewer, part of it trained twice. The number that wrote a
    checkpoint is its ``world_size`` (``AtomicCheckpointer``; older
    checkpoints, without it, are not checked). At an epoch boundary it may
    change.

    Arguments
    ---------
    hparams : dict
        The new run's hyperparameters (``save_folder`` or
        ``output_folder``; ``checkpointer`` if built).
    processes : int, optional
        The new run's number of processes (default: ``process_count()``).

    Example
    -------
    >>> from speechbrain_mossformer.checkpoints import AtomicCheckpointer
    >>> save = str(getfixture("tmpdir"))
    >>> checkpointer = AtomicCheckpointer(save, {"model": torch.nn.Linear(
    ...     2, 2)})
    >>> ckpt = checkpointer.save_checkpoint(end_of_epoch=True)
    >>> check_intra_epoch_world_size({"save_folder": save}, 2)
    >>> ckpt = checkpointer.save_checkpoint(end_of_epoch=False)
    >>> check_intra_epoch_world_size({"save_folder": save}, 1)
    >>> check_intra_epoch_world_size({"save_folder": save}, 2)
    Traceback (most recent call last):
     ...
    speechbrain_mossformer.recipe.RecipeError: ... by 1 process: ...
    """
    if processes is None:
        processes = process_count()
    ckpt, where = _intra_epoch_resume(hparams)
    if ckpt is None:
        return
    saved_by = ckpt.meta.get("world_size")
    if not isinstance(saved_by, int) or saved_by == processes:
        return
    launch = (
        "python train.py ... (one process)"
        if saved_by == 1
        else f"torchrun --nproc_per_node={saved_by} (or as many processes "
        "over several nodes)"
    )
    raise RecipeError(
        f"{ckpt.path} was saved within {where} by {saved_by} "
        f"process{'es' if saved_by != 1 else ''}: resuming it with "
        f"{processes} would {'skip' if processes > saved_by else 'repeat'} "
        f"part of the epoch (each process counts its own batches); resume "
        f"with {launch} to finish the epoch (the number may change after "
        "it, at an end-of-epoch checkpoint)"
    )


def _intra_epoch_resume(hparams):
    """The intra-epoch checkpoint a run of ``hparams`` would resume, and
    which epoch it is in (``"epoch 3"``); ``(None, None)`` when it resumes
    none, or an end-of-epoch one."""
    ckpt = resumed_checkpoint(hparams)
    if ckpt is None or ckpt.meta.get("end-of-epoch", True):
        return None, None
    epoch = _read_int(ckpt.paramfiles.get("counter"))
    return ckpt, f"epoch {epoch}" if epoch is not None else "an epoch"


def _read_int(path):
    """The integer a small checkpoint file holds (the epoch counter, a
    DataLoader position), or None."""
    try:
        with open(path, encoding="utf-8") as f:
            return int(f.read().strip())
    except (TypeError, OSError, ValueError):
        return None


def check_checkpoint_shapes(hparams):
    """Compares the newest checkpoint's modules with the yaml's.

    For a run folder whose ``save/`` holds checkpoints but no
    ``hyperparams.yaml`` (``save/`` copied alone, the yaml deleted), so
    that a run with another model size is a one-line error before
    anything is written, not a torch size-mismatch traceback once the
    Brain resumes. Matching checkpoints resume as before.

    Arguments
    ---------
    hparams : dict
        The new run's hyperparameters: ``checkpointer`` (its ``torch``
        modules are those compared; else ``modules``), ``output_folder``.

    Example
    -------
    >>> from speechbrain_mossformer.checkpoints import AtomicCheckpointer
    >>> save = str(getfixture("tmpdir"))
    >>> small = AtomicCheckpointer(save, {"masknet": torch.nn.Linear(2, 2)})
    >>> ckpt = small.save_checkpoint()
    >>> wide = AtomicCheckpointer(save, {"masknet": torch.nn.Linear(2, 3)})
    >>> check_checkpoint_shapes({"output_folder": save, "checkpointer":
    ...     small})
    >>> check_checkpoint_shapes({"output_folder": save, "checkpointer":
    ...     wide})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
     ...
    speechbrain_mossformer.recipe.RecipeError: ... (masknet: parameter 'weight' has shape (2, 2) in the checkpoint but (3, 2) ...
    """
    from speechbrain_mossformer.pretrained import check_state_dict

    checkpointer = hparams.get("checkpointer")
    modules = (
        checkpointer.recoverables if checkpointer is not None
        else hparams.get("modules") or {}
    )
    ckpt = resumed_checkpoint(hparams)
    if ckpt is None:
        return
    folder = hparams["output_folder"]
    for name, module in modules.items():
        path = ckpt.paramfiles.get(name)
        if not isinstance(module, torch.nn.Module) or path is None:
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise RecipeError(
                f"{path}: cannot read the checkpoint: {first_line(err)}"
            ) from None
        try:
            check_state_dict(module, state, name)
        except ValueError as err:
            raise RecipeError(
                f"{folder} holds checkpoints of a run with other settings "
                f"({err}); its hyperparams.yaml is gone, so resume it with "
                f"the model size its checkpoint {ckpt.path.name} was trained "
                "with (N_encoder_out, out_channels, num_blocks, "
                "query_key_dim, num_spks, kernel_size, ...) or give another "
                "--output_folder (its checkpoints are left as they are)"
            ) from None


def resolve_precision(hparams, run_opts):
    """fp16 needs CUDA: on CPU fall back to fp32 with a warning.

    SpeechBrain raises a ValueError for fp16 on CPU, and its recipes only
    switch to bf16 when ``--device=cpu`` is given explicitly.

    Arguments
    ---------
    hparams : dict
        Recipe hyperparameters (may hold ``precision``); changed in place.
    run_opts : RunOptions or dict
        Command-line run options.

    Returns
    -------
    RunOptions or dict
        The run options to use.

    Example
    -------
    >>> hparams = {"precision": "fp16"}
    >>> opts = resolve_precision(hparams, {"device": "cpu"})
    >>> hparams["precision"]
    'fp32'
    """
    if not _run_device(run_opts).startswith("cpu"):
        return run_opts
    for key in ("precision", "eval_precision"):
        if hparams.get(key) == "fp16":
            logger.warning(f"{key}=fp16 needs a GPU; using fp32 on CPU")
            hparams[key] = "fp32"
        if run_opts.get(key) == "fp16":
            logger.warning(f"--{key}=fp16 needs a GPU; using fp32 on CPU")
            run_opts = _with_options(run_opts, **{key: "fp32"})
    return run_opts


def _run_device(run_opts):
    """The run's device: ``--device``, else CUDA when there is a GPU."""
    return str(run_opts.get("device") or (
        "cuda" if torch.cuda.is_available() else "cpu"
    ))


def _with_options(run_opts, **options):
    """``run_opts`` with ``options`` changed, marked as given (SpeechBrain's
    Brain takes only the options given on the command line)."""
    if isinstance(run_opts, dict):
        return dict(run_opts, **options)
    given = set(getattr(run_opts, "overridden_args", ()))
    return dataclasses.replace(
        run_opts, **options, overridden_args=given | set(options)
    )


def choose_ddp_backend(run_opts, environ=None):
    """Picks gloo for a ``torchrun`` run on CPU; checks GPUs for nccl.

    SpeechBrain's default backend, nccl, needs one GPU per process: on CPU
    it fails with "Killing process / Not enough GPUs available!" on every
    rank. A CPU run (``--device cpu``, or no GPU) that did not name a
    backend gets gloo, with a note; a backend named on the command line
    that cannot work here is a one-line error.

    Arguments
    ---------
    run_opts : RunOptions or dict
        Command-line run options (``overridden_args`` names those given).
    environ : dict, optional
        The environment (default ``os.environ``): ``LOCAL_RANK`` and
        ``LOCAL_WORLD_SIZE`` are set by ``torchrun``.

    Returns
    -------
    RunOptions or dict
        The run options to use.

    Example
    -------
    >>> from speechbrain.utils.run_opts import RunOptions
    >>> opts = RunOptions.from_dictionary({"device": "cpu"})
    >>> opts = choose_ddp_backend(opts, {"LOCAL_RANK": "0"})
    >>> opts["distributed_backend"]
    'gloo'
    >>> choose_ddp_backend({"device": "cpu"}, {})  # not under torchrun
    {'device': 'cpu'}
    """
    environ = os.environ if environ is None else environ
    if environ.get("LOCAL_RANK") is None:
        return run_opts
    backend = run_opts.get("distributed_backend") or "nccl"
    if backend != "nccl":
        return run_opts
    given = getattr(run_opts, "overridden_args", set(run_opts))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    processes = environ.get("LOCAL_WORLD_SIZE", "?")
    if _run_device(run_opts).startswith("cpu") or gpus == 0:
        if "distributed_backend" in given:
            raise RecipeError(
                f"--distributed_backend nccl needs one GPU per process, and "
                f"this run is on {'CPU' if gpus else 'a machine without GPU'}"
                ": use --distributed_backend gloo"
            )
        logger.info("DDP on CPU: using the gloo backend (nccl needs GPUs)")
        return _with_options(run_opts, distributed_backend="gloo")
    if int(environ["LOCAL_RANK"]) >= gpus:
        raise RecipeError(
            f"torchrun started {processes} processes on this machine but it "
            f"has {gpus} GPU(s): use --nproc_per_node={gpus} (nccl needs one "
            "GPU per process)"
        )
    return run_opts


def resolve_checkpoint_interval(hparams, run_opts):
    """A command-line ``--ckpt_interval_steps`` replaces the yaml's minutes.

    The recipe yamls set ``ckpt_interval_minutes: 60``; SpeechBrain exits
    when both intervals are positive, so ``--ckpt_interval_steps=N`` alone
    would stop the run. The interval given on the command line wins (as any
    command-line option wins over the yaml); giving both on the command line
    still gets SpeechBrain's error.

    Arguments
    ---------
    hparams : dict
        Recipe hyperparameters (may hold ``ckpt_interval_minutes``); changed
        in place.
    run_opts : RunOptions
        Command-line run options (``overridden_args`` names those given).

    Example
    -------
    >>> from speechbrain.utils.run_opts import RunOptions
    >>> hparams = {"ckpt_interval_minutes": 60}
    >>> opts = RunOptions.from_dictionary({"ckpt_interval_steps": 500})
    >>> resolve_checkpoint_interval(hparams, opts)
    >>> hparams["ckpt_interval_minutes"]
    0
    """
    given = getattr(run_opts, "overridden_args", set(run_opts))
    if (
        "ckpt_interval_steps" in given
        and "ckpt_interval_minutes" not in given
        and (run_opts.get("ckpt_interval_steps") or 0) > 0
        and (hparams.get("ckpt_interval_minutes") or 0) > 0
    ):
        logger.info(
            "--ckpt_interval_steps given: checkpointing every "
            f"{run_opts.get('ckpt_interval_steps')} steps instead of every "
            f"{hparams['ckpt_interval_minutes']} minutes (the yaml's "
            "ckpt_interval_minutes becomes 0, the value SpeechBrain then "
            "says it uses from hparams)"
        )
        hparams["ckpt_interval_minutes"] = 0


def ensure_rirs(hparams):
    """Makes synthetic RIRs for WHAMR!-style reverb when none are given.

    The WHAMR! room impulse responses come from pyroomacoustics simulations
    that are not part of the corpus; when ``use_reverb`` is on and
    ``rir_csv`` is empty, exponentially decaying noise RIRs (T60 0.2-0.6 s)
    are written to ``<save_folder>/rirs`` once and used instead (they are
    deterministic, so every DDP rank finds the same files).

    Arguments
    ---------
    hparams : dict
        Recipe hyperparameters (``use_reverb``, ``rir_csv``,
        ``save_folder``, ``sample_rate``, ``n_synthetic_rirs``); its
        ``rir_csv`` is set to the synthetic RIRs' CSV.

    Example
    -------
    >>> save = str(getfixture("tmpdir"))
    >>> hparams = {"use_reverb": True, "rir_csv": "", "save_folder": save,
    ...            "sample_rate": 8000, "n_synthetic_rirs": 2}
    >>> ensure_rirs(hparams)
    >>> os.path.relpath(hparams["rir_csv"], save)
    'rirs.csv'
    >>> sorted(os.listdir(os.path.join(save, "rirs")))
    ['rir_000.wav', 'rir_001.wav']
    """
    if not needs_rirs(hparams) or hparams.get("rir_csv"):
        return
    from speechbrain_mossformer.dataprep.minidata import make_rirs

    csv_path = os.path.join(hparams["save_folder"], "rirs.csv")
    if not os.path.isfile(csv_path):
        _, csv_path = make_rirs(
            hparams["save_folder"],
            n=int(hparams.get("n_synthetic_rirs", 200)),
            sample_rate=hparams["sample_rate"],
        )
    hparams["rir_csv"] = csv_path
    logger.info(
        f"reverberation: {csv_path} holds synthetic RIRs (decaying noise, "
        "not the corpus' simulated rooms) for the training mixtures rebuilt "
        "from their sources (speed perturbation, dynamic mixing); give the "
        "WHAMR! RIRs with --rir_csv, or train on the corpus' own "
        "reverberant mixtures with --use_speedperturb False"
    )


def check_rirs(rir_csv):
    """Reads the header of every RIR file of ``rir_csv``; they must be mono.

    The one check of the RIRs, at setup, for both of their users:
    SpeechBrain's ``AddReverb`` (``use_reverb``) fails deep in training
    on a multichannel RIR (``TypeError: only integer tensors of a single
    element can be converted to an index``), and dynamic mixing would
    silently take its first channel.

    Arguments
    ---------
    rir_csv : str
        A RIR manifest (``ID,duration,wav,wav_format,wav_opts``; paths may
        use ``$rir_root``, the CSV's folder).

    Returns
    -------
    dict
        ``{sample rate: the first file at that rate}``.

    Raises
    ------
    RecipeError
        Naming the first RIR file that is not mono and its channel count.

    Example
    -------
    >>> import numpy as np, soundfile as sf
    >>> tmp = getfixture("tmpdir")
    >>> sf.write(str(tmp / "r.wav"), np.zeros(160), 16000)
    >>> sf.write(str(tmp / "s.wav"), np.zeros((160, 2)), 16000)
    >>> _ = (tmp / "rirs.csv").write_text(
    ...     "ID,duration,wav,wav_format,wav_opts\\n"
    ...     "r,0.01,$rir_root/r.wav,wav,\\n", encoding="utf-8")
    >>> check_rirs(str(tmp / "rirs.csv")) == {16000: str(tmp / "r.wav")}
    True
    >>> with open(str(tmp / "rirs.csv"), "a") as f:
    ...     _ = f.write("s,0.01,$rir_root/s.wav,wav,\\n")
    >>> check_rirs(str(tmp / "rirs.csv"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
     ...
    speechbrain_mossformer.recipe.RecipeError: ... .../s.wav has 2 channels; ...
    """
    from speechbrain_mossformer.dataprep.csv_manifest import audio_info
    from speechbrain_mossformer.dataprep.dynamic_mixing import read_rir_list

    rates = {}
    for path in read_rir_list(rir_csv):
        info = audio_info(path)
        if info.channels != 1:
            raise RecipeError(
                f"rir_csv {rir_csv}: the RIR file {path} has "
                f"{info.channels} channels; room impulse responses must be "
                "mono (1 channel): give one channel per file"
            )
        rates.setdefault(info.samplerate, path)
    return rates


def rir_sample_rate(rir_csv, rates=None):
    """The sample rate of the RIR files of ``rir_csv`` (all must share it;
    they must be mono, see :func:`check_rirs`). ``rates``: what
    ``check_rirs`` returned, when the headers have been read already.

    SpeechBrain's ``AddReverb`` does not read the files' rate: it takes its
    ``reverb_sample_rate`` argument for granted, so RIRs at another rate
    than the yaml's ``sample_rate`` would be stretched or squeezed in time.

    Example
    -------
    >>> import numpy as np, soundfile as sf
    >>> tmp = getfixture("tmpdir")
    >>> sf.write(str(tmp / "r.wav"), np.zeros(160), 16000)
    >>> _ = (tmp / "rirs.csv").write_text(
    ...     "ID,duration,wav,wav_format,wav_opts\\n"
    ...     "r,0.01,$rir_root/r.wav,wav,\\n", encoding="utf-8")
    >>> rir_sample_rate(str(tmp / "rirs.csv"))
    16000
    """
    if rates is None:
        rates = check_rirs(rir_csv)
    if len(rates) > 1:
        examples = "; ".join(f"{p}: {r} Hz" for r, p in sorted(rates.items()))
        raise RecipeError(
            f"rir_csv {rir_csv}: the RIR files have different sample rates "
            f"({examples}); resample them to one rate"
        )
    return next(iter(rates))


def configure_reverb(hparams, rir_rates=None):
    """Points the yaml's ``reverb`` (AddReverb) at ``rir_csv``.

    ``rir_rates``: what ``check_rirs`` returned for ``rir_csv``, when its
    headers have been read already (else they are read here).

    AddReverb reads its CSV lazily and its paths may use ``$rir_root`` (the
    CSV's folder). It resamples the RIRs from its ``reverb_sample_rate``
    without reading the files, so that is set to the files' real rate.
    Nothing to do without ``use_reverb``.

    Example
    -------
    >>> from speechbrain.augment.time_domain import AddReverb
    >>> import numpy as np, soundfile as sf
    >>> tmp = getfixture("tmpdir")
    >>> sf.write(str(tmp / "r.wav"), np.zeros(160), 16000)
    >>> _ = (tmp / "rirs.csv").write_text(
    ...     "ID,duration,wav,wav_format,wav_opts\\n"
    ...     "r,0.01,$rir_root/r.wav,wav,\\n", encoding="utf-8")
    >>> reverb = AddReverb(csv_file=None, reverb_sample_rate=8000,
    ...                    clean_sample_rate=8000)
    >>> configure_reverb({"use_reverb": True, "reverb": reverb,
    ...     "rir_csv": str(tmp / "rirs.csv"), "sample_rate": 8000})
    >>> reverb.reverb_sample_rate, reverb.clean_sample_rate
    (16000, 8000)
    """
    if not (hparams.get("use_reverb", False) and "reverb" in hparams):
        return
    reverb = hparams["reverb"]
    reverb.csv_file = hparams["rir_csv"]
    reverb.replacements = {
        "rir_root": os.path.dirname(os.path.abspath(hparams["rir_csv"]))
    }
    rate = rir_sample_rate(hparams["rir_csv"], rir_rates)
    if rate != int(hparams["sample_rate"]):
        logger.info(
            f"the RIRs of {hparams['rir_csv']} are at {rate} Hz: resampled "
            f"to {hparams['sample_rate']} Hz"
        )
    reverb.reverb_sample_rate = rate
    reverb.clean_sample_rate = int(hparams["sample_rate"])


def load_initial_weights(hparams):
    """Starts training from a pretrained folder (fine-tuning).

    ``init_from`` names a SpeechBrain pretrained folder (a converted
    ModelScope model, an exported recipe checkpoint or a pruned model). Its
    ``encoder``/``masknet``/``decoder`` checkpoints are loaded strictly into
    the recipe's modules: a size mismatch is an error naming the parameter,
    another ``sample_rate`` or ``group_size`` (no parameters) a warning.
    ``init_exclude`` names parameters not to load (kept as initialised):
    a module (``"masknet"``) or a parameter-name prefix
    (``"masknet.conv1d_out"``, the output layer, whose width depends on
    ``num_spks``), so that part of a model can be fine-tuned.
    A run that already holds a checkpoint of its own resumes from it:
    ``init_from`` is then neither read nor loaded (it may have moved since),
    so an interrupted fine-tuning resumes normally.

    Arguments
    ---------
    hparams : dict
        Recipe hyperparameters: ``init_from`` (nothing is done when it is
        empty), ``modules``, ``sample_rate``, ``group_size``,
        ``init_exclude`` and ``checkpointer`` (optional).

    Example
    -------
    >>> from speechbrain_mossformer.pretrained import (load_modules,
    ...     render_hyperparams, write_pretrained_folder)
    >>> folder = str(getfixture("tmpdir"))
    >>> cfg = {"N_encoder_out": 16, "out_channels": 16, "num_blocks": 1,
    ...        "group_size": 4, "query_key_dim": 8}
    >>> trained = load_modules(render_hyperparams(cfg))
    >>> _ = write_pretrained_folder(folder, cfg,
    ...     {k: m.state_dict() for k, m in trained.items()})
    >>> modules = load_modules(render_hyperparams(cfg))  # new, random
    >>> load_initial_weights({"init_from": folder, "sample_rate": 8000,
    ...                       "modules": modules})
    >>> torch.equal(modules["decoder"].weight, trained["decoder"].weight)
    True
    >>> wide = load_modules(render_hyperparams(dict(cfg, out_channels=32)))
    >>> load_initial_weights({"init_from": folder, "sample_rate": 8000,
    ...     "modules": wide})  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
      ...
    speechbrain_mossformer.recipe.RecipeError: init_from ...: masknet:
    parameter 'conv1d_encoder.weight' has shape (16, 16, 1) in the
    checkpoint but (32, 16, 1) in the model; give the recipe the model
    size of that folder ...
    >>> three = load_modules(render_hyperparams(dict(cfg, num_spks=3)))
    >>> load_initial_weights({"init_from": folder, "sample_rate": 8000,
    ...     "modules": three, "init_exclude": ["masknet.conv1d_out"]})
    >>> torch.equal(three["decoder"].weight, trained["decoder"].weight)
    True
    """
    folder = hparams.get("init_from")
    if not folder:
        return
    from speechbrain_mossformer.pretrained import (
        MODULE_NAMES,
        check_state_dict,
    )

    checkpointer = hparams.get("checkpointer")
    if checkpointer is not None and checkpointer.find_checkpoint() is not None:
        # resuming: the run's own checkpoint wins, so init_from is neither
        # needed (it may be gone) nor loaded
        logger.info(
            f"{checkpointer.checkpoints_dir} holds a checkpoint of this "
            f"run: resuming from it, init_from {folder} is not loaded"
        )
        return
    if not os.path.isdir(folder):
        raise RecipeError(f"init_from: {folder} is not a folder")
    config = _folder_config(folder)
    rate = config.get("sample_rate")
    if rate is not None and int(rate) != int(hparams["sample_rate"]):
        logger.warning(
            f"init_from {folder} was trained at {int(rate)} Hz and this run "
            f"uses {hparams['sample_rate']} Hz (the network runs at either "
            "rate, but expect to need more fine-tuning)"
        )
    group = config.get("group_size")
    if (
        group is not None
        and hparams.get("group_size") is not None
        and int(group) != int(hparams["group_size"])
    ):
        logger.warning(
            f"init_from {folder} was trained with group_size {int(group)} "
            f"and this run uses group_size {hparams['group_size']}: the "
            "weights load (group_size has no parameters) but the network "
            f"computes differently; give --group_size={int(group)} to "
            "fine-tune the model of that folder"
        )
    exclude = [str(p) for p in hparams.get("init_exclude") or []]
    own_states = {
        name: hparams["modules"][name].state_dict() for name in MODULE_NAMES
    }
    names = [f"{name}.{key}" for name, own in own_states.items()
             for key in own]
    unused = [p for p in exclude if not any(_excluded(k, [p]) for k in names)]
    if unused:
        raise RecipeError(
            f"init_exclude: {unused} match no parameter of the model (give "
            "module.parameter prefixes, e.g. masknet.conv1d_out; the "
            "modules are encoder, masknet, decoder)"
        )
    kept = []
    for name in MODULE_NAMES:
        path = os.path.join(folder, f"{name}.ckpt")
        if not os.path.isfile(path):
            hint = (
                f" ({folder} is a recipe's run folder: export a pretrained "
                "folder from its best checkpoint with python -m "
                "speechbrain_mossformer.export_checkpoint "
                f"{folder} OUT_DIR, then give --init_from OUT_DIR)"
                if os.path.isdir(os.path.join(folder, "save")) else ""
            )
            raise RecipeError(f"init_from: {path} not found{hint}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        module = hparams["modules"][name]
        own = own_states[name]
        for key in own:
            if _excluded(f"{name}.{key}", exclude):
                state[key] = own[key]  # kept as initialised
                kept.append(f"{name}.{key}")
        try:
            check_state_dict(module, state, name)
        except ValueError as err:
            raise RecipeError(
                f"init_from {folder}: {err}; give the recipe the model "
                "size of that folder (its hyperparams.yaml: num_spks, "
                "kernel_size, N_encoder_out, out_channels, num_blocks, "
                "query_key_dim, hidden_dims, query_key_dims)"
            ) from None
        module.load_state_dict(state)
    logger.info(f"initialised encoder, masknet and decoder from {folder}")
    if kept:
        logger.info(
            f"not loaded from {folder} (init_exclude), kept as initialised: "
            f"{kept}"
        )


def _excluded(key, prefixes):
    """True when ``key`` (``module.parameter``) is ``init_exclude``d: it is
    one of ``prefixes`` or lies under one (``masknet.conv1d_out`` covers
    ``masknet.conv1d_out.weight``).

    Example
    -------
    >>> _excluded("masknet.conv1d_out.weight", ["masknet.conv1d_out"])
    True
    >>> _excluded("masknet.conv1d_outer.weight", ["masknet.conv1d_out"])
    False
    """
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _folder_config(folder):
    """The model configuration in a pretrained folder's yaml, or {}."""
    from speechbrain_mossformer.export_checkpoint import (
        ExportError,
        read_model_config,
    )

    try:
        path = os.path.join(folder, "hyperparams.yaml")
        return read_model_config(path)
    except ExportError:  # no yaml or no plain model keys: nothing to compare
        return {}


def save_progress(separator, err):
    """Saves an intra-epoch checkpoint after ``err`` stopped training.

    Saving a checkpoint is collective under DDP (SpeechBrain broadcasts
    the checkpoint folder from rank 0), so it is only safe when every
    process stops at once (``KeyboardInterrupt``). A data error (an
    unreadable file, a dynamic-mixing item) stops one process only, while
    the others wait in the gradient all-reduce of their step: saving there
    would hang every process until the DDP timeout, and save nothing.
    Such a run keeps its last periodic checkpoint.

    Stopped once the epoch's training is complete (at its end, or during
    validation), the checkpoint records it as at the end of the training
    loop (its batch count and average loss; SpeechBrain resets both before
    validating, and counts validation batches), so the resumed run
    validates again and logs the epoch's real training loss, not 0.
    Stopped between epochs (``separator.all_saved``: the last epoch's
    checkpoint is written and nothing was trained since), nothing is
    saved: an intra-epoch checkpoint there would make the resumed run
    train that epoch again.

    Arguments
    ---------
    separator : Separation
        The Brain.
    err : BaseException
        What stopped training.

    Returns
    -------
    bool
        Whether a checkpoint was saved.

    Example
    -------
    >>> class Brain:  # stands in for a Separation without a checkpointer
    ...     checkpointer = None
    >>> save_progress(Brain(), KeyboardInterrupt())
    False
    """
    if separator.checkpointer is None:
        return False
    if getattr(separator, "all_saved", False):
        logger.warning(
            "stopped between epochs: everything trained is in the last "
            "epoch's checkpoint"
        )
        return False
    if (
        not isinstance(err, KeyboardInterrupt)
        and is_distributed_initialized()
        and torch.distributed.get_world_size() > 1
    ):
        logger.warning(
            "stopped on one DDP process: no intra-epoch checkpoint (saving "
            "needs every process, and the others are mid-step); the last "
            "periodic checkpoint is kept"
        )
        return False
    finished = getattr(separator, "finished_training", None)
    whole = getattr(separator, "trained_through", None)
    loader = None
    if finished:
        state = finished
    elif whole is not None and whole[0] != separator.step:
        # a second Ctrl-C stopped a step half way (or in an accumulation
        # window): the step counter has counted a batch that is not trained
        if getattr(separator, "updating_weights", False):
            logger.warning(
                "stopped inside the optimizer's update: the weights may be "
                "half updated, so no checkpoint is saved; the run resumes "
                "from its last checkpoint"
            )
            return False
        # saved as after the last whole step, the data loader's position
        # too: the resumed run trains the unfinished batches again
        state = whole
        loader = _training_loader_iterator(separator)
        logger.warning(
            f"stopped in the middle of step {separator.step}: saving the "
            f"state after step {whole[0]}, the last whole one"
        )
    else:
        state = None
    if state is None:
        separator._save_intra_epoch_ckpt()
    else:
        during = separator.step, separator.avg_train_loss
        position = loader._num_yielded if loader is not None else None
        separator.step, separator.avg_train_loss = state
        if loader is not None:
            loader._num_yielded = state[0]
        try:
            separator._save_intra_epoch_ckpt()
        finally:
            separator.step, separator.avg_train_loss = during
            if loader is not None:
                loader._num_yielded = position
    logger.warning("stopped: saved an intra-epoch checkpoint")
    return True


def _training_loader_iterator(separator):
    """The iterator of the training DataLoader the checkpointer saves
    (its ``_num_yielded`` is the position saved), or ``None``."""
    loader = separator.checkpointer.recoverables.get("dataloader-TRAIN")
    iterator = getattr(loader, "_speechbrain_iterator", None)
    return iterator if hasattr(iterator, "_num_yielded") else None


#: Settings that count things: whole numbers, at least 1 (``num_workers``:
#: at least 0); null where the yaml allows it (``dm_epoch_size``).
COUNT_KEYS = (
    "N_epochs", "batch_size", "num_spks", "sample_rate", "num_workers",
    "N_encoder_out", "out_channels", "num_blocks", "group_size",
    "query_key_dim", "kernel_size", "dm_epoch_size",
)


def _is_object(value):
    """Whether a recipe yaml value builds an object (``!new:`` ...)."""
    from speechbrain_mossformer.export_checkpoint import yaml_tag

    tag = str(yaml_tag(value) or "")
    return tag.startswith(("!new:", "!name:", "!apply:", "!module:"))


#: Other recipes' names for our settings (SpeechBrain's ASR and enhancement
#: recipes say ``number_of_epochs``; the separation ones ``N_epochs``).
OTHER_NAMES = {"number_of_epochs": "N_epochs", "epochs": "N_epochs",
               "learning_rate": "lr"}


#: Values a user may put after a switch out of habit (``--noprogressbar
#: True``); SpeechBrain would read them as part of the next setting's value.
SWITCH_VALUES = {"true", "false", "yes", "no", "on", "off", "1", "0"}


def speechbrain_switches():
    """SpeechBrain's run options that are switches (``action="store_true"``:
    given alone to turn on, e.g. ``--noprogressbar``, ``--test_only``).

    Example
    -------
    >>> {"noprogressbar", "test_only", "debug"} <= speechbrain_switches()
    True
    >>> "device" in speechbrain_switches()
    False
    """
    from speechbrain.utils.run_opts import HELP_TEXTS, RunOptions

    defaults = RunOptions().as_dict()
    return {
        name for name in HELP_TEXTS
        if name in defaults and defaults[name] is False
    }


def check_switch_values(argv):
    """Names a SpeechBrain switch given a value (``--noprogressbar True``).

    SpeechBrain's parser takes the switch and leaves the value behind, where
    it joins the previous setting's value (``--N_epochs 1 True``) or breaks
    the yaml of the overrides; either way the error would name the wrong
    option.

    Arguments
    ---------
    argv : list of str
        The recipe's command line, after the script name.

    Example
    -------
    >>> check_switch_values(["r.yaml", "--noprogressbar", "--N_epochs", "1"])
    >>> check_switch_values(["r.yaml", "--noprogress", "yes"])
    Traceback (most recent call last):
     ...
    speechbrain_mossformer.recipe.RecipeError: --noprogressbar yes: ...
    >>> check_switch_values(["r.yaml", "--test_only", "True"])
    Traceback (most recent call last):
     ...
    speechbrain_mossformer.recipe.RecipeError: --test_only True: --test_only is a switch and takes no value: ...
    """
    from speechbrain.utils.run_opts import HELP_TEXTS

    switches = speechbrain_switches()
    options = set(HELP_TEXTS) | {"jit_module_keys", "compile_module_keys"}
    for arg, after in zip(argv, list(argv[1:]) + [None]):
        name, has_value, value = arg[2:].partition("=")
        if not arg.startswith("--"):
            continue
        if name not in options:
            # argparse takes a unique prefix (--noprogress) for the option
            prefixed = [o for o in options if o.startswith(name)]
            name = prefixed[0] if len(prefixed) == 1 else name
        if name not in switches:
            continue
        if not has_value:
            value = after
        if value is not None and (
            has_value or value.strip().lower() in SWITCH_VALUES
        ):
            raise RecipeError(
                f"--{name} {value}: --{name} is a switch and takes no value: "
                f"give --{name} alone to turn it on, leave it out to keep it "
                f"off"
            )


def check_overrides(hparams_file, overrides):
    """Checks the command-line overrides against the recipe yaml.

    Before anything is built, so that a typo or a wrong value is one line
    naming the option, not a traceback from hyperpyyaml, SpeechBrain's
    epoch counter or the DataLoader: an unknown setting (with the closest
    names), a required setting left out (``!PLACEHOLDER``, e.g.
    ``--data_folder``), a value whose type does not match the yaml's
    (``--N_epochs two``, ``--lr abc``, ``--dynamic_mixing yes``) and a count
    below 1 (``--batch_size 0``).

    Arguments
    ---------
    hparams_file : str
        The recipe yaml.
    overrides : str
        The overrides as SpeechBrain's ``parse_arguments`` gives them (yaml
        text ``key: value``, one a line).

    Example
    -------
    >>> path = getfixture("tmpdir").join("r.yaml")
    >>> _ = path.write_text(
    ...     "data_folder: !PLACEHOLDER\\nN_epochs: 10\\nlr: 0.001\\n",
    ...     encoding="utf-8")
    >>> check_overrides(str(path), "data_folder: /d\\nN_epochs: 2\\nlr: 1e-3")
    >>> check_overrides(str(path), "data_folder: /d\\nN_epoch: 2")
    Traceback (most recent call last):
     ...
    speechbrain_mossformer.recipe.RecipeError: --N_epoch: ... (did you mean --N_epochs?)
    >>> check_overrides(str(path), "N_epochs: 2")
    Traceback (most recent call last):
     ...
    speechbrain_mossformer.recipe.RecipeError: --data_folder is required: ...
    """
    import difflib

    from ruamel.yaml import YAML

    from speechbrain_mossformer.export_checkpoint import yaml_tag

    try:
        with open(hparams_file, encoding="utf-8") as f:
            defaults = YAML(typ="rt").load(f) or {}
    except Exception as err:
        raise RecipeError(f"{hparams_file}: {first_line(err)}") from None
    try:
        given = YAML(typ="rt").load(overrides) or {} if overrides else {}
    except Exception as err:
        # e.g. a setting given twice; the line numbers would be those of
        # SpeechBrain's yaml text of the overrides, not the user's
        problem = getattr(err, "problem", None) or first_line(err)
        raise RecipeError(f"command-line overrides: {problem}") from None
    if not isinstance(defaults, dict) or not isinstance(given, dict):
        return  # not the shape a recipe yaml has: left to hyperpyyaml
    for key, value in given.items():
        if key not in defaults:
            settings = [k for k, v in defaults.items() if not _is_object(v)]
            close = difflib.get_close_matches(str(key), map(str, settings))
            if OTHER_NAMES.get(key) in defaults:
                close = [OTHER_NAMES[key]]
            hint = f" (did you mean --{close[0]}?)" if close else ""
            raise RecipeError(
                f"--{key}: {hparams_file} has no such setting{hint}"
            )
        default = defaults[key]
        if (value is None or getattr(default, "tag", None) is not None
                or getattr(value, "tag", None) is not None):
            continue  # null, or a yaml expression / object: hyperpyyaml's
        if isinstance(default, bool) and not isinstance(value, bool):
            raise RecipeError(
                f"--{key} {value}: expected True or False"
            )
        number = isinstance(value, (int, float)) and not isinstance(
            value, bool)
        if isinstance(value, str):
            try:  # "inf", "-inf": the Brain reads them with float()
                float(value)
                number = True
            except ValueError:
                pass
        if (isinstance(default, (int, float)) and key not in COUNT_KEYS
                and not isinstance(default, bool) and not number):
            raise RecipeError(
                f"--{key} {value}: expected a number ({hparams_file} has "
                f"{key}: {default})"
            )
        if key in COUNT_KEYS:
            least = 0 if key == "num_workers" else 1
            if not isinstance(value, int) or value < least:
                raise RecipeError(
                    f"--{key} {value}: expected a whole number of at least "
                    f"{least}"
                )
    for key, default in defaults.items():
        if yaml_tag(default) == "!PLACEHOLDER" and key not in given:
            raise RecipeError(
                f"--{key} is required: {hparams_file} leaves it to the "
                f"command line"
            )


def earlier_settings(output_folder):
    """The ``hyperparams.yaml`` of an earlier run in ``output_folder``, read
    before SpeechBrain overwrites it with this run's: ``(its date, its
    text)``, or ``None`` (no earlier run). ``keep_earlier_settings`` keeps
    it when this run's settings differ, so that the record of how a model
    was trained survives a later ``--test_only`` or a resume with other
    settings.

    Arguments
    ---------
    output_folder : str
        The run folder.

    Returns
    -------
    tuple of str or None

    Example
    -------
    >>> folder = str(getfixture("tmpdir"))
    >>> earlier_settings(folder) is None
    True
    >>> path = os.path.join(folder, "hyperparams.yaml")
    >>> with open(path, "w") as f:
    ...     _ = f.write("lr: 0.001\\n")
    >>> earlier = earlier_settings(folder)
    >>> keep_earlier_settings(folder, earlier) is None  # the same settings
    True
    >>> with open(path, "w") as f:
    ...     _ = f.write("lr: 0.002\\n")
    >>> kept = keep_earlier_settings(folder, earlier)
    >>> os.path.basename(kept).startswith("hyperparams.20"), open(kept).read()
    (True, 'lr: 0.001\\n')
    """
    path = os.path.join(output_folder, "hyperparams.yaml")
    if not os.path.isfile(path):
        return None
    stamp = time.strftime(
        "%Y-%m-%d_%H-%M-%S", time.localtime(os.path.getmtime(path))
    )
    with open(path, encoding="utf-8") as f:
        return stamp, f.read()


def keep_earlier_settings(output_folder, earlier):
    """Writes the ``earlier_settings`` to ``hyperparams.<date>.yaml`` when
    they differ from the run folder's new ``hyperparams.yaml`` (not counting
    SpeechBrain's first line, the date it was written); returns that file,
    or ``None``.

    Arguments
    ---------
    output_folder : str
        The run folder, its ``hyperparams.yaml`` this run's.
    earlier : tuple of str or None
        What ``earlier_settings`` read before it was written.

    Returns
    -------
    str or None

    Example
    -------
    >>> keep_earlier_settings(str(getfixture("tmpdir")), None) is None
    True
    """
    if earlier is None:
        return None
    stamp, text = earlier

    def settings(content):
        return [ln for ln in content.splitlines()
                if not ln.startswith("# Generated ")]

    with open(
        os.path.join(output_folder, "hyperparams.yaml"), encoding="utf-8"
    ) as f:
        if settings(f.read()) == settings(text):
            return None
    from speechbrain_mossformer.pretrained import write_replacing

    kept = os.path.join(output_folder, f"hyperparams.{stamp}.yaml")
    if os.path.exists(kept):  # kept already (a run of the same second)
        return None

    def write(path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)

    # whole or not at all (a full disk must not leave it empty: an
    # existing copy is never written again)
    write_replacing(kept, write)
    return kept


def run_recipe(argv, dataset):
    """Runs a whole recipe: prepare, train, evaluate.

    Arguments
    ---------
    argv : list of str
        Command line: the yaml, then SpeechBrain run options and overrides.
    dataset : str
        ``"wsj0mix"``, ``"wham"`` or ``"librimix"``.

    Returns
    -------
    Separation
        The Brain (after evaluation).
    """
    check_switch_values(argv)
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    if not os.path.isfile(hparams_file):
        raise RecipeError(f"hyperparameter file not found: {hparams_file}")
    overrides = default_data_folder(overrides)
    check_overrides(hparams_file, overrides)
    with open(hparams_file, encoding="utf-8") as f:
        hparams = load_hyperpyyaml(f, overrides)

    # the run folder is compared with the settings as given (before
    # check_settings adjusts any), which is what hyperparams.yaml records
    notes = check_run_folder(hparams)
    notes += check_settings(hparams)
    # before the run folder and the data are set up
    problem = device_problem(run_opts.get("device"))
    if problem is not None:
        raise RecipeError(f"--device: {problem}")
    run_opts = choose_ddp_backend(run_opts)
    sb.utils.distributed.ddp_init_group(run_opts)
    # one run per folder: a second one (launched twice, a cluster requeuing
    # a job still alive) would delete the first one's checkpoints
    locks = []
    try:
        if if_main_process():
            for folder in run_folders(hparams):
                locks.append(lock_run_folder(folder))
        return _run_in_folder(
            hparams, hparams_file, run_opts, overrides, notes, dataset
        )
    finally:
        for lock in locks:
            if lock is not None:
                lock.close()


def run_folders(hparams):
    """The folders a run writes its checkpoints under: ``output_folder``,
    and ``save_folder`` where it lies outside it (an override).

    Example
    -------
    >>> run_folders({"output_folder": "/r", "save_folder": "/r/save"})
    ['/r']
    >>> run_folders({"output_folder": "/r", "save_folder": "/ckpt/r"})
    ['/r', '/ckpt/r']
    """
    output = os.path.abspath(hparams["output_folder"])
    save = os.path.abspath(hparams.get("save_folder") or output)
    inside = os.path.commonpath([output, save]) == output
    return [hparams["output_folder"]] + (
        [] if inside else [hparams["save_folder"]]
    )


def lock_run_folder(folder):
    """Takes ``folder``'s run lock (``folder/.lock``) for this process.

    Held until the returned file is closed, or until the process ends,
    however it ends, and with it the processes it forked (DataLoader
    workers, which torch stops within seconds of their parent). On a file
    system without locks (some network ones) the run goes on unlocked.

    Arguments
    ---------
    folder : str
        The run folder (made if missing).

    Returns
    -------
    file or None
        The open lock file; None where locks are not available.

    Example
    -------
    >>> folder = str(getfixture("tmpdir"))
    >>> lock = lock_run_folder(folder)
    >>> lock_run_folder(folder)
    Traceback (most recent call last):
     ...
    speechbrain_mossformer.recipe.RecipeError: ... is in use by another run ...
    >>> lock.close()
    >>> lock_run_folder(folder).close()
    """
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        return None
    import socket

    os.makedirs(folder, exist_ok=True)
    handle = open(os.path.join(folder, ".lock"), "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise RecipeError(
            f"{folder} is in use by another run"
            + (f" (process {holder})" if holder else "")
            + ": two runs in one folder delete each other's checkpoints; "
            "wait for it to end, or give another --output_folder"
        ) from None
    except OSError:  # no locks on this file system
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{socket.gethostname()}:{os.getpid()}\n")
    handle.flush()
    return handle


def _run_in_folder(hparams, hparams_file, run_opts, overrides, notes,
                   dataset):
    """``run_recipe`` from the run folder's set-up on (this process holds
    the folder's lock, or is not the main one); returns the Brain."""
    earlier = (
        earlier_settings(hparams["output_folder"])
        if if_main_process() else None
    )
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    kept = keep_earlier_settings(hparams["output_folder"], earlier)
    if kept is not None:
        logger.info(f"the earlier run's settings are kept in {kept}")
    # SpeechBrain copies the file that called it (this module): the
    # recipe's own train.py goes with the run too
    script = os.path.abspath(sys.argv[0]) if sys.argv else ""
    if if_main_process() and script.endswith(".py") and os.path.isfile(
        script
    ):
        shutil.copy(script, hparams["output_folder"])
    # after the run's log.txt exists: its fp16 warning is logged there too
    run_opts = resolve_precision(hparams, run_opts)
    for note in notes:
        logger.warning(note)
    resolve_checkpoint_interval(hparams, run_opts)

    csvs = {}
    if own_manifests_only(hparams):
        logger.info(
            "--train_data, --valid_data and --test_data given: no corpus "
            f"to prepare ($data_root is {hparams['data_folder']})"
        )
    else:
        try:
            run_on_main(
                lambda: csvs.update(prepare_data(hparams, dataset)),
            )
        except OSError as err:  # e.g. a full disk while writing the CSVs
            if type(err).__module__.startswith("speechbrain_mossformer"):
                raise
            raise RecipeError(
                f"preparing the data: {first_line(err)}") from None
        if not csvs:  # other DDP ranks: the main process wrote the CSVs
            hparams["skip_prep"] = True
            csvs.update(prepare_data(hparams, dataset))
    csvs = use_own_manifests(hparams, csvs)
    for path in csvs.values():
        if not os.path.isfile(path):
            raise RecipeError(
                f"skip_prep is True but {path} does not exist: run once "
                "without --skip_prep (it writes the CSVs into save_folder)"
            )
    run_on_main(ensure_rirs, args=[hparams])
    if needs_rirs(hparams) and not hparams.get("rir_csv"):
        ensure_rirs(hparams)  # other ranks: only reads the existing files
    rir_rates = None
    if needs_rirs(hparams):
        # at setup, for AddReverb and dynamic mixing alike: not deep in
        # training once a multichannel RIR is drawn (each header read once)
        rir_rates = check_rirs(hparams["rir_csv"])
    datasets = audio_datasets(hparams, csvs)
    load_initial_weights(hparams)

    separator = Separation(
        modules=hparams["modules"],
        opt_class=hparams["optimizer"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    train_set = datasets["train"]
    train_opts = dict(hparams["dataloader_opts"])
    if hparams.get("dynamic_mixing", False):
        train_set = dynamic_mixing_dataset(
            hparams, dataset, csvs["train"], csvs["test"], csvs["valid"]
        )
        separator.dynamic_mixing_dataset = train_set
        train_opts["collate_fn"] = PaddedBatch
    configure_reverb(hparams, rir_rates)

    # SIGTERM (a cluster's preemption, torchrun stopping its workers) stops
    # training like Ctrl-C, with a checkpoint, instead of killing it
    main_thread = threading.current_thread() is threading.main_thread()
    previous = (
        signal.signal(signal.SIGTERM, raise_terminated)
        if main_thread else None
    )
    try:
        separator.fit(
            hparams["epoch_counter"],
            train_set,
            datasets["valid"],
            train_loader_kwargs=train_opts,
            valid_loader_kwargs=hparams["eval_dataloader_opts"],
        )
    except (KeyboardInterrupt, AudioReadError, DataPreparationError) as err:
        # Nothing the user trained is lost: keep where we are.
        save_progress(separator, err)
        raise
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)

    checkpointer = hparams["checkpointer"]
    if checkpointer.find_checkpoint(min_key="si-snr") is None:
        if hparams.get("init_from") and checkpointer.find_checkpoint() is None:
            # nothing trained in this run: the weights are init_from's
            logger.warning(
                f"no checkpoint in {hparams['save_folder']}: evaluating the "
                f"weights of init_from {hparams['init_from']}"
            )
        else:
            raise RecipeError(
                f"no end-of-epoch checkpoint in {hparams['save_folder']} to "
                "evaluate (train first; an interrupted epoch's checkpoint "
                "has no validation score): refusing to score random weights"
            )
    separator.evaluate(
        datasets["test"],
        min_key="si-snr",
        test_loader_kwargs=hparams["eval_dataloader_opts"],
    )
    return separator


def end_distributed():
    """Destroys the DDP process group, if this process has one.

    Returns
    -------
    bool
        True when there was one (the process should then leave with
        ``exit_now``).

    Example
    -------
    >>> end_distributed()  # a process without DDP
    False
    """
    if is_distributed_initialized():
        torch.distributed.destroy_process_group()
        return True
    return False


def exit_now(code):
    """Ends a DDP rank's process at once, its files and logs flushed.

    With torch 2.14 and gloo, a rank aborted in about one run in fifteen
    (SIGABRT, "terminate called without an active exception") while the
    interpreter shut down, after its process group was destroyed and all
    its work was written, and torchrun then failed the whole run. Skipping
    the interpreter's teardown avoids that.

    Arguments
    ---------
    code : int
        The process's exit code.

    Example
    -------
    >>> if end_distributed():  # doctest: +SKIP
    ...     exit_now(0)
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def one_line(err):
    """The message of one of our errors, also when a DataLoader worker
    raised it (torch then prepends the worker's traceback).

    Example
    -------
    >>> one_line(RecipeError("Caught AudioReadError in DataLoader worker "
    ...     "process 0.\\nOriginal Traceback (most recent call last):\\n  ..."
    ...     "\\nspeechbrain_mossformer.recipe.AudioReadError: cannot read x"))
    'cannot read x'
    """
    lines = [line for line in str(err).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught "):
        last = lines[-1]
        head, sep, tail = last.partition(": ")
        return tail if sep and "Error" in head else last
    return str(err)


def main(dataset):
    """Entry point of a recipe's ``train.py``; returns the exit code."""
    code = 0
    try:
        run_recipe(sys.argv[1:], dataset)
    except (RecipeError, ValueError, FileNotFoundError,
            CheckpointSaveError) as err:
        if not type(err).__module__.startswith("speechbrain_mossformer"):
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt as err:
        # the checkpoint (if any) is saved and logged by run_recipe
        terminated = isinstance(err, Terminated)
        print(
            f"{'terminated (SIGTERM)' if terminated else 'interrupted'}: "
            "run the same command again to resume",
            file=sys.stderr,
        )
        code = 143 if terminated else 130
    finally:
        distributed = end_distributed()
    if distributed:
        exit_now(code)
    return code
