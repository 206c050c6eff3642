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


LOG_MEL_FLOOR = 1e-10  # mel power floor before log10
DYNAMIC_RANGE = 8.0  # log10 units (80 dB) kept below the loudest frame


def window_frames(n_audio_ctx: int) -> int:
    """Mel frames in one encoder window: the conv stem halves time, so 2 * n_audio_ctx (3000, 30 s,
    for official models; fewer for models trained on a shorter context)."""
    return 2 * n_audio_ctx


def window_samples(n_audio_ctx: int) -> int:
    """Audio samples in one encoder window (480000 for official models)."""
    return window_frames(n_audio_ctx) * HOP_LENGTH


def window_mel(audio, dims) -> torch.Tensor:
    """One utterance as the model takes it: cut or zero-padded to the model's window, then the
    log-mel. The training loader, eval and short-window transcription all feed exactly this."""
    return log_mel_spectrogram(pad_or_trim(audio, window_samples(dims.n_audio_ctx)), n_mels=dims.n_mels)


def silence_value(normalised_peak: float) -> float:
    """The normalised log-mel of digital silence in a window whose loudest normalised value is
    `normalised_peak`: the floor, or the clamp below the peak if that is higher."""
    floor = (np.log10(LOG_MEL_FLOOR) + 4.0) / 4.0
    return float(max(floor, normalised_peak - DYNAMIC_RANGE / 4.0))


class AudioError(ValueError):
    """Raised for audio we cannot use; the message always names the file."""


def load_audio(path, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Decode a file (flac, wav, ogg, mp3, ...) to mono float32 at `sr` Hz, without ffmpeg.

    The file is decoded and resampled a minute at a time into one preallocated array, so an hour of
    44.1 kHz stereo never sits in memory at its original rate.
    """
    import soundfile  # libsndfile >= 1.1 reads flac, wav, ogg/vorbis/opus and mp3

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: file is empty")
    try:
        with soundfile.SoundFile(path) as f:
            audio = _decode_resampled(f, sr)
    except Exception as e:  # libsndfile says little more than "unknown format"
        audio = _load_with_ffmpeg(path, sr)
        if audio is None:
            raise AudioError(f"{path}: cannot decode audio ({str(e).splitlines()[0]})") from None
    if audio.size == 0:
        raise AudioError(f"{path}: contains no audio samples")
    return audio


def _decode_resampled(f, sr: int) -> np.ndarray:
    import soxr

    n_out = -(-f.frames * sr // f.samplerate) + 16 if f.frames > 0 else 0  # a little slack for the resampler
    out, n = np.empty(n_out, dtype=np.float32), 0
    stream = soxr.ResampleStream(f.samplerate, sr, 1, dtype="float32") if f.samplerate != sr else None
    block = 60 * f.samplerate
    while True:
        data = f.read(block, dtype="float32", always_2d=True)
        last = len(data) < block
        mono = data.mean(axis=1, dtype=np.float32)
        if stream is not None:
            mono = stream.resample_chunk(mono, last=last)
        if n + len(mono) > len(out):  # frame counts of some mp3s are estimates
            out = np.concatenate([out[:n], np.empty(max(len(mono), len(out) // 2), np.float32)])
        out[n : n + len(mono)] = mono
        n += len(mono)
        if last:
            return out[:n].copy() if n < len(out) - 16 else out[:n]


def _load_with_ffmpeg(path: str, sr: int):
    """Formats libsndfile can't read (m4a, webm, ...) work too when an ffmpeg binary exists."""
    if shutil.which("ffmpeg") is None:
        return None
    cmd = ["ffmpeg", "-nostdin", "-i", path, "-f", "s16le", "-ac", "1", "-ar", str(sr), "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        return None
    return np.frombuffer(proc.stdout, np.int16).astype(np.float32) / 32768.0


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


def _log10_mel(samples: torch.Tensor, n_mels: int, center: bool) -> torch.Tensor:
    """log10 of the mel power of every STFT frame, before the dynamic-range clamp."""
    window = torch.hann_window(N_FFT, device=samples.device)
    stft = torch.stft(samples, N_FFT, HOP_LENGTH, window=window, center=center, return_complex=True)
    filters = torch.from_numpy(mel_filters(n_mels)).to(samples.device)
    return torch.clamp(filters @ stft.abs() ** 2, min=LOG_MEL_FLOOR).log10()


def _normalise(log_spec: torch.Tensor, peak) -> torch.Tensor:
    """Keep 80 dB below the loudest frame, then scale to roughly [-1, 1]."""
    return (torch.maximum(log_spec, peak - DYNAMIC_RANGE) + 4.0) / 4.0


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
    log_spec = _log10_mel(audio, n_mels, center=True)[..., :-1]  # the last frame would see past the end
    return _normalise(log_spec, log_spec.amax(dim=(-2, -1), keepdim=True))


class LongFormMel:
    """Frames of log_mel_spectrogram(audio, padding=N_SAMPLES), computed a window at a time.

    The reference computes the mel of a whole file at once; for an hour that is 115 MB per 80 mels
    held for the whole run. This gives the same frames while holding one window: a first pass finds
    the file's loudest frame (the clamp depends on it), and `frames(a, b)` runs the STFT on just the
    samples that frames a..b-1 see, mirroring torch.stft's reflect padding at the start.
    """

    def __init__(self, audio, n_mels: int = 80, device=None, chunk_frames: int = 6000):
        self.audio = audio if torch.is_tensor(audio) else torch.from_numpy(np.asarray(audio, dtype=np.float32))
        self.audio = self.audio.float()
        self.n_mels, self.device = n_mels, device
        self.n_padded = len(self.audio) + N_SAMPLES  # the signal the reference transforms
        self.n_frames = self.n_padded // HOP_LENGTH  # after dropping stft's last frame
        self.n_content = self.n_frames - N_FRAMES
        self.peak = max(
            _log10_mel(self._frames_signal(a, min(a + chunk_frames, self.n_frames)), n_mels, center=False).max()
            for a in range(0, self.n_frames, chunk_frames)
        )

    def _frames_signal(self, start: int, stop: int) -> torch.Tensor:
        """The samples that STFT frames start..stop-1 of the centred, reflect-padded signal cover."""
        index = torch.arange(start * HOP_LENGTH, (stop - 1) * HOP_LENGTH + N_FFT) - N_FFT // 2
        index = torch.where(index < 0, -index, index)  # reflect at the start
        index = torch.where(index >= self.n_padded, 2 * (self.n_padded - 1) - index, index)  # and at the end
        inside = index < len(self.audio)  # beyond the audio: the appended zeros
        samples = torch.where(inside, self.audio[index.clamp(max=len(self.audio) - 1)], 0.0)
        return samples.to(self.device) if self.device is not None else samples

    def frames(self, start: int, stop: int) -> torch.Tensor:
        """(n_mels, stop - start) normalised log-mel frames."""
        log_spec = _log10_mel(self._frames_signal(start, stop), self.n_mels, center=False)
        return _normalise(log_spec, self.peak.to(log_spec.device))


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
