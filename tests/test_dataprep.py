"""Tests of the CSV data preparation on mini corpora built from the bundled
real speech (WSJ0-2/3mix, WHAM!, WHAMR!, Libri2/3Mix), including every
clear-error case.

Authors
 * speechbrain-mossformer contributors 2026
"""

import csv
import os
import shutil

import numpy as np
import pytest
import soundfile as sf
from speechbrain.dataio.dataio import read_audio
from speechbrain.dataio.dataset import DynamicItemDataset

from speechbrain_mossformer.dataprep import (
    AudioFileError,
    DataFolderNotFoundError,
    DataPreparationError,
    EmptyDataFolderError,
    FileMismatchError,
    LayoutError,
    SampleRateError,
    prepare_librimix,
    prepare_wham,
    prepare_wsj0mix,
)
from speechbrain_mossformer.dataprep.csv_manifest import manifest_columns
from speechbrain_mossformer.dataprep.minidata import (
    make_librimix,
    make_wham,
    make_wsj0mix,
)

SMALL = {"n_train": 2, "n_valid": 1, "n_test": 1}


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """Mini corpora shared by the read-only tests."""
    root = str(tmp_path_factory.mktemp("mini"))
    return {
        "root": root,
        "wsj2": make_wsj0mix(root, num_spks=2, n_train=6),
        "wsj3": make_wsj0mix(root, num_spks=3),
        "wsj2_16k_max": make_wsj0mix(
            os.path.join(root, "hi"), sample_rate=16000, version="max"
        ),
        "wham": make_wham(root, reverb=False),
        "whamr": make_wham(root, reverb=True),
        "libri2": make_librimix(root, num_spks=2),
        "libri3": make_librimix(root, num_spks=3),
        "libri2_16k_max": make_librimix(
            os.path.join(root, "hi"), sample_rate=16000, version="max"
        ),
    }


def read_rows(path):
    """CSV -> (header, rows)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def check_manifest(csv_path, data_root, columns, n_rows, sample_rate):
    """Checks header, row count, and that every path resolves through
    DynamicItemDataset's $data_root replacement and matches the duration."""
    header, rows = read_rows(csv_path)
    assert header == columns
    assert len(rows) == n_rows
    data = DynamicItemDataset.from_csv(
        csv_path, replacements={"data_root": data_root}
    )
    assert len(data) == n_rows
    wav_cols = [c for c in columns if c.endswith("_wav")]
    for row in rows:
        assert row["ID"] == os.path.splitext(
            os.path.basename(row["mix_wav"])
        )[0]
        entry = data.data[row["ID"]]
        lengths = set()
        for col in wav_cols:
            assert row[col].startswith("$data_root/")
            path = entry[col]
            assert path.startswith(data_root)
            info = sf.info(path)
            assert info.samplerate == sample_rate
            lengths.add(info.frames)
        assert len(lengths) == 1
        frames = lengths.pop()
        assert entry["duration"] == pytest.approx(frames / sample_rate)
        sig = read_audio(entry["mix_wav"])
        assert sig.shape[0] == frames
    return rows


def test_wsj0mix_2spk(mini, tmp_path):
    csvs = prepare_wsj0mix(mini["wsj2"], str(tmp_path))
    assert {k: os.path.basename(v) for k, v in csvs.items()} == {
        "train": "wsj0mix_tr.csv",
        "valid": "wsj0mix_cv.csv",
        "test": "wsj0mix_tt.csv",
    }
    cols = manifest_columns(2)
    assert "s3_wav" not in cols and "noise_wav" not in cols
    rows = check_manifest(csvs["train"], mini["wsj2"], cols, 6, 8000)
    assert "/wav8k/min/tr/mix/" in rows[0]["mix_wav"]
    assert "/wav8k/min/tr/s2/" in rows[0]["s2_wav"]
    check_manifest(csvs["valid"], mini["wsj2"], cols, 4, 8000)
    check_manifest(csvs["test"], mini["wsj2"], cols, 4, 8000)


