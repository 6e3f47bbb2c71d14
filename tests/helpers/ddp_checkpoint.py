"""Two DDP ranks keep the best of two checkpoints, rank 0 slow to publish.

``torchrun --nproc_per_node=2 ddp_checkpoint.py OUT`` saves two end-of-epoch
checkpoints with ``save_and_keep_only`` (the second better), rank 0's
rename of ``CKPT.yaml`` delayed by half a second, then writes
``OUT/rank<r>.done``. A rank that listed the checkpoints before the rename
chose other deletions than rank 0, and the two hung in mismatched
collectives.
"""

import os
import sys
import time
import types

import speechbrain as sb
import torch

import speechbrain_mossformer.checkpoints as checkpoints
from speechbrain_mossformer.recipe import end_distributed, exit_now

if __name__ == "__main__":
    out = sys.argv[1]
    sb.utils.distributed.ddp_init_group({"distributed_backend": "gloo"})
    rank = int(os.environ["RANK"])
    if rank == 0:
        replace = os.replace

        def slow_replace(src, dst):
            time.sleep(0.5)
            replace(src, dst)

        # the os module as the checkpointer sees it, its rename slowed
        slow_os = types.ModuleType("slow_os")
        slow_os.__dict__.update(os.__dict__)
        slow_os.replace = slow_replace
        checkpoints.os = slow_os
    ckpter = checkpoints.AtomicCheckpointer(
        os.path.join(out, "save"), {"model": torch.nn.Linear(2, 2)}
    )
    for loss in (2.0, 1.0):
        ckpter.save_and_keep_only(meta={"si-snr": loss}, min_keys=["si-snr"])
    open(os.path.join(out, f"rank{rank}.done"), "w").close()
    if end_distributed():
        exit_now(0)
