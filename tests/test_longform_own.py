"""Long-form transcription of models trained here: a window of 2 * n_audio_ctx frames (not 30 s),
and a checkpoint that says whether the model learned timestamps. Tiny random models, decode
results faked where the test is about what transcribe() does with them."""
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import ROOT

N_AUDIO_CTX = 150  # a 3 s window: 300 mel frames, timestamps <|0.00|> .. <|3.00|>
WINDOW = 2 * N_AUDIO_CTX


def tiny_model(n_vocab=51864):
    from model import ModelDimensions, Whisper

    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=N_AUDIO_CTX, n_audio_state=64, n_audio_head=1, n_audio_layer=1,
                           n_vocab=n_vocab, n_text_ctx=64, n_text_state=64, n_text_head=1, n_text_layer=1)
    return Whisper(dims).init_weights().eval()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{name: path}: the tiny model saved as trained with timestamps, as trained without, and as a
    training checkpoint of before the 'timestamps' key (it has the run's config)."""
    from pretrained import save_checkpoint

    folder = tmp_path_factory.mktemp("own")
    model = tiny_model()
    paths = {name: folder / f"{name}.pt" for name in ("with", "without", "old_training")}
    save_checkpoint(model, str(paths["with"]), config={"n_audio_ctx": N_AUDIO_CTX}, timestamps=True)
    save_checkpoint(model, str(paths["without"]), timestamps=False)
    save_checkpoint(model, str(paths["old_training"]), config={"n_audio_ctx": N_AUDIO_CTX}, iter_num=10)
    return paths


@pytest.fixture(scope="module")
def with_timestamps(checkpoints):
    from pretrained import from_pretrained

    return from_pretrained(checkpoints["with"])


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * 16000))).astype(np.float32)


def fake_results(monkeypatch, tokens_for_call):
    """Replace decode_with_fallback: call i returns tokens_for_call(i) for each window; the calls'
    (mels shape, options) are recorded in the returned list."""
    import transcribe as T
    from decoding import DecodeResult

    calls = []

    def fake(model, mels, **options):
        calls.append((tuple(mels.shape), options))
        return [DecodeResult(tokens=tokens_for_call(len(calls) - 1), text="x", avg_logprob=-0.1, no_speech_prob=0.0)
                for _ in mels]

    monkeypatch.setattr(T, "decode_with_fallback", fake)
    return calls


def test_the_checkpoint_says_whether_the_model_has_timestamps(checkpoints, tmp_path):
    from pretrained import CheckpointError, from_pretrained, save_checkpoint

    assert from_pretrained(checkpoints["with"]).timestamps is True
    assert from_pretrained(checkpoints["without"]).timestamps is False
    assert from_pretrained(checkpoints["old_training"]).timestamps is False  # trained on <|notimestamps|> only
    save_checkpoint(tiny_model(), str(tmp_path / "plain.pt"))  # openai format, no key: an official model's kind
    assert from_pretrained(tmp_path / "plain.pt").timestamps is True
    # a model without timestamps stays without when saved again, even with no key given
    save_checkpoint(from_pretrained(checkpoints["without"]), str(tmp_path / "again.pt"))
    assert from_pretrained(tmp_path / "again.pt").timestamps is False
    save_checkpoint(tiny_model(), str(tmp_path / "bad.pt"), timestamps="yes")
    with pytest.raises(CheckpointError, match="bad.pt: 'timestamps' must be true or false"):
        from_pretrained(tmp_path / "bad.pt")


def test_timestamp_rules_use_the_models_window():
    """A timestamp is 0.02 s whatever the window: the first may be at most <|1.00|> (50 steps, as for
    30 s windows), and none may pass the window's end, <|3.00|> here."""
    from decoding import _LogitRules
    from tokenizer import get_tokenizer

    tokenizer = get_tokenizer(False)
    ts, start = tokenizer.timestamp_begin, list(tokenizer.sot_sequence)
    rules = _LogitRules(tokenizer, len(start), "-1", True, True, 1.0, n_audio_ctx=N_AUDIO_CTX)

    def allowed(tokens):
        logits = torch.zeros(1, 51864)
        rules.apply(logits, torch.tensor([tokens]))
        return torch.isfinite(logits[0]).nonzero()[:, 0].tolist()

    assert allowed(start) == list(range(ts, ts + 51))
    closing = allowed(start + [ts + 10, 100])  # a segment's end: after its start, at most the window's end
    assert closing == list(range(ts + 11, ts + N_AUDIO_CTX + 1))