def test_wsj0mix_3spk(mini, tmp_path):
    csvs = prepare_wsj0mix(mini["wsj3"], str(tmp_path), num_spks=3)
    rows = check_manifest(
        csvs["test"], mini["wsj3"], manifest_columns(3), 4, 8000
    )
    assert "/tt/s3/" in rows[0]["s3_wav"]
    # the WSJ0-3mix file names hold three utterances and three gains
    assert len(rows[0]["ID"].split("_")) == 6


def test_wsj0mix_16k_max(mini, tmp_path):
    path = mini["wsj2_16k_max"]
    csvs = prepare_wsj0mix(
        path, str(tmp_path), sample_rate=16000, version="max"
    )
    rows = check_manifest(csvs["train"], path, manifest_columns(2), 8, 16000)
    assert "/wav16k/max/tr/" in rows[0]["mix_wav"]
    # max mode: mixtures as long as the longest source, which is zero-padded
    padded = 0
    for row in rows:
        s1 = sf.read(row["s1_wav"].replace("$data_root", path))[0]
        s2 = sf.read(row["s2_wav"].replace("$data_root", path))[0]
        # exactly one of the two sources ends with zero padding
        assert s1[-3:].any() != s2[-3:].any()
        padded += 1
    assert padded == 8
    # and the same prep at 8 kHz is refused: only wav16k exists
    with pytest.raises(LayoutError, match="wav16k"):
        prepare_wsj0mix(path, str(tmp_path / "x"), sample_rate=8000)


def test_wham(mini, tmp_path):
    csvs = prepare_wham(mini["wham"], str(tmp_path))
    assert os.path.basename(csvs["train"]) == "wham_tr.csv"
    cols = manifest_columns(2, noise=True)
    rows = check_manifest(csvs["train"], mini["wham"], cols, 8, 8000)
    assert "/tr/mix_both/" in rows[0]["mix_wav"]
    assert "/tr/s1/" in rows[0]["s1_wav"]
    assert "/tr/noise/" in rows[0]["noise_wav"]
    # the mixture is s1 + s2 + noise (up to 16-bit quantisation)
    root = mini["wham"]
    sig = {
        k: sf.read(rows[0][k + "_wav"].replace("$data_root", root))[0]
        for k in ("mix", "s1", "s2", "noise")
    }
    err = sig["mix"] - sig["s1"] - sig["s2"] - sig["noise"]
    assert np.max(np.abs(err)) < 1e-3
    assert np.std(sig["noise"]) > 1e-3


def test_whamr_anechoic_targets_all_splits(mini, tmp_path):
    csvs = prepare_wham(mini["whamr"], str(tmp_path), reverb=True)
    cols = manifest_columns(2, noise=True)
    for key, split in (("train", "tr"), ("valid", "cv"), ("test", "tt")):
        assert os.path.basename(csvs[key]) == "whamr_%s.csv" % split
        n = 8 if key == "train" else 4
        rows = check_manifest(csvs[key], mini["whamr"], cols, n, 8000)
        for row in rows:
            assert "/%s/mix_both_reverb/" % split in row["mix_wav"]
            assert "/%s/s1_anechoic/" % split in row["s1_wav"]
            assert "/%s/s2_anechoic/" % split in row["s2_wav"]
            assert "/%s/noise/" % split in row["noise_wav"]


def test_whamr_reverb_targets(mini, tmp_path):
    csvs = prepare_wham(
        mini["whamr"], str(tmp_path), reverb=True, targets="reverb"
    )
    _, rows = read_rows(csvs["test"])
    assert all("/tt/s1_reverb/" in r["s1_wav"] for r in rows)
    assert all("/tt/s2_reverb/" in r["s2_wav"] for r in rows)
    with pytest.raises(DataPreparationError, match="reverb=True"):
        prepare_wham(mini["wham"], str(tmp_path), targets="reverb")


