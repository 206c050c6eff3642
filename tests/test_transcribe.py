"""transcribe.py as a user runs it: stdout, stderr, exit codes."""
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, shared

EXPECTED_JFK = "and so my fellow americans ask not what your country can do for you ask what you can do for your country"


def run(*args):
    return subprocess.run([sys.executable, str(ROOT / "transcribe.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def words(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory, spoken):
    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    sf.write(path, spoken[0], 16000)
    return path


def test_jfk_prints_only_the_transcript_and_it_equals_the_reference(reference):
    import torch
    import whisper

    from audio import N_SAMPLES, load_audio

    path = shared("jfk.flac")
    proc = run(path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1
    assert words(proc.stdout) == EXPECTED_JFK
    # the reference on the same window (its long-form mel: content frames, then zeros) and the
    # CLI's default options (5 beams, no timestamps for now) writes the same text
    audio = torch.from_numpy(load_audio(path))
    mel = whisper.log_mel_spectrogram(audio, padding=N_SAMPLES)[:, : len(audio) // 160]
    options = whisper.DecodingOptions(language="en", fp16=False, beam_size=5, without_timestamps=True)
    assert proc.stdout.strip() == whisper.decode(reference, whisper.pad_or_trim(mel, 3000), options).text


def test_synthetic_speech_prints_one_line_and_logs_to_stderr(speech_wav):
    proc = run(speech_wav, "--beam-size", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1 and "fox" in proc.stdout.lower()
    assert "loaded tiny.en" in proc.stderr


def test_bad_inputs_each_get_one_line_and_the_good_file_is_still_transcribed(tmp_path, speech_wav):
    missing = tmp_path / "missing.flac"
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"definitely not audio " * 64)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros(0, np.float32), 16000)
    proc = run(missing, garbage, speech_wav, empty, zero, "--beam-size", "1")
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 4
    for path, problem in [(missing, "no such file"), (garbage, "cannot decode"), (empty, "empty"),
                          (zero, "no audio samples")]:
        assert any(str(path) in e and problem in e for e in errors), (path, errors)
    assert f"{speech_wav}: " in proc.stdout and "fox" in proc.stdout.lower()


@pytest.mark.parametrize("path", ["missing-file.flac"])
def test_a_single_missing_file_exits_non_zero(path):
    proc = run(path)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-2:][0].startswith("error:") and path in proc.stderr


def test_silence_gives_no_text(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(16000 * 40, np.float32), 16000)
    proc = run(path, "--beam-size", "1")
    assert proc.returncode == 0 and proc.stdout.strip() == ""


def test_long_audio_is_transcribed_window_by_window(ours, spoken):
    from transcribe import transcribe

    gap = np.zeros(16000 * 31 - len(spoken[0]), np.float32)
    audio = np.concatenate([spoken[0], gap, spoken[1]])  # the second sentence starts at 31 s
    result = transcribe(ours, audio, beam_size=1)
    assert len(result["segments"]) == 2
    assert "fox" in result["segments"][0]["text"].lower() and "stella" in result["segments"][1]["text"].lower()


def test_unknown_model_is_a_clear_error(speech_wav):
    proc = run(speech_wav, "--model", "no-such-model")
    assert proc.returncode == 2 and "no-such-model" in proc.stderr and "not an official model name" in proc.stderr
