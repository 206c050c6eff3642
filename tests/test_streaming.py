"""Long-form transcription of a file reads its samples a span at a time (audio.AudioFile): the same
samples, frames and segments as the whole file in memory; bad samples and empty audio."""
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from audio import N_SAMPLES, AudioError, AudioFile, LongFormMel, load_audio, log_mel_spectrogram
from conftest import ROOT

GREEDY = dict(temperature=0.0, beam_size=None, best_of=None)


@pytest.fixture(scope="module")
def long_file(tmp_path_factory, spoken):
    """72 s as 22.05 kHz stereo flac (two decode blocks and a resampler that carries state across
    them): a sentence, a tone at 34 s, another sentence at 62 s, digital silence between (not decoded)."""
    import soxr

    sr = 22050
    audio = np.zeros(16000 * 72, np.float32)
    audio[: len(spoken[0])] = spoken[0]
    audio[34 * 16000 : 35 * 16000] = 0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    audio[62 * 16000 : 62 * 16000 + len(spoken[1])] = spoken[1]
    audio = soxr.resample(audio, 16000, sr)
    path = tmp_path_factory.mktemp("stream") / "long.flac"
    sf.write(path, np.stack([audio, 0.5 * audio], axis=1), sr, subtype="PCM_24")
    return path


def test_reads_in_any_order_equal_load_audio(long_file):
    whole = load_audio(long_file)
    f = AudioFile(long_file)
    assert len(f) == len(whole) > 70 * 16000
    spans = [(0, 100), (50, 1_000_000), (900_000, 1_100_000), (10, 20), (1_100_000, len(whole) + 500),
             (-5, 3), (len(whole) - 1, len(whole) + 1)]  # forward, back (decoded again from the start), ends
    for a, b in spans:
        assert np.array_equal(f.read(a, b).numpy(), whole[max(a, 0) : b]), (a, b)
    for start, n in [(0, 3000), (2500, 3000), (7000, 500), (7150, 0)]:
        samples = whole[start * 160 : (start + n) * 160]
        assert f.frame_peak(start, start + n) == (np.abs(samples).max() if len(samples) else 0.0)


def test_streamed_frames_equal_the_whole_file_mel(long_file):
    whole = log_mel_spectrogram(load_audio(long_file), padding=N_SAMPLES)
    mel = LongFormMel(AudioFile(long_file), chunk_frames=2345)
    assert mel.n_frames == whole.shape[-1]
    for start, stop in [(0, 3000), (2999, 6000), (1000, 4000), (mel.n_frames - 3100, mel.n_frames)]:
        assert (mel.frames(start, stop) - whole[:, start:stop]).abs().max() <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [None, 2])
def test_a_streamed_file_gives_the_segments_of_the_array(ours, long_file, batch_size):
    from transcribe import transcribe

    streamed = transcribe(ours, long_file, batch_size=batch_size, **GREEDY)
    in_memory = transcribe(ours, load_audio(long_file), batch_size=batch_size, **GREEDY)
    assert streamed == in_memory
    assert len(streamed["segments"]) >= 2 and "fox" in streamed["text"].lower()


@pytest.mark.parametrize("value,kind", [(np.nan, "NaN"), (np.inf, "infinite"), (-np.inf, "infinite")])
def test_a_bad_sample_names_the_file_and_its_position(tmp_path, value, kind):
    audio = np.zeros(16000 * 62, np.float32)  # the bad sample is in the second decode block
    audio[976_000:976_010] = value
    path = tmp_path / "bad.wav"
    sf.write(path, audio, 16000, subtype="FLOAT")
    expected = f"{path}: sample 976000 (61.000 s) is {kind}; the audio is corrupt"
    for reader in (load_audio, AudioFile):
        with pytest.raises(AudioError) as err:
            reader(path)
        assert str(err.value) == expected


def test_a_bad_sample_is_placed_at_the_files_own_rate(tmp_path):
    stereo = np.zeros((44100 * 2, 2), np.float32)
    stereo[50_000, 1] = np.nan
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, 44100, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"sample 50000 \(1\.134 s\) is NaN"):
        load_audio(path)


def test_a_nan_array_is_refused_before_any_decoding(ours):
    from transcribe import transcribe

    audio = np.zeros(16000 * 5, np.float32)
    audio[50_000] = np.nan
    with pytest.raises(AudioError, match=r"sample 50000 \(3\.125 s\) is NaN"):
        transcribe(ours, audio)


def test_the_command_line_reports_a_nan_file_in_one_line(tmp_path):
    audio, sr = np.zeros(16000 * 4, np.float32), 16000
    audio[50_000:50_010] = np.nan  # the recipe: it used to print an empty transcript and exit 0
    path = tmp_path / "nan.wav"
    sf.write(path, audio, sr, subtype="FLOAT")
    proc = subprocess.run([sys.executable, str(ROOT / "transcribe.py"), str(path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 1 and proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {path}: sample 50000 (3.125 s) is NaN; the audio is corrupt"]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("batch_size", [None, 3])
def test_empty_audio_gives_no_text_like_the_reference(ours, reference, batch_size):
    from transcribe import transcribe

    expected = reference.transcribe(np.zeros(0, np.float32), language="en", fp16=False)
    result = transcribe(ours, np.zeros(0, np.float32), batch_size=batch_size, reference=True)
    assert result["text"] == expected["text"] == ""
    assert result["segments"] == expected["segments"] == []


def test_empty_audio_on_a_multilingual_model_detects_a_language_and_gives_no_text(tmp_path):
    from test_transcribe import random_multilingual
    from transcribe import transcribe

    model = random_multilingual(tmp_path / "multi.pt")
    result = transcribe(model, np.zeros(0, np.float32), beam_size=1)
    assert result["text"] == "" and result["segments"] == []
    assert isinstance(result["language"], str) and 0 < result["language_probability"] <= 1
