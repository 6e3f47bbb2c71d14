#!/usr/bin/env python3
"""Recipe for training MossFormer on Libri2Mix / Libri3Mix.

To run it:
    python train.py hparams/mossformer-libri2mix.yaml --data_folder /data/Libri2Mix
    torchrun --nproc_per_node=8 train.py hparams/mossformer-libri2mix.yaml --data_folder ...

The training loop is the package's shared ``Separation`` Brain
(``speechbrain_mossformer.brain``); this file only names the dataset.

Authors
 * speechbrain-mossformer contributors 2026
"""

import sys

from speechbrain_mossformer.recipe import main

if __name__ == "__main__":
    sys.exit(main("librimix"))