def test_sequential_path_seeks_by_the_models_window(with_timestamps, monkeypatch):
    """10 s of audio, 3 s windows. The first window's text is one complete segment to <|1.00|> and
    text it did not finish: the next window starts at 1 s. Each later window ends in a lone
    <|3.00|>: it is done, and the next starts a whole window on. Times come from 0.02 s steps."""
    import transcribe as T
    from tokenizer import get_tokenizer

    ts = get_tokenizer(False).timestamp_begin
    calls = fake_results(monkeypatch, lambda i: [ts, 100, ts + 50, ts + 50, 200] if i == 0 else [ts, 300, ts + 150])
    result = T.transcribe(with_timestamps, noise(10), initial_prompt="hello")
    assert [shape for shape, _ in calls] == [(1, 80, WINDOW)] * 4
    assert [(s["seek"], s["start"], s["end"]) for s in result["segments"] if s["text"]] == [
        (0, 0.0, 1.0), (100, 1.0, 4.0), (400, 4.0, 7.0), (700, 7.0, 10.0)]
    # conditioned on the previous text: the prompt, then each window's segments
    prompt = get_tokenizer(False).encode(" hello")
    assert [options["prompt"] for _, options in calls[:3]] == [
        prompt, prompt + [ts, 100, ts + 50], prompt + [ts, 100, ts + 50, ts, 300, ts + 150]]


def test_batched_path_cuts_windows_of_the_models_length(with_timestamps, monkeypatch):
    import transcribe as T
    from tokenizer import get_tokenizer

    ts = get_tokenizer(False).timestamp_begin
    calls = fake_results(monkeypatch, lambda i: [ts, 300, ts + 150])  # every window: text to its very end
    audio = noise(10)
    cuts = T.silence_cuts(torch.from_numpy(audio), len(audio) // 160, WINDOW)
    result = T.transcribe(with_timestamps, audio, batch_size=2, initial_prompt="hello")
    assert all(shape[1:] == (80, WINDOW) for shape, _ in calls) and sum(shape[0] for shape, _ in calls) == len(cuts)
    assert all(WINDOW // 2 <= e - s <= WINDOW for s, e in cuts[:-1]) and cuts[-1][1] == 1000
    # each segment spans its window, which is shorter than the 3 s its timestamps say: cut at its end
    assert [(s["start"], s["end"]) for s in result["segments"]] == [(s / 100, e / 100) for s, e in cuts]
    prompt = get_tokenizer(False).encode(" hello")
    assert all(options["prompt"] == prompt for _, options in calls)  # every window is a first window


@pytest.mark.parametrize("checkpoint, batch_size", [("with", None), ("with", 2), ("without", None)])
def test_word_timestamps_for_a_short_window(checkpoints, monkeypatch, checkpoint, batch_size):
    """Word times align each window's text to its audio (the model's own attention, untrained here):
    every word lies inside its segment's window, in order."""
    import transcribe as T
    from pretrained import from_pretrained
    from tokenizer import get_tokenizer

    ts = get_tokenizer(False).timestamp_begin
    text = get_tokenizer(False).encode(" one two three four")
    fake_results(monkeypatch, lambda i: [ts, *text, ts + 150] if checkpoint == "with" else text)
    result = T.transcribe(from_pretrained(checkpoints[checkpoint]), noise(7), word_timestamps=True, batch_size=batch_size)
    assert len(result["segments"]) >= 3
    for segment in result["segments"]:
        assert [w["word"] for w in segment["words"]] == [" one", " two", " three", " four"]
        window_start = segment["seek"] / 100
        edges = [t for w in segment["words"] for t in (w["start"], w["end"])]
        assert edges == sorted(edges) and window_start <= edges[0] and edges[-1] <= window_start + WINDOW / 100


def test_a_model_without_timestamps_refuses_what_it_cant_honour(checkpoints, tmp_path):
    """Before any audio is read (the file does not exist), one line saying which option and why."""
    from pretrained import from_pretrained
    from transcribe import transcribe

    model = from_pretrained(checkpoints["without"])
    with pytest.raises(ValueError, match="^--initial-prompt: this model was trained without timestamps"):
        transcribe(model, str(tmp_path / "missing.flac"), initial_prompt="Stella")
    multilingual = tiny_model(n_vocab=51865)
    multilingual.timestamps = False
    for options, option in [(dict(language="de"), "--language de"), (dict(task="translate"), "--task translate")]:
        with pytest.raises(ValueError, match=f"^{option}: this model was trained without timestamps"):
            transcribe(multilingual, str(tmp_path / "missing.flac"), **options)


def test_the_command_line_refuses_a_prompt_for_a_model_without_timestamps(checkpoints, tmp_path):
    path = tmp_path / "noise.wav"
    sf.write(path, noise(4), 16000)
    proc = subprocess.run([sys.executable, str(ROOT / "transcribe.py"), str(path), "--model", str(checkpoints["without"]),
                           "--initial-prompt", "Stella"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and proc.stdout == "" and len(errors) == 1 and "--initial-prompt" in errors[0]
