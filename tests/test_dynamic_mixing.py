"""Tests of the dynamic mixing dataset (determinism, epochs, DDP sampling,
resuming, gains, loudness, noise and reverberation) on mini WSJ0 /
LibriSpeech / WHAM! noise / RIR sets built from the bundled real speech.

Authors
 * speechbrain-mossformer contributors 2026
"""

import csv
import os

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataloader import SaveableDataLoader, make_dataloader
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from speechbrain_mossformer.dataprep.csv_manifest import (
    DataPreparationError,
    EmptyDataFolderError,
)
from speechbrain_mossformer.dataprep.dynamic_mixing import (
    DynamicMixingDataset,
    build_speaker_pool,
    k_weighting_coefficients,
    loudness,
    normalize_loudness,
    prepare_rir,
    read_rir_list,
    read_segment,
    reverberate_aligned,
)
from speechbrain_mossformer.dataprep.minidata import (
    default_speech_dir,
    make_librispeech,
    make_rirs,
    make_wham_noise,
    make_wsj0_si_tr_s,
)

SR = 8000
LEN = 4000


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("dm"))
    rir_folder, rir_csv = make_rirs(root, n=6, sample_rate=SR)
    return {
        "root": root,
        "si_tr_s": make_wsj0_si_tr_s(root),  # 16 kHz: resampled on read
        "librispeech": make_librispeech(root),
        "noise": os.path.join(make_wham_noise(root, sample_rate=SR), "tr"),
        "rir_csv": rir_csv,
        "rir_folder": rir_folder,
    }


def make_ds(data, **kwargs):
    opts = dict(sample_rate=SR, training_signal_len=LEN, epoch_size=16)
    opts.update(kwargs)
    return DynamicMixingDataset(data["si_tr_s"], **opts)


def same_item(a, b):
    return a.keys() == b.keys() and all(
        a[k] == b[k] if k == "id" else torch.equal(a[k], b[k]) for k in a
    )


def test_item_keys_and_shapes(data):
    ds = make_ds(data)
    assert len(ds) == 16
    item = ds[3]
    assert sorted(item) == ["id", "mix_sig", "s1_sig", "s2_sig"]
    assert isinstance(item["id"], str)
    for key in ("mix_sig", "s1_sig", "s2_sig"):
        assert item[key].shape == (LEN,) and item[key].dtype == torch.float32
    # without noise/reverb the mixture is exactly the sum of the sources
    assert torch.allclose(item["mix_sig"], item["s1_sig"] + item["s2_sig"])
    assert item["s1_sig"].abs().max() > 1e-3
    assert item["s2_sig"].abs().max() > 1e-3
    peak = max(item[k].abs().max() for k in ("mix_sig", "s1_sig", "s2_sig"))
    assert peak <= 0.9 + 1e-6
    three = make_ds(data, num_spks=3)[0]
    assert sorted(three) == ["id", "mix_sig", "s1_sig", "s2_sig", "s3_sig"]
    assert torch.allclose(
        three["mix_sig"], three["s1_sig"] + three["s2_sig"] + three["s3_sig"]
    )


