"""Structured and unstructured pruning of MossFormer (pruning.py).

The properties: keeping everything is the identity; the units removed are
exactly the lowest-L1 ones (planted near-zero units are found and removing
them barely changes the output); each dimension shrinks the right shapes;
the pruned folder loads with SpeechBrain's stock interface and with the
recipe's strict ``--init_from``; unstructured pruning zeros the requested
fraction and keeps shapes; impossible requests fail clearly.
"""

import os
import shutil

import pytest
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_mossformer import pruning
from speechbrain_mossformer.lobes.models.mossformer import (
    separate_with_modules,
)
from speechbrain_mossformer.pretrained import (
    load_modules,
    render_hyperparams,
    write_pretrained_folder,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRI_YAML = os.path.join(
    REPO, "recipes", "LibriMix", "separation", "hparams",
    "mossformer-libri2mix.yaml",
)

# query_key_dim 40: 32 rotary features (always kept) + 8 prunable ones
CONFIG = {
    "N_encoder_out": 16,
    "out_channels": 16,
    "num_blocks": 3,
    "group_size": 8,
    "query_key_dim": 40,
    "attn_dropout": 0.0,
}


def randomized_states(config, seed=0):
    """State dicts with every parameter non-trivial (gamma, g, scale...)."""
    torch.manual_seed(seed)
    modules = load_modules(render_hyperparams(config))
    states = {}
    for name, module in modules.items():
        sd = {}
        for key, value in module.state_dict().items():
            if key.endswith("gamma"):
                value = torch.randn_like(value) * 0.5
            elif key.endswith("beta"):
                value = torch.randn_like(value) * 0.1
            elif key.endswith((".g", "scale")):
                value = 0.5 + torch.rand_like(value)
            elif value.is_floating_point():
                value = value + 0.05 * torch.randn_like(value)
            sd[key] = value
        states[name] = sd
    return states


def separate(config, states, mix):
    modules = pruning._build_modules(config, states)
    with torch.no_grad():
        return separate_with_modules(
            modules["encoder"], modules["masknet"], modules["decoder"],
            mix, int(config.get("num_spks", 2)),
        )


@pytest.fixture(scope="module")
def states():
    return randomized_states(CONFIG)


@pytest.fixture(scope="module")
def mix():
    torch.manual_seed(1)
    return torch.randn(2, 1203)


def relative_change(a, b):
    return float((a - b).norm() / b.norm())


# ----------------------------------------------------------------------
# Identity
@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"blocks_fraction": 1.0, "width_fraction": 1.0,
         "hidden_fraction": 1.0, "qk_fraction": 1.0},
        {"num_blocks": 3, "out_channels": 16, "hidden_dims": 64,
         "query_key_dims": [40, 40, 40]},
    ],
)
def test_keeping_everything_is_the_identity(states, mix, spec):
    new_cfg, new_states, _ = pruning.structured_prune(CONFIG, states, spec)
    ref = separate(CONFIG, states, mix)
    got = separate(new_cfg, new_states, mix)
    assert (got - ref).abs().max() <= 1e-5


def test_identity_with_calibration_and_contribution_score(states, mix):
    new_cfg, new_states, _ = pruning.structured_prune(
        CONFIG, states, {"hidden_fraction": 1.0}, calibration=[mix[0]],
        block_score="contribution",
    )
    ref = separate(CONFIG, states, mix)
    assert (separate(new_cfg, new_states, mix) - ref).abs().max() <= 1e-5


# ----------------------------------------------------------------------
# Planted small units are exactly the ones removed
def plant(states, fn):
    new = {k: {n: t.clone() for n, t in v.items()}
           for k, v in states.items()}
    with torch.no_grad():
        fn(new["masknet"])
    return new


TINY = 1e-4


def assert_control_changes_more(states, spec, mix):
    """The same sizes on the unplanted model (real units removed) change
    the output far more than the 1e-3 allowed for planted ones."""
    cfg, new, _ = pruning.structured_prune(CONFIG, states, spec)
    ref = separate(CONFIG, states, mix)
    assert relative_change(separate(cfg, new, mix), ref) > 1e-2