def test_wham_reverb_option_mismatch(mini, tmp_path):
    # the recipe user is told which yaml to use (a --reverb override would
    # not help), the API user which argument
    with pytest.raises(DataPreparationError,
                       match="mossformer-whamr.yaml .*reverb=True"):
        prepare_wham(mini["whamr"], str(tmp_path), reverb=False)
    with pytest.raises(DataPreparationError,
                       match="mossformer-wham.yaml .*reverb=False"):
        prepare_wham(mini["wham"], str(tmp_path), reverb=True)


def test_librimix_2spk(mini, tmp_path):
    csvs = prepare_librimix(mini["libri2"], str(tmp_path))
    assert {k: os.path.basename(v) for k, v in csvs.items()} == {
        "train": "libri2mix_train-360.csv",
        "valid": "libri2mix_dev.csv",
        "test": "libri2mix_test.csv",
    }
    cols = manifest_columns(2, noise=True)
    rows = check_manifest(csvs["valid"], mini["libri2"], cols, 4, 8000)
    assert "/dev/mix_clean/" in rows[0]["mix_wav"]
    # LibriMix names: <spk>-<chapter>-<utt>_<spk>-<chapter>-<utt>
    first = rows[0]["ID"].split("_")
    assert len(first) == 2 and all(len(p.split("-")) == 3 for p in first)
    noisy = prepare_librimix(
        mini["libri2"], str(tmp_path / "noisy"), use_noise=True
    )
    rows = check_manifest(noisy["test"], mini["libri2"], cols, 4, 8000)
    assert "/test/mix_both/" in rows[0]["mix_wav"]


def test_librimix_3spk_and_16k_max(mini, tmp_path):
    csvs = prepare_librimix(mini["libri3"], str(tmp_path), num_spks=3)
    assert os.path.basename(csvs["test"]) == "libri3mix_test.csv"
    check_manifest(
        csvs["test"], mini["libri3"], manifest_columns(3, True), 4, 8000
    )
    path = mini["libri2_16k_max"]
    csvs = prepare_librimix(
        path, str(tmp_path / "hi"), sample_rate=16000, version="max"
    )
    rows = check_manifest(
        csvs["train"], path, manifest_columns(2, True), 8, 16000
    )
    assert "/wav16k/max/train-360/" in rows[0]["mix_wav"]
    with pytest.raises(LayoutError, match="train-100"):
        prepare_librimix(path, str(tmp_path / "x"), sample_rate=16000,
                         version="max", train_set="train-100")


def test_skip_prep_keeps_and_validates(mini, tmp_path):
    save = str(tmp_path)
    csvs = prepare_wsj0mix(mini["wsj2"], save)
    with open(csvs["valid"]) as f:
        lines = f.read().splitlines()
    # drop a row: with skip_prep the file must not be rewritten
    with open(csvs["valid"], "w") as f:
        f.write("\n".join(lines[:-1]) + "\n")
    again = prepare_wsj0mix(mini["wsj2"], save, skip_prep=True)
    assert again == csvs
    assert len(read_rows(csvs["valid"])[1]) == 3
    # ... but it is rewritten without skip_prep
    prepare_wsj0mix(mini["wsj2"], save)
    assert len(read_rows(csvs["valid"])[1]) == 4
    # CSVs made for 2 speakers do not pass for 3
    with pytest.raises(DataPreparationError, match="s3_wav"):
        prepare_wsj0mix(mini["wsj2"], save, num_spks=3, skip_prep=True)
    # ... nor for another sample rate / mode
    with pytest.raises(DataPreparationError, match="wav16k/min"):
        prepare_wsj0mix(mini["wsj2"], save, sample_rate=16000,
                        skip_prep=True)
    # skip_prep with no CSV: nothing is created, no data folder is touched
    out = prepare_wsj0mix("/does/not/exist", str(tmp_path / "none"),
                          skip_prep=True)
    assert not os.path.exists(out["train"])


