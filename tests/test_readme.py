"""The README's short commands work exactly as written.

The commands are read from README.md itself (not copied here), run in a
scratch folder where the files they name exist: the official ModelScope
folder is stood in for by an official-code fixture, ``meeting.wav`` is a
mixture of two real voices. Long commands (training on the real corpora)
are covered by tests/test_recipes.py on mini datasets.
"""

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
FIXTURE = os.path.join(
    REPO, "..", "shared", "fixtures", "modelscope_mossformer", "tiny-2spk"
)
BIN = os.path.dirname(sys.executable)


def readme_blocks(language):
    """The fenced code blocks of a language in README.md."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def readme_command(prefix):
    """The one README shell line that starts with ``prefix``."""
    lines = [
        line.split("#")[0].strip()
        for block in readme_blocks("bash")
        for line in block.splitlines()
        if line.strip().startswith(prefix)
    ]
    assert lines, f"no README command starts with {prefix!r}"
    return lines[0]


def run_shell(command, cwd):
    """Runs a README line with the project's virtualenv first on PATH."""
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"])
    command = command.replace(".venv/bin/python", sys.executable)
    if command.startswith("python "):
        command = sys.executable + command[len("python"):]
    return subprocess.run(
        command, shell=True, cwd=cwd, env=env, capture_output=True, text=True
    )


def run_snippet(marker, cwd):
    """Runs the README's Python block that mentions ``marker``, as written,
    in ``cwd``; returns its variables."""
    snippet = next(b for b in readme_blocks("python") if marker in b)
    namespace = {}
    before = os.getcwd()
    try:
        os.chdir(cwd)
        exec(snippet, namespace)
    finally:
        os.chdir(before)
    return namespace


def real_mixture(path, seconds=3.0, rate=16000):
    """Writes a mixture of a male and a female voice from data/speech."""
    male, r1 = sf.read(os.path.join(
        REPO, "data", "speech", "arctic-aew-M", "arctic_aew_a0001.wav"))
    female, r2 = sf.read(os.path.join(
        REPO, "data", "speech", "arctic-slt-F", "arctic_slt_a0009.wav"))
    assert r1 == r2 == rate
    n = int(seconds * rate)
    mix = 0.5 * (male[:n] + female[:n])
    sf.write(path, mix.astype(np.float32), rate, subtype="PCM_16")


@pytest.fixture()
def workdir(tmp_path):
    if not os.path.isdir(FIXTURE):
        pytest.skip("official fixtures not found beside the checkout")
    shutil.copytree(
        FIXTURE, tmp_path / "speech_mossformer_separation_temporal_8k"
    )
    real_mixture(tmp_path / "meeting.wav")
    (tmp_path / "recordings").mkdir()
    real_mixture(tmp_path / "recordings" / "call.wav", seconds=2.0)
    return tmp_path


def test_readme_opens_with_the_two_commands():
    first = readme_blocks("bash")[0]
    assert first.splitlines()[0].startswith("make quickstart")
    assert first.splitlines()[2].startswith("make test")


def test_model_sizes_command(tmp_path):
    proc = run_shell(
        readme_command("python -m speechbrain_mossformer.model_sizes"),
        REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| MossFormer (L) | 42,101,834 |" in proc.stdout


def test_convert_then_separate_as_the_readme_says(workdir):
    convert = readme_command("python -m speechbrain_mossformer.convert")
    proc = run_shell(convert, workdir)
    assert proc.returncode == 0, proc.stderr
    assert (workdir / "mossformer-wsj0-2mix" / "masknet.ckpt").is_file()

    # The Python snippet of "Separate your own recordings", as written.
    est = run_snippet("separate_file", workdir)["est"]
    info = sf.info(str(workdir / "meeting.wav"))
    assert tuple(est.shape) == (1, info.frames, 2)

    cli = readme_command("mossformer-separate")
    proc = run_shell(cli, workdir)
    assert proc.returncode == 0, proc.stderr
    out = workdir / "separated"
    for name in ("meeting", "call"):
        for k in (1, 2):
            written = sf.info(str(out / f"{name}_spk{k}.wav"))
            assert written.samplerate == 16000


def test_quickstart_runs_end_to_end_in_miniature(tmp_path):
    """`make quickstart`'s script with one short epoch: every stage runs and
    the WAVs, the PNG and the SI-SNRi lines come out."""
    out = tmp_path / "qs"
    proc = subprocess.run(
        [sys.executable, "-m", "speechbrain_mossformer.quickstart",
         "--output", str(out), "--epochs", "1", "--epoch-size", "8"],
        cwd=REPO, capture_output=True, text=True,
        env=dict(os.environ, PATH=BIN + os.pathsep + os.environ["PATH"]),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"test-set mean SI-SNRi .*: -?\d+\.\d+ dB", proc.stdout)
    assert re.search(r"example mixture SI-SNRi: -?\d+\.\d+ dB", proc.stdout)
    assert (out / "separation.png").stat().st_size > 10_000
    separated = sorted(os.listdir(out / "separated"))
    assert len(separated) == 2 and all("_spk" in n for n in separated)
    assert (out / "pretrained" / "hyperparams.yaml").is_file()


def test_export_onnx_then_run_it_as_the_readme_says(tmp_path):
    # the ONNX export command and the onnxruntime snippet, as written, on
    # a small random model: the estimates are the PyTorch model's
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from inference_helpers import random_folder

    random_folder(str(tmp_path / "my_model"))
    proc = run_shell(
        readme_command("python -m speechbrain_mossformer.export_onnx"),
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    rng = np.random.default_rng(0)
    mix = (0.1 * rng.standard_normal(12000)).astype(np.float32)
    sf.write(str(tmp_path / "mixture_8k.wav"), mix, 8000, subtype="FLOAT")
    namespace = run_snippet("onnxruntime", tmp_path)
    import torch

    from speechbrain_mossformer.export_onnx import load_separator

    separator, _ = load_separator(str(tmp_path / "my_model"))
    with torch.inference_mode():
        expected = separator(torch.from_numpy(mix)[None]).numpy()
    assert namespace["estimates"].shape == expected.shape == (1, 12000, 2)
    assert np.abs(namespace["estimates"] - expected).max() < 1e-4
    for k in (1, 2):
        track, rate = sf.read(str(tmp_path / f"spk{k}.wav"))
        assert rate == 8000 and len(track) == 12000
