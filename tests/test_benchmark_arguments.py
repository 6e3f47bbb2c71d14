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
import torch

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
        ("fixture_agreement", ["--threads", "0"]),
        ("fixture_agreement", ["--threads", "a"]),
        ("fixture_agreement", ["--lengths", ","]),
        ("fixture_agreement", ["--fixtures", "/nonexistent/fixtures"]),
        ("fresh_clone", ["lint"]),
        ("fresh_clone", ["test", "--rev", "no-such-revision"]),
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
    "script, argv, attr, name",
    [
        ("speed", ["--models", "l,sepformer", "--seconds", "4,60"], "name",
         "speed_custom"),
        ("speed", ["--no-onnx"], "name", "speed_custom"),
        ("train_memory", ["--models", "s"], "name", "train_memory_custom"),
        ("matmul_floor", ["--seconds", "16"], "name", "matmul_floor_custom"),
        ("torch_compile", ["--size", "s"], "out", "torch_compile_custom.md"),
    ],
)
def test_a_run_with_other_options_keeps_the_full_runs_report(
    script, argv, attr, name, capsys
):
    # the README quotes the full runs' committed reports: a subset run
    # (benchmarks/README.md's examples) must not replace them
    module = load(script)
    default = getattr(module.parse_args([]), attr)
    assert os.path.basename(default) == name.replace("_custom", "")
    assert "_custom" not in capsys.readouterr().out
    assert os.path.basename(getattr(module.parse_args(argv), attr)) == name
    assert f"writing {getattr(module.parse_args(argv), attr)}" in (
        capsys.readouterr().out)
    named = "mine.md" if attr == "out" else "mine"
    assert getattr(
        module.parse_args(argv + [f"--{attr}", named]), attr) == named


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
    (blas, onednn, openblas, best), shapes = floor.floor_of(
        calls, repeats=2)
    assert [(s["op"], s["calls"]) for s in shapes] == [
        ("aten::mm", 3), ("aten::bmm", 1)]
    assert blas == pytest.approx(sum(s["blas_s"] for s in shapes))
    assert 0 < best <= blas
    for total, key in ((onednn, "onednn_s"), (openblas, "openblas_s")):
        if total is not None:
            assert best <= total
            assert total == pytest.approx(sum(s[key] for s in shapes))


def test_matmul_floor_openblas_replay_is_the_same_product():
    floor = load("matmul_floor")
    if floor.cpu_blas.openblas() is None:
        pytest.skip("numpy's OpenBLAS not found")
    shapes = [[2, 3, 5], [2, 3, 4], [2, 4, 5]]
    torch.manual_seed(0)
    run = floor.replay_openblas("aten::baddbmm_", shapes)
    # the same random tensors, drawn again in the replay's order
    torch.manual_seed(0)
    c, a, b = (torch.randn(s) for s in shapes)
    with floor.products_in("openblas"), torch.inference_mode():
        got = run().clone()
    torch.testing.assert_close(got, c + a @ b, atol=1e-5, rtol=1e-5)


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
    # other options than the full run's: the committed report stays
    assert not (tmp_path / "train_memory.json").exists()
    with open(tmp_path / "train_memory_custom.json") as f:
        rows = json.load(f)["rows"]
    assert [r["activation_checkpointing"] for r in rows] == [False, True]
    for row in rows:
        assert row["step_peak_mb"] > 0 and len(row["times"]) == 1
        assert row["step_s"] == row["times"][0] > 0
    table = (tmp_path / "train_memory_custom.md").read_text()
    assert "| MossFormer (S) | 0.5 | on |" in table
    # the code's revision (this checkout's, or none without git)
    assert "- code: " in table
    with open(tmp_path / "train_memory_custom.json") as f:
        assert "revision" in json.load(f)


@pytest.mark.parametrize("seeds", ["-1", "0,-2", ",", "a"])
def test_summarize_names_bad_seeds_before_looking_for_runs(seeds):
    # "-1" used to end in "run the experiment with --seed -1 first", a
    # seed that --seed itself refuses
    experiment = load("pruning_experiment")
    args = experiment.parse_args(["--summarize", seeds])
    with pytest.raises(SystemExit,
                       match=r"wants seeds like 0,1,2 \(each >= 0\)"):
        experiment.summarize(args)


# --------------------------------------------------------------------------
# Turn order, code revision, CPU description, reports


