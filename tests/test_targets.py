"""Whisper-style targets (prepare_librispeech.py --window-seconds, data.py): windows of consecutive
utterances, timestamps from known boundaries, cut utterances, windows without timestamps, prompts
with their loss masked, and a tiny model trained on them that emits timestamps.

The corpus is written here by hand: tones of known extent and level in silence, so every boundary
is known exactly, and levels far apart, so that a window's mel clamp (max - 8) differs from its
utterances' own.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT

SR = 16000
WINDOW = 3.0
# chapter 1-10: (duration, tone start, tone end, amplitude, text); 1-11: a pause that reaches past the
# window's end (no cut), then an utterance longer than the window (skipped)
CHAPTERS = {
    "1-10": [(1.2, 0.2, 1.0, 0.5, "ONE TWO"), (0.9, 0.2, 0.7, 0.02, "THREE"), (1.5, 0.2, 1.3, 0.3, "FOUR FIVE"),
             (0.7, 0.1, 0.6, 0.001, "SIX"), (1.1, 0.2, 0.9, 0.2, "SEVEN"), (2.0, 0.5, 1.8, 0.05, "EIGHT NINE")],
    "1-11": [(2.5, 0.3, 2.2, 0.4, "TEN"), (1.0, 0.6, 0.9, 0.1, "ELEVEN"), (3.5, 0.2, 3.3, 0.1, "TWELVE")],
}
# (first utterance, its chapter offsets in the window, cut utterance or None) as the layout above implies
WINDOWS = [("1-10-0000", 0, 1, 2), ("1-10-0002", 2, 3, 4), ("1-10-0004", 4, 4, 5), ("1-10-0005", 5, 5, None),
           ("1-11-0000", 0, 0, None), ("1-11-0001", 1, 1, None)]


def tone(duration, start, end, amplitude, frequency):
    audio = np.zeros(round(duration * SR), np.float32)
    t = np.arange(round(start * SR), round(end * SR))
    audio[t] = amplitude * np.sin(2 * np.pi * frequency * t / SR)
    return audio


def write_corpus(root, words=True):
    """A LibriSpeech-layout train subset with the chapters above (and a dev copy of chapter 1-10),
    with words.jsonl speech spans if `words`. Returns {utterance id: (audio as read back, (start, end), text)}."""
    import soundfile

    from audio import load_audio

    known = {}
    for split in ("train-clean", "dev-clean"):
        for chapter, utterances in CHAPTERS.items():
            if split == "dev-clean" and chapter != "1-10":
                continue
            speaker, number = chapter.split("-")
            folder = root / split / speaker / number
            folder.mkdir(parents=True)
            lines, spans = [], []
            for i, (duration, start, end, amplitude, text) in enumerate(utterances):
                uid = f"{chapter}-{i:04d}"
                soundfile.write(folder / f"{uid}.flac", tone(duration, start, end, amplitude, 300 + 110 * i), SR)
                lines.append(f"{uid} {text}\n")
                spans.append(json.dumps({"id": uid, "speech": [start, end], "words": None}) + "\n")
                known[uid] = (load_audio(str(folder / f"{uid}.flac")), (start, end), text)
            (folder / f"{chapter}.trans.txt").write_text("".join(lines))
            if words:
                (folder / f"{chapter}.words.jsonl").write_text("".join(spans))
    return known


def prepare(raw, out, *extra):
    import prepare_librispeech

    prepare_librispeech.main(["--librispeech-dir", str(raw), "--out", str(out), "--workers", "1",
                              "--window-seconds", str(WINDOW), *extra])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("targets")
    known = write_corpus(root / "raw")
    prepare(root / "raw", root / "w3")
    return root, known


def entries(out, split="train"):
    with open(out / f"{split}.jsonl") as f:
        return [json.loads(line) for line in f]


def durations(uid):
    chapter, i = uid.rsplit("-", 1)
    return [u[0] for u in CHAPTERS[chapter]], int(i)


def flat(segments) -> list:
    return [t for s in segments for t in s[:2]]


def expected_layout(first, last_whole, cut):
    """The window's segments [(start, end, text)] and cut start, in seconds, from CHAPTERS alone."""
    chapter = first.rsplit("-", 1)[0]
    utterances = CHAPTERS[chapter]
    start_index = int(first.rsplit("-", 1)[1])
    offset, segments = 0.0, []
    for duration, start, end, _, text in utterances[start_index: last_whole + 1]:
        segments.append((offset + start, offset + end, text))
        offset += duration
    return segments, (offset + utterances[cut][1] if cut is not None else None), offset


