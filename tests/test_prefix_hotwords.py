"""faster-whisper's prefix, hotwords and without_timestamps in transcribe(): on tiny.en, greedy, the
same segments token for token as faster-whisper on the same weights (the bundled CTranslate2 model),
for one window and for a file of two windows; the batched path honours them too, and their bad
values are one-line errors before any work.

The speech is espeak's (the `tts` fixture). On every input here faster-whisper and we agree without
the options too (test_the_inputs_agree_without_options), so a difference would be the options'.
The long file ends in speech: over digital silence we decode nothing (SILENCE_PEAK) where
faster-whisper decodes a window and writes text, which no option here is about."""
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, SPOKEN

GREEDY = dict(beam_size=1, temperature=0.0)


@pytest.fixture(scope="module")
def faster():
    faster_whisper = pytest.importorskip(
        "faster_whisper", reason="faster-whisper is the reference for these options (not in requirements-dev.txt)")
    from pretrained import bundled_tiny_en

    return faster_whisper.WhisperModel(bundled_tiny_en(), device="cpu", compute_type="float32", cpu_threads=1)


@pytest.fixture(scope="module")
def clip(tts):
    """One sentence, 3.7 s: one window."""
    return tts(SPOKEN[1])


@pytest.fixture(scope="module")
def long_file(tts):
    """Six sentences with 3 s pauses, ending in speech: 34 s, two windows."""
    gap = np.zeros(16000 * 3, np.float32)
    sentences = [tts(text) for text in SPOKEN] * 3
    return np.concatenate([x for s in sentences for x in (s, gap)][:-1])


def transcribe_theirs(faster, audio, **options) -> list:
    segments, _ = faster.transcribe(audio, language="en", vad_filter=False, **GREEDY, **options)
    return [dict(seek=s.seek, start=s.start, end=s.end, text=s.text, tokens=s.tokens) for s in segments]


def transcribe_ours(model, audio, **options) -> list:
    from transcribe import transcribe

    # reference mode: faster-whisper clamps every window's log-mel below the whole file's loudest frame
    return transcribe(model, audio, language="en", best_of=None, reference=True, **GREEDY, **options)["segments"]


def assert_same(mine: list, expected: list):
    assert len(mine) == len(expected) >= 1
    for a, b in zip(mine, expected):
        assert (a["seek"], a["tokens"], a["text"]) == (b["seek"], b["tokens"], b["text"])
        assert a["start"] == pytest.approx(b["start"], abs=1e-3) and a["end"] == pytest.approx(b["end"], abs=1e-3)


@pytest.mark.parametrize("audio", ["clip", "long_file"])
def test_the_inputs_agree_without_options(faster, ours, audio, request):
    audio = request.getfixturevalue(audio)
    mine = transcribe_ours(ours, audio)
    assert_same(mine, transcribe_theirs(faster, audio))
    assert len({s["seek"] for s in mine}) == (1 if len(audio) < 30 * 16000 else 2)


@pytest.mark.parametrize("options", [dict(prefix="Please call Stella"), dict(hotwords="Stelda"),
                                     dict(without_timestamps=True),
                                     dict(without_timestamps=True, prefix="Please call")])
