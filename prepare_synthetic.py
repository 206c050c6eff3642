"""
An offline speech corpus with known transcripts, synthesised by espeak-ng, in LibriSpeech's layout.

    python prepare_synthetic.py --out data/synthetic_src --hours 2      # ~2 h, a few minutes on 2 cores
    python prepare_librispeech.py --librispeech-dir data/synthetic_src --out data/synthetic

Writes <out>/{train,dev,test}/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac (16 kHz, 16-bit) plus
<speaker>-<chapter>.trans.txt with UPPERCASE transcripts, exactly like LibriSpeech, so the real prepare
script shards it with no special case. The speech is espeak-ng's, through tts.py (offline, no system
package).

Choices, made for the training goal (a small model trained for 15 min on 2 CPU cores should get
under 25% WER on `test`):
- Sentences are short: 3 to 16 words (8 on average), about 1.5-6 s of audio with the silence.
  Short targets keep batches cheap and a small decoder's job easy.
- The vocabulary is moderate (~700 words: names, places, numbers, everyday nouns, verbs and
  adjectives) but the space of sentences is combinatorially vast (> 10^12 from ~40 templates), so
  the model must learn words and sounds, it cannot memorise sentences.
- Transcripts are what espeak says: numbers, years, times and prices are written out in words
  ("TWELVE DOLLARS AND FIFTY CENTS"), so audio and text always agree.
- Every sentence belongs to exactly one split by a hash of its text (5% test, 5% dev, 90% train),
  so test and dev sentences can never occur in train, whatever the seed or size.
- 48 speakers, each a distinct (accent, variant) pair out of 8 English accents x 55 espeak voice
  variants, with its own base speed (140-190 wpm), pitch and pitch range, jittered per utterance;
  then random gain, 50-400 ms of silence at each end, and light white noise (SNR 20-45 dB). The
  `test` subset also has one voice (variant f5, `HELD_OUT_VOICE`) that is never used in train or
  dev; it reads ~20% of test.
- Deterministic for a seed: every utterance draws from its own RNG seeded by (seed, split, index)
  and is synthesised from espeak's freshly initialised state (see tts.ESpeak.synth), so the output is
  byte-identical whatever the number of workers.
"""
import argparse
import hashlib
import io
import json
import math
import os
import random
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

import numpy as np

from tts import SAMPLE_RATE, speak

