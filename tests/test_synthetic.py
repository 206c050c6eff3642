"""The synthetic corpus (prepare_synthetic.py): held-out words and voices, determinism, word times,
augmentation. Tiny corpora, espeak-ng only, no network."""
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import prepare_synthetic as synth  # noqa: E402

ARGS = ["--hours", "0.008", "--seed", "3", "--dev-fraction", "0.1", "--test-fraction", "0.15",
        "--test-seen-fraction", "0.1"]


def tree(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    synth.main(["--out", str(root / "w1"), "--workers", "1", *ARGS])
    synth.main(["--out", str(root / "w2"), "--workers", "2", *ARGS])
    return root / "w1", root / "w2"


def transcripts(root: Path, split: str) -> dict:
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for f in sorted((root / split).rglob("*.trans.txt"))
            for line in f.read_text().splitlines()}


def word_lines(root: Path, split: str) -> dict:
    return {e["id"]: e for f in sorted((root / split).rglob("*.words.jsonl"))
            for e in map(json.loads, f.read_text().splitlines())}


def test_byte_identical_whatever_the_workers(corpus):
    one, two = corpus
    files = tree(one)
    assert files == tree(two)
    assert {name.split("/")[0] for name in files} == {"train", "dev", "test", "test_seen", "synthetic.json"}
    info = json.loads(files["synthetic.json"])
    assert all(v == 0 for v in info["checks"].values()), info["checks"]


def test_held_out_words_only_in_test(corpus):
    root = corpus[0]
    lex = synth.lexicon()
    for split in ("train", "dev", "test_seen"):
        words = {w for text in transcripts(root, split).values() for w in synth.words_of(text)}
        assert words and not [w for w in words if lex.held_out(w)], split
    test = transcripts(root, "test")
    assert test
    for text in test.values():
        content = [w for w in synth.words_of(text) if w not in lex.shared]
        assert content and all(lex.held_out(w) for w in content), text
    core = lex.core(3)  # test_seen: only words of the first train sentences, so heard in training
    assert len(core) > 5000
    assert all(w in core or w in lex.shared for text in transcripts(root, "test_seen").values()
               for w in synth.words_of(text))
    train = set(transcripts(root, "train").values())
    for split in ("dev", "test_seen"):
        assert not train & set(transcripts(root, split).values())
    r = random.Random(0)  # by construction, over many draws
    for split in synth.SPLITS:
        assert all(synth.split_of(synth.make_sentence(r, split)) == split for _ in range(300))


def test_vocabulary_is_large_and_a_tenth_held_out():
    lex = synth.lexicon()
    assert len(lex.vocab) > 35000
    share = sum(map(lex.held_out, lex.vocab)) / len(lex.vocab)
    assert 0.08 < share < 0.16, share
    assert not any(lex.held_out(w) for w in ("the", "and", "of", "seven", "january", "under"))
    held = [w for w in lex.vocab[:3000] if w in lex.lemmas_of and w not in lex.shared
            and synth._bucket(f"held-out/{w}", 1000) < synth.HELD_OUT_PER_MILLE][:20]
    assert held
    for lemma in held:  # a held-out lemma holds out its whole family ("mouse" and "mice")
        forms = [form for form, lemmas in lex.lemmas_of.items() if lemma in lemmas]
        assert all(lex.held_out(form) or form in lex.shared for form in forms), (lemma, forms)


def test_test_voices_are_never_heard_in_training(corpus):
    root = corpus[0]
    speakers = {s["id"]: s for s in json.loads((root / "synthetic.json").read_text())["speakers"]}
    voices = {split: {speakers[int(p.name)]["voice"] for p in (root / split).iterdir()} for split in synth.SPLITS}
    assert voices["test"] and voices["test_seen"]
    assert not (voices["test"] | voices["test_seen"]) & (voices["train"] | voices["dev"])
    seen = [s for s in speakers.values() if not s["held_out"]]
    for s in seen:  # the held-out accent and variants are in no training voice at all
        accent, _, variant = s["voice"].partition("+")
        assert accent != synth.HELD_OUT_ACCENT and variant not in synth.HELD_OUT_VARIANTS
    variants = synth.variants()
    assert set(synth.HELD_OUT_VARIANTS) <= set(variants)
    used = {s["voice"].partition("+")[2] for s in speakers.values()}
    assert used == set(variants) | {""}  # every variant, and each accent's plain voice
    assert {s["voice"].partition("+")[0] for s in speakers.values()} == set(synth.ACCENTS)


def test_chapters_are_consecutive_utterances_of_one_speaker(corpus):
    root = corpus[0]
    for trans in root.rglob("*.trans.txt"):
        speaker, chapter = trans.parent.parent.name, trans.parent.name
        ids = [line.split()[0] for line in trans.read_text().splitlines()]
        assert ids == [f"{speaker}-{chapter}-{i:04d}" for i in range(len(ids))]
        assert len(ids) <= synth.CHAPTER_SIZE


