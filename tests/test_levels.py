"""Level changes in a long file. openai-whisper clamps every window's log-mel 80 dB below the whole
file's loudest frame; Whisper was trained on 30 s segments clamped to their own. reference=True
keeps the reference's algorithm token for token; the default (transcribe.DEFAULT_LEVEL) is chosen
by bench.py --part l."""
import numpy as np
import pytest

GREEDY = dict(temperature=0.0, beam_size=None, best_of=None)
SR = 16000


@pytest.fixture(scope="module")
def two_levels(spoken):
    """espeak speech at two levels 40 dB apart: a loud sentence, 40 s of digital silence, then the
    other sentence quiet, in a window of its own."""
    return at_levels(spoken, 0.005)


@pytest.fixture(scope="module")
def one_level(spoken):
    """The same file with both sentences loud."""
    return at_levels(spoken, 0.5)


def at_levels(spoken, second_peak: float, pause_s: float = 40) -> np.ndarray:
    loud = spoken[0] * (0.5 / np.abs(spoken[0]).max())
    second = spoken[1] * (second_peak / np.abs(spoken[1]).max())
    pause = np.zeros(round(pause_s * SR), np.float32)
    return np.concatenate([loud, pause, second, np.zeros(SR, np.float32)]).astype(np.float32)


def windows_fed(monkeypatch, model, audio, **options):
    """transcribe()'s result and the (seek, log-mel window) pairs it decoded."""
    import transcribe as T

    fed = []
    decode = getattr(T.decode_with_fallback, "spied", T.decode_with_fallback)  # not a spy set earlier

    def spy(model, mels, **kwargs):
        fed.append(mels[0].float().clone())
        return decode(model, mels, **kwargs)

    spy.spied = decode
    monkeypatch.setattr(T, "decode_with_fallback", spy)
    result = T.transcribe(model, audio, **GREEDY, **options)
    return result, fed


@pytest.mark.parametrize("pause_s", [40, 70], ids=["pause", "a-silent-window"])
def test_reference_mode_equals_openai_whisper_across_a_level_change(ours, reference, spoken, pause_s):
    """With a 70 s pause the second window is digital silence: openai-whisper decodes it (the default
    skips such windows), and so does reference mode."""
    from transcribe import transcribe

    two_levels = at_levels(spoken, 0.005, pause_s)
    result = transcribe(ours, two_levels, reference=True, **GREEDY)
    expected = reference.transcribe(two_levels, language="en", fp16=False, **GREEDY)
    assert len(result["segments"]) == len(expected["segments"]) >= 2
    for a, b in zip(result["segments"], expected["segments"]):
        assert (a["text"], a["tokens"], a["seek"]) == (b["text"], b["tokens"], b["seek"])
        assert a["start"] == pytest.approx(b["start"], abs=1e-3) and a["end"] == pytest.approx(b["end"], abs=1e-3)
    assert result["text"] == expected["text"]
    assert result["segments"][-1]["seek"] >= 3000  # the quiet sentence, decoded in a later window


def test_the_level_options_are_checked(capsys):
    import transcribe as T

    with pytest.raises(ValueError, match="level"):
        T.transcribe(None, np.zeros(SR, np.float32), level="loud")
    with pytest.raises(ValueError, match="reference"):
        T.transcribe(None, np.zeros(SR, np.float32), reference=True, level="gain")
    assert T.main(["missing.wav", "--reference", "--level", "window"]) == 2  # before the file is looked at
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("args, expected", [([], dict(reference=False, level=None)),
                                            (["--reference"], dict(reference=True, level=None)),
                                            (["--level", "gain"], dict(reference=False, level="gain"))])
def test_the_command_line_passes_reference_and_level_on(spoken, tmp_path, monkeypatch, args, expected):
    import soundfile as sf

    import transcribe as T

    given = {}

    def fake(model, audio, **options):
        given.update(options)
        return dict(text="", segments=[], language="en", language_probability=1.0)

    monkeypatch.setattr(T, "transcribe", fake)
    sf.write(tmp_path / "speech.wav", spoken[0], SR)
    assert T.main([str(tmp_path / "speech.wav"), *args]) == 0
    assert {k: given[k] for k in expected} == expected


def test_a_gain_per_window_lifts_the_quiet_window_to_the_files_level(ours, two_levels, monkeypatch):
    """level="gain" raises each window until its loudest frame is the file's loudest. The quiet
    sentence is then read closer to its text than in reference mode, whose clamp leaves it only the
    top 40 dB of its range."""
    from conftest import SPOKEN

    from audio import LongFormMel
    from metrics import word_error_rate
    from transcribe import transcribe

    quiet = transcribe(ours, two_levels, reference=True, **GREEDY)["segments"]
    gained, fed = windows_fed(monkeypatch, ours, two_levels, level="gain")
    assert gained["segments"][-1]["seek"] == quiet[-1]["seek"] >= 3000
    errors = [word_error_rate([SPOKEN[1]], [s[-1]["text"]]) for s in (gained["segments"], quiet)]
    print(f"quiet sentence WER: gain {errors[0]:.2f}, reference {errors[1]:.2f}")
    assert errors[0] < errors[1]
    # the quiet window fed to the model: its loudest frame at the file's loudest; the digital silence
    # after the sentence at the clamp, 8 below, as it would be after a gain applied to the samples
    mel = LongFormMel(two_levels)
    size = mel.n_content - quiet[-1]["seek"]
    peak = (float(mel.peak) + 4) / 4
    window = fed[-1][:, :size]
    assert float(window.max()) == pytest.approx(peak, abs=1e-5)
    assert float(window.min()) == pytest.approx(peak - 2, abs=1e-5)


