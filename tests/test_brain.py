"""The shared ``Separation`` Brain: skipped batches, gradient accumulation,
the reported training loss, its checkpointed state and saved audio."""

import logging
import math
import os
import signal

import pytest
import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.nnet.losses import get_si_snr_with_pitwrapper

from speechbrain_mossformer.brain import Separation
from speechbrain_mossformer.lobes.models.mossformer import MossFormerWrapper


@pytest.fixture(autouse=True)
def restore_signal_handlers():
    """The Brain holds SIGINT/SIGTERM from the start of a training stage;
    a test that stops in the middle leaves them held. Each test starts with
    Python's own Ctrl-C handler, as in a terminal: a test run started with
    SIGINT ignored (a background job of a non-interactive shell) would
    otherwise find nothing to hold, which is right for training but not
    what these tests test."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def step_without_stopping(brain, batches):
    """``run_steps``, failing the test (not ending the pytest run) if a
    KeyboardInterrupt escapes."""
    try:
        return run_steps(brain, batches)
    except KeyboardInterrupt:
        pytest.fail("stopped in the middle of a step or window")


def send_held(signum=signal.SIGINT):
    """Sends ``signum`` to this process where it must be held: failing the
    test (not ending the pytest run) if it raises."""
    try:
        signal.raise_signal(signum)
    except KeyboardInterrupt:
        pytest.fail(f"{signal.Signals(signum).name} was not held")


class ScriptedLoss(Separation):
    """A Separation whose loss is NaN for the batches named ``bad*``."""

    def compute_objectives(self, predictions, targets):
        loss = super().compute_objectives(predictions, targets)
        if self._current_id.startswith("bad"):
            return loss * float("nan")
        return loss

    def compute_forward(self, batch, stage):
        self._current_id = batch.id[0]
        return super().compute_forward(batch, stage)


def make_brain(factor, tmp_path=None, sgd=False, **hparams):
    torch.manual_seed(0)
    model = MossFormerWrapper(
        encoder_out_nchannels=16, num_blocks=1, group_size=4,
        query_key_dim=8,
    )
    modules = {
        "encoder": model.encoder,
        "masknet": model.masknet,
        "decoder": model.decoder,
    }
    checkpointer = None
    if tmp_path is not None:
        checkpointer = sb.utils.checkpoints.Checkpointer(
            str(tmp_path), recoverables=modules
        )
    brain = ScriptedLoss(
        modules=modules,
        # plain SGD: the step follows the gradients' scale (Adam's does not)
        opt_class=(lambda params: torch.optim.SGD(params, 0.1)) if sgd
        else (lambda params: torch.optim.Adam(params, 1e-3)),
        hparams=dict({"num_spks": 2, "loss": get_si_snr_with_pitwrapper},
                     **hparams),
        # no clipping: it would hide the gradients' scale too
        run_opts={"device": "cpu", "grad_accumulation_factor": factor,
                  "max_grad_norm": 1e9},
        checkpointer=checkpointer,
    )
    brain.init_optimizers()
    brain.modules.train()
    brain.on_stage_start(sb.Stage.TRAIN, epoch=1)
    return brain


def batch(name, seed):
    gen = torch.Generator().manual_seed(seed)
    s1, s2 = torch.randn(2, 160, generator=gen)
    return PaddedBatch([
        {"id": name, "mix_sig": s1 + s2, "s1_sig": s1, "s2_sig": s2}
    ])


def run_steps(brain, batches):
    losses = []
    for item in batches:
        brain.step += 1
        torch.manual_seed(brain.step)  # the same dropout masks in each run
        loss = brain.fit_batch(item)
        brain.avg_train_loss = brain.update_average(loss, brain.avg_train_loss)
        losses.append(float(loss))
    return losses


def weights(brain):
    return torch.cat([p.detach().flatten() for p in brain.modules.parameters()])


def test_skipped_last_micro_batch_keeps_the_accumulated_gradients():
    # factor 2: a good micro-batch, then a skipped one closing the window.
    # The step must equal a step on the good micro-batch alone (the mean
    # over the micro-batches not skipped); the old code threw the good
    # micro-batch's gradients away and took no step.
    accumulated = make_brain(2, sgd=True)
    start = weights(accumulated)
    run_steps(accumulated, [batch("good", 1), batch("bad", 2)])
    assert accumulated.optimizer_step == 1
    assert accumulated.skipped_batches == 1

    alone = make_brain(1, sgd=True)
    run_steps(alone, [batch("good", 1)])
    assert not torch.equal(weights(alone), start)
    assert torch.allclose(weights(accumulated), weights(alone), atol=1e-7)


def test_skipped_first_micro_batch_then_a_good_one():
    # the step uses the mean over the one micro-batch not skipped
    accumulated = make_brain(2, sgd=True)
    run_steps(accumulated, [batch("bad", 2), batch("good", 1)])
    assert accumulated.optimizer_step == 1
    alone = make_brain(1, sgd=True)
    alone.step = 1  # the same dropout seed as the good micro-batch above
    run_steps(alone, [batch("good", 1)])
    assert torch.allclose(weights(accumulated), weights(alone), atol=1e-7)


def test_a_window_of_skipped_micro_batches_takes_no_step():
    brain = make_brain(2)
    start = weights(brain)
    run_steps(brain, [batch("bad", 1), batch("bad", 2)])
    assert brain.optimizer_step == 0
    assert torch.equal(weights(brain), start)


def test_reported_training_loss_leaves_skipped_batches_out():
    brain = make_brain(1)
    losses = run_steps(
        brain, [batch("good", 1), batch("bad", 2), batch("good", 3)]
    )
    assert torch.isnan(torch.tensor(losses[1]))
    expected = (losses[0] + losses[2]) / 2
    assert brain.avg_train_loss == pytest.approx(expected, rel=1e-6)


def test_an_epoch_of_skipped_batches_reports_no_loss(tmp_path):
    brain = make_brain(1)
    run_steps(brain, [batch("bad", 1), batch("bad", 2)])
    brain.on_stage_end(sb.Stage.TRAIN, brain.avg_train_loss, epoch=1)
    assert torch.isnan(torch.tensor(brain.train_stats["loss"]))
    assert brain.train_stats["skipped_batches"] == 2


def test_skipped_batch_count_survives_an_intra_epoch_checkpoint(tmp_path):
    brain = make_brain(1, tmp_path)
    run_steps(brain, [batch("bad", 1), batch("good", 2)])
    brain.checkpointer.save_checkpoint(end_of_epoch=False)

    resumed = make_brain(1, tmp_path)
    resumed.checkpointer.recover_if_possible()
    assert (resumed.step, resumed.skipped_batches) == (2, 1)
    # resuming inside the epoch does not reset the count
    resumed.on_stage_start(sb.Stage.TRAIN, epoch=1)
    assert resumed.skipped_batches == 1
    losses = run_steps(resumed, [batch("good", 3)])
    expected = (brain.avg_train_loss + losses[0]) / 2
    assert resumed.avg_train_loss == pytest.approx(expected, rel=1e-6)


def test_saved_estimates_are_in_the_order_of_the_references(tmp_path):
    brain = make_brain(1, output_folder=str(tmp_path), sample_rate=8000)
    gen = torch.Generator().manual_seed(0)
    # [T, S]
    refs = torch.randn(800, 2, generator=gen)
    ests = refs.flip(-1) + 0.01 * torch.randn(800, 2, generator=gen)
    brain.save_audio("utt", refs.sum(-1), refs, ests)
    folder = os.path.join(str(tmp_path), "audio_results")
    for k in (1, 2):
        ref, _ = sb.dataio.audio_io.load(
            os.path.join(folder, f"utt_source{k}.wav")
        )
        est, _ = sb.dataio.audio_io.load(
            os.path.join(folder, f"utt_source{k}hat.wav")
        )
        corr = torch.corrcoef(torch.stack([ref.flatten(), est.flatten()]))
        assert corr[0, 1] > 0.99, k


def test_ddp_ranks_average_gradients_when_the_last_micro_batch_is_skipped(
    tmp_path,
):
    import subprocess
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "helpers"))
    from ddp_skip import mixture, tiny_model

    from speechbrain_mossformer.lobes.models.mossformer import (
        separate_with_modules,
    )

    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    script = os.path.join(os.path.dirname(__file__), "helpers", "ddp_skip.py")
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", script,
         str(tmp_path)],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [torch.load(os.path.join(str(tmp_path), f"rank{r}.pt"))
             for r in (0, 1)]
    assert [r["optimizer_step"] for r in ranks] == [1, 1]
    assert [r["skipped"] for r in ranks] == [1, 1]

    # the expected step: SGD on the mean loss of the ranks' good batches
    model = tiny_model().eval()
    losses = []
    for seed in (1, 2):
        item = mixture("good", seed)
        targets = torch.stack([item.s1_sig.data, item.s2_sig.data], dim=-1)
        est = separate_with_modules(
            model.encoder, model.masknet, model.decoder, item.mix_sig.data, 2
        )
        losses.append(get_si_snr_with_pitwrapper(targets, est).mean())
    (sum(losses) / 2).backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
    for name in ("encoder", "masknet", "decoder"):
        expected = getattr(model, name).state_dict()
        for key, value in expected.items():
            assert torch.equal(ranks[0]["state"][name][key],
                               ranks[1]["state"][name][key]), key
            # steps move the weights by up to about 4 here; a rank's own
            # gradient alone, or none, misses by more than 1
            assert torch.allclose(ranks[0]["state"][name][key], value,
                                  atol=1e-4), (name, key)


class CtrlCAt(ScriptedLoss):
    """Sends itself SIGINT during the forward pass of the given steps."""

    ctrl_c_steps = ()

    def compute_forward(self, batch, stage):
        if self.step in self.ctrl_c_steps:
            signal.raise_signal(signal.SIGINT)
        return super().compute_forward(batch, stage)


def test_ctrl_c_during_a_step_stops_once_the_step_is_applied():
    # SpeechBrain counts the batch before fit_batch runs: a KeyboardInterrupt
    # inside the step saved a checkpoint that counted the batch but had not
    # applied it (or had applied half an optimizer step)
    reference = make_brain(1)
    run_steps(reference, [batch("good", 1), batch("good", 2)])
    reference.interrupt.release()  # one Brain trains at a time

    brain = make_brain(1)
    brain.__class__ = CtrlCAt
    brain.ctrl_c_steps = (2,)
    step_without_stopping(brain, [batch("good", 1)])
    with pytest.raises(KeyboardInterrupt):
        run_steps(brain, [batch("good", 2)])
    assert brain.step == 2 and brain.optimizer_step == 2
    assert torch.equal(weights(brain), weights(reference))
    # the interrupted step's loss is in the average, as in the reference
    assert brain.avg_train_loss == pytest.approx(reference.avg_train_loss,
                                                 rel=1e-6)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_between_steps_waits_for_the_next_step():
    # e.g. while the DataLoader fetches the next batch (SpeechBrain has not
    # counted it yet, so stopping at once would also be consistent, but a
    # DDP rank stopping there leaves the others in the next all-reduce)
    brain = make_brain(1)
    step_without_stopping(brain, [batch("good", 1)])
    send_held()
    with pytest.raises(KeyboardInterrupt):
        run_steps(brain, [batch("good", 2)])
    assert (brain.step, brain.optimizer_step) == (2, 2)


def test_ctrl_c_waits_for_the_end_of_the_accumulation_window():
    # factor 2: Ctrl-C in the window's first micro-batch; stopping there
    # would lose its gradients (they are not in the checkpoint)
    brain = make_brain(2)
    brain.__class__ = CtrlCAt
    brain.ctrl_c_steps = (1,)
    step_without_stopping(brain, [batch("good", 1)])  # held, no step yet
    assert brain.optimizer_step == 0
    with pytest.raises(KeyboardInterrupt):
        run_steps(brain, [batch("good", 2)])
    assert (brain.step, brain.optimizer_step) == (2, 1)


def test_ctrl_c_in_the_epochs_last_partial_window_stops_at_its_end():
    # 3 micro-batches, factor 2: the last window never completes, so the
    # held signal used to be dropped and training went on to the next epoch
    brain = make_brain(2)
    brain.__class__ = CtrlCAt
    brain.ctrl_c_steps = (3,)
    step_without_stopping(
        brain, [batch("good", 1), batch("good", 2), batch("good", 3)])
    with pytest.raises(KeyboardInterrupt):
        brain.on_stage_end(sb.Stage.TRAIN, brain.avg_train_loss, epoch=1)
    assert brain.finished_training == (3, brain.avg_train_loss)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_epochs_last_partial_window_is_applied():
    # 4 micro-batches, factor 3: SpeechBrain flushed the gradients of the
    # last window (1 micro-batch) unused at the end of the epoch
    brain = make_brain(3, sgd=True)
    brain.on_stage_end(sb.Stage.TRAIN, 0.0)  # lets make_brain's hold go
    fit(brain, sb.utils.epoch_loop.EpochCounter(limit=1), valid=False)
    assert brain.optimizer_step == 2
    # the same run on the first 3 mixtures: the 4th one moved the weights
    window = make_brain(3, sgd=True)
    window.on_stage_end(sb.Stage.TRAIN, 0.0)

    class FirstThree(Mixtures):
        def __len__(self):
            return 3

    window.fit(sb.utils.epoch_loop.EpochCounter(limit=1), FirstThree(),
               None, train_loader_kwargs={"batch_size": 1,
                                          "collate_fn": PaddedBatch},
               progressbar=False)
    assert window.optimizer_step == 1
    assert not torch.equal(weights(brain), weights(window))


def test_dataloader_workers_leave_ctrl_c_to_the_main_process():
    # a terminal's Ctrl-C reaches the workers too; one that died of it made
    # the main process fail while it finished the held step, saving nothing
    class Handlers(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return torch.tensor([
                signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
                signal.getsignal(signal.SIGTERM) == signal.SIG_IGN,
            ])

    brain = make_brain(1)
    seen = []
    loader = brain.make_dataloader(
        Handlers(), sb.Stage.VALID, num_workers=1,
        worker_init_fn=lambda worker_id: seen.append(worker_id),
    )
    assert all(bool(flags.all()) for flags in loader)


def test_a_stopped_fit_leaves_no_dataloader_worker_behind():
    # the training loader keeps its iterator; its workers ignore SIGINT and
    # SIGTERM, so multiprocessing's exit handler waited for them forever
    import multiprocessing

    brain = make_brain(1)
    brain.__class__ = CtrlCAt
    brain.ctrl_c_steps = (2,)
    with pytest.raises(KeyboardInterrupt):
        brain.fit(
            sb.utils.epoch_loop.EpochCounter(limit=1), Mixtures(), Mixtures(),
            train_loader_kwargs={"num_workers": 1, "batch_size": 1,
                                 "collate_fn": PaddedBatch},
            progressbar=False,
        )
    assert (brain.step, brain.optimizer_step) == (2, 2)
    assert multiprocessing.active_children() == []


class Mixtures(torch.utils.data.Dataset):
    """Four "good" mixtures of 160 samples."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        gen = torch.Generator().manual_seed(i)
        s1, s2 = torch.randn(2, 160, generator=gen)
        return {"id": "good", "mix_sig": s1 + s2, "s1_sig": s1,
                "s2_sig": s2}


