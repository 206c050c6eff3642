"""inquiry.py and timing.py: every figure and the page come out of a real run, the numbers behind
them are the model's, and word timings match openai-whisper's on the same weights.

One inquiry run on synthetic speech (always) and one on jfk.flac (when ../shared exists); the
other tests read their results. 40-55 s on 2 busy CPU cores, most of it the two runs.
"""
import json
import numpy as np
import pytest
import torch

from conftest import SHARED_DATA

SENTENCE = "Ask not what your country can do for you."


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Other work shares the 2 cores; one thread is faster for this batch-1 work under contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_window(audio):
    """The content mel of an utterance, computed as transcribe.py does."""
    from audio import N_SAMPLES, log_mel_spectrogram

    n_frames = len(audio) // 160
    return log_mel_spectrogram(audio, padding=N_SAMPLES)[:, :n_frames]


def write_train_log(path):
    """A log in train.py's format, with the oddities a reader must survive."""
    rows = [{"kind": "eval", "iter": 0, "val_loss": 9.0, "wer": 1.0, "aligned": {"best": 0.1, "mean": 0.05}}]
    rows += [{"kind": "train", "iter": i, "loss": 9.0 / (1 + i / 50), "lr": 1e-3 * min(1, i / 100)} for i in range(10, 301, 10)]
    rows += [{"kind": "eval", "iter": 300, "val_loss": 3.0, "wer": None, "aligned": {"best": 0.6, "mean": 0.3}},
             {"kind": "eval", "iter": 300, "val_loss": 2.5}]
    with open(path, "w") as f:
        f.write("\n".join(json.dumps(r) for r in rows) + "\nnot json\n[1, 2]\n")


@pytest.fixture(scope="module")
def synthetic_run(ours, tts, tmp_path_factory):
    import inquiry

    out = tmp_path_factory.mktemp("inquiry_synthetic")
    logs = [out / "run-a" / "log.jsonl", out / "run-b" / "log.jsonl"]
    for log in logs:
        log.parent.mkdir()
        write_train_log(log)
    audio = tts(SENTENCE)
    facts = inquiry.run(ours, audio, str(out / "figures"), "tiny.en", "synthetic", [str(log) for log in logs])
    return facts, audio


@pytest.fixture(scope="module")
def jfk_run(ours, tmp_path_factory):
    import inquiry
    from audio import load_audio

    path = SHARED_DATA / "jfk.flac"
    if not path.exists():
        pytest.skip(f"needs real speech at {path} (../shared is absent in a fresh clone)")
    audio = load_audio(path)
    return inquiry.run(ours, audio, str(tmp_path_factory.mktemp("inquiry_jfk")), "tiny.en", "jfk.flac"), audio


def check_page(facts, expected):
    assert set(facts["figures"]) == expected
    for name, png in facts["figures"].items():
        with open(png, "rb") as f:
            head = f.read(8)
        assert head == b"\x89PNG\r\n\x1a\n", png
        assert 10_000 < len(open(png, "rb").read()) < 400_000, png
    page = open(facts["readme"]).read()
    for name in expected:  # each figure is shown, with a paragraph under it
        assert f"({name}.png)" in page
    paragraphs = [p for p in page.split("\n\n") if len(p) > 200 and not p.startswith("|")]
    assert len(paragraphs) >= len(expected)
    assert "nan" not in page.lower().replace("nanogpt", "") and "{" not in page  # every number filled in
    return page


def test_synthetic_run_writes_every_figure(synthetic_run):
    facts, _ = synthetic_run
    page = check_page(facts, {"utterance", "alignment", "entropy", "positions", "architecture", "vocabulary", "training"})
    assert "country" in facts["transcript"].lower()
    for run in ("run-a", "run-b"):  # each log is a run of the figure and a line of the page
        assert f"- {run} (33 log lines, up to step 300): " in page
    assert "val loss 2.500" in page and "peak learning rate 1.00e-03" in page
    assert "attention on the spoken audio 0.60 (best head)" in page
    assert facts["training"]["panels"] == 4
    assert [r["wer"] for r in facts["training"]["runs"]] == [1.0, 1.0]  # the only numeric WER; None is skipped


