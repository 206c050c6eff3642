"""
Decoding: the one loop for greedy, sampling and beam search, batched over 30 s windows, and
language detection. transcribe.py, eval.py and train.py all decode through `decode` here.

The rules (suppressed tokens, timestamp grammar, beam bookkeeping, ranking) follow
openai-whisper's DecodingTask so that, on the same weights, the same tokens come out.
"""
import zlib
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from audio import FRAMES_PER_SECOND, window_frames
from model import Whisper, append_positions
from tokenizer import get_tokenizer


@dataclass
class DecodeResult:
    tokens: list  # sampled tokens, without the start sequence and without <|endoftext|>
    text: str
    avg_logprob: float
    no_speech_prob: float
    language: Optional[str] = None
    language_probs: Optional[dict] = None
    temperature: float = 0.0
    compression_ratio: float = field(init=False)

    def __post_init__(self):
        raw = self.text.encode("utf-8")
        self.compression_ratio = len(raw) / len(zlib.compress(raw)) if raw else 0.0


@torch.inference_mode()
def encode(model: Whisper, mel: Tensor) -> Tensor:
    """(B, n_mels, frames) -> audio features. On a CPU one window at a time: faster than the batch
    (a window's activations stay in cache), and int8's activation scales, one per call, then don't
    mix windows, so a window's features don't depend on its batch."""
    mel = mel.to(model.device, model.dtype)
    if mel.device.type == "cpu" and mel.shape[0] > 1:
        return torch.cat([model.encoder(window[None]) for window in mel])
    return model.encoder(mel)


@torch.inference_mode()
def detect_language(model: Whisper, audio_features: Tensor, tokenizer) -> list:
    """Most likely language of each window: [(code, {code: prob})], from the logits after <|sot|>."""
    sot = torch.full((audio_features.shape[0], 1), tokenizer.sot, device=audio_features.device)
    logits = model.decoder(sot, audio_features)[:, 0].float()
    language_ids = torch.tensor(tokenizer.all_language_tokens, device=logits.device)
    probs = logits[:, language_ids].softmax(dim=-1).cpu()
    codes = tokenizer.all_language_codes
    return [(codes[int(p.argmax())], dict(zip(codes, p.tolist()))) for p in probs]


# cuDNN's attention, torch's first choice on Hopper GPUs, plans a graph for every new shape, and the
# self-attention's keys grow by one each step: planning dominated a decode (docs/bench.md). The
# other kernels need no plan.
_DECODING_ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


