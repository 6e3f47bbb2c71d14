"""Two DDP ranks; Ctrl-C (SIGINT) reaches them at different points.

``torchrun --nproc_per_node=2 ddp_interrupt.py OUT MODE`` writes
``OUT/rank<r>.pt`` with where each rank stopped and its optimizer steps:

* ``one``: only rank 1 gets the signal, in the forward pass of step 2;
* ``mixed``: rank 0 gets it between steps 1 and 2 (data loading), rank 1
  in step 2 after the step's all-reduce;
* ``last``: both get it in the last step (3), after its all-reduce;
* ``validation``: only rank 1 gets it, in validation batch 2 (every rank
  validates the whole set).

The held signal is agreed through the step's collective (or, after the
last step, at the end of the training stage), so both ranks must stop at
the same point: after step 2 in ``one`` and ``mixed``, at the end of the
stage in ``last``, before validation batch 3 in ``validation``. A rank
stopping alone would leave the other one in a
collective it never completes.
"""

import os
import signal
import sys

import speechbrain as sb
import torch
from ddp_skip import ddp_brain, mixture

from speechbrain_mossformer.brain import Separation
from speechbrain_mossformer.recipe import end_distributed, exit_now


class SignalAt(Separation):
    """Sends itself SIGINT at (step, where) in ``self.plan``."""

    def compute_forward(self, batch, stage):
        where = "forward" if stage == sb.Stage.TRAIN else "validation"
        if (self.step, where) in self.plan:
            signal.raise_signal(signal.SIGINT)
        return super().compute_forward(batch, stage)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        if (self.step, "after all-reduce") in self.plan:
            signal.raise_signal(signal.SIGINT)
        super().on_fit_batch_end(batch, outputs, loss, should_step)


PLANS = {
    "one": {1: [(2, "forward")]},
    "mixed": {0: [(2, "between")], 1: [(2, "after all-reduce")]},
    "last": {0: [(3, "after all-reduce")], 1: [(3, "after all-reduce")]},
    "validation": {1: [(2, "validation")]},
}

if __name__ == "__main__":
    out, mode = sys.argv[1], sys.argv[2]
    brain = ddp_brain(SignalAt)
    rank = int(os.environ["RANK"])
    brain.plan = PLANS[mode].get(rank, [])
    stopped_at = None
    try:
        # what fit runs its epochs in
        with brain.stopping_at_safe_points():
            brain.on_stage_start(sb.Stage.TRAIN, epoch=1)
            for seed in range(1, 4):
                if (brain.step + 1, "between") in brain.plan:
                    signal.raise_signal(signal.SIGINT)
                brain.step += 1
                brain.fit_batch(mixture("good", seed + 10 * rank))
            stopped_at = "trained all"
            brain.on_stage_end(sb.Stage.TRAIN, brain.avg_train_loss, epoch=1)
            brain.on_stage_start(sb.Stage.VALID, epoch=1)
            brain.step = 0
            with torch.no_grad():
                for seed in range(1, 4):
                    brain.step += 1
                    stopped_at = f"validation {brain.step}"
                    brain.evaluate_batch(mixture("good", seed),
                                         sb.Stage.VALID)
            stopped_at = "validated all"
    except KeyboardInterrupt:
        if stopped_at is None:
            stopped_at = brain.step
        elif stopped_at == "trained all":
            stopped_at = "end of stage"
    torch.save(
        {"stopped_at": stopped_at, "optimizer_step": brain.optimizer_step},
        os.path.join(out, f"rank{rank}.pt"),
    )
    if end_distributed():
        exit_now(0)