def fit(brain, counter, valid=True):
    """``brain.fit`` on ``Mixtures`` (batch 1, in this process)."""
    loader = {"batch_size": 1, "collate_fn": PaddedBatch}
    brain.fit(counter, Mixtures(), Mixtures() if valid else None,
              train_loader_kwargs=loader, valid_loader_kwargs=loader,
              progressbar=False)


def test_a_stopped_fit_leaves_nothing_pending():
    # the held Ctrl-C stayed pending after fit stopped: a validation batch
    # or a training stage run by hand afterwards (a notebook) stopped at
    # once
    brain = make_brain(1)
    brain.__class__ = CtrlCAt
    brain.ctrl_c_steps = (2,)
    with pytest.raises(KeyboardInterrupt):
        fit(brain, sb.utils.epoch_loop.EpochCounter(limit=1))
    assert not brain.interrupt.pending
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    brain.ctrl_c_steps = ()
    with torch.no_grad():
        brain.evaluate_batch(batch("good", 1), sb.Stage.VALID)
    brain.on_stage_start(sb.Stage.TRAIN, epoch=1)
    step_without_stopping(brain, [batch("good", 1)])


def test_evaluate_batch_builds_no_autograd_graph():
    # its @torch.no_grad() once slid onto a helper inserted above it
    seen = []

    class Recording(ScriptedLoss):
        def compute_forward(self, batch, stage):
            seen.append(torch.is_grad_enabled())
            return super().compute_forward(batch, stage)

    brain = make_brain(1)
    brain.__class__ = Recording
    brain.evaluate_batch(batch("good", 1), sb.Stage.VALID)
    assert seen == [False]


