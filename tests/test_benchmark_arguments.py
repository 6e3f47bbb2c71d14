"""Argument checks of the benchmark scripts (nothing is timed here).

A bad value must stop the script at once with an argparse error, not hang
(``--jobs 0``), crash after minutes of work (``--threads 0``,
``--repeats 0``) or end in a traceback (``--seconds abc``); ``speed.py
--quick`` must not replace the full run's report.
"""

import importlib.util
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(REPO, "benchmarks")


def load(name):
    """A benchmark script as a module."""
    if BENCHMARKS not in sys.path:
        sys.path.insert(0, BENCHMARKS)
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(BENCHMARKS, name + ".py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "script, argv",
    [
        ("pruning_experiment", ["--jobs", "0"]),
        ("pruning_experiment", ["--threads", "0"]),
        ("speed", ["--seconds", "abc"]),
        ("speed", ["--seconds", "0"]),
        ("speed", ["--seconds", "4,-1"]),
        ("speed", ["--threads", "0"]),
        ("speed", ["--repeats", "0"]),
        ("speed", ["--models", ","]),
        ("matmul_floor", ["--repeats", "0"]),
        ("matmul_floor", ["--threads", "0"]),
        ("matmul_floor", ["--seconds", "-1"]),
        ("matmul_floor", ["--models", ","]),
        ("compare_revision", ["--rev", "HEAD", "--train", "--onnx"]),
        ("train_memory", ["--models", "x"]),
        ("train_memory", ["--seconds", "0"]),
        ("train_memory", ["--steps", "0"]),
        ("train_memory", ["--batch", "0"]),
        # not finite, or shorter than one encoder frame (16 samples)
        ("speed", ["--seconds", "nan"]),
        ("speed", ["--seconds", "4,inf"]),
        ("speed", ["--seconds", "0.001"]),
        ("train_memory", ["--seconds", "nan"]),
        ("matmul_floor", ["--seconds", "inf"]),
        ("matmul_floor", ["--seconds", "0.001"]),
        ("compare_revision", ["--rev", "HEAD", "--seconds", "nan"]),
        ("compare_revision", ["--rev", "HEAD", "--seconds", "0.001"]),
        ("torch_compile", ["--seconds", "nan"]),
        ("torch_compile", ["--seconds", "0.001"]),
    ],
)
def test_bad_values_are_argparse_errors(script, argv, capsys):
    with pytest.raises(SystemExit) as stop:
        load(script).parse_args(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "script, option",
    [
        ("speed", "--out-dir"),
        ("train_memory", "--out-dir"),
        ("matmul_floor", "--out-dir"),
        ("torch_compile", "--out"),
    ],
)
def test_an_unusable_output_folder_stops_before_measuring(
    script, option, tmp_path, capsys
):
    # a file where the results folder should be: found at the end of the
    # measurement before, as a traceback, with the results lost
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    target = blocker / ("x.md" if option == "--out" else "results")
    with pytest.raises(SystemExit) as stop:
        load(script).parse_args([option, str(target)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"error: {option} {blocker}" in err and "Traceback" not in err


def test_good_values_still_parse():
    assert load("pruning_experiment").parse_args([]).jobs == 2
    assert load("speed").parse_args(["--seconds", "4,16"]).seconds == [4, 16]
    assert load("matmul_floor").parse_args([]).repeats == 5
    assert load("train_memory").parse_args([]).models == ["l", "sepformer"]


def test_speed_quick_does_not_replace_the_full_report():
    speed = load("speed")
    assert speed.parse_args([]).name == "speed"
    assert speed.parse_args(["--quick"]).name != "speed"
    assert speed.parse_args(["--quick", "--name", "mine"]).name == "mine"


@pytest.mark.parametrize(
    "op, shapes",
    [
        ("aten::mm", [[7, 5], [5, 3]]),
        ("aten::addmm", [[3], [7, 5], [5, 3]]),
        ("aten::bmm", [[2, 7, 5], [2, 5, 3]]),
        ("aten::baddbmm_", [[2, 7, 3], [2, 7, 5], [2, 5, 3]]),
    ],
)
def test_matmul_floor_onednn_replay_is_the_same_product(op, shapes):
    floor = load("matmul_floor")
    if not floor.onednn_available():
        pytest.skip("this torch build has no oneDNN linear operator")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    blas = floor.replay(op, shapes)
    torch.manual_seed(0)
    accumulated = torch.randn(shapes[0]) if op == "aten::baddbmm_" else 0
    torch.manual_seed(0)
    onednn = floor.replay_onednn(op, shapes)
    expected = blas() - accumulated
    got = onednn()
    got = torch.stack(got) if isinstance(got, list) else got
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5)


def test_matmul_floor_onednn_replay_skips_what_it_cannot_express():
    floor = load("matmul_floor")
    if not floor.onednn_available():
        pytest.skip("this torch build has no oneDNN linear operator")
    # a 2-D bias, and a 1x1 convolution (already run by oneDNN)
    assert floor.replay_onednn("aten::addmm", [[7, 3], [7, 5], [5, 3]]) is None
    assert floor.replay_onednn(
        "pointwise_conv", [[1, 5, 1, 7], [3, 5, 1, 1]]) is None


def test_matmul_floor_sums_every_call_once_per_shape():
    floor = load("matmul_floor")
    calls = [("aten::mm", [[8, 4], [4, 6]])] * 3 + [
        ("aten::bmm", [[2, 3, 4], [2, 4, 5]])]
    (blas, onednn, best), shapes = floor.floor_of(calls, repeats=2)
    assert [(s["op"], s["calls"]) for s in shapes] == [
        ("aten::mm", 3), ("aten::bmm", 1)]
    assert blas == pytest.approx(sum(s["blas_s"] for s in shapes))
    assert 0 < best <= blas
    if onednn is not None:
        assert best <= onednn
        assert onednn == pytest.approx(sum(s["onednn_s"] for s in shapes))


def test_train_memory_runs_end_to_end(tmp_path):
    """The training-memory benchmark measures every row on a short segment
    (that checkpointing keeps less for the backward pass is tested exactly
    in test_model.py; a resident-memory figure this small is noise)."""
    import json
    import subprocess

    out = subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "train_memory.py"),
         "--models", "s", "--seconds", "0.5", "--steps", "1",
         "--out-dir", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "train_memory.json") as f:
        rows = json.load(f)["rows"]
    assert [r["activation_checkpointing"] for r in rows] == [False, True]
    for row in rows:
        assert row["step_peak_mb"] > 0 and len(row["times"]) == 1
        assert row["step_s"] == row["times"][0] > 0
    table = (tmp_path / "train_memory.md").read_text()
    assert "| MossFormer (S) | 0.5 | on |" in table


@pytest.mark.parametrize("seeds", ["-1", "0,-2", ",", "a"])
def test_summarize_names_bad_seeds_before_looking_for_runs(seeds):
    # "-1" used to end in "run the experiment with --seed -1 first", a
    # seed that --seed itself refuses
    experiment = load("pruning_experiment")
    args = experiment.parse_args(["--summarize", seeds])
    with pytest.raises(SystemExit,
                       match=r"wants seeds like 0,1,2 \(each >= 0\)"):
        experiment.summarize(args)
