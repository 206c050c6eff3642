"""
Voice activity detection for long-form transcription (`transcribe(vad=True)`, `--vad`): silero-vad
finds the speech, and Whisper hears only that, joined (SpeechAudio), with its times mapped back to
the original audio's.

The model is the TorchScript file inside the PyPI package silero-vad (>= 6.2.3: its own
dependencies are torch and packaging only). The package itself is never imported: its __init__
sets torch's thread count to 1 for the whole process, and its audio helpers want torchaudio. The
file is found through the package's import spec, which runs none of its code.

Speech is found as faster-whisper's vad_filter finds it, with its defaults for Whisper: a 32 ms
step is speech from a probability of 0.5 until it drops below 0.35 for 2 s; each stretch of
speech is then padded by 0.4 s, or by half the gap where two are closer than 0.8 s.
"""
import bisect
import importlib.util
import os

import torch

from audio import FRAMES_PER_SECOND, HOP_LENGTH, SAMPLE_RATE, audio_source

STEP = 512  # samples per probability: the 16 kHz model's input size
THRESHOLD = 0.5  # a step this likely is speech
NEG_THRESHOLD = THRESHOLD - 0.15  # and speech goes on until a step is less likely than this
MIN_SILENCE = 2.0  # seconds below NEG_THRESHOLD that end speech: Whisper wants sentences, not words
SPEECH_PAD = 0.4  # seconds of context kept either side of speech
INSTALL = "pip install --no-deps silero-vad"  # --no-deps: older releases pull torchaudio and onnxruntime


def model_path() -> str:
    """The packaged TorchScript model's path, or a one-line ValueError saying how to install it."""
    spec = importlib.util.find_spec("silero_vad")  # finds the package without running its __init__
    path = os.path.join(spec.submodule_search_locations[0], "data", "silero_vad.jit") if spec else None
    if path is None or not os.path.isfile(path):
        raise ValueError(f"--vad needs silero-vad's model (silero_vad/data/silero_vad.jit): {INSTALL}")
    return path


_model = None
_stream = None


def load_model():
    global _model
    if _model is None:
        _model = torch.jit.load(model_path(), map_location="cpu").eval()
    return _model


class _Stream:
    """The 16 kHz model taken apart where its state lives. Its front end (an STFT and
    convolutions) sees each step with the `context` samples before it and nothing else; only an
    LSTM cell carries state from step to step, and the head after it sees one step's output. So a
    run of steps goes through the front end as one batch, the cell's weights run as an nn.LSTM over
    the run as one sequence, and the head takes the batch again: what stepping the packaged model
    computes, to float rounding, in a few calls instead of a TorchScript call a step
    (docs/bench.md, "AMD EPYC, 2026-12-03")."""

    def __init__(self, model):
        self.net = model._model  # AttributeError where a release is built otherwise: then it is stepped
        self.context = int(self.net.context_size_samples)
        cell = self.net.decoder.rnn.state_dict()
        size = cell["weight_hh"].shape[1]
        self.lstm = torch.nn.LSTM(size, size)
        self.lstm.load_state_dict({f"{name}_l0": cell[name] for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})

    def probs(self, samples: torch.Tensor, before: torch.Tensor, state):
        """Probabilities of `samples` (whole steps) after `before` (context samples) and the LSTM's
        state (None at the start); returns them, the next context and the next state."""
        steps = torch.cat([before, samples]).unfold(0, STEP + self.context, STEP)
        features = self.net.encoder(self.net.stft(steps)).squeeze(-1)  # (steps, channels)
        hidden, state = self.lstm(features[:, None], state)
        return self.net.decoder.decoder(hidden[:, 0, :, None]).squeeze(1).mean(1), samples[-self.context:], state


def _stream_of(model):
    global _stream
    if _stream is None:
        try:
            _stream = _Stream(model)
        except (AttributeError, KeyError, RuntimeError):
            _stream = False
    return _stream


@torch.inference_mode()
def speech_probs(audio) -> torch.Tensor:
    """Silero's speech probability for every STEP samples of an audio_source() (the last step zero-
    padded), read a minute at a time. The model carries its state from step to step: _Stream
    runs a minute's steps at once, or, where the packaged model isn't built as it expects, the
    model is stepped."""
    model = load_model()
    stream = _stream_of(model)
    model.reset_states()
    probs, block = [], 60 * SAMPLE_RATE // STEP * STEP
    before, state = torch.zeros(stream.context if stream else 0), None
    for a in range(0, len(audio), block):
        samples = audio.read(a, min(len(audio), a + block)).float().cpu()
        samples = torch.nn.functional.pad(samples, (0, -len(samples) % STEP))
        if stream:
            p, before, state = stream.probs(samples, before, state)
            probs += p.tolist()
        else:
            probs += [float(model(samples[i:i + STEP][None], SAMPLE_RATE)) for i in range(0, len(samples), STEP)]
    model.reset_states()
    return torch.tensor(probs)


def holds_speech(samples: torch.Tensor, threshold: float = THRESHOLD) -> bool:
    """Whether any STEP of 16 kHz samples is speech to silero-vad."""
    return bool(len(samples)) and bool((speech_probs(audio_source(samples)) >= threshold).any())


