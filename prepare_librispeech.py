"""
A speech corpus -> training shards of log-mels and token ids, read by data.py's ShardLoader.

    python prepare_librispeech.py --librispeech-dir ~/LibriSpeech --out data/librispeech --window-seconds 30
    python prepare_librispeech.py --hf openslr/librispeech_asr --hf-config clean --hf-split train.100,validation
    python prepare_librispeech.py --hf mozilla-foundation/common_voice_17_0 --hf-config en \\
        --hf-split train,validation --text-column sentence --out data/cv17

Sources: an extracted LibriSpeech directory (any subsets: the LibriSpeech/ root, a single subset, or a
directory of subsets such as prepare_synthetic.py's train/dev/test), openslr/librispeech_asr on the
HF hub, or any HF audio dataset with a text column (48 kHz Common Voice is resampled by load_audio).

Splits: subsets/splits named test* go to `test` (never used for training, kept for evaluation),
dev*/val* go to `val`, everything else to `train`. With no dev subset, a few whole speakers
(--val-fraction, chosen by a hash of the speaker id) are held out of train as `val`.

What is stored, and why. For each utterance we compute exactly what the model sees,
log_mel_spectrogram(pad_or_trim(audio)), a 30 s window of 3000 frames. Every frame past the end of
the speech is the same constant (the mel of silence after the clamp to max - 8, which depends on the
utterance's own peak), so we keep only the frames up to the last one that differs from it (the
speech plus the frames that straddle its end) in fp16, and that constant as `pad` in the manifest.
The loader fills the rest of the window with `pad` and gets the padded mel back to within fp16
rounding (< 1e-3), ~2.5x smaller on disk than storing 3000 frames. Storing the mel of the unpadded
audio and padding later would be wrong: the frames at the end differ, and so does the padding.

Output (data/<name>/): <split>/NNNNN.npy (fp16 [frames, n_mels], utterances back to back, memory-mapped
by the loader) and <split>/NNNNN.json (its entries and skipped items, written last, so a shard is done
once its .json exists); <split>.jsonl, the manifest (id, duration, shard, offset, frames, pad,
tokens, text); meta.json (settings, counts, hours, every skipped item with its reason).

Tokens are the training targets `<|startoftranscript|> <|notimestamps|> text <|endoftext|>` (English-only
vocabulary; --multilingual adds <|en|> <|transcribe|>), with the text after a space as Whisper emits it.
ALL-CAPS transcripts (LibriSpeech, the synthetic corpus) become sentence case ("He hoped there would
be stew"): Whisper's vocabulary and pretrained models are cased, and GPT-2 BPE splits capitals into
~1.8x more tokens. Cased text (Common Voice) is kept as written. --text-case lower|keep overrides.

Windows (--window-seconds S, Whisper's training examples; S is the model's window: 30 s for
n_audio_ctx 1500, 7 s for 350). Instead of one utterance an entry, each entry is a window of S
seconds of consecutive utterances of one chapter (sorted by id), with their pauses: the silences at
their edges. Its mel is the log-mel of the window's own audio, since the clamp to max - 8 depends on
all of it (side by side, the utterances' own mels would be wrong). It stores the segments (start and
end of each utterance's speech in seconds from the window's start: words.jsonl's span for the
synthetic corpus, the audio's energy for LibriSpeech; and its text tokens), the start of an
utterance the window's end cuts (Whisper's lone last timestamp; the next window starts with it) and
the frame where its audio starts, and the previous window's text tokens (the prompt). data.py
builds the targets from these (timestamps or not, prompt or not, drawn per window). Utterances
longer than the window are skipped. HF rows are grouped into chapters by speaker_id and chapter_id
where the dataset has both (LibriSpeech); otherwise each utterance is a chapter of its own.

Every utterance either lands in a shard or in meta.json's `skipped` list with its reason (and the
first few on stderr): audio that can't be loaded (missing, corrupt, NaN or infinite samples), a
transcript line that is not UTF-8 (named by file and line, never guessed at), no transcript, empty
text, over 30 s, over 448 tokens. Runs are deterministic and resumable: re-running after a kill redoes
only the shards without a .json, and removes the temporaries the killed writes left. A worker process
that dies (the OOM killer, kill -9) costs its unfinished items one more try in a fresh pool; if that
dies too, the run stops with a one-line error and the next run resumes from the finished shards.
Bad options stop the run before any work with a one-line error (exit code 2).
"""
import ctypes
import hashlib
import json
import math
import os
import re
import signal
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

