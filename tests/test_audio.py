import numpy as np
import pytest
import soundfile as sf
import torch

from audio import N_SAMPLES, AudioError, load_audio, log_mel_spectrogram, mel_filters, pad_or_trim, plot_utterance
from conftest import shared

whisper = pytest.importorskip("whisper")


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_equal_the_reference_asset(n_mels):
    from pathlib import Path

    asset = Path(whisper.__file__).parent / "assets" / "mel_filters.npz"
    expected = np.load(asset)[f"mel_{n_mels}"]
    assert np.abs(mel_filters(n_mels) - expected).max() < 1e-6


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("padding", [0, N_SAMPLES])
def test_log_mel_equals_reference_on_random_audio(n_mels, padding):
    audio = torch.from_numpy(np.random.default_rng(n_mels + padding).standard_normal(123_457).astype(np.float32) * 0.1)
    ours = log_mel_spectrogram(audio, n_mels=n_mels, padding=padding)
    ref = whisper.log_mel_spectrogram(audio, n_mels=n_mels, padding=padding)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max() <= 1e-4


@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_equals_reference_on_jfk(n_mels):
    audio = load_audio(shared("jfk.flac"))
    for clip in (audio, pad_or_trim(audio)):
        ours = log_mel_spectrogram(clip, n_mels=n_mels)
        ref = whisper.log_mel_spectrogram(torch.from_numpy(clip), n_mels=n_mels)
        assert (ours - ref).abs().max() <= 1e-4


def test_log_mel_of_a_batch_equals_its_items():
    batch = torch.randn(3, 32000) * torch.tensor([[1.0], [0.01], [3.0]])
    mels = log_mel_spectrogram(batch)
    for item, mel in zip(batch, mels):
        assert torch.allclose(log_mel_spectrogram(item), mel, atol=1e-5)


@pytest.mark.parametrize("fmt,subtype,ext", [("FLAC", None, "flac"), ("WAV", "PCM_16", "wav"),
                                             ("OGG", "VORBIS", "ogg"), ("MP3", "MPEG_LAYER_III", "mp3")])
def test_load_audio_formats_give_mono_16k(tmp_path, fmt, subtype, ext):
    sr, seconds = 44100, 1.5
    t = np.arange(int(sr * seconds)) / sr
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1) * 0.5
    path = tmp_path / f"tone.{ext}"
    sf.write(path, stereo, sr, format=fmt, subtype=subtype)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 16000 * seconds) < 2000  # mp3 adds encoder padding
    spectrum = np.abs(np.fft.rfft(audio[2000:14000]))
    assert abs(np.argmax(spectrum) * 16000 / 12000 - 440) < 5  # the tone survives resampling


def test_pad_or_trim_numpy_and_torch():
    assert pad_or_trim(np.ones(10), 4).shape == (4,)
    padded = pad_or_trim(torch.ones(2, 3), 5)
    assert padded.shape == (2, 5) and padded[:, 3:].abs().sum() == 0
    assert pad_or_trim(torch.ones(2, 3, 4), 6, axis=1).shape == (2, 6, 4)
    assert pad_or_trim(np.ones((2, 3)), 1, axis=0).shape == (1, 3)


@pytest.mark.parametrize("content,problem", [(None, "no such file"), (b"", "empty"),
                                             (b"this is not audio" * 50, "cannot decode")])
