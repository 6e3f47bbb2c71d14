"""ONNX export of a pretrained MossFormer folder: ONNX Runtime vs PyTorch on
several lengths and batch sizes, the official fixture outputs, and clear
errors for bad folders."""

import os
import shutil
import sys

import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from speechbrain_mossformer.convert import convert  # noqa: E402
import speechbrain_mossformer.export_onnx as export_onnx  # noqa: E402
from speechbrain_mossformer.export_onnx import (  # noqa: E402
    TRACE_LENGTH,
    ExportError,
    check_lengths,
    export_separator,
    load_separator,
    main,
)
from inference_helpers import fixture_dir, random_folder  # noqa: E402


pytestmark = [
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """tiny-2spk converted to a pretrained folder and exported once."""
    root = tmp_path_factory.mktemp("onnx")
    folder = str(root / "pretrained")
    convert(fixture_dir("tiny-2spk"), folder)
    path = str(root / "tiny.onnx")
    assert main([folder, path, "--no-verify"]) == 0
    separator, info = load_separator(folder)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return folder, path, separator, session


def run_both(separator, session, mix):
    with torch.no_grad():
        expected = separator(mix)
    (got,) = session.run(None, {"mixture": mix.numpy()})
    return torch.from_numpy(got), expected


# tiny-2spk: group size 16, encoder kernel 16 / stride 8, so
# frames = (samples - 16) // 8 + 1.
LENGTHS = [
    16,  # 1 frame
    16 + 8 * 7,  # 8 frames, shorter than one group
    16 + 8 * 15,  # 16 frames: exactly one group
    16 + 8 * 31,  # 32 frames: exactly two groups
    16 + 8 * 31 + 5,  # samples beyond the last whole frame (end padding)
    1001,  # ragged
    4003,  # the tracing length
]


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("length", LENGTHS)
def test_onnx_runtime_matches_torch(exported, batch, length):
    _, _, separator, session = exported
    mix = torch.randn(batch, length, generator=torch.Generator().manual_seed(3))
    got, expected = run_both(separator, session, mix)
    assert got.shape == (batch, length, 2)
    assert (got - expected).abs().max().item() <= 1e-4


def test_onnx_runtime_reproduces_official_outputs(exported):
    _, _, _, session = exported
    io = torch.load(os.path.join(fixture_dir("tiny-2spk"), "io.pt"))
    (got,) = session.run(None, {"mixture": io["mixture"].numpy()})
    assert (torch.from_numpy(got) - io["estimates"]).abs().max() <= 1e-4


def test_three_speaker_export(tmp_path):
    folder = str(tmp_path / "pretrained")
    convert(fixture_dir("tiny-3spk"), folder)
    path = str(tmp_path / "tiny3.onnx")
    assert main([folder, path]) == 0  # includes the built-in check
    io = torch.load(os.path.join(fixture_dir("tiny-3spk"), "io.pt"))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"mixture": io["mixture"].numpy()})
    assert got.shape == tuple(io["estimates"].shape)
    assert (torch.from_numpy(got) - io["estimates"]).abs().max() <= 1e-4


def test_full_width_export_stays_exact_on_long_inputs(tmp_path):
    # the official code at MossFormer's real width (512 channels): ONNX
    # Runtime's own GroupNorm (InstanceNormalization) was 1.4e-4 off at
    # 4003 samples and 4.7e-4 at 8000, growing with the length
    folder = str(tmp_path / "pretrained")
    convert(fixture_dir("full-width-2blocks"), folder)
    path = str(tmp_path / "full.onnx")
    assert main([folder, path]) == 0  # includes the built-in check
    separator, _ = load_separator(folder)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    mix = torch.randn(1, 24003, generator=torch.Generator().manual_seed(3))
    got, expected = run_both(separator, session, mix)
    assert (got - expected).abs().max().item() <= 2e-5
    io = torch.load(os.path.join(fixture_dir("full-width-2blocks"), "io.pt"))
    (got,) = session.run(None, {"mixture": io["mixture"].numpy()})
    assert (torch.from_numpy(got) - io["estimates"]).abs().max() <= 1e-5


def test_graph_has_dynamic_batch_and_time(exported):
    import onnx

    _, path, _, _ = exported
    model = onnx.load(path)
    (inp,) = model.graph.input
    (out,) = model.graph.output
    in_dims = [d.dim_param for d in inp.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value
                for d in out.type.tensor_type.shape.dim]
    assert in_dims == ["batch", "time"]
    assert out_dims == ["batch", "time", 2]


