"""The verdict and the repetition summary of benchmarks/pruning_experiment.py.

The experiment itself takes ~15 minutes, so it is not run here; these tests
feed its report functions made-up results and check what they conclude:
which size meets the 2.5x / 0.5 dB target, how repetitions are counted, and
that a missing or unfinished repetition is named, not skipped.
"""

import importlib.util
import os

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
    """A finished results.json with its verdict."""
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
    assert "2.70x, -0.30" in p4 and "2.60x, -0.60" in p4
    assert "-0.45 ± 0.21" in p4
    assert p4.endswith("| 1 of 2 |")
    assert "met in **1 of 2** repetitions" in text
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
