"""
The shard format: batches for training and evaluation from the shards prepare_librispeech.py makes,
and the writer of those shards (save_shard, write_outputs), so the format has one home.

    loader = ShardLoader("data/librispeech", "train", batch_size=16, rank=rank, world_size=world_size)
    mel, tokens_in, targets, rows = loader.next_batch()   # [B, n_mels, n_frames], [B, T], [B, T], B lists of entries
    loss = F.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=-100)

    for mel, tokens_in, targets, entries in iterate_batches("data/librispeech", "val", 16):  # in order
        ...

The mel of an utterance is rebuilt exactly as log_mel_spectrogram(pad_or_trim(audio))[:, :n_frames]:
its stored frames, then its `pad` value (the mel of silence for that utterance) to the end of the
window. A shorter window (n_frames < 3000, for a faster trainer) cannot hold utterances longer than
it: those are skipped, counted in `n_skipped_long`, and reported once; cutting them would leave
targets that describe audio the model never hears.

Packing (`pack=True`): a training row holds as many consecutive utterances of the shuffled order as
fit in the window, back to back, and their transcripts joined into one. Short clips then share a
window instead of each paying for its padding, and the model still sees silence at the end of every
row, as it will at eval.

Bucketing (`bucket=True`): the epoch's order is cut into pools of BUCKET_POOL batches, each pool is
sorted by length and cut into batches, and the batches are shuffled. A batch then holds clips of
similar length, and its window is cut to the longest of them plus BUCKET_MARGIN frames of silence,
rounded up to BUCKET_QUANTUM frames (never more than n_frames): a batch of 2 s clips costs 2.5 s of
encoder, not the full window. The order is still a permutation of the epoch, so resuming is unchanged.

Windows (prepare_librispeech.py --window-seconds): each entry is a window of consecutive utterances,
and its target is drawn per window from (seed, epoch, index) (target_modes): with timestamps
(`sot [lang task] <|t0|> text <|t1|> ... [<|t_cut|>] eot`) or without (`... notimestamps text eot`,
the cut utterance's audio silenced), and with the previous window's text as a prompt before it
(`<|startofprev|> prev ...`, its targets IGNORE_INDEX) or not. See window_tokens.

Tokens: each utterance's ids are `sot [lang task] notimestamps text eot`. tokens_in drops the last id,
targets drops the first, so position t predicts id t+1. Batches are padded to the longest sequence:
inputs with eot (any valid id works, it is masked), targets with -100, which cross_entropy ignores.
"""
import glob
import json
import os
import sys

import numpy as np
import torch

from audio import N_FRAMES, SAMPLE_RATE
from files import atomic_write

IGNORE_INDEX = -100
MAX_TOKENS = 448  # the decoder's context (n_text_ctx): no longer target can be trained on
BUCKET_POOL = 32  # batches sorted together: more gives tighter buckets and less randomness
BUCKET_MARGIN = 20  # mel frames of silence after the longest clip of a bucketed batch (0.2 s)
BUCKET_QUANTUM = 50  # bucketed windows are a multiple of 0.5 s: few distinct shapes
CTC_CHARS = " abcdefghijklmnopqrstuvwxyz'"  # train.py's CTC head's classes after class 0, the blank


def manifest(data_dir: str, split: str) -> list:
    """The split's entries in order: dicts with id, text, duration, shard, offset, frames, pad, tokens."""
    path = os.path.join(data_dir, f"{split}.jsonl")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no manifest; run prepare_librispeech.py --out {data_dir} to the end first")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_meta(data_dir: str) -> dict:
    path = os.path.join(data_dir, "meta.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: not found; run prepare_librispeech.py --out {data_dir} to the end first")
    with open(path) as f:
        return json.load(f)


class _Shards:
    """Memory-maps each shard's fp16 frames on first use; the OS page cache does the rest."""

    def __init__(self, data_dir: str, split: str):
        self.data_dir, self.split, self.open = data_dir, split, {}

    def frames(self, entry: dict) -> np.ndarray:
        shard = entry["shard"]
        if shard not in self.open:
            self.open[shard] = np.load(os.path.join(self.data_dir, self.split, f"{shard:05d}.npy"), mmap_mode="r")
        return self.open[shard][entry["offset"]: entry["offset"] + entry["frames"]]  # [frames, n_mels]