def test_length_is_shortest_utterance_without_limit(data):
    ds = make_ds(data, training_signal_len=None)
    plan = ds.plan(0)
    lengths = [sf.info(f).frames // 2 for f in plan["files"]]  # 16k -> 8k
    assert plan["length"] == min(lengths)
    assert ds[0]["mix_sig"].shape == (min(lengths),)


def test_deterministic_for_seed_epoch_index(data):
    a, b = make_ds(data), make_ds(data)
    for ds in (a, b):
        ds.set_epoch(3)
    for i in (0, 5, 15):
        assert same_item(a[i], b[i])
        assert same_item(a[i], a[i])
    # the item does not depend on which items were generated before
    c = make_ds(data)
    c.set_epoch(3)
    assert same_item(c[15], a[15])


def test_different_across_epochs_indices_and_seeds(data):
    ds = make_ds(data)
    ds.set_epoch(0)
    e0 = [ds[i]["mix_sig"] for i in range(4)]
    ds.set_epoch(1)
    e1 = [ds[i]["mix_sig"] for i in range(4)]
    assert ds.epoch == 1
    assert all(not torch.equal(x, y) for x, y in zip(e0, e1))
    assert not torch.equal(e1[0], e1[1])
    other = make_ds(data, seed=99)
    other.set_epoch(1)
    assert not torch.equal(other[0]["mix_sig"], e1[0])


def test_different_speakers_within_item(data):
    for num_spks in (2, 3):
        ds = make_ds(data, num_spks=num_spks, epoch_size=40)
        seen = set()
        for i in range(len(ds)):
            plan = ds.plan(i)
            assert len(set(plan["speakers"])) == num_spks
            # the speaker folder of each file agrees with the speaker id
            folders = [os.path.basename(os.path.dirname(f))
                       for f in plan["files"]]
            assert folders == plan["speakers"]
            seen.update(plan["speakers"])
        assert len(seen) > 5  # many speakers get used


def test_wsj0_relative_gains(data):
    ds = make_ds(data, epoch_size=8)
    for i in range(8):
        plan, item = ds.plan(i), ds[i]
        assert -45 <= plan["gains"][0] <= 0
        lvl = [
            20 * np.log10(item[k].abs().mean().item())
            for k in ("s1_sig", "s2_sig")
        ]
        # peak scaling changes both by the same factor: the gap stays
        assert lvl[1] - lvl[0] == pytest.approx(
            plan["gains"][1] - plan["gains"][0], abs=0.01
        )


def test_noise_path(data):
    ds = make_ds(data, noise_folder=data["noise"])
    for i in range(6):
        item, plan = ds[i], ds.plan(i)
        assert sorted(item) == [
            "id", "mix_sig", "noise_sig", "s1_sig", "s2_sig"
        ]
        assert item["noise_sig"].shape == (LEN,)
        # noise_sig is returned at the level it was added
        total = item["s1_sig"] + item["s2_sig"] + item["noise_sig"]
        assert torch.allclose(item["mix_sig"], total, atol=1e-6)
        # SNR of the louder source against the noise, as drawn
        p_src = max(item[k].pow(2).mean().item() for k in ("s1_sig", "s2_sig"))
        snr = 10 * np.log10(p_src / item["noise_sig"].pow(2).mean().item())
        assert snr == pytest.approx(plan["noise"]["level"], abs=0.01)
        assert -6 <= plan["noise"]["level"] <= 3


def test_noise_is_looped_when_short(data, tmp_path):
    noise_dir = tmp_path / "noise"
    noise_dir.mkdir()
    tone = np.sin(np.arange(1000) * 0.3) * 0.1
    sf.write(str(noise_dir / "short.wav"), tone, SR)
    ds = make_ds(data, noise_folder=str(noise_dir))
    noise = ds[0]["noise_sig"].numpy()
    assert noise.shape == (LEN,)
    np.testing.assert_allclose(noise[:1000], noise[1000:2000], atol=1e-6)


def test_wham_noise_as_released_16k_stereo_is_first_channel_resampled(
    data, tmp_path
):
    # wham_noise/tr holds 16 kHz 2-channel files (the mini fixture writes
    # 8 kHz mono): dynamic mixing takes the first channel, at the run's rate
    noise_dir = tmp_path / "wham_noise" / "tr"
    noise_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    left = 0.1 * rng.standard_normal(4 * 16000)
    right = np.zeros_like(left)  # a second channel that must not be used
    sf.write(str(noise_dir / "011a010b_0.9_20do010c_-0.9.wav"),
             np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    ds = make_ds(data, noise_folder=str(noise_dir))
    item, plan = ds[0], ds.plan(0)
    noise = item["noise_sig"].numpy()
    assert noise.shape == (LEN,) and np.abs(noise).max() > 0
    # the first channel at 8 kHz, scaled to the drawn level
    start = plan["noise"]["start"]
    expected = resample_poly(left, 1, 2)[start:start + LEN]
    gain = np.dot(noise, expected) / np.dot(expected, expected)
    np.testing.assert_allclose(noise, gain * expected, atol=1e-4)


def test_reverb_path(data):
    ds = make_ds(data, rirs=data["rir_csv"], noise_folder=data["noise"])
    assert len(ds.rir_files) == 6
    item, plan = ds[2], ds.plan(2)
    assert len(plan["rirs"]) == 2
    dry = item["s1_sig"] + item["s2_sig"]
    wet = item["mix_sig"] - item["noise_sig"]
    # the mixture is reverberant, the targets are not
    assert not torch.allclose(wet, dry, atol=1e-3)
    # ... and they stay time-aligned: cross-correlation peaks at lag 0
    x, y = wet.numpy(), dry.numpy()
    lags = range(-60, 61)
    corr = [np.dot(x[max(0, k):LEN + min(0, k)],
                   y[max(0, -k):LEN - max(0, k)]) for k in lags]
    assert list(lags)[int(np.argmax(corr))] == 0
    # the reverberant mixture equals the sum of sources convolved with the
    # aligned RIRs (recomputed here)
    scale = item["s1_sig"].abs().max().item()
    assert scale > 0
    expected = sum(
        reverberate_aligned(item["s%d_sig" % (k + 1)].double().numpy(),
                            ds._rir(plan["rirs"][k]))
        for k in range(2)
    )
    np.testing.assert_allclose(x, expected, atol=1e-5)


def test_rir_alignment_helpers(tmp_path):
    rir = np.zeros(50)
    rir[7] = -0.8
    rir[9:] = 0.1
    aligned = prepare_rir(rir)
    assert aligned[0] == 1.0 and len(aligned) == 43
    x = np.random.default_rng(0).standard_normal(200)
    np.testing.assert_allclose(reverberate_aligned(x, np.array([1.0])), x)
    y = reverberate_aligned(x, aligned)
    assert y.shape == x.shape
    np.testing.assert_allclose(y[:2], x[:2])  # direct path at lag 0
    assert read_rir_list([str(tmp_path / "a.wav")]) == [
        str(tmp_path / "a.wav")
    ]


def test_rir_list_formats(data):
    from_csv = read_rir_list(data["rir_csv"])
    from_dir = read_rir_list(data["rir_folder"])
    assert sorted(from_csv) == sorted(from_dir)
    assert all(os.path.isfile(p) for p in from_csv)


def test_loudness_meter():
    (b, a), (b2, a2) = k_weighting_coefficients(48000)
    # ITU-R BS.1770 tabulated 48 kHz coefficients
    np.testing.assert_allclose(
        b, [1.53512485958697, -2.69169618940638, 1.19839281085285], 1e-6
    )
    np.testing.assert_allclose(
        a, [1.0, -1.69065929318241, 0.73248077421585], 1e-6
    )
    np.testing.assert_allclose(
        a2, [1.0, -1.99004745483398, 0.99007225036621], 1e-6
    )
    # a full-scale 997 Hz sine reads -3.01 LUFS
    for sr in (8000, 16000):
        t = np.arange(2 * sr) / sr
        tone = np.sin(2 * np.pi * 997 * t)
        assert loudness(tone, sr) == pytest.approx(-3.01, abs=0.1)
        assert loudness(0.1 * tone, sr) == pytest.approx(-23.01, abs=0.1)
    assert loudness(np.zeros(8000), 8000) == float("-inf")
    # gating: adding silence does not change the loudness of speech
    path = os.path.join(default_speech_dir(), "vctk-p225-F", "p225_003.wav")
    speech, sr = sf.read(path)
    padded = np.concatenate([speech, np.zeros(3 * sr)])
    assert loudness(padded, sr) == pytest.approx(loudness(speech, sr), abs=0.5)
    y = normalize_loudness(speech, sr, -30.0)
    assert loudness(y, sr) == pytest.approx(-30.0, abs=0.01)


def test_librimix_loudness_path(data):
    ds = DynamicMixingDataset(
        data["librispeech"], sample_rate=SR, training_signal_len=LEN,
        epoch_size=8, corpus="librispeech", noise_folder=data["noise"],
    )
    assert ds.gain_style == "loudness"
    # speakers are the <spk> folders of <spk>/<chapter>/<utt>.flac
    assert set(ds.speakers) == set(os.listdir(data["librispeech"]))
    for i in range(8):
        plan, item = ds.plan(i), ds[i]
        targets = plan["gains"] + [plan["noise"]["level"]]
        assert all(-33 <= g <= -25 for g in plan["gains"])
        assert -38 <= plan["noise"]["level"] <= -30
        measured = [
            loudness(item[k].numpy().astype(np.float64), SR)
            for k in ("s1_sig", "s2_sig", "noise_sig")
        ]
        # the common peak-limiting factor is the only deviation
        shift = measured[0] - targets[0]
        assert shift <= 1e-3
        for m, t in zip(measured, targets):
            assert m - t == pytest.approx(shift, abs=1.0)
        if item["mix_sig"].abs().max() < 0.9 - 1e-4:
            for m, t in zip(measured, targets):
                assert m == pytest.approx(t, abs=1.0)


def test_read_segment_resamples_aligned(data):
    path = sorted(build_speaker_pool(data["si_tr_s"]).values())[0][0]
    whole16, sr = sf.read(path)
    assert sr == 16000
    whole8 = resample_poly(whole16, 1, 2)
    seg = read_segment(path, 1000, 2000, SR)
    assert seg.shape == (2000,)
    np.testing.assert_allclose(seg[100:-100], whole8[1100:2900], atol=2e-3)
    tail = read_segment(path, len(whole8) - 10, 50, SR)
    assert tail.shape == (50,) and not tail[-30:].any()


def test_distributed_sampler_disjoint(data):
    ds = make_ds(data, epoch_size=20)
    parts = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, seed=7)
        sampler.set_epoch(1)
        parts.append(list(sampler))
    assert len(parts[0]) == len(parts[1]) == 10
    assert not set(parts[0]) & set(parts[1])
    assert set(parts[0]) | set(parts[1]) == set(range(20))
    # each rank generates its items independently and reproducibly
    ds.set_epoch(1)
    other = make_ds(data, epoch_size=20)
    other.set_epoch(1)
    i = parts[1][0]
    assert same_item(ds[i], other[i])


def test_padded_batch_and_speechbrain_loader(data):
    ds = make_ds(data, noise_folder=data["noise"])
    loader = make_dataloader(ds, batch_size=4, collate_fn=PaddedBatch)
    assert isinstance(loader, SaveableDataLoader)
    batch = next(iter(loader))
    assert batch.mix_sig.data.shape == (4, LEN)
    assert batch.noise_sig.data.shape == (4, LEN)
    assert batch.id == ["dm_e0_%06d" % i for i in range(4)]


def test_resume_mid_epoch(data, tmp_path):
    ds = make_ds(data)
    ds.set_epoch(2)
    full = [b.mix_sig.data for b in DataLoader(
        ds, batch_size=4, collate_fn=PaddedBatch)]
    loader = SaveableDataLoader(ds, batch_size=4, collate_fn=PaddedBatch)
    it = iter(loader)
    next(it)
    next(it)
    ckpt = str(tmp_path / "loader.ckpt")
    loader._speechbrain_save(ckpt)
    # a new process: fresh dataset and loader, epoch restored by the Brain
    ds2 = make_ds(data)
    ds2.set_epoch(2)
    loader2 = SaveableDataLoader(ds2, batch_size=4, collate_fn=PaddedBatch)
    loader2._speechbrain_load(ckpt, end_of_epoch=False)
    rest = [b.mix_sig.data for b in loader2]
    assert len(rest) == 2
    assert all(torch.equal(x, y) for x, y in zip(rest, full[2:]))


def test_set_epoch_reaches_persistent_workers(data):
    ds = make_ds(data, epoch_size=4)
    loader = DataLoader(ds, batch_size=2, num_workers=1,
                        persistent_workers=True, collate_fn=PaddedBatch)
    first = [b.mix_sig.data for b in loader]
    ds.set_epoch(5)
    second = [b.mix_sig.data for b in loader]
    assert not torch.equal(first[0], second[0])
    assert [b.id for b in loader][0] == ["dm_e5_000000", "dm_e5_000001"]
    direct = PaddedBatch([ds[0], ds[1]]).mix_sig.data
    assert torch.equal(second[0], direct)


def test_epoch_size_from_csv_and_pool(data, tmp_path):
    csv_path = str(tmp_path / "train.csv")
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "duration"])
        writer.writerows([["a%d" % i, "1.0"] for i in range(7)])
    ds = DynamicMixingDataset(data["si_tr_s"], train_csv=csv_path)
    assert len(ds) == 7
    pool = build_speaker_pool(data["si_tr_s"])
    assert pool == build_speaker_pool(data["si_tr_s"], "folder")
    ds = DynamicMixingDataset(data["si_tr_s"])
    assert len(ds) == sum(len(v) for v in pool.values())


