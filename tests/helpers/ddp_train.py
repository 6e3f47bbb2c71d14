"""Runs a recipe like train.py does, then saves this rank's weights.

Used by the DDP test: ``torchrun --nproc_per_node=2 ddp_train.py DATASET
YAML ...`` writes ``<output_folder>/rank<r>_masknet.pt`` on every rank, so
the test can check that the ranks trained the same model.
"""

import os
import sys

import torch

from speechbrain_mossformer.recipe import end_distributed, exit_now, run_recipe

if __name__ == "__main__":
    dataset = sys.argv[1]
    separator = run_recipe(sys.argv[2:], dataset)
    rank = int(os.environ.get("RANK", 0))
    out = separator.hparams.output_folder
    state = {
        name: module.state_dict()
        for name, module in separator.modules.items()
    }
    torch.save(
        {"state": state, "optimizer_step": separator.optimizer_step},
        os.path.join(out, f"rank{rank}_weights.pt"),
    )
    if end_distributed():
        exit_now(0)
