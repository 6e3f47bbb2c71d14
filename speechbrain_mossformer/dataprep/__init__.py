"""Data preparation, dynamic mixing and mini datasets for separation.

* :func:`prepare_wsj0mix`, :func:`prepare_wham`, :func:`prepare_librimix`
  write SpeechBrain CSV manifests, with clear errors
  (:class:`DataPreparationError`) for bad data folders;
* :class:`DynamicMixingDataset` makes training mixtures on the fly,
  deterministically from ``(seed, epoch, index)`` (DDP-safe, resumable);
* :mod:`.minidata` builds tiny corpora in the real layouts from the bundled
  speech clips, for tests and smoke runs.

Authors
 * speechbrain-mossformer contributors 2026
"""

from speechbrain_mossformer.dataprep.csv_manifest import (
    AudioFileError,
    DataFolderNotFoundError,
    DataPreparationError,
    EmptyDataFolderError,
    FileMismatchError,
    LayoutError,
    SampleRateError,
)
from speechbrain_mossformer.dataprep.dynamic_mixing import (
    DynamicMixingDataset,
    loudness,
    normalize_loudness,
)
from speechbrain_mossformer.dataprep.librimix import prepare_librimix
from speechbrain_mossformer.dataprep.wham import prepare_wham
from speechbrain_mossformer.dataprep.wsj0mix import prepare_wsj0mix

__all__ = [
    "AudioFileError",
    "DataFolderNotFoundError",
    "DataPreparationError",
    "EmptyDataFolderError",
    "FileMismatchError",
    "LayoutError",
    "SampleRateError",
    "DynamicMixingDataset",
    "loudness",
    "normalize_loudness",
    "prepare_librimix",
    "prepare_wham",
    "prepare_wsj0mix",
]