def speech_spans(probs, n_samples: int, threshold: float = THRESHOLD, min_silence: float = MIN_SILENCE,
                 pad: float = SPEECH_PAD) -> list:
    """[(start, stop)] samples of speech from per-step probabilities (hysteresis between threshold
    and threshold - 0.15; speech ends after min_silence seconds below it), each padded by `pad`
    seconds, or by half the gap to a neighbour closer than 2 * pad."""
    spans, start, quiet_since = [], None, None
    min_quiet, low = min_silence * SAMPLE_RATE, threshold - 0.15
    for i, p in enumerate(probs.tolist() if torch.is_tensor(probs) else probs):
        at = i * STEP
        if p >= threshold:
            quiet_since = None
            if start is None:
                start = at
        elif start is not None and p < low:
            quiet_since = at if quiet_since is None else quiet_since
            if at - quiet_since >= min_quiet:
                spans.append([start, quiet_since])
                start, quiet_since = None, None
    if start is not None:
        spans.append([start, n_samples])
    pad_samples = round(pad * SAMPLE_RATE)
    for i, span in enumerate(spans):
        before = span[0] - spans[i - 1][1] if i else None
        after = spans[i + 1][0] - span[1] if i + 1 < len(spans) else None
        span[0] = max(0, span[0] - (pad_samples if before is None or before >= 2 * pad_samples else before // 2))
        span[1] = min(n_samples, span[1] + (pad_samples if after is None or after >= 2 * pad_samples else after // 2))
    return [(a, b) for a, b in spans if b > a]


class SpeechAudio:
    """The speech spans of an audio_source(), joined, behind its interface (len, read, frame_peak,
    path), with the times of the joined audio mapped back to the original's (`original_time`)."""

    def __init__(self, source, spans: list):
        self.source, self.spans, self.path = source, list(spans), getattr(source, "path", "audio")
        self.starts = [0]  # where each span starts in the joined audio
        for a, b in self.spans:
            self.starts.append(self.starts[-1] + b - a)
        self.n = self.starts.pop()

    def __len__(self) -> int:
        return self.n

    def read(self, start: int, stop: int) -> torch.Tensor:
        start, stop = max(0, start), min(stop, self.n)
        pieces, i = [], max(0, bisect.bisect_right(self.starts, start) - 1)
        while start < stop and i < len(self.spans):
            offset = self.spans[i][0] - self.starts[i]
            end = min(stop, self.starts[i] + self.spans[i][1] - self.spans[i][0])
            pieces.append(self.source.read(start + offset, end + offset))
            start, i = end, i + 1
        return torch.cat(pieces) if pieces else torch.zeros(0)

    def frame_peak(self, start_frame: int, stop_frame: int) -> float:
        samples = self.read(start_frame * HOP_LENGTH, stop_frame * HOP_LENGTH)
        return float(samples.abs().max()) if len(samples) else 0.0

    def bounds(self) -> list:
        """Where one span meets the next, in mel frames of the joined audio: where to cut windows."""
        return [round(s / HOP_LENGTH) for s in self.starts[1:]]

    def seams(self) -> list:
        """Where one span meets the next, in seconds of the joined audio."""
        return [s / SAMPLE_RATE for s in self.starts[1:]]

    def original_time(self, seconds: float, end: bool = False) -> float:
        """A time of the joined audio in the original audio. A time on the seam between two spans
        is the first one's end if `end`, else the second one's start."""
        at = seconds * SAMPLE_RATE
        if not self.spans:
            return seconds
        i = (bisect.bisect_left if end else bisect.bisect_right)(self.starts, at) - 1
        i = min(max(i, 0), len(self.spans) - 1)
        return (self.spans[i][0] + at - self.starts[i]) / SAMPLE_RATE


def speech_only(audio) -> SpeechAudio:
    """An audio_source() reduced to its speech (SpeechAudio)."""
    return SpeechAudio(audio, speech_spans(speech_probs(audio), len(audio)))


def to_original(result: dict, speech: SpeechAudio) -> dict:
    """A transcript of speech-only audio with its segments' and words' times (and seeks) mapped
    back to the original audio, in place. A segment that reaches over a seam by no more than the
    two paddings there is moved off it: Whisper's timestamps often start a sentence where the
    one before ended, which, mapped as they are, would put its start in the earlier span (seconds
    before the sentence, faster-whisper's vad_filter does that) and stretch it over the pause."""
    seams = speech.seams()
    for segment in result["segments"]:
        start, end = segment["start"], segment["end"]
        crossed = seams[bisect.bisect_right(seams, start):bisect.bisect_left(seams, end)]
        if crossed and crossed[0] - start <= 2 * SPEECH_PAD:
            start = crossed[0]
        if crossed and end - crossed[-1] <= 2 * SPEECH_PAD and crossed[-1] > start:
            end = crossed[-1]
        segment["seek"] = round(speech.original_time(segment["seek"] / FRAMES_PER_SECOND) * FRAMES_PER_SECOND)
        segment["start"] = round(speech.original_time(start), 3)
        segment["end"] = round(max(segment["start"], speech.original_time(end, end=True)), 3)
        for word in segment.get("words") or []:
            word["start"] = round(speech.original_time(word["start"]), 3)
            word["end"] = round(max(word["start"], speech.original_time(word["end"], end=True)), 3)
    return result