def test_a_training_stage_run_by_hand_lets_the_signals_go_at_its_end():
    # outside fit, on_stage_end no longer released them: a later Ctrl-C was
    # only logged (and another Brain's hold did nothing)
    brain = make_brain(1)
    step_without_stopping(brain, [batch("good", 1)])
    brain.on_stage_end(sb.Stage.TRAIN, brain.avg_train_loss, epoch=1)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)


def test_ctrl_c_between_epochs_without_validation_resumes_every_epoch(
    tmp_path,
):
    # held past the epoch counter's step: the checkpoint saved the end of
    # epoch 1 with the counter at 2, and the resumed run skipped epoch 2
    from speechbrain_mossformer.recipe import save_progress

    class CtrlCAsEpoch2Begins(sb.utils.epoch_loop.EpochCounter):
        def __next__(self):
            epoch = super().__next__()
            if epoch == 2:
                signal.raise_signal(signal.SIGINT)
            return epoch

    brain = make_brain(1, tmp_path)
    counter = CtrlCAsEpoch2Begins(limit=3)
    brain.checkpointer.add_recoverable("counter", counter)
    with pytest.raises(KeyboardInterrupt) as stop:
        fit(brain, counter, valid=False)
    assert brain.optimizer_step == 4
    assert save_progress(brain, stop.value)

    resumed = make_brain(1, tmp_path)
    counter = sb.utils.epoch_loop.EpochCounter(limit=3)
    resumed.checkpointer.add_recoverable("counter", counter)
    fit(resumed, counter, valid=False)
    assert resumed.optimizer_step == 12  # 3 epochs of 4 steps