def test_errors(data, tmp_path):
    one = tmp_path / "one" / "abc"
    one.mkdir(parents=True)
    sf.write(str(one / "abc00001.wav"), np.zeros(800), SR)
    with pytest.raises(DataPreparationError, match="at least num_spks=2"):
        DynamicMixingDataset(str(tmp_path / "one"))
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    with pytest.raises(EmptyDataFolderError, match="no .wav/.flac"):
        DynamicMixingDataset(str(empty))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DynamicMixingDataset(str(tmp_path / "missing"))
    with pytest.raises(IndexError):
        make_ds(data).plan(16)
    with pytest.raises(ValueError, match="corpus"):
        make_ds(data, corpus="timit")


# ---------------------------------------------------------------------------
# Regressions: too-short utterances, reverberant targets


def test_too_short_utterances_are_never_drawn(tmp_path):
    folder = tmp_path / "si_tr_s"
    for spk in ("aaa", "bbb"):
        (folder / spk).mkdir(parents=True)
        sf.write(str(folder / spk / f"{spk}00001.wav"), np.ones(4000) * 0.1, SR)
    sf.write(str(folder / "bbb" / "bbb00002.wav"), np.ones(10) * 0.1, SR)
    ds = DynamicMixingDataset(
        str(folder), sample_rate=SR, epoch_size=32, min_length=64
    )
    for i in range(len(ds)):
        assert ds.plan(i)["length"] >= 64
        assert not any(f.endswith("bbb00002.wav") for f in ds.plan(i)["files"])
    # a speaker with nothing long enough: a clear error naming it
    (folder / "aaa" / "aaa00001.wav").unlink()
    sf.write(str(folder / "aaa" / "aaa00001.wav"), np.ones(10) * 0.1, SR)
    ds = DynamicMixingDataset(
        str(folder), sample_rate=SR, epoch_size=4, min_length=64
    )
    with pytest.raises(DataPreparationError, match="'aaa'.*shorter than 64"):
        ds[0]