SPLITS = ("train", "dev", "test")
ACCENTS = ["en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
VARIANTS = (  # espeak-ng voice variants that sound like a person (no robots, croaks or whispers)
    "m1 m2 m3 m4 m5 m6 m7 m8 f1 f2 f3 f4 klatt klatt2 klatt3 klatt4 adam Andy belinda benjamin david ed "
    "edward john linda max paul quincy rob robert steph travis victor zac Alex Alicia Annie Denis Gene "
    "Hugo Jacky Lee Michael Mike Nguyen Reed aunty boris caleb grandma grandpa ian iven norbert shelby"
).split()
HELD_OUT_VOICE = "en-us+f5"  # test only: variant f5 is in no train or dev voice
HELD_OUT_SHARE = 0.2
N_SPEAKERS = 48  # train/dev speakers; the held-out one is speaker 9000

# --------------------------------------------------------------------------------------------------
# sentences

NAMES = (
    "james mary john linda robert sarah david emma michael anna peter laura thomas julia daniel grace paul "
    "helen mark kate george alice henry rachel simon lucy oliver sophie jack olivia sam nina frank clara "
    "oscar emily victor diana martin ruth leo maria adam rose ben jane carl eva hugo amy tom lisa steven "
    "karen brian megan kevin holly eric nora ryan chloe"
).split()
SURNAMES = (
    "smith brown taylor wilson johnson walker wright green hall wood clark baker turner hill moore cooper "
    "ward king parker young harris lewis robinson martin white thompson carter mitchell bell murphy"
).split()
PLACES = (
    "london paris berlin madrid rome tokyo boston chicago denver dallas seattle toronto dublin glasgow "
    "edinburgh oxford cambridge vienna prague lisbon sydney melbourne houston atlanta miami phoenix "
    "portland montreal vancouver brussels amsterdam oslo stockholm helsinki warsaw athens cairo delhi "
    "singapore austin leeds bristol cardiff belfast york manchester liverpool geneva zurich naples"
).split()
COUNTRIES = (
    "france spain italy germany canada mexico brazil japan china india egypt kenya norway sweden "
    "ireland scotland wales england poland greece turkey peru chile australia"
).split()
DAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
MONTHS = "january february march april may june july august september october november december".split()
NOUNS = (
    "book table window car train ticket letter bottle coffee kitchen garden door chair phone computer "
    "camera bicycle bag box key map picture lamp clock shirt jacket hat shoe cup plate glass bread apple "
    "orange cake sandwich pizza river mountain lake forest beach road bridge station airport hotel "
    "office school library museum hospital market shop park street house room bed sofa desk pen pencil "
    "paper newspaper magazine radio guitar piano song movie game ball dog cat horse bird fish cow "
    "sheep boat plane bus truck doctor teacher student driver farmer nurse pilot artist baker lawyer "
    "engineer manager neighbour friend brother sister mother father uncle aunt cousin child baby "
    "umbrella blanket pillow candle mirror basket wallet watch ring button envelope package parcel"
).split()
PLURALS = {"child": "children", "baby": "babies", "fish": "fish", "sheep": "sheep", "glass": "glasses",
           "box": "boxes", "watch": "watches", "sandwich": "sandwiches", "bus": "buses", "key": "keys",
           "lady": "ladies", "shelf": "shelves"}
ADJECTIVES = (
    "red blue green yellow black white brown small large big little old new young heavy light quiet "
    "loud warm cold hot cheap expensive clean dirty empty full bright dark soft hard short long tall "
    "happy tired busy lucky famous strange simple lovely wooden broken friendly careful early late"
).split()
VERBS = [  # base, past
    ("buy", "bought"), ("find", "found"), ("open", "opened"), ("close", "closed"), ("carry", "carried"),
    ("paint", "painted"), ("clean", "cleaned"), ("sell", "sold"), ("send", "sent"), ("bring", "brought"),
    ("take", "took"), ("lose", "lost"), ("fix", "fixed"), ("move", "moved"), ("order", "ordered"),
    ("wash", "washed"), ("check", "checked"), ("borrow", "borrowed"), ("return", "returned"),
    ("pack", "packed"), ("drop", "dropped"), ("hide", "hid"), ("build", "built"), ("draw", "drew"),
    ("keep", "kept"), ("need", "needed"), ("want", "wanted"), ("like", "liked"), ("see", "saw"),
    ("leave", "left"), ("collect", "collected"), ("deliver", "delivered"), ("share", "shared"),
]
TRAVEL = [("visit", "visited"), ("leave", "left"), ("reach", "reached"), ("fly to", "flew to"),
          ("drive to", "drove to"), ("move to", "moved to"), ("call", "called")]
TIMES_OF_DAY = ["in the morning", "in the afternoon", "in the evening", "at night", "at noon", "at midnight"]
PREPOSITIONS = ["on", "under", "behind", "next to", "near", "in front of", "inside", "beside"]
PHRASES = [
    "good morning", "thank you very much", "see you tomorrow", "have a nice day", "excuse me",
    "i am sorry", "that sounds great", "no problem at all", "of course", "let me think",
    "i do not know", "please wait a moment", "are you sure", "well done", "what a surprise",
]

ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
       "sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
           "nine": "ninth", "twelve": "twelfth"}


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


def plural(noun: str) -> str:
    return PLURALS.get(noun, noun + "s")


def count_of(r: random.Random, noun: str) -> str:
    n = r.choice([2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20, r.randint(2, 99), r.randint(100, 999)])
    return f"{number_words(n)} {plural(noun)}"


def person(r: random.Random) -> str:
    return r.choice(NAMES) if r.random() < 0.7 else f"{r.choice(NAMES)} {r.choice(SURNAMES)}"


def the_thing(r: random.Random) -> str:
    return f"the {r.choice(ADJECTIVES)} {r.choice(NOUNS)}" if r.random() < 0.5 else f"the {r.choice(NOUNS)}"


def clock(r: random.Random) -> str:
    h, m = r.randint(1, 12), r.choice([0, 5, 10, 15, 20, 30, 40, 45, 50, r.randint(1, 59)])
    if m == 0:
        return f"{number_words(h)} o'clock"
    if m == 30 and r.random() < 0.5:
        return f"half past {number_words(h)}"
    return f"{number_words(h)} {'oh ' + ONES[m] if m < 10 else number_words(m)}"


def date(r: random.Random) -> str:
    return f"the {ordinal_words(r.randint(1, 28))} of {r.choice(MONTHS)}"