def test_jfk_run_writes_every_figure(jfk_run):
    facts, _ = jfk_run
    check_page(facts, {"utterance", "alignment", "entropy", "positions", "architecture", "vocabulary"})
    assert facts["transcript"].startswith("And so my fellow Americans")
    assert len(facts["words"]) == 22 and facts["words"][-1].word == " country."


@pytest.mark.parametrize("which", ["synthetic_run", "jfk_run"])
def test_words_shown_are_word_timings(which, request, ours):
    """The boundaries in the figure are what timing.word_timings returns, called on its own from
    the mel (the figure's run went through the encoder's features instead)."""
    from tokenizer import get_tokenizer
    from timing import word_timings

    facts, audio = request.getfixturevalue(which)
    words = word_timings(ours, load_window(audio), facts["tokens"], get_tokenizer(False))
    assert [(w.word, w.start, w.end) for w in words] == [(w.word, w.start, w.end) for w in facts["words"]]
    assert all(a.start <= a.end <= b.start for a, b in zip(words, words[1:]))
    assert words[-1].end <= len(audio) / 16000 + 0.02


def test_parameter_table_sums_to_the_models_count(ours):
    import inquiry
    from pretrained import MODELS

    whisper = pytest.importorskip("whisper", reason="openai-whisper is a test dependency (see README)")
    assert inquiry.OFFICIAL == list(MODELS)
    assert inquiry.official_dims("tiny.en") == ours.dims
    table = inquiry.parameter_table(ours.dims)
    assert sum(table.values()) == sum(p.numel() for p in ours.parameters()) == 37_184_256
    assert table["token embedding"] == 51864 * 384
    for name in inquiry.OFFICIAL:  # every size, against the reference's own architecture
        d = inquiry.official_dims(name)
        with torch.device("meta"):  # (its Whisper() makes a sparse tensor, which meta can't: build the halves)
            encoder = whisper.model.AudioEncoder(d.n_mels, d.n_audio_ctx, d.n_audio_state, d.n_audio_head, d.n_audio_layer)
            decoder = whisper.model.TextDecoder(d.n_vocab, d.n_text_ctx, d.n_text_state, d.n_text_head, d.n_text_layer)
        expected = sum(p.numel() for m in (encoder, decoder) for p in m.parameters())
        assert sum(inquiry.parameter_table(d).values()) == expected, name
    assert inquiry.official_dims("large-v3-turbo").n_text_layer == 4
    assert inquiry.official_dims("large-v3").n_mels == 128


def test_dtw_takes_the_cheap_path():
    from timing import dtw

    cost = np.ones((3, 6))
    cost[0, :2] = cost[1, 2:4] = cost[2, 4:] = 0  # token 0 on frames 0-1, token 1 on 2-3, token 2 on 4-5
    tokens, frames = dtw(cost)
    assert frames.tolist() == [0, 1, 2, 3, 4, 5] and tokens.tolist() == [0, 0, 1, 1, 2, 2]
    tokens, frames = dtw(np.zeros((4, 2)))  # more tokens than frames: still monotonic, end to end
    assert (tokens[0], frames[0], tokens[-1], frames[-1]) == (0, 0, 3, 1)
    assert np.all(np.diff(tokens) >= 0) and np.all(np.diff(frames) >= 0)


@pytest.fixture(scope="module")
def reference_with_heads(tiny_en_checkpoint):
    whisper = pytest.importorskip("whisper", reason="openai-whisper is a test dependency (see README)")
    model = whisper.load_model(str(tiny_en_checkpoint), device="cpu").eval()
    model.set_alignment_heads(whisper._ALIGNMENT_HEADS["tiny.en"])  # a path gets default heads
    return model