def test_planted_hidden_pairs_are_removed_and_output_barely_changes(
    states, mix
):
    e, planted = 32, [3, 10, 11, 20, 31]

    def fn(sd):
        p = "mossformer.blocks.1."
        for j in planted:
            for row in (j, e + j):  # V channel j and U channel j
                sd[p + "to_hidden.linear.weight"][row] *= TINY
                sd[p + "to_hidden.linear.bias"][row] *= TINY
            sd[p + "to_out.linear.weight"][:, j] *= TINY

    planted_states = plant(states, fn)
    spec = {"hidden_dims": [64, 2 * (e - len(planted)), 64]}
    new_cfg, new_states, report = pruning.structured_prune(
        CONFIG, planted_states, spec
    )
    assert report["hidden"][1] == [j for j in range(e) if j not in planted]
    assert report["hidden"][0] == list(range(e))
    w = new_states["masknet"]["mossformer.blocks.1.to_hidden.linear.weight"]
    assert w.shape == (2 * (e - len(planted)), 16)
    ref = separate(CONFIG, planted_states, mix)
    assert relative_change(separate(new_cfg, new_states, mix), ref) < 1e-3
    assert_control_changes_more(states, spec, mix)


def test_planted_query_key_features_are_removed(states, mix):
    planted = [33, 36, 38]  # after the 32 rotary features

    def fn(sd):
        p = "mossformer.blocks.2."
        for j in planted:
            sd[p + "to_qk.linear.weight"][j] *= TINY
            sd[p + "to_qk.linear.bias"][j] *= TINY
            sd[p + "qk_offset_scale.gamma"][:, j] *= TINY
            sd[p + "qk_offset_scale.beta"][:, j] *= TINY

    planted_states = plant(states, fn)
    new_cfg, new_states, report = pruning.structured_prune(
        CONFIG, planted_states, {"query_key_dims": [40, 40, 37]}
    )
    assert report["qk"][2] == [j for j in range(40) if j not in planted]
    assert new_cfg["query_key_dims"] == [40, 40, 37]
    gamma = new_states["masknet"]["mossformer.blocks.2.qk_offset_scale.gamma"]
    assert gamma.shape == (4, 37)
    ref = separate(CONFIG, planted_states, mix)
    assert relative_change(separate(new_cfg, new_states, mix), ref) < 1e-3
    assert_control_changes_more(states, {"query_key_dims": [40, 40, 37]}, mix)


