"""Checkpoints that survive being killed while they are written.

SpeechBrain's ``Checkpointer`` writes a checkpoint's ``CKPT.yaml`` first and
its parameter files after. A run killed in between (out of time on a
cluster, pre-empted, Ctrl-C twice) leaves a checkpoint that looks complete
but is not, and the next run's ``recover_if_possible`` picks it and fails
with ``EOFError``. Here ``CKPT.yaml`` is written last, by an atomic rename,
so an interrupted save is simply not a checkpoint and training resumes from
the previous one.

Under DDP the other processes wait for that rename (a barrier): they list
the checkpoints next (``save_and_keep_only``), and a process that did not
yet see the new ``CKPT.yaml`` chose other checkpoints to delete than the
main process, so their collective calls no longer matched and the run hung
(seen after resuming a ``torchrun`` run).

Authors
 * speechbrain-mossformer contributors 2026
"""

import os

from speechbrain.utils import checkpoints as sb_checkpoints
from speechbrain.utils.distributed import ddp_barrier

_PARTIAL = ".partial"


class AtomicCheckpointer(sb_checkpoints.Checkpointer):
    """A ``Checkpointer`` whose checkpoints appear only once complete.

    Arguments are those of ``speechbrain.utils.checkpoints.Checkpointer``.

    Example
    -------
    >>> import torch
    >>> tmp = getfixture("tmpdir")
    >>> model = torch.nn.Linear(2, 2)
    >>> ckpter = AtomicCheckpointer(str(tmp), {"model": model})
    >>> ckpt = ckpter.save_checkpoint(meta={"loss": 1.0})
    >>> sorted(p.name for p in ckpt.path.iterdir())
    ['CKPT.yaml', 'model.ckpt']
    >>> len(ckpter.list_checkpoints())
    1
    """

    def _save_checkpoint_metafile(
        self, fpath, meta_to_include={}, end_of_epoch=True
    ):
        # Written under a temporary name; save_checkpoint renames it last.
        return super()._save_checkpoint_metafile(
            fpath.with_name(fpath.name + _PARTIAL),
            meta_to_include,
            end_of_epoch,
        )

    def save_checkpoint(self, *args, **kwargs):
        """Saves like SpeechBrain, then publishes ``CKPT.yaml`` atomically;
        every DDP process returns once it is published."""
        checkpoint = super().save_checkpoint(*args, **kwargs)
        if checkpoint is not None:  # main process
            meta = checkpoint.path / sb_checkpoints.METAFNAME
            os.replace(meta.with_name(meta.name + _PARTIAL), meta)
        ddp_barrier()
        return checkpoint