def test_turn_order_moves_every_model_from_round_to_round():
    bm = load("bench_models")
    names = ["s", "onnx:s", "m", "onnx:m", "l", "onnx:l", "sepformer"]
    rounds = [bm.turn_order(names, k, alternate=True, rotate=True)
              for k in range(4)]
    for order in rounds:
        assert sorted(order) == sorted(names)
    # every model holds several places, and SepFormer does not always run
    # right after L's ONNX Runtime session
    for name in names:
        assert len({order.index(name) for order in rounds}) > 1
    before = {order[order.index("sepformer") - 1] for order in rounds
              if order.index("sepformer") > 0}
    assert before != {"onnx:l"}
    # the old behaviours are unchanged
    assert bm.turn_order(names, 3) == names
    assert bm.turn_order(names, 1, alternate=True) == names[::-1]


def fake_speed_models(monkeypatch, speed, calls):
    """speed.py's models replaced by callables recording their turns (and
    ONNX Runtime sessions by ones recording ``onnx:NAME``)."""
    bm = speed.bm

    def runner(label):
        return lambda mix: calls.append(label)

    def export_onnx(modules, path):
        open(path, "w").close()

    monkeypatch.setattr(bm, "build", lambda name: {"name": name})
    monkeypatch.setattr(bm, "separator", lambda mods: runner(mods["name"]))
    monkeypatch.setattr(bm, "count", lambda mods: 1000)
    monkeypatch.setattr(bm, "export_onnx", export_onnx)
    monkeypatch.setattr(bm, "ort_session", lambda path, threads: path)
    monkeypatch.setattr(bm, "ort_runner", lambda path: runner(
        "onnx:" + os.path.basename(path)[len("mossformer_"):-len(".onnx")]))
    monkeypatch.setattr(bm, "machine_description", lambda: {
        "cpu": "test CPU", "isa": "", "cores": 2, "torch": "t",
        "onnxruntime": "o"})
    monkeypatch.setattr(bm, "code_revision", lambda: {
        "commit": "0123456789abcdef", "uncommitted_changes": False,
        "changed_files": []})


def test_speed_models_take_turns_in_changing_order(monkeypatch, tmp_path):
    # every round used to run S, S-ORT, ..., L, L-ORT, SepFormer: SepFormer
    # always right after L's ONNX Runtime session
    import json

    speed = load("speed")
    calls = []
    fake_speed_models(monkeypatch, speed, calls)
    assert speed.main([
        "--models", "s,l,sepformer", "--seconds", "0.01", "--repeats", "4",
        "--warmup", "0", "--no-memory", "--out-dir", str(tmp_path),
        "--name", "speed"]) == 0
    names = ["s", "onnx:s", "l", "onnx:l", "sepformer"]
    rounds = [calls[k:k + 5] for k in range(0, len(calls), 5)]
    assert len(rounds) == 4
    for order in rounds:
        assert sorted(order) == sorted(names)
    assert len({order[0] for order in rounds}) > 1
    assert len({order.index("sepformer") for order in rounds}) > 1
    assert {order[order.index("sepformer") - 1] for order in rounds
            if order.index("sepformer")} != {"onnx:l"}
    with open(tmp_path / "speed.json") as f:
        results = json.load(f)
    assert len(results["models"]["l"]["onnx_times"]["0.01"]) == 4
    assert results["revision"]["commit"] == "0123456789abcdef"
    assert "- code: `0123456789ab`" in (tmp_path / "speed.md").read_text()


def speed_results(models):
    """A speed.json of ``models`` at 4 and 16 s."""
    return {
        "seconds": [4.0, 16.0],
        "date": "2026-12-06T12:00",
        "revision": {"commit": "0123456789abcdef",
                     "uncommitted_changes": True,
                     "changed_files": ["speechbrain_mossformer/brain.py"]},
        "models": {
            name: {"params": 1e6, "rtf": {"4.0": 0.5, "16.0": 0.55},
                   "times": {}}
            for name in models
        },
    }


def test_speed_report_has_targets_only_when_it_has_some(tmp_path):
    speed = load("speed")
    args = speed.parse_args(["--out-dir", str(tmp_path)])
    machine = {"cpu": "test CPU", "isa": "AVX2", "cores": 2, "torch": "t",
               "onnxruntime": None}
    path = tmp_path / "speed.md"
    speed.write_markdown(str(path), speed_results(["s", "m"]), machine,
                         args, "the command")
    text = path.read_text()
    assert "## Targets" not in text
    assert text.endswith("| MossFormer (M) | 1.0M | 0.50 | 0.55 | 1.10 |\n")
    assert "- code: `0123456789ab` with uncommitted changes (1 file)" in text
    speed.write_markdown(str(path), speed_results(["l", "sepformer"]),
                         machine, args, "the command")
    text = path.read_text()
    assert "## Targets\n\n- MossFormer (L) RTF / SepFormer RTF" in text


