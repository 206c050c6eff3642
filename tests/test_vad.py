"""--vad / transcribe(vad=True): silero-vad's speech, joined, transcribed, and its times mapped back
(vad.py). Compared with faster-whisper's vad_filter, which runs its own copy of the silero model
through onnxruntime, on the same audio."""
import importlib.util

import numpy as np
import pytest

from audio import audio_source
from conftest import skip_without_silero

SR = 16000
GREEDY = dict(temperature=0.0, beam_size=None, best_of=None)


@pytest.fixture(scope="module")
def silero():
    skip_without_silero()
    import vad

    return vad


def faster_whisper_vad():
    pytest.importorskip("onnxruntime", reason="faster-whisper's VAD runs on onnxruntime")
    return pytest.importorskip("faster_whisper.vad", reason="faster-whisper is an optional peer")


@pytest.fixture(scope="module")
def with_gaps(spoken):
    """(audio, [(start, stop)] samples of each sentence): the two espeak sentences and the first
    again, after 1, 3 and 6 s, and 3 s after: a 440 Hz tone over the 6 s pause, quiet noise under it all."""
    rng = np.random.default_rng(0)
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(6 * SR) / SR).astype(np.float32)
    pieces = [np.zeros(SR, np.float32), spoken[0], np.zeros(3 * SR, np.float32), spoken[1], tone, spoken[0],
              np.zeros(3 * SR, np.float32)]
    spans, n = [], 0
    for piece in pieces:
        if piece is spoken[0] or piece is spoken[1]:
            spans.append((n, n + len(piece)))
        n += len(piece)
    audio = np.concatenate(pieces).astype(np.float32)
    return audio + 1e-3 * rng.standard_normal(len(audio)).astype(np.float32), spans


def test_speech_spans_equal_faster_whispers_on_the_same_probabilities(silero, with_gaps, monkeypatch):
    """The same speech probabilities give the same spans: thresholds, 2 s of silence, padding."""
    fw = faster_whisper_vad()
    audio = with_gaps[0]
    probs = silero.speech_probs(audio_source(audio)).numpy()
    monkeypatch.setattr(fw, "get_vad_model", lambda: lambda padded: probs)
    theirs = [(d["start"], d["end"]) for d in fw.get_speech_timestamps(audio)]
    assert silero.speech_spans(probs, len(audio)) == theirs
    # and on probabilities that cross the thresholds often, in short bursts
    noisy = np.random.default_rng(1).uniform(0, 1, 3000).astype(np.float32) ** 3
    monkeypatch.setattr(fw, "get_vad_model", lambda: lambda padded: noisy)
    assert silero.speech_spans(noisy, 3000 * 512) == [(d["start"], d["end"]) for d in
                                                      fw.get_speech_timestamps(np.zeros(3000 * 512, np.float32))]


def test_speech_is_found_where_faster_whisper_finds_it(silero, with_gaps):
    """Our silero (the package's TorchScript model, state carried step to step) and faster-whisper's
    (its onnx copy) find the same stretches of speech, to a tenth of a second, and not the tone."""
    fw = faster_whisper_vad()
    audio, sentences = with_gaps
    ours = silero.speech_spans(silero.speech_probs(audio_source(audio)), len(audio))
    theirs = [(d["start"], d["end"]) for d in fw.get_speech_timestamps(audio)]
    assert len(ours) == len(theirs) == 3
    assert np.abs(np.array(ours) - np.array(theirs)).max() < 0.1 * SR
    for (a, b), (start, stop) in zip(ours, sentences):  # each sentence, padded by 0.4 s (the tone ends one late)
        assert start - 0.5 * SR <= a <= start + 0.1 * SR and stop - 0.1 * SR <= b <= stop + 0.7 * SR


