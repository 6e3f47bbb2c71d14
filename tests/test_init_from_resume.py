"""Regressions of the recipes' ``--init_from`` (fine-tuning) flows.

* a run folder holding its own checkpoint resumes without reading
  ``init_from`` (a moved or deleted pretrained folder blocked the resume,
  although its weights would have been replaced by the checkpoint anyway);
* an ``init_from`` folder with another ``group_size`` (no parameters, so
  the strict loading passes) is logged instead of silently fine-tuning
  another network;
* ``--test_only --init_from`` on a run without checkpoints evaluates the
  pretrained weights (it was refused as "random weights").
"""

import logging
import os

import pytest

from test_recipes import read_results, run_train

TINY_CFG = {"N_encoder_out": 16, "out_channels": 16, "num_blocks": 1,
            "group_size": 8, "query_key_dim": 8, "sample_rate": 8000}


def write_folder(path, **changes):
    from speechbrain_mossformer.pretrained import (
        load_modules,
        render_hyperparams,
        write_pretrained_folder,
    )

    cfg = dict(TINY_CFG, **changes)
    modules = load_modules(render_hyperparams(cfg))
    write_pretrained_folder(
        str(path), cfg, {k: m.state_dict() for k, m in modules.items()}
    )
    return cfg


def fresh_modules(**changes):
    from speechbrain_mossformer.pretrained import (
        load_modules,
        render_hyperparams,
    )

    return load_modules(render_hyperparams(dict(TINY_CFG, **changes)))


def test_resume_does_not_need_the_init_from_folder(tmp_path):
    import torch
    from speechbrain.utils.checkpoints import Checkpointer

    from speechbrain_mossformer.recipe import load_initial_weights

    modules = fresh_modules()
    checkpointer = Checkpointer(str(tmp_path / "save"), recoverables=modules)
    checkpointer.save_checkpoint(meta={"si-snr": 1.0})
    before = {k: v.clone() for k, v in modules["masknet"].state_dict().items()}
    hparams = {"init_from": str(tmp_path / "moved_away"), "sample_rate": 8000,
               "group_size": 8, "modules": modules,
               "checkpointer": checkpointer}
    load_initial_weights(hparams)  # raised "is not a folder"
    # an existing folder is not loaded either: the run's checkpoint wins
    write_folder(tmp_path / "other")
    hparams["init_from"] = str(tmp_path / "other")
    load_initial_weights(hparams)
    after = modules["masknet"].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_init_from_without_a_checkpoint_still_loads(tmp_path):
    import torch
    from speechbrain.utils.checkpoints import Checkpointer

    from speechbrain_mossformer.recipe import RecipeError, load_initial_weights

    write_folder(tmp_path / "pre")
    modules = fresh_modules()
    hparams = {"init_from": str(tmp_path / "pre"), "sample_rate": 8000,
               "group_size": 8, "modules": modules,
               "checkpointer": Checkpointer(str(tmp_path / "save"),
                                            recoverables=modules)}
    load_initial_weights(hparams)
    saved = torch.load(os.path.join(tmp_path, "pre", "masknet.ckpt"))
    state = modules["masknet"].state_dict()
    assert all(torch.equal(saved[k], state[k]) for k in saved)
    hparams["init_from"] = str(tmp_path / "missing")
    with pytest.raises(RecipeError, match="is not a folder"):
        load_initial_weights(hparams)


def test_init_from_another_group_size_is_logged(tmp_path, caplog):
    from speechbrain_mossformer.recipe import load_initial_weights

    write_folder(tmp_path / "pre", group_size=16)
    with caplog.at_level(logging.WARNING):
        load_initial_weights(
            {"init_from": str(tmp_path / "pre"), "sample_rate": 8000,
             "group_size": 8, "modules": fresh_modules(group_size=8)}
        )
    assert "group_size 16 and this run uses group_size 8" in caplog.text


def test_size_error_hint_lists_the_speaker_count(tmp_path):
    from speechbrain_mossformer.recipe import RecipeError, load_initial_weights

    write_folder(tmp_path / "pre", num_spks=2)
    with pytest.raises(RecipeError) as err:
        load_initial_weights(
            {"init_from": str(tmp_path / "pre"), "sample_rate": 8000,
             "group_size": 8, "modules": fresh_modules(num_spks=3)}
        )
    assert "conv1d_out.weight" in str(err.value)
    assert "num_spks" in str(err.value)


