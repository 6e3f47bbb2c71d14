"""The three recipes end to end on mini datasets in each corpus' exact layout.

Each mini dataset is built from the real speech bundled in data/speech
(under 1 s per clip at 8 kHz); the model is a tiny MossFormer.
"""

import csv
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from speechbrain_mossformer.dataprep import minidata

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(REPO, "recipes")
PYTHON = sys.executable
TINY = [
    "--N_encoder_out=16",
    "--out_channels=16",
    "--num_blocks=1",
    "--group_size=8",
    "--query_key_dim=8",
    "--num_workers=0",
    "--device=cpu",
    "--noprogressbar",
]


def recipe_paths(dataset, yaml):
    folder = {
        "wsj0mix": "WSJ0Mix",
        "wham": "WHAMandWHAMR",
        "librimix": "LibriMix",
    }[dataset]
    base = os.path.join(RECIPES, folder, "separation")
    return os.path.join(base, "train.py"), os.path.join(base, "hparams", yaml)


def merge_args(*groups):
    """Command-line overrides; a later ``--key=value`` replaces an earlier."""
    merged = {}
    for group in groups:
        for arg in group:
            key = arg.split("=", 1)[0]
            merged[key] = arg
    return list(merged.values())


def run_train(dataset, yaml, data_folder, output, *extra, check=True):
    script, hparams = recipe_paths(dataset, yaml)
    cmd = [PYTHON, script, hparams] + merge_args(
        [
            f"--data_folder={data_folder}",
            f"--output_folder={output}",
            "--N_epochs=2",
        ],
        TINY,
        extra,
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)}\nexit {proc.returncode}\n{proc.stderr[-4000:]}"
        )
    return proc


def read_results(output):
    with open(os.path.join(output, "test_results.csv")) as f:
        return list(csv.DictReader(f))


def train_log_epochs(output):
    with open(os.path.join(output, "train_log.txt")) as f:
        return [
            int(line.split(",")[0].split(":")[1])
            for line in f
            if line.startswith("epoch:")
        ]


def assert_complete_run(output, n_test, num_epochs=2):
    assert train_log_epochs(output) == list(range(1, num_epochs + 1))
    rows = read_results(output)
    assert [r["snt_id"] for r in rows][-1] == "avg"
    assert len(rows) == n_test + 1
    for row in rows:
        for key in ("sdr", "sdr_i", "si-snr", "si-snr_i"):
            assert math.isfinite(float(row[key])), (key, row)
    ckpts = [d for d in os.listdir(os.path.join(output, "save"))
             if d.startswith("CKPT+")]
    assert ckpts, "no checkpoint written"
    for name in ("encoder", "masknet", "decoder", "optimizer", "counter"):
        path = os.path.join(output, "save", ckpts[0], f"{name}.ckpt")
        assert os.path.isfile(path), path
    for name in ("hyperparams.yaml", "log.txt", "env.log"):
        assert os.path.isfile(os.path.join(output, name)), name


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("minidata"))
    return {
        "wsj2": minidata.make_wsj0mix(root, num_spks=2),
        "wsj3": minidata.make_wsj0mix(root, num_spks=3),
        "si_tr_s": minidata.make_wsj0_si_tr_s(root),
        "wham": minidata.make_wham(root, reverb=False),
        "whamr": minidata.make_wham(root, reverb=True),
        "libri2": minidata.make_librimix(root, num_spks=2),
        "libri3": minidata.make_librimix(root, num_spks=3),
        "librispeech": minidata.make_librispeech(root),
    }


@pytest.mark.parametrize(
    "dataset, yaml, key, extra",
    [
        ("wsj0mix", "mossformer.yaml", "wsj2", []),
        ("wsj0mix", "mossformer-3mix.yaml", "wsj3", []),
        ("wham", "mossformer-wham.yaml", "wham",
         ["--ckpt_interval_steps=2"]),  # replaces the yaml's 60 minutes
        ("wham", "mossformer-whamr.yaml", "whamr", ["--n_synthetic_rirs=4"]),
        ("librimix", "mossformer-libri2mix.yaml", "libri2",
         ["--precision=bf16", "--eval_precision=bf16"]),  # autocast (CPU)
        ("librimix", "mossformer-libri3mix.yaml", "libri3",
         ["--precision=fp16"]),  # fp16 asked for on CPU: falls back to fp32
    ],
)
def test_recipe_prepares_trains_two_epochs_and_evaluates(
    data, tmp_path, dataset, yaml, key, extra
):
    out = str(tmp_path / "out")
    run_train(dataset, yaml, data[key], out, *extra)
    assert_complete_run(out, n_test=4)
    if key == "whamr":
        assert os.path.isfile(os.path.join(out, "save", "rirs.csv"))


