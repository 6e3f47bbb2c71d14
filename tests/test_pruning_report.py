"""The verdict and the repetition summary of benchmarks/pruning_experiment.py.

The experiment itself takes ~15 minutes, so it is not run here; these tests
feed its report functions made-up results and check what they conclude:
which size meets the 2.5x / 0.5 dB target, how repetitions are counted, and
that a missing or unfinished repetition is named, not skipped.
"""

import doctest
import importlib.util
import os
import shutil
import sys
import types

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def experiment():
    """benchmarks/pruning_experiment.py as a module."""
    path = os.path.join(REPO, "benchmarks", "pruning_experiment.py")
    spec = importlib.util.spec_from_file_location("pruning_experiment", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# a test set of six mixtures, sorted by name like the experiment's lists:
# two pairs share an utterance (a, d)
MIXTURES = ["19-1-a_26-2-b.wav", "19-1-a_26-2-c.wav", "19-1-g_32-4-h.wav",
            "27-3-d_26-2-e.wav", "27-3-d_32-4-f.wav", "27-3-i_32-4-j.wav"]
# per-mixture deviations around each model's mean (they sum to 0)
NOISE = [0.3, 0.2, 0.1, -0.4, -0.3, 0.1]


def size(name, speedup, pruned_ft, scratch=0.0):
    """One pruned size of a results.json."""
    return {
        "name": name,
        "spec": {"num_blocks": 2},
        "pruned_ft": pruned_ft,
        "pruned_ft_se": 0.1,
        "scratch": scratch,
        "speedup": {"torch": speedup, "onnx": speedup},
    }


def results(seed, dense, sizes, experiment):
    """A finished results.json with its verdict; per mixture, every model
    is its mean plus NOISE (the dense model plus half of it), so a pruned
    model's paired differences vary like NOISE / 2."""
    per_mixture = {"dense-ft": [dense + e / 2 for e in NOISE]}
    for s in sizes:
        per_mixture[s["name"] + "-ft"] = [s["pruned_ft"] + e for e in NOISE]
        per_mixture[s["name"] + "-scratch"] = [
            s["scratch"] + e for e in NOISE]
    res = {
        "seed": seed,
        "mode_name": "full",
        "command": "python benchmarks/pruning_experiment.py"
        + (f" --seed {seed}" if seed else ""),
        "date": "2026-11-24 12:00",
        "machine": {"cpu": "test CPU"},
        "mode": {"pretrain_steps": 2500, "finetune_steps": 1500},
        "dense": {"finetuned": dense},
        "sizes": sizes,
        "test_mixtures": list(MIXTURES),
        "per_mixture": per_mixture,
        "timing": {},
    }
    res["target"] = experiment.verdict(res)
    return res


def test_verdict_needs_speed_and_quality(experiment):
    # fast but 0.6 dB worse; close but only 2.4x: neither meets the target
    res = results(0, 2.0, [size("A", 3.0, 1.4), size("B", 2.4, 1.9)],
                  experiment)
    assert not res["target"]["met"]
    assert "Not met" in res["target"]["text"]
    # the fastest size that qualifies is the one reported
    res = results(0, 2.0, [size("A", 2.6, 1.6), size("B", 2.9, 1.5),
                           size("C", 3.5, 1.0)], experiment)
    assert res["target"]["met"]
    assert "B runs 2.90x" in res["target"]["text"]


def test_verdict_in_onnx_runtime_uses_its_own_times(experiment):
    # A is fast in PyTorch only, B in ONNX Runtime only
    a, b = size("A", 3.0, 1.8), size("B", 2.0, 1.9)
    a["speedup"]["onnx"], b["speedup"]["onnx"] = 2.0, 2.6
    res = results(0, 2.0, [a, b], experiment)
    assert res["target"]["met"] and res["target"]["met_onnx"]
    assert "A runs 3.00x" in res["target"]["text"]
    assert "ONNX Runtime the target is met too: fastest within 0.5 dB " \
        "B, 2.60x at -0.10 dB" in res["target"]["text"]
    b["speedup"]["onnx"] = 2.4
    res = results(0, 2.0, [a, b], experiment)
    assert res["target"]["met"] and not res["target"]["met_onnx"]
    assert "ONNX Runtime no size meets" in res["target"]["text"]
    lines = experiment.seeds_markdown([0], [res], "the summary command")
    a_row = next(line for line in lines if line.startswith("| A "))
    assert a_row.endswith("| 1 / 0 of 1 |")
    assert "in **0 of 1** timed in ONNX Runtime" in "\n".join(lines)
    # met in ONNX Runtime only: not "too"
    a["speedup"]["torch"], b["speedup"]["onnx"] = 2.0, 2.6
    target = results(0, 2.0, [a, b], experiment)["target"]
    assert "Not met" in target["text"] and target["met_onnx"]
    assert "ONNX Runtime the target is met: fastest" in target["text"]


def test_summary_counts_repetitions(experiment):
    runs = [
        results(0, 2.0, [size("P1", 1.5, 2.1), size("P4", 2.7, 1.7)],
                experiment),
        results(1, 2.2, [size("P1", 1.5, 2.2), size("P4", 2.6, 1.6)],
                experiment),
    ]
    lines = experiment.seeds_markdown([0, 1], runs, "the summary command")
    text = "\n".join(lines)
    p4 = next(line for line in lines if line.startswith("| P4 "))
    # Δ against each repetition's own dense model: -0.30 and -0.60
    assert "2.70x / 2.70x, -0.30" in p4 and "2.60x / 2.60x, -0.60" in p4
    assert "-0.45 ± 0.21" in p4
    # the pooled error: the seeds' sd / sqrt(2) = 0.15 and the test
    # utterances' robust error of the mean NOISE / 2, 0.077 (see below)
    assert "| -0.45 ± 0.17 |" in p4
    assert p4.endswith("| 1 / 1 of 2 |")
    assert "met in **1 of 2** repetitions timed in PyTorch" in text
    assert "--seed 1" in text and "the summary command" in text
    assert "P = 2500 pre-training, F = 1500 fine-tuning" in text


def test_summarize_names_a_missing_run(experiment, tmp_path):
    work = str(tmp_path / "work")
    os.makedirs(work)
    experiment.save_results({"seed": 0, "work": work})
    args = experiment.parse_args(
        ["--work", work, "--summarize", "0,3", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="has no timing"):
        experiment.summarize(args)
    args = experiment.parse_args(
        ["--work", work, "--summarize", "3", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"work-seed3.*--seed 3"):
        experiment.summarize(args)
    args = experiment.parse_args(["--work", work, "--summarize", "x"])
    with pytest.raises(SystemExit, match="seeds like 0,1,2"):
        experiment.summarize(args)


def test_summarize_refuses_mixed_step_counts(experiment, tmp_path):
    work = str(tmp_path / "work")
    for seed, steps in ((0, 2500), (1, 4000)):
        folder = experiment.work_folder(
            experiment.parse_args(["--work", work, "--seed", str(seed)]))
        os.makedirs(folder)
        res = results(seed, 2.0, [size("P1", 1.5, 2.1)], experiment)
        res["mode"]["pretrain_steps"] = steps
        res["work"] = folder
        experiment.save_results(res)
    args = experiment.parse_args(
        ["--work", work, "--summarize", "0,1", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="different step counts"):
        experiment.summarize(args)
    # one setting at a time works, and the summary names its command
    args = experiment.parse_args(
        ["--work", work, "--summarize", "0", "--out", str(tmp_path)])
    assert experiment.summarize(args) == 0
    with open(tmp_path / "pruning_seeds.md") as f:
        text = f.read()
    assert f"--summarize 0 --work {work} --out {tmp_path}" in text


def test_steps_and_command(experiment):
    args = experiment.parse_args(["--steps", "4000,2000", "--seed", "1"])
    args.out = experiment.RESULTS
    mode = experiment.experiment_mode(args)
    assert (mode["pretrain_steps"], mode["finetune_steps"]) == (4000, 2000)
    assert experiment.reproduce_command(args) == (
        "python benchmarks/pruning_experiment.py --seed 1 --steps 4000,2000")
    args.out = os.path.join(experiment.RESULTS, "longer")
    assert experiment.reproduce_command(args).endswith(
        "--out benchmarks/results/longer")
    for bad in ("4000", "4000,0", "a,b"):
        with pytest.raises(SystemExit):
            experiment.parse_args(["--steps", bad])


def test_seed_changes_folder_and_report_name(experiment):
    args = experiment.parse_args(["--work", "/tmp/w", "--seed", "2"])
    assert experiment.work_folder(args) == "/tmp/w-seed2"
    assert experiment.work_folder(args, 0) == "/tmp/w"
    assert experiment.report_name(2) == "pruning_seed2"
    assert experiment.report_name(0) == "pruning"
    with pytest.raises(SystemExit):
        experiment.parse_args(["--seed", "-1"])


def test_standard_error_counts_mixtures_sharing_an_utterance(experiment):
    diffs = [e / 2 for e in NOISE]
    independent = experiment.statistics.stdev(diffs) / 6 ** 0.5
    robust = experiment.utterance_robust_se(diffs, MIXTURES)
    # a and d each appear in two mixtures whose differences have the same
    # sign: that correlation widens the error
    assert robust > 1.1 * independent
    assert round(robust, 3) == 0.077
    # when no two mixtures share an utterance it is never below the
    # independent one
    alone = [f"{k}-1-0_{k}-2-0.wav" for k in range(6)]
    assert experiment.utterance_robust_se(diffs, alone) == independent
    with pytest.raises(ValueError, match="5 values for 6 mixtures"):
        experiment.utterance_robust_se(diffs[:5], MIXTURES)
    assert experiment.test_set_description(MIXTURES) == (
        "6 mixtures of 10 utterances by 4 speakers")


def test_standard_errors_of_a_run_are_the_robust_ones(experiment):
    res = results(0, 2.0, [size("P1", 3.0, 1.8)], experiment)
    experiment.add_standard_errors(res)
    robust = res["paired_se"]["P1-ft"]
    assert res["sizes"][0]["pruned_ft_se"] == robust
    assert robust > res["paired_se_independent"]["P1-ft"]
    # a per-mixture list that no longer fits the test set is refused
    res["per_mixture"]["P1-ft"].pop()
    res["work"] = "/runs/w"
    with pytest.raises(SystemExit, match="6 test mixtures"):
        experiment.add_standard_errors(res)


def full_results(work, experiment):
    """A results.json with every field the report writers read."""
    res = results(0, 2.0, [size("P1", 3.0, 1.8, scratch=1.9)], experiment)
    sizes = res["sizes"]
    sizes[0].update(
        pruned_0=1.0,
        config={"num_blocks": 4, "out_channels": 32,
                "hidden_dims": [64] * 4, "query_key_dims": [16] * 4},
        params=1000, blocks_kept=[0, 1, 2, 3])
    timing = {"torch": 0.1, "onnx": 0.2, "torch_spread": 0.05}
    res.update(
        work=work,
        machine={"cpu": "test CPU", "cores": 2, "torch": "t",
                 "onnxruntime": "o", "speechbrain": "s", "python": "p"},
        threads=2, busy_before=0.1, busy_after=0.1, load_before=0.5,
        load_after=0.5,
        data={"pool_files": 5, "train_speakers": 3, "test_speakers": 4,
              "test_dir": os.path.join(work, "absent")},
        dense={"params": 2000, "pretrained": 1.5, "finetuned": 2.0},
        unstructured=[{"name": "U-P1", "matches": "P1", "amount": 0.5,
                       "nonzero": 1000, "si_snri": 1.0,
                       "speedup": {"torch": 1.0, "onnx": 1.0}}],
        timing={"dense": timing, "P1": timing, "U-P1": timing},
        check_recipe_max_diff=0.0, example_command="train.py ...",
        runtime={"data": 1, "training": 60, "evaluation": 1, "timing": 1,
                 "total": 63},
        run_seconds={"dense": 10}, jobs=2,
    )
    res["mode"].update(timing_seconds=8.0, warmup=2, repeats=5,
                       timing_processes=5, epoch_steps=500,
                       n_valid=4, n_test=6)
    return res


def test_rewrite_reports_a_finished_run_again(experiment, tmp_path):
    work = str(tmp_path / "work")
    os.makedirs(work)
    res = full_results(work, experiment)
    # as written before the test mixtures' names were stored
    del res["test_mixtures"]
    experiment.save_results(res)
    out = tmp_path / "out"
    args = ["--work", work, "--out", str(out), "--rewrite"]
    # the names come from the test split, which is gone here
    with pytest.raises(SystemExit, match="absent/mix_clean not found"):
        experiment.main(args)
    os.makedirs(os.path.join(work, "absent", "mix_clean"))
    for name in MIXTURES:
        open(os.path.join(work, "absent", "mix_clean", name), "w").close()
    assert experiment.main(args) == 0
    text = (out / "pruning.md").read_text()
    se = experiment.utterance_robust_se(
        [e / 2 for e in NOISE], MIXTURES)
    assert f"-0.20 ± {se:.2f}" in text
    assert "6 mixtures of 10 utterances by 4 speakers" in text
    assert "--rewrite" in text
    assert (out / "pruning.png").is_file()
    with open(os.path.join(work, "results.json")) as f:
        saved = experiment.json.load(f)
    assert saved["test_mixtures"] == MIXTURES
    assert saved["sizes"][0]["pruned_ft_se"] == pytest.approx(se)


def test_examples_in_the_docstrings(experiment):
    # benchmarks/ is outside the package's doctest run
    result = doctest.testmod(experiment)
    assert result.attempted >= 5 and result.failed == 0


def test_timing_worker_sessions_do_not_spin(experiment, tmp_path,
                                            monkeypatch):
    # every model's ONNX Runtime session has its own thread pool; with
    # ONNX Runtime's default settings its threads spin after each run and
    # take the cores from the model timed next (a small model's time
    # doubled), so the worker must use speed.py's sessions
    import json

    monkeypatch.syspath_prepend(os.path.join(REPO, "benchmarks"))
    import bench_models
    import torch
    from speechbrain_mossformer.export_onnx import (
        export_separator,
        load_separator,
    )
    from speechbrain_mossformer.pretrained import (
        load_modules,
        render_hyperparams,
        write_pretrained_folder,
    )

    cfg = {"N_encoder_out": 16, "out_channels": 16, "num_blocks": 1,
           "group_size": 4, "query_key_dim": 8}
    modules = load_modules(render_hyperparams(cfg))
    folder = str(tmp_path / "tiny")
    write_pretrained_folder(
        folder, cfg, {k: m.state_dict() for k, m in modules.items()})
    onnx_path = str(tmp_path / "tiny.onnx")
    export_separator(load_separator(folder)[0], onnx_path)
    torch.save(torch.randn(1, 800), str(tmp_path / "mix.pt"))
    spec = {"folders": {"tiny": folder}, "onnx": {"tiny": onnx_path},
            "order": ["tiny"], "mix": str(tmp_path / "mix.pt"),
            "threads": 1, "warmup": 0, "repeats": 2,
            "out": str(tmp_path / "times.json")}
    with open(tmp_path / "spec.json", "w") as f:
        json.dump(spec, f)
    sessions = []

    def recording_session(path, threads):
        session = bench_models.ort_session(path, threads)
        sessions.append(session)
        return session

    monkeypatch.setitem(sys.modules, "bench_models", types.SimpleNamespace(
        ort_session=recording_session))
    assert experiment.time_worker(str(tmp_path / "spec.json")) == 0
    with open(spec["out"]) as f:
        times = json.load(f)
    assert len(times["tiny"]["onnx"]) == len(times["tiny"]["torch"]) == 2
    assert len(sessions) == 1
    options = sessions[0].get_session_options()
    assert options.get_session_config_entry(
        "session.intra_op.allow_spinning") == "0"


def test_retime_finishes_a_run_stopped_while_timing(experiment, tmp_path,
                                                    monkeypatch):
    # a run stopped during its timing stage has results.json without speed
    # and without a total runtime: --retime times it and writes its report
    work = str(tmp_path / "work")
    os.makedirs(work)
    res = full_results(work, experiment)
    timed = {k: res.pop(k) for k in (
        "timing", "machine", "threads", "busy_before", "busy_after",
        "load_before", "load_after")}
    res.pop("date", None)
    res["trained"] = "2026-12-06 01:55"
    res["runtime"] = {"data": 1, "training": 60, "evaluation": 1}
    experiment.save_results(res)

    def timing_stage(r, args, log):
        r.update(timed)
        r["date"] = "2026-12-06 02:30"
        r["runtime"]["timing"] = 2
        r["target"] = experiment.verdict(r)

    monkeypatch.setattr(experiment, "timing_stage", timing_stage)
    out = tmp_path / "out"
    args = ["--work", work, "--out", str(out), "--retime"]
    assert experiment.main(args) == 0
    with open(os.path.join(work, "results.json")) as f:
        saved = experiment.json.load(f)
    assert saved["runtime"]["total"] == 64
    # the report says that --retime measured the speed (it used to say
    # nothing when there was no earlier timing), and when the models were
    # trained
    assert saved["retimed"] == "2026-12-06 02:30"
    assert saved["retime_replaced_timing"] is False
    assert saved["trained"] == "2026-12-06 01:55"
    text = (out / "pruning.md").read_text()
    assert "Speed re-measured" not in text
    assert ("Speed measured on 2026-12-06 02:30 with `python benchmarks/"
            "pruning_experiment.py --retime`: the run stopped before its "
            "timing stage") in text
    assert ("trained and scored on 2026-12-06 01:55, timed on "
            "2026-12-06 02:30.") in text
    # a finished run timed again keeps its total up to date and says so
    assert experiment.main(args) == 0
    with open(os.path.join(work, "results.json")) as f:
        saved = experiment.json.load(f)
    assert saved["runtime"]["total"] == 64
    assert saved["retimed"] == "2026-12-06 02:30"
    assert saved["retime_replaced_timing"] is True
    assert saved["trained"] == "2026-12-06 01:55"
    text = (out / "pruning.md").read_text()
    assert "Speed re-measured on 2026-12-06 02:30" in text
    assert "the run stopped before its timing stage" not in text


def test_retime_keeps_the_date_of_an_older_run(experiment, tmp_path,
                                               monkeypatch):
    # a results.json written before the training date was recorded: its
    # "date" (when the run ended) is kept when --retime replaces it
    work = str(tmp_path / "work")
    os.makedirs(work)
    res = full_results(work, experiment)
    assert "trained" not in res and res["date"] == "2026-11-24 12:00"
    experiment.add_standard_errors(res)
    experiment.save_results(res)
    out = tmp_path / "out"
    experiment.write_markdown(res, str(tmp_path / "old.md"))
    assert ("Written by `benchmarks/pruning_experiment.py` on 2026-11-24 "
            "12:00 (full mode).") in (tmp_path / "old.md").read_text()

    def timing_stage(r, args, log):
        r["date"] = "2026-12-06 02:30"

    monkeypatch.setattr(experiment, "timing_stage", timing_stage)
    args = ["--work", work, "--out", str(out), "--retime"]
    assert experiment.main(args) == 0
    with open(os.path.join(work, "results.json")) as f:
        saved = experiment.json.load(f)
    assert saved["trained_by"] == "2026-11-24 12:00"
    assert ("trained and scored by 2026-11-24 12:00 (when the original run "
            "ended), timed on 2026-12-06 02:30.") in (
        out / "pruning.md").read_text()
    # timed again: still the original run's date, not the first retime's
    assert experiment.main(args) == 0
    with open(os.path.join(work, "results.json")) as f:
        assert experiment.json.load(f)["trained_by"] == "2026-11-24 12:00"


def test_retime_of_a_copied_work_folder_times_and_writes_the_copy(
    experiment, tmp_path, monkeypatch
):
    # cp -r work copy; --retime --work copy: the models of the original
    # folder were timed and its results.json replaced
    work = str(tmp_path / "work")
    os.makedirs(work)
    res = full_results(work, experiment)
    res["data"]["test_dir"] = os.path.join(work, "data", "test")
    experiment.save_results(res)
    copy = str(tmp_path / "copy")
    shutil.copytree(work, copy)
    with open(os.path.join(work, "results.json")) as f:
        original = f.read()
    seen = {}

    def timing_stage(r, args, log):
        seen.update(work=r["work"], test_dir=r["data"]["test_dir"])
        r["date"] = "2026-12-06 02:30"

    monkeypatch.setattr(experiment, "timing_stage", timing_stage)
    args = ["--work", copy, "--out", str(tmp_path / "out"), "--retime"]
    assert experiment.main(args) == 0
    assert seen == {"work": copy,
                    "test_dir": os.path.join(copy, "data", "test")}
    with open(os.path.join(work, "results.json")) as f:
        assert f.read() == original
    with open(os.path.join(copy, "results.json")) as f:
        assert experiment.json.load(f)["retimed"] == "2026-12-06 02:30"


def test_report_names_the_code_of_training_and_timing(experiment, tmp_path):
    res = experiment.add_standard_errors(
        full_results(str(tmp_path), experiment))
    path = str(tmp_path / "pruning.md")
    # an older run recorded none
    experiment.write_markdown(res, path)
    with open(path) as f:
        assert "Code:" not in f.read()
    train = {"commit": "0123456789abcdef", "uncommitted_changes": False,
             "changed_files": []}
    res.update(revision=train, timing_revision=dict(train))
    experiment.write_markdown(res, path)
    with open(path) as f:
        assert "Code: `0123456789ab` (training and timing)." in f.read()
    res["timing_revision"] = {"commit": "fedcba9876543210",
                              "uncommitted_changes": True,
                              "changed_files": ["a.py", "b.py"]}
    experiment.write_markdown(res, path)
    with open(path) as f:
        assert ("Code: training `0123456789ab`; timing `fedcba987654` with "
                "uncommitted changes (2 files).") in f.read()
    res["revision"] = None
    del res["timing_revision"]
    experiment.write_markdown(res, path)
    with open(path) as f:
        assert ("Code: training unknown (no git checkout); timing not "
                "recorded.") in f.read()


@pytest.mark.parametrize("argv, epoch", [
    (["--steps", "2600,1400"], 500),
    (["--steps", "2500,1400"], 500),
    (["--quick", "--steps", "120,50"], 50),
])
def test_steps_must_be_whole_epochs(experiment, argv, epoch, capsys):
    # --steps 2600,1400 used to train 2500 and 1000 steps (whole epochs of
    # 500) while the report said 2600 and 1400
    with pytest.raises(SystemExit) as stop:
        experiment.parse_args(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.split(": ", 1)[1].startswith(
        f"error: --steps wants multiples of the epoch of {epoch} steps")
    assert "Traceback" not in err


def test_steps_that_are_whole_epochs_are_trained_as_given(experiment):
    args = experiment.parse_args(["--quick", "--steps", "150,50"])
    mode = experiment.experiment_mode(args)
    assert (mode["pretrain_steps"], mode["finetune_steps"]) == (150, 50)
    data = {"libri2mix": "/d", "pool": "/p"}
    cmd = experiment.recipe_command(data, "/o", 150, mode, 1e-3, 1, [])
    assert "--N_epochs=3" in cmd
    with pytest.raises(ValueError, match="not whole epochs of 50"):
        experiment.recipe_command(data, "/o", 120, mode, 1e-3, 1, [])
