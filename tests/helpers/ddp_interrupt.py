"""Two DDP ranks; only rank 1 gets a Ctrl-C (SIGINT), during its step 2.

``torchrun --nproc_per_node=2 ddp_interrupt.py OUT`` writes
``OUT/rank<r>.pt`` with the step at which each rank stopped and its
optimizer steps. The held interrupt is agreed through the step's
collective, so both ranks must stop after step 2, with 2 optimizer steps
(rank 0 alone, stopping later or not at all, would hang in the next
gradient all-reduce).
"""

import os
import signal
import sys

import torch
from ddp_skip import mixture, tiny_model
from speechbrain.nnet.losses import get_si_snr_with_pitwrapper

import speechbrain as sb
from speechbrain_mossformer.brain import Separation
from speechbrain_mossformer.recipe import end_distributed, exit_now


class CtrlCOnRank1(Separation):
    """Rank 1 sends itself SIGINT during the forward pass of step 2."""

    def compute_forward(self, batch, stage):
        if self.rank == 1 and self.step == 2:
            signal.raise_signal(signal.SIGINT)
        return super().compute_forward(batch, stage)


if __name__ == "__main__":
    out = sys.argv[1]
    sb.utils.distributed.ddp_init_group({"distributed_backend": "gloo"})
    rank = int(os.environ["RANK"])
    model = tiny_model()
    brain = CtrlCOnRank1(
        modules={"encoder": model.encoder, "masknet": model.masknet,
                 "decoder": model.decoder},
        opt_class=lambda params: torch.optim.SGD(params, 0.1),
        hparams={"num_spks": 2, "loss": get_si_snr_with_pitwrapper},
        run_opts={"device": "cpu", "distributed_backend": "gloo"},
    )
    brain.rank = rank
    brain.on_fit_start()  # DDP wrapping and the optimizer
    brain.on_stage_start(sb.Stage.TRAIN, epoch=1)
    stopped_at = None
    try:
        for seed in range(1, 6):
            brain.step += 1
            brain.fit_batch(mixture("good", seed + 10 * rank))
    except KeyboardInterrupt:
        stopped_at = brain.step
    torch.save(
        {"stopped_at": stopped_at, "optimizer_step": brain.optimizer_step},
        os.path.join(out, f"rank{rank}.pt"),
    )
    if end_distributed():
        exit_now(0)