@pytest.mark.parametrize("which", ["synthetic_run", "jfk_run"])
def test_word_timings_match_openai_whisper(which, request, ours, reference_with_heads):
    """Same weights, same tokens: the reference's add_word_timestamps gives the same words and
    (within 0.1 s median, measured: identical) the same boundaries; its DTW agrees with ours."""
    from whisper.timing import add_word_timestamps, dtw_cpu
    from whisper.tokenizer import get_tokenizer as reference_tokenizer

    from audio import pad_or_trim
    from pretrained import alignment_heads
    from timing import dtw

    facts, audio = request.getfixturevalue(which)
    assert ours.alignment_heads == alignment_heads("tiny.en", ours.dims)
    mel = load_window(audio)
    segment = dict(seek=0, start=0.0, end=mel.shape[-1] / 100, tokens=facts["tokens"])
    with torch.no_grad():
        add_word_timestamps(segments=[segment], model=reference_with_heads, tokenizer=reference_tokenizer(False),
                            mel=pad_or_trim(mel, 3000), num_frames=mel.shape[-1], last_speech_timestamp=0.0)
    theirs, mine = segment["words"], facts["words"]
    assert [w["word"] for w in theirs] == [w.word for w in mine]
    errors = [max(abs(w["start"] - m.start), abs(w["end"] - m.end)) for w, m in zip(theirs, mine)]
    assert np.median(errors) <= 0.1 and max(errors) <= 0.2, errors
    assert np.allclose([w["probability"] for w in theirs], [m.probability for m in mine], atol=1e-3)
    matrix = -facts["alignment"].matrix
    assert all(np.array_equal(a, b) for a, b in zip(dtw(matrix), dtw_cpu(matrix)))


def test_add_word_timestamps_matches_openai_whisper(synthetic_run, ours, reference_with_heads):
    """transcribe.py's entry point: two segments of a window that starts 1.5 s into the audio
    (on synthetic speech only, to keep this file under a minute; jfk.flac and four LibriSpeech
    clips measured identical too)."""
    import copy

    from whisper.timing import add_word_timestamps as reference_add
    from whisper.tokenizer import get_tokenizer as reference_tokenizer

    from audio import pad_or_trim
    from timing import add_word_timestamps
    from tokenizer import get_tokenizer

    facts, audio = synthetic_run
    mel = load_window(audio)
    words, n_frames, offset = facts["words"], mel.shape[-1], 1.5
    half = len(words) // 2
    cut = sum(len(w.tokens) for w in words[:half])
    segments = [dict(seek=150, start=offset, end=offset + words[half].start, tokens=facts["tokens"][:cut]),
                dict(seek=150, start=offset + words[half].start, end=offset + n_frames / 100, tokens=facts["tokens"][cut:])]
    theirs = copy.deepcopy(segments)
    window = pad_or_trim(mel, 3000)
    last = add_word_timestamps(ours, get_tokenizer(False), segments, window, n_frames)
    with torch.no_grad():
        reference_add(segments=theirs, model=reference_with_heads, tokenizer=reference_tokenizer(False), mel=window,
                      num_frames=n_frames, last_speech_timestamp=0.0)
    for mine, ref in zip(segments, theirs):
        assert [w["word"] for w in mine["words"]] == [w["word"] for w in ref["words"]]
        errors = [max(abs(a["start"] - b["start"]), abs(a["end"] - b["end"])) for a, b in zip(mine["words"], ref["words"])]
        assert np.median(errors) <= 0.1 and max(errors) <= 0.2, errors
        assert abs(mine["start"] - ref["start"]) <= 0.1 and abs(mine["end"] - ref["end"]) <= 0.1
    assert last == segments[-1]["end"]


def test_bad_input_is_one_line_naming_the_file(tmp_path, capsys):
    import inquiry

    missing = tmp_path / "missing.flac"
    assert inquiry.main(["--audio", str(missing), "--out", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err.strip()
    assert str(missing) in err and len(err.splitlines()) == 1
    (tmp_path / "empty.flac").write_bytes(b"")
    bad_model = tmp_path / "model.pt"
    bad_model.write_bytes(b"not a checkpoint")
    for args in (["--audio", str(tmp_path / "empty.flac")], ["--model", str(bad_model)],
                 ["--log", str(tmp_path / "no.jsonl")]):
        assert inquiry.main(args + ["--out", str(tmp_path / "out")]) != 0
        err = capsys.readouterr().err.strip()
        assert args[1] in err and len(err.splitlines()) == 1
