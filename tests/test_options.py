"""openai-whisper's long-form options in transcribe(): clip_timestamps, carry_initial_prompt and
hallucination_silence_threshold give the reference's segments token for token (greedy, tiny.en),
and their bad values are one-line usage errors before any work."""
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import LIBRISPEECH_CLIPS, ROOT, SHARED_DATA, SPOKEN

GREEDY = dict(temperature=0.0, beam_size=None, best_of=None)


@pytest.fixture(scope="module")
def reference_heads(tiny_en_checkpoint):
    """openai-whisper's tiny.en with tiny.en's alignment heads: loaded from a path it would use the
    default heads (all of the top half), and its word times, which hallucination_silence_threshold
    judges, would differ from ours for that reason alone."""
    whisper = pytest.importorskip("whisper", reason="openai-whisper is a test dependency (see README)")
    model = whisper.load_model(str(tiny_en_checkpoint), device="cpu").eval()
    model.set_alignment_heads(whisper._ALIGNMENT_HEADS["tiny.en"])
    return model


@pytest.fixture(scope="module")
def sentences(spoken):
    """Six synthetic sentences with 4 s pauses: 43 s, two windows."""
    gap = np.zeros(16000 * 4, np.float32)
    return np.concatenate([x for clip in spoken * 3 for x in (clip, gap)])


@pytest.fixture(scope="module")
def humming(spoken):
    """A sentence, 20 s of a faint 220 Hz hum in noise, a sentence: tiny.en writes the first
    sentence again and again over the hum, the hallucination the threshold is there to drop."""
    rng = np.random.default_rng(0)
    n = 16000 * 20
    hum = 0.05 * np.sin(2 * np.pi * 220 * np.arange(n) / 16000) + 0.005 * rng.standard_normal(n)
    return np.concatenate([spoken[0], hum.astype(np.float32), spoken[1]])


def assert_same_segments(ours, expected):
    assert len(ours["segments"]) == len(expected["segments"]) >= 1
    for a, b in zip(ours["segments"], expected["segments"]):
        assert (a["text"], a["tokens"], a["seek"]) == (b["text"], b["tokens"], b["seek"])
        assert a["start"] == pytest.approx(b["start"], abs=1e-3) and a["end"] == pytest.approx(b["end"], abs=1e-3)
    assert ours["text"] == expected["text"]


def both(ours_model, reference_model, audio, **options):
    from transcribe import transcribe

    ours = transcribe(ours_model, audio, reference=True, **GREEDY, **options)
    expected = reference_model.transcribe(audio, language="en", fp16=False, **GREEDY, **options)
    assert_same_segments(ours, expected)
    return ours


# ------------------------------------------------------------------------------------------------
# clip_timestamps


@pytest.mark.parametrize("clips", ["3,12,20", [1.5, 9.0, 14.0, 30.0]], ids=["string-odd", "list-even"])
def test_clip_timestamps_equal_the_reference(ours, reference_heads, sentences, clips):
    result = both(ours, reference_heads, sentences, clip_timestamps=clips)
    starts = [3.0, 20.0] if isinstance(clips, str) else clips[::2]
    # each clip's first window starts at the clip, and nothing is decoded before the first
    assert result["segments"][0]["seek"] == round(starts[0] * 100)
    assert {round(s * 100) for s in starts} <= {s["seek"] for s in result["segments"]}
    assert min(s["start"] for s in result["segments"]) >= starts[0]


def test_clip_timestamps_on_real_speech_equal_the_reference(ours, reference_heads):
    from conftest import real_clips

    from audio import load_audio

    real_clips()  # a skip with its reason where ../shared is absent
    audio = np.concatenate([load_audio(SHARED_DATA / "jfk.flac")] + [load_audio(p) for p in LIBRISPEECH_CLIPS[:2]])
    both(ours, reference_heads, audio, clip_timestamps="2.5,9,14")


def test_clip_timestamps_zero_and_empty_are_the_whole_file(ours):
    from transcribe import clip_frames, parse_clip_timestamps

    for given in ("0", "", [], [0]):
        assert clip_frames(parse_clip_timestamps(given), 4300) == [(0, 4300)]
    # an odd count runs to the end; ends past the audio are cut at its end, and clips after it dropped
    assert clip_frames(parse_clip_timestamps("1,2.5,7"), 4300) == [(100, 250), (700, 4300)]
    assert clip_frames(parse_clip_timestamps("1,60,70,80"), 4300) == [(100, 4300)]


# ------------------------------------------------------------------------------------------------
# carry_initial_prompt


def test_carried_prompt_equals_the_reference_and_starts_every_window_prompt(ours, reference_heads, sentences,
                                                                            monkeypatch):
    import transcribe as T
    from tokenizer import get_tokenizer

    prompts, decode = [], T.decode_with_fallback
    monkeypatch.setattr(T, "decode_with_fallback", lambda *a, **k: prompts.append(k["prompt"]) or decode(*a, **k))
    text = "Stella's fox, the lazy dog."
    # without the previous text, the carried prompt is all that conditions the second window
    result = both(ours, reference_heads, sentences, initial_prompt=text, carry_initial_prompt=True,
                  condition_on_previous_text=False)
    prompt_tokens = get_tokenizer(False).encode(" " + text)
    assert len(prompts) >= 2 and all(p == prompt_tokens for p in prompts)
    monkeypatch.setattr(T, "decode_with_fallback", decode)
    uncarried = T.transcribe(ours, sentences, initial_prompt=text, condition_on_previous_text=False, **GREEDY)
    assert [s["tokens"] for s in uncarried["segments"]] != [s["tokens"] for s in result["segments"]]


