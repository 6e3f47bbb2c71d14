"""The one ``Separation`` Brain that every recipe of this package trains with.

SpeechBrain's separation recipes each carry their own copy of a
``Separation(sb.Brain)`` class (WSJ0Mix, WHAMandWHAMR, LibriMix, ...), with
drift and bugs between the copies. This module is the single shared version:

* 2 or 3 speakers (any ``num_spks``), optional noise and reverberation;
* the modules are always called through ``self.modules`` so that DDP wraps
  and synchronises them (the upstream recipes call ``self.hparams.*``, so
  their DDP ranks train different models);
* speed perturbation, random shift, wave drop and random cropping as
  independent options (upstream ties the shift to speed perturbation);
* the SI-SNR loss with PIT, the ``threshold`` on easy examples, a skipped
  (and counted) step for non-finite or too large losses, decided jointly by
  all DDP ranks so that their collectives stay in step;
* gradient clipping, gradient accumulation and ``--precision``
  (fp32/bf16/fp16) through SpeechBrain's own ``optimizers_step`` and
  autocast contexts; the loss itself is always computed in fp32;
* ``ReduceLROnPlateau`` on the validation loss, best-checkpoint keeping;
* a ``test_results.csv`` with per-utterance SI-SNR, SI-SNRi, SDR and SDRi
  plus a mean row, written once (main process) under DDP, computed during
  the test pass itself (no second pass over the test set);
* Ctrl-C (and, in the recipes, SIGTERM: a cluster's preemption or
  ``torchrun`` stopping) anywhere in ``fit`` is held and takes effect at
  the next safe point: when the step (or the gradient accumulation window,
  or the epoch's training) is complete, before the next validation batch,
  or between epochs; on every DDP rank at the same point, so the
  checkpoint saved on the way out holds exactly the batches trained (none
  counted but not applied, no half-applied update). Nothing in between
  (a log line, a checkpoint being written) can swallow it;
* optional example audio.

Authors
 * speechbrain-mossformer contributors 2026
"""

import atexit
import contextlib
import csv
import functools
import logging
import math
import os
import signal
import threading
import time
import weakref

import speechbrain as sb
import torch
import yaml
from speechbrain.dataio import audio_io
from speechbrain.nnet.schedulers import ReduceLROnPlateau, update_learning_rate
from speechbrain.utils.distributed import (
    if_main_process,
    is_distributed_initialized,
)

# Terminated and raise_terminated are the recipes' too (recipe.py
# imports them from here)
from speechbrain_mossformer.errors import Terminated, raise_terminated
from speechbrain_mossformer.lobes.models.mossformer import (
    separate_with_modules,
)

logger = logging.getLogger(__name__)

RESULT_FIELDS = ["snt_id", "sdr", "sdr_i", "si-snr", "si-snr_i"]


class HeldInterrupt:
    """Holds Ctrl-C (SIGINT) and SIGTERM while training.

    While held (``hold()`` ... ``release()``, or ``with held():``), the
    signal is recorded in ``pending`` instead of raising
    ``KeyboardInterrupt`` (``Terminated`` for SIGTERM) in the middle of a
    forward pass, a backward pass, an optimizer step or a collective; the
    Brain raises ``stop()`` at a point where every DDP rank agrees and the
    state is whole (after an optimizer step, at the end of the training
    stage). A second signal at least ``insist_after`` seconds after the
    first is raised at once: the way out of a step that does not end.
    A signal that raised where it arrived could also be lost: inside a log
    line, tqdm's lock turned the exception into a ``RuntimeError`` that
    ``logging`` printed and dropped, and training went on.
    Nothing is held outside the main thread, and a signal is only held
    while its handler is the one that would raise: Python's default for
    SIGINT, ``raise_terminated`` for SIGTERM.

    Arguments
    ---------
    insist_after : float
        Seconds after which a second signal stops at once (a quick double
        press counts once).

    Example
    -------
    >>> # Python's Ctrl-C handler (not SIG_IGN, as in a background job)
    >>> previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    >>> interrupt = HeldInterrupt()
    >>> with interrupt.held():
    ...     signal.raise_signal(signal.SIGINT)  # held, not raised
    ...     print("the step goes on")
    the step goes on
    >>> interrupt.pending, type(interrupt.stop()).__name__
    (True, 'KeyboardInterrupt')
    >>> _ = signal.signal(signal.SIGINT, previous)
    """

    #: the signals held, each with the handler it replaces
    RAISING = {
        signal.SIGINT: signal.default_int_handler,
        signal.SIGTERM: raise_terminated,
    }

    def __init__(self, insist_after=1.0):
        self.insist_after = insist_after
        #: whether a second signal may stop at once (see ``completing``)
        self.insisting = True
        self._previous = {}
        self.reset()

    def reset(self):
        """Forgets any signal received."""
        self.pending = False
        self.agreed = False
        self.signum = None
        self._first = None

    def stop(self):
        """The exception to stop with: ``Terminated`` after a SIGTERM."""
        if self.signum == signal.SIGTERM:
            return Terminated()
        return KeyboardInterrupt()

    def _handler(self, signum, frame):
        now = time.monotonic()
        if (
            self.insisting
            and self._first is not None
            and now - self._first >= self.insist_after
        ):
            self.signum = signum
            self.release()
            raise self.stop()
        if self._first is None:
            self._first = now
            self.signum = signum
            logger.warning(
                f"{signal.Signals(signum).name}: stopping after this "
                "training step (or validation batch, or epoch), with a "
                "checkpoint (Ctrl-C again to stop at once)"
            )
        self.pending = True

    def hold(self):
        """Starts holding the signals (main thread, default handlers)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, raising in self.RAISING.items():
            if signum not in self._previous and (
                signal.getsignal(signum) is raising
            ):
                self._previous[signum] = signal.signal(signum, self._handler)

    def release(self):
        """Puts the handlers back; a pending signal stays pending."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    @contextlib.contextmanager
    def completing(self):
        """A block that a second signal does not cut short either (it is
        held like the first): e.g. the learning-rate schedule and the
        checkpoint at the end of an epoch, which a resumed run would
        otherwise see half done (the scheduler stepped twice).

        Example
        -------
        >>> interrupt = HeldInterrupt(insist_after=0.0)
        >>> previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        >>> with interrupt.held(), interrupt.completing():
        ...     signal.raise_signal(signal.SIGINT)
        ...     signal.raise_signal(signal.SIGINT)  # insisting: held too
        ...     print("completed")
        completed
        >>> interrupt.pending
        True
        >>> _ = signal.signal(signal.SIGINT, previous)
        """
        insisting, self.insisting = self.insisting, False
        try:
            yield self
        finally:
            self.insisting = insisting

    @contextlib.contextmanager
    def held(self):
        """``hold()`` for the ``with`` block, then ``release()``."""
        self.hold()
        try:
            yield self
        finally:
            self.release()