TEMPLATES = [
    lambda r: f"{person(r)} {r.choice(VERBS)[1]} {count_of(r, r.choice(NOUNS))} in {r.choice(PLACES)}",
    lambda r: f"{person(r)} {r.choice(VERBS)[1]} {the_thing(r)} on {r.choice(DAYS)}",
    lambda r: f"{the_thing(r)} is {r.choice(PREPOSITIONS)} {the_thing(r)}",
    lambda r: f"please {r.choice(VERBS)[0]} {the_thing(r)} before {clock(r)}",
    lambda r: f"can you {r.choice(VERBS)[0]} {the_thing(r)} for {person(r)}",
    lambda r: f"{person(r)} and {person(r)} will meet in {r.choice(PLACES)} at {clock(r)}",
    lambda r: f"it costs {number_words(r.randint(1, 999))} dollars and {number_words(r.randint(1, 99))} cents",
    lambda r: f"the {r.choice(NOUNS)} costs {number_words(r.randint(2, 500))} pounds",
    lambda r: f"my number is {' '.join(ONES[r.randint(0, 9)] for _ in range(r.randint(4, 7)))}",
    lambda r: f"{person(r)} lives at {number_words(r.randint(1, 999))} {r.choice(SURNAMES)} street",
    lambda r: f"we {r.choice(TRAVEL)[1]} {r.choice(PLACES)} in {year_words(r.randint(1900, 2009))}",
    lambda r: f"{person(r)} was born in {r.choice(COUNTRIES)} in {year_words(r.randint(1920, 2009))}",
    lambda r: f"the train to {r.choice(PLACES)} leaves at {clock(r)}",
    lambda r: f"the meeting is on {r.choice(DAYS)} {date(r)}",
    lambda r: f"{person(r)} will {r.choice(TRAVEL)[0]} {r.choice(PLACES)} on {date(r)}",
    lambda r: f"turn left after {the_thing(r)} and walk {number_words(r.randint(2, 900))} metres",
    lambda r: f"there are {count_of(r, r.choice(NOUNS))} {r.choice(PREPOSITIONS)} {the_thing(r)}",
    lambda r: f"{person(r)} has {count_of(r, r.choice(NOUNS))} and {count_of(r, r.choice(NOUNS))}",
    lambda r: f"i {r.choice(VERBS)[1]} {the_thing(r)} {r.choice(TIMES_OF_DAY)}",
    lambda r: f"{r.choice(PHRASES)} {person(r)}",
    lambda r: f"{r.choice(PHRASES)} the {r.choice(NOUNS)} is {r.choice(ADJECTIVES)}",
    lambda r: f"do you {r.choice(VERBS)[0]} {the_thing(r)} or {the_thing(r)}",
    lambda r: f"the {r.choice(NOUNS)} was {r.choice(ADJECTIVES)} and {r.choice(ADJECTIVES)}",
    lambda r: f"{person(r)} is a {r.choice(ADJECTIVES)} {r.choice(NOUNS)} from {r.choice(PLACES)}",
    lambda r: f"it is {number_words(r.randint(0, 40))} degrees in {r.choice(PLACES)} {r.choice(TIMES_OF_DAY)}",
    lambda r: f"room {number_words(r.randint(1, 999))} is on the {ordinal_words(r.randint(1, 30))} floor",
    lambda r: f"{person(r)} {r.choice(TRAVEL)[1]} {r.choice(COUNTRIES)} last {r.choice(MONTHS)}",
    lambda r: f"the flight from {r.choice(PLACES)} to {r.choice(PLACES)} takes {number_words(r.randint(2, 14))} hours",
    lambda r: f"we need {count_of(r, r.choice(NOUNS))} for {person(r)} by {r.choice(DAYS)}",
    lambda r: f"{person(r)} {r.choice(VERBS)[1]} {the_thing(r)} {r.choice(PREPOSITIONS)} {the_thing(r)}",
    lambda r: f"the score was {number_words(r.randint(0, 9))} to {number_words(r.randint(0, 9))} on {r.choice(DAYS)}",
    lambda r: f"add {number_words(r.randint(1, 99))} and {number_words(r.randint(1, 99))} to get the answer",
    lambda r: f"page {number_words(r.randint(1, 999))} of the {r.choice(ADJECTIVES)} book is missing",
    lambda r: f"does {person(r)} {r.choice(VERBS)[0]} the {plural(r.choice(NOUNS))} on {r.choice(DAYS)}",
    lambda r: f"{person(r)} {r.choice(VERBS)[1]} a {r.choice(ADJECTIVES)} {r.choice(NOUNS)} {r.choice(TIMES_OF_DAY)}",
    lambda r: f"the shop in {r.choice(PLACES)} opens at {clock(r)} on {r.choice(DAYS)}",
    lambda r: f"my {r.choice(['brother', 'sister', 'mother', 'father', 'friend', 'neighbour'])} "
              f"{r.choice(VERBS)[1]} {the_thing(r)} yesterday",
    lambda r: f"we saw {count_of(r, r.choice(NOUNS))} near the {r.choice(NOUNS)} in {r.choice(PLACES)}",
    lambda r: f"{person(r)} says the {r.choice(NOUNS)} is too {r.choice(ADJECTIVES)}",
    lambda r: f"call {person(r)} at {clock(r)} {r.choice(TIMES_OF_DAY)}",
]