def test_word_times_match_transcripts_and_audio(corpus):
    root = corpus[0]
    n = known = 0
    for split in synth.SPLITS:
        times = word_lines(root, split)
        for utt, text in transcripts(root, split).items():
            n += 1
            audio, sr = soundfile.read(next((root / split).rglob(utt + ".flac")))
            assert len(audio) <= synth.MAX_SECONDS * sr and np.abs(audio).max() <= 0.99 + 1 / 32768
            speech, words = times[utt]["speech"], times[utt]["words"]
            assert 0 < speech[0] < speech[1] <= len(audio) / sr
            if words is None:
                continue
            known += 1
            assert [w for w, _, _ in words] == text.split()
            # the speech span runs from the first word's first sound to the last word's end
            assert words[0][1] <= speech[0] < words[0][2] and words[-1][2] == speech[1], (words, speech)
            ends = [0.0] + [end for _, _, end in words[:-1]]
            for (_, start, end), previous_end in zip(words, ends, strict=True):
                assert previous_end <= start + 1e-3 and start < end <= len(audio) / sr, words
    assert n and known >= 0.9 * n


@pytest.mark.parametrize("voice", ["en-us", "en-gb-scotland+f2", "en-029+klatt3"])
def test_word_starts_where_the_sound_starts(voice):
    """With 250 ms of silence between words, every word starts within 0.15 s of the energy rising
    after a silence, also after the speed change and the leading silence render() adds."""
    text = "seventeen otters borrowed purple umbrellas?"  # short: the silence must fit in MAX_SECONDS
    speaker = dict(voice=voice, rate=170, pitch=50, range=50)
    aug = dict(speed=0.9, lead=0.3, tail=0.1, reverb=None, noise=None, level_db=-25, seed=0)
    audio, words, speech = synth.render(text, speaker, random.Random(1), word_gap=25, aug=aug)
    assert abs(speech[0] - 0.3) < 0.05 and speech[1] == words[-1][2]
    assert len(audio) < synth.MAX_SECONDS * synth.SAMPLE_RATE
    assert [w for w, _, _ in words] == text.split()
    hop = synth.SAMPLE_RATE // 200
    energy = 10 * np.log10((audio[: len(audio) // hop * hop].reshape(-1, hop) ** 2).mean(1) + 1e-12)
    loud = energy > energy.max() - 35
    onsets = [i * hop / synth.SAMPLE_RATE for i in range(len(loud)) if loud[i] and not loud[max(0, i - 8):i].any()]
    assert onsets[0] > 0.25  # the leading silence is there
    assert len(onsets) >= len(words) - 2  # a stop closure can split a word; never too few
    for word, start, end in words:
        nearest = min(onsets, key=lambda t: abs(t - start))
        assert abs(nearest - start) < 0.15, (word, start, onsets)
        assert loud[int(start * 200): int(end * 200) + 1].any(), word  # each word's span holds sound


def test_augmentation_is_seeded_and_never_clips():
    speaker = synth.make_speakers(0)[5]
    text = "the lighthouse keeper whistled a cheerful tune."
    a, wa, _ = synth.render(text, speaker, random.Random(7))
    b, wb, _ = synth.render(text, speaker, random.Random(7))
    assert np.array_equal(a, b) and wa == wb
    for i in range(6):
        aug = synth.augmentation(random.Random(i))
        aug["level_db"] = 10.0  # far louder than full scale: must be scaled down, not clipped
        loud, _, _ = synth.render(text, speaker, random.Random(i), aug=aug)
        assert 0.98 < np.abs(loud).max() <= 0.99 + 1e-6
    clean = dict(speed=1.0, lead=0.2, tail=0.2, reverb=None, noise=None, level_db=-30, seed=3)
    for kind in ("white", "pink", "babble"):
        noisy = dict(clean, noise=dict(kind=kind, snr_db=10.0, talkers=[(0, 0.1, 1.0), (3, 0.5, 0.7), (5, 0.9, 0.6)]))
        x, _, _ = synth.render(text, speaker, random.Random(2), aug=clean)
        y, _, _ = synth.render(text, speaker, random.Random(2), aug=noisy)
        noise = y - x
        lead = int(0.2 * synth.SAMPLE_RATE)
        speech = x[lead:-lead]
        snr = 20 * np.log10(np.sqrt(np.mean(speech**2)) / np.sqrt(np.mean(noise**2)))
        assert abs(snr - 10.0) < 0.5, (kind, snr)
    reverb = dict(clean, reverb=dict(rt60=0.6, direct_to_reverb_db=3.0))
    x, wx, _ = synth.render(text, speaker, random.Random(2), aug=clean)
    y, wy, _ = synth.render(text, speaker, random.Random(2), aug=reverb)
    assert len(x) == len(y) and wx == wy and not np.allclose(x, y, atol=1e-3)


def test_tts_word_events_come_through_the_fork():
    from tts import ESpeak

    engine = ESpeak()
    text = "the quick brown fox jumps"
    pcm, events = engine.synth_words(text, "en-us", word_gap=10)
    assert np.array_equal(pcm, engine.synth(text, "en-us", word_gap=10))
    assert events[:, 0].tolist() == [1, 5, 11, 17, 21] and events[:, 1].tolist() == [3, 5, 5, 3, 5]
    assert (np.diff(events[:, 2]) > 0.1 * engine.sample_rate).all() and events[-1, 2] < len(pcm)
    assert len(engine.synth(text, "en-us")) < len(pcm)  # the word gap made it longer