def test_bad_folders_give_clear_errors(exported, tmp_path, capsys):
    folder = exported[0]
    out = str(tmp_path / "x.onnx")
    with pytest.raises(ExportError, match="not a folder"):
        load_separator(str(tmp_path / "missing"))

    no_ckpt = tmp_path / "no_ckpt"
    shutil.copytree(folder, no_ckpt)
    os.remove(no_ckpt / "masknet.ckpt")
    with pytest.raises(ExportError, match=r"missing masknet\.ckpt"):
        load_separator(str(no_ckpt))

    bad_shape = tmp_path / "bad_shape"
    shutil.copytree(folder, bad_shape)
    state = torch.load(bad_shape / "decoder.ckpt")
    state["weight"] = torch.zeros(3, 1, 16)
    torch.save(state, bad_shape / "decoder.ckpt")
    with pytest.raises(ExportError, match="decoder: parameter 'weight'"):
        load_separator(str(bad_shape))

    bad_yaml = tmp_path / "bad_yaml"
    shutil.copytree(folder, bad_yaml)
    with open(bad_yaml / "hyperparams.yaml", "w") as f:
        f.write("modules: !new:no.such.Module\n")
    with pytest.raises(ExportError, match="cannot be loaded"):
        load_separator(str(bad_yaml))

    assert main([str(no_ckpt), out]) == 2
    assert "missing masknet.ckpt" in capsys.readouterr().err
    assert main([folder, str(tmp_path / "nodir" / "x.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_export_of_a_module_traced_at_another_length(tmp_path):
    """The graph does not depend on the tracing length (here 1 frame)."""
    from speechbrain_mossformer.export_onnx import SeparatorForExport
    from speechbrain_mossformer.lobes.models.mossformer import (
        MossFormerWrapper,
    )

    torch.manual_seed(0)
    model = MossFormerWrapper(encoder_out_nchannels=16, num_blocks=1,
                              group_size=4, query_key_dim=8).eval()
    sep = SeparatorForExport(model.encoder, model.masknet, model.decoder, 2)
    path = str(tmp_path / "m.onnx")
    export_separator(sep, path, example_length=16)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for length in (16, 57, 300):
        mix = torch.randn(2, length)
        got, expected = run_both(sep, session, mix)
        assert (got - expected).abs().max().item() <= 1e-4


def test_output_path_problems_are_one_line_errors(tmp_path, capsys):
    folder = random_folder(tmp_path / "micro")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert main([folder, str(out_dir)]) == 2
    assert capsys.readouterr().err == (
        f"error: {out_dir}: is a folder; give the path of the .onnx file "
        f"to write\n")
    # a folder that does not exist yet: a file named like it was written
    new = str(tmp_path / "new") + os.sep
    assert main([folder, new]) == 2
    assert capsys.readouterr().err == (
        f"error: {new}: names a folder; give the path of the .onnx file to "
        f"write, e.g. {new}model.onnx\n")
    assert not os.path.exists(tmp_path / "new")
    with open(os.path.join(folder, "decoder.ckpt"), "wb") as f:
        f.write(b"junk\n")
    assert main([folder, str(tmp_path / "x.onnx")]) == 2
    assert capsys.readouterr().err == (
        f"error: {os.path.join(folder, 'decoder.ckpt')}: not a PyTorch "
        f"checkpoint (unrecognised data)\n")


def test_a_recipe_run_folder_is_pointed_to_export_checkpoint(tmp_path,
                                                             capsys):
    run = tmp_path / "run"
    (run / "save").mkdir(parents=True)
    (run / "hyperparams.yaml").write_text("num_spks: 2\n")
    assert main([str(run), str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "python -m speechbrain_mossformer.export_checkpoint " \
        f"{run} OUT_DIR: this is a recipe's run folder" in err, err


def test_without_the_onnx_package_the_error_says_what_to_install(
    tmp_path, capsys, monkeypatch
):
    # after a plain "pip install -e .": torch's exporter failed deep inside
    folder = random_folder(tmp_path / "micro")
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx fails
    assert main([folder, str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ONNX export needs the onnx package: "
                          "pip install onnx onnxruntime"), err
    assert not os.path.exists(tmp_path / "x.onnx")


def test_output_path_inside_the_model_folder_is_refused(tmp_path, capsys):
    folder = random_folder(tmp_path / "micro")
    target = os.path.join(folder, "masknet.ckpt")
    with open(target, "rb") as f:
        before = f.read()
    assert main([folder, target, "--no-verify"]) == 2
    err = capsys.readouterr().err
    assert "masknet.ckpt" in err and len(err.splitlines()) == 1
    with open(target, "rb") as f:
        assert f.read() == before


def test_a_file_that_is_not_an_onnx_model_is_not_replaced(tmp_path,
                                                          capsys):
    # OUT was written over whatever it named: another model's checkpoint,
    # a recording, the folder's custom.py
    folder = random_folder(tmp_path / "micro")
    for name, data in (("other.ckpt", b"PK\x03\x04weights"),
                       ("meeting.wav", b"RIFF....WAVE"),
                       ("empty.onnx", b""),
                       ("notes.onnx", b"my notes\n")):
        target = tmp_path / name
        target.write_bytes(data)
        assert main([folder, str(target), "--no-verify"]) == 2
        err = capsys.readouterr().err
        assert err == (f"error: {target}: exists and is not an ONNX model; "
                       "refusing to replace it: give another path, or "
                       "remove it first\n")
        assert target.read_bytes() == data
    custom = os.path.join(folder, "custom.py")
    if os.path.exists(custom):
        with open(custom, "rb") as f:
            before = f.read()
        assert main([folder, custom, "--no-verify"]) == 2
        with open(custom, "rb") as f:
            assert f.read() == before
    # an earlier export is replaced
    earlier = str(tmp_path / "earlier.onnx")
    for _ in range(2):
        assert main([folder, earlier, "--no-verify"]) == 0, \
            capsys.readouterr().err


def diverged_copy(source, folder):
    """A copy of the pretrained folder ``source`` whose mask net's weights
    are all NaN (a diverged model); returns ``folder``."""
    shutil.copytree(source, folder)
    state = torch.load(os.path.join(folder, "masknet.ckpt"))
    state = {k: v * float("nan") if v.is_floating_point() else v
             for k, v in state.items()}
    torch.save(state, os.path.join(folder, "masknet.ckpt"))
    return folder


def test_the_check_fails_on_non_finite_estimates(exported, tmp_path, capsys):
    """A NaN difference must not read as a perfect match (max(0, nan) is 0
    in Python): a diverged model's export fails the check."""
    folder = diverged_copy(exported[0], str(tmp_path / "diverged"))
    out = str(tmp_path / "d.onnx")
    assert main([folder, out]) == 1
    err = capsys.readouterr().err
    assert "PyTorch gave NaN or infinite estimates" in err
    assert len(err.strip().splitlines()) == 1


# ----------------------------------------------------------------------
# The command line's check: options, what is left at OUT, its lengths


@pytest.mark.parametrize("value", ["nan", "-1", "inf", "-inf", "-0.5e-4"])
def test_tolerance_must_be_finite_and_not_negative(tmp_path, capsys, value):
    # nan passed every check (diff > nan is False) and -1 exported then
    # always failed: both are refused before anything is exported
    folder = random_folder(tmp_path / "micro")
    out = tmp_path / "x.onnx"
    assert main([folder, str(out), f"--tolerance={value}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --tolerance must be a finite number >= 0, "
                          "got "), err
    assert len(err.splitlines()) == 1
    assert os.listdir(tmp_path) == ["micro"]


def test_lengths_option(tmp_path, capsys):
    folder = random_folder(tmp_path / "micro")
    out = str(tmp_path / "x.onnx")
    for bad in ("16,abc", "0", "", "16,-3", "1.5"):
        assert main([folder, out, "--lengths", bad]) == 2, bad
        err = capsys.readouterr().err
        assert err.startswith("error: --lengths must be comma-separated "
                              "numbers of samples"), err
        assert len(err.splitlines()) == 1
    assert main([folder, out, "--lengths", "8,100"]) == 2
    assert capsys.readouterr().err == (
        "error: --lengths: 8 samples is shorter than one encoder frame "
        "(16 samples)\n")
    assert not os.path.exists(out)
    assert main([folder, out, "--lengths", "16, 300"]) == 0
    assert "lengths (16, 300): max |diff|" in capsys.readouterr().out


def test_a_failed_check_leaves_no_file(tmp_path, capsys):
    """A graph that fails the check is not left at OUT, where it would
    pass for a good export, nor in a temporary file beside it."""
    folder = random_folder(tmp_path / "micro")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = str(out_dir / "x.onnx")
    # the micro model's ONNX Runtime outputs differ by about 1e-7
    assert main([folder, out, "--tolerance", "0"]) == 1
    assert os.listdir(out_dir) == []
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}: not written: difference "), err
    assert err.endswith(" above tolerance 0\n"), err


def test_a_failed_check_leaves_an_existing_file_as_it_was(
    exported, tmp_path, capsys
):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "x.onnx"
    folder = random_folder(tmp_path / "micro")
    assert main([folder, str(out), "--no-verify"]) == 0  # the earlier graph
    earlier = out.read_bytes()
    assert main([folder, str(out), "--tolerance", "0"]) == 1
    assert out.read_bytes() == earlier
    assert os.listdir(out_dir) == ["x.onnx"]
    assert "not written" in capsys.readouterr().err
    # the same for a check failed on NaN estimates
    diverged = diverged_copy(exported[0], str(tmp_path / "diverged"))
    assert main([diverged, str(out)]) == 1
    assert out.read_bytes() == earlier
    assert os.listdir(out_dir) == ["x.onnx"]
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}: not written: PyTorch gave NaN"), err
    # a passing check replaces it
    assert main([folder, str(out)]) == 0
    ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert os.listdir(out_dir) == ["x.onnx"]


def test_the_tolerance_is_printed_as_given(tmp_path, capsys, monkeypatch):
    # was formatted with .0e: 1.5e-4 read "2e-04", above the difference
    folder = random_folder(tmp_path / "micro")
    out = str(tmp_path / "x.onnx")
    monkeypatch.setattr(export_onnx, "verify", lambda *a, **k: 2e-4)
    assert main([folder, out, "--tolerance", "1.5e-4"]) == 1
    assert capsys.readouterr().err == (
        f"error: {out}: not written: difference 2.00e-04 above tolerance "
        "0.00015\n")
    assert main([folder, out, "--tolerance", "2.5e-4"]) == 0
    assert os.path.isfile(out)


@pytest.mark.parametrize("how, status, word", [
    ("interrupt", 130, "interrupted"),
    ("terminate", 143, "terminated"),
])
def test_an_interrupted_export_leaves_out_as_it_was(
    tmp_path, capsys, monkeypatch, how, status, word
):
    import signal

    folder = random_folder(tmp_path / "micro")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "x.onnx"
    assert main([folder, str(out), "--no-verify"]) == 0  # the earlier graph
    earlier = out.read_bytes()

    def stop(*args, **kwargs):
        # the graph is fully written by now, under a temporary name
        assert len(os.listdir(out_dir)) == 2
        if how == "interrupt":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(export_onnx, "verify", stop)
    assert main([folder, str(out)]) == status
    assert capsys.readouterr().err == (
        f"error: {word}; {out} not written\n")
    assert out.read_bytes() == earlier
    assert os.listdir(out_dir) == ["x.onnx"]
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_symbolic_link_is_written_through(tmp_path):
    folder = random_folder(tmp_path / "micro")
    target = tmp_path / "graphs" / "model.onnx"
    target.parent.mkdir()
    link = tmp_path / "x.onnx"
    link.symlink_to(target)
    assert main([folder, str(link), "--no-verify"]) == 0  # a new file
    assert main([folder, str(link), "--no-verify"]) == 0  # replaced
    assert link.is_symlink()
    ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    assert os.listdir(target.parent) == ["model.onnx"]


def test_the_check_goes_past_several_attention_groups(tmp_path, capsys,
                                                      monkeypatch):
    """The check ran at 16, 1003 and 4003 samples only: for MossFormer (L)
    (groups of 256 frames, 2048 samples) never past two groups, and 4003
    is the tracing length."""
    # MossFormer (L): 8893 samples = 1110 frames, 4 groups and a part
    lengths = check_lengths(16, 8, 256)
    frames = (lengths[-1] - 16) // 8 + 1
    assert frames > 4 * 256 and frames % 256 != 0
    assert (lengths[-1] - 16) % 8 != 0  # samples beyond the last frame
    assert lengths[-1] > 2 * TRACE_LENGTH
    # what main checks, at which batch sizes
    calls = []

    def record(separator, path, lengths, batch=2, batches=None):
        calls.append((tuple(lengths), tuple(batches)))
        return 0.0

    monkeypatch.setattr(export_onnx, "verify", record)
    folder = random_folder(tmp_path / "micro", group_size=32)
    assert load_separator(folder)[1]["group_size"] == 32
    assert main([folder, str(tmp_path / "x.onnx")]) == 0
    longest = check_lengths(16, 8, 32)[-1]
    assert calls == [((16, 1003, TRACE_LENGTH, longest), (2, 2, 2, 1))]
    assert (longest - 16) // 8 + 1 > 4 * 32
    out = capsys.readouterr().out
    assert f"lengths (16, 1003, 4003, {longest}): max |diff|" in out
    calls.clear()
    assert main([folder, str(tmp_path / "x.onnx"),
                 "--lengths", "16,64000"]) == 0
    assert calls == [((16, 64000), (2, 1))]


def test_verify_reports_the_worst_length_not_the_last(tmp_path):
    # a graph wrong at short lengths only must not pass because the last
    # length checked is right
    from speechbrain_mossformer.export_onnx import SeparatorForExport
    from speechbrain_mossformer.lobes.models.mossformer import (
        MossFormerWrapper,
    )

    model = MossFormerWrapper(encoder_out_nchannels=16, num_blocks=1,
                              group_size=4, query_key_dim=8).eval()
    separator = SeparatorForExport(
        model.encoder, model.masknet, model.decoder, 2)
    path = str(tmp_path / "model.onnx")
    export_separator(separator, path, example_length=203)

    def wrong_when_short(mix):
        return separator(mix) + (1.0 if mix.shape[1] == 16 else 0.0)

    assert export_onnx.verify(
        wrong_when_short, path, lengths=(16, 1003)) >= 0.99
