"""Two DDP ranks, gradient accumulation 2, the window's last micro-batch
skipped on both ranks.

``torchrun --nproc_per_node=2 ddp_skip.py OUT`` writes ``OUT/rank<r>.pt``
(weights and optimizer steps). No backward pass synchronised the ranks'
gradients in that window, so the Brain averages them itself: both ranks
must end with the same weights, those of one step on the mean gradient of
the two ranks' good micro-batches.
"""

import os
import sys

import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.nnet.losses import get_si_snr_with_pitwrapper

from speechbrain_mossformer.brain import Separation
from speechbrain_mossformer.lobes.models.mossformer import MossFormerWrapper
from speechbrain_mossformer.recipe import end_distributed, exit_now


class Scripted(Separation):
    """NaN loss for the batches named ``bad*``."""

    def compute_objectives(self, predictions, targets):
        loss = super().compute_objectives(predictions, targets)
        return loss * float("nan") if self._bad else loss

    def compute_forward(self, batch, stage):
        self._bad = batch.id[0].startswith("bad")
        return super().compute_forward(batch, stage)


def tiny_model():
    """The same weights on every rank (and in the test)."""
    torch.manual_seed(0)
    return MossFormerWrapper(
        encoder_out_nchannels=16, num_blocks=1, group_size=4,
        query_key_dim=8,
    )


def mixture(name, seed):
    gen = torch.Generator().manual_seed(seed)
    s1, s2 = torch.randn(2, 160, generator=gen)
    return PaddedBatch([
        {"id": name, "mix_sig": s1 + s2, "s1_sig": s1, "s2_sig": s2}
    ])


def ddp_brain(brain_class, **run_opts):
    """Joins the gloo process group; a ``brain_class`` Brain on the tiny
    model with SGD (lr 0.1), DDP-wrapped, with its optimizer."""
    sb.utils.distributed.ddp_init_group({"distributed_backend": "gloo"})
    model = tiny_model()
    brain = brain_class(
        modules={"encoder": model.encoder, "masknet": model.masknet,
                 "decoder": model.decoder},
        opt_class=lambda params: torch.optim.SGD(params, 0.1),
        hparams={"num_spks": 2, "loss": get_si_snr_with_pitwrapper},
        run_opts=dict(device="cpu", distributed_backend="gloo", **run_opts),
    )
    brain.on_fit_start()  # DDP wrapping and the optimizer
    return brain


if __name__ == "__main__":
    out = sys.argv[1]
    brain = ddp_brain(Scripted, grad_accumulation_factor=2,
                      max_grad_norm=1e9)
    rank = int(os.environ["RANK"])
    brain.modules.eval()  # no dropout: the test recomputes the step
    for name, seed in [("good", 1 + rank), ("bad", 10)]:
        brain.step += 1
        brain.fit_batch(mixture(name, seed))
    state = {
        name: getattr(module, "module", module).state_dict()
        for name, module in brain.modules.items()
    }
    torch.save(
        {"state": state, "optimizer_step": brain.optimizer_step,
         "skipped": brain.skipped_batches},
        os.path.join(out, f"rank{rank}.pt"),
    )
    if end_distributed():
        exit_now(0)