# Inference entry points (here, transcribe.py, timing.py) run under inference_mode, not no_grad: no
# version counters or view tracking on the hundreds of small ops of a decoder step.
@torch.inference_mode()
@sdpa_kernel(_DECODING_ATTENTION)
def decode(
    model: Whisper,
    mel: Tensor,
    tokenizer=None,
    *,
    beam_size: Optional[int] = None,
    patience: Optional[float] = None,
    length_penalty: Optional[float] = None,
    temperature: float = 0.0,
    best_of: Optional[int] = None,
    timestamps: bool = False,
    max_initial_timestamp: Optional[float] = 1.0,
    prompt=None,
    prefix=None,
    prefix_in_text: bool = False,
    suppress_tokens="-1",
    suppress_blank: bool = True,
    sample_len: Optional[int] = None,
    language: Optional[str] = None,
    task: str = "transcribe",
) -> list:
    """Decode a batch of 30 s windows. `mel` is (B, n_mels, frames) or (n_mels, frames), or audio
    features the encoder already produced. Returns one DecodeResult per window.

    beam_size: beam search with `patience` (collect beam_size * patience finished candidates) and
        `length_penalty` (None: divide log-prob by length; alpha: Google NMT ((5 + len) / 6) ** alpha).
    temperature > 0 samples instead of taking the argmax; best_of keeps the best of that many samples.
    suppress_tokens: "-1" means the non-speech symbols; the special tokens are always suppressed.
    prefix_in_text: decode `prefix` as faster-whisper (CTranslate2) does: it begins the window's text, so
        its tokens lead each result and the token after it is not held to the rules of a text's first
        token (a timestamp first); otherwise, as openai-whisper, it only conditions what is decoded.
    """
    if beam_size is not None and best_of is not None:
        raise ValueError("beam_size and best_of can't be given together")
    if temperature == 0 and best_of is not None:
        raise ValueError("best_of needs temperature > 0 (greedy decoding has one outcome)")
    if patience is not None and beam_size is None:
        raise ValueError("patience requires beam_size")
    if length_penalty is not None and not 0 <= length_penalty <= 1:
        raise ValueError("length_penalty (alpha) should be between 0 and 1")

    single = mel.ndim == 2
    mel = mel[None] if single else mel
    if mel.shape[-1] == model.dims.n_audio_state and mel.shape[-2] != model.dims.n_mels:
        audio_features = mel.to(model.dtype)  # already encoded
    else:
        audio_features = encode(model, mel)
    n_audio = audio_features.shape[0]

    # the language: given (as `language` or by the tokenizer's), detected per window on multilingual
    # models when neither names one, or none for .en models
    detect = model.is_multilingual and language is None and tokenizer is None
    if tokenizer is None:
        tokenizer = get_tokenizer(model.is_multilingual, model.num_languages, language, task)
    languages, language_probs = [tokenizer.language] * n_audio, [None] * n_audio
    if detect:
        detected = detect_language(model, audio_features, tokenizer)
        languages, language_probs = [code for code, _ in detected], [probs for _, probs in detected]

    # the start: [<|startofprev|> prompt] <|startoftranscript|> [lang task] [<|notimestamps|>] [prefix]
    n_ctx = model.dims.n_text_ctx
    sample_len = sample_len or n_ctx // 2
    start = list(tokenizer.sot_sequence if timestamps else tokenizer.sot_sequence_including_notimestamps)
    forced = []  # the prefix as it is decoded
    if prefix:
        prefix_ids = tokenizer.encode(" " + prefix.strip()) if isinstance(prefix, str) else list(prefix)
        keep = n_ctx // 2 - sample_len  # room left in the first half of the context, if any
        forced = prefix_ids[-keep:] if keep > 0 else prefix_ids
        start += forced
    if prompt:
        prompt_ids = tokenizer.encode(" " + prompt.strip()) if isinstance(prompt, str) else list(prompt)
        start = [tokenizer.sot_prev] + prompt_ids[-(n_ctx // 2 - 1) :] + start
    sample_begin, sot_index = len(start), start.index(tokenizer.sot)
    initial = torch.tensor(start, device=audio_features.device).repeat(n_audio, 1)
    if model.is_multilingual:  # each window gets its own language token
        initial[:, sot_index + 1] = torch.tensor([tokenizer.language_token(c) for c in languages])

    rules = _LogitRules(tokenizer, sample_begin, suppress_tokens, suppress_blank, timestamps, max_initial_timestamp,
                        n_audio_ctx=model.dims.n_audio_ctx, free_start=prefix_in_text and bool(forced))
    kept = forced if prefix_in_text else []
    n_group = beam_size or best_of or 1
    tokens = initial.repeat_interleave(n_group, dim=0)
    sum_logprobs = torch.zeros(tokens.shape[0], device=tokens.device)
    beam = _BeamState(beam_size, patience, n_audio, tokenizer.eot) if beam_size else None
    kv_cache = {}
    cross_attention = {block.cross_attn for block in model.decoder.blocks}
    no_speech_probs = [float("nan")] * n_audio

    for step in range(sample_len):
        if step == 0:
            # The whole start goes in, once per audio: every row of a group (its beams or samples)
            # holds the same start, so each gets a copy of its audio's keys and values, not a
            # computation of its own (a prompt is up to 224 tokens). Only <|startoftranscript|>'s
            # and the last logits are read.
            hidden = model.decoder.hidden(initial, audio_features, kv_cache)
            logits = model.decoder.logits(hidden[:, [sot_index, -1]]).float()
            no_speech_probs = logits[:, 0].softmax(dim=-1)[:, tokenizer.no_speech].tolist()
            logits = logits.repeat_interleave(n_group, dim=0)
            for m, (k, v) in kv_cache.items():
                if m not in cross_attention and n_group > 1:
                    kv_cache[m] = tuple(append_positions(None, t.repeat_interleave(n_group, dim=0)) for t in (k, v))
        else:
            logits = model.decoder(tokens[:, -1:], audio_features, kv_cache).float()
        logits = logits[:, -1]
        rules.apply(logits, tokens)
        if beam is not None:
            tokens, sum_logprobs, source = beam.step(tokens, logits, sum_logprobs)
            # The beams now continue other rows' prefixes. The audio's keys and values don't move,
            # and neither do the start's: a beam takes another of its own audio's rows, which hold
            # the same start. Only the sampled positions are copied, in place, and only for rows
            # that take another's (on bench part (a)'s file about one in five a step).
            moved = [row for row, taken in enumerate(source.tolist()) if taken != row]
            if moved:
                taken = source[moved]
                for m, (k, v) in kv_cache.items():
                    if m not in cross_attention:
                        k[moved, sample_begin:] = k[taken, sample_begin:]
                        v[moved, sample_begin:] = v[taken, sample_begin:]
            completed = beam.completed()
        else:
            tokens, completed = _sample_step(tokens, logits, sum_logprobs, temperature, tokenizer.eot)
        if completed or tokens.shape[-1] > n_ctx:
            break

    # candidates per window, each cut between the first sampled token and <|endoftext|>
    if beam is not None:
        candidates = beam.finalize(tokens.view(n_audio, n_group, -1), sum_logprobs.view(n_audio, n_group))
    else:
        ended = F.pad(tokens, (0, 1), value=tokenizer.eot).view(n_audio, n_group, -1).tolist()
        scores = sum_logprobs.view(n_audio, n_group).tolist()
        candidates = [list(zip(ended[i], scores[i])) for i in range(n_audio)]

    results = []
    for i, group in enumerate(candidates):
        group = [(kept + seq[sample_begin : seq.index(tokenizer.eot, sample_begin)], score) for seq, score in group]
        best, score = max(group, key=lambda c: score_with_length_penalty(c[1], len(c[0]), length_penalty))
        results.append(
            DecodeResult(
                tokens=best,
                text=tokenizer.decode(best).strip(),
                avg_logprob=score / (len(best) + 1),
                no_speech_prob=no_speech_probs[i],
                language=languages[i] or "en",
                language_probs=language_probs[i],
                temperature=temperature,
            )
        )
    return results[0] if single else results


def score_with_length_penalty(logprob: float, length: int, alpha: Optional[float]) -> float:
    """None: the mean log-prob per token; alpha in [0, 1]: Google NMT's ((5 + len) / 6) ** alpha."""
    return logprob / (max(length, 1) if alpha is None else ((5 + length) / 6) ** alpha)


def _sample_step(tokens: Tensor, logits: Tensor, sum_logprobs: Tensor, temperature: float, eot: int):
    """Greedy (temperature 0) or sampled next token for every row; finished rows keep emitting eot."""
    if temperature == 0:
        next_tokens = logits.argmax(dim=-1)
    else:  # inverse transform sampling, one uniform draw per row: an order of magnitude faster on a
        # CPU than torch.multinomial (which Categorical uses) over 51864 tokens
        cdf = F.softmax(logits.float() / temperature, dim=-1).cumsum(dim=-1, dtype=torch.float64)
        u = torch.rand(len(cdf), 1, dtype=cdf.dtype, device=cdf.device) * cdf[:, -1:]
        next_tokens = torch.searchsorted(cdf, u, right=True)[:, 0].clamp_(max=logits.shape[-1] - 1)
    logprobs = F.log_softmax(logits.float(), dim=-1)
    finished = tokens[:, -1] == eot
    sum_logprobs += logprobs[torch.arange(len(next_tokens)), next_tokens] * ~finished
    next_tokens[finished] = eot
    tokens = torch.cat([tokens, next_tokens[:, None]], dim=-1)
    return tokens, bool((tokens[:, -1] == eot).all())


class _BeamState:
    """Beam search bookkeeping for n_audio groups of beam_size rows.

    Each step, every live beam proposes its beam_size + 1 best next tokens; per audio the best
    candidates are taken in order of total log-prob: those ending in eot are set aside as finished
    (up to beam_size * patience of them), the others become the next beam_size live beams.
    """

    def __init__(self, beam_size: int, patience: Optional[float], n_audio: int, eot: int):
        self.beam_size, self.eot = beam_size, eot
        self.max_candidates = round(beam_size * (patience or 1.0))
        if self.max_candidates <= 0:
            raise ValueError(f"invalid beam size ({beam_size}) or patience ({patience})")
        self.finished = [{} for _ in range(n_audio)]  # per audio: {token tuple: sum log-prob}

    def step(self, tokens: Tensor, logits: Tensor, sum_logprobs: Tensor):
        logprobs = F.log_softmax(logits.float(), dim=-1)
        top_logprobs, top_tokens = logprobs.topk(self.beam_size + 1, dim=-1)
        totals = (sum_logprobs[:, None] + top_logprobs).tolist()
        top_tokens, prefixes = top_tokens.tolist(), tokens.tolist()
        next_seqs, next_scores, sources = [], [], []
        for i, finished in enumerate(self.finished):
            candidates = {}  # sequence -> (score, source row); a later duplicate overwrites, as a dict does
            for row in range(i * self.beam_size, (i + 1) * self.beam_size):
                for token, total in zip(top_tokens[row], totals[row]):
                    candidates[tuple(prefixes[row] + [token])] = (total, row)
            newly_finished, kept = {}, 0
            for seq, (score, row) in sorted(candidates.items(), key=lambda kv: kv[1][0], reverse=True):
                if seq[-1] == self.eot:
                    newly_finished[seq] = score
                    continue
                next_seqs.append(seq)
                next_scores.append(score)
                sources.append(row)
                kept += 1
                if kept == self.beam_size:
                    break
            for seq in sorted(newly_finished, key=newly_finished.get, reverse=True):
                if len(finished) >= self.max_candidates:
                    break
                finished[seq] = newly_finished[seq]
        device = tokens.device
        return (
            torch.tensor(next_seqs, device=device),
            torch.tensor(next_scores, device=device),
            torch.tensor(sources, device=device),
        )

    def completed(self) -> bool:
        return all(len(finished) >= self.max_candidates for finished in self.finished)

    def finalize(self, tokens: Tensor, sum_logprobs: Tensor) -> list:
        """Finished candidates per audio, topped up with the best live beams if too few finished."""
        out = []
        for i, finished in enumerate(self.finished):
            finished = dict(finished)
            if len(finished) < self.beam_size:
                for j in sum_logprobs[i].argsort(descending=True).tolist():
                    finished[tuple(tokens[i, j].tolist() + [self.eot])] = sum_logprobs[i, j].item()
                    if len(finished) >= self.beam_size:
                        break
            out.append([(list(seq), score) for seq, score in finished.items()])
        return out


class _LogitRules:
    """Masks the next-token logits in place: tokens that must never be sampled, no blank start,
    and the timestamp grammar (timestamps come in non-decreasing pairs around text)."""

    def __init__(self, tokenizer, sample_begin, suppress_tokens, suppress_blank, timestamps, max_initial_timestamp,
                 n_audio_ctx=1500, free_start=False):
        self.tokenizer, self.sample_begin, self.timestamps = tokenizer, sample_begin, timestamps
        self.free_start = free_start  # the first sampled token continues a text: no timestamp rules for it
        suppress = []
        if isinstance(suppress_tokens, str):
            suppress = [int(t) for t in suppress_tokens.split(",") if t.strip()]
        elif suppress_tokens:
            suppress = list(suppress_tokens)
        if -1 in suppress:
            suppress = [t for t in suppress if t >= 0] + list(tokenizer.non_speech_tokens)
        t = tokenizer
        suppress += [t.transcribe, t.translate, t.sot, t.sot_prev, t.sot_lm, t.no_speech]
        self.suppress = sorted(set(suppress))
        self.blank = tokenizer.encode(" ") + [tokenizer.eot]
        self.suppress_blank = suppress_blank
        # a timestamp step is the window's length over its audio positions: 0.02 s whatever the window
        # (openai-whisper's CHUNK_LENGTH / n_audio_ctx assumes 30 s). The last timestamp is the window's end.
        precision = window_frames(n_audio_ctx) / FRAMES_PER_SECOND / n_audio_ctx
        self.max_initial_index = None
        if max_initial_timestamp:
            self.max_initial_index = round(max_initial_timestamp / precision)
        self.last_index = n_audio_ctx

    def apply(self, logits: Tensor, tokens: Tensor):
        inf = float("-inf")
        at_start = tokens.shape[1] == self.sample_begin
        if self.suppress_blank and at_start:
            logits[:, self.blank] = inf
        logits[:, self.suppress] = inf
        if not self.timestamps:
            return
        ts_begin, eot = self.tokenizer.timestamp_begin, self.tokenizer.eot
        logits[:, self.tokenizer.no_timestamps] = inf
        logits[:, ts_begin + self.last_index + 1 :] = inf  # past a short window's end (none for 30 s windows)
        if at_start and self.free_start:
            return
        sampled = tokens[:, self.sample_begin :].tolist()
        for k, seq in enumerate(sampled):
            last_ts = len(seq) >= 1 and seq[-1] >= ts_begin
            penultimate_ts = len(seq) < 2 or seq[-2] >= ts_begin
            if last_ts:
                if penultimate_ts:  # a pair just closed: text (or eot) must follow
                    logits[k, ts_begin:] = inf
                else:  # an opening timestamp: the next one closes it, or the text ends
                    logits[k, :eot] = inf
            seen = [s for s in seq if s >= ts_begin]
            if seen:  # never go back in time; a segment must have a nonzero length
                last = seen[-1] if (last_ts and not penultimate_ts) else seen[-1] + 1
                logits[k, ts_begin:last] = inf
        if at_start:
            logits[:, :ts_begin] = inf  # the first token is a timestamp
            if self.max_initial_index is not None:
                logits[:, ts_begin + self.max_initial_index + 1 :] = inf
        # when the timestamps together are likelier than any single text token, take a timestamp
        # (compared as logits: the log-softmax's normaliser is the same on both sides)
        ts_mass = logits[:, ts_begin:].float().logsumexp(dim=-1)
        best_text = logits[:, :ts_begin].float().amax(dim=-1)  # amax, not max(dim): no indices to find
        # the rows by index: a boolean mask is a masked_fill that visits every row's 50k text logits
        logits[(ts_mass > best_text).nonzero()[:, 0], :ts_begin] = inf


@torch.inference_mode()
def transcribe_windows(model: Whisper, mels, batch_size: int = 16, sample_len: int = None) -> list:
    """Greedy transcripts of a list (or batch tensor) of windows, batch_size at a time: how eval.py
    and train.py score a model."""
    texts = []
    for i in range(0, len(mels), batch_size):
        batch = mels[i : i + batch_size]
        batch = torch.stack(list(batch)) if not torch.is_tensor(batch) else batch
        results = decode(model, batch.to(model.device, model.dtype), sample_len=sample_len)
        texts += [r.text for r in results]
    return texts
