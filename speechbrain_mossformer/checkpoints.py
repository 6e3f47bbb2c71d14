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

A save that fails (a full disk, an unwritable folder) removes its unfinished
folder and says so in one line (``CheckpointSaveError``); the folders that
interrupted saves left (a run killed while saving) are removed once a newer
checkpoint is complete. Each checkpoint records the number of processes that
wrote it (``world_size`` in ``CKPT.yaml``): an intra-epoch checkpoint counts
each process's batches, so it resumes only with the same number.

Authors
 * speechbrain-mossformer contributors 2026
"""

import os
import shutil

import torch
from speechbrain.utils import checkpoints as sb_checkpoints
from speechbrain.utils.distributed import (
    ddp_barrier,
    is_distributed_initialized,
)

from speechbrain_mossformer.errors import first_line

_PARTIAL = ".partial"


class CheckpointSaveError(RuntimeError):
    """A checkpoint could not be written (its unfinished folder is removed;
    the earlier checkpoints are kept)."""


def process_count():
    """The number of training processes: the DDP group's size, or before
    the group exists ``torchrun``'s ``WORLD_SIZE`` (1 without DDP, which
    SpeechBrain starts only where ``RANK`` and ``LOCAL_RANK`` are set too).

    Example
    -------
    >>> process_count()
    1
    """
    if is_distributed_initialized():
        return torch.distributed.get_world_size()
    if "RANK" not in os.environ or "LOCAL_RANK" not in os.environ:
        return 1
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def checkpoint_folders(save_folder, complete=True):
    """The checkpoint folders (``CKPT+...``) of ``save_folder``: the
    complete ones, which hold ``CKPT.yaml`` (written last), or
    (``complete=False``) those an interrupted save left without it, which
    SpeechBrain never loads (symbolic links are not counted as those).

    Example
    -------
    >>> save = getfixture("tmpdir")
    >>> _ = (save / "CKPT+1").ensure(dir=True)
    >>> _ = (save / "CKPT+2" / "CKPT.yaml").ensure()
    >>> checkpoint_folders(str(save)), unfinished_checkpoints(str(save))
    (['CKPT+2'], ['CKPT+1'])
    """
    if not os.path.isdir(save_folder):
        return []
    found = []
    for name in sorted(os.listdir(save_folder)):
        path = os.path.join(save_folder, name)
        if not name.startswith(sb_checkpoints.CKPT_PREFIX + "+") or \
                not os.path.isdir(path):
            continue
        has_meta = os.path.exists(os.path.join(path, sb_checkpoints.METAFNAME))
        if complete:
            keep = has_meta
        else:
            keep = not has_meta and not os.path.islink(path)
        if keep:
            found.append(name)
    return found


def unfinished_checkpoints(save_folder):
    """``checkpoint_folders(save_folder, complete=False)``: the folders
    that interrupted saves left.

    Example
    -------
    >>> unfinished_checkpoints(str(getfixture("tmpdir")))
    []
    """
    return checkpoint_folders(save_folder, complete=False)


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

    _writing = None  # the folder of the save in progress (main process)

    def _new_checkpoint_dirpath(self):
        self._writing = super()._new_checkpoint_dirpath()
        return self._writing

    def _custom_checkpoint_dirpath(self, name):
        self._writing = super()._custom_checkpoint_dirpath(name)
        return self._writing

    def _save_checkpoint_metafile(
        self, fpath, meta_to_include={}, end_of_epoch=True
    ):
        # Written under a temporary name; save_checkpoint renames it last.
        return super()._save_checkpoint_metafile(
            fpath.with_name(fpath.name + _PARTIAL),
            {"world_size": process_count(), **meta_to_include},
            end_of_epoch,
        )

    def save_checkpoint(self, *args, **kwargs):
        """Saves like SpeechBrain, then publishes ``CKPT.yaml`` atomically;
        every DDP process returns once it is published. Raises
        ``CheckpointSaveError`` when the main process cannot write it."""
        self._writing = None
        try:
            checkpoint = super().save_checkpoint(*args, **kwargs)
            if checkpoint is not None:  # main process
                meta = checkpoint.path / sb_checkpoints.METAFNAME
                os.replace(meta.with_name(meta.name + _PARTIAL), meta)
        except (OSError, RuntimeError) as err:
            if self._writing is None:  # not this process's folder
                raise
            raise self._failed(self._writing, err) from err
        if checkpoint is not None:
            # superseded by the checkpoint just published
            for name in unfinished_checkpoints(str(self.checkpoints_dir)):
                shutil.rmtree(self.checkpoints_dir / name, ignore_errors=True)
        ddp_barrier()
        return checkpoint

    def _failed(self, folder, err):
        """Removes the unfinished ``folder`` of a failed save; the error to
        raise.

        A save under an existing custom name (``name=``) wrote into that
        checkpoint's folder (SpeechBrain reuses it): its files may be half
        replaced, so its ``CKPT.yaml`` is withdrawn (renamed, not deleted)
        rather than left to be loaded as a complete checkpoint.
        """
        meta = folder / sb_checkpoints.METAFNAME
        if meta.exists():
            os.replace(meta, meta.with_name(meta.name + ".overwritten"))
            what = (
                f"the checkpoint of that name may be half overwritten: its "
                f"{sb_checkpoints.METAFNAME} is now "
                f"{meta.name}.overwritten, so it is not loaded"
            )
        else:
            shutil.rmtree(folder, ignore_errors=True)
            what = "the unfinished folder is removed"
        try:
            free = shutil.disk_usage(self.checkpoints_dir).free
            space = f" ({free / 2**20:.0f} MiB free on its disk)"
        except OSError:
            space = ""
        return CheckpointSaveError(
            f"could not save a checkpoint in {folder}: {first_line(err)}"
            f"{space}; {what}; the other checkpoints in "
            f"{self.checkpoints_dir} are kept"
        )