def test_windows_follow_the_chapter_and_its_cuts(corpus):
    """Each window starts with the utterance the previous one cut (or the next one), holds whole
    utterances in order, records the cut one's start, and skips the one longer than the window."""
    root, _ = corpus
    windows = entries(root / "w3")
    assert [(w["utterances"][0], w["cut"] is not None) for w in windows] == [
        (first, cut is not None) for first, _, _, cut in WINDOWS]
    for w, (first, first_index, last_whole, cut) in zip(windows, WINDOWS):
        chapter = first.rsplit("-", 1)[0]
        assert w["utterances"] == [f"{chapter}-{i:04d}" for i in range(first_index, last_whole + 1)]
        segments, cut_start, offset = expected_layout(first, last_whole, cut)
        assert flat(w["segments"]) == pytest.approx(flat(segments), abs=1e-6)
        assert w["cut"] == (pytest.approx(cut_start, abs=1e-6) if cut is not None else None)
        assert w["cut_frame"] == (round(offset * 100) if cut is not None else None)
        assert w["text"] == " ".join(s[2].capitalize() for s in segments)
    # the previous window's text is the next one's prompt, within a chapter only
    assert windows[0]["prev"] == [] and windows[4]["prev"] == []
    assert windows[1]["prev"] == [t for *_, tokens in windows[0]["segments"] for t in tokens]
    with open(root / "w3" / "meta.json") as f:
        meta = json.load(f)
    assert [(s["id"], s["reason"]) for s in meta["skipped"]] == [("1-11-0002", "audio over the window")]
    assert meta["window_seconds"] == WINDOW and meta["splits"]["val"]["utterances"] == 4


def test_one_utterance_a_window(corpus, tmp_path, capsys):
    """--utterances-per-window 1: every utterance that fits is a window of its own, with its span as
    the one segment, no cut, and the previous utterance of the chapter as the prompt; bad values stop
    before any work."""
    import prepare_librispeech

    root, _ = corpus
    prepare(root / "raw", tmp_path / "w1", "--utterances-per-window", "1")
    windows = entries(tmp_path / "w1")
    whole = [uid for w in entries(root / "w3") for uid in w["utterances"]]
    assert [w["utterances"] for w in windows] == [[uid] for uid in whole]
    for w in windows:
        (start, end, _), = w["segments"]
        chapter, index = w["utterances"][0].rsplit("-", 1)
        duration, true_start, true_end = CHAPTERS[chapter][int(index)][:3]
        assert (start, end) == (pytest.approx(true_start, abs=1e-6), pytest.approx(true_end, abs=1e-6))
        assert w["cut"] is None and w["duration"] == pytest.approx(duration, abs=1e-3)
    for previous, w in zip(windows, windows[1:]):
        same_chapter = previous["utterances"][0].rsplit("-", 1)[0] == w["utterances"][0].rsplit("-", 1)[0]
        assert w["prev"] == (previous["segments"][0][2] if same_chapter else [])
    for bad in (["--utterances-per-window", "-1"], ["--utterances-per-window", "1", "--window-seconds", "0"]):
        with pytest.raises(SystemExit) as e:
            prepare_librispeech.main(["--librispeech-dir", str(root / "raw"), "--out", str(tmp_path / "bad"),
                                      "--workers", "1", "--window-seconds", str(WINDOW), *bad])
        assert e.value.code == 2 and "--utterances-per-window" in capsys.readouterr().err