import numpy as np
import torch

from audio import (N_SAMPLES, SAMPLE_RATE, AudioError, load_audio, log_mel_spectrogram, pad_or_trim,
                   silence_value)
from cli import OneLineErrors, unwritable, usage_error
from data import MAX_TOKENS, load_shard, read_transcript, save_shard, write_json, write_outputs
from files import remove_stale_temps

AUDIO_EXTENSIONS = (".flac", ".wav")
MAX_LISTED = 20  # skipped items named on stderr at the end; meta.json lists them all

# --------------------------------------------------------------------------------------------------
# text


def normalise_text(text: str, case: str = "sentence") -> str:
    """Collapse whitespace; with case="sentence", ALL-CAPS text becomes "Sentence case, with I"."""
    text = " ".join(str(text or "").split())
    if case == "lower":
        return text.lower()
    if case == "sentence" and not any(c.islower() for c in text):
        text = re.sub(r"\bi\b", "I", text.lower())  # the pronoun, also in I'm, I'll, I've
        text = text[:1].upper() + text[1:]
    return text


def split_of(name: str) -> str:
    """LibriSpeech subset or HF split name -> our split. Test data is never training data."""
    name = name.lower()
    if name.startswith("test"):
        return "test"
    if name.startswith(("dev", "val")):
        return "val"
    return "train"


def _hash(x) -> int:
    return int.from_bytes(hashlib.sha1(str(x).encode()).digest()[:8], "big")


def pick_val_speakers(speakers, fraction: float) -> set:
    """Whole speakers held out for validation: the first ceil(fraction * n) by hash (>= 1 if n > 1)."""
    ranked = sorted(set(speakers), key=_hash)
    n = max(1, math.ceil(fraction * len(ranked))) if len(ranked) > 1 and fraction > 0 else 0
    return set(ranked[:n])


# --------------------------------------------------------------------------------------------------
# sources: each yields items {"id", "split", "audio", "text", "source"} in a fixed order; an item
# with a "skip" reason is reported and not processed


def librispeech_subsets(root: str) -> list:
    """(name, path) of every LibriSpeech-layout subset at or directly under `root`."""
    def is_subset(path):
        chapters = (chap for speaker in _subdirs(path) for chap in _subdirs(speaker))
        return any(f.endswith(".trans.txt") for chap in chapters for f in os.listdir(chap))

    if is_subset(root):
        return [(os.path.basename(os.path.normpath(root)), root)]
    return [(os.path.basename(d), d) for d in _subdirs(root) if is_subset(d)]


def _subdirs(path: str) -> list:
    return sorted(os.path.join(path, d) for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))


def librispeech_items(root: str, val_fraction: float):
    """Items of every subset under root in sorted order, and the speakers held out of train for val."""
    subsets = librispeech_subsets(root)
    if not subsets:
        raise ValueError(f"{root}: no LibriSpeech-layout subset (<speaker>/<chapter>/*.trans.txt) found")
    has_val = any(split_of(name) == "val" for name, _ in subsets)
    train_speakers = [os.path.basename(s) for name, d in subsets if split_of(name) == "train" for s in _subdirs(d)]
    val_speakers = set() if has_val else pick_val_speakers(train_speakers, val_fraction)
    items = []
    for name, subset in subsets:
        for speaker_dir in _subdirs(subset):
            speaker = os.path.basename(speaker_dir)
            split = split_of(name)
            split = "val" if split == "train" and speaker in val_speakers else split
            for chapter in _subdirs(speaker_dir):
                items.extend(_chapter_items(chapter, split))
    return items, sorted(val_speakers)


def _chapter_items(chapter: str, split: str) -> list:
    texts, audio, bad_lines, speech = {}, {}, {}, {}
    for f in sorted(os.listdir(chapter)):
        path = os.path.join(chapter, f)
        if f.endswith(".words.jsonl"):  # prepare_synthetic.py's: where each utterance's sound starts and stops
            speech.update(_speech_spans(path))
        elif f.endswith(".trans.txt"):
            lines, problems = read_transcript(path)
            for _, uid, text in lines:
                texts[uid] = (text, path)
            for problem in problems:  # a line we can't read skips its utterance, listed with the reason
                bad_lines[problem["id"] or f"{f}:{problem['line']}"] = problem
        elif f.endswith(AUDIO_EXTENSIONS):
            audio[os.path.splitext(f)[0]] = path
    items = []
    for uid in sorted(set(texts) | set(audio) | set(bad_lines)):
        item = dict(id=uid, split=split, audio=audio.get(uid), text=texts.get(uid, ("", None))[0], chapter=chapter)
        if uid in speech:
            item["speech"] = speech[uid]
        if uid in bad_lines and uid not in texts:
            item.update(skip=bad_lines[uid]["reason"], source=bad_lines[uid]["detail"])
        elif uid not in audio:
            item.update(skip="transcript line with no audio", source=texts[uid][1])
        elif uid not in texts:
            item.update(skip="audio with no transcript", source=audio[uid])
        else:
            item["source"] = audio[uid]
        items.append(item)
    return items