def test_a_second_ctrl_c_does_not_cut_the_epochs_checkpoint_short(
    tmp_path,
):
    # raised inside the epoch's log line (after the scheduler stepped, before
    # the checkpoint): the resumed run validated the epoch again and
    # stepped the scheduler twice for it
    from speechbrain_mossformer.brain import HeldInterrupt
    from speechbrain_mossformer.recipe import save_progress

    class DoubleCtrlCLogger:
        def log_stats(self, stats_meta, **stats):
            if stats_meta.get("epoch") == 1:
                signal.raise_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGINT)  # insisting at once

    brain = make_brain(1, tmp_path, train_logger=DoubleCtrlCLogger())
    brain.on_stage_end(sb.Stage.TRAIN, 0.0)  # lets make_brain's hold go
    brain.interrupt = HeldInterrupt(insist_after=0.0)
    with pytest.raises(KeyboardInterrupt) as stop:
        fit(brain, sb.utils.epoch_loop.EpochCounter(limit=2))
    assert brain.optimizer_step == 4  # epoch 2 never started
    assert brain.all_saved
    assert not save_progress(brain, stop.value)  # nothing more to save
    (ckpt,) = brain.checkpointer.list_checkpoints()
    assert ckpt.meta["end-of-epoch"]


class IndexedMixtures(Mixtures):
    """``Mixtures`` named ``good0`` ... ``good3``."""

    def __getitem__(self, i):
        return dict(super().__getitem__(i), id=f"good{i}")