def test_window_mel_is_the_mel_of_its_audio(corpus):
    """The stored frames are the log-mel of the window's concatenated audio (its own clamp), not
    the utterances' mels put side by side."""
    from audio import log_mel_spectrogram, pad_or_trim
    from data import iterate_batches

    root, known = corpus
    windows = entries(root / "w3")
    mels = torch.cat([b[0] for b in iterate_batches(str(root / "w3"), "train", 8, 300, timestamp_probability=1.0)])
    for w, mel, (first, first_index, last_whole, cut) in zip(windows, mels, WINDOWS):
        chapter = first.rsplit("-", 1)[0]
        ids = [f"{chapter}-{i:04d}" for i in range(first_index, (cut if cut is not None else last_whole + 1) + 1)]
        audio = np.concatenate([known[uid][0] for uid in ids if uid in known and uid != "1-11-0002"])  # skipped
        audio = audio[: int(WINDOW * SR)]
        expected = log_mel_spectrogram(pad_or_trim(audio, int(WINDOW * SR)))
        assert (mel - expected).abs().max() < 2e-3  # fp16 storage
    # the quiet utterance's own mel, clamped to its own peak, is far from its part of the window
    own = log_mel_spectrogram(pad_or_trim(known["1-10-0003"][0], int(WINDOW * SR)))[:, :70]
    assert (mels[1][:, 150:220] - own).abs().max() > 0.5


def test_target_tokens_one_by_one(corpus):
    """Timestamps exact to 0.02 s from the known boundaries, text between them, a cut utterance's
    lone start timestamp then eot; without timestamps the texts after <|notimestamps|>, and the cut
    utterance's audio silenced; a prompt's tokens and its closing sot ignored by the loss."""
    from data import IGNORE_INDEX, iterate_batches
    from tokenizer import get_tokenizer

    root, known = corpus
    tok = get_tokenizer(False)

    def stamp(t):
        return tok.timestamp_begin + round(t / 0.02)

    def batch(p_timestamps, p_prompt):
        return next(iterate_batches(str(root / "w3"), "train", 8, 300, None, p_timestamps, p_prompt))

    mel_ts, tokens_in, targets, rows = batch(1.0, 0.0)
    for i, (first, _, last_whole, cut) in enumerate(WINDOWS):
        segments, cut_start, _ = expected_layout(first, last_whole, cut)
        ids = [tok.sot]
        for start, end, text in segments:
            ids += [stamp(start), *tok.encode(" " + text.capitalize()), stamp(end)]
        ids += ([stamp(cut_start)] if cut is not None else []) + [tok.eot]
        n = len(ids) - 1
        assert tokens_in[i, :n].tolist() == ids[:-1] and targets[i, :n].tolist() == ids[1:]
        assert (targets[i, n:] == IGNORE_INDEX).all()
    # the first window's cut utterance starts at 1.2 + 0.9 + 0.2 s: <|2.30|>, then eot
    row = targets[0][targets[0] != IGNORE_INDEX].tolist()
    assert row[-2:] == [tok.timestamp_begin + 115, tok.eot]

    mel_nt, tokens_in, targets, rows = batch(0.0, 0.0)
    for i, (first, _, last_whole, cut) in enumerate(WINDOWS):
        segments, _, offset = expected_layout(first, last_whole, cut)
        ids = [tok.sot, tok.no_timestamps, *tok.encode(" " + " ".join(s[2].capitalize() for s in segments)), tok.eot]
        assert targets[i, : len(ids) - 1].tolist() == ids[1:]
        if cut is not None:  # from the cut utterance's first frame on: the window's silence value
            frame = round(offset * 100)
            assert (mel_nt[i, :, frame:] == rows[i]["pad"]).all()
            assert torch.equal(mel_nt[i, :, :frame], mel_ts[i, :, :frame])
            assert (mel_ts[i, :, frame:] != rows[i]["pad"]).any()

    _, tokens_in, targets, rows = batch(1.0, 1.0)
    for i, row in enumerate(rows):
        prev = row["prev"]
        if not prev:  # a chapter's first window has nothing before it
            assert tokens_in[i, 0].item() == tok.sot and targets[i, 0].item() != IGNORE_INDEX
            continue
        n = len(prev) + 1
        assert tokens_in[i, : n + 1].tolist() == [tok.sot_prev, *prev, tok.sot]
        assert (targets[i, :n] == IGNORE_INDEX).all()  # the prompt and the sot after it
        assert targets[i, n].item() == stamp(row["segments"][0][0])  # then the target as without a prompt
        assert tokens_in[i, n + 1].item() == stamp(row["segments"][0][0])