def test_a_minute_at_once_equals_stepping_the_packaged_model(silero, with_gaps, monkeypatch):
    """_Stream's probabilities against the packaged model stepped 512 samples at a time, its state
    carried, on 62 s: over the one-minute seam where the next read begins, and a last step that
    is only part of a step."""
    audio = np.tile(with_gaps[0], 62 * SR // len(with_gaps[0]) + 1)[: 62 * SR + 100]
    at_once = silero.speech_probs(audio_source(audio))
    assert silero._stream_of(silero.load_model())  # the installed release is the one _Stream takes apart
    monkeypatch.setattr(silero, "_stream", False)
    stepped = silero.speech_probs(audio_source(audio))
    assert at_once.shape == stepped.shape == (-(-len(audio) // silero.STEP),)
    np.testing.assert_allclose(at_once, stepped, atol=1e-4)


def test_speech_audio_reads_across_seams_and_maps_times_back(silero):
    from audio import audio_source

    source = audio_source(np.arange(10 * SR, dtype=np.float32))
    speech = silero.SpeechAudio(source, [(SR, 2 * SR), (5 * SR, 7 * SR)])
    assert len(speech) == 3 * SR
    np.testing.assert_array_equal(speech.read(SR - 10, SR + 10).numpy(),
                                  np.r_[np.arange(2 * SR - 10, 2 * SR), np.arange(5 * SR, 5 * SR + 10)])
    assert speech.read(0, 4 * SR).numel() == 3 * SR
    assert speech.original_time(0.5) == 1.5 and speech.original_time(1.5) == 5.5
    assert speech.original_time(1.0) == 5.0 and speech.original_time(1.0, end=True) == 2.0
    assert speech.bounds() == [100]
    assert speech.frame_peak(99, 101) == 5 * SR + 159


def test_batched_windows_are_cut_at_the_seams(silero):
    from transcribe import silence_cuts

    audio = np.ones(70 * SR, np.float32)  # no pause anywhere: only the seams say where to cut
    assert silence_cuts(audio, 7000, 3000, bounds=[1200, 2500, 4000, 6900]) == [(0, 2500), (2500, 4000), (4000, 7000)]
    assert silence_cuts(audio, 7000, 3000, bounds=[100])[0] == (0, 100)


def test_transcribe_vad_keeps_the_speech_and_the_original_times(ours, silero, with_gaps):
    """Sequential and batched: the three sentences, each segment inside its sentence's time in the
    original audio (faster-whisper's vad_filter starts the second where the first ended, over the
    pause); with word timestamps, where faster-whisper puts them."""
    from metrics import normalize
    from transcribe import transcribe

    audio, sentences = with_gaps
    expected = ["the quick brown fox", "stella", "the quick brown fox"]
    results = {}
    for name, options in (("sequential", {}), ("batched", dict(batch_size=2)), ("words", dict(word_timestamps=True))):
        results[name] = transcribe(ours, audio, vad=True, **GREEDY, **options)
        segments = [s for s in results[name]["segments"] if s["text"].strip()]
        assert len(segments) == 3, (name, segments)
        for segment, (start, stop), words in zip(segments, sentences, expected):
            assert words in normalize(segment["text"])
            assert start / SR - 0.5 <= segment["start"] < segment["end"] <= stop / SR + 0.7, (name, segment)
            for word in segment.get("words", []):
                assert start / SR - 0.5 <= word["start"] <= word["end"] <= stop / SR + 0.5
    faster_whisper = pytest.importorskip("faster_whisper")
    from pretrained import bundled_tiny_en

    model = faster_whisper.WhisperModel(bundled_tiny_en(), device="cpu", compute_type="float32", cpu_threads=1)
    theirs, _ = model.transcribe(audio, beam_size=1, temperature=0, language="en", vad_filter=True,
                                 word_timestamps=True)
    theirs = [(w.start, w.end) for s in theirs for w in s.words]
    ours_words = [(w["start"], w["end"]) for s in results["words"]["segments"] for w in s["words"]]
    assert len(ours_words) == len(theirs) and np.abs(np.array(ours_words) - np.array(theirs)).max() < 0.2


def test_no_speech_at_all_is_no_text(ours, silero):
    from transcribe import transcribe

    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(5 * SR) / SR).astype(np.float32)
    result = transcribe(ours, tone, vad=True, **GREEDY)
    assert result["text"] == "" and result["segments"] == []


def test_without_silero_vad_the_command_line_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    import transcribe as T

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "silero_vad" else real(name, *a))
    assert T.main([str(tmp_path / "x.flac"), "--vad"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --vad") and "pip install --no-deps silero-vad" in err and "\n" not in err


def test_vad_with_clip_timestamps_is_refused(capsys, tmp_path):
    import transcribe as T

    assert T.main([str(tmp_path / "x.flac"), "--vad", "--clip-timestamps", "1,2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --clip-timestamps") and "\n" not in err