# ---------------------------------------------------------------------------
# clear errors
# ---------------------------------------------------------------------------


def test_missing_folder(tmp_path):
    missing = str(tmp_path / "nowhere" / "2speakers")
    with pytest.raises(DataFolderNotFoundError) as err:
        prepare_wsj0mix(missing, str(tmp_path / "save"))
    assert missing in str(err.value) and "does not exist" in str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    assert isinstance(err.value, ValueError)
    for prep in (prepare_wham, prepare_librimix):
        with pytest.raises(DataFolderNotFoundError, match="does not exist"):
            prep(missing, str(tmp_path / "save"))


def test_empty_folder(tmp_path):
    empty = tmp_path / "Libri2Mix"
    empty.mkdir()
    with pytest.raises(EmptyDataFolderError, match="is empty") as err:
        prepare_librimix(str(empty), str(tmp_path / "save"))
    assert str(empty) in str(err.value)
    # a mixture folder without audio files
    root = make_wsj0mix(str(tmp_path), **SMALL)
    mix_dir = os.path.join(root, "wav8k", "min", "cv", "mix")
    for name in os.listdir(mix_dir):
        os.remove(os.path.join(mix_dir, name))
    with pytest.raises(EmptyDataFolderError, match="no .wav/.flac"):
        prepare_wsj0mix(root, str(tmp_path / "save"))


def test_wrong_rate_folder_names_what_exists(mini, tmp_path):
    with pytest.raises(LayoutError) as err:
        prepare_wsj0mix(mini["wsj2"], str(tmp_path), sample_rate=16000)
    msg = str(err.value)
    assert os.path.join(mini["wsj2"], "wav16k") in msg
    assert "'wav8k'" in msg
    with pytest.raises(LayoutError, match="'min'"):
        prepare_wham(mini["wham"], str(tmp_path), version="max")
    with pytest.raises(LayoutError, match="'wav8k'"):
        prepare_librimix(mini["libri2"], str(tmp_path), sample_rate=16000)
    # datapath one level too high: the message says which folder to pass
    parent = os.path.dirname(mini["wsj2"])
    with pytest.raises(LayoutError, match="2speakers"):
        prepare_wsj0mix(parent, str(tmp_path))
    # ... or too deep (the rate or version folder of a LibriMix)
    for deep in (("wav8k",), ("wav8k", "min")):
        with pytest.raises(LayoutError) as err:
            prepare_librimix(os.path.join(mini["libri2"], *deep),
                             str(tmp_path))
        assert str(err.value).endswith(
            "datapath must be the Libri2Mix folder itself, not a folder in "
            f"it: {mini['libri2']}."), str(err.value)


def test_wham_and_whamr_data_swapped_name_the_yaml_to_use(mini, tmp_path):
    # the message spoke of prepare_wham's reverb argument, not the recipe
    with pytest.raises(LayoutError) as err:
        prepare_wham(mini["whamr"], str(tmp_path))
    msg = str(err.value)
    assert "has the WHAMR! folders" in msg, msg
    assert "the run is set up for WHAM! (whamr: False): for WHAMR! use the " \
        "recipe's hparams/mossformer-whamr.yaml" in msg, msg
    with pytest.raises(LayoutError) as err:
        prepare_wham(mini["wham"], str(tmp_path), reverb=True)
    assert "use the recipe's hparams/mossformer-wham.yaml" in str(err.value)


def test_wrong_number_of_speakers(mini, tmp_path):
    with pytest.raises(LayoutError) as err:
        prepare_wsj0mix(mini["wsj2"], str(tmp_path), num_spks=3)
    assert "s3" in str(err.value) and "'s2'" in str(err.value)
    with pytest.raises(LayoutError, match="num_spks=2"):
        prepare_wsj0mix(mini["wsj3"], str(tmp_path), num_spks=2)
    with pytest.raises(LayoutError, match="Libri3Mix"):
        prepare_librimix(mini["libri3"], str(tmp_path), num_spks=2)