def test_token_times_place_each_target_in_its_utterance(corpus):
    """The attention guide's times: a timestamp target is its own time; each text token lies inside
    its utterance's span, in order, the same in both target modes; everything else (prompt, sot
    sequence, <|notimestamps|>, eot, padding) has none."""
    from data import iterate_batches, token_times
    from tokenizer import get_tokenizer

    root, _ = corpus
    tok = get_tokenizer(False)
    token_bytes = np.array([len(tok.encoding.decode_single_token_bytes(t)) for t in range(tok.eot)])
    specials = json.loads((root / "w3" / "meta.json").read_text())["specials"]

    def text_times(p_timestamps):
        _, _, targets, rows = next(iterate_batches(str(root / "w3"), "train", 8, 300, None, p_timestamps, 1.0))
        times = token_times(targets, rows, specials, tok.eot, token_bytes)
        found = []
        for i, (first, _, last_whole, cut) in enumerate(WINDOWS):
            segments, cut_start, _ = expected_layout(first, last_whole, cut)
            ids, t = targets[i].tolist(), times[i].tolist()
            for j, token in enumerate(ids):
                if token >= tok.timestamp_begin:
                    assert t[j] == pytest.approx((token - tok.timestamp_begin) * 0.02)
                elif not 0 <= token < tok.eot:  # ignored (the prompt, padding) or special
                    assert np.isnan(t[j]), (i, j, token)
            text = [(j, t[j]) for j, token in enumerate(ids) if 0 <= token < tok.eot]
            k = 0
            for start, end, words in segments:
                n = len(tok.encode(" " + words.capitalize()))
                mine = [time for _, time in text[k: k + n]]
                assert all(start < a < b < end for a, b in zip(mine, mine[1:])) and start < mine[0] < end, (i, mine)
                k += n
            assert k == len(text)
            found.append([time for _, time in text])
        return found

    assert text_times(1.0) == text_times(0.0)


def test_librispeech_spans_come_from_the_audio(tmp_path):
    """Without words.jsonl, a segment is the utterance's speech as its energy shows it: the tones."""
    write_corpus(tmp_path / "raw", words=False)
    prepare(tmp_path / "raw", tmp_path / "w3")
    for w, (first, _, last_whole, cut) in zip(entries(tmp_path / "w3"), WINDOWS):
        segments, cut_start, _ = expected_layout(first, last_whole, cut)
        assert flat(w["segments"]) == pytest.approx(flat(segments), abs=0.011)
        if cut is not None:
            assert w["cut"] == pytest.approx(cut_start, abs=0.011)