@pytest.mark.parametrize("name", ["s", "onnx:s"])
def test_speed_memory_warms_up_both_runtimes_alike(name, monkeypatch,
                                                    capsys):
    # the ONNX Runtime child ran a 0.1 s pass before the measured one, the
    # PyTorch child none: its figure held its first pass's set-up
    speed = load("speed")
    bm = speed.bm
    passes = []
    monkeypatch.setattr(bm, "build", lambda name: {})
    monkeypatch.setattr(bm, "separator",
                        lambda mods: lambda mix: passes.append(mix.shape[1]))
    monkeypatch.setattr(bm, "ort_session", lambda path, threads: None)
    monkeypatch.setattr(bm, "ort_runner",
                        lambda s: lambda mix: passes.append(mix.shape[1]))

    def peak_memory(fn, *args):
        passes.append("measured")
        fn(*args)
        return {"rss_before_mb": 1.0, "peak_mb": 2.0, "above_mb": 1.0,
                "method": "test"}

    monkeypatch.setattr(bm, "peak_memory", peak_memory)
    speed.memory_child(name, 1.0, 1, "model.onnx")
    warmup = int(speed.MEMORY_WARMUP_SECONDS * bm.SAMPLE_RATE)
    assert passes == [warmup, "measured", bm.SAMPLE_RATE]
    assert '"forward_peak_mb": 1.0' in capsys.readouterr().out


def git(folder, *args):
    """Runs git in ``folder`` (a test repository), without the user's
    configuration."""
    import subprocess

    subprocess.run(
        ["git", "-C", str(folder), "-c", "user.name=test",
         "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false",
         *args],
        check=True, capture_output=True,
    )


def test_code_revision_of_a_checkout(tmp_path):
    import shutil

    bm = load("bench_models")
    # no .git: no revision, and no error
    assert bm.code_revision(str(tmp_path)) is None
    assert bm.commit_of("HEAD", str(tmp_path)) is None
    assert bm.revision_text(None) == "unknown (no git checkout)"
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    (repo / "benchmarks" / "results").mkdir(parents=True)
    (repo / "code.py").write_text("a = 1\n")
    (repo / "benchmarks" / "results" / "speed.md").write_text("old\n")
    git(repo, "init", "-q")
    # a repository without a commit has no revision either
    assert bm.code_revision(str(repo)) is None
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    head = bm.commit_of("HEAD", str(repo))
    assert len(head) == 40
    assert bm.commit_of("no-such-branch", str(repo)) is None
    assert bm.code_revision(str(repo)) == {
        "commit": head, "uncommitted_changes": False, "changed_files": []}
    # a rewritten results file is not a code change; untracked files are
    # not counted
    (repo / "benchmarks" / "results" / "speed.md").write_text("new\n")
    (repo / "notes.txt").write_text("x\n")
    assert not bm.code_revision(str(repo))["uncommitted_changes"]
    (repo / "code.py").write_text("a = 2\n")
    revision = bm.code_revision(str(repo))
    assert revision["commit"] == head and revision["uncommitted_changes"]
    assert revision["changed_files"] == ["code.py"]
    assert bm.revision_text(revision) == (
        f"`{head[:12]}` with uncommitted changes (1 file)")


def test_cpu_description_names_family_and_model():
    bm = load("bench_models")
    text = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n"
            "model\t\t: 17\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2\n"
            "\nprocessor\t: 1\ncpu family\t: 99\n")
    assert bm.describe_cpu(text) == ("AMD EPYC, family 25 model 17", "AVX2")
    # no model name: the numbers are still there
    assert bm.describe_cpu("cpu family\t: 6\nmodel\t: 85\n") == (
        "unknown CPU, family 6 model 85", "")
    assert bm.describe_cpu("")[0] == "unknown CPU"