def test_load_audio_bad_input_names_the_file(tmp_path, content, problem):
    path = tmp_path / "bad.flac"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioError, match=problem) as err:
        load_audio(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_load_audio_says_what_is_wrong_with_the_path(tmp_path):
    import os

    with pytest.raises(AudioError, match="is a directory") as err:
        load_audio(tmp_path)  # libsndfile called this "Format not recognised", and a check once "no such file"
    assert str(err.value).startswith(str(tmp_path))
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    with pytest.raises(AudioError, match="not a regular file"):
        load_audio(fifo)  # without a hang waiting for a writer


def test_an_unreadable_file_says_permission_denied(tmp_path):
    """libsndfile calls it "System error". Root reads a chmod-000 file anyway, so as root the read
    runs with the effective uid of nobody, in a directory anyone may enter."""
    import os
    import shutil
    import tempfile

    if os.geteuid() == 0:
        folder = tempfile.mkdtemp(prefix="unreadable-")
        os.chmod(folder, 0o755)
    else:
        folder = str(tmp_path)
    path = os.path.join(folder, "locked.flac")
    sf.write(path, np.zeros(1600, np.float32), 16000)
    os.chmod(path, 0)
    try:
        if os.geteuid() == 0:
            os.seteuid(65534)
        elif os.access(path, os.R_OK):
            pytest.skip("this user reads a chmod-000 file anyway (a capability such as CAP_DAC_OVERRIDE)")
        try:
            with pytest.raises(AudioError) as err:
                load_audio(path)
        finally:
            if os.getuid() == 0:
                os.seteuid(0)
        assert str(err.value) == f"{path}: permission denied"
    finally:
        if folder != str(tmp_path):
            shutil.rmtree(folder)


@pytest.mark.parametrize("damage", ["header", "middle", "truncated"])
def test_a_corrupt_flac_says_it_cannot_be_decoded(tmp_path, damage):
    good = tmp_path / "good.flac"
    sf.write(good, np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32) * 0.1, 16000)
    data = bytearray(good.read_bytes())
    if damage == "header":
        data[4:12] = b"\xff" * 8  # the STREAMINFO block
    elif damage == "middle":
        data[len(data) // 2 : len(data) // 2 + 2000] = bytes(range(250)) * 8
    else:
        data = data[: len(data) // 2]
    path = tmp_path / "bad.flac"
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError) as err:
        load_audio(path)
    message = str(err.value)
    assert message.startswith(f"{path}: cannot decode audio") and "(corrupt or" in message
    assert "does not exist" not in message and "pipe" not in message and "\n" not in message


def test_load_audio_zero_length(tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(path)  # eval and prepare skip such a clip: nothing to score or train on


def test_audio_file_with_no_samples_is_empty_audio_and_a_zero_byte_file_an_error(tmp_path):
    # transcription takes a decodable file with no samples as empty audio (issue 19), like np.zeros(0)
    from audio import AudioFile

    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    audio = AudioFile(path)
    assert len(audio) == 0 and len(audio.read(0, 16000)) == 0 and audio.frame_peak(0, 3000) == 0.0
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty.wav: file is empty"):
        AudioFile(tmp_path / "empty.wav")


def test_plot_utterance_writes_a_png(tmp_path, spoken):
    png = plot_utterance(spoken[0], tmp_path / "utt.png", title="tts", window_seconds=30)
    data = open(png, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_long_form_mel_equals_the_whole_file_mel(spoken):
    from audio import LongFormMel

    audio = np.concatenate([spoken[0], np.zeros(16000 * 20, np.float32), spoken[1], spoken[0]])
    whole = whisper.log_mel_spectrogram(torch.from_numpy(audio), padding=N_SAMPLES)
    stream = LongFormMel(audio, chunk_frames=1234)  # chunks that don't line up with windows
    assert stream.n_frames == whole.shape[-1] and stream.n_content == whole.shape[-1] - 3000
    for start, stop in [(0, 3000), (0, 1), (2999, 5000), (stream.n_frames - 3100, stream.n_frames)]:
        assert (stream.frames(start, stop) - whole[:, start:stop]).abs().max() <= 1e-4


def test_streamed_decoding_equals_decoding_at_once(tmp_path):
    import soxr

    sr = 44100
    stereo = np.random.default_rng(0).standard_normal((sr * 130, 2)).astype(np.float32) * 0.1  # > 2 blocks
    path = tmp_path / "noise.flac"
    sf.write(path, stereo, sr, subtype="PCM_24")
    decoded, _ = sf.read(path, dtype="float32")
    at_once = soxr.resample(decoded.mean(axis=1), sr, 16000)
    streamed = load_audio(path)
    assert len(streamed) == len(at_once)
    assert np.abs(streamed - at_once).max() <= 1e-4