def collate(rows: list, shards: _Shards, n_mels: int, n_frames: int, eot: int = 50256, modes: list = None,
            specials: dict = None):
    """Rows -> (mel float32 [B, n_mels, n_frames], tokens_in int64 [B, T], targets int64 [B, T]).

    A row is one entry, or a list of entries packed into the window in order: their frames back to
    back, then the last one's silence value; their texts joined after the first one's special prefix.
    A window entry (prepare_librispeech.py --window-seconds) is a row of its own, and modes[i] =
    (timestamps, prompt) says which of its targets to build (window_tokens); without timestamps its
    cut utterance's audio becomes silence, since that target has no way to say where its text stops."""
    rows = [row if isinstance(row, list) else [row] for row in rows]
    ids, masked = [], []
    for i, row in enumerate(rows):
        if "segments" in row[0]:
            row_ids, n_masked = window_tokens(row[0], *modes[i], specials, eot)
        else:
            texts = [t for e in row[1:] for t in e["tokens"][_n_special(e["tokens"], eot):-1]]
            row_ids = row[0]["tokens"][:-1] + texts + [eot]
            n_masked = 0
        ids.append(row_ids)
        masked.append(n_masked)
    mel = torch.empty(len(rows), n_mels, n_frames)
    T = max(len(i) for i in ids) - 1
    tokens_in = torch.full((len(rows), T), eot, dtype=torch.long)
    targets = torch.full((len(rows), T), IGNORE_INDEX, dtype=torch.long)
    for i, row in enumerate(rows):
        mel[i].fill_(row[-1]["pad"])
        start = 0
        for e in row:
            frames = shards.frames(e)
            if "segments" in e and e["cut"] is not None and not modes[i][0]:
                frames = frames[: e["cut_frame"]]  # the rest stays the window's silence value
            mel[i, :, start: start + len(frames)] = torch.from_numpy(np.asarray(frames, dtype=np.float32).T)
            start += len(frames)
        row_ids = torch.tensor(ids[i], dtype=torch.long)
        tokens_in[i, : len(row_ids) - 1] = row_ids[:-1]
        targets[i, masked[i]: len(row_ids) - 1] = row_ids[1 + masked[i]:]
    return mel, tokens_in, targets