def test_test_only_evaluates_the_init_from_weights(tmp_path):
    from speechbrain_mossformer.dataprep import minidata

    data = minidata.make_wsj0mix(str(tmp_path / "data"), num_spks=2)
    write_folder(tmp_path / "pre")
    out = str(tmp_path / "out")
    proc = run_train(
        "wsj0mix", "mossformer.yaml", data, out,
        f"--init_from={tmp_path / 'pre'}", "--test_only", check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "evaluating the weights of init_from" in proc.stdout + proc.stderr
    assert read_results(out)[-1]["snt_id"] == "avg"
    # without init_from the refusal stays
    proc = run_train("wsj0mix", "mossformer.yaml", data,
                     str(tmp_path / "out2"), "--test_only", check=False)
    assert proc.returncode == 2
    assert "refusing to score random weights" in proc.stdout + proc.stderr


def test_init_from_added_to_a_run_trained_without_it_is_refused(tmp_path):
    # the run's own checkpoints win when resuming: the weights asked for
    # would silently never be loaded
    from speechbrain_mossformer.recipe import RecipeError, check_run_folder

    meta = tmp_path / "save" / "CKPT+1" / "CKPT.yaml"
    meta.parent.mkdir(parents=True)
    meta.write_text("unixtime: 1\nend-of-epoch: true\n")
    (tmp_path / "hyperparams.yaml").write_text("init_from: null\n")
    with pytest.raises(RecipeError, match="holds checkpoints of a run "
                       "trained without init_from: resuming it would not "
                       "load /models/pre"):
        check_run_folder({"output_folder": str(tmp_path),
                          "init_from": "/models/pre"})
    assert check_run_folder({"output_folder": str(tmp_path),
                             "init_from": None}) == []


def test_init_from_a_run_folder_points_to_export_checkpoint(tmp_path):
    from speechbrain_mossformer.recipe import RecipeError, load_initial_weights

    run = tmp_path / "run"
    (run / "save").mkdir(parents=True)
    (run / "hyperparams.yaml").write_text("sample_rate: 8000\n")
    modules = fresh_modules()
    hparams = {"init_from": str(run), "sample_rate": 8000, "group_size": 8,
               "modules": modules}
    with pytest.raises(RecipeError, match="is a recipe's run folder: export "
                       "a pretrained folder from its best checkpoint with "
                       "python -m speechbrain_mossformer.export_checkpoint"):
        load_initial_weights(hparams)


def test_init_exclude_fine_tunes_a_model_of_another_speaker_count(tmp_path):
    # speechbrain#1758: load all but the num_spks-wide output layer
    import torch

    from speechbrain_mossformer.recipe import RecipeError, load_initial_weights

    write_folder(tmp_path / "pre")  # 2 speakers
    modules = fresh_modules(num_spks=3)
    hparams = {"init_from": str(tmp_path / "pre"), "sample_rate": 8000,
               "group_size": 8, "modules": modules}
    with pytest.raises(RecipeError, match="conv1d_out.weight"):
        load_initial_weights(hparams)  # strict: the output layer differs
    for typo in (["masknet.conv1d_ou"], ["mask"]):
        with pytest.raises(RecipeError, match=r"init_exclude: .* match no "
                           "parameter of the model"):
            load_initial_weights(dict(hparams, init_exclude=typo))
    modules = fresh_modules(num_spks=3)
    fresh_out = modules["masknet"].conv1d_out.weight.detach().clone()
    hparams["modules"] = modules
    load_initial_weights(dict(hparams, init_exclude=["masknet.conv1d_out"]))
    saved = torch.load(os.path.join(tmp_path, "pre", "masknet.ckpt"))
    state = modules["masknet"].state_dict()
    for key, value in saved.items():
        if key.startswith("conv1d_out."):
            continue
        assert torch.equal(value, state[key]), key
    assert torch.equal(state["conv1d_out.weight"], fresh_out)