def test_mismatched_file_names(tmp_path):
    root = make_wsj0mix(str(tmp_path), **SMALL)
    s2_dir = os.path.join(root, "wav8k", "min", "tr", "s2")
    name = sorted(os.listdir(s2_dir))[0]
    os.rename(os.path.join(s2_dir, name), os.path.join(s2_dir, "other.wav"))
    with pytest.raises(FileMismatchError) as err:
        prepare_wsj0mix(root, str(tmp_path / "save"))
    msg = str(err.value)
    assert os.path.join(root, "wav8k", "min", "tr", "mix", name) in msg
    assert s2_dir in msg
    assert not os.path.exists(str(tmp_path / "save" / "wsj0mix_tr.csv"))


def test_wrong_sample_rate_file(tmp_path):
    root = make_wham(str(tmp_path), **SMALL)
    noise_dir = os.path.join(root, "wav8k", "min", "tt", "noise")
    bad = os.path.join(noise_dir, os.listdir(noise_dir)[0])
    sf.write(bad, np.zeros(16000), 16000, subtype="PCM_16")
    with pytest.raises(SampleRateError) as err:
        prepare_wham(root, str(tmp_path / "save"))
    msg = str(err.value)
    assert bad in msg and "16000" in msg and "8000" in msg


def test_length_mismatch(tmp_path):
    root = make_librimix(str(tmp_path), **SMALL)
    s1_dir = os.path.join(root, "wav8k", "min", "dev", "s1")
    bad = os.path.join(s1_dir, os.listdir(s1_dir)[0])
    sf.write(bad, np.zeros(123), 8000, subtype="PCM_16")
    with pytest.raises(FileMismatchError, match="123 samples") as err:
        prepare_librimix(root, str(tmp_path / "save"))
    assert bad in str(err.value)


def test_corrupt_file(tmp_path):
    root = make_wsj0mix(str(tmp_path), **SMALL)
    mix_dir = os.path.join(root, "wav8k", "min", "tt", "mix")
    bad = os.path.join(mix_dir, os.listdir(mix_dir)[0])
    with open(bad, "wb") as f:
        f.write(b"this is not a wav file" * 10)
    with pytest.raises(AudioFileError) as err:
        prepare_wsj0mix(root, str(tmp_path / "save"))
    assert bad in str(err.value)
    # no chained traceback from inside soundfile
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_bad_options(mini, tmp_path):
    with pytest.raises(DataPreparationError, match="num_spks"):
        prepare_wsj0mix(mini["wsj2"], str(tmp_path), num_spks=4)
    with pytest.raises(DataPreparationError, match="version"):
        prepare_wsj0mix(mini["wsj2"], str(tmp_path), version="mid")
    with pytest.raises(DataPreparationError, match="sample_rate"):
        prepare_wsj0mix(mini["wsj2"], str(tmp_path), sample_rate=22050)
    with pytest.raises(DataPreparationError, match="targets"):
        prepare_wham(mini["whamr"], str(tmp_path), reverb=True,
                     targets="wet")


def test_minidata_is_deterministic(tmp_path):
    a = make_wsj0mix(str(tmp_path / "a"), **SMALL)
    b = make_wsj0mix(str(tmp_path / "b"), **SMALL)
    c = make_wsj0mix(str(tmp_path / "c"), seed=1, **SMALL)
    sub = os.path.join("wav8k", "min", "tr", "mix")
    names_a = sorted(os.listdir(os.path.join(a, sub)))
    assert names_a == sorted(os.listdir(os.path.join(b, sub)))
    assert names_a != sorted(os.listdir(os.path.join(c, sub)))
    x = sf.read(os.path.join(a, sub, names_a[0]))[0]
    y = sf.read(os.path.join(b, sub, names_a[0]))[0]
    assert np.array_equal(x, y)
    shutil.rmtree(str(tmp_path / "c"))


