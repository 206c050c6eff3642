"""
An offline speech corpus with known transcripts and word times, synthesised by espeak-ng, in LibriSpeech's layout.

    python prepare_synthetic.py --out data/synthetic_src --hours 2      # ~2 h, a few minutes on 2 cores
    python prepare_librispeech.py --librispeech-dir data/synthetic_src --out data/synthetic
    python prepare_synthetic.py --long-form data/synthetic_src/test --minutes 3 --out data/long_test

Writes <out>/{train,dev,test,test_seen}/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac (16 kHz,
16-bit), <speaker>-<chapter>.trans.txt with UPPERCASE transcripts exactly like LibriSpeech (so the
real prepare script shards it with no special case), and <speaker>-<chapter>.words.jsonl: one line
per utterance, {"id": ..., "speech": [start, end], "words": [[word, start, end], ...]}: where the
sound starts and stops, and the transcript's words one to one with their times, in seconds from
the start of that flac ("words": null where espeak's word events could not be matched to the
words, ~1%). The speech is espeak-ng's, through tts.py.

Choices, made so that a model trained on it must learn the sounds of English, not a template
language:
- Words: the 40,000 most frequent of symspellpy's English list (Google Books counts of SCOWL
  words), drawn with probability ~ count**0.3, which favours common words without drowning the
  rare ones. Word classes and inflections come from lemminflect. Sentences are short (3-16 words,
  at most 6 s with silence): grammatical ones from open templates (noun phrases, verbs in several
  tenses, prepositions, adverbs, questions, commas), numbers, clock times, years and names, and
  random word sequences, whose next word no context predicts. Transcripts are what espeak says,
  numbers written in words, with the commas, periods and question marks that shape its prosody.
- Splits, fixed by hashes whatever the seed or size: ~10% of the vocabulary is held out by a hash of
  its lemma (the most frequent and the function words stay shared so that grammar works).
  `train` and `dev` never contain a held-out word. `test` sentences have only held-out content
  words. `dev` and `test_seen` are seen words in sentences that are in no other split (a hash of the
  sentence); test_seen's words are all in the first CORE_SENTENCES train sentences, so a model
  trained on ~2 h or more has heard every one. `test` and `test_seen` are read by voices no other
  split has: the whole West Midlands accent and the variants in HELD_OUT_VARIANTS.
- Voices: all 8 English espeak-ng accents times every variant in espeak-ng-data/voices/!v (and none),
  each a speaker with its own rate, pitch and pitch range, jittered per utterance along with the gap
  between words. A chapter is CHAPTER_SIZE consecutive utterances by one speaker.
- Augmentation (a quarter of utterances stay clean): speed 0.9-1.1 by resampling, 0.05-0.4 s of
  silence at each end, reverberation (exponentially decaying noise, RT60 0.15-0.9 s), white, pink or
  babble noise (other espeak speech) at 5-30 dB SNR, and a level of -30 dBFS RMS +-20 dB, scaled down
  where the peak would clip. Word times follow the speed change and the padding.
- Deterministic for a seed: every utterance draws from its own RNG seeded by (seed, split, index)
  and is synthesised from espeak's freshly initialised state (see tts.ESpeak.synth), so the output is
  byte-identical whatever the number of workers.

--long-form SPLIT_DIR only reads a split already made: its utterances in chapter order, each cut to
its speech plus 0.1 s, joined by random pauses (0.3-2.5 s, one in ten ~4 s) at a speech level that
moves +-10 dB at each chapter and every 5 utterances (never clipping), into <out>/long.flac and
<out>/long.json, the truth: {"audio", "seconds", "source", "seed", "utterances": [{"id", "start",
"end" (the speech, in seconds of long.flac), "text", "level_db", "words": [[word, start, end], ...]
or null}]}. Seeded; eval.py --long-form scores a model's transcript of it.
"""
import gzip
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import math
import os
import random
import re
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

import numpy as np

from cli import OneLineErrors, unwritable, usage_error
from tts import SAMPLE_RATE, ESpeak

SPLITS = ("train", "dev", "test", "test_seen")
CHAPTER_OFFSET = {"train": 100000, "dev": 700000, "test": 800000, "test_seen": 900000}  # chapter ids unique
CHAPTER_SIZE = 20  # consecutive utterances by one speaker: a trainer can fill 30 s windows from them
MAX_SECONDS = 6.0  # the whole clip, silence included: the quick start's model hears 7 s, the tests' 6 s
VOCAB_SIZE = 40000  # most frequent words of the list; beyond that they get obscure
TEMPERATURE = 0.3  # word probability ~ count**0.3
SHARED_TOP = 300  # the most frequent words are never held out: sentences need them
HELD_OUT_PER_MILLE = 100
CORE_SENTENCES = 2000  # test_seen's words come from the first this many train sentences

ACCENTS = ["en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
HELD_OUT_ACCENT = "en-gb-x-gbcwmd"
# held-out variants: whole families, so no training variant is a near copy of one
HELD_OUT_VARIANTS = ("f5", "m7", "Annie", "benjamin", "Hugo", "Jacky", "norbert", "quincy", "shelby",
                     "travis", "kaukovalta", "gustave")
CLEAN_SHARE = 0.25
BABBLE_CLIPS = 8

ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
       "sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
           "nine": "ninth", "twelve": "twelfth"}
DAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
MONTHS = "january february march april may june july august september october november december".split()
DETS_SG = "the the the a a this that my your his her our their every one another no".split()
DETS_PL = "the the these those my your his her our their some many several all the no".split()
PREPOSITIONS = ("in on at near behind under with without from to for about after before over through into by "
                "beside across around against along among beyond inside outside toward below above").split()