def test_query_key_width_below_the_rotary_width_keeps_every_other_pair(
    states, mix
):
    # 40 -> 16 features: the rotary width goes from 32 to 16, whose
    # frequencies are those of the even-numbered pairs of the old rotary;
    # silencing every other feature in the original model (in all blocks)
    # must give the pruned model's output
    kept = [j for j in range(32) if (j // 2) % 2 == 0]

    def fn(sd):
        for b in range(3):
            p = f"mossformer.blocks.{b}."
            for j in range(40):
                if j not in kept:
                    sd[p + "to_qk.linear.weight"][j] *= TINY
                    sd[p + "to_qk.linear.bias"][j] *= TINY
                    sd[p + "qk_offset_scale.gamma"][:, j] *= TINY
                    sd[p + "qk_offset_scale.beta"][:, j] *= TINY

    planted_states = plant(states, fn)
    spec = {"query_key_dims": 16}
    new_cfg, new_states, report = pruning.structured_prune(
        CONFIG, planted_states, spec
    )
    assert report["qk"] == [kept] * 3
    assert new_cfg["query_key_dims"] == [16, 16, 16]
    assert pruning.model_sizes(new_cfg)["rotary_dim"] == 16
    ref = separate(CONFIG, planted_states, mix)
    assert relative_change(separate(new_cfg, new_states, mix), ref) < 1e-3
    assert_control_changes_more(states, spec, mix)


def test_query_key_width_below_the_rotary_width_may_keep_other_features(
    states,
):
    # rotary 32 -> 16 in every block; block 2 also keeps 4 of its 8
    # non-rotary features (the largest), after the 16 rotary ones
    new_cfg, _, report = pruning.structured_prune(
        CONFIG, states, {"query_key_dims": [16, 16, 20]}
    )
    assert new_cfg["query_key_dims"] == [16, 16, 20]
    assert report["qk"][2][:16] == report["qk"][0]
    assert all(32 <= j < 40 for j in report["qk"][2][16:])


def test_planted_silent_block_is_dropped(states, mix):
    def fn(sd):
        sd["mossformer.blocks.1.to_out.linear.weight"] *= TINY
        sd["mossformer.blocks.1.to_out.linear.bias"] *= TINY

    planted_states = plant(states, fn)
    new_cfg, new_states, report = pruning.structured_prune(
        CONFIG, planted_states, {"num_blocks": 2}
    )
    assert report["blocks"] == [0, 2]
    assert new_cfg["num_blocks"] == 2
    assert not any(
        k.startswith("mossformer.blocks.2.") for k in new_states["masknet"]
    )
    ref = separate(CONFIG, planted_states, mix)
    assert relative_change(separate(new_cfg, new_states, mix), ref) < 1e-3
    assert_control_changes_more(states, {"num_blocks": 2}, mix)
    # the measured contribution and the greedy ablation find it too
    for score in ("contribution", "ablation"):
        _, _, report = pruning.structured_prune(
            CONFIG, planted_states, {"num_blocks": 2}, calibration=[mix[0]],
            block_score=score,
        )
        assert report["blocks"] == [0, 2], score


def test_ablation_keeps_the_blocks_whose_removal_hurts_most(states, mix):
    # block 2's residual branch scaled up: removing it changes the most
    def fn(sd):
        sd["mossformer.blocks.2.to_out.norm.g"] *= 50.0

    planted_states = plant(states, fn)
    kept, distortion = pruning.block_ablation(
        CONFIG, planted_states, [mix[0], mix[1]], 1
    )
    assert kept == [2] and distortion > 0


def test_planted_width_channels_are_removed_from_both_halves(states, mix):
    planted = [1, 6, 9, 14]  # two in the shifted half, two in the other

    def fn(sd):
        for c in planted:
            sd["conv1d_encoder.weight"][c] *= TINY
            sd["conv1d_out.weight"][:, c] *= TINY
            for b in range(3):
                p = f"mossformer.blocks.{b}."
                sd[p + "to_out.linear.weight"][c] *= TINY
                sd[p + "to_out.linear.bias"][c] *= TINY
                sd[p + "to_hidden.linear.weight"][:, c] *= TINY
                sd[p + "to_qk.linear.weight"][:, c] *= TINY

    planted_states = plant(states, fn)
    new_cfg, new_states, report = pruning.structured_prune(
        CONFIG, planted_states, {"out_channels": 12}
    )
    assert report["width"] == [c for c in range(16) if c not in planted]
    sd = new_states["masknet"]
    assert sd["conv1d_encoder.weight"].shape == (12, 16, 1)
    assert sd["conv1d_out.weight"].shape == (24, 12, 1)
    assert sd["output.0.weight"].shape == (12, 12, 1)
    assert sd["conv1_decoder.weight"].shape == (16, 12, 1)
    assert sd["mossformer.norm.weight"].shape == (12,)
    assert sd["mossformer.blocks.0.to_out.linear.weight"].shape == (12, 32)
    assert sd["mossformer.blocks.0.to_qk.linear.weight"].shape == (40, 12)
    assert separate(new_cfg, new_states, mix).shape == mix.shape + (2,)


def test_width_must_split_evenly_between_the_halves(states):
    # 10 channels: 5 shifted + 5 unshifted; planted all in the first half
    def fn(sd):
        for c in range(3):
            sd["conv1d_encoder.weight"][c] *= TINY
            sd["conv1d_out.weight"][:, c] *= TINY

    _, _, report = pruning.structured_prune(
        CONFIG, plant(states, fn), {"out_channels": 10}
    )
    kept = report["width"]
    assert sum(c < 8 for c in kept) == 5 and sum(c >= 8 for c in kept) == 5


# ----------------------------------------------------------------------
# Every dimension at once; fractions
def test_all_dimensions_shrink_and_model_runs(states, mix):
    new_cfg, new_states, report = pruning.structured_prune(
        CONFIG, states, {"blocks_fraction": 0.67, "width_fraction": 0.5,
                         "hidden_fraction": 0.5, "qk_fraction": 0.5},
    )
    assert new_cfg["num_blocks"] == 2
    assert new_cfg["out_channels"] == 8
    assert new_cfg["hidden_dims"] == [32, 32]
    assert new_cfg["query_key_dims"] == [36, 36]
    assert pruning.count_parameters(new_states) < 0.5 * (
        pruning.count_parameters(states)
    )
    assert separate(new_cfg, new_states, mix).shape == mix.shape + (2,)


# ----------------------------------------------------------------------
# Pretrained folders: stock SpeechBrain and the recipe's --init_from
@pytest.fixture(scope="module")
def pruned_folder(tmp_path_factory, states):
    root = tmp_path_factory.mktemp("pruning")
    write_pretrained_folder(str(root / "dense"), CONFIG, states)
    out = pruning.prune_pretrained(
        str(root / "dense"), str(root / "small"),
        {"num_blocks": 2, "out_channels": 12, "hidden_fraction": 0.5,
         "query_key_dims": 36},
    )
    return root, out


def test_pruned_folder_loads_with_stock_sepformer_separation(
    pruned_folder, mix
):
    from speechbrain.inference.separation import SepformerSeparation

    root, out = pruned_folder
    model = SepformerSeparation.from_hparams(
        source=str(root / "small"), savedir=str(root / "cache"),
        run_opts={"device": "cpu"},
    )
    states = {k: torch.load(root / "small" / f"{k}.ckpt") for k in
              ("encoder", "masknet", "decoder")}
    for name, state in states.items():
        for key, value in model.mods[name].state_dict().items():
            assert torch.equal(value, state[key]), (name, key)
    est = model.separate_batch(mix)
    ref = separate(out["config"], states, mix)
    assert torch.allclose(est, ref, atol=1e-5)


def recipe_modules(tmp, overrides):
    """The recipe yaml's modules, built from command-line overrides."""
    _, _, yaml_overrides = sb.parse_arguments(
        [LIBRI_YAML, f"--data_folder={tmp}", f"--output_folder={tmp}/out"]
        + overrides
    )
    with open(LIBRI_YAML, encoding="utf-8") as f:
        return load_hyperpyyaml(f, yaml_overrides)


def test_printed_overrides_build_the_recipe_model_for_init_from(
    pruned_folder, tmp_path
):
    from speechbrain_mossformer.recipe import RecipeError, load_initial_weights

    root, out = pruned_folder
    hparams = recipe_modules(
        tmp_path, out["overrides"] + [f"--init_from={root / 'small'}"]
    )
    load_initial_weights(hparams)
    saved = torch.load(root / "small" / "masknet.ckpt")
    for key, value in hparams["modules"]["masknet"].state_dict().items():
        assert torch.equal(value, saved[key]), key
    # the dense sizes do not fit the pruned folder: a clear error
    wrong = [a for a in out["overrides"] if not a.startswith("--hidden")]
    hparams = recipe_modules(
        tmp_path, wrong + [f"--init_from={root / 'small'}"]
    )
    with pytest.raises(RecipeError, match="to_hidden"):
        load_initial_weights(hparams)


def test_cli_prunes_and_prints_recipe_overrides(pruned_folder, capsys,
                                                 monkeypatch):
    root, _ = pruned_folder
    # a relative output folder is printed absolute: the recipe command is
    # run from the repository's root, not from where pruning ran
    monkeypatch.chdir(root)
    code = pruning.main(["dense", "cli",
                         "--hidden-fraction", "0.5", "--num-blocks", "2"])
    text = capsys.readouterr().out
    assert code == 0
    assert "'--hidden_dims=[32,32]'" in text and "--num_blocks=2" in text
    assert "--init_from=" + str(root / "cli") in text
    # the folder's rate: the recipes' yamls default to 8 kHz
    assert "--sample_rate=8000" in text
    code = pruning.main([str(root / "dense"), str(root / "bad"),
                         "--num-blocks", "7"])
    assert code == 2
    assert "more than the 3 blocks" in capsys.readouterr().err


# ----------------------------------------------------------------------
# Unstructured control
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_unstructured_zeros_the_requested_fraction_and_keeps_shapes(
    states, scope
):
    modules = pruning._build_modules(CONFIG, states)
    shapes = {k: v.shape for k, v in modules["masknet"].state_dict().items()}
    weights = [m.weight for m, _ in pruning._prunable(modules["masknet"])]
    total = sum(w.numel() for w in weights)
    zeroed = pruning.unstructured_prune(modules, 0.6, scope)
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeroed == zeros
    assert abs(zeros / total - 0.6) < 0.01
    after = modules["masknet"].state_dict()
    assert {k: v.shape for k, v in after.items()} == shapes
    assert not any(k.endswith(("_orig", "_mask")) for k in after)
    if scope == "layer":
        for w in weights:
            assert int((w == 0).sum()) == round(0.6 * w.numel())


def test_unstructured_amount_reaches_a_parameter_count(states):
    modules = pruning._build_modules(CONFIG, states)
    target = pruning.count_parameters(modules) // 3
    pruning.unstructured_prune(
        modules, pruning.unstructured_amount(modules, target)
    )
    assert abs(pruning.count_nonzero(modules) - target) <= 1


def test_unstructured_folder_keeps_shapes(pruned_folder):
    root, _ = pruned_folder
    out = pruning.unstructured_prune_pretrained(
        str(root / "dense"), str(root / "sparse"), 0.5
    )
    config, states = pruning.read_pretrained(str(root / "sparse"))
    assert config["num_blocks"] == 3
    assert out["nonzero"] == pruning.count_nonzero(states)


# ----------------------------------------------------------------------
# Clear errors
@pytest.mark.parametrize(
    "spec, message",
    [
        ({"num_blocks": 4}, "more than the 3 blocks"),
        ({"num_blocks": 0}, "at least 1"),
        ({"out_channels": 11}, "must be even"),
        ({"out_channels": 18}, "more than the model's 16"),
        ({"hidden_fraction": 1.5}, r"in \(0, 1\]"),
        ({"width_fraction": 0.0}, r"in \(0, 1\]"),
        ({"hidden_dims": 33}, "must be even"),
        ({"hidden_dims": 66}, "more than block"),
        ({"hidden_dims": [32, 32]}, "one entry per kept block"),
        ({"query_key_dims": 12}, "even divisor of 32"),
        ({"query_key_dims": [16, 16, 28]}, "at most 24 features"),
        ({"hidden_dims": 32, "hidden_fraction": 0.5}, "not both"),
        ({"query_key_dims": 0}, "must be positive"),
        ({"query_key_dims": -16}, "must be positive"),
        ({"query_key_dims": [40, 40, 0]}, "must be positive"),
        ({"heads": 2}, "unknown pruning spec keys"),
    ],
)
def test_impossible_requests_fail_clearly(states, spec, message):
    with pytest.raises(pruning.PruningError, match=message):
        pruning.structured_prune(CONFIG, states, spec)


def test_unstructured_amount_out_of_range_fails_clearly(states):
    modules = pruning._build_modules(CONFIG, states)
    with pytest.raises(pruning.PruningError, match=r"in \[0, 1\)"):
        pruning.unstructured_prune(modules, 1.0)


@pytest.mark.parametrize("score", ["contribution", "ablation"])
def test_measured_block_scores_need_calibration(states, score):
    with pytest.raises(pruning.PruningError, match="calibration"):
        pruning.structured_prune(CONFIG, states, {"num_blocks": 2},
                                 block_score=score)


# ----------------------------------------------------------------------
# Nothing the user made is lost; bad input is a one-line error
def _cli_error(capsys, argv):
    code = pruning.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


@pytest.mark.parametrize("extra", [["--hidden-fraction", "0.5"],
                                   ["--unstructured", "0.5"]])
def test_pruning_into_the_source_folder_is_refused(pruned_folder, capsys,
                                                   tmp_path, extra):
    import shutil

    root, _ = pruned_folder
    src = tmp_path / "model"
    shutil.copytree(root / "dense", src)
    before = (src / "masknet.ckpt").read_bytes()
    yaml_before = (src / "hyperparams.yaml").read_text()
    err = _cli_error(capsys, [str(src), str(src) + "/"] + extra)
    assert "folder being read" in err
    err = _cli_error(capsys, [str(src), str(src / "pruned")] + extra)
    assert "inside the folder being read" in err
    assert not (src / "pruned").exists()
    assert (src / "masknet.ckpt").read_bytes() == before
    assert (src / "hyperparams.yaml").read_text() == yaml_before


def test_pruning_never_overwrites_a_foreign_yaml_or_a_file(pruned_folder,
                                                           capsys, tmp_path):
    root, _ = pruned_folder
    run = tmp_path / "run"
    run.mkdir()
    (run / "hyperparams.yaml").write_text("seed: 1\nlr: 0.1\n")
    err = _cli_error(capsys, [str(root / "dense"), str(run),
                              "--hidden-fraction", "0.5"])
    assert "not written by speechbrain_mossformer" in err
    assert (run / "hyperparams.yaml").read_text() == "seed: 1\nlr: 0.1\n"
    afile = tmp_path / "afile"
    afile.write_text("x")
    err = _cli_error(capsys, [str(root / "dense"), str(afile),
                              "--hidden-fraction", "0.5"])
    assert "not a folder" in err
    # a folder this package pruned from the same model is replaced
    # (pruning again), also by the unstructured control
    again = tmp_path / "again"
    for extra in (["--hidden-fraction", "0.5"], ["--hidden-fraction", "0.25"],
                  ["--unstructured", "0.3"]):
        assert pruning.main([str(root / "dense"), str(again), *extra]) == 0
    # but not another model: the two folders swapped overwrote the trained
    # model with a pruned copy of the other one
    trained = tmp_path / "trained"
    shutil.copytree(root / "dense", trained)
    before = (trained / "masknet.ckpt").read_bytes()
    err = _cli_error(capsys, [str(again), str(trained),
                              "--hidden-fraction", "0.5"])
    assert err.startswith(f"error: {trained}: holds another model (")
    assert (trained / "masknet.ckpt").read_bytes() == before


def test_mismatched_source_folder_is_a_one_line_error(pruned_folder, capsys,
                                                      tmp_path):
    import shutil

    root, _ = pruned_folder
    for blocks in (2, 4):
        bad = tmp_path / f"bad{blocks}"
        shutil.copytree(root / "dense", bad)
        yaml = bad / "hyperparams.yaml"
        yaml.write_text(yaml.read_text().replace(
            "num_blocks: 3", f"num_blocks: {blocks}"))
        for extra in (["--hidden-fraction", "0.5"], ["--unstructured", "0.3"]):
            err = _cli_error(capsys, [str(bad), str(tmp_path / "o"), *extra])
            assert str(bad) in err and "masknet" in err
        assert not (tmp_path / "o").exists()


def test_bad_spec_files_are_one_line_errors(pruned_folder, capsys, tmp_path):
    root, _ = pruned_folder
    bad_json = tmp_path / "spec.json"
    bad_json.write_text('{"hidden_fraction": 0.5,')
    bad_yaml = tmp_path / "spec.yaml"
    bad_yaml.write_text("hidden_fraction: [0.5\n")
    for path, what in ((bad_json, "not valid JSON"),
                       (bad_yaml, "not valid YAML")):
        err = _cli_error(capsys, [str(root / "dense"), str(tmp_path / "o"),
                                  "--config", str(path)])
        assert str(path) in err and what in err


def test_bad_calibration_files_are_one_line_errors(pruned_folder, capsys,
                                                   tmp_path):
    import numpy as np
    import soundfile as sf

    root, _ = pruned_folder
    nan = np.full(800, 0.1, dtype="float32")
    nan[5] = np.nan
    sf.write(str(tmp_path / "nan.wav"), nan, 8000, subtype="FLOAT")
    sf.write(str(tmp_path / "short.wav"), np.zeros(10, "float32"), 8000)
    sf.write(str(tmp_path / "empty.wav"), np.zeros(0, "float32"), 8000)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF1234WAVEjunk")
    for name, what in (("missing.wav", "no such file"),
                       ("nan.wav", "NaN"),
                       ("short.wav", "too short"),
                       ("empty.wav", "no samples"),
                       ("corrupt.wav", "not a readable audio file")):
        err = _cli_error(capsys, [
            str(root / "dense"), str(tmp_path / "o"), "--num-blocks", "2",
            "--block-score", "contribution",
            "--calibration", str(tmp_path / name)])
        assert name in err and what in err, err


def test_unstructured_refuses_structured_options(pruned_folder, capsys,
                                                 tmp_path):
    root, _ = pruned_folder
    err = _cli_error(capsys, [str(root / "dense"), str(tmp_path / "o"),
                              "--unstructured", "0.5", "--num-blocks", "2"])
    assert "--num-blocks" in err
    assert not (tmp_path / "o").exists()


def test_a_run_folder_is_pointed_to_export_checkpoint(pruned_folder,
                                                      tmp_path, capsys):
    # it said only "missing encoder.ckpt"
    root, _ = pruned_folder
    run = tmp_path / "run"
    shutil.copytree(root / "dense", run)
    for name in os.listdir(run):
        if name.endswith(".ckpt"):
            os.remove(run / name)
    (run / "save").mkdir()
    assert pruning.main([str(run), str(tmp_path / "out"),
                         "--num-blocks", "1"]) == 2
    err = capsys.readouterr().err
    assert "encoder.ckpt" in err
    assert (f"this is a recipe's run folder: make a pretrained folder of it "
            f"with python -m speechbrain_mossformer.export_checkpoint {run} "
            "OUT_DIR, then prune OUT_DIR") in err


def test_dropping_the_narrowest_block_needs_a_narrow_kept_one(states, mix):
    # a pruned model with query/key widths [24, 16, 24]: rotary width 16;
    # dropping block 1 leaves [24, 24], whose rotary width would be 24.
    # Asking for a kept block of width 16 was refused all the same
    # (the check came before the requested widths)
    cfg, hetero, _ = pruning.structured_prune(
        CONFIG, states, {"query_key_dims": [24, 16, 24]})
    assert pruning.model_sizes(cfg)["rotary_dim"] == 16

    def silence_block_1(sd):
        sd["mossformer.blocks.1.to_out.linear.weight"] *= TINY
        sd["mossformer.blocks.1.to_out.linear.bias"] *= TINY

    planted = plant(hetero, silence_block_1)
    with pytest.raises(pruning.PruningError,
                       match=r"dropping blocks \[1\] leaves query/key widths "
                       r"\[24, 24\], whose rotary width would be 24, more "
                       r"than the model's 16"):
        pruning.structured_prune(cfg, planted, {"num_blocks": 2})
    new_cfg, new_states, report = pruning.structured_prune(
        cfg, planted, {"num_blocks": 2, "query_key_dims": [16, 24]})
    assert report["blocks"] == [0, 2]
    assert new_cfg["query_key_dims"] == [16, 24]
    assert separate(new_cfg, new_states, mix).isfinite().all()


@pytest.mark.parametrize("half", ["V", "U"])
def test_hidden_pair_scores_count_both_halves(half):
    # pair j is V row j and U row E + j of to_hidden (and to_out's column
    # j): a pair whose V (or U) row is near zero is the least important
    from speechbrain_mossformer.lobes.models.mossformer import (
        MossFormerMaskNet,
    )

    net = MossFormerMaskNet(16, 16, num_blocks=1, group_size=4,
                            query_key_dim=8)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    block = pruning._BLOCK.format(0)
    weight = state[block + "to_hidden.linear.weight"]
    e = weight.shape[0] // 2
    weight.fill_(1.0)
    state[block + "to_hidden.linear.bias"].zero_()
    state[block + "to_out.linear.weight"].fill_(1.0)
    weak = [3, 7]
    rows = [j if half == "V" else e + j for j in weak]
    weight[rows] *= 1e-3
    config = {"out_channels": 16, "num_blocks": 1, "query_key_dim": 8}
    scores = pruning.unit_scores(config, state)["hidden"][0]
    assert sorted(scores.argsort()[:2].tolist()) == weak


def test_scope_without_unstructured_and_a_prune_that_keeps_all_say_so(
    pruned_folder, capsys, tmp_path
):
    root, _ = pruned_folder
    # --scope only sets the unstructured control's threshold: it was
    # ignored without a word
    err = _cli_error(capsys, [str(root / "dense"), str(tmp_path / "o"),
                              "--hidden-fraction", "0.5", "--scope",
                              "layer"])
    assert "--scope applies to --unstructured only" in err
    assert not (tmp_path / "o").exists()
    # query/key 40 = 32 rotary features + 8: a fraction of 0.9 of the 8
    # keeps them all, which printed "100.0%" and nothing else
    assert pruning.main([str(root / "dense"), str(tmp_path / "same"),
                         "--qk-fraction", "0.99"]) == 0
    out, err = capsys.readouterr()
    assert "(100.0%)" in out
    assert err.startswith("note: nothing was pruned")
    assert pruning.main([str(root / "dense"), str(tmp_path / "half"),
                         "--hidden-fraction", "0.5"]) == 0
    assert "nothing was pruned" not in capsys.readouterr().err


def test_a_spec_file_of_nulls_is_nothing_to_prune(pruned_folder, capsys,
                                                  tmp_path):
    # it wrote an unpruned copy with exit code 0
    root, _ = pruned_folder
    spec = tmp_path / "spec.yaml"
    for text in ("hidden_fraction: null\n", "{}\n"):
        spec.write_text(text)
        err = _cli_error(capsys, [str(root / "dense"), str(tmp_path / "o"),
                                  "--config", str(spec)])
        assert f"nothing to prune: {spec} gives no size or fraction" in err
    assert not (tmp_path / "o").exists()


def test_calibration_files_are_resampled_and_downmixed_with_a_note(
    pruned_folder, capsys, tmp_path
):
    import numpy as np
    import soundfile as sf

    root, _ = pruned_folder
    stereo = 0.1 * np.random.default_rng(0).standard_normal((3200, 2))
    sf.write(str(tmp_path / "s16.wav"), stereo, 16000)
    assert pruning.main([str(root / "dense"), str(tmp_path / "o"),
                         "--num-blocks", "2", "--block-score",
                         "contribution", "--calibration",
                         str(tmp_path / "s16.wav")]) == 0
    assert (f"note: calibration file {tmp_path / 's16.wav'}: resampled "
            "from 16000 to 8000 Hz, downmixed from 2 channels to mono"
            ) in capsys.readouterr().err