def _ignore_stop_signals(worker_init_fn, worker_id):
    """DataLoader worker start: Ctrl-C and SIGTERM are the main process's.

    A terminal's Ctrl-C reaches the whole process group and a cluster's
    SIGTERM every process of the job; a worker that dies of it makes the
    main process fail ("DataLoader worker exited unexpectedly") while it
    finishes the step it is holding the signal for, and no checkpoint is
    saved. The main process stops the workers when it stops.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if worker_init_fn is not None:
        worker_init_fn(worker_id)


#: Every DataLoader with workers made by a ``Separation``: their workers are
#: stopped at exit too (see ``stop_loader_workers``).
_LOADERS_WITH_WORKERS = weakref.WeakSet()


def stop_loader_workers(loaders):
    """Stops the workers of ``loaders`` that still have some.

    A training loader keeps its iterator (SpeechBrain saves its position in
    checkpoints; ``persistent_workers`` keeps one too), so after a stop in
    the middle of an epoch its workers would live until the interpreter
    exits, where ``multiprocessing`` stops its children with SIGTERM, which
    these workers ignore (``_ignore_stop_signals``), and waits for them
    forever. Stopped here, they get the DataLoader's own end-of-work
    message. The position (``_num_yielded``) stays for the checkpoint.

    Arguments
    ---------
    loaders : iterable of torch.utils.data.DataLoader
        The loaders (a loader without workers or iterator is left alone).

    Example
    -------
    >>> stop_loader_workers([torch.utils.data.DataLoader(range(4))])
    """
    for loader in list(loaders):
        for name in ("_speechbrain_iterator", "_iterator"):
            iterator = getattr(loader, name, None)
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()


# Registered after multiprocessing's own exit handler (torch imports it
# first), so it runs before it.
atexit.register(stop_loader_workers, _LOADERS_WITH_WORKERS)


@sb.utils.checkpoints.register_checkpoint_hooks
class Separation(sb.Brain):
    """Trains and evaluates an encoder / mask net / decoder separator.

    Expected ``modules``: ``encoder``, ``masknet``, ``decoder``. Expected
    hparams (all have defaults except the first three): ``num_spks``,
    ``loss`` (e.g. ``get_si_snr_with_pitwrapper``), ``sample_rate``,
    ``threshold_byloss`` (True), ``threshold`` (-30), ``loss_upper_lim``
    (999999), ``use_speedperturb``, ``speed_perturb``, ``use_rand_shift``,
    ``min_shift``, ``max_shift``, ``use_wavedrop``, ``drop_chunk``,
    ``drop_freq``, ``use_noise``, ``use_reverb``, ``reverb``,
    ``limit_training_signal_len``, ``training_signal_len``,
    ``lr_scheduler``, ``train_logger``, ``save_audio``,
    ``n_audio_to_save``, ``output_folder``.

    Example
    -------
    >>> from speechbrain_mossformer.lobes.models.mossformer import (
    ...     MossFormerWrapper)
    >>> from speechbrain.nnet.losses import get_si_snr_with_pitwrapper
    >>> model = MossFormerWrapper(encoder_out_nchannels=16, num_blocks=1,
    ...                           group_size=4, query_key_dim=8)
    >>> brain = Separation(
    ...     modules={"encoder": model.encoder, "masknet": model.masknet,
    ...              "decoder": model.decoder},
    ...     opt_class=lambda p: torch.optim.Adam(p, 1e-3),
    ...     hparams={"num_spks": 2, "loss": get_si_snr_with_pitwrapper},
    ...     run_opts={"device": "cpu"})
    >>> from speechbrain.dataio.batch import PaddedBatch
    >>> batch = PaddedBatch([{"id": "a", "mix_sig": torch.randn(160),
    ...     "s1_sig": torch.randn(160), "s2_sig": torch.randn(160)}])
    >>> est, targets = brain.compute_forward(batch, sb.Stage.VALID)
    >>> est.shape, targets.shape
    (torch.Size([1, 160, 2]), torch.Size([1, 160, 2]))
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.skipped_batches = 0
        self.window_backwards = 0
        self.stage = None
        self.test_rows = []
        self.nonfinite_batches = 0
        self.evaluation_failed = False
        self.audio_saved = 0
        self.dynamic_mixing_dataset = None
        self.interrupt = HeldInterrupt()
        # (batches, average loss) of the epoch's finished training stage
        self.finished_training = None
        # (batches, average loss) after the epoch's last whole training
        # step, i.e. its last optimizer step (see recipe.save_progress)
        self.trained_through = None
        # inside the optimizer's update of the weights
        self.updating_weights = False
        # whether everything trained is in a checkpoint (see fit)
        self.all_saved = False
        # inside stopping_at_safe_points (fit)
        self._fitting = False
        # the epoch counter of the fit in progress
        self._epoch_counter = None
        # DataLoaders with workers made by make_dataloader
        self._loaders = weakref.WeakSet()

    def fit(self, *args, **kwargs):
        """SpeechBrain's ``fit``, in ``stopping_at_safe_points``.

        The DataLoader workers are stopped (``stop_loader_workers``)
        whatever ends the run.
        """
        self._epoch_counter = args[0] if args else kwargs.get("epoch_counter")
        try:
            with self.stopping_at_safe_points():
                result = super().fit(*args, **kwargs)
                # held after the last epoch's checkpoint: training is
                # complete and saved; every rank stops here, before the
                # test stage, as asked
                self._stop_if_signalled()
            return result
        finally:
            stop_loader_workers(self._loaders)

    @contextlib.contextmanager
    def stopping_at_safe_points(self):
        """Holds Ctrl-C and SIGTERM for the block (``fit``'s epochs).

        A held signal stops the run at the next safe point, on every DDP
        rank at the same one: after a training step (``fit_batch``), at
        the end of the epoch's training or before a validation batch
        (``on_stage_end``, ``evaluate_batch``), at the start of the next
        epoch (``on_stage_start``), or once the last epoch is saved
        (``fit``). ``all_saved`` tells ``recipe.save_progress`` whether
        everything trained is already in a checkpoint (the run stopped
        between epochs). On the way out the handlers are put back and
        nothing stays pending (a later ``evaluate`` or stage run by hand
        starts afresh); a signal that came after the last safe point is
        raised here.

        Example
        -------
        >>> brain = Separation(modules={}, hparams={"num_spks": 2})
        >>> previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        >>> try:
        ...     with brain.stopping_at_safe_points():
        ...         signal.raise_signal(signal.SIGINT)  # held
        ...         print("not stopped yet")
        ... except KeyboardInterrupt:
        ...     print("stopped on the way out")
        not stopped yet
        stopped on the way out
        >>> brain.interrupt.pending
        False
        >>> _ = signal.signal(signal.SIGINT, previous)
        """
        self.interrupt.reset()
        self.interrupt.hold()
        self._fitting = True
        # nothing trained yet in this run: the checkpoint it resumed from
        # (or none) is all there is
        self.all_saved = True
        late = None
        try:
            yield self
        finally:
            self._fitting = False
            self.interrupt.release()
            if self.interrupt.pending:
                late = self.interrupt.stop()
            self.interrupt.reset()
        if late is not None:  # (not when an exception is on its way out)
            raise late

    def _stop_if_signalled(self, on_stop=None):
        """Raises the held signal (on every DDP rank, if any has one),
        after calling ``on_stop`` if given."""
        (stop,) = self._on_any_rank(self.interrupt.pending)
        if stop:
            if on_stop is not None:
                on_stop()
            self.interrupt.release()
            raise self.interrupt.stop()

    def evaluate(self, *args, **kwargs):
        """SpeechBrain's ``evaluate``; the DataLoader workers are stopped
        whatever ends it. Its loss is inf when a batch's was not finite, as
        logged (SpeechBrain returns the mean of the other batches)."""
        try:
            loss = super().evaluate(*args, **kwargs)
        finally:
            stop_loader_workers(self._loaders)
        return float("inf") if self.evaluation_failed else loss

    def make_dataloader(
        self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs
    ):
        """SpeechBrain's, with workers that leave Ctrl-C and SIGTERM to the
        main process (see ``_ignore_stop_signals``)."""
        if not loader_kwargs.get("num_workers", 0):
            return super().make_dataloader(
                dataset, stage, ckpt_prefix=ckpt_prefix, **loader_kwargs
            )
        loader_kwargs["worker_init_fn"] = functools.partial(
            _ignore_stop_signals, loader_kwargs.get("worker_init_fn")
        )
        loader = super().make_dataloader(
            dataset, stage, ckpt_prefix=ckpt_prefix, **loader_kwargs
        )
        self._loaders.add(loader)
        _LOADERS_WITH_WORKERS.add(loader)
        return loader

    # ------------------------------------------------------------------
    # Options with defaults, so a minimal yaml works.
    def _hp(self, name, default=None):
        """Returns ``hparams.<name>`` or ``default``."""
        return getattr(self.hparams, name, default)

    @property
    def num_spks(self):
        """Number of sources to separate."""
        return int(self.hparams.num_spks)

    # ------------------------------------------------------------------
    # Forward
    def compute_forward(self, batch, stage):
        """Separates ``batch.mix_sig``; augments the batch in training.

        Arguments
        ---------
        batch : PaddedBatch
            With ``mix_sig``, ``s1_sig`` ... ``s<num_spks>_sig`` and
            optionally ``noise_sig``.
        stage : sb.Stage
            TRAIN applies the configured augmentations.

        Returns
        -------
        tuple
            Estimates [B, T, S] and the targets [B, T, S] they are scored
            against (augmented like the mixture in training).
        """
        batch = batch.to(self.device)
        # [B, T], relative lengths [B]
        mix, mix_lens = batch.mix_sig
        # [B, T, S]
        targets = self.stack_targets(batch)
        if stage == sb.Stage.TRAIN:
            noise = self.batch_noise(batch)
            with torch.no_grad():
                mix, targets = self.augment(mix, mix_lens, targets, noise)
        # [B, T, S]
        est = separate_with_modules(
            self.modules.encoder,
            self.modules.masknet,
            self.modules.decoder,
            mix,
            self.num_spks,
        )
        return est, targets

    def stack_targets(self, batch):
        """Returns the reference sources of a batch as [B, T, S]."""
        sources = []
        for k in range(1, self.num_spks + 1):
            signal = getattr(batch, f"s{k}_sig", None)
            if signal is None:
                raise KeyError(
                    f"the batch has no 's{k}_sig' but num_spks is "
                    f"{self.num_spks}: check the data CSV has an s{k}_wav "
                    "column"
                )
            sources.append(signal.data)
        return torch.stack(sources, dim=-1)

    def batch_noise(self, batch):
        """Returns the noise [B, T] of a batch when noise is used."""
        if not self._hp("use_noise", False):
            return None
        noise = getattr(batch, "noise_sig", None)
        if noise is None:
            raise KeyError(
                "use_noise is True but the batch has no 'noise_sig': check "
                "the data CSV has a noise_wav column"
            )
        return noise.data

    def augment(self, mix, mix_lens, targets, noise=None):
        """Training-time augmentation of a batch (no gradients).

        When a source-level augmentation is on (speed perturbation,
        random shift), the mixture is rebuilt from the augmented sources
        (plus noise); with ``use_reverb`` their reverberated copies are
        summed, and the targets stay anechoic. ``use_reverb`` alone rebuilds
        only anechoic mixtures: a corpus' own reverberant mixtures
        (``whamr``) and dynamic mixtures (reverberant already when
        ``use_reverb`` is on) are trained on as they are.

        Arguments
        ---------
        mix : torch.Tensor
            Mixtures [B, T].
        mix_lens : torch.Tensor
            Relative lengths [B].
        targets : torch.Tensor
            Sources [B, T, S].
        noise : torch.Tensor, optional
            Noise [B, T'] added to rebuilt mixtures.

        Returns
        -------
        tuple
            Mixture [B, T''] and targets [B, T'', S].
        """
        rebuild = False
        if self._hp("use_speedperturb", False):
            targets = self.speed_perturb_sources(targets)
            rebuild = True
        if self._hp("use_rand_shift", False):
            targets = self.random_shift_sources(targets)
            rebuild = True
        if self._hp("use_reverb", False) and (
            rebuild or not self._reverberant_mixtures()
        ):
            # [B, T, S]: what the microphones hear; targets stay anechoic
            heard = torch.stack(
                [
                    self.hparams.reverb(targets[..., k])
                    for k in range(self.num_spks)
                ],
                dim=-1,
            )
            rebuild = True
        else:
            heard = targets
        if rebuild:
            # [B, T]
            mix = heard.sum(-1)
            if noise is not None:
                length = min(mix.shape[1], noise.shape[1])
                mix = mix[:, :length] + noise[:, :length]
                targets = targets[:, :length]
        if self._hp("use_wavedrop", False):
            mix = self.hparams.drop_chunk(mix, mix_lens)
            mix = self.hparams.drop_freq(mix)
        if self._hp("limit_training_signal_len", False):
            mix, targets = self.cut_signals(mix, targets)
        return mix, targets

    def _reverberant_mixtures(self):
        """True when the training mixtures hold reverberation already:
        WHAMR!'s (``whamr``), or dynamic mixtures (the recipe gives
        dynamic mixing the RIRs when ``use_reverb`` is on)."""
        return bool(self._hp("whamr", False)) or bool(
            self._hp("dynamic_mixing", False)
        )

    def speed_perturb_sources(self, targets):
        """Speed-perturbs each source on its own (random speed each).

        Sources come back truncated to the shortest one.

        Arguments
        ---------
        targets : torch.Tensor
            Sources [B, T, S].

        Returns
        -------
        torch.Tensor
            Perturbed sources [B, T', S].
        """
        perturbed = [
            self.hparams.speed_perturb(targets[..., k])
            for k in range(self.num_spks)
        ]
        length = min(p.shape[1] for p in perturbed)
        return torch.stack([p[:, :length] for p in perturbed], dim=-1)

    def random_shift_sources(self, targets):
        """Rolls each source by a random shift in [min_shift, max_shift]."""
        low = int(self._hp("min_shift", -8000))
        high = int(self._hp("max_shift", 8000))
        shifted = []
        for k in range(self.num_spks):
            shift = int(torch.randint(low, high + 1, (1,)))
            shifted.append(torch.roll(targets[..., k], shift, dims=1))
        return torch.stack(shifted, dim=-1)

    def cut_signals(self, mix, targets):
        """One random window of ``training_signal_len`` samples."""
        length = int(self.hparams.training_signal_len)
        if mix.shape[1] <= length:
            return mix, targets
        start = int(torch.randint(0, mix.shape[1] - length + 1, (1,)))
        return (
            mix[:, start : start + length],
            targets[:, start : start + length],
        )

    # ------------------------------------------------------------------
    # Objectives and the training step
    def compute_objectives(self, predictions, targets):
        """Per-utterance loss [B]: negative SI-SNR with PIT, in fp32."""
        if predictions.shape != targets.shape:
            # SpeechBrain's cal_si_snr only has a bare ``assert`` for this
            raise ValueError(
                f"estimates {tuple(predictions.shape)} and targets "
                f"{tuple(targets.shape)} must have the same [B, T, S] shape "
                "(sources as long as the mixture, num_spks sources)"
            )
        return self.hparams.loss(targets.float(), predictions.float())

    def fit_batch(self, batch):
        """One training step with thresholding and non-finite skipping.

        Items whose loss is already below ``threshold`` (e.g. -30, i.e.
        SI-SNR above 30 dB) are left out of the mean. A batch whose loss is
        non-finite (for any of its items), empty after thresholding or above
        ``loss_upper_lim`` is skipped and counted; under DDP all ranks skip
        together. A skipped batch adds nothing to the gradients and to the
        epoch's average loss; with gradient accumulation the gradients
        already accumulated are kept, and each optimizer step uses the mean
        over the micro-batches of its window that were not skipped.

        A Ctrl-C (or SIGTERM) held during training (``HeldInterrupt``) is
        raised as ``KeyboardInterrupt`` (``Terminated``) here, once the
        optimizer has stepped, on every DDP rank at the same step: the
        batch is then trained and counted, and its loss is in the epoch's
        average.
        """
        loss, should_step = self._train_step(batch)
        stop = self.interrupt.agreed if is_distributed_initialized() else (
            self.interrupt.pending)
        if should_step and stop:
            self.avg_train_loss = self.update_average(
                loss, self.avg_train_loss
            )
            self.interrupt.release()
            raise self.interrupt.stop()
        return loss

    def _train_step(self, batch):
        """``fit_batch``'s step; returns the loss and ``should_step``."""
        should_step = (self.step % self.grad_accumulation_factor) == 0
        self.on_fit_batch_start(batch, should_step)
        with self.no_sync(not should_step):
            with self.training_ctx:
                predictions, targets = self.compute_forward(
                    batch, sb.Stage.TRAIN
                )
            # [B]
            loss = self.compute_objectives(predictions, targets)
            loss = self.select_loss(loss)
            if self._skip_everywhere(loss):
                self.skipped_batches += 1
                logger.info(
                    "non-finite, empty or too large loss: skipping this "
                    f"batch ({self.skipped_batches} skipped this epoch)"
                )
                if should_step:
                    self.step_accumulated(synced=False)
                # not a number: update_average leaves it out
                return torch.tensor(float("nan")), should_step
            scaled = self.scaler.scale(loss / self.grad_accumulation_factor)
            scaled.backward()
            self.window_backwards += 1
        if should_step:
            self.step_accumulated(synced=True)
        self.on_fit_batch_end(batch, (predictions, targets), loss, should_step)
        return loss.detach().cpu(), should_step

    def step_accumulated(self, synced):
        """Optimizer step at the end of an accumulation window.

        ``synced``: the window's last backward pass ran (so DDP has
        averaged the gradients across ranks).

        The gradients are rescaled to the mean over the window's
        micro-batches that were not skipped. A window whose micro-batches
        were all skipped takes no step (Adam would still move the weights
        with zero gradients). When the window's last micro-batch was
        skipped under DDP, no backward pass synchronised the ranks'
        gradients, so they are averaged here.
        """
        done, factor = self.window_backwards, self.grad_accumulation_factor
        self.window_backwards = 0
        if done == 0:
            self.zero_grad(set_to_none=True)
            return
        params = [p for p in self.modules.parameters() if p.requires_grad]
        if not synced and is_distributed_initialized():
            world = torch.distributed.get_world_size()
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                torch.distributed.all_reduce(p.grad)
                p.grad.div_(world)
        if done < factor:
            for p in params:
                if p.grad is not None:
                    p.grad.mul_(factor / done)
        # (left True if a second Ctrl-C stops the update half way)
        self.updating_weights = True
        self.optimizers_step()
        self.updating_weights = False

    def zero_grad(self, set_to_none=False):
        """SpeechBrain's, after applying an unfinished accumulation window.

        SpeechBrain flushes the gradients at the end of each epoch's
        training: with gradient accumulation, the micro-batches of the
        epoch's last, incomplete window (trained on, and counted in the
        epoch's loss) were thrown away. They now make one more optimizer
        step, the mean over the window's micro-batches, as a window with
        skipped micro-batches does.
        """
        if self.stage == sb.Stage.TRAIN and self.window_backwards > 0:
            self.step_accumulated(synced=False)
            self.trained_through = (self.step, self.avg_train_loss)
        super().zero_grad(set_to_none=set_to_none)

    def update_average(self, loss, avg_loss):
        """Running mean of the loss over the batches with a finite one.

        SpeechBrain's version leaves non-finite losses out but divides by
        every step, so skipped batches pulled the reported loss towards 0.
        In training the batches left out are the skipped ones; in
        validation and test they are counted (``nonfinite_batches``), and
        the stage's loss is then inf, the worst (``on_stage_end``).
        """
        if self.stage != sb.Stage.TRAIN:
            if not bool(torch.isfinite(loss)):
                self.nonfinite_batches += 1
                return avg_loss
            counted = self.step - self.nonfinite_batches
            return avg_loss + (float(loss) - avg_loss) / counted
        counted = self.step - self.skipped_batches
        if counted > 0 and torch.isfinite(loss):
            avg_loss = avg_loss + (float(loss) - avg_loss) / counted
        if self.step % self.grad_accumulation_factor == 0:
            # (after the step) an accumulation window's last micro-batch:
            # the optimizer has stepped, everything so far is trained
            self.trained_through = (self.step, avg_loss)
        return avg_loss

    def select_loss(self, loss):
        """Mean of the per-utterance losses above ``threshold``.

        Returns ``None`` when every item is below the threshold. A batch
        with a non-finite item gives a non-finite mean (and so is skipped
        whole): thresholding would drop a NaN item (``nan > threshold`` is
        False), but its NaN gradients would still reach every weight
        through the batch's shared forward pass.
        """
        if not bool(torch.isfinite(loss).all()):
            return loss.mean()
        if self._hp("threshold_byloss", True):
            loss = loss[loss > float(self._hp("threshold", -30))]
            if loss.numel() == 0:
                return None
        return loss.mean()

    def _skip_everywhere(self, loss):
        """Whether this step is skipped; agreed by all DDP ranks.

        The same collective tells every rank whether any rank has a held
        Ctrl-C (``interrupt.agreed``), so that they all stop after the same
        step.
        """
        upper = float(self._hp("loss_upper_lim", 999999))
        skip = loss is None or not bool(
            torch.isfinite(loss) and loss < upper
        )
        skip, self.interrupt.agreed = self._on_any_rank(
            skip, self.interrupt.pending
        )
        return skip

    def _on_any_rank(self, *flags):
        """Each flag, true where it is true on any DDP rank (one collective;
        without DDP the flags as given)."""
        if not is_distributed_initialized():
            return flags
        reduced = torch.tensor([float(f) for f in flags], device=self.device)
        torch.distributed.all_reduce(
            reduced, op=torch.distributed.ReduceOp.MAX
        )
        return tuple(bool(v > 0) for v in reduced.tolist())

    @sb.utils.checkpoints.mark_as_saver
    def _save(self, path):
        """SpeechBrain's brain state, plus the epoch's skipped batches (the
        average loss of a resumed epoch leaves them out too)."""
        super()._save(path)
        with open(path, encoding="utf-8") as f:
            state = yaml.safe_load(f)
        state["skipped_batches"] = self.skipped_batches
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(state, f)

    @sb.utils.checkpoints.mark_as_loader
    def _recover(self, path, end_of_epoch):
        super()._recover(path, end_of_epoch)
        with open(path, encoding="utf-8") as f:
            state = yaml.safe_load(f)
        self.skipped_batches = int(state.get("skipped_batches", 0))

    # ------------------------------------------------------------------
    # Evaluation
    @torch.no_grad()
    def evaluate_batch(self, batch, stage):
        """Loss of one batch; on TEST also per-utterance metrics.

        In ``fit``'s validation, a Ctrl-C or SIGTERM held since the epoch's
        training ended stops here, before the batch (every DDP rank
        validates the whole set, so all of them get here together).
        """
        if stage == sb.Stage.VALID and self._fitting:
            self._stop_if_signalled()
        with self.evaluation_ctx:
            predictions, targets = self.compute_forward(batch, stage)
        loss = self.compute_objectives(predictions, targets)
        if stage == sb.Stage.TEST:
            self.record_test_metrics(batch, predictions.float(), targets)
        return loss.mean().detach()

    def record_test_metrics(self, batch, predictions, targets):
        """Adds one ``test_results.csv`` row per utterance of the batch."""
        from speechbrain_mossformer.metrics import separation_metrics

        mix, mix_lens = batch.mix_sig
        total = mix.shape[1]
        for i, snt_id in enumerate(batch.id):
            length = int(round(float(mix_lens[i]) * total))
            if not bool(torch.isfinite(predictions[i, :length]).all()):
                # The model failed on this mixture: its row (and so the
                # mean) is NaN, as in SpeechBrain's recipes; leaving it out
                # would report the mean of the utterances that worked.
                logger.warning(
                    f"{snt_id}: the estimates contain NaN or Inf values; "
                    "its metrics (and their mean) are NaN"
                )
                self.test_rows.append(
                    dict(
                        snt_id=snt_id,
                        **{key: float("nan") for key in RESULT_FIELDS[1:]},
                    )
                )
                continue
            try:
                metrics = separation_metrics(
                    mix[i, :length].cpu(),
                    targets[i, :length].t().cpu(),
                    predictions[i, :length].t().cpu(),
                )
            except ValueError as err:
                # e.g. a silent reference: SI-SNR is undefined. Its row is
                # written with empty values, so that test_results.csv
                # still lists every test utterance
                logger.warning(f"{snt_id}: not scored ({err})")
                self.test_rows.append(
                    dict(snt_id=snt_id,
                         **{key: None for key in RESULT_FIELDS[1:]})
                )
                continue
            self.test_rows.append(dict(snt_id=snt_id, **metrics))
            if self._hp("save_audio", False) and self.audio_saved < int(
                self._hp("n_audio_to_save", 10)
            ):
                self.save_audio(
                    snt_id,
                    mix[i, :length],
                    targets[i, :length],
                    predictions[i, :length],
                )
                self.audio_saved += 1

    def save_audio(self, snt_id, mixture, targets, predictions):
        """Writes the mixture, references and estimates of one utterance.

        Files go to ``<output_folder>/audio_results/`` (main process only),
        each peak-normalised to 0.9. ``<id>_source<k>hat.wav`` is the
        estimate that SI-SNR PIT pairs with ``<id>_source<k>.wav`` (the
        model's own output order is arbitrary).
        """
        if not if_main_process():
            return
        from speechbrain_mossformer.metrics import best_permutation_si_snr

        # [S]: estimate perm[k] goes with reference k
        _, perm = best_permutation_si_snr(
            targets.t().cpu(), predictions.t().cpu()
        )
        # [T, S]
        predictions = predictions[:, [int(k) for k in perm]]
        folder = os.path.join(self.hparams.output_folder, "audio_results")
        os.makedirs(folder, exist_ok=True)
        rate = int(self.hparams.sample_rate)

        def write(name, signal):
            signal = signal.detach().cpu().float()
            signal = 0.9 * signal / signal.abs().max().clamp(min=1e-8)
            audio_io.save(os.path.join(folder, name), signal[None], rate)

        write(f"{snt_id}_mix.wav", mixture)
        for k in range(self.num_spks):
            write(f"{snt_id}_source{k + 1}.wav", targets[:, k])
            write(f"{snt_id}_source{k + 1}hat.wav", predictions[:, k])

    def write_test_results(self):
        """Writes ``test_results.csv`` (main process) and returns the means.

        Utterances that could not be scored (a silent reference) have a
        row with empty values and are left out of the means, with a
        warning; NaN and infinite metrics are kept in them.
        """
        rows = self.test_rows
        scored = [r for r in rows if r[RESULT_FIELDS[1]] is not None]
        if len(scored) < len(rows):
            logger.warning(
                f"{len(rows) - len(scored)} test utterance(s) could not be "
                "scored (see the warnings above; their rows in "
                "test_results.csv are empty): the means are over the other "
                f"{len(scored)}"
            )
        failed = sum(
            1 for r in scored if any(r[k] != r[k] for k in RESULT_FIELDS[1:])
        )
        if failed:
            logger.warning(
                f"{failed} of {len(scored)} test utterances have non-finite "
                "estimates: the means in test_results.csv are NaN"
            )
        silent = sum(
            1 for r in scored
            if any(math.isinf(float(r[k])) for k in RESULT_FIELDS[1:])
        )
        if silent:
            # an all-zero estimate: its BSS-Eval SDR is -inf by definition
            logger.warning(
                f"{silent} of {len(scored)} test utterances have an infinite "
                "metric (an all-zero estimate has SDR -inf): the means in "
                "test_results.csv are infinite"
            )
        if not rows:
            return {}
        # nothing scored: an empty mean row, and no figures for the log
        means = {
            key: sum(float(r[key]) for r in scored) / len(scored)
            if scored else None
            for key in RESULT_FIELDS[1:]
        }
        if if_main_process():
            path = os.path.join(self.hparams.output_folder, "test_results.csv")
            with open(path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=RESULT_FIELDS)
                writer.writeheader()
                for row in rows:  # empty values: not scored
                    writer.writerow({k: row[k] for k in RESULT_FIELDS})
                writer.writerow(dict(snt_id="avg", **means))
            logger.info(f"wrote {path}")
        return means if scored else {}

    # ------------------------------------------------------------------
    # Stage hooks
    def on_stage_start(self, stage, epoch=None):
        """Starts a stage: new dynamic mixes per epoch, fresh counters."""
        self.stage = stage
        if stage == sb.Stage.TRAIN:
            if self._fitting:
                # a signal held since the last epoch's training ended (its
                # validation's log line, its checkpoint) stops here, before
                # anything is trained
                self._stop_if_signalled(self._back_to_the_end_of_training)
            else:  # a stage run on its own: a fresh start
                self.interrupt.reset()
            self.all_saved = False
            self.window_backwards = 0
            self.finished_training = None
            # the epoch so far: nothing, or what a resumed run loaded
            self.trained_through = (self.step, self.avg_train_loss)
            self.updating_weights = False
            # Ctrl-C and SIGTERM wait for a whole step (fit_batch) or the
            # end of the stage, also between steps (data loading, periodic
            # checkpoints): every rank then stops at the same point. (fit
            # holds them already; this is for a stage run on its own,
            # released at its end.)
            self.interrupt.hold()
            if self.step == 0:  # not when resuming inside the epoch
                self.skipped_batches = 0
            if self.dynamic_mixing_dataset is not None and epoch is not None:
                self.dynamic_mixing_dataset.set_epoch(epoch)
        else:
            self.nonfinite_batches = 0
            self.evaluation_failed = False
        if stage == sb.Stage.TEST:
            self.test_rows = []
            self.audio_saved = 0

    def _end_of_epoch(self, stage_stats, stage_loss, epoch):
        """After validation: the learning-rate schedule, the epoch's log
        line and its checkpoint (then ``all_saved``)."""
        current_lr = self.optimizer.param_groups[0]["lr"]
        scheduler = self._hp("lr_scheduler")
        if isinstance(scheduler, ReduceLROnPlateau):
            current_lr, next_lr = scheduler(
                [self.optimizer], epoch, stage_loss
            )
            update_learning_rate(self.optimizer, next_lr)
        if self._hp("train_logger") is not None:
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": current_lr},
                train_stats=getattr(self, "train_stats", None),
                valid_stats=stage_stats,
            )
        if self.checkpointer is not None:
            self.checkpointer.save_and_keep_only(
                meta={"si-snr": stage_loss}, min_keys=["si-snr"]
            )
            self.all_saved = True

    def _save_intra_epoch_ckpt(self):
        """SpeechBrain's periodic checkpoint, which a second Ctrl-C does
        not cut short (a half-written checkpoint folder)."""
        with self.interrupt.completing():
            super()._save_intra_epoch_ckpt()

    def _back_to_the_end_of_training(self):
        """Stopping as an epoch starts with the last one's training not
        saved (no validation set, so no checkpoint at its end): the epoch
        counter (and the training loader's position) have moved on, so the
        counter goes back one, and ``recipe.save_progress`` saves the state
        as at the end of the last epoch's training (``finished_training``).
        The resumed run then finishes that epoch (no batch left) and trains
        this one whole; saved with the counter as it was, it skipped it."""
        if (
            not self.all_saved
            and self.finished_training is not None
            and hasattr(self._epoch_counter, "current")
        ):
            self._epoch_counter.current -= 1

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs, schedules the learning rate, checkpoints, writes results.

        ``loss`` is the negative SI-SNR in dB (what is minimised); the
        checkpoints keep it under the key ``si-snr`` as SpeechBrain's
        separation recipes do, so ``min_key="si-snr"`` picks the best.
        Test statistics add the positive SI-SNR, SI-SNRi, SDR and SDRi.
        """
        # every DDP rank validates the whole set; agreed all the same, so
        # that the ranks' schedules and checkpoints cannot part
        if stage != sb.Stage.TRAIN:
            (self.evaluation_failed,) = self._on_any_rank(
                self.nonfinite_batches > 0
            )
        if stage != sb.Stage.TRAIN and self.evaluation_failed:
            # the mean of the other batches would flatter a model that
            # fails on some mixtures; +inf (the worst loss) keeps such an
            # epoch from being the best checkpoint or an improvement for
            # the learning-rate schedule
            logger.warning(
                f"{stage.name.lower()}: {self.nonfinite_batches} batch(es) "
                "gave NaN or infinite losses (the model diverged or "
                "failed on some mixtures): the stage's loss is counted as "
                "inf, the worst"
            )
            stage_loss = float("inf")
        stage_stats = {"loss": stage_loss}
        if stage == sb.Stage.TRAIN:
            if self.step <= self.skipped_batches:
                # every batch was skipped: there is no training loss
                stage_stats["loss"] = float("nan")
            stage_stats["skipped_batches"] = self.skipped_batches
            self.train_stats = stage_stats
            self.finished_training = (self.step, stage_loss)
            # a signal held after the last step (in the epoch's last,
            # incomplete accumulation window, or under DDP after the last
            # step's all-reduce) stops here, the epoch's training complete
            self._stop_if_signalled()
            if not self._fitting:
                self.interrupt.release()  # a stage run on its own
        elif stage == sb.Stage.VALID:
            # the schedule and the checkpoint go together: a second signal
            # here is held too (the resumed run would step the scheduler
            # again); the run stops before the next epoch
            with self.interrupt.completing():
                self._end_of_epoch(stage_stats, stage_loss, epoch)
        elif stage == sb.Stage.TEST:
            stage_stats.update(self.write_test_results())
            if self._hp("train_logger") is not None:
                counter = self._hp("epoch_counter")
                self.hparams.train_logger.log_stats(
                    stats_meta={
                        "Epoch loaded": counter.current if counter else None
                    },
                    test_stats=stage_stats,
                )
