"""
Audio in, log-mel out: the only front end in the repo.

Everything that feeds the model (prepare, train, transcribe, eval, inquiry) goes through
`load_audio` and `log_mel_spectrogram` here, so what the model sees in training is exactly what
it sees at inference. The mel recipe is Whisper's: 16 kHz, 25 ms Hann window (n_fft 400), 10 ms
hop, Slaney mel filterbank, log10, clamp to (max - 8), then (x + 4) / 4.
"""
import os
import shutil
import subprocess
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_LENGTH = 30  # seconds in one window of the encoder
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames per window
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100
TOKENS_PER_SECOND = FRAMES_PER_SECOND // 2  # the conv stem halves time: 50 audio tokens/s


class AudioError(ValueError):
    """Raised for audio we cannot use; the message always names the file."""


def load_audio(path, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Decode a file (flac, wav, ogg, mp3, ...) to mono float32 at `sr` Hz, without ffmpeg."""
    import soundfile  # libsndfile >= 1.1 reads flac, wav, ogg/vorbis/opus and mp3

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: file is empty")
    try:
        data, file_sr = soundfile.read(path, dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile says little more than "unknown format"
        data, file_sr = _load_with_ffmpeg(path, sr), sr
        if data is None:
            raise AudioError(f"{path}: cannot decode audio ({str(e).splitlines()[0]})") from None
    audio = data.mean(axis=1) if data.ndim == 2 else data
    if audio.size == 0:
        raise AudioError(f"{path}: contains no audio samples")
    if file_sr != sr:
        import soxr

        audio = soxr.resample(audio, file_sr, sr)
    return np.ascontiguousarray(audio, dtype=np.float32)


def _load_with_ffmpeg(path: str, sr: int):
    """Formats libsndfile can't read (m4a, webm, ...) work too when an ffmpeg binary exists."""
    if shutil.which("ffmpeg") is None:
        return None
    cmd = ["ffmpeg", "-nostdin", "-i", path, "-f", "s16le", "-ac", "1", "-ar", str(sr), "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        return None
    return (np.frombuffer(proc.stdout, np.int16).astype(np.float32) / 32768.0)[:, None]


def pad_or_trim(array, length: int = N_SAMPLES, axis: int = -1):
    """Zero-pad or cut `array` (numpy or torch) along `axis` to exactly `length`."""
    n = array.shape[axis]
    if n > length:
        index = [slice(None)] * array.ndim
        index[axis] = slice(0, length)
        return array[tuple(index)]
    if n < length:
        if torch.is_tensor(array):
            pad = [0, 0] * array.ndim
            pad[2 * (array.ndim - 1 - axis % array.ndim) + 1] = length - n
            return F.pad(array, pad)
        widths = [(0, 0)] * array.ndim
        widths[axis] = (0, length - n)
        return np.pad(array, widths)
    return array


def _hz_to_mel(f):
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's htk=False)."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    mel = f / f_sp
    return np.where(f >= min_log_hz, min_log_hz / f_sp + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mel)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@lru_cache(maxsize=None)
def mel_filters(n_mels: int, sr: int = SAMPLE_RATE, n_fft: int = N_FFT) -> np.ndarray:
    """Triangular Slaney-normalised filterbank, (n_mels, n_fft // 2 + 1), float32.

    The same matrix as librosa.filters.mel(sr=16000, n_fft=400, n_mels=n_mels), which is what
    Whisper ships in mel_filters.npz; computed here so we need neither librosa nor the asset.
    """
    fft_freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mel_points = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2), n_mels + 2))
    widths = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (mel_points[2:] - mel_points[:-2]))[:, None]  # equal area per filter
    return weights.astype(np.float32)


def log_mel_spectrogram(audio, n_mels: int = 80, padding: int = 0, device=None) -> torch.Tensor:
    """(..., n_samples) audio at 16 kHz -> (..., n_mels, n_frames) Whisper log-mel, float32.

    `audio` may be a numpy array, a tensor or a path. `padding` appends that many zero samples
    before the transform (the reference appends 30 s for long-form). The dynamic-range clamp uses
    the max of each utterance, so a batch gives the same rows as its items one at a time.
    """
    if isinstance(audio, (str, os.PathLike)):
        audio = load_audio(audio)
    if not torch.is_tensor(audio):
        audio = torch.from_numpy(np.asarray(audio, dtype=np.float32))
    if device is not None:
        audio = audio.to(device)
    audio = audio.float()
    if padding > 0:
        audio = F.pad(audio, (0, padding))
    window = torch.hann_window(N_FFT, device=audio.device)
    stft = torch.stft(audio, N_FFT, HOP_LENGTH, window=window, return_complex=True)
    power = stft[..., :-1].abs() ** 2  # the last frame would see beyond the end of the audio
    filters = torch.from_numpy(mel_filters(n_mels)).to(audio.device)
    log_spec = torch.clamp(filters @ power, min=1e-10).log10()
    peak = log_spec.amax(dim=(-2, -1), keepdim=True)
    log_spec = torch.maximum(log_spec, peak - 8.0)
    return (log_spec + 4.0) / 4.0


def plot_utterance(audio, png_path, title: str = "", n_mels: int = 80, window_seconds: float = None):
    """Save a PNG with the waveform on top and its log-mel below; returns the path.

    With `window_seconds` (e.g. 30) the log-mel is shown as the model sees it: padded to the
    window, with the padding shaded.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    audio = np.asarray(audio, dtype=np.float32)
    seconds = len(audio) / SAMPLE_RATE
    shown = audio if window_seconds is None else pad_or_trim(audio, int(window_seconds * SAMPLE_RATE))
    mel = log_mel_spectrogram(shown, n_mels=n_mels).numpy()
    span = len(shown) / SAMPLE_RATE

    fig, (ax_wave, ax_mel) = plt.subplots(
        2, 1, figsize=(10, 5), sharex=True, height_ratios=[1, 2], layout="constrained"
    )
    ax_wave.plot(np.arange(len(shown)) / SAMPLE_RATE, shown, linewidth=0.4, color="tab:blue")
    ax_wave.set_ylabel("amplitude")
    ax_wave.set_title(title or f"{seconds:.2f} s of audio")
    image = ax_mel.imshow(mel, origin="lower", aspect="auto", extent=[0, span, 0, n_mels], cmap="magma")
    ax_mel.set_ylabel("mel bin")
    ax_mel.set_xlabel("seconds")
    ax_mel.set_xlim(0, span)
    if span > seconds:
        for ax in (ax_wave, ax_mel):
            ax.axvspan(seconds, span, color="grey", alpha=0.3, label="padding")
        ax_mel.legend(loc="upper right")
    fig.colorbar(image, ax=[ax_wave, ax_mel], label="log-mel", pad=0.01)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