MODALS = "can could should might must will would may".split()
# closed classes and the templates' fixed words, never held out: a held-out test sentence needs them too
FUNCTION_WORDS = set(
    "a an the this that these those my your his her its our their some any every each no all both many few several "
    "much more most other another such what which who whom whose where when why how whether if then than so and or "
    "but nor because although though while as until unless since i me you he him she it we us they them myself "
    "yourself himself herself itself ourselves themselves be am is are was were been being have has had having do "
    "does did doing will would shall should can could may might must not yes very too also just only still even "
    "again already never always often sometimes here there now today tomorrow yesterday tonight please hundred "
    "thousand oh o'clock half past quarter dollars cents pounds degrees percent metres last next born costs "
    "leaves counted".split()
    + PREPOSITIONS + DAYS + MONTHS + ONES + TENS[2:] + list(ORDINAL.values())
    + "fourth sixth seventh tenth eleventh thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth "
      "nineteenth twentieth thirtieth".split())


# --------------------------------------------------------------------------------------------------
# vocabulary

def _package_file(package: str, name: str) -> str:
    spec = importlib.util.find_spec(package)  # no import: symspellpy's would pull in its spell checker
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the word list needs the {package} package: pip install -r requirements.txt")
    return os.path.join(spec.submodule_search_locations[0], name)


def _bucket(key: str, modulo: int) -> int:
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:4], "big") % modulo


_ROMAN = re.compile(r"^m{0,3}(c[md]|d?c{0,3})(x[cl]|l?x{0,3})(i[xv]|v?i{0,3})$")


def speakable(word: str, lemmas: set) -> bool:
    """Words espeak reads as written: no vowel-less abbreviations (spelt out letter by letter), no
    single letters, no roman numerals (read as numbers) unless they are also dictionary words."""
    if len(word) < 2 or not re.search(r"[aeiouy]", word):
        return False
    return not _ROMAN.match(word) or word in lemmas


class Lexicon:
    """Words, their classes and inflections, which ones are held out, and tempered samplers."""

    def __init__(self):
        counts, order = {}, []
        with open(_package_file("symspellpy", "frequency_dictionary_en_82_765.txt"), encoding="utf-8") as f:
            for line in f:
                word, count = line.split()
                if word.isascii() and word.isalpha() and word.islower() and word not in counts:
                    counts[word] = int(count)
                    order.append(word)
        entries = []  # (lemma, class, forms)
        with gzip.open(_package_file("lemminflect", "resources/infl_lu.csv.gz"), "rt", encoding="utf-8") as f:
            for line in f:
                lemma, pos, *forms = line.rstrip("\n").split(",")
                if lemma.isascii() and lemma.isalpha():
                    entries.append((lemma, pos, [form.split("/")[0].lower() for form in forms]))
        lemmas = {lemma.lower() for lemma, _, _ in entries}
        self.vocab = [w for w in order[:VOCAB_SIZE] if speakable(w, lemmas)]
        in_vocab = set(self.vocab)
        self.counts = counts
        self.shared = FUNCTION_WORDS | set(order[:SHARED_TOP])
        self.lemmas_of = {}  # surface form -> its lemmas: a held-out lemma holds out all its forms
        for lemma, _, forms in entries:
            for form in [lemma.lower(), *forms]:
                if form:
                    self.lemmas_of.setdefault(form, set()).add(lemma.lower())
        classes = {"noun": [], "verb": [], "adj": [], "adv": [], "name": []}
        for lemma, pos, forms in entries:
            low = lemma.lower()
            if low not in in_vocab or low in FUNCTION_WORDS:
                continue
            if lemma[0].isupper():
                if pos == "noun":
                    classes["name"].append((low,))
            elif pos == "noun":
                classes["noun"].append((low, forms[0] if forms and forms[0] else low))
            elif pos == "verb" and len(forms) == 4 and forms[0] and forms[2] and forms[3]:
                past, participle, ing, third = forms
                classes["verb"].append((low, past, participle or past, ing, third))
            elif pos == "adj":
                classes["adj"].append((low,))
            elif pos == "adv":
                classes["adv"].append((low,))
        classes["word"] = [(w,) for w in self.vocab if w not in FUNCTION_WORDS]
        # per class: the entries whose every form is seen ("seen"), and those of a held-out lemma
        # whose forms are all held out or shared, as "went" may be ("held")
        classes = {name: [forms for forms in dict.fromkeys(items) if speakable(forms[0], lemmas)
                          and all(w.isalpha() for w in forms)]  # no "pre-sets", "meat loaves", "fee'd"
                   for name, items in classes.items()}
        self.core_words = {}
        self.pools = {"seen": self._pools(classes, lambda forms: not any(self.held_out(w) for w in forms)),
                      "held": self._pools(classes, lambda forms: self.held_out(forms[0]) and all(
                          self.held_out(w) or w in self.shared for w in forms))}

    def _pools(self, classes: dict, keep) -> dict:
        """class -> (entries, cumulative tempered frequencies) of the entries `keep` accepts."""
        pools = {}
        for name, items in classes.items():
            kept = [forms for forms in items if keep(forms)]
            weights = np.array([self.counts.get(forms[0], 1) ** TEMPERATURE for forms in kept])
            pools[name] = (kept, np.cumsum(weights) / weights.sum())
        return pools

    def core(self, seed: int) -> set:
        """The words of the first CORE_SENTENCES train sentences of this seed: test_seen uses only
        these, so its words are heard in training whenever train has that many utterances (~2 h)."""
        if seed not in self.core_words:
            words = set()
            for i in range(CORE_SENTENCES):  # utterance()'s first draw for train utterance i
                words.update(words_of(make_sentence(random.Random(f"{seed}/train/{i}"), "train")))
            seen = self.pools["seen"]
            self.pools[("core", seed)] = self._pools({name: items for name, (items, _) in seen.items()},
                                                     lambda forms: forms[0] in words)
            self.core_words[seed] = words
        return self.core_words[seed]

    def held_out(self, word: str) -> bool:
        """A pure function of the word: held out if a lemma it can come from hashes into the held-out
        tenth. The shared words (function words, the most frequent) never are."""
        if word in self.shared:
            return False
        keys = self.lemmas_of.get(word, set()) | {word}
        return any(_bucket(f"held-out/{k}", 1000) < HELD_OUT_PER_MILLE for k in keys if k not in self.shared)

    def draw(self, r: random.Random, cls: str, pool) -> tuple:
        """An entry of class `cls` from pool "seen", "held" or ("core", seed), by tempered frequency."""
        items, cdf = self.pools[pool][cls]
        return items[min(int(np.searchsorted(cdf, r.random(), side="right")), len(items) - 1)]