def _speech_spans(path: str) -> dict:
    """{utterance id: [start, end]} from a words.jsonl; a line that can't be read gives no span (the
    utterance then takes its span from the audio, as LibriSpeech's do)."""
    spans = {}
    with open(path, "rb") as f:
        for line in f:
            try:
                row = json.loads(line)
                start, end = (float(t) for t in row["speech"])
                if 0 <= start < end:
                    spans[str(row["id"])] = [start, end]
            except (ValueError, KeyError, TypeError):
                continue
    return spans


def hf_items(name, config, splits, text_column, audio_column, streaming, val_fraction):
    """Rows of an HF dataset as items; audio stays undecoded bytes/paths until a worker loads it."""
    import datasets

    has_val = any(split_of(s) == "val" for s in splits)
    for hf_split in splits:
        try:
            ds = datasets.load_dataset(name, config, split=hf_split, streaming=streaming)
        except Exception as e:  # not found, no network, a bad config or split name: datasets says which
            raise SystemExit(f"error: {name} ({config or 'default'}, {hf_split}): cannot load "
                             f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})")
        columns = list(ds.features) if ds.features else []
        for needed in (text_column, audio_column):
            if columns and needed not in columns:
                raise OptionError(f"{name} ({hf_split}): no column {needed!r}; columns are {', '.join(columns)}")
        speaker_col = next((c for c in ("speaker_id", "client_id", "speaker") if c in columns), None)
        if isinstance(ds.features.get(audio_column) if ds.features else None, datasets.Audio):
            ds = ds.cast_column(audio_column, datasets.Audio(decode=False))  # we decode with load_audio
        split = split_of(hf_split)
        val_speakers = None  # None: decide per speaker (or utterance) by hash, as a stream must
        if split == "train" and not has_val and speaker_col and not streaming:
            val_speakers = pick_val_speakers(ds[speaker_col], val_fraction)
        for i, row in enumerate(ds):
            audio = row[audio_column]
            path = audio.get("path") if isinstance(audio, dict) else audio
            uid = str(row.get("id") or (os.path.splitext(os.path.basename(path))[0] if path else f"{hf_split}-{i:08d}"))
            item_split = split
            if split == "train" and not has_val:
                key = row[speaker_col] if speaker_col else uid
                held = key in val_speakers if val_speakers is not None else _hash(key) < val_fraction * 2**64
                item_split = "val" if held else "train"
            # LibriSpeech's rows name their chapter; other datasets' utterances are chapters of their own
            chapter = (f"{row['speaker_id']}-{row['chapter_id']}" if "chapter_id" in columns and "speaker_id" in columns
                       else uid)
            yield dict(id=uid, split=item_split, audio=audio, text=row[text_column] or "", chapter=chapter,
                       source=f"{name}/{config or ''}/{hf_split}#{i}" + (f" ({path})" if path else ""))


def chapters(items):
    """Items -> chapter items {"id", "split", "utterances": [items sorted by id], "source"}, one per run
    of consecutive items of the same split and chapter (a chapter an HF dataset splits up becomes
    several). Items with a "skip" reason pass through as they are."""
    def flush(group):
        group = sorted(group, key=lambda it: it["id"])
        return dict(id=f"{group[0]['id']}..{group[-1]['id']}", split=group[0]["split"], utterances=group,
                    source=str(group[0]["chapter"]))

    group = []
    for item in items:
        if "skip" in item:
            yield item
            continue
        if group and (item["split"], item["chapter"]) != (group[0]["split"], group[0]["chapter"]):
            yield flush(group)
            group = []
        group.append(item)
    if group:
        yield flush(group)


# --------------------------------------------------------------------------------------------------
# one utterance -> stored frames (the worker)

_cfg = {}