def test_compare_revision_writes_its_figures(tmp_path, capsys):
    compare = load("compare_revision")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as stop:
        compare.parse_args(["--rev", "HEAD", "--out",
                            str(blocker / "x.md")])
    assert stop.value.code == 2
    assert f"error: --out {blocker}" in capsys.readouterr().err
    args = compare.parse_args(
        ["--rev", "HEAD~1", "--size", "s", "--rounds", "3",
         "--out", str(tmp_path / "compare.md")])
    names = ["HEAD~1", "working tree"]
    times = {"HEAD~1": [1.2, 1.1, 1.3], "working tree": [1.0, 1.0, 1.0]}
    result = compare.figures(args, names, times, 1e-6)
    assert result["ratio"] == pytest.approx(1.2)
    result.update(
        date="2026-12-06T12:00",
        machine={"cpu": "test CPU", "isa": "AVX2", "cores": 2,
                 "torch": "t", "onnxruntime": "o"},
        rev_commit="f" * 40,
        revision={"commit": "0123456789abcdef", "changed_files": [],
                  "uncommitted_changes": False},
    )
    path = tmp_path / "compare.md"
    compare.write_markdown(str(path), result, "the command")
    text = path.read_text()
    for expected in (
        "- date: 2026-12-06T12:00",
        "- machine: test CPU (AVX2), 2 cores",
        f"`--rev HEAD~1` is commit `{'f' * 40}`; working tree: "
        "`0123456789ab`",
        "- command: `the command`",
        "  HEAD~1: 1.200 s",
        "  HEAD~1 / working tree: 1.200 (per-round ratios: median 1.200, "
        "1.100 to 1.300)",
        "| 3 | 1.300 | 1.000 | 1.300 |",
    ):
        assert expected in text
    # the same lines as printed
    assert "\n".join(compare.summary_lines(result)) in text


def test_matmul_floor_and_torch_compile_record_the_code(tmp_path):
    import json
    import types

    revision = {"commit": "0123456789abcdef", "changed_files": ["a.py"],
                "uncommitted_changes": True}
    floor = load("matmul_floor")
    args = floor.parse_args(["--models", "s", "--out-dir", str(tmp_path)])
    rows = {"s": {"measured_s": 1.0, "floor_s": 0.5, "floor_blas_s": 0.6,
                  "floor_onednn_s": None, "product_gmac": 1.0,
                  "product_calls": 1, "per_shape": []}}
    floor.write_results(args, rows, revision)
    assert ("Code: `0123456789ab` with uncommitted changes (1 file)."
            in (tmp_path / "matmul_floor_custom.md").read_text())
    with open(tmp_path / "matmul_floor_custom.json") as f:
        assert json.load(f)["revision"] == revision
    compile_ = load("torch_compile")
    args = types.SimpleNamespace(size="s", seconds=4.0, threads=2,
                                 repeats=3, out=str(tmp_path / "tc.md"))
    compile_.write_markdown(args, {}, [], revision)
    assert "- code: `0123456789ab` with uncommitted changes" in (
        tmp_path / "tc.md").read_text()


def test_fixture_agreement_measures_the_official_fixtures(tmp_path):
    # the README's "difference from the official code" figures come from
    # this script: it must load through SpeechBrain's stock interface and
    # report real differences (nonzero, within the tests' bounds)
    from inference_helpers import fixture_dir

    module = load("fixture_agreement")
    fixtures = tmp_path / "fixtures"
    fixtures.mkdir()
    os.symlink(fixture_dir("tiny-2spk"), fixtures / "tiny-2spk")
    args = module.parse_args(["--fixtures", str(fixtures), "--threads",
                              "1", "--lengths", "1003"])
    assert args.names == ["tiny-2spk"] and args.name.endswith("_custom")
    result = module.measure(str(fixtures / "tiny-2spk"), args,
                            str(tmp_path / "work"))
    assert result["mixture"] == [2, 1203] and result["params"] == 93704
    for value in (result["torch"][1], result["onnx_official"],
                  result["onnx_torch"][1003]):
        assert 0 < value <= 1e-5
    out = tmp_path / "report.md"
    module.write_markdown(str(out), args, {"tiny-2spk": result}, None, [])
    row = out.read_text().splitlines()[-1]
    assert row.startswith("| tiny-2spk | 93,704 | 2 x 1203 | ")
    assert row.count("e-0") == 3


@pytest.mark.parametrize(
    "script", ["bench_models", "fixture_agreement", "fresh_clone",
               "matmul_floor", "speed"],
)
def test_examples_in_the_benchmark_docstrings(script, monkeypatch):
    # benchmarks/ is outside the package's doctest run (the pruning
    # experiment's examples run in tests/test_pruning_report.py)
    import doctest

    module = load(script)
    # doctest finds a module's examples through sys.modules: another copy
    # there (bench_models, imported by the other scripts) hid them all
    monkeypatch.setitem(sys.modules, script, module)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 1 and result.failed == 0