def test_minidata_speaker_disjoint_splits(mini):
    root = os.path.join(mini["wsj2"], "wav8k", "min")
    spks = {}
    for split in ("tr", "cv", "tt"):
        names = os.listdir(os.path.join(root, split, "mix"))
        # WSJ0-like utterance ids: 3-character speaker code first
        spks[split] = {
            part[:3] for n in names for part in n.split("_")[0::2]
        }
        for n in names:
            parts = os.path.splitext(n)[0].split("_")
            assert len(set(p[:3] for p in parts[0::2])) == 2
    assert not spks["tr"] & spks["cv"]
    assert not spks["tr"] & spks["tt"]
    assert not spks["cv"] & spks["tt"]


def test_make_all_exact_layouts(tmp_path):
    from speechbrain_mossformer.dataprep.minidata import make_all

    paths = make_all(str(tmp_path))
    root = str(tmp_path)

    def subs(*parts):
        return sorted(os.listdir(os.path.join(*parts)))

    assert paths["wsj0_2mix"] == os.path.join(root, "wsj0-mix", "2speakers")
    assert subs(paths["wsj0_3mix"], "wav8k", "min", "cv") == [
        "mix", "s1", "s2", "s3"
    ]
    assert subs(paths["wham"], "wav8k", "min", "tt") == [
        "mix_both", "mix_clean", "mix_single", "noise", "s1", "s2"
    ]
    assert subs(paths["whamr"], "wav8k", "min", "tr") == [
        "mix_both_anechoic", "mix_both_reverb", "mix_clean_anechoic",
        "mix_clean_reverb", "mix_single_anechoic", "mix_single_reverb",
        "noise", "s1_anechoic", "s1_reverb", "s2_anechoic", "s2_reverb",
    ]
    assert subs(paths["libri2mix"], "wav8k", "min") == [
        "dev", "test", "train-360"
    ]
    assert subs(paths["libri3mix"], "wav8k", "min", "test") == [
        "mix_both", "mix_clean", "mix_single", "noise", "s1", "s2", "s3"
    ]
    assert subs(paths["wham_noise"]) == ["cv", "tr", "tt"]
    # raw corpora at 16 kHz, with their real naming
    si_tr_s = paths["wsj0_si_tr_s"]
    spk = subs(si_tr_s)[0]
    utt = subs(si_tr_s, spk)[0]
    assert len(spk) == 3 and utt.startswith(spk) and len(utt) == 12
    assert sf.info(os.path.join(si_tr_s, spk, utt)).samplerate == 16000
    libri = paths["librispeech"]
    assert libri.endswith(os.path.join("LibriSpeech", "train-clean-360"))
    spk = subs(libri)[0]
    flac = subs(libri, spk, "100")[0]
    assert flac.startswith(spk + "-100-") and flac.endswith(".flac")
    info = sf.info(os.path.join(libri, spk, "100", flac))
    assert info.samplerate == 16000 and info.subtype == "PCM_16"
    # WHAM!/WHAMR! as their scripts write them (32-bit float wav), the
    # other mixture sets as 16-bit PCM wav
    mix_dir = os.path.join(paths["whamr"], "wav8k", "min", "tr",
                           "mix_both_reverb")
    info = sf.info(os.path.join(mix_dir, os.listdir(mix_dir)[0]))
    assert info.subtype == "FLOAT" and info.samplerate == 8000
    wsj_dir = os.path.join(paths["wsj0_2mix"], "wav8k", "min", "tr", "mix")
    info = sf.info(os.path.join(wsj_dir, os.listdir(wsj_dir)[0]))
    assert info.subtype == "PCM_16" and info.samplerate == 8000
    # a WHAMR! reverberant source is longer-tailed but aligned with the
    # anechoic one: their correlation peaks at lag 0
    name = os.listdir(mix_dir)[0]
    split_dir = os.path.dirname(mix_dir)
    dry = sf.read(os.path.join(split_dir, "s1_anechoic", name))[0]
    wet = sf.read(os.path.join(split_dir, "s1_reverb", name))[0]
    assert not np.allclose(dry, wet, atol=1e-3)
    corr = np.correlate(wet, dry, "full")
    assert int(np.argmax(corr)) - (len(dry) - 1) == 0
    with open(paths["rirs_csv"]) as f:
        assert f.readline().strip() == "ID,duration,wav,wav_format,wav_opts"