def double_ctrl_c_brain(tmp_path, where):
    """A Brain whose step 3 gets two Ctrl-C, the second raised at once,
    in its forward pass or just before its optimizer's update."""
    from speechbrain_mossformer.brain import HeldInterrupt

    class DoubleCtrlC(ScriptedLoss):
        def _double_ctrl_c(self):
            if self.stage == sb.Stage.TRAIN and self.step == 3:
                signal.raise_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGINT)  # insisting: raised

        def compute_forward(self, batch, stage):
            if where == "forward":
                self._double_ctrl_c()
            return super().compute_forward(batch, stage)

        def optimizers_step(self):
            if where == "update":
                self._double_ctrl_c()
            super().optimizers_step()

    brain = make_brain(1, tmp_path)
    brain.on_stage_end(sb.Stage.TRAIN, 0.0)  # lets make_brain's hold go
    brain.__class__ = DoubleCtrlC
    brain.interrupt = HeldInterrupt(insist_after=0.0)
    return brain


def fit_indexed(brain, tmp_path):
    counter = sb.utils.epoch_loop.EpochCounter(limit=1)
    brain.checkpointer.add_recoverable("counter", counter)
    loader = {"batch_size": 1, "collate_fn": PaddedBatch}
    brain.fit(counter, IndexedMixtures(), None,
              train_loader_kwargs=loader, progressbar=False)


def test_a_second_ctrl_c_inside_a_step_saves_the_last_whole_step(tmp_path):
    # the step counter (and the loader's position) had counted step 3,
    # which was never applied: the resumed run skipped its batch
    from speechbrain_mossformer.recipe import save_progress

    brain = double_ctrl_c_brain(tmp_path, "forward")
    with pytest.raises(KeyboardInterrupt) as stop:
        fit_indexed(brain, tmp_path)
    assert (brain.step, brain.optimizer_step) == (3, 2)
    assert save_progress(brain, stop.value)
    (ckpt,) = brain.checkpointer.list_checkpoints()
    with open(os.path.join(ckpt.path, "brain.ckpt")) as f:
        assert "step: 2\n" in f.read()
    with open(os.path.join(ckpt.path, "dataloader-TRAIN.ckpt")) as f:
        assert f.read() == "2"

    seen = []

    class Recording(ScriptedLoss):
        def compute_forward(self, batch, stage):
            seen.append(batch.id[0])
            return super().compute_forward(batch, stage)

    resumed = make_brain(1, tmp_path)
    resumed.__class__ = Recording
    fit_indexed(resumed, tmp_path)
    assert seen == ["good2", "good3"]  # steps 3 and 4
    assert resumed.optimizer_step == 4


def test_a_second_ctrl_c_in_the_optimizers_update_saves_nothing(tmp_path,
                                                                 caplog):
    # the update may be half applied: no checkpoint rather than a wrong one
    from speechbrain_mossformer.recipe import save_progress

    brain = double_ctrl_c_brain(tmp_path, "update")
    with pytest.raises(KeyboardInterrupt) as stop:
        fit_indexed(brain, tmp_path)
    with caplog.at_level(logging.WARNING):
        assert not save_progress(brain, stop.value)
    assert "inside the optimizer's update" in caplog.text
    assert brain.checkpointer.list_checkpoints() == []