def test_a_clamp_per_window_normalises_a_quiet_window_as_training_did(ours, two_levels, monkeypatch):
    """level="window": the quiet window's frames are exactly the log-mel of its audio alone, as a 30 s
    training segment is normalised; in reference mode its floor sits higher, under the loud
    sentence's clamp."""
    import torch

    from audio import log_mel_spectrogram, pad_or_trim

    own, fed_own = windows_fed(monkeypatch, ours, two_levels, level="window")
    ref, fed_ref = windows_fed(monkeypatch, ours, two_levels, reference=True)
    seek = own["segments"][-1]["seek"]
    assert seek == ref["segments"][-1]["seek"] > 0
    size = len(two_levels) // 160 - seek
    alone = log_mel_spectrogram(pad_or_trim(torch.from_numpy(two_levels[seek * 160:])))[:, :size]
    assert (fed_own[-1][:, :size] - alone).abs().max() < 1e-4
    assert float(fed_ref[-1][:, :size].min()) > float(alone.min()) + 0.5


def test_agc_brings_a_quiet_speaker_inside_a_window_to_the_files_level(ours, spoken, monkeypatch):
    """level="agc": a loud and a 40 dB quieter sentence 1 s apart in one window. The quiet one's
    frames are lifted until its loudest is AGC_TOLERANCE below the file's loudest; the silence
    between them stays at the clamp; the quiet sentence is read closer to its text than in
    reference mode, where it sits 40 dB below the loud one."""
    from conftest import SPOKEN

    from audio import AGC_TOLERANCE, LongFormMel
    from metrics import word_error_rate

    loud = spoken[0] * (0.5 / np.abs(spoken[0]).max())
    quiet = spoken[1] * (0.005 / np.abs(spoken[1]).max())
    audio = np.concatenate([loud, np.zeros(SR, np.float32), quiet, np.zeros(SR, np.float32)]).astype(np.float32)
    agc, fed = windows_fed(monkeypatch, ours, audio, level="agc")
    ref, fed_ref = windows_fed(monkeypatch, ours, audio, reference=True)
    assert len(fed) == len(fed_ref) == 1
    peak = (float(LongFormMel(audio).peak) + 4) / 4
    loud_end, quiet_start = len(loud) // 160, (len(loud) + SR) // 160
    quiet_end = quiet_start + len(quiet) // 160
    assert float(fed[0][:, :loud_end].max()) == pytest.approx(peak, abs=1e-5)
    assert float(fed[0][:, quiet_start:quiet_end].max()) == pytest.approx(peak - AGC_TOLERANCE / 4, abs=1e-5)
    assert float(fed_ref[0][:, quiet_start:quiet_end].max()) < peak - 0.75  # 40 dB is 1.0 here
    assert float(fed[0][:, loud_end + 40 : quiet_start - 40].max()) == pytest.approx(peak - 2, abs=1e-5)

    def quiet_errors(result):  # the words after the loud sentence's against the quiet one's text
        words = result["text"].split()
        n = len(SPOKEN[0].split())
        return word_error_rate([SPOKEN[1]], [" ".join(words[n:])])

    print(f"agc: {agc['text']!r}\nreference: {ref['text']!r}")
    assert quiet_errors(agc) < quiet_errors(ref)


def test_the_default_hears_a_window_again_with_a_passed_over_quiet_speaker_lifted(ours, spoken, monkeypatch):
    """A loud sentence and a 40 dB quieter one 1 s apart in one window. Reference mode's text
    passes over the quiet one; the default decodes the window as the reference does, then again
    with the quiet sentence (silero-vad's speech in a quiet stretch) lifted by one gain until its
    loudest frame is LIFT_TO below the file's loudest, everything else as it was, and keeps the
    second text, which says the quiet sentence."""
    from conftest import SPOKEN

    from audio import LIFT_TO, LongFormMel
    from metrics import word_error_rate

    loud = spoken[0] * (0.5 / np.abs(spoken[0]).max())
    quiet = spoken[1] * (0.005 / np.abs(spoken[1]).max())
    audio = np.concatenate([loud, np.zeros(SR, np.float32), quiet, np.zeros(SR, np.float32)]).astype(np.float32)
    default, fed = windows_fed(monkeypatch, ours, audio)
    ref, fed_ref = windows_fed(monkeypatch, ours, audio, reference=True)
    assert len(fed_ref) == 1 and len(fed) == 2
    assert (fed[0] - fed_ref[0]).abs().max() == 0
    peak = (float(LongFormMel(audio).peak) + 4) / 4
    quiet_start, quiet_end = (len(loud) + SR) // 160, (len(loud) + SR + len(quiet)) // 160
    lifted = (fed[1] != fed[0]).any(dim=0).nonzero()[:, 0]
    assert quiet_start - 20 <= int(lifted.min()) and int(lifted.max()) <= quiet_end + 20  # 0.1 s of padding
    assert float(fed[1][:, quiet_start:quiet_end].max()) == pytest.approx(peak - LIFT_TO / 4, abs=1e-5)

    def quiet_errors(result):  # the words after the loud sentence's against the quiet one's text
        return word_error_rate([SPOKEN[1]], [" ".join(result["text"].split()[len(SPOKEN[0].split()):])])

    print(f"default: {default['text']!r}\nreference: {ref['text']!r}")
    assert quiet_errors(ref) == 1.0  # passed over
    assert quiet_errors(default) < quiet_errors(ref)