def test_modes_are_seeded_mixed_and_resume_exactly(corpus):
    """The timestamp/prompt choice depends on (seed, epoch, window) alone: the drawn fractions are
    the probabilities, and a loader resumed from its state gives the very same batches."""
    from data import ShardLoader, target_modes

    modes = target_modes(7, 0, range(4000), 0.5, 0.1)
    assert modes == target_modes(7, 0, range(4000), 0.5, 0.1) != target_modes(8, 0, range(4000), 0.5, 0.1)
    assert abs(np.mean([m[0] for m in modes]) - 0.5) < 0.03 and abs(np.mean([m[1] for m in modes]) - 0.1) < 0.02

    root, _ = corpus
    make = lambda: ShardLoader(str(root / "w3"), "train", 2, 300, seed=3, timestamp_probability=0.5,  # noqa: E731
                               prompt_probability=0.5)
    a = make()
    for _ in range(4):
        a.next_batch()
    state = a.state_dict()
    expected = [a.next_batch() for _ in range(6)]
    b = make()
    b.load_state_dict(state)
    for (m1, t1, y1, _), (m2, t2, y2, _) in zip(expected, (b.next_batch() for _ in range(6))):
        assert torch.equal(m1, m2) and torch.equal(t1, t2) and torch.equal(y1, y2)
    seen = {tuple(t[0, :1].tolist()) for _, t, _, _ in expected}
    assert len(seen) == 2  # both the prompted and the plain start appear


def test_window_option_errors(tmp_path, capsys):
    import prepare_librispeech
    from data import ShardLoader

    write_corpus(tmp_path / "raw")
    for bad in ("0.5", "31", "2.011"):
        with pytest.raises(SystemExit) as e:
            prepare_librispeech.main(["--librispeech-dir", str(tmp_path / "raw"), "--out", str(tmp_path / "o"),
                                      "--window-seconds", bad])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--window-seconds must be 0 or 1 to 30" in err
    prepare(tmp_path / "raw", tmp_path / "w3")
    with pytest.raises(ValueError, match="prepared in 3 s windows, longer than the model's 2 s"):
        ShardLoader(str(tmp_path / "w3"), "train", 2, 200)
    with pytest.raises(ValueError, match="pack"):
        ShardLoader(str(tmp_path / "w3"), "train", 2, 300, pack=True)


def test_trained_with_timestamps_emits_them(corpus, tmp_path):
    """A tiny model trained on the windows, all with timestamps, says so in its checkpoint and, decoded
    with timestamps, gives the windows' timestamps around their texts and the cut utterances' starts."""
    from decoding import decode
    from pretrained import load_checkpoint

    root, _ = corpus
    out = tmp_path / "out"
    args = [sys.executable, "train.py", f"--data_dir={root / 'w3'}", f"--out_dir={out}", "--n_audio_ctx=150",
            "--n_audio_state=64", "--n_audio_head=2", "--n_audio_layer=2", "--n_text_state=64", "--n_text_head=2",
            "--n_text_layer=2", "--batch_size=4", "--max_iters=150", "--warmup_iters=10", "--learning_rate=3e-3",
            "--eval_interval=150", "--eval_at_start=False", "--eval_iters=1", "--eval_wer_utts=0",
            "--plot_curves=False", "--log_interval=50", "--timestamp_probability=1.0", "--prompt_probability=0.0", "--device=cpu"]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert torch.load(out / "ckpt.pt", weights_only=True, mmap=True)["timestamps"] is True
    model = load_checkpoint(str(out / "ckpt.pt"))
    assert model.timestamps is True
    from data import iterate_batches
    from tokenizer import tokenizer_for

    tok = tokenizer_for(model.dims)
    mel, _, targets, rows = next(iterate_batches(str(root / "w3"), "train", 8, 300, None, 1.0, 0.0))
    from model import Whisper

    def learnt(net) -> int:  # windows decoded to exactly their target: timestamps, texts, the cut's lone start
        results = decode(net, mel, timestamps=True, sample_len=40)
        return sum(r.tokens == [t for t in y.tolist() if t not in (-100, tok.eot)] for r, y in zip(results, targets))

    # decode()'s timestamp rules make any model start with a timestamp: an untrained one gets none right
    assert learnt(Whisper(model.dims).init_weights().eval()) == 0
    assert learnt(model) >= len(rows) - 1
    result = decode(model, mel[:1], timestamps=True, sample_len=40)[0]
    assert tok.decode_with_timestamps(result.tokens) == "<|0.20|> One two<|1.00|><|1.40|> Three<|1.90|><|2.30|>"


