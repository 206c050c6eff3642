"""
Word-level timestamps from cross-attention: when the decoder writes a word, a few of its
cross-attention heads (the model's `alignment_heads`) look at the audio frames where that word is
spoken. Following those looks with dynamic time warping gives each word a start and an end.

    from timing import word_timings
    for w in word_timings(model, mel, result.tokens, tokenizer):
        print(f"{w.start:5.2f} {w.end:5.2f} {w.word}")

`word_timings` times one window's tokens; `add_word_timestamps` does it for the segments of a
long-form window (transcribe.py --word-timestamps) with the reference's fixes at segment edges;
`align` returns the working as well (inquiry.py draws it).

The recipe is openai-whisper's (`whisper/timing.py`), so that on the same weights the same words
get the same times (tests/test_inquiry.py measures it): run the decoder once over
`sot_sequence <|notimestamps|> text <|endoftext|>`, take the alignment heads' attention over the
frames that hold audio, standardise each frame across tokens, median-filter along time, average
the heads, find the cheapest monotonic token-to-frame path, and read off where the path moves on
to each word's first token. Our attention calls F.scaled_dot_product_attention, which never
materialises the weights, so they are recomputed here from each module's own query and key
projections on the inputs a forward pre-hook records; model.py stays untouched.
"""
import re
import string
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from audio import FRAMES_PER_SECOND, TOKENS_PER_SECOND, pad_or_trim, window_frames

PREPEND_PUNCTUATION = "\"'“¿([{-"  # glued to the word that follows
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"  # glued to the word before
SENTENCE_END = ".。!！?？"
NO_SPACE_LANGUAGES = {"zh", "ja", "th", "lo", "my", "yue"}  # split at characters, not spaces


class WordTiming(NamedTuple):
    word: str  # with its leading space, as the tokenizer writes it
    start: float  # seconds from the start of the window (plus `offset`)
    end: float
    probability: float  # mean probability the model gave the word's tokens
    tokens: list


@dataclass
class Alignment:
    """Everything word_timings computes, for callers (inquiry.py) that want to show the working."""

    words: list  # the WordTimings word_timings returns
    raw_words: list  # one per word as DTW found them, before the punctuation and length fixes
    tokens: list  # the decoder input: sot_sequence, <|notimestamps|>, text tokens, <|endoftext|>
    heads: list  # (layer, head) of each row of `weights`
    weights: torch.Tensor  # (heads, tokens, frames): attention over the audio frames, each row sums to 1
    matrix: np.ndarray  # (text tokens + 1, frames): standardised, filtered, head-averaged; DTW runs on -matrix
    text_indices: np.ndarray  # the DTW path: row of `matrix` ...
    time_indices: np.ndarray  # ... and audio frame (20 ms each), step by step
    token_probs: list  # probability of each text token given the ones before


# ------------------------------------------------------------------------------------------------
# attention weights, recomputed


@contextmanager
def record_inputs(modules, detach: bool = True):
    """Within the block, {module: (x, xa)} holds what each attention module was last called with
    (xa is None for self-attention). The blocks pass already layer-normed inputs. A trainer that
    backpropagates through weights recomputed from them keeps them attached (detach=False)."""
    seen = {}

    def hook(module, args, kwargs):
        xa = args[1] if len(args) > 1 else kwargs.get("xa")
        x = (args[0], xa)
        seen[module] = tuple(t.detach() if detach and t is not None else t for t in x)

    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in modules]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def attention_scores(attn, x, xa=None) -> torch.Tensor:
    """Pre-softmax scores q·k / sqrt(d_head) of a MultiHeadAttention, (B, n_head, T, S), in fp32.
    No causal mask: callers that need one apply it."""
    q = attn.query(x).float()
    k = attn.key(x if xa is None else xa).float()
    B, T, C = q.shape
    D = C // attn.n_head
    q = q.view(B, T, attn.n_head, D).transpose(1, 2)
    k = k.view(B, k.shape[1], attn.n_head, D).transpose(1, 2)
    return (q @ k.transpose(-1, -2)) * D**-0.5


# ------------------------------------------------------------------------------------------------
# the pieces: filter, DTW, words