@pytest.mark.parametrize(
    "dataset, yaml, key, pool, extra",
    [
        ("wsj0mix", "mossformer.yaml", "wsj2", "si_tr_s", []),
        ("wham", "mossformer-wham.yaml", "wham", "si_tr_s", []),
        ("librimix", "mossformer-libri2mix.yaml", "libri2", "librispeech",
         ["--use_noise=True"]),
    ],
)
def test_dynamic_mixing_path_of_each_recipe(
    data, tmp_path, dataset, yaml, key, pool, extra
):
    out = str(tmp_path / "out")
    run_train(
        dataset, yaml, data[key], out,
        "--dynamic_mixing=True",
        f"--base_folder_dm={data[pool]}",
        "--training_signal_len=4000",
        "--dm_epoch_size=4",
        *extra,
    )
    assert_complete_run(out, n_test=4)


def test_killed_run_resumes_from_its_last_checkpoint(data, tmp_path):
    out = str(tmp_path / "out")
    script, hparams = recipe_paths("wsj0mix", "mossformer.yaml")
    cmd = [
        PYTHON, script, hparams, f"--data_folder={data['wsj2']}",
        f"--output_folder={out}", "--N_epochs=4", "--ckpt_interval_minutes=0",
        "--ckpt_interval_steps=3",
        *TINY,
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    log = os.path.join(out, "train_log.txt")
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if os.path.isfile(log) and train_log_epochs(out):
            break  # epoch 1 is done: kill during epoch 2
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = train_log_epochs(out)
    assert killed_at and killed_at[-1] < 4
    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    epochs = train_log_epochs(out)
    assert sorted(set(epochs)) == [1, 2, 3, 4]
    assert epochs[-1] == 4
    assert "Epoch loaded: 4" in open(log).read()
    assert len(read_results(out)) == 5


def test_ddp_two_ranks_train_identical_weights(data, tmp_path):
    out = str(tmp_path / "out")
    _, hparams = recipe_paths("wsj0mix", "mossformer.yaml")
    torchrun = os.path.join(os.path.dirname(PYTHON), "torchrun")
    cmd = [
        torchrun, "--nproc_per_node=2", "--master_port=29517",
        os.path.join(REPO, "tests", "helpers", "ddp_train.py"), "wsj0mix",
        hparams, f"--data_folder={data['wsj2']}", f"--output_folder={out}",
        "--N_epochs=1", "--distributed_backend=gloo", "--batch_size=2",
        "--use_speedperturb=False", *TINY,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rank0 = torch.load(os.path.join(out, "rank0_weights.pt"))
    rank1 = torch.load(os.path.join(out, "rank1_weights.pt"))
    # 8 training items, batch 2, 2 ranks: 2 optimizer steps per rank.
    assert rank0["optimizer_step"] == rank1["optimizer_step"] == 2
    for module, state in rank0["state"].items():
        for key, value in state.items():
            assert torch.equal(value, rank1["state"][module][key]), key
    # and training did change the weights (not a no-op run)
    assert len(read_results(out)) == 5


def test_tiny_model_learns_at_least_3_db_on_a_fixed_mini_set(data, tmp_path):
    out = str(tmp_path / "out")
    run_train(
        "wsj0mix", "mossformer.yaml", data["wsj2"], out,
        "--N_epochs=12", "--lr=0.002", "--use_speedperturb=False",
        "--N_encoder_out=32", "--out_channels=32", "--seed=3",
    )
    with open(os.path.join(out, "train_log.txt")) as f:
        losses = [
            float(line.split("train loss:")[1].split(",")[0])
            for line in f
            if line.startswith("epoch:")
        ]
    # loss = -SI-SNR: SI-SNR improvement of the last epoch over the first
    assert losses[0] - losses[-1] >= 3.0, losses


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "does not exist"),
        ("empty", "empty"),
        ("wav16k", "wav8k"),
        ("corrupt", "corrupt.wav"),
    ],
)
def test_clear_errors_for_bad_data_folders(data, tmp_path, case, message):
    import shutil

    folder = tmp_path / "2speakers"
    if case == "missing":
        folder = tmp_path / "no_such_folder"
    elif case == "empty":
        folder.mkdir()
    elif case == "wav16k":
        shutil.copytree(data["wsj2"], folder)
    elif case == "corrupt":
        shutil.copytree(data["wsj2"], folder)
        mix = folder / "wav8k" / "min" / "tr" / "mix"
        name = sorted(os.listdir(mix))[0]
        for sub in ("mix", "s1", "s2"):
            os.remove(mix.parent / sub / name)
            (mix.parent / sub / "corrupt.wav").write_bytes(b"RIFF garbage")
    extra = ["--sample_rate=16000"] if case == "wav16k" else []
    proc = run_train(
        "wsj0mix", "mossformer.yaml", str(folder), str(tmp_path / "out"),
        *extra, check=False,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last
    assert "Traceback" not in proc.stderr