def test_hf_librispeech_rows_make_the_same_windows(tmp_path, monkeypatch):
    """openslr/librispeech_asr's rows (speaker_id, chapter_id, id), a chapter's rows in any order,
    streamed or not: the same windows as the extracted directory gives (spans from the audio)."""
    import datasets

    import prepare_librispeech

    write_corpus(tmp_path / "raw", words=False)
    prepare(tmp_path / "raw", tmp_path / "dir")
    rows = {"train.100": [], "validation": []}
    for split, subset in (("train.100", "train-clean"), ("validation", "dev-clean")):
        for path in sorted((tmp_path / "raw" / subset).rglob("*.flac"), reverse=True):  # ids out of order
            speaker, chapter, _ = path.stem.split("-")
            text = dict(line.split(" ", 1) for line in (path.parent / f"{speaker}-{chapter}.trans.txt").read_text()
                        .splitlines())[path.stem]
            rows[split].append(dict(audio=str(path), text=text, speaker_id=int(speaker), chapter_id=int(chapter),
                                    id=path.stem))
    local = {k: datasets.Dataset.from_list(v).cast_column("audio", datasets.Audio()) for k, v in rows.items()}
    for streaming in (False, True):
        monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, split=None, streaming=False:
                            local[split].to_iterable_dataset() if streaming else local[split])
        out = tmp_path / f"hf{streaming}"
        prepare_librispeech.main(["--hf", "fake/librispeech_asr", "--hf-split", "train.100,validation", "--out",
                                  str(out), "--workers", "1", "--window-seconds", str(WINDOW)]
                                 + (["--streaming"] if streaming else []))
        for split in ("train", "val"):
            keys = ("utterances", "segments", "cut", "cut_frame", "prev", "frames", "pad")
            def windows(path):  # chapters come in the dataset's order, each chapter's windows in order
                return sorted(([{k: e[k] for k in keys} for e in entries(path, split)]), key=lambda w: w["utterances"])
            assert windows(out) == windows(tmp_path / "dir")