def test_a_segment_stretched_thin_over_quiet_speech_is_where_the_next_window_starts():
    """bench.py --part l's "±30 dB, noise", seed 3: a window from 82 s says the end of a loud
    sentence, then one segment of 85-105 s with the next loud sentence's 11 words over five quiet
    ones; its lifted decoding stops after the first sentence. The next window starts at 85 s, where
    the quiet speech leads. Not where the segment starts the window (no progress), is not over
    quiet speech, or says a word a second or more."""
    from tokenizer import get_tokenizer
    from transcribe import thin_segment_start

    tokenizer = get_tokenizer(False)

    def pieces(*said):
        return [(start, end, tokenizer.encode(" " + text)) for start, end, text in said]

    tail = (82.0, 85.0, "and thick peppered flower fat and sauce.")
    stretched = (85.0, 105.0, "My neighbour fixes old bicycles and sells them at the market.")
    quiet = [(8652, 8973), (8991, 9354)]
    assert thin_segment_start(pieces(tail, stretched), quiet, 8200, tokenizer) == 8500
    assert thin_segment_start(pieces(tail, stretched), [(10600, 10700)], 8200, tokenizer) is None
    assert thin_segment_start(pieces((85.0, 105.0, stretched[2])), quiet, 8500, tokenizer) is None
    dense = (85.0, 97.0, "The band played until midnight and nobody wanted to go home, most of the students finished")
    assert thin_segment_start(pieces(tail, dense), quiet, 8200, tokenizer) is None


def test_a_loop_says_nothing_more_when_the_lifted_window_is_weighed():
    """A window sampled at 0.2 said one sentence three times over the quiet speech around it (seed
    3 again); its words are counted once each, so the lifted window's text, decoded at 0.0, is not
    passed over for saying fewer words."""
    from decoding import DecodeResult
    from tokenizer import get_tokenizer
    from transcribe import spoken_words

    tokenizer = get_tokenizer(False)

    def said(*texts, no_speech_prob=0.01, avg_logprob=-0.3):
        tokens = []
        for i, text in enumerate(texts):
            tokens += [tokenizer.timestamp_begin + 100 * i] + tokenizer.encode(" " + text)
            tokens += [tokenizer.timestamp_begin + 100 * i + 90]
        return DecodeResult(tokens=tokens, text="", avg_logprob=avg_logprob, no_speech_prob=no_speech_prob)

    loop = said("He could wait no longer.", "He could wait no longer.", "He could wait no longer.", "And so my fellow Americans.")
    assert spoken_words(loop, tokenizer, 0.6, -1.0) == 5 + 5  # not 3 * 5 + 5
    assert spoken_words(said("He could wait no longer.", "Two weeks on a hunt."), tokenizer, 0.6, -1.0) == 5 + 5
    assert spoken_words(said("Thank you.", no_speech_prob=0.9, avg_logprob=-1.5), tokenizer, 0.6, -1.0) == 0


def test_a_quiet_stretch_said_densely_is_not_asked_about():
    """quiet_speech skips silero-vad on a quiet stretch that the window's segments cover without a
    gap, each saying 2 words a second or more: no speech in it could be passed over (the speed of
    bench.py --part a's file, quiet stretches in every window, rests on it)."""
    from tokenizer import get_tokenizer
    from transcribe import said_densely

    tokenizer = get_tokenizer(False)

    def pieces(*said):
        return [(start, end, tokenizer.encode(" " + text)) for start, end, text in said]

    two = pieces((0.0, 3.0, "The quick brown fox jumps over the lazy dog."), (3.0, 5.0, "Please call Stella now."))
    assert said_densely(two, 1.0, 4.5, tokenizer)
    assert not said_densely(two, 1.0, 6.0, tokenizer)  # 5-6 s: no segment
    assert said_densely(two, 7.0, 6.0, tokenizer)  # past where the next window starts
    gap = pieces((0.0, 3.0, "The quick brown fox jumps over the lazy dog."), (3.5, 5.0, "Please call Stella now."))
    assert not said_densely(gap, 1.0, 4.5, tokenizer)
    thin = pieces((0.0, 3.0, "The quick brown fox jumps over the lazy dog."), (3.0, 8.0, "Please call Stella."))
    assert not said_densely(thin, 1.0, 4.5, tokenizer)  # 3 words in 5 s