def test_one_window_equals_faster_whisper(faster, ours, clip, options):
    mine = transcribe_ours(ours, clip, **options)
    assert_same(mine, transcribe_theirs(faster, clip, **options))
    if "prefix" in options:
        assert mine[0]["text"].startswith(" " + options["prefix"])  # the transcript keeps the prefix
    if "without_timestamps" in options:
        assert [(s["start"], s["end"]) for s in mine] == [(0.0, len(clip) // 160 / 100)]  # the mel frames' end
        assert all(t < 50257 for t in mine[0]["tokens"])
    else:  # the option changed what was decoded: the comparison tests it
        assert mine[0]["tokens"] != transcribe_ours(ours, clip)[0]["tokens"]


def test_a_prefix_is_the_first_windows_only(faster, ours, long_file):
    """faster-whisper: the prefix where seek == 0; every later window is decoded without it, and
    hotwords, dropped where the prefix is, are back from the second window on."""
    from tokenizer import get_tokenizer

    prefix, ts0 = "The quick brown", get_tokenizer(False).timestamp_begin
    options = dict(prefix=prefix, hotwords="Stella")
    mine = transcribe_ours(ours, long_file, **options)
    assert_same(mine, transcribe_theirs(faster, long_file, **options))
    first, later = mine[0], [s for s in mine if s["seek"] > 0]
    assert first["tokens"][0] == ts0 and first["text"].startswith(" " + prefix) and later


def test_without_timestamps_one_segment_per_window(faster, ours, long_file):
    mine = transcribe_ours(ours, long_file, without_timestamps=True)
    assert_same(mine, transcribe_theirs(faster, long_file, without_timestamps=True))
    assert [(s["start"], s["end"]) for s in mine] == [(0.0, 30.0), (30.0, len(long_file) // 160 / 100)]


@pytest.mark.parametrize("options", [dict(prefix="Please call Stella"), dict(hotwords="Stelda"),
                                     dict(without_timestamps=True)])
def test_batched_one_window_equals_faster_whisper(faster, ours, clip, options):
    """A clip shorter than a window is one window in the batched path too: faster-whisper's
    sequential answer is the batched one's, its times cut at the window's end as the batched path
    cuts every window's (a timestamp past it would overlap the next window)."""
    end = len(clip) // 160 / 100
    expected = [dict(s, start=min(s["start"], end), end=min(s["end"], end))
                for s in transcribe_theirs(faster, clip, **options)]
    assert_same(transcribe_ours(ours, clip, batch_size=4, **options), expected)


def test_batched_prefix_on_a_long_file(ours, long_file):
    """Windows cut at pauses and decoded independently: the prefix changes the first window only."""
    plain = transcribe_ours(ours, long_file, batch_size=4)
    prefixed = transcribe_ours(ours, long_file, batch_size=4, prefix="The quick brown")
    assert prefixed[0]["text"].startswith(" The quick brown") and prefixed[0]["tokens"] != plain[0]["tokens"]
    def later(segments):  # log-probs differ in the last digits between a batch of one and of two
        return [(s["seek"], s["start"], s["end"], s["tokens"]) for s in segments if s["seek"] > 0]

    assert later(prefixed) == later(plain) != []


def test_a_model_without_timestamps_refuses_a_prefix_and_hotwords(tmp_path):
    """It was trained with no prompt and no prefix: refused before the file is read (it does not exist)."""
    from pretrained import bundled_tiny_en, from_pretrained
    from transcribe import transcribe

    model = from_pretrained(bundled_tiny_en())
    model.timestamps = False
    for option, name in [(dict(prefix="Stella"), "--prefix"), (dict(hotwords="Stella"), "--hotwords")]:
        with pytest.raises(ValueError, match=f"^{name}: this model was trained without timestamps"):
            transcribe(model, str(tmp_path / "missing.flac"), **option)


@pytest.mark.parametrize("option", ["--prefix", "--hotwords"])
def test_empty_text_is_a_usage_error(tmp_path, option):
    """An empty prefix or hotwords would be silently nothing (faster-whisper ignores them)."""
    proc = subprocess.run([sys.executable, str(ROOT / "transcribe.py"), str(tmp_path / "missing.flac"), option, " "],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and proc.stdout == "" and len(errors) == 1 and option in errors[0]


def test_the_command_line_takes_the_options(faster, clip, tmp_path):
    from pretrained import bundled_tiny_en

    path = tmp_path / "clip.wav"
    sf.write(path, clip, 16000)
    proc = subprocess.run([sys.executable, str(ROOT / "transcribe.py"), str(path), "--model", bundled_tiny_en(),
                           "--device", "cpu", "--threads", "1", "--beam-size", "1", "--prefix", "Please call Stella",
                           "--hotwords", "Stelda", "--without-timestamps"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    expected = transcribe_theirs(faster, clip, prefix="Please call Stella", hotwords="Stelda", without_timestamps=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "".join(s["text"] for s in expected).strip() != ""