@lru_cache(maxsize=None)
def lexicon() -> Lexicon:
    """Built once per process; workers forked after the parent built it share it."""
    return Lexicon()


def words_of(sentence: str) -> list:
    """The spoken words of a sentence or transcript, lowercase, punctuation stripped."""
    return [w for w in (t.strip(",.?!").lower() for t in sentence.split()) if w]


def split_of(sentence: str):
    """Each sentence's split is a function of its text alone. Held-out content words make it `test`
    (all of them must be held out); otherwise a hash of the text picks train, dev or test_seen, so
    those never share a sentence. None: a sentence that mixes seen and held-out words, in no split."""
    lex = lexicon()
    content = [w for w in words_of(sentence) if w not in lex.shared]
    held = [lex.held_out(w) for w in content]
    if any(held):
        return "test" if all(held) else None
    bucket = _bucket(sentence, 100)
    return "dev" if bucket < 5 else "test_seen" if bucket < 10 else "train"


# --------------------------------------------------------------------------------------------------
# sentences

def number_words(n: int) -> str:
    """0 <= n < 10**6, British style ("three hundred and five")."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    rest = n % 1000
    head = number_words(n // 1000) + " thousand"
    return head if rest == 0 else head + (" and " if rest < 100 else " ") + number_words(rest)


def ordinal_words(n: int) -> str:
    words = number_words(n).split()
    last = words[-1]
    if last in ORDINAL:
        words[-1] = ORDINAL[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def year_words(y: int) -> str:
    if 2000 <= y < 2010:
        return "two thousand" + ("" if y == 2000 else " and " + ONES[y % 10])
    hi, lo = divmod(y, 100)
    return number_words(hi) + (" hundred" if lo == 0 else (" oh " + ONES[lo] if lo < 10 else " " + number_words(lo)))


def clock(r: random.Random) -> str:
    h, m = r.randint(1, 12), r.choice([0, 5, 10, 15, 20, 30, 40, 45, 50, r.randint(1, 59)])
    if m == 0:
        return f"{number_words(h)} o'clock"
    if m == 30 and r.random() < 0.5:
        return f"half past {number_words(h)}"
    return f"{number_words(h)} {'oh ' + ONES[m] if m < 10 else number_words(m)}"


class Grammar:
    """Phrases with open slots, filled from one pool of words (Lexicon.draw)."""

    def __init__(self, r: random.Random, pool):
        self.r, self.pool, self.lex = r, pool, lexicon()

    def w(self, cls: str) -> tuple:
        return self.lex.draw(self.r, cls, self.pool)

    def name(self) -> str:
        return self.w("name")[0]

    def noun_phrase(self, plural=None) -> tuple:
        """(words, plural?)"""
        r = self.r
        if r.random() < 0.12:
            return self.name(), False
        plural = r.random() < 0.35 if plural is None else plural
        noun = self.w("noun")
        adjectives = [self.w("adj")[0] for _ in range(r.choice([0, 0, 0, 1, 1, 2]))]
        head = " ".join(adjectives + [noun[1] if plural else noun[0]])
        if plural:
            det = number_words(r.choice([2, 3, 4, 5, 10, r.randint(2, 99)])) if r.random() < 0.25 else r.choice(DETS_PL)
        else:
            det = r.choice(DETS_SG)
            if det == "a" and head[0] in "aeiou":
                det = "an"
        return f"{det} {head}", plural

    def verb_phrase(self, plural: bool) -> str:
        r = self.r
        base, past, participle, ing, third = self.w("verb")
        tense = r.randrange(6)
        verb = [past, base if plural else third, f"will {base}", f"{'are' if plural else 'is'} {ing}",
                f"{'have' if plural else 'has'} {participle}", f"{r.choice(MODALS)} {base}"][tense]
        parts = [verb]
        if r.random() < 0.7:
            parts.append(self.noun_phrase()[0])
        if r.random() < 0.35:
            parts.append(f"{r.choice(PREPOSITIONS)} {self.noun_phrase()[0]}")
        if r.random() < 0.2:
            parts.append(self.w("adv")[0])
        return " ".join(parts)

    def clause(self) -> str:
        subject, plural = self.noun_phrase()
        return f"{subject} {self.verb_phrase(plural)}"

    def question(self) -> str:
        r = self.r
        subject, plural = self.noun_phrase()
        base = self.w("verb")[0]
        return r.choice([
            lambda: f"{r.choice(['did', 'will', 'can', 'should'])} {subject} {base} {self.noun_phrase()[0]}?",
            lambda: f"why {'are' if plural else 'is'} {subject} so {self.w('adj')[0]}?",
            lambda: f"where {'do' if plural else 'does'} {subject} {base}?",
            lambda: f"{'were' if plural else 'was'} {subject} {self.w('adj')[0]}?",
            lambda: f"who {self.w('verb')[1]} {self.noun_phrase()[0]}?",
            lambda: f"what did {self.name()} {base}, {self.name()}?",
        ])()

    def sentence(self) -> str:
        r = self.r
        kind = r.random()
        if kind < 0.3:
            return self.clause() + "."
        if kind < 0.42:
            return self.question()
        if kind < 0.52:  # commas: an adverb or a name in front, two clauses, a list
            return r.choice([
                lambda: f"{self.w('adv')[0]}, {self.clause()}.",
                lambda: f"{self.name()}, {self.clause()}.",
                lambda: f"{self.clause()}, and {self.clause()}.",
                lambda: f"{self.noun_phrase()[0]}, {self.noun_phrase()[0]} and {self.noun_phrase()[0]}.",
            ])()
        if kind < 0.6:
            subject, plural = self.noun_phrase()
            return f"{subject} {'were' if plural else 'was'} {self.w('adj')[0]} and {self.w('adj')[0]}."
        if kind < 0.72:  # numbers, times, years and names
            return r.choice([
                lambda: f"{self.name()} {self.w('verb')[1]} {number_words(r.randint(2, 999))} {self.w('noun')[1]} "
                        f"in {year_words(r.randint(1900, 2009))}.",
                lambda: f"the {self.w('noun')[0]} to {self.name()} leaves at {clock(r)}.",
                lambda: f"it costs {number_words(r.randint(1, 999))} dollars and {number_words(r.randint(1, 99))} "
                        f"cents.",
                lambda: f"{self.name()} {self.w('verb')[1]} on {r.choice(DAYS)} the {ordinal_words(r.randint(1, 28))} "
                        f"of {r.choice(MONTHS)}.",
                lambda: f"we counted {number_words(r.randint(2, 99))} {self.w('noun')[1]} "
                        f"{r.choice(PREPOSITIONS)} {self.noun_phrase()[0]}.",
                lambda: f"{self.name()} {self.name()} was born in {year_words(r.randint(1920, 2009))}.",
            ])()
        # random words: no context predicts the next one
        n = r.randint(3, 10)
        words = [self.w("word")[0] if r.random() < 0.85 else r.choice(DETS_SG + PREPOSITIONS) for _ in range(n)]
        return " ".join(words) + r.choice([".", ".", "", "?"])


def make_sentence(r: random.Random, split: str, seed: int = 1337) -> str:
    """Lowercase words with punctuation, as spoken. Draws until the sentence belongs to `split`
    (test_seen: and has only words of the seed's first train sentences)."""
    core = lexicon().core(seed) if split == "test_seen" else None
    pool = "held" if split == "test" else ("core", seed) if core else "seen"
    while True:
        sentence = Grammar(r, pool).sentence()
        words = words_of(sentence)
        if 3 <= len(words) <= 16 and split_of(sentence) == split and (
                core is None or all(w in core or w in lexicon().shared for w in words)):
            return sentence


# --------------------------------------------------------------------------------------------------
# voices

def variants() -> list:
    """espeak-ng's voice variants, from its data directory: an unknown name would be silently ignored."""
    import espeakng_loader

    return sorted(os.listdir(os.path.join(espeakng_loader.get_data_path(), "voices", "!v")))


_SPEAKERS = {}


def make_speakers(seed: int) -> list:
    """One speaker per (accent, variant or none), with its own speed, pitch and pitch range. Those
    with a held-out accent or variant (ids from 9000) read only test and test_seen."""
    if seed in _SPEAKERS:
        return _SPEAKERS[seed]
    known = variants()
    missing = [v for v in HELD_OUT_VARIANTS if v not in known]
    if missing:
        raise RuntimeError(f"espeak-ng has no voice variant {missing}: HELD_OUT_VARIANTS must name files in voices/!v")
    r = random.Random(f"{seed}/speakers")
    seen, unseen = [], []
    for accent in ACCENTS:
        for variant in [None, *known]:
            held = accent == HELD_OUT_ACCENT or variant in HELD_OUT_VARIANTS
            group = unseen if held else seen
            voice = accent + (f"+{variant}" if variant else "")
            group.append(dict(id=(9000 if held else 1000) + len(group), voice=voice, rate=r.randint(130, 200),
                              pitch=r.randint(25, 75), range=r.randint(20, 90), held_out=held))
    _SPEAKERS[seed] = seen + unseen
    return _SPEAKERS[seed]


def speaker_of(seed: int, split: str, chapter: int) -> dict:
    speakers = make_speakers(seed)
    unseen = split in ("test", "test_seen")
    return random.Random(f"{seed}/{split}/chapter/{chapter}").choice([s for s in speakers if s["held_out"] == unseen])


# --------------------------------------------------------------------------------------------------
# audio

@lru_cache(maxsize=None)
def engine() -> ESpeak:
    return ESpeak()


def resample(pcm: np.ndarray, speed: float) -> np.ndarray:
    """espeak's 22050 Hz int16 to 16 kHz float32, played `speed` times faster (pitch follows, as tape does)."""
    import soxr

    return soxr.resample(pcm.astype(np.float32) / 32768.0, engine().sample_rate * speed, SAMPLE_RATE).astype(np.float32)


@lru_cache(maxsize=None)
def babble_clips() -> list:
    """BABBLE_CLIPS clips of random seen words by seen voices, the source of babble noise: the same for every
    seed and process (each made in a fresh fork), built once per process."""
    r = random.Random("babble")
    seen = [s for s in make_speakers(0) if not s["held_out"]]
    clips = []
    for _ in range(BABBLE_CLIPS):
        text = " ".join(lexicon().draw(r, "word", "seen")[0] for _ in range(12))
        speaker = r.choice(seen)
        clips.append(resample(engine().synth(text, speaker["voice"], speaker["rate"], speaker["pitch"],
                                             speaker["range"], seed=r.getrandbits(31)), 1.0))
    return clips


def loud_frames(pcm: np.ndarray, sample_rate: int):
    """(hop, mask): which 5 ms frames of espeak's clean output are within 40 dB of its loudest."""
    hop = sample_rate // 200
    frames = pcm[: len(pcm) // hop * hop].astype(np.float32).reshape(-1, hop)
    energy = 10 * np.log10((frames**2).mean(1) + 1e-3)
    return hop, energy > energy.max() - 40


def word_times(text: str, pcm: np.ndarray, events: np.ndarray, sample_rate: int):
    """[(token, start, end)] in seconds of `pcm` for each whitespace token of `text`, or None when an
    event can't be placed. A token's start is its first event (several for some tokens); it ends where
    the sound stops before the next word starts (trailing pauses and word gaps are not the word's)."""
    tokens, spans, pos = text.split(), [], 0
    for token in tokens:
        pos = text.index(token, pos)
        spans.append((pos, pos + len(token)))
        pos += len(token)
    starts = [None] * len(tokens)
    for char, _, sample in events.tolist():
        i = next((k for k, (a, b) in enumerate(spans) if a <= char - 1 < b), None)
        if i is None:
            return None
        starts[i] = sample if starts[i] is None else min(starts[i], sample)
    if None in starts or starts != sorted(starts):
        return None
    hop, loud = loud_frames(pcm, sample_rate)
    out = []
    for k, token in enumerate(tokens):
        a, b = starts[k] // hop, (starts[k + 1] if k + 1 < len(tokens) else len(pcm)) // hop
        active = np.nonzero(loud[a:b])[0]
        end = (a + active[-1] + 1) * hop if len(active) else max(starts[k] + hop, b * hop)
        out.append((token, starts[k] / sample_rate, int(min(end, len(pcm))) / sample_rate))
    return out


def pink(rng: np.random.Generator, n: int) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    return np.fft.irfft(spectrum, n)


def reverberate(audio: np.ndarray, rng: np.random.Generator, rt60: float, direct_to_reverb_db: float) -> np.ndarray:
    """A room as exponentially decaying noise after the direct sound (60 dB down after rt60)."""
    n = int(rt60 * SAMPLE_RATE)
    tail = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n)
    ir = tail / np.sqrt((tail**2).sum()) * 10 ** (-direct_to_reverb_db / 20)
    ir[0] += 1.0
    size = 1 << int(np.ceil(np.log2(len(audio) + n)))
    wet = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(ir, size), size)[: len(audio)]
    return wet.astype(np.float32)


