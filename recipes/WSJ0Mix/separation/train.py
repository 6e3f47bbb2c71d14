#!/usr/bin/env python3
"""Recipe for training MossFormer on WSJ0-2mix / WSJ0-3mix.

To run it:
    python train.py hparams/mossformer.yaml --data_folder /data/wsj0-mix/2speakers
    torchrun --nproc_per_node=8 train.py hparams/mossformer.yaml --data_folder ...

The training loop is the package's shared ``Separation`` Brain
(``speechbrain_mossformer.brain``); this file only names the dataset.

Authors
 * speechbrain-mossformer contributors 2026
"""

import sys

from speechbrain_mossformer.recipe import main

if __name__ == "__main__":
    sys.exit(main("wsj0mix"))