def test_a_process_left_with_loader_workers_still_exits():
    # e.g. an evaluate() stopped by an error, or persistent workers: the
    # workers ignore SIGTERM, multiprocessing's exit handler sends SIGTERM
    # and waits; the exit hung
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(__file__), "helpers",
                          "exit_with_workers.py")
    try:
        proc = subprocess.run([sys.executable, script], capture_output=True,
                              text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("the process did not exit: its DataLoader workers "
                    "were left running")
    assert proc.returncode == 0 and "exiting" in proc.stdout, proc.stderr


def test_sigterm_during_a_step_stops_after_it_as_terminated():
    # the recipes install raise_terminated while training: a preempted job
    # (SIGTERM) stops like Ctrl-C, after the step, with its own exception
    from speechbrain_mossformer.brain import Terminated, raise_terminated

    class SigtermAt2(ScriptedLoss):
        def compute_forward(self, batch, stage):
            if self.step == 2:
                signal.raise_signal(signal.SIGTERM)
            return super().compute_forward(batch, stage)

    signal.signal(signal.SIGTERM, raise_terminated)
    brain = make_brain(1)  # starts the training stage: holds SIGTERM
    brain.__class__ = SigtermAt2
    step_without_stopping(brain, [batch("good", 1)])
    with pytest.raises(Terminated):
        run_steps(brain, [batch("good", 2)])
    assert (brain.step, brain.optimizer_step) == (2, 2)
    assert signal.getsignal(signal.SIGTERM) is raise_terminated


def test_a_second_ctrl_c_later_stops_at_once():
    from speechbrain_mossformer.brain import HeldInterrupt

    interrupt = HeldInterrupt(insist_after=0.0)
    with pytest.raises(KeyboardInterrupt):
        with interrupt.held():
            send_held()
            signal.raise_signal(signal.SIGINT)  # insisted: raised here
    # and a quick double press (within insist_after) counts once
    interrupt = HeldInterrupt(insist_after=60.0)
    with interrupt.held():
        send_held()
        send_held()
    assert interrupt.pending
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_during_validation_keeps_the_epochs_training_loss(tmp_path):
    # SpeechBrain has reset the training loss to 0 and counts validation
    # batches in ``step`` by then; the resumed run logged train loss 0.00
    from speechbrain_mossformer.recipe import save_progress

    brain = make_brain(1, tmp_path)
    run_steps(brain, [batch("bad", 1), batch("good", 2), batch("good", 3)])
    train_loss = brain.avg_train_loss
    brain.on_stage_end(sb.Stage.TRAIN, brain.avg_train_loss, epoch=1)
    brain.avg_train_loss, brain.step = 0.0, 0  # as SpeechBrain does
    brain.on_stage_start(sb.Stage.VALID, epoch=1)
    brain.step = 5  # validation batches
    assert save_progress(brain, KeyboardInterrupt())
    assert (brain.step, brain.avg_train_loss) == (5, 0.0)  # left as it was

    resumed = make_brain(1, tmp_path)
    resumed.checkpointer.recover_if_possible()
    assert (resumed.step, resumed.skipped_batches) == (3, 1)
    assert resumed.avg_train_loss == pytest.approx(train_loss, rel=1e-6)
    resumed.on_stage_start(sb.Stage.TRAIN, epoch=1)
    resumed.on_stage_end(sb.Stage.TRAIN, resumed.avg_train_loss, epoch=1)
    assert resumed.train_stats["loss"] == pytest.approx(train_loss, rel=1e-6)


def run_two_ranks(helper, out, *args, timeout=300):
    """Runs ``tests/helpers/<helper> OUT ARGS`` on two torchrun ranks
    (``--standalone``: torchrun picks a free port, so parallel or
    repeated runs on one machine never collide)."""
    import subprocess
    import sys

    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    helpers = os.path.join(os.path.dirname(__file__), "helpers")
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2",
         os.path.join(helpers, helper), str(out), *args],
        capture_output=True, text=True, timeout=timeout,
        env=dict(os.environ, OMP_NUM_THREADS="1",
                 PYTHONPATH=os.pathsep.join(
                     [helpers, os.environ.get("PYTHONPATH", "")])),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.parametrize(
    "mode, stopped_at, steps",
    [
        ("one", 2, 2),  # only rank 1 signalled, in step 2
        ("mixed", 2, 2),  # rank 0 between steps, rank 1 after the reduce
        ("last", "end of stage", 3),  # both after the last all-reduce
        # only rank 1, in validation batch 2: both stop before batch 3
        ("validation", "validation 3", 3),
    ],
)
def test_ddp_ranks_stop_together_after_a_ctrl_c(tmp_path, mode, stopped_at,
                                                steps):
    run_two_ranks("ddp_interrupt.py", tmp_path, mode)
    ranks = [torch.load(os.path.join(str(tmp_path), f"rank{r}.pt"))
             for r in (0, 1)]
    assert [r["stopped_at"] for r in ranks] == [stopped_at] * 2
    assert [r["optimizer_step"] for r in ranks] == [steps] * 2