# ---------------------------------------------------------------------------
# Regressions: stale manifests, multi-channel files, duplicate IDs


def test_skip_prep_refuses_a_manifest_of_more_speakers(mini, tmp_path):
    save = str(tmp_path / "save")
    prepare_wsj0mix(mini["wsj3"], save, num_spks=3)
    with pytest.raises(DataPreparationError, match=r"\['s3_wav'\].*num_spks"):
        prepare_wsj0mix(mini["wsj3"], save, num_spks=2, skip_prep=True)


def test_skip_prep_refuses_whamr_manifest_of_other_targets(mini, tmp_path):
    save = str(tmp_path / "save")
    prepare_wham(mini["whamr"], save, reverb=True)  # anechoic targets
    with pytest.raises(DataPreparationError, match="s1_reverb"):
        prepare_wham(
            mini["whamr"], save, reverb=True, targets="reverb", skip_prep=True
        )
    # and the other way round
    prepare_wham(mini["whamr"], save, reverb=True, targets="reverb")
    with pytest.raises(DataPreparationError, match="s1_anechoic"):
        prepare_wham(mini["whamr"], save, reverb=True, skip_prep=True)


def test_multichannel_file_is_a_clear_error(tmp_path):
    data = make_wsj0mix(str(tmp_path), **SMALL)
    folder = os.path.join(data, "wav8k", "min", "tt", "s1")
    path = os.path.join(folder, sorted(os.listdir(folder))[0])
    x, sr = sf.read(path)
    sf.write(path, np.stack([x, x], axis=1), sr)
    with pytest.raises(AudioFileError, match="2 channels") as err:
        prepare_wsj0mix(data, str(tmp_path / "save"))
    assert path in str(err.value)


def test_same_name_with_two_extensions_is_a_clear_error(tmp_path):
    data = make_wsj0mix(str(tmp_path), **SMALL)
    for sub in ("mix", "s1", "s2"):
        folder = os.path.join(data, "wav8k", "min", "tt", sub)
        name = sorted(os.listdir(folder))[0]
        x, sr = sf.read(os.path.join(folder, name))
        sf.write(os.path.join(folder, name[:-4] + ".flac"), x, sr)
    with pytest.raises(FileMismatchError, match=r"\.flac and .*\.wav"):
        prepare_wsj0mix(data, str(tmp_path / "save"))


def test_speaker_splits_do_not_depend_on_the_utterance_duration(tmp_path):
    # A long duration drops speakers without a long enough clip; the
    # remaining speakers must keep their split, or a mixture set and a
    # dynamic-mixing pool built with other durations share test speakers
    # (the quickstart's 2 s Libri2Mix and 3 s LibriSpeech pool did).
    from speechbrain_mossformer.dataprep import minidata
    from speechbrain_mossformer.dataprep.minidata import _Corpus

    short = _Corpus(None, 8000, 2.0, 0)
    long = _Corpus(None, 8000, 4.0, 0)
    assert set(long.bank) < set(short.bank)
    for split in ("train", "valid", "test"):
        assert set(long.splits[split]) <= set(short.splits[split])
    mixtures = minidata.make_librimix(
        str(tmp_path), num_spks=2, n_train=2, n_valid=2, n_test=6,
        duration=2.0,
    )
    pool = minidata.make_librispeech(str(tmp_path), duration=3.0)
    test = os.listdir(os.path.join(mixtures, "wav8k", "min", "test", "s1"))
    test_speakers = {
        part.split("-")[0]
        for name in test
        for part in os.path.splitext(name)[0].split("_")
    }
    assert test_speakers and not test_speakers & set(os.listdir(pool))