def init_worker(cfg: dict, parent: int = None):
    torch.set_num_threads(1)  # cores are used by processes; one thread also keeps results bit-identical
    _cfg.clear()  # a second run in one process (tests, a notebook) must not keep the first one's options
    _cfg.update(cfg)
    if parent is not None:
        die_with(parent)


def die_with(parent: int):
    """A worker whose main process is killed (kill -9, OOM) would wait for work forever, holding its
    memory: on Linux the kernel kills it along with the parent (PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: no such guard
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def decode(item) -> np.ndarray:
    audio = item["audio"]
    if isinstance(audio, (str, os.PathLike)):
        return load_audio(audio)
    if isinstance(audio, dict) and audio.get("bytes"):
        # load_audio reads files; a temp file keeps it the repo's one decoder (and resampler)
        suffix = os.path.splitext(audio.get("path") or "")[1] or ".audio"
        with tempfile.NamedTemporaryFile(suffix=suffix) as f:
            f.write(audio["bytes"])
            f.flush()
            try:
                return load_audio(f.name)
            except AudioError as e:
                raise AudioError(str(e).replace(f.name, item["source"])) from None
    if isinstance(audio, dict) and audio.get("path") and os.path.isfile(audio["path"]):
        return load_audio(audio["path"])
    raise AudioError(f"{item['source']}: no audio bytes or file")


def usable(item, max_samples: int, too_long: str, limit: str = ""):
    """((audio, text), None) for an utterance that can be trained on, else (None, (reason, detail))."""
    try:
        audio = decode(item)
    except AudioError as e:
        return None, ("undecodable audio", str(e))
    if len(audio) > max_samples:
        return None, (too_long, f"{item['source']}: {len(audio) / SAMPLE_RATE:.2f} s{limit}")
    text = normalise_text(item["text"], _cfg["text_case"])
    if not text:
        return None, ("empty text", item["source"])
    return (audio, text), None


def process(item):
    """-> (entry, fp16 frames [frames, n_mels]) or (skip record, None); a chapter item -> a list of those."""
    if "utterances" in item:
        return process_chapter(item)
    from tokenizer import get_tokenizer

    def skip(reason, detail):
        return dict(id=item["id"], split=item["split"], reason=reason, detail=detail), None

    found, problem = usable(item, N_SAMPLES, "audio over 30 s")
    if problem:
        return skip(*problem)
    audio, text = found
    duration = len(audio) / SAMPLE_RATE
    tokenizer = get_tokenizer(_cfg["multilingual"])
    tokens = [*tokenizer.sot_sequence_including_notimestamps, *tokenizer.encode(" " + text), tokenizer.eot]
    if len(tokens) > MAX_TOKENS:
        return skip("over 448 tokens", f"{item['source']}: {len(tokens)} tokens")
    try:
        mel, frames, pad = stored_frames(audio, N_SAMPLES, item["source"])
    except ValueError as e:
        return skip("unexpected log-mel", str(e))
    entry = dict(id=item["id"], duration=round(duration, 4), frames=frames, pad=pad, tokens=tokens, text=text)
    return entry, mel


def stored_frames(audio: np.ndarray, n_samples: int, source: str) -> tuple:
    """The log-mel of `audio` padded with zeros to a window of n_samples, as (fp16 frames [frames,
    n_mels] up to the last one that differs from the padding's, frames, pad: that padding value)."""
    mel = log_mel_spectrogram(pad_or_trim(audio, n_samples), n_mels=_cfg["n_mels"]).numpy()  # [n_mels, window]
    silence = silence_value(float(mel.max()))
    if len(audio) < n_samples - 400:  # the last frames see only zeros: they are the padding value
        # stored exactly as computed: in float32 it can be one ulp from `silence`, and the loader must
        # rebuild the window bit for bit
        pad = mel[:, -1]
        if not ((pad == pad[0]).all() and abs(float(pad[0]) - silence) < 1e-5):  # NaN fails this too
            raise ValueError(f"{source}: the padding's log-mel is {float(pad.min())}..{float(pad.max())}, "
                             f"not the silence value {silence:.6f}")
        differs = np.flatnonzero((mel != pad[0]).any(axis=0))
        frames, pad = (int(differs[-1]) + 1 if len(differs) else 1), float(pad[0])
    else:  # (almost) no padding in the window: keep all frames; pad = mel of silence for this peak
        frames, pad = mel.shape[1], silence
    return np.ascontiguousarray(mel[:, :frames].T, dtype=np.float16), frames, pad


def speech_span(audio: np.ndarray) -> list:
    """[start, end] in seconds: the first and last 10 ms frame within 40 dB of the loudest one (the
    synthetic corpus' words.jsonl defines its spans the same way), or the whole clip if silent."""
    hop = SAMPLE_RATE // 100
    n = len(audio) // hop
    if n == 0:
        return [0.0, len(audio) / SAMPLE_RATE]
    energy = (audio[: n * hop].astype(np.float64).reshape(n, hop) ** 2).mean(axis=1)
    loud = np.flatnonzero(energy >= energy.max() * 1e-4) if energy.max() > 0 else np.arange(n)
    return [loud[0] * hop / SAMPLE_RATE, min(len(audio), (loud[-1] + 1) * hop) / SAMPLE_RATE]


def process_chapter(chapter: dict) -> list:
    """A chapter's utterances, in order, in windows of window_seconds, each Whisper's kind of training
    example; -> [(window entry, fp16 frames) or (skip record, None)].

    A window starts where an utterance starts and takes the utterances that follow while they fit
    whole, with the silences at their edges (their pauses). Where the next one is cut by the window's
    end, the window's audio runs on to the end with that utterance's beginning, and the entry records
    its start (`cut`, the timestamp Whisper ends such a window with) and where its audio starts
    (`cut_frame`); the next window starts with that utterance. A cut whose speech starts only after
    the window's end is no cut (nothing of it is heard). Segments are [start, end, text tokens], the
    span of each utterance's speech in seconds from the window's start: from words.jsonl where the
    corpus has one, else from the audio (speech_span). `prev` is the previous window's text tokens,
    the prompt the loader may put before the target. The mel is that of the window's own audio, as
    the dynamic-range clamp (max - 8) depends on the whole window."""
    from tokenizer import get_tokenizer

    tokenizer = get_tokenizer(_cfg["multilingual"])
    window = int(round(_cfg["window_seconds"] * SAMPLE_RATE))
    results, utterances = [], []
    for item in chapter["utterances"]:
        result = process_utterance(item, tokenizer, window)
        if result[1] is None:
            results.append(result)
        else:
            utterances.append(result[0])
    most = _cfg.get("utterances_per_window") or len(utterances)
    previous, i = [], 0
    while i < len(utterances):
        pieces, segments, offset, j = [], [], 0, i
        while j < len(utterances) and j - i < most and offset + len(utterances[j]["audio"]) <= window:
            u = utterances[j]
            start, end = (offset / SAMPLE_RATE + t for t in u["speech"])
            segments.append([round(start, 3), round(end, 3), u["tokens"]])
            pieces.append(u["audio"])
            offset += len(u["audio"])
            j += 1
        cut = cut_frame = None
        if j < len(utterances) and j - i < most and offset < window:
            u = utterances[j]
            pieces.append(u["audio"][: window - offset])
            if offset / SAMPLE_RATE + u["speech"][0] < window / SAMPLE_RATE - 0.02:  # some of its speech is heard
                cut, cut_frame = round(offset / SAMPLE_RATE + u["speech"][0], 3), offset // (SAMPLE_RATE // 100)
        audio = np.concatenate(pieces)
        ids = [u["id"] for u in utterances[i:j]]
        window_id = f"{ids[0]}+{len(ids)}"
        target = sum(3 + len(tokens) for *_, tokens in segments) + 1  # timestamps, text, cut, eot
        if target + len(tokenizer.sot_sequence) > MAX_TOKENS:
            results.append((dict(id=window_id, split=chapter["split"], reason="over 448 tokens",
                                 detail=f"{chapter['source']}: window of {', '.join(ids)}"), None))
        else:
            try:
                mel, frames, pad = stored_frames(audio, window, f"{chapter['source']}: window of {', '.join(ids)}")
                text = " ".join(u["text"] for u in utterances[i:j])
                entry = dict(id=window_id, duration=round(len(audio) / SAMPLE_RATE, 4), frames=frames, pad=pad,
                             segments=segments, cut=cut, cut_frame=cut_frame, prev=previous[-(MAX_TOKENS // 2 - 1):],
                             text=text, utterances=ids)
                results.append((entry, mel))
            except ValueError as e:
                results.append((dict(id=window_id, split=chapter["split"], reason="unexpected log-mel",
                                     detail=str(e)), None))
        previous = [t for *_, tokens in segments for t in tokens]
        i = j
    return results


def process_utterance(item: dict, tokenizer, window: int) -> tuple:
    """One utterance of a chapter -> ({id, audio, text, tokens, speech}, True) or (skip record, None)."""
    found, problem = usable(item, window, "audio over the window", f", the window is {window / SAMPLE_RATE:g} s")
    if problem:
        return dict(id=item["id"], split=item["split"], reason=problem[0], detail=problem[1]), None
    audio, text = found
    duration = len(audio) / SAMPLE_RATE
    speech = item.get("speech") or speech_span(audio)
    speech = [min(max(0.0, speech[0]), duration), min(max(speech[0], speech[1]), duration)]
    return dict(id=item["id"], audio=audio, text=text, tokens=tokenizer.encode(" " + text), speech=speech), True


# --------------------------------------------------------------------------------------------------
# shards


def start_pool(workers: int, cfg: dict) -> ProcessPoolExecutor:
    """`workers` forked processes that run `process`. concurrent.futures, not multiprocessing.Pool: when
    a worker dies (the OOM killer, kill -9) every item it had not returned fails at once with
    BrokenProcessPool, where multiprocessing.Pool would wait for them forever."""
    pool = ProcessPoolExecutor(workers, mp_context=get_context("fork"), initializer=init_worker,
                               initargs=(cfg, os.getpid()))
    try:
        pool.submit(os.getpid).result()  # fork them all now, before this process starts threads of its own
    except BrokenProcessPool:
        raise SystemExit(f"error: {workers} worker processes could not start (out of memory?); "
                         "try fewer --workers") from None
    return pool


def run_items(pool, items: list, bar) -> list:
    """process() over items in order, on the pool or (pool None) here; None for each item a dead worker lost."""
    if pool is None:
        results = []
        for item in items:
            results.append(process(item))
            bar.update()
        return results
    futures = []
    for item in items:
        try:
            futures.append(pool.submit(process, item))
        except BrokenProcessPool:  # it broke while we were still handing out the shard
            futures.append(None)
    results = []
    for future in futures:
        try:
            results.append(future.result() if future is not None else None)
        except BrokenProcessPool:
            results.append(None)
        bar.update()
    return results


def prepare(items, out: str, cfg: dict, workers: int, shard_size: int, total=None, source=""):
    """Shard a stream of items into out/; returns (manifests per split, skipped list).

    If a worker process dies, the items it took with it (every unfinished item of the shard: the pool
    stops the other workers too) are reported on stderr and run once more in a fresh pool. If that pool
    dies as well, the run stops with a one-line error; the finished shards stay, so a rerun resumes."""
    from tqdm import tqdm

    remove_stale_temps(out)  # writes a kill interrupted: never read, and never left to pile up
    for split in ("train", "val", "test"):
        os.makedirs(os.path.join(out, split), exist_ok=True)
        remove_stale_temps(os.path.join(out, split))
    # fork the workers first, while this process has no threads (tqdm's monitor, HF streaming)
    pool = start_pool(workers, cfg) if workers > 1 else None
    threads = torch.get_num_threads()
    if pool is None:
        init_worker(cfg)
    manifests = {"train": [], "val": [], "test": []}
    skipped, buffers, n_shards = [], {"train": [], "val": [], "test": []}, {"train": 0, "val": 0, "test": 0}
    bar = tqdm(total=total, unit="chapter" if cfg.get("window_seconds") else "utt", desc=f"preparing {source}",
               dynamic_ncols=True, smoothing=0.05)

    def flush(split):
        nonlocal pool
        shard_items, index = buffers[split], n_shards[split]
        buffers[split], n_shards[split] = [], index + 1
        try:
            done = load_shard(out, split, index, shard_items)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
        if done is None:
            results = run_items(pool, shard_items, bar)
            lost = [i for i, r in enumerate(results) if r is None]
            if lost:
                shard = os.path.join(out, split, f"{index:05d}")
                ids = ", ".join(shard_items[i]["id"] for i in lost[:5]) + (", ..." if len(lost) > 5 else "")
                tqdm.write(f"warning: {shard}: a worker process died (out of memory? killed?); running its "
                           f"{len(lost)} unfinished items ({ids}) again in a fresh pool", file=sys.stderr)
                pool.shutdown(wait=True)
                # this fork can no longer precede every thread (tqdm's monitor may run): a rare path
                pool = start_pool(workers, cfg)
                again = run_items(pool, [shard_items[i] for i in lost], bar)
                if any(r is None for r in again):
                    twice = [shard_items[i]["id"] for i, r in zip(lost, again) if r is None]
                    ids = ", ".join(twice[:5]) + (", ..." if len(twice) > 5 else "")
                    raise SystemExit(f"error: {shard}: worker processes died twice on the items {ids}; "
                                     f"the finished shards are kept, so a rerun resumes from here "
                                     f"(with more memory or fewer --workers if they ran out of it)")
                for i, result in zip(lost, again):
                    results[i] = result
                bar.update(-len(lost))  # those were counted twice
            done = save_shard(out, split, index, shard_items, results)
        else:
            bar.update(len(shard_items))
        manifests[split].extend(done[0])
        skipped.extend(done[1])

    try:
        for item in items:
            if "skip" in item:
                skipped.append(dict(id=item["id"], split=item["split"], reason=item["skip"], detail=item["source"]))
                bar.update()
                continue
            buffers[item["split"]].append(item)
            if len(buffers[item["split"]]) == shard_size:
                flush(item["split"])
        for split in buffers:
            if buffers[split]:
                flush(split)
        if pool:
            pool.shutdown(wait=True)
    finally:
        bar.close()
        if pool:
            pool.shutdown(wait=False, cancel_futures=True)
        torch.set_num_threads(threads)
    return manifests, sorted(skipped, key=lambda s: (s["split"], s["id"], s["reason"]))


class OptionError(ValueError):
    """An option that turns out wrong only once the data is open (an HF column that isn't there)."""


def main(argv=None):
    p = OneLineErrors(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--librispeech-dir", help="extracted LibriSpeech (or a subset, or a dir of subsets)")
    src.add_argument("--hf", metavar="NAME", help="HF dataset, e.g. openslr/librispeech_asr")
    p.add_argument("--hf-config", default=None, help="e.g. clean, other, all (LibriSpeech); en (Common Voice)")
    p.add_argument("--hf-split", default="train", help="comma-separated, e.g. train.100,validation")
    p.add_argument("--text-column", default="text")
    p.add_argument("--audio-column", default="audio")
    p.add_argument("--streaming", action="store_true", help="stream the HF dataset instead of downloading it")
    p.add_argument("--out", default=None, help="output dir (default data/<name>)")
    p.add_argument("--n-mels", type=int, default=80, choices=(80, 128))
    p.add_argument("--multilingual", action="store_true", help="multilingual vocabulary (<|en|> <|transcribe|>)")
    p.add_argument("--text-case", default="sentence", choices=("sentence", "lower", "keep"))
    p.add_argument("--val-fraction", type=float, default=0.02, help="speakers held out when there is no dev split")
    p.add_argument("--window-seconds", type=float, default=0.0,
                   help="0: one utterance an entry, targets without timestamps; S: windows of S seconds (the model's: "
                        "30 for n_audio_ctx 1500, 7 for 350) of consecutive utterances with Whisper's timestamp targets")
    p.add_argument("--utterances-per-window", type=int, default=0,
                   help="with --window-seconds: at most this many utterances a window, and no cut one after them "
                        "(0: as many as fit). 1 gives one utterance a window with its timestamps, whose length varies, "
                        "so that train.py's bucket cuts each batch short: the cheap steps a CPU needs")
    p.add_argument("--shard-size", type=int, default=None, help="utterances (chapters with --window-seconds) per "
                                                                "shard; default 1000 (20)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)

    # every option is checked before any work: a typo costs a line, not an hour of a half-made corpus
    if not (math.isfinite(args.val_fraction) and 0 <= args.val_fraction < 1):
        usage_error(f"--val-fraction must be at least 0 and below 1, got {args.val_fraction}")
    if not (args.window_seconds == 0 or (1 <= args.window_seconds <= 30
                                         and math.isclose(args.window_seconds * 50, round(args.window_seconds * 50)))):
        usage_error(f"--window-seconds must be 0 or 1 to 30 in steps of 0.02 s (2 mel frames, one audio token), "
                    f"got {args.window_seconds}")
    if args.utterances_per_window < 0 or (args.utterances_per_window and not args.window_seconds):
        usage_error(f"--utterances-per-window must be at least 0 and needs --window-seconds, "
                    f"got {args.utterances_per_window}")
    if args.shard_size is None:
        args.shard_size = 20 if args.window_seconds else 1000
    if args.shard_size < 1:
        usage_error(f"--shard-size must be at least 1, got {args.shard_size}")
    if args.workers < 1:
        usage_error(f"--workers must be at least 1, got {args.workers}")
    if args.librispeech_dir is not None:
        root = os.path.abspath(args.librispeech_dir)
        if not os.path.isdir(root):
            usage_error(f"{args.librispeech_dir}: no such directory")
        source = os.path.basename(root.rstrip("/"))
    else:
        splits = [s.strip() for s in args.hf_split.split(",") if s.strip()]
        if not args.hf.strip() or not splits or not args.text_column or not args.audio_column:
            usage_error("--hf, --hf-split, --text-column and --audio-column must not be empty")
        try:
            import datasets  # noqa: F401
        except ImportError:
            usage_error("--hf needs the datasets package: pip install datasets")
        source = args.hf.split("/")[-1] + (f"_{args.hf_config}" if args.hf_config else "")
    if args.librispeech_dir is not None:
        try:
            items, val_speakers = librispeech_items(root, args.val_fraction)
        except ValueError as e:
            usage_error(str(e))
        total = len(items)
        described = dict(librispeech_dir=root, val_speakers=val_speakers)
    out = args.out or os.path.join("data", source)
    if problem := unwritable(out):
        usage_error(problem)
    if args.hf is not None:
        items = hf_items(args.hf, args.hf_config, splits, args.text_column, args.audio_column,
                         args.streaming, args.val_fraction)
        total = None
        described = dict(hf=args.hf, hf_config=args.hf_config, hf_split=splits, text_column=args.text_column)
    cfg = dict(n_mels=args.n_mels, multilingual=args.multilingual, text_case=args.text_case)
    if args.window_seconds:  # recorded only when set, so that corpora prepared before it still resume
        cfg["window_seconds"] = args.window_seconds
        if args.utterances_per_window:
            cfg["utterances_per_window"] = args.utterances_per_window
        items = chapters(items)
        if total is not None:  # a directory's items are a list: count its chapters for the progress bar
            items = list(items)
            total = len(items)
    from tokenizer import get_tokenizer

    tokenizer = get_tokenizer(args.multilingual)
    config = dict(cfg, source=described, val_fraction=args.val_fraction, shard_size=args.shard_size,
                  tokenizer="multilingual" if args.multilingual else "gpt2 (English-only)",
                  n_vocab=tokenizer.encoding.n_vocab, eot=tokenizer.eot,
                  sot_sequence=list(tokenizer.sot_sequence_including_notimestamps))
    if args.window_seconds:  # what data.window_tokens builds the targets from
        config["specials"] = dict(sot_sequence=list(tokenizer.sot_sequence), no_timestamps=tokenizer.no_timestamps,
                                  sot_prev=tokenizer.sot_prev, timestamp_begin=tokenizer.timestamp_begin)
    config_path = os.path.join(out, "config.json")
    if os.path.exists(config_path):  # resuming: only with the very same settings
        try:
            with open(config_path) as f:
                previous = json.load(f)
        except (OSError, ValueError) as e:
            usage_error(f"{config_path}: unreadable ({e}); delete {out} or choose another --out")
        if previous != json.loads(json.dumps(config)):
            usage_error(f"{config_path}: {out} was prepared with other settings; use another --out")
    write_json(config_path, config, indent=1)

    t0 = time.time()
    try:
        manifests, skipped = prepare(items, out, cfg, args.workers, args.shard_size, total, source)
    except OptionError as e:  # said here, once the progress bar has closed its line
        usage_error(str(e))
    meta = write_outputs(out, manifests, skipped, config)
    elapsed = time.time() - t0
    n_items = sum(len(m) for m in manifests.values()) + len(skipped)
    for s in skipped[:MAX_LISTED]:
        print(f"skipped {s['id']}: {s['reason']}: {s['detail']}", file=sys.stderr)
    if len(skipped) > MAX_LISTED:
        print(f"skipped {len(skipped) - MAX_LISTED} more: see {out}/meta.json", file=sys.stderr)
    for split, s in meta["splits"].items():
        print(f"{split:5s}: {s['utterances']} {'windows' if args.window_seconds else 'utterances'}, {s['hours']:.3f} h, "
              f"{s['shards']} shards")
    for reason, n in meta["skipped_counts"].items():
        print(f"skipped {n}: {reason}")
    print(f"{n_items} items in {elapsed:.1f} s ({n_items / max(elapsed, 1e-9):.1f}/s, "
          f"{n_items / max(elapsed, 1e-9) / args.workers:.1f}/s per worker) -> {out}")
    if not any(manifests.values()):
        what = args.librispeech_dir or args.hf
        raise SystemExit(f"error: {what}: nothing usable; all {n_items} items were skipped (see {out}/meta.json)")


if __name__ == "__main__":
    main()