def window_tokens(entry: dict, timestamps: bool, prompt: bool, specials: dict, eot: int) -> tuple:
    """A window's token ids and how many of its first targets the loss ignores, as Whisper trained:

        [<|startofprev|> previous text] sot [lang task] <|t0|> text <|t1|> <|t2|> text <|t3|> [<|tc|>] eot
        [<|startofprev|> previous text] sot [lang task] <|notimestamps|> text text eot

    A timestamp is timestamp_begin + round(t / 0.02), t in seconds from the window's start; <|tc|> is
    the start of the utterance the window's end cuts, with no text, as Whisper ends such a window
    (the next window starts at that utterance). The previous text is the previous window's of the
    same chapter, its last tokens up to half the text context, as transcribe.py prompts; the loss
    ignores it and the sot that closes it (the model conditions on them, never predicts them)."""
    def stamp(t):
        return specials["timestamp_begin"] + round(t / 0.02)

    sot_sequence = list(specials["sot_sequence"])
    body = []
    for start, end, text in entry["segments"]:
        body += [stamp(start), *text, stamp(end)] if timestamps else text
    if timestamps and entry["cut"] is not None:
        body.append(stamp(entry["cut"]))
    target = sot_sequence + ([] if timestamps else [specials["no_timestamps"]]) + body + [eot]
    if not (prompt and entry["prev"]):
        return target, 0
    room = min(MAX_TOKENS // 2 - 1, MAX_TOKENS - 1 - len(target))
    previous = entry["prev"][-room:] if room > 0 else []
    return [specials["sot_prev"], *previous] + target, 1 + len(previous)


def target_modes(seed: int, epoch: int, indices, timestamp_probability: float, prompt_probability: float) -> list:
    """(timestamps, prompt) for each entry index: drawn from (seed, epoch, index) alone, so that the
    choice is the same whichever rank, batch or resumed run asks for it."""
    modes = []
    for index in indices:
        u = np.random.default_rng([seed, epoch, int(index)]).random(2)
        modes.append((bool(u[0] < timestamp_probability), bool(u[1] < prompt_probability)))
    return modes


def _n_special(tokens: list, eot: int) -> int:
    """Length of the sot [lang task] notimestamps prefix: every special id is >= eot, text ids are below."""
    return next(i for i, t in enumerate(tokens) if t < eot)


def _usable(data_dir, split, n_frames):
    entries = manifest(data_dir, split)
    usable = [e for e in entries if e["frames"] <= n_frames]
    n_long = len(entries) - len(usable)
    if n_long:
        print(f"data: {split}: skipping {n_long} of {len(entries)} utterances longer than {n_frames} frames")
    return usable, n_long


class ShardLoader:
    """Random batches from one split, reshuffled every epoch from `seed`, disjoint across DDP ranks.

    Every epoch is a fresh permutation of the split (seeded by seed and epoch), cut into world_size
    equal strided slices, one per rank; each rank walks its slice batch by batch and drops the last
    incomplete batch, so all ranks take the same number of steps per epoch. The position
    (epoch, step) is the whole state: state_dict()/load_state_dict() resume at the exact next batch.
    next_batch() returns (mel, tokens_in, targets, rows): rows[i] lists the manifest entries in row i
    (one, or several when packed), whose texts, frames and durations the trainer needs too.
    With pack=True a row takes utterances from the slice while they fit, so a batch holds a varying
    number of them, and the position is (epoch, index into the slice); a rank that reaches the end
    of its slice starts its next epoch within the batch.
    """

    def __init__(self, data_dir: str, split: str = "train", batch_size: int = 16, n_frames: int = 3000,
                 rank: int = 0, world_size: int = 1, seed: int = 1337, pack: bool = False, bucket: bool = False,
                 timestamp_probability: float = 1.0, prompt_probability: float = 0.0):
        meta = read_meta(data_dir)
        self.data_dir, self.split, self.batch_size, self.n_frames = data_dir, split, batch_size, n_frames
        self.rank, self.world_size, self.seed, self.pack, self.bucket = rank, world_size, seed, pack, bucket
        self.probabilities = (timestamp_probability, prompt_probability)
        if pack and bucket:
            raise ValueError("pack and bucket are two answers to the same padding; choose one")
        self.n_mels = meta["n_mels"]
        self.eot = meta["eot"]
        self.specials = check_window(meta, data_dir, n_frames)
        if pack and self.specials:
            raise ValueError(f"{data_dir}: its windows are full already; pack is for one utterance an entry")
        self.entries, self.n_skipped_long = _usable(data_dir, split, n_frames)
        self.per_rank = len(self.entries) // world_size
        if self.per_rank < batch_size:
            raise ValueError(f"{data_dir}: split {split!r} has {len(self.entries)} usable utterances, "
                             f"too few for batch_size {batch_size} x world_size {world_size}")
        self.steps_per_epoch = self.per_rank // batch_size
        self.shards = _Shards(data_dir, split)
        self.epoch, self.step, self.position = 0, 0, 0
        self._order = self._epoch_order(0)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.entries))[self.rank:: self.world_size][: self.per_rank]
        if not self.bucket:
            return order
        pool = BUCKET_POOL * self.batch_size
        frames = np.array([e["frames"] for e in self.entries])
        for start in range(0, len(order), pool):
            chunk = order[start: start + pool]
            order[start: start + pool] = chunk[np.argsort(frames[chunk], kind="stable")]
        n = self.steps_per_epoch * self.batch_size  # whole batches, shuffled; the remainder stays at the end
        batches = order[:n].reshape(self.steps_per_epoch, self.batch_size)[rng.permutation(self.steps_per_epoch)]
        return np.concatenate([batches.reshape(-1), order[n:]])

    def next_batch(self):
        if self.pack:
            return self._next_packed_batch()
        if self.step == self.steps_per_epoch:
            self.epoch, self.step = self.epoch + 1, 0
            self._order = self._epoch_order(self.epoch)
        index = self._order[self.step * self.batch_size: (self.step + 1) * self.batch_size]
        self.step += 1
        rows = [[self.entries[i]] for i in index]
        modes = target_modes(self.seed, self.epoch, index, *self.probabilities) if self.specials else None
        n_frames = self.n_frames
        if self.bucket:
            longest = max(row[0]["frames"] for row in rows) + BUCKET_MARGIN
            n_frames = min(n_frames, -(-longest // BUCKET_QUANTUM) * BUCKET_QUANTUM)
        return (*collate(rows, self.shards, self.n_mels, n_frames, self.eot, modes, self.specials), rows)

    def _next_entry(self) -> dict:
        if self.position == len(self._order):
            self.epoch, self.position = self.epoch + 1, 0
            self._order = self._epoch_order(self.epoch)
        self.position += 1
        return self.entries[self._order[self.position - 1]]

    def _next_packed_batch(self):
        rows = []
        for _ in range(self.batch_size):
            row = [self._next_entry()]
            while (self.position < len(self._order)
                   and sum(e["frames"] for e in row) + self.entries[self._order[self.position]]["frames"] <= self.n_frames):
                row.append(self._next_entry())
            rows.append(row)
        return (*collate(rows, self.shards, self.n_mels, self.n_frames, self.eot), rows)

    def state_dict(self) -> dict:
        return dict(epoch=self.epoch, step=self.step, position=self.position, seed=self.seed, rank=self.rank,
                    world_size=self.world_size, batch_size=self.batch_size, n_entries=len(self.entries), pack=self.pack,
                    bucket=self.bucket)

    def load_state_dict(self, state: dict):
        for key in ("seed", "world_size", "batch_size", "n_entries", "pack", "bucket"):
            mine = len(self.entries) if key == "n_entries" else getattr(self, key)
            if state.get(key, False) != mine:  # states saved before packing or bucketing have neither key
                raise ValueError(f"cannot resume: loader state has {key}={state.get(key, False)}, this loader has {mine}")
        self.epoch, self.step, self.position = state["epoch"], state["step"], state.get("position", 0)
        self._order = self._epoch_order(self.epoch)


def iterate_batches(data_dir: str, split: str = "val", batch_size: int = 16, n_frames: int = 3000, limit: int = None,
                    timestamp_probability: float = 1.0, prompt_probability: float = 0.0, seed: int = 0):
    """The split in manifest order (utterances over n_frames left out), the last batch possibly smaller.

    Yields (mel, tokens_in, targets, entries); `limit` stops after that many entries, so the same
    fixed subset is used every time (val loss, WER on a fixed val subset: entries[i]["text"] is the
    reference transcript of row i). Windows get their targets as ShardLoader draws them (epoch 0 of
    `seed`); with timestamp_probability 0 each is its complete utterances' text, and a cut
    utterance's audio is silence (what a WER can be scored on).
    """
    meta = read_meta(data_dir)
    specials = check_window(meta, data_dir, n_frames)
    entries, _ = _usable(data_dir, split, n_frames)
    entries = entries[:limit] if limit is not None else entries
    shards = _Shards(data_dir, split)
    eot = meta["eot"]
    for start in range(0, len(entries), batch_size):
        batch = entries[start: start + batch_size]
        modes = (target_modes(seed, 0, range(start, start + len(batch)), timestamp_probability, prompt_probability)
                 if specials else None)
        yield (*collate(batch, shards, meta["n_mels"], n_frames, eot, modes, specials), batch)


def check_window(meta: dict, data_dir: str, n_frames: int):
    """The specials a windowed corpus' targets need (None for one utterance an entry). Its windows
    fit a model's window as long as or longer (the rest is the window's silence value); a shorter
    model can't hear their ends."""
    window = meta.get("window_seconds") or 0
    if window and round(window * 100) > n_frames:
        raise ValueError(f"{data_dir}: prepared in {window:g} s windows, longer than the model's {n_frames / 100:g} s; "
                         f"prepare it again with --window-seconds {n_frames / 100:g}")
    return meta.get("specials") if window else None


def token_times(targets: torch.Tensor, rows: list, specials: dict, eot: int, token_bytes: np.ndarray) -> torch.Tensor:
    """Where in the window each target token is spoken, in seconds, for train.py's attention guide
    (NaN where unknown: the prompt, the special tokens, a row that is not a window).

    A timestamp target is its own time. A text token is placed within its utterance's speech span
    (the window's segments, known from the audio) in proportion to the bytes of text before its
    middle: speech takes roughly as long as its letters, and the guide is a soft prior, not a
    forced alignment. The segments' texts are found in the targets in order, in either target mode."""
    times = torch.full(targets.shape, float("nan"))
    for i, row in enumerate(rows):
        entry = row[0] if isinstance(row, list) else row
        if "segments" not in entry:
            continue
        ids = targets[i].tolist()
        spoken = [j for j, t in enumerate(ids) if 0 <= t < eot]
        texts = [text for _, _, text in entry["segments"]]
        if [ids[j] for j in spoken] != [t for text in texts for t in text]:
            continue  # not this row's text (should not happen): no guide rather than a wrong one
        k = 0
        for start, end, text in entry["segments"]:
            lengths = np.maximum(token_bytes[text], 1).astype(np.float64)
            middles = (np.cumsum(lengths) - lengths / 2) / lengths.sum()
            for m in middles:
                times[i, spoken[k]] = start + m * (end - start)
                k += 1
        for j, t in enumerate(ids):
            if t >= specials["timestamp_begin"]:
                times[i, j] = (t - specials["timestamp_begin"]) * 0.02
    return times


def ctc_targets(rows: list, n_audio_ctx: int) -> tuple:
    """CTC's inputs for a batch's rows (each a list of manifest entries): each row's characters
    (lower case, other symbols dropped, its utterances joined by spaces) concatenated, their counts,
    and the audio tokens each row fills (2 mel frames each, the rest is padding)."""
    def letters(text: str) -> str:
        return " ".join("".join(c for c in text.lower() if c in CTC_CHARS).split())
    texts = [" ".join(filter(None, (letters(e["text"]) for e in row))) for row in rows]
    chars = [1 + CTC_CHARS.index(c) for text in texts for c in text]
    # a window's cut utterance is not in its text: the CTC loss stops where that utterance's audio starts
    frames = [min(n_audio_ctx, (sum(e.get("cut_frame") or e["frames"] for e in row) + 1) // 2) for row in rows]
    return torch.tensor(chars, dtype=torch.long), torch.tensor([len(t) for t in texts]), torch.tensor(frames)


def load_mel(data_dir: str, split: str, entry: dict, n_frames: int = 3000) -> torch.Tensor:
    """One utterance's padded log-mel, float32 [n_mels, n_frames]."""
    meta = read_meta(data_dir)
    mel = torch.full((meta["n_mels"], n_frames), entry["pad"])
    frames = _Shards(data_dir, split).frames(entry)[:n_frames]
    mel[:, : len(frames)] = torch.from_numpy(np.asarray(frames, dtype=np.float32).T)
    return mel


def read_librispeech_dir(root: str) -> list:
    """[(utterance id, audio path, transcript)] for every line of every *.trans.txt under root, sorted.
    Lines that can't be used (no audio, not UTF-8) are reported on stderr, one line each, and skipped."""
    items = []
    for trans in sorted(glob.glob(os.path.join(root, "**", "*.trans.txt"), recursive=True)):
        folder = os.path.dirname(trans)
        lines, problems = read_transcript(trans)
        for problem in problems:
            print(f"warning: {problem['detail']}, skipped", file=sys.stderr)
        for n, utt, text in lines:
            candidates = (os.path.join(folder, utt + ext) for ext in (".flac", ".wav"))
            audio = next((p for p in candidates if os.path.exists(p)), None)
            if audio is None:
                print(f"warning: {trans}:{n}: no audio for {utt}, skipped", file=sys.stderr)
                continue
            items.append((utt, audio, text))
    return items


def read_transcript(path: str):
    """A LibriSpeech *.trans.txt ("<utterance id> <text>" a line) as ([(line number, id, text)], problems).

    Each line is decoded on its own as UTF-8 (ASCII is a subset). A line in another encoding (Latin-1
    from an old editor, say) becomes a problem, dict(line, id, reason, detail) with a one-line
    `<file>:<line>: ...` detail, and is skipped rather than guessed at: a wrong guess would silently
    train on, or score against, misspelt text. An unreadable file is one problem (line 0)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        return [], [dict(line=0, id="", reason="unreadable transcript", detail=f"{path}: cannot read ({e.strerror})")]
    raw = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw  # a UTF-8 byte-order mark is not part of the first id
    lines, problems = [], []
    for n, line in enumerate(raw.splitlines(), 1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            uid = line.split(maxsplit=1)[0].decode("utf-8", "replace")
            problems.append(dict(line=n, id=uid, reason="transcript line not UTF-8",
                                 detail=f"{path}:{n}: not UTF-8 (byte 0x{line[e.start]:02x} at column {e.start + 1})"))
            continue
        uid, _, text = text.strip().partition(" ")
        if uid:
            lines.append((n, uid, text))
    return lines, problems


# --------------------------------------------------------------------------------------------------
# writing shards: prepare_librispeech.py's output, and anything else that wants the loader to read it


def write_json(path: str, obj, indent=None):
    with atomic_write(path) as f:
        f.write((json.dumps(obj, indent=indent) + "\n").encode())


def save_shard(out: str, split: str, index: int, items: list, results: list):
    """Write <out>/<split>/NNNNN.npy (the kept utterances' frames back to back) and then NNNNN.json,
    whose presence marks the shard done. `items` are the shard's inputs (their ids are recorded, so a
    resumed run can tell the shard was made from the same input); `results` are, in the same order,
    (entry, fp16 frames [frames, n_mels]) or (skip record, None). Returns (entries, skipped)."""
    name = os.path.join(out, split, f"{index:05d}")
    entries, skipped, arrays, offset = [], [], [], 0
    # a chapter (prepare_librispeech.py --window-seconds) gives a list of windows and skips
    for record, frames in (pair for result in results for pair in (result if isinstance(result, list) else [result])):
        if frames is None:
            skipped.append(record)
            continue
        entries.append(dict(record, shard=index, offset=offset))
        arrays.append(frames)
        offset += len(frames)
    if arrays:
        with atomic_write(name + ".npy") as f:
            np.save(f, np.concatenate(arrays))
    write_json(name + ".json", dict(items=[it["id"] for it in items], entries=entries, skipped=skipped))
    return entries, skipped


def load_shard(out: str, split: str, index: int, items: list):
    """A finished shard from an earlier run as (entries, skipped), or None if it is not finished.
    Raises ValueError for a shard made from different input."""
    name = os.path.join(out, split, f"{index:05d}")
    if not os.path.exists(name + ".json"):
        return None
    with open(name + ".json") as f:
        shard = json.load(f)
    if shard["items"] != [it["id"] for it in items]:
        raise ValueError(f"{name}.json was made from different input; delete {out} or choose another --out")
    if shard["entries"] and not os.path.exists(name + ".npy"):
        return None
    return shard["entries"], shard["skipped"]


def _n_tokens(entry: dict) -> int:
    """An utterance's target tokens, or a window's text tokens."""
    return len(entry["tokens"]) if "tokens" in entry else sum(len(t) for *_, t in entry["segments"])


def write_outputs(out: str, manifests: dict, skipped: list, cfg: dict) -> dict:
    """The manifests <out>/<split>.jsonl and meta.json (settings, counts, every skipped item), written
    last: a directory with meta.json is complete."""
    for split, entries in manifests.items():
        with atomic_write(os.path.join(out, f"{split}.jsonl")) as f:
            f.write("".join(json.dumps(e) + "\n" for e in entries).encode())
    counts = {}
    for s in skipped:
        counts[s["reason"]] = counts.get(s["reason"], 0) + 1
    splits = {split: dict(utterances=len(entries), hours=round(sum(e["duration"] for e in entries) / 3600, 4),
                          frames=sum(e["frames"] for e in entries),
                          shards=len({e["shard"] for e in entries}), tokens=sum(map(_n_tokens, entries)))
              for split, entries in manifests.items()}
    meta = dict(cfg, sample_rate=SAMPLE_RATE, n_frames=N_FRAMES, max_tokens=MAX_TOKENS, mel_dtype="float16",
                storage=("log_mel_spectrogram(pad_or_trim(window audio, window_seconds)) frames [0, frames) per window"
                         if cfg.get("window_seconds") else
                         "log_mel_spectrogram(pad_or_trim(audio)) frames [0, frames) per utterance")
                + "; frames past that equal `pad`",
                splits=splits, skipped_counts=counts, skipped=skipped)
    write_json(os.path.join(out, "meta.json"), meta, indent=1)
    return meta
