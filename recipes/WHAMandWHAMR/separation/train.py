#!/usr/bin/env python3
"""Recipe for training MossFormer on WHAM! and WHAMR!.

To run it:
    python train.py hparams/mossformer-wham.yaml --data_folder /data/wham_original
    torchrun --nproc_per_node=8 train.py hparams/mossformer-whamr.yaml --data_folder ...

The training loop is the package's shared ``Separation`` Brain
(``speechbrain_mossformer.brain``); this file only names the dataset.

Authors
 * speechbrain-mossformer contributors 2026
"""

import sys

from speechbrain_mossformer.recipe import main

if __name__ == "__main__":
    sys.exit(main("wham"))