def test_dynamic_mixing_bad_counts_are_data_preparation_errors(tmp_path):
    # user settings (the recipes' dm_epoch_size, num_spks): the recipes
    # print a DataPreparationError as one line, a plain ValueError as a
    # traceback (kept for programming errors)
    from speechbrain_mossformer.dataprep.dynamic_mixing import (
        DynamicMixingDataset)
    from speechbrain_mossformer.dataprep.minidata import make_wsj0_si_tr_s

    si_tr_s = make_wsj0_si_tr_s(str(tmp_path))
    with pytest.raises(DataPreparationError, match="epoch_size must be >= 1"):
        DynamicMixingDataset(si_tr_s, training_signal_len=4000, epoch_size=0)
    with pytest.raises(DataPreparationError, match="num_spks must be >= 1"):
        DynamicMixingDataset(si_tr_s, num_spks=0, epoch_size=4)
    # an empty training CSV as the epoch size
    empty = tmp_path / "tr.csv"
    empty.write_text("ID,duration\n")
    with pytest.raises(DataPreparationError, match="got 0"):
        DynamicMixingDataset(si_tr_s, train_csv=str(empty))
    assert len(DynamicMixingDataset(si_tr_s, epoch_size=3)) == 3


def test_a_binaural_whamr_file_names_the_scripts_mono_switch(tmp_path):
    # WHAMR!'s scripts write 2-channel files with MONO = False; the error
    # said only "must be mono"
    import numpy as np
    import soundfile as sf

    from speechbrain_mossformer.dataprep.csv_manifest import (
        AudioFileError, _mono, audio_info)

    folder = tmp_path / "s1_anechoic"
    folder.mkdir()
    path = str(folder / "a.wav")
    sf.write(path, np.zeros((800, 2)), 8000)
    with pytest.raises(AudioFileError, match=r"2 channels.*MONO = False.*"
                       r"generate it again with MONO = True"):
        _mono(audio_info(path), path)
    other = str(tmp_path / "stereo.wav")
    sf.write(other, np.zeros((800, 2)), 8000)
    with pytest.raises(AudioFileError) as err:
        _mono(audio_info(other), other)
    assert "MONO" not in str(err.value)


def test_speaker_splits_are_disjoint_and_cover_every_speaker():
    # a speaker in two splits leaks test (or validation) voices into
    # training or model selection
    from speechbrain_mossformer.dataprep.minidata import speaker_splits

    speakers = [f"s{i:02d}" for i in range(20)]
    for seed in range(5):
        splits = speaker_splits(speakers, seed, n_valid=4, n_test=4)
        train, valid, test = map(
            set, (splits["train"], splits["valid"], splits["test"]))
        assert not (train & valid or train & test or valid & test), seed
        assert train | valid | test == set(speakers)
        assert len(valid) == len(test) == 4


def test_minidata_command_builds_every_corpus_and_says_where(tmp_path,
                                                             capsys):
    from speechbrain_mossformer.dataprep.minidata import main

    root = tmp_path / "mini"
    assert main([str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    lines = {line.split()[0]: line for line in out}
    for name in ("wsj0_2mix", "wsj0_3mix", "wham", "whamr", "libri2mix",
                 "libri3mix", "wsj0_si_tr_s", "librispeech", "wham_noise",
                 "rirs_csv"):
        path = lines[name].split()[1]
        assert path.startswith(str(root)) and os.path.exists(path), name
    assert "--data_folder of recipes/LibriMix" in lines["libri2mix"]
    assert out[-1].startswith("a tiny training run: python recipes/")
    (tmp_path / "file").write_text("")
    assert main([str(tmp_path / "file")]) == 2
    assert "not a folder" in capsys.readouterr().err
    # a folder under a file: one line, no traceback
    assert main([str(tmp_path / "file" / "mini")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