def median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    """Median over a sliding window of odd `width` along the last dim; the edges are reflected so
    the output has the input's length. It removes one-frame spikes but keeps sharp edges."""
    if width <= 1 or x.shape[-1] <= width // 2:
        return x
    shape = x.shape
    padded = F.pad(x.reshape(-1, 1, shape[-1]), (width // 2, width // 2), mode="reflect")
    return padded.unfold(-1, width, 1).median(dim=-1).values.reshape(shape)


def dtw(cost: np.ndarray):
    """The cheapest path through an (N, M) cost matrix from (0, 0) to (N-1, M-1), moving one
    token on, one frame on, or both at once. Returns (token indices, frame indices) along it.

    Ties go to "one frame on", then "one token on" loses to a strictly cheaper diagonal, as in the
    reference. Plain Python lists: N * M is at most a few hundred thousand cells.
    """
    n, m = cost.shape
    inf = float("inf")
    total = [[0.0] + [inf] * m] + [[inf] * (m + 1) for _ in range(n)]
    move = [[0] * (m + 1) for _ in range(n + 1)]  # 0: diagonal, 1: from the row above, 2: from the left
    rows = cost.tolist()
    for i in range(1, n + 1):
        above, here, row, moves = total[i - 1], total[i], rows[i - 1], move[i]
        for j in range(1, m + 1):
            diagonal, up, left = above[j - 1], above[j], here[j - 1]
            if diagonal < up and diagonal < left:
                best, moves[j] = diagonal, 0
            elif up < diagonal and up < left:
                best, moves[j] = up, 1
            else:
                best, moves[j] = left, 2
            here[j] = row[j - 1] + best
    path, i, j = [], n, m
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        step = 2 if i == 0 else 1 if j == 0 else move[i][j]
        i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
    path = np.array(path[::-1])
    return path[:, 0], path[:, 1]


def split_on_characters(tokenizer, tokens: list):
    """Group tokens so that each group decodes to whole characters: a multi-byte character may be
    split over several BPE tokens. Returns (texts, token groups)."""
    full = tokenizer.decode_with_timestamps(tokens)
    texts, groups, current, offset = [], [], [], 0
    for token in tokens:
        current.append(token)
        text = tokenizer.decode_with_timestamps(current)
        bad = text.find("\ufffd")
        # complete, or the replacement character is really in the text (invalid bytes)
        if bad < 0 or (offset + bad < len(full) and full[offset + bad] == "\ufffd"):
            texts.append(text)
            groups.append(current)
            current, offset = [], offset + len(text)
    if current:  # a character cut off at the end: keep its tokens so that the counts add up
        texts.append(tokenizer.decode_with_timestamps(current))
        groups.append(current)
    return texts, groups


def split_words(tokenizer, tokens: list):
    """Text tokens -> (words, token groups). A word starts at a leading space, at punctuation and
    at a special token; languages written without spaces split at every character."""
    texts, groups = split_on_characters(tokenizer, tokens)
    if getattr(tokenizer, "language", None) in NO_SPACE_LANGUAGES:
        return texts, groups
    words, word_tokens = [], []
    for text, group in zip(texts, groups):
        new_word = text.startswith(" ") or text.strip() in string.punctuation or group[0] >= tokenizer.eot
        if new_word or not words:
            words.append(text)
            word_tokens.append(list(group))
        else:
            words[-1] += text
            word_tokens[-1].extend(group)
    return words, word_tokens


def merge_punctuation(words: list, prepend: str = PREPEND_PUNCTUATION, append: str = APPEND_PUNCTUATION) -> list:
    """Opening quotes and brackets join the next word, closing punctuation the previous one, so
    that "Americans," is one word with the comma's time folded in."""
    words = [list(w) for w in words]  # [word, start, end, probability, tokens], mutable
    following = len(words) - 1
    for i in range(len(words) - 2, -1, -1):
        w, nxt = words[i], words[following]
        if w[0].startswith(" ") and w[0].strip() in prepend:
            nxt[0], nxt[4] = w[0] + nxt[0], w[4] + nxt[4]
            w[0], w[4] = "", []
        else:
            following = i
    previous = 0
    for j in range(1, len(words)):
        w, prev = words[j], words[previous]
        if not prev[0].endswith(" ") and w[0] in append:
            prev[0], prev[4] = prev[0] + w[0], prev[4] + w[4]
            w[0], w[4] = "", []
        else:
            previous = j
    return [WordTiming(*w) for w in words if w[0]]


def median_duration(words: list) -> float:
    """Median length of the words that have one, at most 0.7 s: the yardstick for "too long"."""
    durations = np.array([w.end - w.start for w in words])
    durations = durations[durations.nonzero()]
    return min(0.7, float(np.median(durations))) if len(durations) else 0.0


def clip_long_words(words: list) -> list:
    """DTW lets a word at a sentence end (or just after one) soak up the pause next to it; cap
    those words at twice the median word duration, as the reference does."""
    max_duration = 2 * median_duration(words)
    if max_duration == 0:
        return words
    words = list(words)
    for i in range(1, len(words)):
        w = words[i]
        if w.end - w.start > max_duration:
            if w.word in SENTENCE_END:
                words[i] = w._replace(end=w.start + max_duration)
            elif words[i - 1].word in SENTENCE_END:
                words[i] = w._replace(start=w.end - max_duration)
    return words


# ------------------------------------------------------------------------------------------------
# the feature


@torch.inference_mode()
def align(model, mel: torch.Tensor, tokens: list, tokenizer, num_frames: int = None, medfilt_width: int = 7,
          offset: float = 0.0, heads: list = None) -> Alignment:
    """Word timings for `tokens` (what the model decoded from `mel`) with all the working.

    mel: one window, (n_mels, frames). If it is shorter than the model's window (3000 frames for
    official models) it is zero-padded and all its frames count as audio; a full window may say
    how many of its frames hold audio with `num_frames` (default: all). Only those frames are
    aligned to, as the reference does. `mel` may also be the window's audio features, (n_audio_ctx,
    n_audio_state), when the caller has already run the encoder (then give num_frames).
    Tokens >= <|endoftext|> (timestamps) are ignored. `heads`, (layer, head) pairs, replaces the
    model's alignment_heads (find_alignment_heads tries them one by one).
    """
    window = window_frames(model.dims.n_audio_ctx)
    encoded = mel.shape[-1] == model.dims.n_audio_state and mel.shape[-2] != model.dims.n_mels
    frames = window if encoded else mel.shape[-1]
    if frames > window:
        raise ValueError(f"mel has {frames} frames; one window holds {window}: align window by window")
    num_frames = min(num_frames or frames, frames)
    text_tokens = [int(t) for t in tokens if t < tokenizer.eot]
    n_audio = num_frames // 2  # audio tokens (20 ms each) that hold speech
    start = list(tokenizer.sot_sequence) + [tokenizer.no_timestamps]
    decoder_in = start + text_tokens + [tokenizer.eot]
    heads = [tuple(h) for h in (model.alignment_heads if heads is None else heads)]
    if not text_tokens or n_audio == 0:
        return Alignment([], [], decoder_in, heads, torch.zeros(len(heads), 0, 0), np.zeros((0, 0)),
                         np.zeros(0, int), np.zeros(0, int), [])

    layers = sorted({layer for layer, _ in heads})
    modules = [model.decoder.blocks[layer].cross_attn for layer in layers]
    x_tokens = torch.tensor([decoder_in], device=model.device)
    with record_inputs(modules) as seen:
        if encoded:
            logits = model.decoder(x_tokens, mel[None].to(model.device, model.dtype))[0]
        else:
            logits = model(pad_or_trim(mel, window)[None].to(model.device, model.dtype), x_tokens)[0]
    # probability of each text token, among text tokens, given everything before it
    probs = logits[len(start) - 1 : -1, : tokenizer.eot].float().softmax(dim=-1)
    token_probs = probs[torch.arange(len(text_tokens)), text_tokens].tolist()

    scores = {layer: attention_scores(m, *seen[m])[0] for layer, m in zip(layers, modules)}
    # a softmax over the frames with audio only: the padding after it can't pull attention away
    weights = torch.stack([scores[layer][head, :, :n_audio] for layer, head in heads]).softmax(dim=-1)
    return words_from_weights(weights, tokenizer, text_tokens, token_probs, heads, decoder_in, medfilt_width, offset)


def words_from_weights(weights: torch.Tensor, tokenizer, text_tokens: list, token_probs: list, heads: list,
                       decoder_in: list, medfilt_width: int = 7, offset: float = 0.0) -> Alignment:
    """align's second half: attention weights (heads, decoder_in tokens, audio frames) -> words.
    Any subset of the heads' rows gives that subset's alignment without running the model again."""
    start = len(decoder_in) - len(text_tokens) - 1  # sot_sequence and <|notimestamps|>
    # standardise each frame across tokens: what matters is which token a frame stands out for
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    matrix = median_filter((weights - mean) / std, medfilt_width).mean(dim=0)
    # row k is the position that *predicts* text token k+1 (row 0: <|notimestamps|>); the last
    # row predicts <|endoftext|>, so row n_text marks where the last word ends
    matrix = matrix[start - 1 : -1].double().cpu().numpy()
    text_indices, time_indices = dtw(-matrix)

    words, word_tokens = split_words(tokenizer, text_tokens)
    boundaries = np.concatenate([[0], np.cumsum([len(t) for t in word_tokens])])
    # where the path first reaches each row: the moment the model moves on to that token
    first_step = np.concatenate([[True], np.diff(text_indices) != 0])
    jump_times = time_indices[first_step] / TOKENS_PER_SECOND
    raw = [
        WordTiming(word, round(offset + float(jump_times[i]), 2), round(offset + float(jump_times[j]), 2),
                   float(np.mean(token_probs[i:j])), group)
        for word, group, i, j in zip(words, word_tokens, boundaries[:-1], boundaries[1:])
    ]
    return Alignment(merge_punctuation(clip_long_words(raw)), raw, decoder_in, heads, weights.cpu(), matrix,
                     text_indices, time_indices, token_probs)


def word_timings(model, mel: torch.Tensor, tokens: list, tokenizer, num_frames: int = None, offset: float = 0.0,
                 medfilt_width: int = 7) -> list:
    """[WordTiming(word, start, end, probability, tokens)] for the text tokens decoded from one
    window; times in seconds from the window's start plus `offset`. See `align`."""
    return align(model, mel, tokens, tokenizer, num_frames, medfilt_width, offset).words


def add_word_timestamps(model, tokenizer, segments: list, mel: torch.Tensor, num_frames: int, *,
                        prepend_punctuations: str = PREPEND_PUNCTUATION, append_punctuations: str = APPEND_PUNCTUATION,
                        last_speech_timestamp: float = 0.0, medfilt_width: int = 7) -> float:
    """Long-form transcription's word timestamps, as openai-whisper's add_word_timestamps.

    `segments` are the segments of one window (dicts with seek, start, end, tokens; times in
    seconds from the start of the audio), `mel` that window and `num_frames` its frames with audio.
    All are aligned at once; each segment gets "words": [{word, start, end, probability}], and its
    start and end move to its first and last word unless that word looks stretched over a pause.
    Returns the end of the last segment with words: pass it as `last_speech_timestamp` for the
    next window, so that a first word right after a long pause can be recognised as too long.
    """
    if not segments:
        return last_speech_timestamp
    texts = [[t for t in segment["tokens"] if t < tokenizer.eot] for segment in segments]
    offset = segments[0]["seek"] / FRAMES_PER_SECOND
    alignment = align(model, mel, [t for text in texts for t in text], tokenizer, num_frames, medfilt_width, offset)
    median = median_duration(alignment.raw_words)
    longest = 2 * median
    words = merge_punctuation(clip_long_words(alignment.raw_words), prepend_punctuations, append_punctuations)

    position = 0
    for segment, text in zip(segments, texts):
        taken, mine = 0, []
        while position < len(words) and taken < len(text):  # the words whose tokens this segment holds
            w = words[position]
            mine.append(dict(word=w.word, start=w.start, end=w.end, probability=w.probability))
            taken, position = taken + len(w.tokens), position + 1
        if mine:
            first, last = mine[0], mine[-1]
            # after a long pause, DTW often starts the first word (or two) too early: shorten them
            if first["end"] - last_speech_timestamp > 4 * median and (
                first["end"] - first["start"] > longest
                or (len(mine) > 1 and mine[1]["end"] - first["start"] > 2 * longest)
            ):
                if len(mine) > 1 and mine[1]["end"] - mine[1]["start"] > longest:
                    boundary = max(mine[1]["end"] / 2, mine[1]["end"] - longest)
                    first["end"] = mine[1]["start"] = boundary
                first["start"] = max(0.0, first["end"] - longest)
            # a first word that starts well before its segment is stretched: trust the segment
            if segment["start"] < first["end"] and segment["start"] - 0.5 > first["start"]:
                first["start"] = max(0.0, min(first["end"] - median, segment["start"]))
            else:
                segment["start"] = first["start"]
            # likewise a last word that ends well after it
            if segment["end"] > last["start"] and segment["end"] + 0.5 < last["end"]:
                last["end"] = max(last["start"] + median, segment["end"])
            else:
                segment["end"] = last["end"]
            last_speech_timestamp = segment["end"]
        segment["words"] = mine
    return last_speech_timestamp


# ------------------------------------------------------------------------------------------------
# against the truth: word-time error, and choosing the alignment heads


def read_word_records(root: str) -> dict:
    """{utterance id: (speech span or None, words or None)} from every <speaker>-<chapter>.words.jsonl
    under root (prepare_synthetic.py writes them): where the sound starts and stops, and the
    transcript's words [(word, start, end)], in seconds of the utterance's audio ("words": null where
    espeak could not give them). A line that isn't such a record is reported on stderr in one line
    and skipped."""
    import glob
    import json
    import os
    import sys

    records = {}
    for path in sorted(glob.glob(os.path.join(root, "**", "*.words.jsonl"), recursive=True)):
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    speech = record.get("speech")
                    speech = None if speech is None else tuple(float(t) for t in speech)
                    words = record["words"]
                    words = None if words is None else [(str(w), float(a), float(b)) for w, a, b in words]
                    records[str(record["id"])] = (speech, words)
                except (ValueError, KeyError, TypeError, AttributeError) as e:
                    print(f"warning: {path}:{n}: not a word-times record ({e}), skipped", file=sys.stderr)
    return records


def read_word_times(root: str) -> dict:
    """{utterance id: [(word, start, end)]} of read_word_records, for the utterances that have them."""
    return {uid: words for uid, (_, words) in read_word_records(root).items() if words is not None}


def sentence_case(text: str) -> str:
    """ALL-CAPS transcripts (LibriSpeech's, the synthetic corpus') as the models read and write text,
    the way prepare_librispeech.py's default --text-case makes targets. Letters only change case, so
    character positions stay the same."""
    if any(c.islower() for c in text):
        return text
    text = re.sub(r"\bi\b", "I", text.lower())
    return text[:1].upper() + text[1:]


def _plain(word: str) -> str:
    return "".join(c for c in word.lower() if c.isalnum())


def word_time_errors(predicted: list, truth: list) -> np.ndarray:
    """(len(truth), 2): |start error| and |end error| in seconds of each true word.

    predicted: WordTimings (or (word, start, end)) for the same text as `truth`, [(word, start,
    end)], however the tokenizer split it: the words are matched by their characters, spaces and
    case aside, so a true word the aligner split in two ("twenty-one") takes the first part's start
    and the last part's end. If the texts differ (a model's own transcript), words are matched
    after normalising them (lower case, letters and digits) along the longest common subsequence;
    a true word with no match gets NaN errors.
    """
    predicted = [(w[0], float(w[1]), float(w[2])) for w in predicted]
    errors = np.full((len(truth), 2), np.nan)
    pred_chars = "".join(w.replace(" ", "").lower() for w, _, _ in predicted)
    true_chars = "".join(w.replace(" ", "").lower() for w, _, _ in truth)
    if pred_chars == true_chars:
        owner = np.concatenate([np.full(len(w.replace(" ", "")), i) for i, (w, _, _) in enumerate(predicted)] or [[]])
        pos = 0
        for i, (word, start, end) in enumerate(truth):
            n = len(word.replace(" ", ""))
            if n:
                first, last = predicted[int(owner[pos])], predicted[int(owner[pos + n - 1])]
                errors[i] = abs(first[1] - start), abs(last[2] - end)
            pos += n
        return errors
    import difflib

    a, b = [_plain(w) for w, _, _ in predicted], [_plain(w) for w, _, _ in truth]
    for block in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            p, t = predicted[block.a + k], truth[block.b + k]
            errors[block.b + k] = abs(p[1] - t[1]), abs(p[2] - t[2])
    return errors


def error_summary(errors: np.ndarray) -> dict:
    """Median and 90th percentile of the start and end errors (seconds) over the matched words."""
    errors = np.asarray(errors, dtype=float).reshape(-1, 2)
    errors = errors[~np.isnan(errors).any(axis=1)]
    if not len(errors):
        return dict(words=0, start_median=float("nan"), start_p90=float("nan"), end_median=float("nan"),
                    end_p90=float("nan"))
    return dict(words=len(errors), start_median=float(np.median(errors[:, 0])),
                start_p90=float(np.percentile(errors[:, 0], 90)), end_median=float(np.median(errors[:, 1])),
                end_p90=float(np.percentile(errors[:, 1], 90)))


def timed_utterance(model, audio: np.ndarray, text: str, words: list, tokenizer, mel=None) -> dict:
    """What the functions below need of one utterance: its window's mel (audio.window_mel, as eval.py
    and training feed it; `mel` if the caller has it already), the frames that hold audio, the true
    text's tokens and word times."""
    from audio import SAMPLE_RATE, window_mel

    window = window_frames(model.dims.n_audio_ctx)
    return dict(mel=window_mel(audio, model.dims) if mel is None else mel, num_frames=min(window, len(audio) * FRAMES_PER_SECOND // SAMPLE_RATE),
                tokens=tokenizer.encode(" " + sentence_case(text)), words=words)


def utterance_word_errors(model, utterance: dict, tokenizer, tokens: list = None, heads: list = None) -> np.ndarray:
    """word_time_errors of the alignment of `tokens` (default: the true text's, i.e. forced
    alignment) on one timed_utterance, with `heads` (default: the model's alignment_heads)."""
    tokens = utterance["tokens"] if tokens is None else tokens
    words = align(model, utterance["mel"], tokens, tokenizer, utterance["num_frames"], heads=heads).words
    return word_time_errors(words, utterance["words"])


def find_alignment_heads(model, utterances: list, tokenizer, k: int = None, progress=None) -> dict:
    """The decoder cross-attention heads whose attention predicts the true word starts best.

    utterances: timed_utterance dicts. Every (layer, head) aligns the true text on its own, and is
    scored by the median word-start error over all the words. With `k`, the best k heads are chosen;
    without, heads of the better half are added best first as long as the combined alignment's
    (median, mean) start error falls: heads that each track time can still disagree by a frame or
    two, and averaging them is what the reference does. The model runs once per utterance: a head set's
    alignment is recomputed from the stored attention weights (words_from_weights).

    Returns dict(per_head={(layer, head): median start error}, heads=[chosen, sorted],
    summary=error_summary of the chosen set).
    """
    all_heads = [(layer, head) for layer in range(model.dims.n_text_layer) for head in range(model.dims.n_text_head)]
    cached = []
    for n, utt in enumerate(utterances):
        a = align(model, utt["mel"], utt["tokens"], tokenizer, utt["num_frames"], heads=all_heads)
        if a.token_probs:  # no text or no audio: nothing to align
            text_tokens = [t for t in utt["tokens"] if t < tokenizer.eot]
            cached.append((a.weights, text_tokens, a.token_probs, a.tokens, utt["words"]))
        if progress:
            progress(n + 1, len(utterances))
    if not cached:
        raise ValueError("no utterance has both text and audio to align")

    def errors_of(rows: list) -> np.ndarray:
        return np.concatenate([
            word_time_errors(words_from_weights(w[rows], tokenizer, text, probs, [all_heads[r] for r in rows], tokens).words,
                             truth)
            for w, text, probs, tokens, truth in cached])

    def score(rows: list):
        starts = errors_of(rows)[:, 0]
        starts = starts[~np.isnan(starts)]
        return float(np.median(starts)), float(np.mean(starts))

    scores = [score([r]) for r in range(len(all_heads))]
    order = sorted(range(len(all_heads)), key=lambda r: scores[r])
    if k is not None:
        chosen = order[: max(1, k)]
    else:
        # only heads in the better half are tried: one that can't follow time on its own would
        # help the combination only by chance on these utterances
        chosen, best = order[:1], scores[order[0]]
        for r in order[1 : (len(order) + 1) // 2]:
            trial = score(chosen + [r])
            if trial < best:
                chosen, best = chosen + [r], trial
    chosen = sorted(chosen)
    return dict(per_head={all_heads[r]: scores[r][0] for r in range(len(all_heads))},
                heads=[all_heads[r] for r in chosen], summary=error_summary(errors_of(chosen)))