def augmentation(r: random.Random) -> dict:
    """What happens to one utterance after espeak, drawn from its RNG (CLEAN_SHARE of them get no
    speed change, reverberation or noise): the parts of render() a test can also set by hand."""
    clean = r.random() < CLEAN_SHARE
    aug = dict(speed=1.0 if clean else r.uniform(0.9, 1.1), lead=r.uniform(0.05, 0.4), tail=r.uniform(0.05, 0.4),
               reverb=None, noise=None, level_db=-30 + r.uniform(-20, 20), seed=r.getrandbits(64))
    if not clean and r.random() < 0.3:
        aug["reverb"] = dict(rt60=r.uniform(0.15, 0.9), direct_to_reverb_db=r.uniform(0, 12))
    if not clean and r.random() < 0.7:
        kind = r.choice(["white", "pink", "babble"])
        # babble: 3-5 talkers, each a clip (index, where in it to start, gain)
        talkers = [(r.randrange(BABBLE_CLIPS), r.random(), r.uniform(0.5, 1.0)) for _ in range(r.randint(3, 5))]
        aug["noise"] = dict(kind=kind, snr_db=r.uniform(10, 30) if kind == "babble" else r.uniform(5, 30),
                            talkers=talkers if kind == "babble" else [])
    return aug


def render(text: str, speaker: dict, r: random.Random, word_gap=None, aug=None):
    """One utterance at 16 kHz, its word times (or None) and where its speech starts and ends (the
    first and last frame within 40 dB of the loudest, in seconds): the speaker's voice with per-utterance
    rate, pitch, range and word gap, then speed, silence, reverberation, noise and a level whose
    peak never clips. `word_gap` and `aug` override the random ones."""
    n_words = len(text.split())
    rate = min(400, max(90, speaker["rate"] + r.randint(-15, 15)))
    pitch = min(99, max(0, speaker["pitch"] + r.randint(-8, 8)))
    pitch_range = min(100, max(0, speaker["range"] + r.randint(-10, 10)))
    gap = 0 if r.random() < 0.6 else r.randint(1, max(1, 40 // n_words))
    word_gap = gap if word_gap is None else word_gap
    pcm, events = engine().synth_words(text, speaker["voice"], rate, pitch, pitch_range, seed=r.getrandbits(31),
                                       word_gap=word_gap)
    times = word_times(text, pcm, events, engine().sample_rate)
    hop, loud = loud_frames(pcm, engine().sample_rate)
    active = np.nonzero(loud)[0]
    span = (active[0] * hop, (active[-1] + 1) * hop) if len(active) else (0, len(pcm))
    aug = augmentation(r) if aug is None else aug
    speech = resample(pcm, aug["speed"])
    lead, tail = aug["lead"], aug["tail"]
    room = MAX_SECONDS - len(speech) / SAMPLE_RATE
    if lead + tail > room:  # only the silence shrinks; utterance() makes sure the speech fits
        lead, tail = (max(0.0, room) * x / (lead + tail) for x in (lead, tail))
    lead_n = int(lead * SAMPLE_RATE)
    audio = np.concatenate([np.zeros(lead_n, np.float32), speech, np.zeros(int(tail * SAMPLE_RATE), np.float32)])
    rng = np.random.default_rng(aug["seed"])
    speech_rms = float(np.sqrt(np.mean(speech**2))) + 1e-6
    if aug["reverb"]:
        audio = reverberate(audio, rng, **aug["reverb"])
    if aug["noise"]:
        kind = aug["noise"]["kind"]
        if kind == "white":
            noise = rng.standard_normal(len(audio))
        elif kind == "pink":
            noise = pink(rng, len(audio))
        else:  # other espeak speech, each talker from its own point of a clip, looped
            clips = babble_clips()
            noise = np.zeros(len(audio))
            for index, start, gain in aug["noise"]["talkers"]:
                clip = clips[index]
                noise += np.resize(np.roll(clip, -int(start * len(clip))), len(audio)) * gain
        noise *= speech_rms * 10 ** (-aug["noise"]["snr_db"] / 20) / (float(np.sqrt(np.mean(noise**2))) + 1e-9)
        audio = audio + noise.astype(np.float32)
    audio = audio * (10 ** (aug["level_db"] / 20) / speech_rms)  # the level is the speech's RMS
    peak = float(np.abs(audio).max())
    if peak > 0.99:  # never clip: loud draws are scaled down to a 0.99 peak
        audio *= 0.99 / peak
    audio = audio.astype(np.float32)
    duration = len(audio) / SAMPLE_RATE

    def seconds(t: float) -> float:  # a time in espeak's output -> in the flac
        return round(min(duration, lead_n / SAMPLE_RATE + t / aug["speed"]), 3)

    words = None if times is None else [[token, seconds(start), seconds(end)] for token, start, end in times]
    return audio, words, [seconds(span[0] / engine().sample_rate), seconds(int(span[1]) / engine().sample_rate)]


def synthesize(text: str, speaker: dict, r: random.Random) -> np.ndarray:
    """render()'s audio alone."""
    return render(text, speaker, r)[0]


def utterance(job):
    """Worker: (seed, split, index) -> (speaker, text, flac bytes, seconds, word times or None, speech span)."""
    import soundfile

    seed, split, index = job
    r = random.Random(f"{seed}/{split}/{index}")
    speaker = speaker_of(seed, split, index // CHAPTER_SIZE)
    while True:  # the rare sentence too long for MAX_SECONDS at this voice's rate is drawn again
        text = make_sentence(r, split, seed)
        audio, words, speech = render(text, speaker, r)
        if len(audio) <= MAX_SECONDS * SAMPLE_RATE:
            break
    transcript = text.upper()
    if words is not None:
        words = [[token.upper(), start, end] for token, start, end in words]
    buf = io.BytesIO()
    soundfile.write(buf, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return speaker, transcript, buf.getvalue(), len(audio) / SAMPLE_RATE, words, speech


def generate_split(out_dir: str, split: str, seconds: float, seed: int, pool, workers: int, bar) -> dict:
    """Synthesise utterances in index order until `seconds` of audio; write flacs, transcripts and
    word times; return the split's statistics."""
    lines, word_lines, total, index = {}, {}, 0.0, 0
    words, voices, speakers, unknown_times = set(), set(), set(), 0
    while total < seconds:
        # jobs per round: enough for the seconds still missing (~3 s each), so little is thrown away
        window = max(workers, min(16 * workers, math.ceil((seconds - total) / 3.0)))
        jobs = [(seed, split, index + k) for k in range(window)]
        results = pool.map(utterance, jobs, chunksize=max(1, window // (4 * workers))) if pool else map(utterance, jobs)
        for speaker, transcript, flac, duration, times, speech in results:
            chapter = CHAPTER_OFFSET[split] + index // CHAPTER_SIZE
            utt_id = f"{speaker['id']}-{chapter}-{index % CHAPTER_SIZE:04d}"
            index += 1
            folder = os.path.join(out_dir, split, str(speaker["id"]), str(chapter))
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, utt_id + ".flac"), "wb") as f:
                f.write(flac)
            lines.setdefault(folder, []).append(f"{utt_id} {transcript}")
            word_lines.setdefault(folder, []).append(json.dumps({"id": utt_id, "speech": speech, "words": times}))
            words.update(words_of(transcript))
            voices.add(speaker["voice"])
            speakers.add(speaker["id"])
            unknown_times += times is None
            total += duration
            bar.update(min(duration, bar.total - bar.n))  # the last utterance overshoots
            if total >= seconds:
                break
    for folder in lines:
        speaker_id, chapter = folder.split(os.sep)[-2:]
        with open(os.path.join(folder, f"{speaker_id}-{chapter}.trans.txt"), "w") as f:
            f.write("\n".join(lines[folder]) + "\n")
        with open(os.path.join(folder, f"{speaker_id}-{chapter}.words.jsonl"), "w") as f:
            f.write("\n".join(word_lines[folder]) + "\n")
    return dict(utterances=index, seconds=round(total, 2), chapters=len(lines), speakers=len(speakers),
                voices=sorted(voices), words=sorted(words), unknown_word_times=unknown_times)


def corpus_checks(stats: dict) -> dict:
    """The promises the splits make, counted: every count must be 0."""
    lex = lexicon()
    seen_words = set().union(*(stats[s]["words"] for s in ("train", "dev")))
    seen_voices = set().union(*(stats[s]["voices"] for s in ("train", "dev")))
    return dict(
        held_out_words_in_train_or_dev=sum(lex.held_out(w) for w in seen_words),
        test_content_words_not_held_out=sum(not lex.held_out(w) for w in stats["test"]["words"] if w not in lex.shared),
        test_content_words_in_train_or_dev=len((set(stats["test"]["words"]) - lex.shared) & seen_words),
        test_voices_in_train_or_dev=len(set(stats["test"]["voices"] + stats["test_seen"]["voices"]) & seen_voices),
    )


# --------------------------------------------------------------------------------------------------
# one long file, for long-form transcription (eval.py --long-form)

LONG_MARGIN = 0.1  # seconds kept either side of each clip's speech: the pauses are the ones put in
LONG_LEVEL_DB = -28.0  # speech RMS (dBFS) around which the level moves; its top rarely needs the peak cap
LONG_LEVEL_SWING = 10.0  # +- dB, a new level at each chapter and every LONG_LEVEL_EVERY utterances
LONG_LEVEL_EVERY = 5
LONG_FADE = 0.01  # seconds: a cut through reverberation or noise would click


def speech_spans(split_dir: str) -> dict:
    """{utterance id: (speech start, speech end, words or None)} from the *.words.jsonl under a split:
    the span covers the true words too (a word may start a little before the sound crosses the
    threshold)."""
    from timing import read_word_records

    spans = {}
    for uid, (speech, words) in read_word_records(split_dir).items():
        if speech is None:
            continue
        start, end = speech
        if words:
            start, end = min(start, words[0][1]), max(end, words[-1][2])
        spans[uid] = (start, end, words)
    return spans


def build_long_form(split_dir: str, minutes: float, seed: int) -> tuple:
    """(16 kHz float32 audio, truth dict) of the long file: the split's utterances in chapter order,
    each trimmed to its speech plus LONG_MARGIN, with random pauses between them and a speech level
    that changes by chapter and every few utterances, until the file lasts `minutes`. Utterances
    without a *.words.jsonl record are used whole, their words unknown. Raises ValueError if the
    split holds too little audio."""
    from audio import AudioError, load_audio
    from data import read_librispeech_dir

    def chapter_key(item):
        chapter = item[0].split("-")[1] if item[0].count("-") >= 2 else ""
        return (int(chapter) if chapter.isdigit() else math.inf, chapter, item[0])

    items = sorted(read_librispeech_dir(split_dir), key=chapter_key)  # it reports the lines it skips
    if not items:
        raise ValueError(f"{split_dir}: no *.trans.txt with audio found")
    spans = speech_spans(split_dir)
    r = random.Random(f"{seed}/long-form")
    target = minutes * 60

    def pause() -> float:  # mostly sentence gaps, now and then a long silence
        return r.uniform(3.5, 4.5) if r.random() < 0.1 else r.uniform(0.3, 2.5)

    pieces, utterances, length = [], [], 0
    lead = round(r.uniform(0.3, 1.0) * SAMPLE_RATE)
    pieces.append(np.zeros(lead, np.float32))
    length += lead
    level, achieved, chapter, in_block = None, None, None, 0
    for utt, path, text in items:
        if length >= target * SAMPLE_RATE:
            break
        try:
            audio = load_audio(path)
        except AudioError as e:
            print(f"warning: {e}, skipped", file=sys.stderr)
            continue
        duration = len(audio) / SAMPLE_RATE
        start, end, words = spans.get(utt, (0.0, duration, None))
        a = max(0, int((start - LONG_MARGIN) * SAMPLE_RATE))
        b = min(len(audio), int(math.ceil((end + LONG_MARGIN) * SAMPLE_RATE)))
        if b - a < SAMPLE_RATE // 10:
            continue
        clip = audio[a:b].astype(np.float64)
        fade = min(int(LONG_FADE * SAMPLE_RATE), len(clip) // 2)
        ramp = np.linspace(0.0, 1.0, fade, endpoint=False)
        clip[:fade] *= ramp
        clip[len(clip) - fade :] *= ramp[::-1]
        if utt.split("-")[:2] != chapter or in_block == LONG_LEVEL_EVERY:
            # a new level, audibly different from the last one heard (which the peak cap may have lowered)
            level = LONG_LEVEL_DB + r.uniform(-LONG_LEVEL_SWING, LONG_LEVEL_SWING)
            while achieved is not None and abs(level - achieved) < 4:
                level = LONG_LEVEL_DB + r.uniform(-LONG_LEVEL_SWING, LONG_LEVEL_SWING)
            chapter, in_block = utt.split("-")[:2], 0
        in_block += 1
        s0, s1 = max(0, int(start * SAMPLE_RATE) - a), min(len(clip), int(end * SAMPLE_RATE) - a)
        rms = float(np.sqrt(np.mean(clip[s0:s1] ** 2))) if s1 > s0 else 0.0
        gain = 10 ** (level / 20) / rms if rms > 0 else 1.0
        peak = float(np.abs(clip).max())
        if peak * gain > 0.99:  # never clip: a loud level is lowered to a 0.99 peak
            gain = 0.99 / peak
        achieved = 20 * math.log10(rms * gain) if rms > 0 else achieved
        offset = (length - a) / SAMPLE_RATE  # utterance time -> long-file time
        pieces.append((clip * gain).astype(np.float32))
        length += len(clip)
        utterances.append(dict(
            id=utt, start=round(start + offset, 3), end=round(end + offset, 3), text=text,
            level_db=round(achieved, 2) if rms > 0 else None,
            words=None if words is None else [[w, round(s + offset, 3), round(e + offset, 3)] for w, s, e in words]))
        gap = round(pause() * SAMPLE_RATE)
        pieces.append(np.zeros(gap, np.float32))
        length += gap
    if length < target * SAMPLE_RATE:
        raise ValueError(f"{split_dir}: its {len(utterances)} usable utterances make {length / SAMPLE_RATE / 60:.2f} "
                         f"minutes with pauses, fewer than --minutes {minutes:g}")
    audio = np.concatenate(pieces)
    truth = dict(audio="long.flac", seconds=round(len(audio) / SAMPLE_RATE, 3), source=split_dir, seed=seed,
                 utterances=utterances)
    return audio, truth


def write_long_form(split_dir: str, minutes: float, out: str, seed: int):
    """--long-form: build_long_form, written atomically as <out>/long.flac and <out>/long.json."""
    import soundfile

    from files import atomic_write

    if not os.path.isdir(split_dir):
        usage_error(f"{split_dir}: no such directory")
    if not (math.isfinite(minutes) and minutes > 0):
        usage_error(f"--minutes must be a positive number, got {minutes}")
    if problem := unwritable(out):
        usage_error(problem)
    try:
        audio, truth = build_long_form(split_dir, minutes, seed)
    except ValueError as e:
        usage_error(str(e))
    buf = io.BytesIO()
    soundfile.write(buf, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    with atomic_write(os.path.join(out, "long.flac")) as f:
        f.write(buf.getvalue())
    head = json.dumps({k: v for k, v in truth.items() if k != "utterances"})[:-1]
    with atomic_write(os.path.join(out, "long.json"), "w", encoding="utf-8") as f:  # an utterance a line
        f.write(head + ', "utterances": [\n' + ",\n".join(json.dumps(u) for u in truth["utterances"]) + "\n]}\n")
    known = sum(u["words"] is not None for u in truth["utterances"])
    print(f"{len(truth['utterances'])} utterances ({known} with word times), {truth['seconds']:.1f} s -> "
          f"{os.path.join(out, 'long.flac')}, {os.path.join(out, 'long.json')}")


def main(argv=None):
    from tqdm import tqdm

    p = OneLineErrors(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None, help="corpus root; train/, dev/, test/, test_seen/ go inside "
                                               "(default: data/synthetic_src)")
    p.add_argument("--hours", type=float, default=2.0, help="total audio (fractions fine: 0.01 = 36 s)")
    p.add_argument("--dev-fraction", type=float, default=0.05)
    p.add_argument("--test-fraction", type=float, default=0.05, help="held-out words by held-out voices")
    p.add_argument("--test-seen-fraction", type=float, default=0.03, help="seen words by held-out voices")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--overwrite", action="store_true", help="delete the existing splits under --out first")
    p.add_argument("--long-form", metavar="SPLIT_DIR", default=None,
                   help="instead: join SPLIT_DIR's utterances with pauses and level changes into --out/long.flac "
                        "and long.json (the truth eval.py --long-form scores against)")
    p.add_argument("--minutes", type=float, default=3.0, help="with --long-form: at least this long")
    args = p.parse_args(argv)
    if args.long_form is not None:
        if args.out is None:
            usage_error("--long-form needs --out DIR for long.flac and long.json")
        return write_long_form(args.long_form, args.minutes, args.out, args.seed)
    args.out = args.out or "data/synthetic_src"
    # every option is checked before anything is written or synthesised
    if not (math.isfinite(args.hours * 3600) and args.hours > 0):
        usage_error(f"--hours must be a positive number, got {args.hours}")
    if args.workers < 1:  # 0 once hung before the first utterance
        usage_error(f"--workers must be at least 1, got {args.workers}")
    fractions = (args.dev_fraction, args.test_fraction, args.test_seen_fraction)
    if not all(math.isfinite(f) and f >= 0 for f in fractions) or sum(fractions) >= 1:
        usage_error(f"--dev-fraction {args.dev_fraction}, --test-fraction {args.test_fraction} and "
                    f"--test-seen-fraction {args.test_seen_fraction} must not be negative and must leave audio "
                    "for train (their sum below 1)")
    for split in SPLITS:
        path = os.path.join(args.out, split)
        if os.path.exists(path) and not args.overwrite:
            usage_error(f"{path}: already exists; pass --overwrite to replace it")
    if problem := unwritable(args.out):  # before anything is deleted or made
        usage_error(problem)
    try:  # built before the workers fork, so they share it
        lexicon().core(args.seed)
        make_speakers(args.seed)
        babble_clips()
    except RuntimeError as e:
        raise SystemExit(f"error: {e}") from None
    for split in SPLITS:
        if os.path.exists(os.path.join(args.out, split)):
            shutil.rmtree(os.path.join(args.out, split))

    total = args.hours * 3600
    targets = {"dev": total * args.dev_fraction, "test": total * args.test_fraction,
               "test_seen": total * args.test_seen_fraction}
    targets["train"] = total - sum(targets.values())
    t0 = time.time()
    stats = {}
    # concurrent.futures, not multiprocessing.Pool: a worker killed (OOM, kill -9) fails the run at once
    # instead of leaving it waiting forever for that worker's utterances
    pool = ProcessPoolExecutor(args.workers, mp_context=get_context("fork")) if args.workers > 1 else None
    try:
        with tqdm(total=round(total), unit="s", unit_scale=True, desc="seconds of audio", dynamic_ncols=True) as bar:
            for split in SPLITS:
                if targets[split] > 0:
                    stats[split] = generate_split(args.out, split, targets[split], args.seed, pool, args.workers, bar)
                else:
                    stats[split] = dict(utterances=0, seconds=0.0, chapters=0, speakers=0, voices=[], words=[],
                                        unknown_word_times=0)
    except BrokenProcessPool:
        raise SystemExit(f"error: {args.out}: a worker process died (out of memory? killed?); the corpus is "
                         "incomplete: run again with --overwrite") from None
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    elapsed = time.time() - t0
    checks = corpus_checks(stats)
    summary = {split: dict(utterances=s["utterances"], hours=round(s["seconds"] / 3600, 4), chapters=s["chapters"],
                           speakers=s["speakers"], voices=len(s["voices"]), distinct_words=len(s["words"]),
                           unknown_word_times=s["unknown_word_times"]) for split, s in stats.items()}
    lex = lexicon()
    info = dict(seed=args.seed, hours=args.hours, splits=summary, checks=checks,
                vocabulary=dict(words=len(lex.vocab), shared=len(lex.shared),
                                held_out=sum(lex.held_out(w) for w in lex.vocab), source="symspellpy "
                                "frequency_dictionary_en_82_765.txt (Google Books Ngram counts, SCOWL), lemminflect",
                                # the word lists decide the splits: a corpus names the versions it was made with
                                versions={p: importlib.metadata.version(p) for p in ("symspellpy", "lemminflect",
                                                                                      "espeakng-loader")}),
                held_out_accent=HELD_OUT_ACCENT, held_out_variants=list(HELD_OUT_VARIANTS),
                speakers=make_speakers(args.seed))
    with open(os.path.join(args.out, "synthetic.json"), "w") as f:
        json.dump(info, f, indent=1)
    n = sum(s["utterances"] for s in stats.values())
    seconds = sum(s["seconds"] for s in stats.values())
    for split, s in summary.items():
        print(f"{split:9s} {s['utterances']:6d} utterances {s['hours']:8.4f} h {s['chapters']:5d} chapters "
              f"{s['speakers']:4d} speakers {s['voices']:4d} voices {s['distinct_words']:6d} distinct words "
              f"{s['unknown_word_times']} without word times")
    print("checks (all must be 0): " + ", ".join(f"{k} {v}" for k, v in checks.items()))
    print(f"{n} utterances, {seconds / 3600:.3f} h of audio in {elapsed:.1f} s with {args.workers} workers: "
          f"{seconds / elapsed:.1f} audio seconds per wall second, {n / elapsed / args.workers:.1f} utt/s per "
          f"worker -> {args.out}")
    if any(checks.values()):
        raise SystemExit(f"error: {args.out}: the splits overlap ({checks}); this is a bug")


if __name__ == "__main__":
    main()
