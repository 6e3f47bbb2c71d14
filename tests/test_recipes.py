"""The three recipes end to end on mini datasets in each corpus' exact layout.

Each mini dataset is built from the real speech bundled in data/speech
(under 1 s per clip at 8 kHz); the model is a tiny MossFormer.
"""

import csv
import glob
import math
import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml

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
    # train.py: the recipe itself goes with the run (SpeechBrain copied
    # only the module that called it, recipe.py)
    for name in ("hyperparams.yaml", "log.txt", "env.log", "train.py"):
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
        ("wsj0mix", "mossformer-3mix.yaml", "wsj3",
         ["--use_reverb=True", "--n_synthetic_rirs=4"]),  # any corpus
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
    if key == "libri3":  # the fp16 fallback is in the run's own log
        with open(os.path.join(out, "log.txt")) as f:
            assert "--precision=fp16 needs a GPU; using fp32 on CPU" \
                in f.read()


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
    # SIGKILL in epoch 2's fifth step: nothing runs on the way out; the
    # periodic checkpoint after its third step is what there is
    out = str(tmp_path / "out")
    proc, resume = sigterm_run(
        "kill", data, out, "--ckpt_interval_minutes=0",
        "--ckpt_interval_steps=3",
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert train_log_epochs(out) == [1]
    (intra,) = intra_epoch_checkpoints(out)
    with open(os.path.join(out, "save", intra, "brain.ckpt")) as f:
        assert yaml.safe_load(f)["step"] == 3
    assert_resumes_to_the_end(resume, out)


def assert_resumes_to_the_end(cmd, out):
    """Runs ``cmd`` again: it ends training (4 epochs) and tests."""
    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    epochs = train_log_epochs(out)
    assert sorted(set(epochs)) == [1, 2, 3, 4]
    assert epochs[-1] == 4
    assert "Epoch loaded: 4" in open(os.path.join(out, "train_log.txt")).read()
    assert len(read_results(out)) == 5


def sigterm_run(where, data, out, *extra):
    """The wsj0-2mix recipe, 4 epochs, sending itself SIGTERM at ``where``
    (see ``tests/helpers/sigterm_recipe.py``); returns the finished process
    and the command that resumes it."""
    script, hparams = recipe_paths("wsj0mix", "mossformer.yaml")
    args = [hparams, f"--data_folder={data['wsj2']}",
            f"--output_folder={out}", "--N_epochs=4", *TINY, *extra]
    helper = os.path.join(REPO, "tests", "helpers", "sigterm_recipe.py")
    proc = subprocess.run([PYTHON, helper, where, "wsj0mix", *args],
                          cwd=REPO, capture_output=True, text=True)
    return proc, [PYTHON, script, *args]


def intra_epoch_checkpoints(out):
    """The complete intra-epoch checkpoints of a run."""
    save = os.path.join(out, "save")
    found = []
    for name in sorted(os.listdir(save)):
        meta = os.path.join(save, name, "CKPT.yaml")  # complete ones
        if os.path.isfile(meta) and (
            "end-of-epoch: false" in open(meta).read()
        ):
            found.append(name)
    return found


@pytest.mark.parametrize(
    "where, logged, saved",
    [
        # the step in progress completes, then an intra-epoch checkpoint
        ("step", [1], "saved an intra-epoch checkpoint"),
        # epoch 2's training is complete: saved as at its end, and the
        # resumed run validates it again
        ("validation", [1], "saved an intra-epoch checkpoint"),
        # held through the log line (where it was once swallowed, and the
        # run went on to the end) and epoch 1's checkpoint; epoch 2 never
        # starts, and nothing needs saving
        ("log@1", [1], "stopped between epochs"),
        # after the last epoch's checkpoint: no test stage, nothing saved
        # (an intra-epoch checkpoint there would retrain epoch 4)
        ("log@4", [1, 2, 3, 4], "stopped between epochs"),
    ],
)
def test_sigterm_stops_with_everything_trained_saved(
    data, tmp_path, where, logged, saved
):
    # a preempted job: exit 143, one line saying how to resume, and the
    # same command resumes to the end
    out = str(tmp_path / "out")
    proc, resume = sigterm_run(where, data, out)
    assert proc.returncode == 143, proc.stderr[-3000:]
    assert saved in proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "terminated (SIGTERM): run the same command again to resume")
    assert train_log_epochs(out) == logged
    assert len(intra_epoch_checkpoints(out)) == (
        1 if saved.startswith("saved") else 0)
    assert not os.path.isfile(os.path.join(out, "test_results.csv"))
    assert_resumes_to_the_end(resume, out)


def test_ddp_two_ranks_train_identical_weights(data, tmp_path):
    out = str(tmp_path / "out")
    _, hparams = recipe_paths("wsj0mix", "mossformer.yaml")
    torchrun = os.path.join(os.path.dirname(PYTHON), "torchrun")
    cmd = [
        torchrun, "--standalone", "--nproc_per_node=2",
        os.path.join(REPO, "tests", "helpers", "ddp_train.py"), "wsj0mix",
        hparams, f"--data_folder={data['wsj2']}", f"--output_folder={out}",
        # no --distributed_backend: a CPU run gets gloo by itself
        "--N_epochs=1", "--batch_size=2",
        "--use_speedperturb=False", *TINY,
        # blocks recomputed in the backward pass: DDP's gradient hooks
        # must still agree on every rank
        "--activation_checkpointing=True",
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


def test_ddp_sigterm_on_one_rank_after_the_last_epoch_stops_both(
    data, tmp_path
):
    # only rank 1 signalled, in the last epoch's log line: it stopped alone
    # and rank 0 went on into the test stage, its collectives unanswered
    out = str(tmp_path / "out")
    _, hparams = recipe_paths("wsj0mix", "mossformer.yaml")
    torchrun = os.path.join(os.path.dirname(PYTHON), "torchrun")
    args = [hparams, f"--data_folder={data['wsj2']}",
            f"--output_folder={out}", "--N_epochs=2",
            "--use_speedperturb=False", *TINY]
    helper = os.path.join(REPO, "tests", "helpers", "sigterm_recipe.py")
    env = dict(os.environ, OMP_NUM_THREADS="1", SIGTERM_RANK="1")
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", helper,
         "log@2", "wsj0mix", *args],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=300,
    )
    # each rank stops with its own line: the one signalled (SIGTERM) and
    # the one that agreed to stop with it
    assert "terminated (SIGTERM): run the same command" in proc.stderr, \
        proc.stderr[-4000:]
    assert "interrupted: run the same command" in proc.stderr, \
        proc.stderr[-4000:]
    assert train_log_epochs(out) == [1, 2]
    assert not os.path.isfile(os.path.join(out, "test_results.csv"))
    script, _ = recipe_paths("wsj0mix", "mossformer.yaml")
    resumed = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", script,
         *args],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert train_log_epochs(out) == [1, 2]  # nothing trained again
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