def split_of(sentence: str) -> str:
    """Each sentence's split is a function of its text alone: test and dev never leak into train."""
    bucket = int.from_bytes(hashlib.sha1(sentence.encode()).digest()[:4], "big") % 100
    return "test" if bucket < 5 else "dev" if bucket < 10 else "train"


def make_sentence(r: random.Random, split: str) -> str:
    """Lowercase words, as spoken. Draws until the sentence hashes into `split` (cheap rejection)."""
    while True:
        words = r.choice(TEMPLATES)(r).split()
        if len(words) <= 16 and split_of(" ".join(words)) == split:
            return " ".join(words)


# --------------------------------------------------------------------------------------------------
# voices

def make_speakers(seed: int) -> list:
    """N_SPEAKERS distinct (accent, variant) voices with their own speed, pitch and range."""
    r = random.Random(f"{seed}/speakers")
    combos = [(a, v) for a in ACCENTS for v in VARIANTS]
    r.shuffle(combos)
    speakers = []
    for i, (accent, variant) in enumerate(combos[:N_SPEAKERS]):
        speakers.append(dict(id=1000 + i * 10, voice=f"{accent}+{variant}", rate=r.randint(140, 190),
                             pitch=r.randint(35, 65), range=r.randint(30, 80)))
    held_out = dict(id=9000, voice=HELD_OUT_VOICE, rate=r.randint(150, 180), pitch=50, range=50)
    return speakers + [held_out]


def synthesize(text: str, speaker: dict, r: random.Random) -> np.ndarray:
    """One utterance at 16 kHz: speaker's voice with per-utterance jitter, silence, gain and noise."""
    rate, pitch = speaker["rate"] + r.randint(-12, 12), min(99, max(0, speaker["pitch"] + r.randint(-6, 6)))
    audio = speak(text, speaker["voice"], rate, pitch, speaker["range"], seed=r.getrandbits(31))
    noise_rng = np.random.default_rng(r.getrandbits(64))
    lead, tail = (np.zeros(int(SAMPLE_RATE * r.uniform(0.05, 0.4)), np.float32) for _ in range(2))
    audio = np.concatenate([lead, audio, tail])
    audio *= r.uniform(0.3, 0.9) / max(1e-4, float(np.abs(audio).max()))
    rms = float(np.sqrt(np.mean(audio**2)))
    snr_db = r.uniform(20, 45)
    audio += noise_rng.standard_normal(len(audio)).astype(np.float32) * rms * 10 ** (-snr_db / 20)
    return np.clip(audio, -1, 1)