def test_ddp_checkpoint_cleanup_waits_for_the_published_checkpoint(
    tmp_path,
):
    # rank 0 publishes CKPT.yaml half a second late: rank 1 used to list the
    # checkpoints without the new one, delete other ones than rank 0, and
    # both hung in mismatched collectives (seen after a torchrun resume)
    import subprocess

    try:
        run_two_ranks("ddp_checkpoint.py", tmp_path, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the ranks hung in the checkpoint clean-up")
    assert sorted(os.listdir(tmp_path)) == ["rank0.done", "rank1.done",
                                            "save"]
    kept = os.listdir(tmp_path / "save")
    assert len(kept) == 1
    meta = open(tmp_path / "save" / kept[0] / "CKPT.yaml").read()
    assert "si-snr: 1.0" in meta


def test_validation_mean_ignores_the_training_skips():
    # the training epoch skipped 2 batches; validation skips none, and its
    # mean (the checkpoints' si-snr) must be over all its batches
    brain = make_brain(1)
    brain.skipped_batches = 2
    brain.step = 0
    brain.on_stage_start(sb.Stage.VALID, epoch=1)
    avg = 0.0
    for loss in (-5.0, -10.0, -15.0):
        brain.step += 1
        avg = brain.update_average(torch.tensor(loss), avg)
    assert avg == pytest.approx(-10.0)


class OracleEstimates(Separation):
    """Estimates = targets + noise; NaN for the utterances named ``nan*``."""

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        targets = self.stack_targets(batch)
        gen = torch.Generator().manual_seed(0)
        est = targets + 0.1 * torch.randn(targets.shape, generator=gen)
        for i, snt_id in enumerate(batch.id):
            if snt_id.startswith("nan"):
                est[i, 5, 0] = float("nan")
            if snt_id.startswith("zero"):
                est[i, :, 0] = 0.0
            if snt_id.startswith("silent"):  # a silent reference
                targets[i, :, 1] = 0.0
        return est, targets


def oracle_test_brain(output_folder):
    """An ``OracleEstimates`` brain at the start of its test stage."""
    model = MossFormerWrapper(
        encoder_out_nchannels=16, num_blocks=1, group_size=4,
        query_key_dim=8,
    )
    brain = OracleEstimates(
        modules={"encoder": model.encoder, "masknet": model.masknet,
                 "decoder": model.decoder},
        opt_class=lambda params: torch.optim.Adam(params, 1e-3),
        hparams={"num_spks": 2, "loss": get_si_snr_with_pitwrapper,
                 "output_folder": str(output_folder)},
        run_opts={"device": "cpu"},
    )
    brain.on_stage_start(sb.Stage.TEST)
    return brain


def test_utterances_with_nan_estimates_are_not_left_out_of_the_mean(
    tmp_path,
):
    # a model that fails (NaN) on a test mixture must not be reported with
    # the mean over the mixtures it did not fail on
    import csv
    import math

    brain = oracle_test_brain(tmp_path)
    for name in ("ok", "nan1"):
        brain.evaluate_batch(batch(name, seed=len(name)), sb.Stage.TEST)
    means = brain.write_test_results()
    with open(os.path.join(str(tmp_path), "test_results.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["snt_id"] for r in rows] == ["ok", "nan1", "avg"]
    assert math.isfinite(float(rows[0]["si-snr"]))
    for key in ("sdr", "sdr_i", "si-snr", "si-snr_i"):
        assert math.isnan(float(rows[1][key]))
        assert math.isnan(float(rows[2][key]))
        assert math.isnan(means[key])


def test_an_all_zero_estimate_warns_that_the_means_are_infinite(
    tmp_path, caplog
):
    # its BSS-Eval SDR is -inf by definition, which makes the means -inf
    brain = oracle_test_brain(tmp_path)
    for name in ("ok", "zero1"):
        brain.evaluate_batch(batch(name, seed=len(name)), sb.Stage.TEST)
    with caplog.at_level(logging.WARNING):
        means = brain.write_test_results()
    assert means["sdr"] == float("-inf")
    assert ("1 of 2 test utterances have an infinite metric (an all-zero "
            "estimate has SDR -inf)") in caplog.text


def test_an_unscorable_utterance_keeps_an_empty_row(tmp_path, caplog):
    # a silent reference (SI-SNR undefined): the utterance was dropped from
    # test_results.csv, whose rows then no longer listed the test set
    import csv

    brain = oracle_test_brain(tmp_path)
    for name in ("ok", "silent1", "ok2"):
        brain.evaluate_batch(batch(name, seed=len(name)), sb.Stage.TEST)
    with caplog.at_level(logging.WARNING):
        means = brain.write_test_results()
    assert ("1 test utterance(s) could not be scored (see the warnings "
            "above; their rows in test_results.csv are empty): the means "
            "are over the other 2") in caplog.text
    with open(os.path.join(str(tmp_path), "test_results.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["snt_id"] for r in rows] == ["ok", "silent1", "ok2", "avg"]
    assert all(rows[1][k] == "" for k in ("sdr", "sdr_i", "si-snr",
                                          "si-snr_i"))
    expected = (float(rows[0]["si-snr"]) + float(rows[2]["si-snr"])) / 2
    assert means["si-snr"] == pytest.approx(expected)
    assert float(rows[3]["si-snr"]) == pytest.approx(expected)
    # nothing scored: every row empty, no figures for the log
    brain = oracle_test_brain(tmp_path)
    brain.evaluate_batch(batch("silent2", seed=7), sb.Stage.TEST)
    assert brain.write_test_results() == {}
    with open(os.path.join(str(tmp_path), "test_results.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["snt_id"] for r in rows] == ["silent2", "avg"]
    assert rows[1]["si-snr"] == ""


@pytest.mark.parametrize("source_len, mix_len", [(820, 800), (800, 820)])
def test_sources_and_mixture_of_different_lengths_name_the_shapes(
    source_len, mix_len
):
    brain = make_brain(1)
    brain.modules.eval()
    item = PaddedBatch([{
        "id": "x", "mix_sig": torch.randn(mix_len),
        "s1_sig": torch.randn(source_len), "s2_sig": torch.randn(source_len),
    }])
    with pytest.raises(ValueError, match=r"\(1, 8[02]0, 2\).*\(1, 8[02]0, 2\)"):
        brain.evaluate_batch(item, sb.Stage.TEST)


@pytest.mark.parametrize(
    "settings, rebuilt",
    [
        # WHAMR!'s own mixtures are reverberant: trained on as they are
        ({"whamr": True}, False),
        # so are dynamic mixtures (given the RIRs when use_reverb is on)
        ({"dynamic_mixing": True}, False),
        # an anechoic corpus mixture is rebuilt from reverberated sources
        ({}, True),
        # mixtures rebuilt from perturbed sources are reverberated
        ({"whamr": True, "use_speedperturb": True,
          "speed_perturb": lambda x: x[:, :-10]}, True),
    ],
)
def test_use_reverb_rebuilds_only_mixtures_that_are_not_reverberant(
    settings, rebuilt
):
    # a stand-in "RIR": each source scaled by 3
    brain = make_brain(1, use_reverb=True, reverb=lambda x: 3 * x,
                       **settings)
    generator = torch.Generator().manual_seed(0)
    targets = torch.randn(2, 400, 2, generator=generator)
    corpus_mix = torch.randn(2, 400, generator=generator)
    mix, out_targets = brain.augment(corpus_mix, torch.ones(2), targets)
    if rebuilt:
        length = out_targets.shape[1]
        assert torch.allclose(mix, 3 * out_targets.sum(-1), atol=1e-6)
        assert torch.equal(out_targets, targets[:, :length])
    else:
        assert torch.equal(mix, corpus_mix)
        assert torch.equal(out_targets, targets)


def test_a_batch_with_one_non_finite_item_is_skipped_whole():
    # threshold_byloss dropped the NaN item (nan > -30 is False) and the
    # step went on: the NaN gradients reached every weight
    brain = make_brain(1)
    gen = torch.Generator().manual_seed(1)
    items = []
    for i in range(2):
        s1, s2 = torch.randn(2, 400, generator=gen)
        mix = s1 + s2
        if i == 1:
            mix[10] = float("inf")
        items.append({"id": f"u{i}", "mix_sig": mix, "s1_sig": s1,
                      "s2_sig": s2})
    before = weights(brain)
    losses = run_steps(brain, [PaddedBatch(items)])
    assert math.isnan(losses[0])
    assert brain.skipped_batches == 1
    assert torch.equal(weights(brain), before)


def test_a_non_finite_validation_batch_makes_the_stage_loss_the_worst(
    caplog
):
    # SpeechBrain left the NaN batch out and still divided by every step:
    # [-25, -28, nan, -25] gave a flattering -19.6, and a checkpoint that
    # fails on some mixtures could be kept as the best
    brain = make_brain(1)
    brain.step = 0
    brain.on_stage_start(sb.Stage.VALID, epoch=1)
    avg = 0.0
    for loss in (-25.0, -28.0, float("nan"), -25.0):
        brain.step += 1
        avg = brain.update_average(torch.tensor(loss), avg)
    assert avg == pytest.approx(-26.0)  # the mean of the finite ones
    assert brain.nonfinite_batches == 1
    seen = {}
    brain._end_of_epoch = lambda stats, loss, epoch: seen.update(
        stats=stats, loss=loss)
    with caplog.at_level("WARNING"):
        brain.on_stage_end(sb.Stage.VALID, avg, epoch=1)
    assert seen["loss"] == float("inf") == seen["stats"]["loss"]
    assert "valid: 1 batch(es) gave NaN or infinite losses" in caplog.text
    # the next validation starts afresh
    brain.on_stage_start(sb.Stage.VALID, epoch=2)
    assert brain.nonfinite_batches == 0


def test_evaluate_returns_inf_when_a_batch_loss_is_not_finite(tmp_path):
    # the logged stage loss was inf, evaluate() still returned the mean of
    # the other batches
    class Named(Mixtures):
        def __getitem__(self, i):
            item = super().__getitem__(i)
            item["id"] = "nan" if i == 2 else "ok"
            return item

    brain = oracle_test_brain(tmp_path)
    loader = {"batch_size": 1, "collate_fn": PaddedBatch}
    assert math.isfinite(brain.evaluate(
        Mixtures(), test_loader_kwargs=loader, progressbar=False))
    assert brain.evaluate(
        Named(), test_loader_kwargs=loader, progressbar=False) == math.inf
    assert brain.evaluation_failed


def test_threshold_leaves_out_items_already_above_30_db():
    # SpeechBrain's threshold: items whose loss is below -30 dB (separated
    # well enough) do not train; all of them below it: nothing to train
    brain = make_brain(1, threshold=-30)
    loss = torch.tensor([-40.0, -10.0, -20.0])
    assert brain.select_loss(loss).item() == -15.0
    assert brain.select_loss(torch.tensor([-35.0, -31.0])) is None
    brain = make_brain(1, threshold_byloss=False)
    assert brain.select_loss(loss).item() == pytest.approx(-70.0 / 3)


def test_loss_above_the_upper_limit_skips_the_batch():
    brain = make_brain(1, loss_upper_lim=10.0)
    assert brain._skip_everywhere(torch.tensor(11.0))
    assert not brain._skip_everywhere(torch.tensor(-5.0))


def test_test_metrics_leave_the_padding_out(tmp_path):
    # a short mixture batched with a longer one is scored on its own
    # samples: about the score it gets alone
    g = torch.Generator().manual_seed(0)
    items = []
    for name, n in (("long", 1600), ("short", 900)):
        s1, s2 = torch.randn(2, n, generator=g)
        items.append({"id": name, "mix_sig": s1 + s2, "s1_sig": s1,
                      "s2_sig": s2})
    together = oracle_test_brain(tmp_path / "together")
    together.evaluate_batch(PaddedBatch(items), sb.Stage.TEST)
    alone = oracle_test_brain(tmp_path / "alone")
    for item in items:
        alone.evaluate_batch(PaddedBatch([item]), sb.Stage.TEST)

    def short(brain):
        (row,) = [r for r in brain.test_rows if r["snt_id"] == "short"]
        return row["si-snr"]

    # the oracle's added noise differs between the two runs
    assert abs(short(together) - short(alone)) < 1.0
