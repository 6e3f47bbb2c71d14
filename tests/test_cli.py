"""mossformer-separate: files and folders in, tracks out, clear failures."""

import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from inference_helpers import random_folder, write

from speechbrain_mossformer.cli import (
    TRACK_SOFTWARE,
    build_parser,
    is_our_track,
    main,
    track_made_from,
    track_source,
)
from speechbrain_mossformer.inference import MossFormerSeparation

SR = 8000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A micro random MossFormer (8 kHz, 2 speakers): the CLI tests check
    files, rates, lengths and messages, not separation quality."""
    return random_folder(tmp_path_factory.mktemp("model"))


def noise(seconds, rate, channels=1, seed=0, scale=0.2):
    shape = (int(seconds * rate), channels) if channels > 1 else (
        int(seconds * rate),)
    return scale * np.random.default_rng(seed).uniform(-1, 1, shape)


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def error_lines(err):
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_folder_in_tracks_out_at_the_input_rate_and_length(
    model_dir, tmp_path, capsys
):
    inp = tmp_path / "in"
    (inp / "sub").mkdir(parents=True)
    write(inp / "a.wav", noise(1.0, SR), SR)
    write(inp / "b.flac", noise(0.5, 48000, channels=2), 48000, "PCM_24")
    write(inp / "c.wav", noise(0.3, 16000), 16000, "PCM_U8")
    write(inp / "sub" / "d.wav", noise(0.2, SR, seed=1), SR, "FLOAT")
    (inp / "notes.txt").write_text("not audio")
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "--model", model_dir, "--out-dir", out,
                            inp)
    assert code == 0, err
    assert sorted(os.listdir(out)) == [
        "a_spk1.wav", "a_spk2.wav", "b_spk1.wav", "b_spk2.wav",
        "c_spk1.wav", "c_spk2.wav",
    ]
    expect = {"a": (SR, 8000), "b": (48000, 24000), "c": (16000, 4800)}
    for name, (rate, frames) in expect.items():
        for k in (1, 2):
            info = sf.info(str(out / f"{name}_spk{k}.wav"))
            assert (info.samplerate, info.frames) == (rate, frames)
            assert info.subtype == "PCM_16" and info.channels == 1
    assert "a_spk1.wav" in stdout
    # --recursive also takes sub-folders, mirrored below --out-dir
    code, _, err = run(capsys, "--model", model_dir, "--out-dir", out,
                       "--recursive", "--quiet", inp)
    assert code == 0, err
    assert sorted(os.listdir(out / "sub")) == ["d_spk1.wav", "d_spk2.wav"]


def test_written_tracks_are_the_separated_estimates(model_dir, tmp_path,
                                                    capsys):
    path = write(tmp_path / "x.wav", noise(0.5, SR), SR, "FLOAT")
    out = tmp_path / "out"
    code, _, err = run(capsys, "--model", model_dir, "--out-dir", out,
                       "--quiet", path)
    assert code == 0, err
    est = MossFormerSeparation.from_hparams(source=model_dir).separate_file(
        path
    )[0]
    assert est.abs().max() <= 1  # no gain change expected
    for k in (0, 1):
        got, _ = sf.read(str(out / f"x_spk{k + 1}.wav"))
        assert np.abs(got - est[:, k].numpy()).max() <= 1 / 32767


def test_output_sample_rate_and_peak_normalisation(model_dir, tmp_path,
                                                   capsys):
    path = write(tmp_path / "x.wav", noise(0.75, 22050), 22050)
    out = tmp_path / "out"
    code, _, err = run(capsys, "--model", model_dir, "--out-dir", out,
                       "--output-sample-rate", 16000, "--normalize", "peak",
                       "--quiet", path)
    assert code == 0, err
    for k in (1, 2):
        data, rate = sf.read(str(out / f"x_spk{k}.wav"))
        assert rate == 16000
        assert len(data) == math.ceil(0.75 * 22050 * 16000 / 22050)
        assert np.abs(data).max() > 0.999


def test_loud_estimates_are_scaled_not_clipped(model_dir, tmp_path, capsys,
                                               monkeypatch):
    def loud(self, mix):
        return torch.stack([8 * mix, 0.5 * mix], dim=-1)

    monkeypatch.setattr(MossFormerSeparation, "separate_batch", loud)
    x = noise(0.5, SR)
    path = write(tmp_path / "x.wav", x, SR, "FLOAT")
    out = tmp_path / "out"
    code, _, err = run(capsys, "--model", model_dir, "--out-dir", out, path)
    assert code == 0
    assert "x_spk1.wav: peak" in err and "to avoid clipping" in err
    spk1, _ = sf.read(str(out / "x_spk1.wav"))
    spk2, _ = sf.read(str(out / "x_spk2.wav"))
    # scaled copy of 8 * x, not a clipped one; track 2 untouched
    scale = 1 / np.abs(8 * x).max()
    assert np.abs(spk1 - 8 * x * scale).max() < 2e-4
    assert np.abs(spk2 - 0.5 * x).max() < 2e-4


BAD = {
    "zero.wav": (None, "the file is empty"),
    "nosamples.wav": (np.zeros(0), "contains no samples"),
    "short.wav": (np.zeros(10), "too short: 10 samples"),
    "nan.wav": (np.r_[np.zeros(50), np.nan], "NaN or infinite"),
    "corrupt.wav": (b"RIFF\x24\x00\x00\x00WAVEfmt junkjunk",
                    "not a readable audio file"),
    "text.mp3": (b"hello, not an mp3\n" * 10, "not a readable audio file"),
}


@pytest.mark.parametrize("name", sorted(BAD) + ["missing.wav"])
def test_each_bad_input_fails_with_one_clear_line(model_dir, tmp_path,
                                                  capsys, name):
    good = write(tmp_path / "good.wav", noise(0.2, SR), SR)
    bad = str(tmp_path / name)
    if name == "missing.wav":
        problem = "no such file"
    else:
        content, problem = BAD[name]
        if content is None:
            open(bad, "wb").close()
        elif isinstance(content, bytes):
            with open(bad, "wb") as f:
                f.write(content)
        else:
            write(bad, content, SR, "FLOAT")
    out = tmp_path / "out"
    code, _, err = run(capsys, "--model", model_dir, "--out-dir", out, bad,
                       good)
    assert code == 1
    lines = error_lines(err)
    assert lines == [f"error: {bad}: {lines[0].split(': ', 2)[2]}"]
    assert problem in lines[0]
    assert "Traceback" not in err
    # the good file is still written, the bad one leaves nothing behind
    assert sorted(os.listdir(out)) == ["good_spk1.wav", "good_spk2.wav"]


def test_usage_and_model_errors_exit_2(model_dir, tmp_path, capsys):
    good = write(tmp_path / "good.wav", noise(0.2, SR), SR)
    code, _, err = run(capsys, good)  # no --model
    assert code == 2 and "--model" in err
    code, _, err = run(capsys, "--model", tmp_path / "nope", good)
    assert code == 2 and "not a folder" in err
    code, _, err = run(capsys, "--model", model_dir, "--chunk-seconds", 2,
                       "--overlap-seconds", 1.5, good)
    assert code == 2 and "half of --chunk-seconds" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "--model", model_dir, empty)
    assert code == 2 and "no audio files found" in err
    # a folder whose masknet.ckpt does not match its yaml
    bad = tmp_path / "bad_model"
    shutil.copytree(model_dir, bad)
    state = torch.load(bad / "masknet.ckpt", weights_only=True)
    state.pop("pos_enc.scale")
    torch.save(state, bad / "masknet.ckpt")
    code, _, err = run(capsys, "--model", bad, good)
    assert code == 2
    assert "masknet" in err and "pos_enc.scale" in err
    assert len(error_lines(err)) == 1
    if not torch.cuda.is_available():
        code, _, err = run(capsys, "--model", model_dir, "--device", "cuda",
                           good)
        assert code == 2 and "CUDA is not available" in err
        assert err.startswith("error: --device: "), err  # not --model
    code, _, err = run(capsys, "--model", model_dir, "--device", "gpu", good)
    assert code == 2 and err.startswith("error: --device: unknown device")


def test_progress_bar_for_long_files_unless_quiet(model_dir, tmp_path,
                                                  capsys):
    path = write(tmp_path / "long.wav", noise(3.0, SR), SR)
    args = ["--model", model_dir, "--out-dir", tmp_path / "out",
            "--chunk-seconds", 1, "--overlap-seconds", 0.25, path]
    code, out, err = run(capsys, *args)
    assert code == 0 and "%|" in err and "long_spk2.wav" in out
    code, out, err = run(capsys, "--quiet", *args)
    assert code == 0 and out == "" and err == ""
    data, _ = sf.read(str(tmp_path / "out" / "long_spk1.wav"))
    assert len(data) == 3 * SR


def test_the_speaker_order_warning_names_each_file_on_its_own_line(
    model_dir, tmp_path, capsys
):
    # two files with a 3 s pause: the warning said neither which file nor
    # how many borders, and was written into the progress bar's line
    paths = []
    for name, seed in (("pause", 0), ("pause2", 1)):
        mix = noise(8.0, SR, seed=seed)
        mix[2 * SR: 5 * SR] = 0
        paths.append(write(tmp_path / f"{name}.wav", mix, SR))
    code, _, err = run(capsys, "--model", model_dir, "--out-dir",
                       tmp_path / "out", "--chunk-seconds", 1,
                       "--overlap-seconds", 0.25, *paths)
    assert code == 0, err
    lines = [line for line in err.splitlines() if "chunk border" in line]
    assert len(lines) == 2, err
    for line, path in zip(lines, paths):
        assert line.startswith(f"warning: {path}: "), line
        # how many: "1 chunk border (at" or "N chunk borders (at"
        assert " chunk border (at " in line or " chunk borders (at " in line, \
            line


def test_console_script_exit_codes(model_dir, tmp_path):
    script = os.path.join(os.path.dirname(sys.executable),
                          "mossformer-separate")
    if not os.path.exists(script):
        pytest.skip("console script not installed")
    good = write(tmp_path / "good.wav", noise(0.2, SR), SR)
    bad = write(tmp_path / "short.wav", np.zeros(3), SR)
    done = subprocess.run(
        [script, "--quiet", "--model", model_dir, "--out-dir",
         str(tmp_path / "out"), good, bad],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: {bad}: too short: 3 samples (0.38 ms at 8000 Hz); the "
        f"model needs at least one encoder frame, 16 samples (2.00 ms) at "
        f"this rate"
    )
    assert sorted(os.listdir(tmp_path / "out")) == [
        "good_spk1.wav", "good_spk2.wav"
    ]


def test_folder_scan_skips_only_earlier_outputs_of_this_run(
    model_dir, tmp_path, capsys, monkeypatch
):
    # default --out-dir ".": tracks of another program's run are inputs
    data = tmp_path / "proj" / "data"
    data.mkdir(parents=True)
    for k in (1, 2):
        write(data / f"call_spk{k}.wav", noise(0.2, SR, seed=k), SR)
    monkeypatch.chdir(tmp_path / "proj")
    code, _, err = run(capsys, "--model", model_dir, "--quiet", "data")
    assert code == 0, err
    assert os.path.exists("call_spk2_spk1.wav")
    # a sibling folder whose name starts like --out-dir is not inside it
    (tmp_path / "sep").mkdir()
    sib = tmp_path / "sep2"
    sib.mkdir()
    write(sib / "talk_spk1.wav", noise(0.2, SR), SR)
    code, _, err = run(capsys, "--model", model_dir, "--out-dir",
                       tmp_path / "sep", "--quiet", sib)
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "sep")) == [
        "talk_spk1_spk1.wav", "talk_spk1_spk2.wav"]
    # tracks of an input of this run (written by an earlier run) are
    # skipped (with a note) and rewritten; our temporary files are never
    # inputs
    inp = tmp_path / "in"
    inp.mkdir()
    write(inp / "a.wav", noise(0.2, SR), SR)
    for name in ("a_spk1.wav", "a_spk2.wav"):
        write_track(inp / name, noise(0.2, SR, seed=5))
    write(inp / "b_spk1.wav.part.wav", noise(0.2, SR, seed=5), SR)
    write(inp / "b_spk1.wav.part.caf", noise(0.2, SR, seed=5), SR)
    write(inp / ".mossformer-123-spk1.part.caf", noise(0.2, SR, seed=5), SR)
    write(inp / ".mossformer-123-spk2.part.wav", noise(0.2, SR, seed=5), SR)
    before = sf.read(str(inp / "a_spk1.wav"))[0]
    code, out, err = run(capsys, "--model", model_dir, "--out-dir", inp, inp)
    assert code == 0, err
    assert out.splitlines() == [
        f"{inp / 'a.wav'} -> {inp / 'a_spk1.wav'}, {inp / 'a_spk2.wav'}"]
    assert err.splitlines() == [
        f"note: {inp / f'a_spk{k}.wav'}: skipped, an earlier output of "
        f"{inp / 'a.wav'} (it will be overwritten)" for k in (1, 2)
    ]
    assert not np.array_equal(sf.read(str(inp / "a_spk1.wav"))[0], before)
    code, out, err = run(capsys, "--model", model_dir, "--out-dir", inp,
                         "--quiet", inp)
    assert (code, out, err) == (0, "", "")


def write_track(path, data):
    """A track as an earlier run wrote it (marked in its header)."""
    with sf.SoundFile(str(path), "w", samplerate=SR, channels=1,
                      subtype="PCM_16") as f:
        f.software = TRACK_SOFTWARE
        f.write(data)


def test_a_recording_named_like_a_track_is_never_overwritten(
    model_dir, tmp_path, capsys
):
    # a_spk1.wav is someone's recording, not an earlier output: it was
    # skipped "as an earlier output" and overwritten
    inp = tmp_path / "clash"
    inp.mkdir()
    write(inp / "a.wav", noise(0.2, SR), SR)
    recording = write(inp / "a_spk1.wav", noise(0.2, SR, seed=5), SR)
    before = open(recording, "rb").read()
    code, out, err = run(capsys, "--model", model_dir, "--out-dir", inp, inp)
    assert code == 1, err
    # it is an input of this run (separated into a_spk1_spk*.wav) ...
    assert f"{recording} -> " in out
    # ... and a.wav, whose output it would be, is refused
    assert error_lines(err) == [
        f"error: {inp / 'a.wav'}: its output {recording} would overwrite an "
        "input of this run; use another --out-dir"]
    assert open(recording, "rb").read() == before
    # into another folder, where it is not an input either
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    other = write(out_dir / "a_spk2.wav", noise(0.2, SR, seed=6), SR)
    before = open(other, "rb").read()
    code, _, err = run(capsys, "--model", model_dir, "--out-dir", out_dir,
                       inp / "a.wav")
    assert code == 1
    assert error_lines(err) == [
        f"error: {inp / 'a.wav'}: its output {other} exists and is not a "
        "track of an earlier run (mossformer-separate marks its own); use "
        "another --out-dir, or remove it"]
    assert open(other, "rb").read() == before
    assert not os.path.exists(out_dir / "a_spk1.wav")
    # our own tracks are rewritten
    os.remove(other)
    assert run(capsys, "--model", model_dir, "--out-dir", out_dir,
               inp / "a.wav")[0] == 0
    assert run(capsys, "--model", model_dir, "--out-dir", out_dir,
               inp / "a.wav")[0] == 0
    assert is_our_track(str(out_dir / "a_spk1.wav"))


def test_names_like_tracks_that_this_run_does_not_write_are_inputs(
    model_dir, tmp_path, capsys
):
    # a 2-speaker model writes sess_spk1.wav and sess_spk2.wav only
    names = ["sess.wav", "sess_spk0.wav", "sess_spk01.wav", "sess_spk3.wav"]
    for seed, name in enumerate(names):
        write(tmp_path / name, noise(0.2, SR, seed=seed), SR)
    code, out, err = run(capsys, "--model", model_dir, "--out-dir",
                         tmp_path, tmp_path)
    assert (code, err) == (0, "")
    assert [line.split(" -> ")[0] for line in out.splitlines()] == [
        str(tmp_path / name) for name in names
    ]


@pytest.mark.skipif(os.name != "posix", reason="POSIX byte file names")
def test_file_names_that_are_not_utf8_are_separated(model_dir, tmp_path,
                                                    capsys):
    path = write(tmp_path / "x.wav", noise(0.2, SR), SR)
    # "café.wav" in Latin-1: Python keeps the byte 0xe9 as a surrogate
    latin1 = os.fsdecode(os.path.join(os.fsencode(str(tmp_path)),
                                      b"caf\xe9.wav"))
    os.rename(path, latin1)
    code, _, err = run(capsys, "--model", model_dir, "--out-dir",
                       tmp_path / "out", "--quiet", latin1)
    assert (code, err) == (0, "")
    assert sorted(os.listdir(os.fsencode(str(tmp_path / "out")))) == [
        b"caf\xe9_spk1.wav", b"caf\xe9_spk2.wav"]


def test_long_names_use_short_temporary_files(model_dir, tmp_path, capsys):
    # the tracks' names fit the usual 255-byte limit, with ".part.caf"
    # added they would not; one more character and the tracks cannot fit
    fits = write(tmp_path / ("a" * 240 + ".wav"), noise(0.2, SR), SR)
    code, _, err = run(capsys, "--model", model_dir, "--out-dir",
                       tmp_path / "out", "--quiet", fits)
    assert (code, err) == (0, "")
    assert sorted(os.listdir(tmp_path / "out")) == [
        "a" * 240 + f"_spk{k}.wav" for k in (1, 2)]
    too_long = os.path.join(str(tmp_path), "b" * 247 + ".wav")
    os.rename(fits, too_long)
    code, _, err = run(capsys, "--model", model_dir, "--out-dir",
                       tmp_path / "out", "--quiet", too_long)
    assert code == 1
    assert error_lines(err) == [
        f"error: {too_long}: its output name {'b' * 247}_spk1.wav is longer "
        f"than the file system allows (255 bytes); rename the input"
    ]


def test_outputs_never_overwrite_an_input_of_the_run(model_dir, tmp_path,
                                                     capsys):
    # talk_spk1.wav is the user's own recording, not a track of talk.wav
    talk = write(tmp_path / "talk.wav", noise(0.2, SR), SR)
    mine = write(tmp_path / "talk_spk1.wav", noise(0.3, SR, seed=7), SR)
    with open(mine, "rb") as f:
        original = f.read()
    code, out, err = run(capsys, "--model", model_dir, "--out-dir",
                         tmp_path, talk, mine)
    assert code == 1
    assert error_lines(err) == [
        f"error: {talk}: its output {tmp_path / 'talk_spk1.wav'} would "
        f"overwrite an input of this run; use another --out-dir"
    ]
    with open(mine, "rb") as f:
        assert f.read() == original
    assert not os.path.exists(tmp_path / "talk_spk2.wav")
    # the other input is still separated
    assert os.path.exists(tmp_path / "talk_spk1_spk2.wav")


def test_a_failed_file_does_not_reserve_its_output_names(model_dir,
                                                        tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    bad = str(tmp_path / "a" / "x.wav")
    with open(bad, "wb") as f:
        f.write(b"RIFF\x24\x00\x00\x00WAVEfmt junkjunk")
    good = write(tmp_path / "b" / "x.wav", noise(0.2, SR), SR)
    out = tmp_path / "out"
    code, _, err = run(capsys, "--model", model_dir, "--out-dir", out,
                       "--quiet", bad, good)
    assert code == 1
    assert len(error_lines(err)) == 1 and error_lines(err)[0].startswith(
        f"error: {bad}: not a readable audio file")
    assert sorted(os.listdir(out)) == ["x_spk1.wav", "x_spk2.wav"]


@pytest.mark.parametrize(
    "options, message",
    [
        (["--chunk-seconds", "nan"], "--chunk-seconds must be a finite "
         "number, got nan"),
        (["--overlap-seconds", "inf"], "--overlap-seconds must be a finite "
         "number, got inf"),
        (["--chunk-seconds", "0", "--overlap-seconds", "nan"],
         "--overlap-seconds must be a finite number, got nan"),
        # accepted by the option checks, rejected by the model (the overlap
        # is shorter than one encoder frame)
        (["--chunk-seconds", "0.001", "--overlap-seconds", "0.0005"],
         "--chunk-seconds 0.001 --overlap-seconds 0.0005: the overlap must "
         "be between 16 samples"),
        (["--out-dir", "{file}"], "--out-dir {file}: exists and is not a "
         "folder"),
        # one usage error, not one error per input file
        (["--out-dir", "{file}/sub/dir"], "--out-dir {file}/sub/dir: cannot "
         "be made, {file} is not a folder"),
    ],
)
def test_bad_options_are_usage_errors_before_any_work(
    model_dir, tmp_path, capsys, options, message
):
    afile = str(tmp_path / "afile")
    open(afile, "w").close()
    options = [o.format(file=afile) for o in options]
    a = write(tmp_path / "a.wav", noise(0.2, SR), SR)
    b = write(tmp_path / "b.wav", noise(0.2, SR), SR)
    out = ["--out-dir", tmp_path / "out"] if "--out-dir" not in options \
        else []
    code, stdout, err = run(capsys, "--model", model_dir, *out, *options,
                            a, b)
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(
        "error: " + message.format(file=afile)), err
    assert not os.path.exists(tmp_path / "out") and stdout == ""


def test_a_model_giving_nan_writes_nothing_and_says_so(
    model_dir, tmp_path, capsys
):
    # e.g. a diverged checkpoint: NaN used to become full-scale -32768
    # tracks and exit 0
    diverged = tmp_path / "diverged"
    shutil.copytree(model_dir, diverged)
    state = torch.load(diverged / "masknet.ckpt")
    torch.save({k: v * float("nan") if v.is_floating_point() else v
                for k, v in state.items()}, diverged / "masknet.ckpt")
    a = write(tmp_path / "a.wav", noise(0.2, SR), SR)
    out = tmp_path / "out"
    code, _, err = run(capsys, "--model", diverged, "--out-dir", out, a)
    assert code == 1
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(f"error: {a}: ")
    assert "NaN or infinite estimates" in lines[0]
    assert not os.path.exists(out) or os.listdir(out) == []


def test_sigterm_removes_the_partial_tracks_and_exits_143(
    model_dir, tmp_path, capsys, monkeypatch
):
    import signal

    calls = []
    real = MossFormerSeparation.separate_batch

    def killed_on_second_chunk(self, mix):
        calls.append(mix.shape[1])
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, mix)

    monkeypatch.setattr(MossFormerSeparation, "separate_batch",
                        killed_on_second_chunk)
    first = write(tmp_path / "long.wav", noise(4.0, SR), SR)
    second = write(tmp_path / "next.wav", noise(0.2, SR), SR)
    out = tmp_path / "out"
    handler = signal.getsignal(signal.SIGTERM)
    code, _, err = run(capsys, "--model", model_dir, "--out-dir", out,
                       "--chunk-seconds", 1, "--overlap-seconds", 0.25,
                       "--quiet", first, second)
    assert code == 143
    assert error_lines(err) == [f"error: {first}: terminated"]
    assert len(calls) == 2  # stopped there; the next file was not started
    assert os.listdir(out) == []  # no tracks, no *.part.* files
    assert signal.getsignal(signal.SIGTERM) is handler


def listing(folder):
    return sorted(os.listdir(folder))


def test_a_track_of_another_recording_of_the_same_name_is_not_replaced(
    model_dir, tmp_path, capsys, monkeypatch
):
    # day2/meeting.wav silently replaced the tracks of day1/meeting.wav
    (tmp_path / "day1").mkdir()
    (tmp_path / "day2").mkdir()
    day1 = write(tmp_path / "day1" / "meeting.wav", noise(0.2, SR), SR)
    day2 = write(tmp_path / "day2" / "meeting.wav", noise(0.3, SR, seed=3),
                 SR)
    sepd = tmp_path / "sepd"
    code, _, err = run(capsys, "--model", model_dir, "--out-dir", sepd,
                       "--quiet", day1)
    assert (code, err) == (0, "")
    track = str(sepd / "meeting_spk1.wav")
    before = {n: open(sepd / n, "rb").read() for n in listing(sepd)}
    code, out, err = run(capsys, "--model", model_dir, "--out-dir", sepd,
                         day2)
    assert code == 1
    # its file name and a digest of its path (not the folder: the track
    # may be shared)
    assert track_source(track).startswith("meeting.wav sha256:")
    assert str(tmp_path) not in track_source(track)
    assert track_made_from(track_source(track), day1)
    assert err.splitlines() == [
        f"error: {day2}: its output {track} is a track of another "
        "recording named meeting.wav (in another folder); use another "
        "--out-dir, or --overwrite to replace it"]
    assert out == ""
    assert {n: open(sepd / n, "rb").read() for n in listing(sepd)} == before
    # the same input again, by another path: its tracks are rewritten
    monkeypatch.chdir(tmp_path / "day2")
    code, out, err = run(capsys, "--model", model_dir, "--out-dir", sepd,
                         os.path.join("..", "day1", "meeting.wav"))
    assert (code, err) == (0, ""), err
    assert track_made_from(track_source(track), day1)
    # --overwrite replaces the other recording's tracks, with a note
    code, out, err = run(capsys, "--model", model_dir, "--out-dir", sepd,
                         "--overwrite", day2)
    assert code == 0, err
    assert err.splitlines() == [
        f"note: {day2}: its tracks replace those of another recording "
        "named meeting.wav (--overwrite)"]
    assert track_made_from(track_source(track), day2)
    assert sf.info(track).frames == int(0.3 * SR)
    # --overwrite never replaces a file that we did not write
    os.remove(sepd / "meeting_spk2.wav")
    write(sepd / "meeting_spk2.wav", noise(0.1, SR), SR)
    code, _, err = run(capsys, "--model", model_dir, "--out-dir", sepd,
                       "--overwrite", day1)
    assert code == 1 and "is not a track of an earlier run" in err
    assert track_made_from(track_source(track), day2)


def test_a_rerun_with_fewer_speakers_removes_the_inputs_higher_tracks(
    model_dir, tmp_path, capsys
):
    three = random_folder(tmp_path / "model3", num_spks=3)
    a = write(tmp_path / "a.wav", noise(0.2, SR), SR)
    out = tmp_path / "out"
    assert run(capsys, "--model", three, "--out-dir", out, "--quiet",
               a)[0] == 0
    assert listing(out) == [f"a_spk{k}.wav" for k in (1, 2, 3)]
    # another recording's earlier track, and somebody's file, are left
    write_track(out / "a_spk4.wav", noise(0.2, SR))  # source unknown
    recording = write(out / "a_spk5.wav", noise(0.2, SR), SR)
    code, stdout, err = run(capsys, "--model", model_dir, "--out-dir", out,
                            a)
    assert code == 0, err
    assert err.splitlines() == [
        f"note: {out / 'a_spk3.wav'}: removed, an earlier track of {a} "
        f"(this model has 2 speakers)",
        f"note: {out / 'a_spk4.wav'}: left as it is, an earlier track of "
        f"an unknown recording (this model has 2 speakers)",
    ]
    assert listing(out) == [f"a_spk{k}.wav" for k in (1, 2, 4, 5)]
    assert os.path.exists(recording)
    # in the input's own folder the tracks are skipped, then removed
    assert run(capsys, "--model", three, "--out-dir", tmp_path, "--quiet",
               a)[0] == 0
    code, _, err = run(capsys, "--model", model_dir, "--out-dir", tmp_path,
                       tmp_path)
    assert code == 0, err
    assert [line for line in err.splitlines() if "a_spk3" in line] == [
        f"note: {tmp_path / 'a_spk3.wav'}: skipped, an earlier output of "
        f"{a} (it will be removed, this model has 2 speakers)"]
    assert [n for n in listing(tmp_path) if n.endswith(".wav")] == [
        "a.wav", "a_spk1.wav", "a_spk2.wav"]


def test_a_glob_over_the_input_folder_skips_the_earlier_tracks(
    model_dir, tmp_path, capsys
):
    # mossformer-separate in3/*.wav --out-dir in3 after a first run:
    # every original failed and the tracks became *_spk1_spk1.wav
    in3 = tmp_path / "in3"
    in3.mkdir()
    a = write(in3 / "a.wav", noise(0.2, SR), SR)
    b = write(in3 / "b.wav", noise(0.2, SR, seed=1), SR)
    assert run(capsys, "--model", model_dir, "--out-dir", in3, "--quiet",
               in3)[0] == 0
    first = listing(in3)
    assert first == ["a.wav", "a_spk1.wav", "a_spk2.wav", "b.wav",
                     "b_spk1.wav", "b_spk2.wav"]
    glob = [str(in3 / name) for name in first]
    code, out, err = run(capsys, "--model", model_dir, "--out-dir", in3,
                         *glob)
    assert code == 0, err
    assert err.splitlines() == [
        f"note: {in3 / f'{x}_spk{k}.wav'}: skipped, an earlier output of "
        f"{in3 / f'{x}.wav'} (it will be overwritten)"
        for x in "ab" for k in (1, 2)]
    assert [line.split(" -> ")[0] for line in out.splitlines()] == [a, b]
    assert listing(in3) == first
    # a track given without its input is separated, like any recording
    code, out, err = run(capsys, "--model", model_dir, "--out-dir", in3,
                         in3 / "a_spk1.wav")
    assert (code, err) == (0, "")
    assert track_made_from(track_source(str(in3 / "a_spk1_spk1.wav")),
                           str(in3 / "a_spk1.wav"))
    # ... and skipped when its input is there too
    code, out, err = run(capsys, "--model", model_dir, "--out-dir", in3,
                         in3 / "a_spk1.wav", in3 / "a_spk1_spk2.wav")
    assert code == 0, err
    assert err.splitlines() == [
        f"note: {in3 / 'a_spk1_spk2.wav'}: skipped, an earlier output of "
        f"{in3 / 'a_spk1.wav'} (it will be overwritten)"]
    # a folder scan skips every track of a track: the folder does not grow
    before = listing(in3)
    code, out, err = run(capsys, "--model", model_dir, "--out-dir", in3,
                         "--quiet", in3)
    assert (code, err) == (0, "")
    assert listing(in3) == before
    assert [line.split(" -> ")[0] for line in
            run(capsys, "--model", model_dir, "--out-dir", in3, in3)[1]
            .splitlines()] == [a, b]


def test_a_file_given_twice_is_separated_once(model_dir, tmp_path, capsys):
    # overlapping globs, or a folder and a file in it: the second mention
    # was refused as overwriting the first one's tracks (exit 1)
    inp = tmp_path / "in"
    inp.mkdir()
    top = write(inp / "top.wav", noise(0.2, SR), SR)
    # another name of the same file is an input of its own
    os.symlink("top.wav", inp / "latest.wav")
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "--model", model_dir, "--out-dir", out,
                            inp, top, top)
    assert code == 0, err
    assert err.splitlines() == [
        f"note: {top}: given again (as {inp / 'top.wav'}), separated once"
    ] * 2
    assert [line.split(" -> ")[0] for line in stdout.splitlines()] == [
        str(inp / "latest.wav"), str(inp / "top.wav")]
    assert listing(out) == ["latest_spk1.wav", "latest_spk2.wav",
                            "top_spk1.wav", "top_spk2.wav"]


def test_inputs_that_differ_only_in_the_extension_each_get_tracks(
    model_dir, tmp_path, capsys
):
    # only mix8k.mp3 (first in order) was separated, the others failed
    inp = tmp_path / "in"
    inp.mkdir()
    names = ["mix8k.mp3", "mix8k.ogg", "mix8k.wav", "other.wav"]
    for seed, name in enumerate(names):
        write(inp / name, noise(0.5, SR, seed=seed), SR)
    code, out, err = run(capsys, "--model", model_dir, "--out-dir", inp,
                         inp)
    assert (code, err) == (0, "")
    tracks = [f"{name}_spk{k}.wav" for name in names[:3] for k in (1, 2)]
    tracks += ["other_spk1.wav", "other_spk2.wav"]
    assert listing(inp) == sorted(names + tracks)
    assert track_made_from(track_source(str(inp / "mix8k.ogg_spk2.wav")),
                           str(inp / "mix8k.ogg"))
    # a rerun rewrites the same tracks
    code, out, err = run(capsys, "--model", model_dir, "--out-dir", inp,
                         "--quiet", inp)
    assert (code, out, err) == (0, "", "")
    assert listing(inp) == sorted(names + tracks)
    # in other folders too; a single input keeps today's name
    (tmp_path / "x").mkdir()
    flac = write(tmp_path / "x" / "mix8k.flac", noise(0.2, SR), SR)
    out_dir = tmp_path / "out"
    code, _, err = run(capsys, "--model", model_dir, "--out-dir", out_dir,
                       "--quiet", inp / "mix8k.wav", flac)
    assert (code, err) == (0, "")
    assert listing(out_dir) == [
        "mix8k.flac_spk1.wav", "mix8k.flac_spk2.wav", "mix8k.wav_spk1.wav",
        "mix8k.wav_spk2.wav"]
    assert "a.flac_spk1.wav" in " ".join(build_parser().format_help().split())


def test_unsearched_sub_folders_are_named(model_dir, tmp_path, capsys):
    # sub-folders were skipped without a word, and a folder holding only
    # sub-folders was "no audio files found" with no hint
    inp = tmp_path / "in"
    (inp / "day1").mkdir(parents=True)
    write(inp / "day1" / "a.wav", noise(0.2, SR), SR)
    out = tmp_path / "out"
    code, _, err = run(capsys, "--model", model_dir, "--out-dir", out, inp)
    assert code == 2
    assert error_lines(err) == [
        f"error: no audio files found in {inp} (extensions: "
        + err.split("(extensions: ")[1].split(")")[0]
        + f"); sub-folders of {inp} were not searched (--recursive "
        "searches them)"
    ]
    write(inp / "b.wav", noise(0.2, SR), SR)
    code, _, err = run(capsys, "--model", model_dir, "--out-dir", out, inp)
    assert code == 0, err
    assert (f"note: {inp}: 1 sub-folder not searched (--recursive "
            "searches them)") in err
    assert sorted(os.listdir(out)) == ["b_spk1.wav", "b_spk2.wav"]
    # the output folder inside the input folder is not counted
    (inp / "day1" / "a.wav").unlink()
    (inp / "day1").rmdir()
    code, _, err = run(capsys, "--model", model_dir, "--out-dir",
                       inp / "separated", inp)
    assert code == 0, err
    assert "not searched" not in err


def test_equal_names_from_two_folders_say_how_to_separate_both(
    model_dir, tmp_path, capsys
):
    for day in ("day1", "day2"):
        (tmp_path / day).mkdir()
        write(tmp_path / day / "meeting.wav", noise(0.2, SR), SR)
    out = tmp_path / "out"
    code, _, err = run(capsys, "--model", model_dir, "--out-dir", out,
                       tmp_path / "day1", tmp_path / "day2")
    assert code == 1
    assert error_lines(err) == [
        f"error: {tmp_path / 'day2' / 'meeting.wav'}: its outputs "
        f"meeting_spk*.wav would overwrite those of "
        f"{tmp_path / 'day1' / 'meeting.wav'}; separate it in another run "
        "with another --out-dir"
    ]


def test_a_short_chunk_alone_takes_a_quarter_chunk_overlap(
    model_dir, tmp_path, capsys
):
    # --chunk-seconds 1 alone was refused: the default 2 s overlap is more
    # than half of it
    write(tmp_path / "a.wav", noise(3.0, SR), SR)
    code, _, err = run(capsys, "--model", model_dir, "--out-dir",
                       tmp_path / "out", "--chunk-seconds", "1", "--quiet",
                       tmp_path / "a.wav")
    assert code == 0, err
    assert sf.info(str(tmp_path / "out" / "a_spk1.wav")).frames == 3 * SR
    code, _, err = run(capsys, "--model", model_dir, "--out-dir",
                       tmp_path / "out", "--chunk-seconds", "1",
                       "--overlap-seconds", "0.6", tmp_path / "a.wav")
    assert code == 2
    assert error_lines(err) == [
        "error: --overlap-seconds must be at most half of --chunk-seconds"]