def utterance(job):
    """Worker: (seed, split, index, speakers) -> (speaker id, text, flac bytes, seconds)."""
    import soundfile

    seed, split, index, speakers = job
    r = random.Random(f"{seed}/{split}/{index}")
    text = make_sentence(r, split)
    if split == "test" and r.random() < HELD_OUT_SHARE:
        speaker = speakers[-1]
    else:
        speaker = r.choice(speakers[:-1])
    audio = synthesize(text, speaker, r)
    buf = io.BytesIO()
    soundfile.write(buf, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return speaker["id"], text, buf.getvalue(), len(audio) / SAMPLE_RATE


def generate_split(out_dir: str, split: str, seconds: float, seed: int, pool, workers: int, bar) -> dict:
    """Synthesise utterances in index order until `seconds` of audio; write flacs and transcripts."""
    speakers = make_speakers(seed)
    transcripts, total, index, counters = {}, 0.0, 0, {}
    while total < seconds:
        # jobs per round: enough for the seconds still missing (~3 s each), so little is thrown away
        window = max(workers, min(16 * workers, math.ceil((seconds - total) / 3.0)))
        jobs = [(seed, split, index + k, speakers) for k in range(window)]
        results = pool.map(utterance, jobs, chunksize=max(1, window // (4 * workers))) if pool else map(utterance, jobs)
        for speaker_id, text, flac, duration in results:
            index += 1
            # chapters: blocks of 100 utterances; split offsets keep chapter ids unique across subsets
            chapter = {"train": 100000, "dev": 700000, "test": 800000}[split] + (index - 1) // 100
            n = counters.get((speaker_id, chapter), 0)
            counters[(speaker_id, chapter)] = n + 1
            utt_id = f"{speaker_id}-{chapter}-{n:04d}"
            folder = os.path.join(out_dir, split, str(speaker_id), str(chapter))
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, utt_id + ".flac"), "wb") as f:
                f.write(flac)
            transcripts.setdefault(folder, []).append(f"{utt_id} {text.upper()}")
            total += duration
            bar.update(duration)
            if total >= seconds:
                break
    for folder, lines in transcripts.items():
        speaker_id, chapter = folder.split(os.sep)[-2:]
        with open(os.path.join(folder, f"{speaker_id}-{chapter}.trans.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return dict(utterances=index, seconds=round(total, 2))


class OneLineErrors(argparse.ArgumentParser):
    """argparse, its errors in one line instead of the whole usage (which --help prints)."""

    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


def usage_error(message: str):
    """A bad option found before anything is written: one line on stderr, exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv=None):
    from tqdm import tqdm

    p = OneLineErrors(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="data/synthetic_src", help="corpus root; train/, dev/, test/ go inside")
    p.add_argument("--hours", type=float, default=2.0, help="total audio (fractions fine: 0.01 = 36 s)")
    p.add_argument("--dev-fraction", type=float, default=0.05)
    p.add_argument("--test-fraction", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--overwrite", action="store_true", help="delete existing train/dev/test under --out first")
    args = p.parse_args(argv)
    # every option is checked before anything is written or synthesised
    if not (math.isfinite(args.hours * 3600) and args.hours > 0):
        usage_error(f"--hours must be a positive number, got {args.hours}")
    if args.workers < 1:  # 0 once hung before the first utterance
        usage_error(f"--workers must be at least 1, got {args.workers}")
    fractions = (args.dev_fraction, args.test_fraction)
    if not all(math.isfinite(f) and f >= 0 for f in fractions) or sum(fractions) >= 1:
        usage_error(f"--dev-fraction {args.dev_fraction} and --test-fraction {args.test_fraction} must not be "
                    "negative and must leave audio for train (their sum below 1)")
    for split in SPLITS:
        path = os.path.join(args.out, split)
        if os.path.exists(path) and not args.overwrite:
            usage_error(f"{path}: already exists; pass --overwrite to replace it")
    try:  # the output directory must take files before anything is deleted or made
        os.makedirs(args.out, exist_ok=True)
        probe = os.path.join(args.out, f".write-test-{os.getpid()}")
        open(probe, "wb").close()
        os.remove(probe)
    except OSError as e:
        usage_error(f"{args.out}: output directory is not writable ({e.strerror})")
    for split in SPLITS:
        if os.path.exists(os.path.join(args.out, split)):
            shutil.rmtree(os.path.join(args.out, split))

    total = args.hours * 3600
    targets = {"dev": total * args.dev_fraction, "test": total * args.test_fraction}
    targets["train"] = total - targets["dev"] - targets["test"]
    t0 = time.time()
    stats = {}
    # concurrent.futures, not multiprocessing.Pool: a worker killed (OOM, kill -9) fails the run at once
    # instead of leaving it waiting forever for that worker's utterances
    pool = ProcessPoolExecutor(args.workers, mp_context=get_context("fork")) if args.workers > 1 else None
    try:
        with tqdm(total=round(total), unit="s", unit_scale=True, desc="seconds of audio", dynamic_ncols=True) as bar:
            for split in SPLITS:
                stats[split] = generate_split(args.out, split, targets[split], args.seed, pool, args.workers, bar)
    except BrokenProcessPool:
        raise SystemExit(f"error: {args.out}: a worker process died (out of memory? killed?); the corpus is "
                         "incomplete: run again with --overwrite") from None
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    elapsed = time.time() - t0
    n = sum(s["utterances"] for s in stats.values())
    seconds = sum(s["seconds"] for s in stats.values())
    info = dict(seed=args.seed, hours=args.hours, splits=stats, speakers=make_speakers(args.seed),
                held_out_voice=HELD_OUT_VOICE, held_out_speaker=9000)
    with open(os.path.join(args.out, "synthetic.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(f"{n} utterances, {seconds / 3600:.3f} h of audio in {elapsed:.1f} s with {args.workers} workers: "
          f"{n / elapsed:.1f} utt/s, {n / elapsed / args.workers:.1f} utt/s per core, "
          f"{seconds / elapsed:.0f}x real time -> {args.out}")


if __name__ == "__main__":
    main()
