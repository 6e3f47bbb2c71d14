"""Leaves an epoch of a Separation's DataLoader (2 workers) in the middle
and exits: the process must end (its workers ignore SIGTERM, which is how
``multiprocessing`` stops its children at exit; ``brain.py`` stops them
first)."""

import os
import sys

import speechbrain as sb
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from test_brain import make_brain  # noqa: E402


class Zeros(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.zeros(2)


if __name__ == "__main__":
    brain = make_brain(1)
    brain.interrupt.release()
    loader = brain.make_dataloader(
        Zeros(), sb.Stage.TRAIN, num_workers=2, batch_size=1
    )
    iterator = iter(loader)  # kept by the loader, as in a stopped epoch
    next(iterator)
    print("exiting", flush=True)