def test_a_carried_prompt_longer_than_the_context_is_cut_as_the_reference_cuts_it(ours, reference_heads, sentences):
    from tokenizer import get_tokenizer

    text = " ".join(SPOKEN * 12)
    assert len(get_tokenizer(False).encode(" " + text)) > ours.dims.n_text_ctx // 2  # no room left for the previous text
    both(ours, reference_heads, sentences, initial_prompt=text, carry_initial_prompt=True)


# ------------------------------------------------------------------------------------------------
# hallucination_silence_threshold


def test_hallucination_silence_threshold_equals_the_reference_and_drops_the_hallucinations(
        ours, reference_heads, humming, spoken, monkeypatch):
    import transcribe as T

    calls, skip = [], T.skip_hallucinations

    def spy(current, *args):
        before = len(current)
        seek, skipped = skip(current, *args)
        calls.append((skipped, before - len(current)))
        return seek, skipped

    monkeypatch.setattr(T, "skip_hallucinations", spy)
    result = both(ours, reference_heads, humming, word_timestamps=True, hallucination_silence_threshold=1.0)
    # both of the reference's rules fired: a window decoded again after the silence it started
    # with, and suspect segments dropped
    assert any(skipped for skipped, _ in calls) and any(dropped for _, dropped in calls)
    hum_start = len(spoken[0]) / 16000  # the hum's 20 s, give or take 2 s at either end
    assert not [s for s in result["segments"] if hum_start + 2 < s["start"] < hum_start + 18 and s["text"]]


def test_the_threshold_needs_word_timestamps_and_no_negative_seconds(ours):
    from transcribe import transcribe

    silence = np.zeros(16000, np.float32)
    with pytest.raises(ValueError, match="needs --word-timestamps"):
        transcribe(ours, silence, hallucination_silence_threshold=1.0)
    with pytest.raises(ValueError, match="0 or more"):
        transcribe(ours, silence, word_timestamps=True, hallucination_silence_threshold=-1.0)
    with pytest.raises(ValueError, match="--batch-size"):
        transcribe(ours, silence, word_timestamps=True, hallucination_silence_threshold=1.0, batch_size=2)


# ------------------------------------------------------------------------------------------------
# command line


@pytest.mark.parametrize("args, problem", [
    (["--clip-timestamps", "5,x"], "expected comma-separated seconds"),
    (["--clip-timestamps", "10,5"], "increasing start,end pairs"),
    (["--clip-timestamps", "0,10,8,20"], "increasing start,end pairs"),
    (["--clip-timestamps", "-1"], "0 or more"),
    (["--clip-timestamps", "nan"], "0 or more"),
    (["--clip-timestamps", "3", "--batch-size", "2"], "can't be used with --batch-size"),
    (["--hallucination-silence-threshold", "2"], "needs --word-timestamps"),
    (["--hallucination-silence-threshold", "-2", "--word-timestamps"], "expected seconds of 0 or more"),
    (["--hallucination-silence-threshold", "2", "--word-timestamps", "--batch-size", "4"], "--batch-size"),
    (["--carry-initial-prompt"], "needs --initial-prompt"),
], ids=["not-a-number", "end-before-start", "overlap", "negative", "nan", "batched", "no-words", "negative-threshold",
        "batched-threshold", "nothing-to-carry"])
def test_bad_option_values_are_one_line_usage_errors(tmp_path, capsys, args, problem):
    import transcribe as T

    missing = tmp_path / "never-read.flac"  # refused before the file is opened or the model loaded
    try:
        code = T.main([str(missing), *args])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and problem in err, err
    assert err.strip().count("\n") == 0 and err.startswith("error:") and "never-read" not in err


def test_the_command_line_passes_the_options_on(ours, tmp_path, spoken):
    from transcribe import transcribe

    audio = np.concatenate([spoken[0], np.zeros(16000 * 2, np.float32), spoken[1]])
    sf.write(tmp_path / "speech.wav", audio, 16000)
    options = ["--clip-timestamps", "1", "--word-timestamps", "--hallucination-silence-threshold", "1",
               "--initial-prompt", "Stella", "--carry-initial-prompt", "--beam-size", "1",
               "--temperature-increment-on-fallback", "0", "--output-format", "json", "--output-dir", tmp_path]
    proc = subprocess.run([sys.executable, str(ROOT / "transcribe.py"), tmp_path / "speech.wav", *map(str, options)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    written = json.loads((tmp_path / "speech.json").read_text(encoding="utf-8"))
    from audio import load_audio

    expected = transcribe(ours, load_audio(tmp_path / "speech.wav"), clip_timestamps="1", word_timestamps=True,
                          hallucination_silence_threshold=1.0, initial_prompt="Stella", carry_initial_prompt=True,
                          **GREEDY)
    assert [(s["seek"], s["tokens"]) for s in written["segments"]] == [(s["seek"], s["tokens"]) for s in expected["segments"]]
    assert written["segments"][0]["seek"] == 100