@pytest.mark.parametrize(
    "extra, message",
    [
        # SpeechBrain's Encoder strides by kernel_size // 2
        (["--kernel_size=32", "--kernel_stride=8"], "kernel_stride is 8"),
        (["--use_reverb=True", "--rir_csv=/no/such/rirs.csv"], "rir_csv"),
        (["--skip_prep=True"], "skip_prep is True but"),
        (["--test_only"], "no end-of-epoch checkpoint"),
        # the mixtures themselves as the dynamic mixing pool
        (["--dynamic_mixing=True", "--base_folder_dm=DATA"], "overlap"),
        # overrides checked against the yaml before anything is built
        (["--N_epoch=2"], "has no such setting (did you mean --N_epochs?)"),
        (["--number_of_epochs=2"], "(did you mean --N_epochs?)"),
        # before the run folder and the data are set up (it was a torch
        # traceback after data preparation)
        (["--device=cuda:99"], "--device: device 'cuda:99'"),
        (["--train_data=/no/such.csv"], "--train_data /no/such.csv: no "
         "such file"),
        (["--N_epochs=two"], "--N_epochs two: expected a whole number"),
        (["--lr=abc"], "--lr abc: expected a number"),
        (["--batch_size=0"], "--batch_size 0: expected a whole number"),
    ],
)
def test_clear_errors_for_bad_options(data, tmp_path, extra, message):
    out = str(tmp_path / "out")
    extra = [arg.replace("DATA", data["wsj2"]) for arg in extra]
    proc = run_train(
        "wsj0mix", "mossformer.yaml", data["wsj2"], out, *extra, check=False
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last
    assert "Traceback" not in proc.stderr
    assert not os.path.isfile(os.path.join(out, "test_results.csv"))


def test_own_manifests_and_the_earlier_runs_settings_are_kept(data,
                                                             tmp_path):
    # SpeechBrain's train_data/valid_data/test_data were unknown settings;
    # and every run rewrote hyperparams.yaml, losing how the model was
    # trained
    out = str(tmp_path / "out")
    run_train("wsj0mix", "mossformer.yaml", data["wsj2"], out, "--N_epochs=1")
    with open(os.path.join(out, "hyperparams.yaml")) as f:
        first = f.read()
    subsets = {}
    for split, key in (("tr", "train_data"), ("tt", "test_data")):
        with open(os.path.join(out, "save", f"wsj0mix_{split}.csv")) as f:
            rows = f.readlines()
        subsets[key] = str(tmp_path / f"subset_{split}.csv")
        with open(subsets[key], "w") as f:
            f.writelines(rows[:3])  # the header and 2 mixtures
    run_train("wsj0mix", "mossformer.yaml", data["wsj2"], out,
              "--N_epochs=2", *(f"--{k}={v}" for k, v in subsets.items()))
    assert train_log_epochs(out) == [1, 2]
    assert len(read_results(out)) == 2 + 1  # the test subset (and avg)
    with open(os.path.join(out, "log.txt")) as f:
        assert f"train: {subsets['train_data']} (--train_data)" in f.read()
    kept = glob.glob(os.path.join(out, "hyperparams.20*.yaml"))
    assert len(kept) == 1
    with open(kept[0]) as f:
        assert f.read() == first
    with open(os.path.join(out, "hyperparams.yaml")) as f:
        assert "subset_tr.csv" in f.read()  # this run's settings


def test_run_folder_is_not_resumed_with_another_model_or_task(data, tmp_path):
    out = str(tmp_path / "out")
    run_train("wsj0mix", "mossformer.yaml", data["wsj2"], out, "--N_epochs=1")
    saved = os.path.join(out, "hyperparams.yaml")
    before = open(saved).read()
    for dataset, yaml, key, extra, change in [
        ("wsj0mix", "mossformer.yaml", "wsj2", ["--sample_rate=16000"],
         "sample_rate: 8000 -> 16000"),
        ("wsj0mix", "mossformer.yaml", "wsj2", ["--num_blocks=2"],
         "num_blocks: 1 -> 2"),
        ("wham", "mossformer-wham.yaml", "wham", [], "experiment_name"),
    ]:
        proc = run_train(dataset, yaml, data[key], out, "--N_epochs=2",
                         *extra, check=False)
        assert proc.returncode == 2, proc.stderr[-3000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert "holds checkpoints" in last and change in last, last
        # the run's record is left as it was, and nothing trained
        assert open(saved).read() == before
        assert train_log_epochs(out) == [1]


def test_unreadable_audio_mid_training_is_one_line_and_keeps_progress(
    data, tmp_path
):
    import shutil

    out = str(tmp_path / "out")
    run_train("wsj0mix", "mossformer.yaml", data["wsj2"], out, "--N_epochs=1")
    # the same corpus elsewhere, one training source gone after preparation
    moved = str(tmp_path / "moved")
    shutil.copytree(data["wsj2"], moved)
    s2 = os.path.join(moved, "wav8k", "min", "tr", "s2")
    gone = os.path.join(s2, sorted(os.listdir(s2))[-1])
    os.remove(gone)
    ckpts = set(os.listdir(os.path.join(out, "save")))
    proc = run_train("wsj0mix", "mossformer.yaml", moved, out,
                     "--N_epochs=2", "--skip_prep=True", "--num_workers=1",
                     check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and gone in last and "not found" in last
    assert "Traceback" not in last
    # an intra-epoch checkpoint of epoch 2's progress was saved
    assert len(set(os.listdir(os.path.join(out, "save"))) - ckpts) == 1
    log = open(os.path.join(out, "log.txt")).read()
    assert "resuming with changed settings: data_folder" in log


@pytest.mark.parametrize("kernel", [16, 32])
@pytest.mark.parametrize(
    "dataset, yaml",
    [
        ("wsj0mix", "mossformer.yaml"),
        ("wsj0mix", "mossformer-3mix.yaml"),
        ("wham", "mossformer-wham.yaml"),
        ("wham", "mossformer-whamr.yaml"),
        ("librimix", "mossformer-libri2mix.yaml"),
        ("librimix", "mossformer-libri3mix.yaml"),
    ],
)
def test_recipe_decoder_stride_follows_the_encoder_kernel(
    dataset, yaml, kernel, tmp_path
):
    from hyperpyyaml import load_hyperpyyaml

    # output_folder: the yaml's Checkpointer creates its folder
    overrides = {"data_folder": "unused", "output_folder": str(tmp_path),
                 "kernel_size": kernel,
                 "N_encoder_out": 16, "out_channels": 16, "num_blocks": 1,
                 "query_key_dim": 8}
    with open(recipe_paths(dataset, yaml)[1]) as f:
        hparams = load_hyperpyyaml(f, overrides)
    encoder = hparams["modules"]["encoder"].conv1d
    decoder = hparams["modules"]["decoder"]
    assert encoder.stride[0] == decoder.stride[0] == kernel // 2
    mix = torch.randn(1, 40 * kernel)
    from speechbrain_mossformer.lobes.models.mossformer import (
        separate_with_modules,
    )
    est = separate_with_modules(
        encoder=hparams["modules"]["encoder"],
        masknet=hparams["modules"]["masknet"],
        decoder=decoder, mix=mix, num_spks=hparams["num_spks"],
    )
    # every sample is estimated (a stride mismatch left the end at zero)
    assert est[0, -kernel:].abs().sum() > 0


def test_reverberant_whamr_targets_turn_reverb_augmentation_off():
    from speechbrain_mossformer.recipe import check_settings

    hparams = {"whamr": True, "whamr_targets": "reverb", "use_reverb": True,
               "reverb": object(), "kernel_size": 16, "kernel_stride": 8}
    notes = check_settings(hparams)
    assert hparams["use_reverb"] is False
    assert "already reverberant" in notes[0]
    anechoic = dict(hparams, whamr_targets="anechoic", use_reverb=True)
    assert check_settings(anechoic) == [] and anechoic["use_reverb"] is True


def test_overrides_that_the_brain_accepts_pass_the_check():
    from speechbrain_mossformer.recipe import RecipeError, check_overrides

    _, wsj = recipe_paths("wsj0mix", "mossformer.yaml")
    given = "data_folder: /d\n"
    # read with float() by the Brain; a hyperpyyaml reference; null
    for extra in ("loss_upper_lim: inf", "threshold: -inf",
                  "N_epochs: !ref <seed>", "init_from: null", "lr: 1e-3",
                  "threshold: -25.5"):
        check_overrides(wsj, given + extra)
    with pytest.raises(RecipeError, match="command-line overrides: found "
                       "duplicate key"):
        check_overrides(wsj, given + "N_epochs: 1\nN_epochs: 2")
    # the closest *setting*, not an object such as train_logger
    with pytest.raises(RecipeError) as err:
        check_overrides(wsj, given + "train_loger: x")
    assert "did you mean --train_logger" not in str(err.value)


def test_a_switch_given_a_value_is_named():
    from speechbrain_mossformer.recipe import (
        RecipeError, check_switch_values, run_recipe)

    _, wsj = recipe_paths("wsj0mix", "mossformer.yaml")
    # SpeechBrain blamed --N_epochs ("1 True") or printed a raw yaml error
    for argv in (
        [wsj, "--data_folder", "/d", "--N_epochs", "1", "--noprogressbar",
         "True"],
        [wsj, "--noprogressbar", "True", "--data_folder", "/d"],
        [wsj, "--data_folder", "/d", "--test_only=False"],
    ):
        with pytest.raises(RecipeError) as err:
            run_recipe(argv, "wsj0mix")
        message = str(err.value)
        assert "is a switch and takes no value" in message
        assert message.startswith(("--noprogressbar", "--test_only"))
    # a switch before the yaml, or followed by the next option: fine
    check_switch_values(["--noprogressbar", wsj, "--data_folder", "/d"])
    check_switch_values([wsj, "--debug", "--device", "cpu"])


def test_ddp_backend_follows_the_device():
    from speechbrain.utils.run_opts import RunOptions

    from speechbrain_mossformer.recipe import RecipeError, choose_ddp_backend

    torchrun = {"LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}
    # CPU without a backend named: gloo (nccl fails on every rank)
    opts = choose_ddp_backend(
        RunOptions.from_dictionary({"device": "cpu"}), torchrun)
    assert opts["distributed_backend"] == "gloo"
    assert opts["device"] == "cpu"
    # and marked as given: SpeechBrain's Brain takes only given options
    assert "distributed_backend" in opts.overridden_args
    # nccl named on CPU: one line saying what to use
    with pytest.raises(RecipeError, match="use --distributed_backend gloo"):
        choose_ddp_backend(RunOptions.from_dictionary(
            {"device": "cpu", "distributed_backend": "nccl"}), torchrun)
    # gloo or mpi named: left as given; no torchrun: nothing changes
    for backend in ("gloo", "mpi"):
        given = RunOptions.from_dictionary(
            {"device": "cpu", "distributed_backend": backend})
        assert choose_ddp_backend(given, torchrun) is given
    alone = RunOptions.from_dictionary({"device": "cpu"})
    assert choose_ddp_backend(alone, {}) is alone


def test_init_from_another_sample_rate_is_logged(tmp_path, caplog):
    import logging

    from speechbrain_mossformer.pretrained import (
        load_modules,
        render_hyperparams,
        write_pretrained_folder,
    )
    from speechbrain_mossformer.recipe import load_initial_weights

    cfg = {"N_encoder_out": 16, "out_channels": 16, "num_blocks": 1,
           "group_size": 4, "query_key_dim": 8, "sample_rate": 16000}
    modules = load_modules(render_hyperparams(cfg))
    folder = str(tmp_path / "pre")
    write_pretrained_folder(
        folder, cfg, {k: m.state_dict() for k, m in modules.items()}
    )
    fresh = load_modules(render_hyperparams(dict(cfg, sample_rate=8000)))
    with caplog.at_level(logging.WARNING):
        load_initial_weights(
            {"init_from": folder, "sample_rate": 8000, "modules": fresh}
        )
    assert "trained at 16000 Hz and this run uses 8000 Hz" in caplog.text


# ---------------------------------------------------------------------------
# Regressions: dynamic mixing with reverberant WHAMR! targets, test speakers
# in the dynamic mixing folder, RIR sample rates, use_noise without noise,
# unreadable dynamic mixing files


def dm_hparams(data, tmp_path, **extra):
    hparams = {
        "data_folder": data["whamr"], "save_folder": str(tmp_path / "save"),
        "sample_rate": 8000, "num_spks": 2, "whamr": True,
        "whamr_targets": "anechoic", "use_reverb": True, "use_noise": True,
        "reverb": object(), "rir_csv": None, "n_synthetic_rirs": 4,
        "dynamic_mixing": True, "base_folder_dm": data["si_tr_s"],
        "training_signal_len": 4000, "dm_epoch_size": 4, "seed": 1,
        "kernel_size": 16, "kernel_stride": 8,
    }
    hparams.update(extra)
    return hparams


def test_dynamic_mixing_with_reverberant_whamr_targets_reverberates(
    data, tmp_path
):
    from speechbrain_mossformer.recipe import (
        check_settings, dynamic_mixing_dataset, ensure_rirs, prepare_data)

    hparams = dm_hparams(data, tmp_path, whamr_targets="reverb")
    check_settings(hparams)
    csvs = prepare_data(hparams, "wham")
    ensure_rirs(hparams)
    dm = dynamic_mixing_dataset(hparams, "wham", csvs["train"], csvs["test"])
    # the validation/test targets are reverberant: so are the training ones
    assert dm.rir_files and dm.reverberant_targets
    item = dm[0]
    rebuilt = item["s1_sig"] + item["s2_sig"] + item["noise_sig"]
    assert torch.allclose(item["mix_sig"], rebuilt, atol=1e-5)


def test_dynamic_mixing_refuses_test_speakers(data, tmp_path):
    import shutil

    from speechbrain_mossformer.recipe import (
        RecipeError, dynamic_mixing_dataset, mixture_speakers, prepare_data)

    # --base_folder_dm given as the whole WSJ0 folder: si_tr_s plus the
    # evaluation speakers (here: the test mixtures' own first sources)
    wsj0 = str(tmp_path / "wsj0")
    shutil.copytree(data["si_tr_s"], os.path.join(wsj0, "si_tr_s"))
    tt = os.path.join(data["wsj2"], "wav8k", "min", "tt", "s1")
    for name in os.listdir(tt):
        utt = name.split("_")[0]
        folder = os.path.join(wsj0, "si_et_05", utt[:3])
        os.makedirs(folder, exist_ok=True)
        shutil.copy(os.path.join(tt, name), os.path.join(folder, utt + ".wav"))
    hparams = {"data_folder": data["wsj2"],
               "save_folder": str(tmp_path / "save"), "sample_rate": 8000,
               "num_spks": 2, "base_folder_dm": wsj0,
               "training_signal_len": 4000, "seed": 1}
    csvs = prepare_data(hparams, "wsj0mix")
    assert mixture_speakers(csvs["test"], "wsj0mix")
    with pytest.raises(RecipeError, match="speakers of the test mixtures"):
        dynamic_mixing_dataset(hparams, "wsj0mix", csvs["train"], csvs["test"])
    # the training split alone is fine
    hparams["base_folder_dm"] = data["si_tr_s"]
    dynamic_mixing_dataset(hparams, "wsj0mix", csvs["train"], csvs["test"])
    # LibriMix IDs: <spk>-<chapter>-<utt>_...
    hparams = {"data_folder": data["libri2"],
               "save_folder": str(tmp_path / "save2"), "sample_rate": 8000,
               "num_spks": 2}
    csvs = prepare_data(hparams, "librimix")
    test_spk = mixture_speakers(csvs["test"], "librimix")
    first_id = open(csvs["test"]).readlines()[1].split(",")[0]
    assert first_id.split("-")[0] in test_spk
    # LibriMix validates on held-out (dev) speakers: a pool that holds
    # one of them (dev-clean beside train-clean-360) is refused too
    pool = str(tmp_path / "LibriSpeech")
    shutil.copytree(data["librispeech"], pool)
    dev_spk = sorted(mixture_speakers(csvs["valid"], "librimix"))[0]
    dev = os.path.join(data["libri2"], "wav8k", "min", "dev", "s1")
    name = next(n for n in sorted(os.listdir(dev)) if n.startswith(dev_spk))
    utt = name.split("_")[0]
    folder = os.path.join(pool, "dev-clean", dev_spk, utt.split("-")[1])
    os.makedirs(folder)
    shutil.copy(os.path.join(dev, name), os.path.join(folder, utt + ".wav"))
    hparams.update(base_folder_dm=pool, training_signal_len=4000, seed=1)
    with pytest.raises(RecipeError, match="speakers of the validation "
                       "mixtures"):
        dynamic_mixing_dataset(hparams, "librimix", csvs["train"],
                               csvs["test"], csvs["valid"])
    hparams["base_folder_dm"] = data["librispeech"]
    dynamic_mixing_dataset(hparams, "librimix", csvs["train"], csvs["test"],
                           csvs["valid"])


def test_rirs_at_another_sample_rate_are_resampled(tmp_path):
    import numpy as np
    import soundfile as sf
    from speechbrain.augment.time_domain import AddReverb

    from speechbrain_mossformer.recipe import RecipeError, configure_reverb

    rir = np.zeros(3200)
    rir[0], rir[1600] = 1.0, 0.5  # an echo 0.1 s after the direct path
    sf.write(str(tmp_path / "r.wav"), rir, 16000)
    csv_path = str(tmp_path / "rirs.csv")
    with open(csv_path, "w") as f:
        f.write("ID,duration,wav,wav_format,wav_opts\n"
                "r,0.2,$rir_root/r.wav,wav,\n")
    reverb = AddReverb(csv_file=None, reverb_sample_rate=8000,
                       clean_sample_rate=8000)  # as the 8 kHz yamls build it
    hparams = {"use_reverb": True, "reverb": reverb, "rir_csv": csv_path,
               "sample_rate": 8000}
    configure_reverb(hparams)
    x = torch.zeros(1, 8000)
    x[0, 100] = 1.0
    y = reverb(x)[0].abs()
    peaks = (y > 0.2 * y.max()).nonzero().flatten()
    assert abs(int(peaks[-1] - peaks[0]) - 800) <= 2  # 0.1 s at 8 kHz
    # RIRs of mixed rates: a clear error
    sf.write(str(tmp_path / "q.wav"), rir, 8000)
    with open(csv_path, "a") as f:
        f.write("q,0.4,$rir_root/q.wav,wav,\n")
    with pytest.raises(RecipeError, match="different sample rates"):
        configure_reverb(hparams)


def test_use_noise_without_noise_column_is_a_clear_error(data, tmp_path):
    from speechbrain_mossformer.recipe import (
        RecipeError, audio_datasets, prepare_data)

    hparams = {"data_folder": data["wsj2"],
               "save_folder": str(tmp_path / "save"), "sample_rate": 8000,
               "num_spks": 2, "use_noise": True}
    csvs = prepare_data(hparams, "wsj0mix")
    with pytest.raises(RecipeError, match="no noise_wav column"):
        audio_datasets(hparams, csvs)


def test_unreadable_dynamic_mixing_file_keeps_progress(data, tmp_path):
    import shutil

    pool = str(tmp_path / "si_tr_s")
    shutil.copytree(data["si_tr_s"], pool)
    spk = sorted(os.listdir(pool))[0]
    bad = os.path.join(pool, spk, spk + "zzzz.wav")
    with open(bad, "w") as f:
        f.write("not audio")
    for name in os.listdir(os.path.join(pool, spk)):  # the only file left
        if os.path.join(pool, spk, name) != bad:
            os.remove(os.path.join(pool, spk, name))
    out = str(tmp_path / "out")
    proc = run_train("wsj0mix", "mossformer.yaml", data["wsj2"], out,
                     "--N_epochs=1", "--dynamic_mixing=True",
                     f"--base_folder_dm={pool}", "--training_signal_len=4000",
                     "--dm_epoch_size=40", check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and bad in last
    log = open(os.path.join(out, "log.txt")).read()
    assert "stopped: saved an intra-epoch checkpoint" in log
    assert any(n.startswith("CKPT+") for n in os.listdir(out + "/save"))


def test_dynamic_mixing_refuses_held_out_noise(data, tmp_path):
    import shutil

    from speechbrain_mossformer.recipe import (
        RecipeError, dynamic_mixing_dataset, prepare_data)

    hparams = dm_hparams(data, tmp_path, use_reverb=False)
    csvs = prepare_data(hparams, "wham")
    # the root of the WHAM! noise release: tr, cv and tt side by side
    root = tmp_path / "wham_noise"
    for split in ("tr", "cv", "tt"):
        shutil.copytree(
            os.path.join(data["whamr"], "wav8k", "min", split, "noise"),
            root / split,
        )
    hparams["noise_folder_dm"] = str(root)
    with pytest.raises(RecipeError, match="held-out folders cv, tt"):
        dynamic_mixing_dataset(hparams, "wham", csvs["train"], csvs["test"])
    hparams["noise_folder_dm"] = str(root / "tr")
    assert dynamic_mixing_dataset(hparams, "wham", csvs["train"])[0][
        "noise_sig"
    ].numel()


def test_a_data_error_under_ddp_saves_no_checkpoint(monkeypatch):
    # Saving is collective under DDP: a data error stops one process while
    # the others wait in their step's all-reduce, so saving there hangs.
    import torch

    from speechbrain_mossformer import recipe
    from speechbrain_mossformer.dataprep.csv_manifest import (
        DataPreparationError)

    class FakeBrain:
        checkpointer = object()
        saved = 0

        def _save_intra_epoch_ckpt(self):
            self.saved += 1

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    brain = FakeBrain()
    for err in (DataPreparationError("x"), recipe.AudioReadError("x")):
        assert recipe.save_progress(brain, err) is False
    assert brain.saved == 0
    # Ctrl-C reaches every process: still saved
    assert recipe.save_progress(brain, KeyboardInterrupt()) is True
    assert brain.saved == 1
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 1)
    assert recipe.save_progress(brain, DataPreparationError("x")) is True
    assert brain.saved == 2


# ---------------------------------------------------------------------------
# Regressions: multichannel RIRs, a changed batch size within an epoch, a run
# folder with checkpoints but no hyperparams.yaml, dm_epoch_size


def write_rir_csv(folder, channels):
    """A RIR manifest with one RIR file per entry of ``channels``."""
    import numpy as np
    import soundfile as sf

    os.makedirs(folder, exist_ok=True)
    rows = []
    for k, n in enumerate(channels):
        t = np.arange(800) / 8000
        rir = np.random.default_rng(k).standard_normal(800) * np.exp(-t / 0.02)
        rir[0] = 1.0
        if n > 1:
            rir = np.stack([rir] * n, axis=1)
        sf.write(os.path.join(folder, f"r{k}.wav"), rir, 8000)
        rows.append(f"r{k},0.1,$rir_root/r{k}.wav,wav,\n")
    path = os.path.join(folder, "rirs.csv")
    with open(path, "w") as f:
        f.write("ID,duration,wav,wav_format,wav_opts\n" + "".join(rows))
    return path


@pytest.mark.parametrize("how", ["use_reverb", "dynamic_mixing"])
def test_multichannel_rir_is_refused_at_setup(data, tmp_path, how):
    # AddReverb failed deep in training (TypeError, ~40 lines) and dynamic
    # mixing silently took the first channel: both refuse it at setup
    rirs = str(tmp_path / "rirs")
    rir_csv = write_rir_csv(rirs, [1, 2])
    stereo = os.path.join(rirs, "r1.wav")
    out = str(tmp_path / "out")
    if how == "use_reverb":
        proc = run_train("wsj0mix", "mossformer.yaml", data["wsj2"], out,
                         "--use_reverb=True", f"--rir_csv={rir_csv}",
                         "--N_epochs=1", check=False)
    else:  # WHAMR! with reverberant targets: dynamic mixing reverberates
        proc = run_train("wham", "mossformer-whamr.yaml", data["whamr"], out,
                         "--whamr_targets=reverb", "--dynamic_mixing=True",
                         f"--base_folder_dm={data['si_tr_s']}",
                         "--training_signal_len=4000", "--dm_epoch_size=2",
                         f"--rir_csv={rir_csv}", "--N_epochs=1", check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and stereo in last, last
    assert "has 2 channels" in last and "must be mono" in last, last
    assert "Traceback" not in proc.stderr
    assert not any(n.startswith("CKPT+")
                   for n in os.listdir(os.path.join(out, "save")))


def test_batch_size_change_within_an_epoch_is_refused(data, tmp_path):
    # SpeechBrain fast-forwards the saved number of *batches* at the new
    # batch size: the rest of the interrupted epoch was silently skipped
    out = str(tmp_path / "out")
    save = os.path.join(out, "save")
    proc, _ = sigterm_run("step", data, out)  # stopped during epoch 2
    assert proc.returncode == 143, proc.stderr[-3000:]
    intra = intra_epoch_checkpoints(out)
    assert len(intra) == 1, os.listdir(save)
    ckpts = sorted(n for n in os.listdir(save) if n.startswith("CKPT+"))
    saved = open(os.path.join(out, "hyperparams.yaml")).read()
    epochs = train_log_epochs(out)

    proc = run_train("wsj0mix", "mossformer.yaml", data["wsj2"], out,
                     "--N_epochs=4", "--batch_size=4", check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and intra[0] in last, last
    assert "with batch_size 1" in last and "--batch_size=1" in last, last
    assert "Traceback" not in proc.stderr
    # nothing trained, nothing rewritten
    assert open(os.path.join(out, "hyperparams.yaml")).read() == saved
    assert train_log_epochs(out) == epochs
    assert sorted(n for n in os.listdir(save) if n.startswith("CKPT+")) \
        == ckpts

    # at an epoch boundary (no intra-epoch checkpoint) it may change
    import shutil

    shutil.rmtree(os.path.join(save, intra[0]))
    proc = run_train("wsj0mix", "mossformer.yaml", data["wsj2"], out,
                     "--N_epochs=2", "--batch_size=4")
    assert "batch_size: 1 -> 4" in open(os.path.join(out, "log.txt")).read()
    assert train_log_epochs(out)[-1] == 2


def test_checkpoints_without_hyperparams_yaml_are_checked(data, tmp_path):
    import shutil

    first = str(tmp_path / "first")
    run_train("wsj0mix", "mossformer.yaml", data["wsj2"], first,
              "--N_epochs=1")
    # save/ copied alone: no hyperparams.yaml to compare the settings with
    out = str(tmp_path / "copy")
    shutil.copytree(os.path.join(first, "save"), os.path.join(out, "save"))
    before = sorted(os.listdir(os.path.join(out, "save")))
    proc = run_train("wsj0mix", "mossformer.yaml", data["wsj2"], out,
                     "--out_channels=32", check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "holds checkpoints of a run with " \
        "other settings" in last, last
    assert "masknet: parameter 'conv1d_encoder.weight' has shape " \
        "(16, 16, 1) in the checkpoint but (32, 16, 1) in the model" in last
    assert "Traceback" not in proc.stderr
    assert sorted(os.listdir(os.path.join(out, "save"))) == before
    assert not os.path.isfile(os.path.join(out, "train_log.txt"))
    # the checkpoints' own settings resume as before
    run_train("wsj0mix", "mossformer.yaml", data["wsj2"], out,
              "--N_epochs=2")
    assert train_log_epochs(out) == [2]
    assert len(read_results(out)) == 5


def test_dm_epoch_size_below_one_is_a_clear_error(data, tmp_path):
    from speechbrain_mossformer.recipe import (
        RecipeError, check_overrides, dynamic_mixing_dataset, prepare_data)

    # on the command line: checked with the other counts (null allowed)
    proc = run_train("wsj0mix", "mossformer.yaml", data["wsj2"],
                     str(tmp_path / "out"), "--dynamic_mixing=True",
                     f"--base_folder_dm={data['si_tr_s']}",
                     "--dm_epoch_size=0", check=False)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last == ("error: --dm_epoch_size 0: expected a whole number of "
                    "at least 1"), last
    assert "Traceback" not in proc.stderr
    _, wsj = recipe_paths("wsj0mix", "mossformer.yaml")
    check_overrides(wsj, "data_folder: /d\ndm_epoch_size: null")
    # in the yaml itself: the recipe's error, naming the setting
    hparams = {"data_folder": data["wsj2"],
               "save_folder": str(tmp_path / "save"), "sample_rate": 8000,
               "num_spks": 2, "base_folder_dm": data["si_tr_s"],
               "training_signal_len": 4000, "seed": 1}
    csvs = prepare_data(hparams, "wsj0mix")
    for bad in (0, -3, 2.5, "many"):
        hparams["dm_epoch_size"] = bad
        with pytest.raises(RecipeError, match=f"dm_epoch_size {bad}: "):
            dynamic_mixing_dataset(hparams, "wsj0mix", csvs["train"])
    hparams["dm_epoch_size"] = None  # as many as the training CSV
    assert len(dynamic_mixing_dataset(hparams, "wsj0mix", csvs["train"])) \
        == 8


def test_own_manifests_are_checked_like_prepared_ones(tmp_path):
    # a 16 kHz file in a manifest of one's own was read as 8 kHz audio
    # (twice as long, an octave low), a source of another length went by
    import numpy as np
    import soundfile as sf

    from speechbrain_mossformer.dataprep.csv_manifest import write_manifest
    from speechbrain_mossformer.recipe import RecipeError, use_own_manifests

    for name, rate, length in (("m.wav", 8000, 800), ("a.wav", 8000, 800),
                               ("b16k.wav", 16000, 1600),
                               ("b.wav", 8000, 800),
                               ("short.wav", 8000, 700)):
        sf.write(str(tmp_path / name), np.zeros(length), rate)
    hparams = {"num_spks": 2, "sample_rate": 8000,
               "data_folder": str(tmp_path)}
    prepared = {"train": "p_tr.csv", "valid": "p_cv.csv", "test": "p_tt.csv"}
    columns = ["ID", "mix_wav", "s1_wav", "s2_wav"]

    def manifest(name, s2):
        path = str(tmp_path / name)
        write_manifest([{"ID": "x", "mix_wav": "$data_root/m.wav",
                         "s1_wav": "$data_root/a.wav",
                         "s2_wav": f"$data_root/{s2}"}], path, columns)
        return path

    good = manifest("good.csv", "b.wav")
    assert use_own_manifests(dict(hparams, test_data=good), prepared)[
        "test"] == good
    with pytest.raises(RecipeError, match=r"--train_data: .*b16k.wav has a "
                       r"sample rate of 16000 Hz, but 8000 Hz"):
        use_own_manifests(
            dict(hparams, train_data=manifest("rate.csv", "b16k.wav")),
            prepared)
    with pytest.raises(RecipeError, match=r"--valid_data: .*short.wav has "
                       r"700 samples but its mixture .*m.wav has 800"):
        use_own_manifests(
            dict(hparams, valid_data=manifest("len.csv", "short.wav")),
            prepared)
    # the noise the recipe reads with use_noise
    noisy = str(tmp_path / "noisy.csv")
    write_manifest([{"ID": "x", "mix_wav": "$data_root/m.wav",
                     "s1_wav": "$data_root/a.wav",
                     "s2_wav": "$data_root/b.wav",
                     "noise_wav": "$data_root/b16k.wav"}], noisy,
                   columns + ["noise_wav"])
    assert use_own_manifests(dict(hparams, test_data=noisy), prepared)[
        "test"] == noisy
    with pytest.raises(RecipeError, match=r"--test_data: .*b16k.wav has a "
                       r"sample rate of 16000 Hz"):
        use_own_manifests(dict(hparams, test_data=noisy, use_noise=True),
                          prepared)


def test_intra_epoch_checkpoint_resumes_only_with_as_many_processes(
    data, tmp_path
):
    # each process counts its own batches: resumed by another number of
    # processes, part of the epoch was skipped (more) or trained twice
    out = str(tmp_path / "out")
    proc, resume = sigterm_run("step", data, out)  # stopped during epoch 2
    assert proc.returncode == 143, proc.stderr[-3000:]
    (intra,) = intra_epoch_checkpoints(out)
    meta = os.path.join(out, "save", intra, "CKPT.yaml")
    with open(meta) as f:
        assert yaml.safe_load(f)["world_size"] == 1
    # as if two processes (torchrun) had saved it
    with open(meta) as f:
        text = f.read().replace("world_size: 1", "world_size: 2")
    with open(meta, "w") as f:
        f.write(text)
    epochs = train_log_epochs(out)
    proc = subprocess.run(resume, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and intra in last, last
    assert "by 2 processes: resuming it with 1 would repeat part of " \
        "the epoch" in last and "--nproc_per_node=2" in last, last
    assert "Traceback" not in proc.stderr
    assert train_log_epochs(out) == epochs


def test_a_second_run_in_a_folder_in_use_is_refused(data, tmp_path):
    from speechbrain_mossformer.recipe import lock_run_folder

    out = str(tmp_path / "out")
    lock = lock_run_folder(out)  # a run in progress
    try:
        proc = run_train("wsj0mix", "mossformer.yaml", data["wsj2"], out,
                         "--N_epochs=1", check=False)
    finally:
        lock.close()
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {out} is in use by another run "
                           f"(process "), last
    assert "Traceback" not in proc.stderr
    assert not os.path.exists(os.path.join(out, "hyperparams.yaml"))
    # once it ends, the folder is free
    run_train("wsj0mix", "mossformer.yaml", data["wsj2"], out,
              "--N_epochs=1")
    assert train_log_epochs(out) == [1]


def test_a_failed_save_removes_its_folder_and_keeps_the_earlier(tmp_path):
    from speechbrain.utils.checkpoints import register_checkpoint_hooks
    from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver

    from speechbrain_mossformer.checkpoints import (
        AtomicCheckpointer, CheckpointSaveError)

    @register_checkpoint_hooks
    class Failing:
        """Saves whole, or (``fail``) part of its file, then fails like a
        full disk."""

        fail = False

        @mark_as_saver
        def save(self, path):
            with open(path, "wb") as f:
                f.write(b"part" if self.fail else b"whole")
            if self.fail:
                raise OSError(28, "No space left on device")

        @mark_as_loader
        def load(self, path, end_of_epoch):
            pass

    save = tmp_path / "save"
    failing = Failing()
    checkpointer = AtomicCheckpointer(str(save), {
        "model": torch.nn.Linear(2, 2), "state": failing})
    earlier = checkpointer.save_checkpoint(meta={"si-snr": -5.0})
    failing.fail = True
    with pytest.raises(CheckpointSaveError) as err:
        checkpointer.save_checkpoint(meta={"si-snr": -6.0})
    message = str(err.value)
    assert message.startswith("could not save a checkpoint in "
                              f"{save}{os.sep}CKPT+"), message
    assert "No space left on device" in message and "MiB free on its " \
        "disk" in message and f"checkpoints in {save} are kept" in message
    assert "the unfinished folder is removed" in message
    assert os.listdir(save) == [earlier.path.name]
    assert checkpointer.find_checkpoint().path == earlier.path

    # under an existing custom name SpeechBrain writes into that
    # checkpoint's folder: half replaced, it must not load as complete
    failing.fail = False
    named = checkpointer.save_checkpoint(name="best")
    failing.fail = True
    with pytest.raises(CheckpointSaveError, match="the checkpoint of that "
                       "name may be half overwritten: its CKPT.yaml is now "
                       "CKPT.yaml.overwritten"):
        checkpointer.save_checkpoint(name="best")
    assert checkpointer.find_checkpoint().path == earlier.path
    assert (named.path / "CKPT.yaml.overwritten").is_file()

    # the recipes' entry point prints it as one line
    from speechbrain_mossformer import recipe

    def raises(argv, dataset):
        raise err.value

    original, recipe.run_recipe = recipe.run_recipe, raises
    try:
        import contextlib
        import io

        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            assert recipe.main("wsj0mix") == 2
    finally:
        recipe.run_recipe = original
    assert stderr.getvalue() == f"error: {message}\n"


def test_folders_of_interrupted_saves_are_noted_then_removed(tmp_path):
    from speechbrain_mossformer.checkpoints import AtomicCheckpointer
    from speechbrain_mossformer.recipe import check_run_folder

    save = tmp_path / "save"
    checkpointer = AtomicCheckpointer(str(save), {
        "model": torch.nn.Linear(2, 2)})
    # a first save killed before CKPT.yaml was published
    (save / "CKPT+killed").mkdir(parents=True)
    (save / "CKPT+killed" / "CKPT.yaml.partial").write_text("unixtime: 1\n")
    (tmp_path / "hyperparams.yaml").write_text("out_channels: 16\n")
    # not a checkpoint of the run: another model may use the folder
    notes = check_run_folder({"output_folder": str(tmp_path),
                              "out_channels": 32})
    assert len(notes) == 1 and "1 unfinished checkpoint folder(s) that " \
        "interrupted saves left (CKPT+killed)" in notes[0], notes
    checkpointer.save_checkpoint()
    names = os.listdir(save)
    assert len(names) == 1 and names[0] != "CKPT+killed", names


def test_process_count_follows_what_speechbrain_starts(monkeypatch):
    # SpeechBrain starts DDP only where RANK and LOCAL_RANK are set: a
    # stray WORLD_SIZE alone must not be recorded in the checkpoints
    from speechbrain_mossformer.checkpoints import process_count

    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert process_count() == 1
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert process_count() == 4


def test_own_data_needs_only_the_three_manifests(data, tmp_path):
    # one's own mixtures, in no corpus layout: the three manifests are
    # enough (no --data_folder, no --skip_prep); $data_root is the
    # training manifest's folder
    import shutil

    from speechbrain_mossformer.recipe import prepare_data

    prepared = prepare_data({
        "data_folder": data["wsj2"], "save_folder": str(tmp_path / "prep"),
        "sample_rate": 8000, "num_spks": 2}, "wsj0mix")
    mine = tmp_path / "mydata"
    (mine / "audio").mkdir(parents=True)
    manifests = {}
    for split, key in (("train", "train_data"), ("valid", "valid_data"),
                       ("test", "test_data")):
        with open(prepared[split]) as f:
            rows = list(csv.DictReader(f))[:3]
        for i, row in enumerate(rows):
            for column in ("mix_wav", "s1_wav", "s2_wav"):
                name = f"{split}_{i}_{column[:-4]}.wav"
                shutil.copy(row[column].replace("$data_root", data["wsj2"]),
                            mine / "audio" / name)
                row[column] = f"$data_root/audio/{name}"
        manifests[key] = str(mine / f"{split}.csv")
        with open(manifests[key], "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    script, hparams = recipe_paths("wsj0mix", "mossformer.yaml")
    out = str(tmp_path / "out")
    cmd = [PYTHON, script, hparams, f"--output_folder={out}",
           "--N_epochs=1", *TINY, *(f"--{k}={v}" for k, v in
                                    manifests.items())]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skip_prep" not in proc.stdout + proc.stderr
    assert train_log_epochs(out) == [1]
    assert len(read_results(out)) == 3 + 1
    with open(os.path.join(out, "log.txt")) as f:
        assert f"no corpus to prepare ($data_root is {mine})" in f.read()
    # one of them missing, and no corpus: the required option is named
    cmd = [arg.replace(out, out + "2") for arg in cmd[:-1]]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert "--data_folder is required" in proc.stderr.splitlines()[-1]


def test_the_plateau_halving_start_is_a_command_line_setting():
    # short fine-tuning runs need it lower than the from-scratch 85 epochs
    from hyperpyyaml import load_hyperpyyaml

    for dataset, yaml_name in (("wsj0mix", "mossformer.yaml"),
                               ("librimix", "mossformer-libri2mix.yaml")):
        _, path = recipe_paths(dataset, yaml_name)
        with open(path) as f:
            hparams = load_hyperpyyaml(
                f, "data_folder: /d\ndont_halve_until_epoch: 3")
        assert hparams["lr_scheduler"].dont_halve_until_epoch == 3
