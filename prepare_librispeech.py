"""
A speech corpus -> training shards of log-mels and token ids, read by data.py's ShardLoader.

    python prepare_librispeech.py --librispeech-dir ~/LibriSpeech --out data/librispeech
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

Every utterance either lands in a shard or in meta.json's `skipped` list with its reason (and the
first few on stderr): audio that can't be loaded (missing, corrupt, NaN or infinite samples), a
transcript line that is not UTF-8 (named by file and line, never guessed at), no transcript, empty
text, over 30 s, over 448 tokens. Runs are deterministic and resumable: re-running after a kill redoes
only the shards without a .json, and removes the temporaries the killed writes left. A worker process
that dies (the OOM killer, kill -9) costs its unfinished items one more try in a fresh pool; if that
dies too, the run stops with a one-line error and the next run resumes from the finished shards.
Bad options stop the run before any work with a one-line error (exit code 2).
"""
import argparse
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

from audio import (N_FRAMES, N_SAMPLES, SAMPLE_RATE, AudioError, load_audio, log_mel_spectrogram, pad_or_trim,
                   silence_value)
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
    texts, audio, bad_lines = {}, {}, {}
    for f in sorted(os.listdir(chapter)):
        path = os.path.join(chapter, f)
        if f.endswith(".trans.txt"):
            lines, problems = read_transcript(path)
            for _, uid, text in lines:
                texts[uid] = (text, path)
            for problem in problems:  # a line we can't read skips its utterance, listed with the reason
                bad_lines[problem["id"] or f"{f}:{problem['line']}"] = problem
        elif f.endswith(AUDIO_EXTENSIONS):
            audio[os.path.splitext(f)[0]] = path
    items = []
    for uid in sorted(set(texts) | set(audio) | set(bad_lines)):
        item = dict(id=uid, split=split, audio=audio.get(uid), text=texts.get(uid, ("", None))[0])
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
            yield dict(id=uid, split=item_split, audio=audio, text=row[text_column] or "",
                       source=f"{name}/{config or ''}/{hf_split}#{i}" + (f" ({path})" if path else ""))


# --------------------------------------------------------------------------------------------------
# one utterance -> stored frames (the worker)

_cfg = {}


def init_worker(cfg: dict, parent: int = None):
    torch.set_num_threads(1)  # cores are used by processes; one thread also keeps results bit-identical
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


def process(item):
    """-> (entry, fp16 frames [frames, n_mels]) or (skip record, None)."""
    from tokenizer import get_tokenizer

    def skip(reason, detail):
        return dict(id=item["id"], split=item["split"], reason=reason, detail=detail), None

    try:
        audio = decode(item)
    except AudioError as e:
        return skip("undecodable audio", str(e))
    duration = len(audio) / SAMPLE_RATE
    if len(audio) > N_SAMPLES:
        return skip("audio over 30 s", f"{item['source']}: {duration:.2f} s")
    text = normalise_text(item["text"], _cfg["text_case"])
    if not text:
        return skip("empty text", item["source"])
    tokenizer = get_tokenizer(_cfg["multilingual"])
    tokens = [*tokenizer.sot_sequence_including_notimestamps, *tokenizer.encode(" " + text), tokenizer.eot]
    if len(tokens) > MAX_TOKENS:
        return skip("over 448 tokens", f"{item['source']}: {len(tokens)} tokens")

    mel = log_mel_spectrogram(pad_or_trim(audio), n_mels=_cfg["n_mels"]).numpy()  # [n_mels, 3000]
    silence = silence_value(float(mel.max()))
    if len(audio) < N_SAMPLES - 400:  # the last frames see only zeros: they are the padding value
        # stored exactly as computed: in float32 it can be one ulp from `silence`, and the loader must
        # rebuild the window bit for bit
        pad = mel[:, -1]
        if not ((pad == pad[0]).all() and abs(float(pad[0]) - silence) < 1e-5):  # NaN fails this too
            return skip("unexpected log-mel", f"{item['source']}: the padding's log-mel is {float(pad.min())}.."
                                              f"{float(pad.max())}, not the silence value {silence:.6f}")
        differs = np.flatnonzero((mel != pad[0]).any(axis=0))
        frames, pad = (int(differs[-1]) + 1 if len(differs) else 1), float(pad[0])
    else:  # (almost) no padding in the window: keep all frames; pad = mel of silence for this peak
        frames, pad = N_FRAMES, silence
    entry = dict(id=item["id"], duration=round(duration, 4), frames=frames, pad=pad, tokens=tokens, text=text)
    return entry, np.ascontiguousarray(mel[:, :frames].T, dtype=np.float16)


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
    bar = tqdm(total=total, unit="utt", desc=f"preparing {source}", dynamic_ncols=True, smoothing=0.05)

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


class OneLineErrors(argparse.ArgumentParser):
    """argparse, its errors in one line instead of the whole usage (which --help prints)."""

    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


class OptionError(ValueError):
    """An option that turns out wrong only once the data is open (an HF column that isn't there)."""


def usage_error(message: str):
    """A bad option or input found before any work: one line on stderr, exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def writable_dir(path: str) -> str:
    """Create `path` if need be and prove it takes files, or a usage error naming it."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write-test-{os.getpid()}")
        open(probe, "wb").close()
        os.remove(probe)
    except OSError as e:
        usage_error(f"{path}: output directory is not writable ({e.strerror})")
    return path


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
    p.add_argument("--shard-size", type=int, default=1000, help="utterances per shard")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)

    # every option is checked before any work: a typo costs a line, not an hour of a half-made corpus
    if not (math.isfinite(args.val_fraction) and 0 <= args.val_fraction < 1):
        usage_error(f"--val-fraction must be at least 0 and below 1, got {args.val_fraction}")
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
    out = writable_dir(args.out or os.path.join("data", source))
    if args.hf is not None:
        items = hf_items(args.hf, args.hf_config, splits, args.text_column, args.audio_column,
                         args.streaming, args.val_fraction)
        total = None
        described = dict(hf=args.hf, hf_config=args.hf_config, hf_split=splits, text_column=args.text_column)
    cfg = dict(n_mels=args.n_mels, multilingual=args.multilingual, text_case=args.text_case)
    from tokenizer import get_tokenizer

    tokenizer = get_tokenizer(args.multilingual)
    config = dict(cfg, source=described, val_fraction=args.val_fraction, shard_size=args.shard_size,
                  tokenizer="multilingual" if args.multilingual else "gpt2 (English-only)",
                  n_vocab=tokenizer.encoding.n_vocab, eot=tokenizer.eot,
                  sot_sequence=list(tokenizer.sot_sequence_including_notimestamps))
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
        print(f"{split:5s}: {s['utterances']} utterances, {s['hours']:.3f} h, {s['shards']} shards")
    for reason, n in meta["skipped_counts"].items():
        print(f"skipped {n}: {reason}")
    print(f"{n_items} items in {elapsed:.1f} s ({n_items / max(elapsed, 1e-9):.1f}/s, "
          f"{n_items / max(elapsed, 1e-9) / args.workers:.1f}/s per worker) -> {out}")
    if not any(manifests.values()):
        what = args.librispeech_dir or args.hf
        raise SystemExit(f"error: {what}: nothing usable; all {n_items} items were skipped (see {out}/meta.json)")


if __name__ == "__main__":
    main()
