"""Sequential long-form dropped speech (issue 21): on jfk and the four ../shared LibriSpeech clips,
twice over, tiny.en conditioned on the previous text reads a sentence of that text back instead of
the window's audio, ends on a lone timestamp, and so the reference skips the rest of the window:
20 s of speech lost, in openai-whisper as in our reference mode. The default hears such a window
again without the previous text, and keeps what it hears unless the audio says the same again."""
import numpy as np
import pytest

GREEDY = dict(temperature=0.0, beam_size=None, best_of=None)
SR = 16000
# what tiny.en writes for the file's first window (0-26 s): the previous text of the window at 26 s
FIRST_WINDOW = ("And so, my fellow Americans, ask not what your country can do for you, ask what you can do for "
                "your country. He hoped there would be stew for dinner, turnips and carrots and bruised potatoes "
                "and fat mutton pieces to be ladled out and thick peppered flower fat and sauce. Stuff it into "
                "you, his belly counseled him.")


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizer import get_tokenizer

    return get_tokenizer(False)


def test_copied_runs_are_eight_words_of_the_previous_text_inside_one_segment(tokenizer):
    from transcribe import copied_runs

    previous = tokenizer.encode(" " + FIRST_WINDOW) + [tokenizer.timestamp_begin + 50]
    ts = tokenizer.timestamp_begin
    copy = [ts] + tokenizer.encode(" He hoped there would be stew for dinner turnips.") + [ts + 100]
    assert copied_runs(copy, previous, tokenizer) == {("he", "hoped", "there", "would", "be", "stew", "for", "dinner"),
                                                      ("hoped", "there", "would", "be", "stew", "for", "dinner",
                                                       "turnips")}
    # seven words are no copy; nor are eight that a timestamp splits into two segments
    assert not copied_runs([ts] + tokenizer.encode(" He hoped there would be stew for") + [ts + 9], previous, tokenizer)
    split = [ts] + tokenizer.encode(" He hoped there would") + [ts + 9, ts + 9] + tokenizer.encode(" be stew for dinner")
    assert not copied_runs(split, previous, tokenizer)
    assert not copied_runs(copy, [], tokenizer)


def fake_results(monkeypatch, tokenizer, prompted: str, unprompted: str):
    """transcribe.decode_with_fallback answering `prompted` when given a prompt and `unprompted`
    when not, each as one segment over the first 8 s of the window; returns the prompts seen, and
    in `seen.features` the audio features given with them."""
    import transcribe as T
    from decoding import DecodeResult

    seen = PromptsSeen()

    def decode(model, mels, prompt=None, **kwargs):
        seen.append(list(prompt or []))
        seen.features.append(kwargs.get("audio_features"))
        text = prompted if prompt else unprompted
        tokens = [tokenizer.timestamp_begin] + tokenizer.encode(" " + text) + [tokenizer.timestamp_begin + 400]
        return [DecodeResult(tokens=tokens, text=text, avg_logprob=-0.1, no_speech_prob=0.01)]

    monkeypatch.setattr(T, "decode_with_fallback", decode)
    return seen


class PromptsSeen(list):
    """The prompts a fake decoding was given, in order, and in `features` the audio features given
    with each (None where it was left to encode the window itself)."""

    def __init__(self):
        super().__init__()
        self.features = []


def speech_then_silence(speech, seconds: float):
    """speech at half its level, then zeros to `seconds` (the fake segments end at 8 s)."""
    audio = np.zeros(round(seconds * SR), np.float32)
    audio[: len(speech)] = speech[: len(audio)] * 0.5
    return audio


def test_a_window_that_reads_its_prompt_back_is_heard_without_it(ours, monkeypatch, tokenizer, spoken):
    from transcribe import transcribe

    heard = "For a full hour he had paced up and down, waiting."
    seen = fake_results(monkeypatch, tokenizer, prompted="He hoped there would be stew for dinner.", unprompted=heard)
    audio = speech_then_silence(spoken[0], 10.0)
    options = dict(initial_prompt=FIRST_WINDOW, **GREEDY)
    result = transcribe(ours, audio, **options)
    assert [s["text"] for s in result["segments"]] == [" " + heard]
    assert len(seen) == 2 and seen[0] and not seen[1]  # with the previous text, then without
    # the second decoding reads the first's audio features: the window isn't encoded twice
    first, second = seen.features
    assert second is first and first.shape == (1, ours.dims.n_audio_ctx, ours.dims.n_audio_state)
    # the reference keeps the copy, and skips the window
    assert transcribe(ours, audio, reference=True, **options)["text"] == " He hoped there would be stew for dinner."


def test_audio_that_repeats_the_previous_text_keeps_the_first_decoding(ours, monkeypatch, tokenizer, spoken):
    from transcribe import transcribe

    seen = fake_results(monkeypatch, tokenizer, prompted="He hoped there would be stew for dinner, turnips.",
                        unprompted="he hoped there would be stew for dinner turnips")
    audio = speech_then_silence(spoken[0], 10.0)
    result = transcribe(ours, audio, initial_prompt=FIRST_WINDOW, **GREEDY)
    assert result["text"] == " He hoped there would be stew for dinner, turnips."
    assert len(seen) == 2


def test_a_copy_that_runs_to_the_end_of_its_window_is_not_heard_again(ours, monkeypatch, tokenizer, spoken):
    """The copy's segment ends 0.5 s before the audio does: under a pause's length is left after
    its last timestamp, so nothing was skipped and the window isn't decoded a second time (bench
    part (a)'s file, whose clips really repeat, ends on such a window)."""
    from transcribe import transcribe

    seen = fake_results(monkeypatch, tokenizer, prompted="He hoped there would be stew for dinner.",
                        unprompted="For a full hour he had paced up and down, waiting.")
    result = transcribe(ours, speech_then_silence(spoken[0], 8.5), initial_prompt=FIRST_WINDOW, **GREEDY)
    assert len(seen) == 1 and result["text"] == " He hoped there would be stew for dinner."
    # with a pause's length left after it, the same copy is heard again
    seen.clear()
    transcribe(ours, speech_then_silence(spoken[0], 9.0), initial_prompt=FIRST_WINDOW, **GREEDY)
    assert len(seen) == 2


def test_the_real_window_after_the_first_is_heard_not_copied(ours):
    """The real window: 30 s from 26.00 s of the 69 s file, after the first window's text. Reference
    mode (openai-whisper's algorithm) writes the earlier sentence and nothing else; the default
    hears both LibriSpeech sentences and jfk there."""
    from conftest import real_clips

    from audio import load_audio
    from metrics import normalize
    from transcribe import transcribe

    clips = [load_audio(p) for p in real_clips()] * 2
    gap = np.zeros(SR // 2, np.float32)
    audio = np.concatenate([x for clip in clips for x in (clip, gap)])[26 * SR : 56 * SR]
    reference = normalize(transcribe(ours, audio, initial_prompt=FIRST_WINDOW, reference=True, **GREEDY)["text"])
    default = normalize(transcribe(ours, audio, initial_prompt=FIRST_WINDOW, **GREEDY)["text"])
    assert reference.startswith("he hoped there would be stew for dinner") and "full hour" not in reference
    for heard in ("he could wait no longer", "for a full hour he had paced up and down",
                  "what you can do for your country"):
        assert heard in default, (heard, default)