def test_reverberant_targets(data):
    anechoic = make_ds(data, rirs=data["rir_csv"])
    wet = make_ds(data, rirs=data["rir_csv"], reverberant_targets=True)
    a, w = anechoic[3], wet[3]
    assert torch.allclose(a["mix_sig"], w["mix_sig"])
    # the mixture is the sum of the reverberant targets
    assert torch.allclose(w["mix_sig"], w["s1_sig"] + w["s2_sig"], atol=1e-5)
    assert not torch.allclose(a["mix_sig"], a["s1_sig"] + a["s2_sig"])
    with pytest.raises(ValueError, match="needs rirs"):
        make_ds(data, reverberant_targets=True)


def test_a_folder_of_ldc_sphere_files_says_to_convert_them(tmp_path):
    # WSJ0 as LDC ships it: si_tr_s/<spk>/<utt>.wv1, which libsndfile
    # cannot read (shorten-compressed SPHERE)
    for name in ("011/011c0201.wv1", "012/012c0201.wv2"):
        path = tmp_path / "si_tr_s" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"NIST_1A\n   1024\n")
    with pytest.raises(EmptyDataFolderError,
                       match=r"holds no \.wav/\.flac files\. It holds "
                       r"WSJ0's \.wv1/\.wv2 \(NIST SPHERE\) files: convert "
                       r"them to \.wav first"):
        build_speaker_pool(str(tmp_path / "si_tr_s"))
