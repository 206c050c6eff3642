"""
Audio in, log-mel out: the only front end in the repo.

Everything that feeds the model (prepare, train, transcribe, eval, inquiry) goes through
`load_audio` and `log_mel_spectrogram` here, so what the model sees in training is exactly what
it sees at inference. The mel recipe is Whisper's: 16 kHz, 25 ms Hann window (n_fft 400), 10 ms
hop, Slaney mel filterbank, log10, clamp to (max - 8), then (x + 4) / 4. Long files are read
through `AudioFile` (the same decoding, a span at a time) and framed by `LongFormMel`.
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
LEVELS = ("file", "window", "gain", "agc")  # how long-form sets a window's level: see LongFormMel.frames
AGC_HOLD = 30  # "agc": frames (0.3 s) either side over which a frame's level is the loudest one's
AGC_GATE = 6.0  # "agc": frames whose held level is this far (log10 units, 60 dB) below the file's peak stay as they are
AGC_TOLERANCE = 1.5  # "agc": speech within 15 dB of the file's peak keeps its level (its own dynamics)
QUIET_MIN = 50  # frames (0.5 s): a stretch held that quiet this long may be a quieter speaker (quiet_stretches)
LIFT_TO = 0.5  # a lifted span's loudest frame is brought this far (log10: 5 dB) below the file's peak


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


class _Undecodable(AudioError):
    """libsndfile could not decode the file: ffmpeg, where there is one, gets a try."""


def load_audio(path, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Decode a file (flac, wav, ogg, mp3, ...) to mono float32 at `sr` Hz, without ffmpeg.

    The file is decoded and resampled a minute at a time into one preallocated array, so an hour of
    44.1 kHz stereo never sits in memory at its original rate. NaN or infinite samples are an
    AudioError naming the first one: the file's loudest frame sets the mel's clamp, so a single NaN
    would turn every frame of the file into NaN.
    """
    path = os.fspath(path)
    _check_path(path)
    try:
        with _open_soundfile(path) as f:
            n_out = -(-f.frames * sr // f.samplerate) + 16 if f.frames > 0 else 0  # a little slack for the resampler
            out, n = np.empty(n_out, dtype=np.float32), 0
            for mono in _decoded_blocks(f, sr, path):
                if n + len(mono) > len(out):  # frame counts of some mp3s are estimates
                    out = np.concatenate([out[:n], np.empty(max(len(mono), len(out) // 2), np.float32)])
                out[n : n + len(mono)] = mono
                n += len(mono)
            audio = out[:n].copy() if n < len(out) - 16 else out[:n]
    except _Undecodable:
        audio = _load_with_ffmpeg(path, sr)
        if audio is None:
            raise
    if audio.size == 0:
        raise AudioError(f"{path}: contains no audio samples")
    return audio


def _check_path(path: str):
    """Say what is wrong with a path that can't be opened, in the words a user expects (libsndfile
    calls all of these "System error" or "Format not recognised")."""
    if os.path.isdir(path):
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not os.path.exists(path):
        raise AudioError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise AudioError(f"{path}: not a regular file")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise AudioError(f"{path}: permission denied") from None
    except OSError as e:
        raise AudioError(f"{path}: cannot be read ({e.strerror})") from None
    if os.path.getsize(path) == 0:
        raise AudioError(f"{path}: file is empty")


def _open_soundfile(path: str):
    import soundfile  # libsndfile >= 1.1 reads flac, wav, ogg/vorbis/opus and mp3

    try:
        return soundfile.SoundFile(path)
    except Exception:  # libsndfile's words ("File does not exist ... (possibly a pipe?)") mislead
        raise _Undecodable(f"{path}: cannot decode audio (corrupt or unsupported format)") from None


def _decoded_blocks(f, sr: int, name: str):
    """An open file's samples as mono float32 at `sr`, a minute of the file at a time: decoded,
    checked, mixed down and resampled through one soxr stream. load_audio and AudioFile both read
    through here, so they give the same samples."""
    import soxr

    stream = soxr.ResampleStream(f.samplerate, sr, 1, dtype="float32") if f.samplerate != sr else None
    block, offset = 60 * f.samplerate, 0
    while True:
        try:
            data = f.read(block, dtype="float32", always_2d=True)
        except Exception:
            where = f" after {offset / f.samplerate:.1f} s" if offset else ""
            raise _Undecodable(f"{name}: cannot decode audio{where} (corrupt or truncated)") from None
        last = len(data) < block
        mono = data.mean(axis=1, dtype=np.float32)
        check_finite(mono, name, offset, f.samplerate)
        offset += len(mono)
        if stream is not None:
            mono = stream.resample_chunk(mono, last=last)
        yield mono
        if last:
            return


def check_finite(samples, name: str, offset: int = 0, sr: int = SAMPLE_RATE):
    """AudioError at the first NaN or infinite sample; `offset` is the position of samples[0].

    An error rather than zeroing the samples with a warning: a file with one NaN is damaged, the
    user should know which and where, and eval and prepare skip it like any unreadable file."""
    finite = np.isfinite(samples)
    if not finite.all():
        i = int(np.argmin(finite))
        kind = "NaN" if np.isnan(samples[i]) else "infinite"
        raise AudioError(f"{name}: sample {offset + i} ({(offset + i) / sr:.3f} s) is {kind}; the audio is corrupt")


def _load_with_ffmpeg(path: str, sr: int):
    """Formats libsndfile can't read (m4a, webm, ...) work too when an ffmpeg binary exists."""
    if shutil.which("ffmpeg") is None:
        return None
    cmd = ["ffmpeg", "-nostdin", "-i", path, "-f", "s16le", "-ac", "1", "-ar", str(sr), "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        return None
    return np.frombuffer(proc.stdout, np.int16).astype(np.float32) / 32768.0


class AudioFile:
    """A file's samples (mono, 16 kHz), served a span at a time, so that long-form transcription
    holds seconds of audio instead of the whole file (16 kHz float32 is 230 MB an hour).

    Opening decodes the whole file once: it counts the samples, checks them as load_audio does
    (the same errors, raised here), and keeps the loudest sample of each mel hop for `frame_peak`.
    One difference: a decodable file with no samples (a WAV header and no frames) is empty audio,
    which transcribes to no text like an empty array does, while load_audio refuses it, since eval
    and prepare have nothing to score or train on there. A zero-byte file is no audio file at all
    and stays an error.
    `read(a, b)` decodes again from the start, through the same blocks and resampler stream as
    load_audio, so it returns exactly load_audio(path)[a:b]. Only the samples from shortly before
    the last read onwards are kept: reads that move forward, as transcription's do, cost one
    decode of the file in all; a read further back starts the decode over.
    """

    KEEP_BEHIND = SAMPLE_RATE  # samples kept before the last read's start, for reads that step back a little

    def __init__(self, path, sr: int = SAMPLE_RATE):
        self.path, self.sr = os.fspath(path), sr
        _check_path(self.path)
        self._in_memory = None
        try:
            self._scan()
        except _Undecodable:
            audio = _load_with_ffmpeg(self.path, sr)
            if audio is None:
                raise
            self._in_memory = audio  # formats only ffmpeg reads are held whole
            self._scan()
        self._blocks_left, self._buffer, self._buffer_start = None, np.zeros(0, np.float32), 0

    def _blocks(self):
        if self._in_memory is not None:
            yield self._in_memory
            return
        with _open_soundfile(self.path) as f:
            yield from _decoded_blocks(f, self.sr, self.path)

    def _scan(self):
        self.n, peaks, rest = 0, [], np.zeros(0, np.float32)
        for block in self._blocks():
            self.n += len(block)
            hops = np.concatenate([rest, block])
            whole = len(hops) // HOP_LENGTH * HOP_LENGTH
            peaks.append(np.abs(hops[:whole]).reshape(-1, HOP_LENGTH).max(axis=1, initial=0.0))
            rest = hops[whole:]
        peaks.append(np.abs(rest).max(keepdims=True) if len(rest) else np.zeros(0, np.float32))
        self._hop_peaks = np.concatenate(peaks)

    def __len__(self) -> int:
        return self.n

    def frame_peak(self, start_frame: int, stop_frame: int) -> float:
        """The loudest |sample| in mel frames start..stop-1 (samples start*160 .. stop*160), 0 if none."""
        peaks = self._hop_peaks[max(0, start_frame) : max(0, stop_frame)]
        return float(peaks.max()) if len(peaks) else 0.0

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Samples start..stop-1 (clipped to the file) as a float32 tensor."""
        start, stop = max(0, start), min(stop, self.n)
        if stop <= start:
            return torch.zeros(0)
        if self._blocks_left is None or start < self._buffer_start:
            if self._blocks_left is not None:
                self._blocks_left.close()
            self._blocks_left, self._buffer, self._buffer_start = self._blocks(), np.zeros(0, np.float32), 0
        while self._buffer_start + len(self._buffer) < stop:
            block = next(self._blocks_left, None)
            if block is None:
                raise AudioError(f"{self.path}: the file changed while it was being transcribed")
            drop = min(len(self._buffer), max(0, start - self.KEEP_BEHIND - self._buffer_start))
            self._buffer = np.concatenate([self._buffer[drop:], block])
            self._buffer_start += drop
        i = start - self._buffer_start
        return torch.from_numpy(self._buffer[i : i + stop - start].copy())


class ArrayAudio:
    """Samples already in memory (transcribe's numpy or tensor input) behind AudioFile's interface."""

    def __init__(self, audio, name: str = "audio"):
        audio = audio if torch.is_tensor(audio) else torch.from_numpy(np.asarray(audio, dtype=np.float32))
        self.audio, self.path = audio.float(), name
        for a in range(0, len(self.audio), 60 * SAMPLE_RATE):
            check_finite(self.audio[a : a + 60 * SAMPLE_RATE].cpu().numpy(), name, a)

    def __len__(self) -> int:
        return len(self.audio)

    def frame_peak(self, start_frame: int, stop_frame: int) -> float:
        samples = self.audio[max(0, start_frame) * HOP_LENGTH : max(0, stop_frame) * HOP_LENGTH]
        return float(samples.abs().max()) if len(samples) else 0.0

    def read(self, start: int, stop: int) -> torch.Tensor:
        return self.audio[max(0, start) : max(0, stop)]


def audio_source(audio):
    """Long-form input as an AudioFile or ArrayAudio: a path is streamed from its file, samples in
    memory are used as they are."""
    if isinstance(audio, (AudioFile, ArrayAudio)) or hasattr(audio, "frame_peak"):  # or vad.SpeechAudio
        return audio
    if isinstance(audio, (str, os.PathLike)):
        return AudioFile(audio)
    return ArrayAudio(audio)


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
    samples that frames a..b-1 see, mirroring torch.stft's reflect padding at the start. `audio` is
    samples in memory, a path or an AudioFile; a file's samples are read a span at a time.
    """

    def __init__(self, audio, n_mels: int = 80, device=None, chunk_frames: int = N_FRAMES):
        self.source = audio_source(audio)
        self.n_audio = len(self.source)
        self.n_mels, self.device = n_mels, device
        self.n_padded = self.n_audio + N_SAMPLES  # the signal the reference transforms
        self.n_frames = self.n_padded // HOP_LENGTH  # after dropping stft's last frame
        self.n_content = self.n_frames - N_FRAMES
        self.peak = max(
            _log10_mel(self._frames_signal(a, min(a + chunk_frames, self.n_frames)), n_mels, center=False).max()
            for a in range(0, self.n_frames, chunk_frames)
        )

    def _frames_signal(self, start: int, stop: int) -> torch.Tensor:
        """The samples that STFT frames start..stop-1 of the centred, reflect-padded signal cover:
        N_FFT // 2 before the first frame's hop (reflected where that is before the audio: sample
        -i is sample i) to N_FFT // 2 after the last one's (zeros past the audio; the reference's
        reflection at the end of its padded signal falls in the padding's zeros too). Slices, not
        a gathered index: one int64 index per sample was the largest allocation of a window."""
        first, end = start * HOP_LENGTH - N_FFT // 2, (stop - 1) * HOP_LENGTH + N_FFT - N_FFT // 2
        needed = max(end, 1 - first)  # the reflection reads samples 1..-first
        span = self.source.read(max(first, 0), min(needed, self.n_audio)) if first < self.n_audio else torch.zeros(0)
        span = F.pad(span, (0, needed - max(first, 0) - len(span)))
        samples = torch.cat([span[1 : 1 - first].flip(0), span[: end]]) if first < 0 else span[: end - first]
        return samples.to(self.device) if self.device is not None else samples

    def held_levels(self, log_spec: torch.Tensor) -> torch.Tensor:
        """Each frame's level as the loudest frame within AGC_HOLD of it (a peak hold): it stays put
        through a word and the short pauses inside a sentence."""
        return F.max_pool1d(log_spec.amax(dim=0)[None, None], 2 * AGC_HOLD + 1, stride=1, padding=AGC_HOLD)[0, 0]

    def quiet_stretches(self, start: int, stop: int) -> list:
        """[(a, b)] runs of at least QUIET_MIN of frames start..stop whose held level lies between
        AGC_TOLERANCE and AGC_GATE below the file's loudest frame: where a quieter speaker than the
        loudest may be (or noise, or a pause in a sentence; what is speech is for a VAD to say)."""
        log_spec = _log10_mel(self._frames_signal(start, stop), self.n_mels, center=False)
        if log_spec.numel() == 0:
            return []
        held, peak = self.held_levels(log_spec), self.peak.to(log_spec.device)
        quiet = ((held > peak - AGC_GATE) & (held < peak - AGC_TOLERANCE)).tolist() + [False]
        runs, run = [], None
        for i, q in enumerate(quiet):
            if q and run is None:
                run = i
            elif not q and run is not None:
                if i - run >= QUIET_MIN:
                    runs.append((start + run, start + i))
                run = None
        return runs

    def frames(self, start: int, stop: int, level: str = "file", lift=()) -> torch.Tensor:
        """(n_mels, stop - start) normalised log-mel frames. `level` sets the 80 dB clamp's top:
        "file", the file's loudest frame, as the reference does; "window", the loudest of these
        frames, as each 30 s training segment was clamped to its own; "gain", these frames raised
        by a gain that brings their loudest to the file's loudest, then clamped below it; "agc", a
        gain that follows the level inside the window: each frame raised until the loudest frame
        within AGC_HOLD of it is no more than AGC_TOLERANCE below the file's loudest; frames more
        than AGC_GATE below that (the digital silence between clips) are left alone. Speakers at
        different levels in one window are brought near the file's level, while speech already
        near it keeps its own dynamics (lifting every syllable to the peak garbles a sentence).
        The gains are offsets of the log-mel: a gain on the samples scales every frequency's
        power alike. `lift`, [(a, b)] frames (a quieter speaker's speech), raises each span by one
        gain that brings its loudest frame to LIFT_TO below the file's loudest, before the clamp."""
        log_spec = _log10_mel(self._frames_signal(start, stop), self.n_mels, center=False)
        peak = self.peak.to(log_spec.device)
        for a, b in lift:
            a, b = max(a - start, 0), min(b - start, log_spec.shape[-1])
            if b > a:
                span = log_spec[:, a:b]
                gain = (peak - LIFT_TO - span.max()).clamp(min=0)
                log_spec[:, a:b] = torch.where(span > float(np.log10(LOG_MEL_FLOOR)), span + gain, span)
        if level == "file" or log_spec.numel() == 0:
            return _normalise(log_spec, peak)
        own = log_spec.max()
        if level == "window":
            return _normalise(log_spec, own)
        floor = float(np.log10(LOG_MEL_FLOOR))
        if level == "gain":  # in the log domain a gain is an offset; digital silence stays at the floor
            return _normalise(torch.where(log_spec > floor, log_spec + (peak - own), floor), peak)
        if level == "agc":
            held = self.held_levels(log_spec)
            lift = torch.where(held > peak - AGC_GATE, (peak - AGC_TOLERANCE - held).clamp(min=0), torch.zeros_like(held))
            return _normalise(torch.where(log_spec > floor, log_spec + lift, floor), peak)
        raise ValueError(f"level: expected one of {', '.join(LEVELS)}, got {level!r}")


def spec_augment(mel: torch.Tensor, freq_masks: int = 2, freq_mask_width: int = 27, time_masks: int = 2,
                 time_mask_width: int = 40) -> torch.Tensor:
    """SpecAugment's frequency and time masks on a batch [B, n_mels, frames], for training: up to
    freq_masks bands of at most freq_mask_width mel bins and time_masks spans of at most
    time_mask_width frames per row, filled with the row's mean. Draws from torch's global RNG, so a
    resumed run (which restores it) masks the same way."""
    B, C, T = mel.shape
    fill = mel.mean(dim=(1, 2), keepdim=True).expand_as(mel)
    for n, width, size, dim in ((freq_masks, freq_mask_width, C, 1), (time_masks, time_mask_width, T, 2)):
        if n == 0 or width == 0:
            continue
        widths = torch.randint(0, width + 1, (B, n, 1), device=mel.device)
        starts = (torch.rand(B, n, 1, device=mel.device) * (size - widths + 1)).long()
        index = torch.arange(size, device=mel.device)
        band = ((index >= starts) & (index < starts + widths)).any(dim=1)  # (B, size)
        band = band[:, :, None] if dim == 1 else band[:, None, :]
        mel = torch.where(band, fill, mel)
    return mel


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
