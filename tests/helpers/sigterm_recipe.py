"""A recipe run that sends itself SIGTERM (or SIGKILL) once, at a chosen
point.

``python sigterm_recipe.py WHERE DATASET HPARAMS [ARGS...]`` runs the
recipe of ``DATASET`` (``wsj0mix``, ``wham``, ``librimix``) like its
``train.py``, and raises SIGTERM in this process (a real signal, handled
by the recipe's own handlers, as a cluster's preemption is) at ``WHERE``:

* ``step``: in the forward pass of epoch 2's second training step;
* ``validation``: in the forward pass of epoch 2's first validation batch;
* ``log@N``: inside epoch N's log line, the way CI once caught it: tqdm's
  write lock turned the exception into a ``RuntimeError`` that
  ``logging`` printed and dropped, and the run went on (exit 0);
* ``kill``: SIGKILL instead, in the forward pass of epoch 2's fifth
  training step (nothing runs on the way out).

An external ``kill`` lands at one of these points (or between them) by
chance; here each is hit on purpose. Under ``torchrun``, ``SIGTERM_RANK``
(if set) names the one rank that signals itself.
"""

import os
import signal
import sys
import traceback

import speechbrain as sb
from speechbrain.utils.train_logger import FileTrainLogger

from speechbrain_mossformer.brain import Separation
from speechbrain_mossformer.recipe import main

WHERE, DATASET = sys.argv[1], sys.argv[2]
sent = []


def send_once(signum=signal.SIGTERM):
    """``signum`` to this process, once per run."""
    rank = os.environ.get("SIGTERM_RANK")
    if rank is not None and rank != os.environ.get("RANK", "0"):
        return
    if not sent:
        sent.append(True)
        signal.raise_signal(signum)


forward = Separation.compute_forward


def compute_forward(self, batch, stage):
    epoch = self.hparams.epoch_counter.current
    if (WHERE, stage, epoch, self.step) in (
        ("step", sb.Stage.TRAIN, 2, 2),
        ("validation", sb.Stage.VALID, 2, 1),
    ):
        send_once()
    if (WHERE, stage, epoch, self.step) == ("kill", sb.Stage.TRAIN, 2, 5):
        send_once(signal.SIGKILL)
    return forward(self, batch, stage)


log_stats = FileTrainLogger.log_stats


def log_stats_swallowing_errors(self, stats_meta, *args, **kwargs):
    if WHERE == f"log@{stats_meta.get('epoch')}":
        try:
            try:
                send_once()
            finally:
                # what tqdm's lock did when the signal raised inside it
                raise RuntimeError("cannot release un-acquired lock")
        except Exception:  # what logging.Handler.handleError does
            traceback.print_exc()
    return log_stats(self, stats_meta, *args, **kwargs)


Separation.compute_forward = compute_forward
FileTrainLogger.log_stats = log_stats_swallowing_errors

if __name__ == "__main__":
    sys.argv = [sys.argv[0]] + sys.argv[3:]
    sys.exit(main(DATASET))