def train_run(data_dir, out_dir, *extra, nproc=1):
    launcher = [sys.executable] + (["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
                                   if nproc > 1 else [])
    args = [*launcher, "train.py", f"--data_dir={data_dir}", f"--out_dir={out_dir}", "--n_audio_ctx=150",
            "--n_audio_state=64", "--n_audio_head=2", "--n_audio_layer=2", "--n_text_state=64", "--n_text_head=2",
            "--n_text_layer=2", "--eval_at_start=False", "--eval_iters=1", "--eval_wer_utts=2", "--eval_sample_len=8",
            "--plot_curves=False", "--eval_interval=100", "--log_interval=1", "--warmup_iters=2", "--lr_decay_iters=6", "--device=cpu",
            "--timestamp_probability=0.5", "--prompt_probability=0.5", "--ctc_weight=0.5", "--guide_weight=0.5", *extra]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(out_dir, "log.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return {r["iter"]: (r["loss"], r["ctc"], r["guide"]) for r in rows if r["kind"] == "train"}


def test_windows_resume_exactly_and_ddp_matches_one_process(corpus, tmp_path):
    """With mixed targets, prompts, the CTC loss (which stops at a cut) and the attention guide: a run stopped after 3 steps
    and resumed has the uninterrupted run's losses, and two processes match one."""
    root, _ = corpus
    data_dir = root / "w3"
    common = ["--batch_size=1", "--gradient_accumulation_steps=2", "--dropout=0.1", "--spec_augment=True",
              "--time_mask_width=10", "--freq_mask_width=10"]
    a = train_run(data_dir, tmp_path / "a", *common, "--max_iters=6")
    train_run(data_dir, tmp_path / "b", *common, "--max_iters=3")
    b = train_run(data_dir, tmp_path / "b", *common, "--max_iters=6", "--init_from=resume")
    assert sorted(b) == [1, 2, 3, 4, 5, 6] and [a[i] for i in (4, 5, 6)] == [b[i] for i in (4, 5, 6)], (a, b)
    assert torch.load(tmp_path / "b" / "ckpt.pt", weights_only=True, mmap=True)["timestamps"] is True

    common = ["--batch_size=1", "--gradient_accumulation_steps=2", "--max_iters=3"]
    one = train_run(data_dir, tmp_path / "one", *common)
    two = train_run(data_dir, tmp_path / "two", *common, nproc=2)
    assert sorted(one) == sorted(two) == [1, 2, 3]
    for i in one:
        assert two[i] == pytest.approx(one[i], rel=1e-4), (one, two)
    # without timestamps in the mix the checkpoint says so, and transcribe.py takes its other path
    train_run(data_dir, tmp_path / "nt", "--batch_size=2", "--max_iters=1", "--timestamp_probability=0.0")
    assert torch.load(tmp_path / "nt" / "ckpt.pt", weights_only=True, mmap=True)["timestamps"] is False


def test_windowed_prepare_resumes_and_is_the_same_on_any_workers(corpus, tmp_path, capsys):
    """A shard a kill left unfinished (no .json) is redone, and the output is byte-identical to an
    uninterrupted run's, with 1 or 2 workers; another window length can't resume into it."""
    import prepare_librispeech

    root, _ = corpus
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    prepare(root / "raw", whole, "--shard-size", "1")
    prepare(root / "raw", resumed, "--shard-size", "1", "--workers", "2")
    (resumed / "train" / "00001.json").unlink()
    (resumed / "meta.json").unlink()
    prepare(root / "raw", resumed, "--shard-size", "1")
    files = sorted(p.relative_to(whole) for p in whole.rglob("*") if p.is_file() and p.name != "meta.json")
    assert len([f for f in files if f.suffix == ".npy"]) == 3  # train: two chapters, val: one
    for name in files:
        assert (whole / name).read_bytes() == (resumed / name).read_bytes(), name
    with pytest.raises(SystemExit) as e:
        prepare_librispeech.main(["--librispeech-dir", str(root / "raw"), "--out", str(resumed), "--workers", "1",
                                  "--window-seconds", "2", "--shard-size", "1"])
    assert e.value.code == 2 and "prepared with other settings" in capsys.readouterr().err


def test_bad_utterances_are_skipped_and_listed_in_window_mode(tmp_path):
    """Undecodable audio, a transcript line without audio and audio without a transcript are skipped
    with their reasons, as without windows; the chapter's other utterances still fill windows."""
    write_corpus(tmp_path / "raw")
    folder = tmp_path / "raw" / "train-clean" / "1" / "10"
    (folder / "1-10-0001.flac").write_bytes(b"not a flac")
    (folder / "1-10-0003.flac").unlink()
    (folder / "1-10-0009.flac").write_bytes((folder / "1-10-0000.flac").read_bytes())
    prepare(tmp_path / "raw", tmp_path / "w3")
    meta = json.loads((tmp_path / "w3" / "meta.json").read_text())
    assert sorted((s["id"], s["reason"]) for s in meta["skipped"]) == [
        ("1-10-0001", "undecodable audio"), ("1-10-0003", "transcript line with no audio"),
        ("1-10-0009", "audio with no transcript"), ("1-11-0002", "audio over the window")]
    kept = [u for w in entries(tmp_path / "w3") for u in w["utterances"]]
    assert kept[:3] == ["1-10-0000", "1-10-0002", "1-10-0004"] and not {"1-10-0001", "1-10-0003"} & set(kept)
