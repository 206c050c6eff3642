"""Data: prepare_librispeech.py shards, data.py loader, prepare_synthetic.py corpus. No network."""
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

import data  # noqa: E402
import prepare_librispeech as prep  # noqa: E402
import prepare_synthetic as synth  # noqa: E402
from audio import load_audio, log_mel_spectrogram, pad_or_trim  # noqa: E402

SENTENCES = [
    "the red box is on the table", "please call linda at seven o'clock", "we visited paris in june",
    "it costs twelve dollars", "my number is five five two", "the train leaves at noon",
    "i bought three apples", "good morning james", "the old dog is quiet",
]


def speech(text: str, i: int) -> np.ndarray:
    speakers = synth.make_speakers(0)
    return synth.synthesize(text, speakers[i % 4], random.Random(i))


def write_chapter(root: Path, subset: str, spk: int, chap: int, utts: list):
    """utts: (index, text or None for no transcript line, audio array / bytes / None for no file)."""
    folder = root / subset / str(spk) / str(chap)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for idx, text, audio in utts:
        uid = f"{spk}-{chap}-{idx:04d}"
        if isinstance(audio, bytes):
            (folder / f"{uid}.flac").write_bytes(audio)
        elif audio is not None:
            soundfile.write(folder / f"{uid}.flac", audio, 16000, subtype="PCM_16")
        if text is not None:
            lines.append(f"{uid} {text.upper()}".rstrip())
    (folder / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A LibriSpeech-layout corpus: 9 good utterances in train/dev/test plus one of each bad kind."""
    root = tmp_path_factory.mktemp("corpus") / "LibriSpeech"
    good = [(i, t, speech(t, i)) for i, t in enumerate(SENTENCES)]
    write_chapter(root, "train-clean-100", 19, 198, good[0:3])
    write_chapter(root, "train-clean-100", 26, 495, good[3:5] + [
        (10, "this file is corrupt", b"fLaC\x00\x00\x00\x22not really a flac file at all"),
        (11, None, speech("no transcript for me", 11)),                 # audio with no transcript
        (12, "there is no audio for this line", None),                  # transcript line with no audio
        (13, "", speech("nothing was written down", 13)),               # empty text
        (14, "a very long clip", np.tile(speech("a very long clip", 14), 30)[: 40 * 16000]),  # 40 s
        (15, " ".join(["one two three"] * 160), speech("one two three", 15)),  # 482 tokens
    ])
    write_chapter(root, "dev-clean", 84, 121, good[5:7])
    write_chapter(root, "test-clean", 61, 700, good[7:9])
    return root


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "ls"
    prep.main(["--librispeech-dir", str(corpus), "--out", str(out), "--workers", "1", "--shard-size", "2"])
    return out


def audio_path(corpus: Path, uid: str) -> Path:
    return next(corpus.rglob(f"{uid}.flac"))


def test_round_trip_and_counts(corpus, prepared):
    meta = json.loads((prepared / "meta.json").read_text())
    for split, n in (("train", 5), ("val", 2), ("test", 2)):
        entries = data.manifest(prepared, split)
        assert len(entries) == meta["splits"][split]["utterances"] == n
        shards = [json.loads(f.read_text()) for f in sorted((prepared / split).glob("*.json"))]
        assert [e for shard in shards for e in shard["entries"]] == entries
    for mel, tokens_in, targets, entries in data.iterate_batches(prepared, "train", batch_size=3):
        for i, e in enumerate(entries):
            audio = load_audio(audio_path(corpus, e["id"]))
            assert e["duration"] == pytest.approx(len(audio) / 16000, abs=1e-4)
            expected = log_mel_spectrogram(pad_or_trim(audio))
            assert (mel[i] - expected).abs().max() < 1e-3, e["id"]
            # stored frames are exactly the fp16 mel; everything after them is the pad value
            assert torch.equal(mel[i, :, e["frames"]:], expected[:, e["frames"]:])
            ids = e["tokens"]
            assert ids[:2] == [50257, 50362] and ids[-1] == 50256
            L = len(ids) - 1
            assert tokens_in[i, :L].tolist() == ids[:-1] and targets[i, :L].tolist() == ids[1:]
            assert (targets[i, L:] == -100).all()
    assert data.manifest(prepared, "train")[0]["text"] == "The red box is on the table"  # sentence case
    # padding is ignored by the loss: a batch's loss equals the mean over real tokens only
    logits = torch.randn(*targets.shape, 51864)
    loss = F.cross_entropy(logits.view(-1, 51864), targets.view(-1), ignore_index=-100)
    real = targets != -100
    assert torch.allclose(loss, F.cross_entropy(logits[real], targets[real]))


def test_bad_items_skipped_with_reasons(prepared):
    meta = json.loads((prepared / "meta.json").read_text())
    reasons = {s["id"]: s["reason"] for s in meta["skipped"]}
    assert reasons == {
        "26-495-0010": "undecodable audio",
        "26-495-0011": "audio with no transcript",
        "26-495-0012": "transcript line with no audio",
        "26-495-0013": "empty text",
        "26-495-0014": "audio over 30 s",
        "26-495-0015": "over 448 tokens",
    }
    assert sum(meta["skipped_counts"].values()) == 6
    kept = {e["id"] for split in ("train", "val", "test") for e in data.manifest(prepared, split)}
    assert kept == {f"{spk}-{i:04d}" for spk, idx in (("19-198", range(3)), ("26-495", range(3, 5)),
                                                        ("84-121", range(5, 7)), ("61-700", range(7, 9))) for i in idx}
    assert {e["id"] for e in data.manifest(prepared, "test")} == {"61-700-0007", "61-700-0008"}  # test stays test


def tree(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_interrupted_run_resumes_to_identical_output(corpus, prepared, tmp_path, monkeypatch):
    out = tmp_path / "ls"
    args = ["--librispeech-dir", str(corpus), "--out", str(out), "--workers", "1", "--shard-size", "2"]
    real_save, saved = prep.save_shard, []

    def crash_on_third(out_, split, index, items, results):
        if len(saved) == 2:  # die mid-write: a torn temp file is all this shard leaves behind
            (out / split / f"{index:05d}.npy.999.tmp").write_bytes(b"half a shard")
            raise KeyboardInterrupt
        saved.append((split, index))
        return real_save(out_, split, index, items, results)

    monkeypatch.setattr(prep, "save_shard", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        prep.main(args)
    assert not (out / "meta.json").exists()
    monkeypatch.setattr(prep, "save_shard", real_save)
    processed = []
    real_process = prep.process
    monkeypatch.setattr(prep, "process", lambda item: processed.append(item["id"]) or real_process(item))
    prep.main(args)
    assert tree(out) == tree(prepared)  # byte for byte what an uninterrupted run wrote
    assert len(processed) == 9 + 4 - 4  # good + bad-but-decodable items, minus the 4 of the 2 finished shards


def test_parallel_matches_serial_and_sigkill_resume(corpus, prepared, tmp_path):
    """A real SIGKILL mid-run, then a resume with 2 worker processes: identical to the serial run."""
    out = tmp_path / "ls"
    cmd = [sys.executable, str(ROOT / "prepare_librispeech.py"), "--librispeech-dir", str(corpus),
           "--out", str(out), "--workers", "1", "--shard-size", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while not (out / "train" / "00000.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed mid-run, not finished
    prep.main(cmd[2:-4] + ["--workers", "2", "--shard-size", "2"])
    assert tree(out) == tree(prepared)


def ids_of(batch) -> list:
    """The utterance ids of a ShardLoader batch, row by row."""
    return [e["id"] for row in batch[3] for e in row]


def test_loader_ddp_disjoint_reshuffled_and_resumable(tmp_path):
    out = tmp_path / "fake"
    write_fake_shards(out, n=40)
    ranks = [data.ShardLoader(out, "train", batch_size=4, rank=r, world_size=2, seed=7) for r in range(2)]
    seen = []
    for loader in ranks:
        ids = []
        for _ in range(loader.steps_per_epoch):
            ids += ids_of(loader.next_batch())
        seen.append(ids)
    assert len(seen[0]) == len(seen[1]) == 20 and not set(seen[0]) & set(seen[1])
    epoch1 = []
    for _ in range(ranks[0].steps_per_epoch):
        epoch1 += ids_of(ranks[0].next_batch())
    assert sorted(epoch1) != epoch1 and epoch1 != seen[0]  # reshuffled each epoch
    # exact resume from a saved position, mid-epoch
    a = data.ShardLoader(out, "train", batch_size=4, seed=7)
    for _ in range(13):
        a.next_batch()
    state = a.state_dict()
    b = data.ShardLoader(out, "train", batch_size=4, seed=7)
    b.load_state_dict(state)
    for _ in range(5):
        batch_a, batch_b = a.next_batch(), b.next_batch()
        assert ids_of(batch_a) == ids_of(batch_b) and all(torch.equal(x, y) for x, y in zip(batch_a[:3], batch_b[:3]))
    # a shorter audio context skips (and counts) what does not fit
    short = data.ShardLoader(out, "train", batch_size=4, n_frames=100)
    assert short.n_skipped_long == sum(e["frames"] > 100 for e in data.manifest(out, "train")) > 0
    mel, tokens_in, targets, _ = short.next_batch()
    assert mel.shape == (4, 80, 100) and tokens_in.dtype == targets.dtype == torch.int64


def test_packed_rows_fill_the_window_and_resume_exactly(tmp_path):
    out = tmp_path / "fake"
    write_fake_shards(out, n=40)  # 50-199 frames each
    entries = {e["id"]: e for e in data.manifest(out, "train")}
    loader = data.ShardLoader(out, "train", batch_size=3, n_frames=400, seed=3, pack=True)
    seen = []
    for _ in range(8):
        mel, tokens_in, targets, rows = loader.next_batch()
        for r, row_entries in enumerate(rows):
            assert sum(e["frames"] for e in row_entries) <= 400
            start = 0  # each utterance's frames back to back, then the last one's silence value
            for e in row_entries:
                frames = np.asarray(data._Shards(out, "train").frames(e), dtype=np.float32).T
                assert torch.equal(mel[r, :, start: start + e["frames"]], torch.from_numpy(frames))
                start += e["frames"]
            assert (mel[r, :, start:] == row_entries[-1]["pad"]).all()
            # one transcript: the first one's prefix, every text, one eot
            expected = row_entries[0]["tokens"][:2] + [t for e in row_entries for t in e["tokens"][2:-1]] + [50256]
            n = len(expected) - 1
            assert tokens_in[r, :n].tolist() == expected[:-1] and targets[r, :n].tolist() == expected[1:]
            assert (targets[r, n:] == -100).all()
        seen += [e["id"] for row in rows for e in row]
    assert max(len(row) for row in rows) > 1  # it does pack
    first_epoch = seen[: len(entries)]
    assert sorted(first_epoch) == sorted(entries)  # every utterance once per epoch, then the next epoch
    a = data.ShardLoader(out, "train", batch_size=3, n_frames=400, seed=3, pack=True)
    for _ in range(5):
        a.next_batch()
    b = data.ShardLoader(out, "train", batch_size=3, n_frames=400, seed=3, pack=True)
    b.load_state_dict(a.state_dict())
    for _ in range(6):
        batch_a, batch_b = a.next_batch(), b.next_batch()
        assert batch_a[3] == batch_b[3] and all(torch.equal(x, y) for x, y in zip(batch_a[:3], batch_b[:3]))
    with pytest.raises(ValueError, match="pack=True"):
        data.ShardLoader(out, "train", batch_size=3, n_frames=400, seed=3).load_state_dict(a.state_dict())


def test_bucketed_batches_hold_similar_lengths_in_short_windows(tmp_path):
    out = tmp_path / "fake"
    write_fake_shards(out, n=40)  # 50-199 frames each
    entries = {e["id"]: e for e in data.manifest(out, "train")}
    loader = data.ShardLoader(out, "train", batch_size=4, n_frames=400, seed=5, bucket=True)
    plain = data.ShardLoader(out, "train", batch_size=4, n_frames=400, seed=5)
    seen, spread, plain_spread = [], [], []
    for _ in range(2 * loader.steps_per_epoch):
        mel, tokens_in, targets, rows = loader.next_batch()
        batch_ids = [e["id"] for row in rows for e in row]
        frames = [entries[i]["frames"] for i in batch_ids]
        longest = max(frames) + data.BUCKET_MARGIN  # the window: the longest clip + the margin, whole quanta
        assert mel.shape[-1] == min(400, -(-longest // data.BUCKET_QUANTUM) * data.BUCKET_QUANTUM)
        for r, i in enumerate(batch_ids):  # each clip's frames, then its silence value, as collate writes them
            clip = np.asarray(data._Shards(out, "train").frames(entries[i]), dtype=np.float32).T
            assert torch.equal(mel[r, :, : entries[i]["frames"]], torch.from_numpy(clip))
            assert (mel[r, :, entries[i]["frames"]:] == entries[i]["pad"]).all()
        seen.append(batch_ids)
        spread.append(max(frames) - min(frames))
        plain_frames = [entries[i]["frames"] for i in ids_of(plain.next_batch())]
        plain_spread.append(max(plain_frames) - min(plain_frames))
    epoch0 = [i for ids in seen[: loader.steps_per_epoch] for i in ids]
    epoch1 = [i for ids in seen[loader.steps_per_epoch:] for i in ids]
    assert sorted(epoch0) == sorted(entries) == sorted(epoch1) and epoch0 != epoch1  # a permutation, reshuffled
    assert np.mean(spread) < 0.5 * np.mean(plain_spread), (spread, plain_spread)  # similar lengths together
    a = data.ShardLoader(out, "train", batch_size=4, n_frames=400, seed=5, bucket=True)
    for _ in range(7):
        a.next_batch()
    b = data.ShardLoader(out, "train", batch_size=4, n_frames=400, seed=5, bucket=True)
    b.load_state_dict(a.state_dict())
    for _ in range(6):  # across the epoch boundary
        batch_a, batch_b = a.next_batch(), b.next_batch()
        assert ids_of(batch_a) == ids_of(batch_b) and all(torch.equal(x, y) for x, y in zip(batch_a[:3], batch_b[:3]))
    with pytest.raises(ValueError, match="bucket=True"):
        data.ShardLoader(out, "train", batch_size=4, n_frames=400, seed=5).load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="choose one"):
        data.ShardLoader(out, "train", batch_size=4, n_frames=400, pack=True, bucket=True)


def write_fake_shards(out: Path, n: int):
    """Shards in prepare's format with random frames: the loader's logic without any audio work."""
    rng = np.random.default_rng(0)
    (out / "train").mkdir(parents=True)
    entries, arrays, offset = [], [], 0
    for i in range(n):
        frames = int(rng.integers(50, 200))
        tokens = [50257, 50362, *rng.integers(0, 50000, int(rng.integers(1, 12))).tolist(), 50256]
        entries.append(dict(id=f"u{i:03d}", duration=frames / 100, frames=frames, pad=-0.5, tokens=tokens,
                            text="x", shard=0, offset=offset))
        arrays.append(rng.standard_normal((frames, 80)).astype(np.float16))
        offset += frames
    np.save(out / "train" / "00000.npy", np.concatenate(arrays))
    (out / "train.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    (out / "meta.json").write_text(json.dumps(dict(n_mels=80, eot=50256)))


def test_hf_dataset_path(tmp_path, monkeypatch):
    """An HF dataset with an Audio column (48 kHz wav, as Common Voice needs resampling), no hub."""
    import datasets
    import soxr

    rows = {"train": [], "validation": [], "test": []}
    for i, text in enumerate(SENTENCES[:6]):
        path = tmp_path / f"clip{i}.wav"
        soundfile.write(path, soxr.resample(speech(text, i), 16000, 48000), 48000, subtype="FLOAT")
        split = "train" if i < 4 else "validation" if i == 4 else "test"
        rows[split].append(dict(audio=str(path), sentence=text.capitalize() + ".", client_id=f"c{i % 2}"))
    rows["train"].append(dict(audio=str(tmp_path / "missing.wav"), sentence="Gone.", client_id="c0"))
    local = {k: datasets.Dataset.from_list(v).cast_column("audio", datasets.Audio()) for k, v in rows.items()}
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, split=None, streaming=False: local[split])
    out = tmp_path / "cv"
    prep.main(["--hf", "fake/common_voice", "--hf-config", "en", "--hf-split", "train,validation,test",
               "--text-column", "sentence", "--out", str(out), "--workers", "1"])
    train, val, test = (data.manifest(out, s) for s in ("train", "val", "test"))
    assert [e["text"] for e in train] == [t.capitalize() + "." for t in SENTENCES[:4]]  # cased text kept
    assert len(val) == len(test) == 1
    meta = json.loads((out / "meta.json").read_text())
    assert [s["reason"] for s in meta["skipped"]] == ["undecodable audio"]
    mel, tokens_in, targets, entries = next(data.iterate_batches(out, "train", batch_size=2))
    expected = log_mel_spectrogram(pad_or_trim(load_audio(tmp_path / "clip0.wav")))
    assert entries[0]["id"] == "clip0" and (mel[0] - expected).abs().max() < 1e-3
    # streaming (an IterableDataset) gives the same shards
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, split=None, streaming=False:
                        local[split].to_iterable_dataset() if streaming else None)
    prep.main(["--hf", "fake/common_voice", "--hf-config", "en", "--hf-split", "train,validation,test", "--streaming",
               "--text-column", "sentence", "--out", str(tmp_path / "streamed"), "--workers", "1"])
    for split in ("train", "val", "test"):
        assert data.manifest(tmp_path / "streamed", split) == data.manifest(out, split)


def test_synthetic_deterministic_and_test_sentences_unseen(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    synth.main(["--out", str(a), "--hours", "0.01", "--seed", "3", "--workers", "1"])
    synth.main(["--out", str(b), "--hours", "0.01", "--seed", "3", "--workers", "2"])
    assert tree(a) == tree(b)
    texts = {s: {line.split(" ", 1)[1] for f in (a / s).rglob("*.trans.txt") for line in f.read_text().splitlines()}
             for s in ("train", "dev", "test")}
    assert all(texts.values()) and not texts["test"] & texts["train"] and not texts["dev"] & texts["train"]
    assert len(list(a.rglob("*.flac"))) == sum(len(f.read_text().splitlines()) for f in a.rglob("*.trans.txt"))
    speakers = {s: {p.name for p in (a / s).iterdir()} for s in ("train", "dev", "test")}
    assert "9000" not in speakers["train"] | speakers["dev"]  # the held-out voice is test-only
    r = random.Random(0)
    for split in ("train", "test"):  # by construction, over many draws
        assert all(synth.split_of(synth.make_sentence(r, split)) == split for _ in range(2000))
    info = soundfile.info(next(a.rglob("*.flac")))
    assert info.samplerate == 16000 and info.channels == 1


def test_shared_librispeech_mel_matches(tmp_path):
    clips = sorted((SHARED / "data" / "LibriSpeech").rglob("*.flac"))
    if not clips:
        pytest.skip(f"needs the LibriSpeech clips under {SHARED / 'data'} (../shared is absent in a fresh clone)")
    out = tmp_path / "shared"
    prep.main(["--librispeech-dir", str(SHARED / "data" / "LibriSpeech"), "--out", str(out), "--workers", "1"])
    entries = data.manifest(out, "test")
    assert len(entries) == len(clips)
    for e in entries:
        clip = next(c for c in clips if c.stem == e["id"])
        expected = log_mel_spectrogram(pad_or_trim(load_audio(clip)))
        assert (data.load_mel(out, "test", e) - expected).abs().max() < 1e-3


def test_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        prep.main(["--librispeech-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err == f"error: {tmp_path / 'nowhere'}: no such directory\n"
    assert not (tmp_path / "o").exists()
    bad = tmp_path / "bad"
    write_chapter(bad, "train-clean-100", 1, 2, [(0, "broken", b"not audio")])
    with pytest.raises(SystemExit) as e:
        prep.main(["--librispeech-dir", str(bad), "--out", str(tmp_path / "o2"), "--workers", "1"])
    assert str(bad) in str(e.value) and "nothing usable" in str(e.value)
    with pytest.raises(FileNotFoundError, match="meta.json"):
        data.ShardLoader(tmp_path / "o3", "train", batch_size=2)


@pytest.mark.parametrize("args, needle", [(["--workers", "0"], "--workers must be at least 1"),  # once: hung
                                          (["--dev-fraction", "1.5"], "must leave audio for train")])
def test_synthetic_corpus_options_fail_in_one_line(tmp_path, capsys, args, needle):
    import prepare_synthetic

    with pytest.raises(SystemExit) as e:
        prepare_synthetic.main(["--out", str(tmp_path / "s"), "--hours", "0.001", *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and needle in err and err.count("\n") == 1
    assert not (tmp_path / "s").exists()  # checked before anything is written
