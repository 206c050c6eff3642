"""
Whisper, the model: an audio encoder, a text decoder, and the one decode loop everything uses.

The parameter names are exactly those of openai-whisper's state_dict, so official checkpoints load
with strict=True and the checkpoints we save load in openai-whisper. Loading weights (official
names, .pt files, CTranslate2 directories, our training checkpoints) lives in pretrained.py.
"""
import math
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from audio import CHUNK_LENGTH


@dataclass
class ModelDimensions:
    n_mels: int = 80
    n_audio_ctx: int = 1500  # audio tokens per 30 s window (the conv stem halves 3000 mel frames)
    n_audio_state: int = 384
    n_audio_head: int = 6
    n_audio_layer: int = 4
    n_vocab: int = 51864
    n_text_ctx: int = 448
    n_text_state: int = 384
    n_text_head: int = 6
    n_text_layer: int = 4


class LayerNorm(nn.LayerNorm):
    """Always normalises in fp32: fp16/bf16 statistics over 1280 channels are too coarse."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == self.weight.dtype == torch.float32:  # no casts to dispatch: 13 a decoded token
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).type(x.dtype)


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> Tensor:
    """The encoder's fixed positional embedding: sin in the first half of channels, cos in the second."""
    log_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_increment * torch.arange(channels // 2))
    angles = torch.arange(length)[:, None] * inv_timescales[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class MultiHeadAttention(nn.Module):
    """Self-attention when `xa` is None, cross-attention over the audio features otherwise.

    `kv_cache` is an optional dict owned by the caller (the decode loop). Self-attention appends
    this step's keys and values to it; cross-attention computes the audio's keys and values once
    and reuses them on every later step.
    """

    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.query = nn.Linear(n_state, n_state)
        self.key = nn.Linear(n_state, n_state, bias=False)  # a key bias would shift every score equally
        self.value = nn.Linear(n_state, n_state)
        self.out = nn.Linear(n_state, n_state)
        self.qkv = None  # quantize_int8 puts a self-attention's three projections here as one Int8Linear

    def forward(self, x: Tensor, xa: Optional[Tensor] = None, causal: bool = False, kv_cache: Optional[dict] = None):
        if xa is None:
            if self.qkv is not None:  # one call instead of three: x is quantised once either way
                q, k, v = self.qkv(x).chunk(3, dim=-1)
            else:
                q, k, v = self.query(x), self.key(x), self.value(x)
            if kv_cache is not None:
                if self in kv_cache:
                    k = torch.cat([kv_cache[self][0], k], dim=1)
                    v = torch.cat([kv_cache[self][1], v], dim=1)
                kv_cache[self] = (k, v)
        elif kv_cache is not None and self in kv_cache:
            q, (k, v) = self.query(x), kv_cache[self]
        else:
            q, k, v = self.query(x), self.key(xa), self.value(xa)
            if kv_cache is not None:  # every later step reads these: split them into heads once
                k, v = self.split_heads(k).contiguous(), self.split_heads(v).contiguous()
                kv_cache[self] = (k, v)
        return self.out(self.attention(q, k, v, causal))

    def split_heads(self, t: Tensor) -> Tensor:
        """(B, S, C) -> (B, n_head, S, C // n_head), a view."""
        B, S, C = t.shape
        return t.view(B, S, self.n_head, C // self.n_head).transpose(1, 2)

    def attention(self, q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
        """q (B, T, C) over k, v (B', S, C), or (B', n_head, S, D) already split. When several
        consecutive rows of q (beams or samples of one audio) share one row of k and v, B = g * B'
        and those queries are stacked along T: the audio's keys and values are never copied."""
        B, T, C = q.shape
        g, D = B // k.shape[0], C // self.n_head
        q = q.reshape(B // g, g * T, self.n_head, D).transpose(1, 2)
        k, v = (t if t.ndim == 4 else self.split_heads(t) for t in (k, v))
        S = k.shape[2]
        # Branches, not is_causal=(causal and T > 1): under torch.compile with a dynamic text length
        # that expression is symbolic, which SDPA rejects, and every decoder layer broke the graph.
        if not causal or T == 1:  # one new token sees all the cached ones (or its own key alone)
            y = F.scaled_dot_product_attention(q, k, v)
        elif S == T:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # new tokens after cached ones: they see all the cache
            mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return y.transpose(1, 2).reshape(B, T, C)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block: self-attention, [cross-attention,] MLP, each added to the residual."""

    def __init__(self, n_state: int, n_head: int, cross_attention: bool = False, dropout: float = 0.0):
        super().__init__()
        self.attn = MultiHeadAttention(n_state, n_head)
        self.attn_ln = LayerNorm(n_state)
        self.cross_attn = MultiHeadAttention(n_state, n_head) if cross_attention else None
        self.cross_attn_ln = LayerNorm(n_state) if cross_attention else None
        self.mlp = nn.Sequential(nn.Linear(n_state, 4 * n_state), nn.GELU(), nn.Linear(4 * n_state, n_state))
        self.mlp_ln = LayerNorm(n_state)
        self.dropout = nn.Dropout(dropout)  # identity unless a trainer asks for it

    def forward(self, x: Tensor, xa: Optional[Tensor] = None, causal: bool = False, kv_cache: Optional[dict] = None):
        x = self.residual(x, self.attn(self.attn_ln(x), causal=causal, kv_cache=kv_cache))
        if self.cross_attn is not None:
            x = self.residual(x, self.cross_attn(self.cross_attn_ln(x), xa, kv_cache=kv_cache))
        return self.residual(x, self.mlp(self.mlp_ln(x)))

    def residual(self, x: Tensor, y: Tensor) -> Tensor:
        """x + y, with dropout on y only where a trainer asked for it: not calling an identity
        Dropout saves ~5 us a sublayer, and decoding one token crosses 12 of them in tiny."""
        return x + (self.dropout(y) if self.training and self.dropout.p > 0 else y)


class AudioEncoder(nn.Module):
    def __init__(self, n_mels: int, n_ctx: int, n_state: int, n_head: int, n_layer: int, dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, n_state, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(n_state, n_state, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", sinusoids(n_ctx, n_state))
        self.blocks = nn.ModuleList([ResidualAttentionBlock(n_state, n_head, dropout=dropout) for _ in range(n_layer)])
        self.ln_post = LayerNorm(n_state)

    def forward(self, mel: Tensor) -> Tensor:
        """(B, n_mels, 2T) -> (B, T, n_state). T is n_audio_ctx for official models; shorter
        contexts (a trainer's variable-length windows) use the first T positions."""
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).transpose(1, 2)
        if x.shape[1] > self.positional_embedding.shape[0]:
            raise ValueError(f"audio is {x.shape[1]} frames after the conv stem; the model takes {self.positional_embedding.shape[0]}")
        x = x + self.positional_embedding[: x.shape[1]].to(x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x)


class TextDecoder(nn.Module):
    def __init__(self, n_vocab: int, n_ctx: int, n_state: int, n_head: int, n_layer: int, dropout: float = 0.0):
        super().__init__()
        self.token_embedding = nn.Embedding(n_vocab, n_state)
        self.positional_embedding = nn.Parameter(torch.empty(n_ctx, n_state))
        self.blocks = nn.ModuleList(
            [ResidualAttentionBlock(n_state, n_head, cross_attention=True, dropout=dropout) for _ in range(n_layer)]
        )
        self.ln = LayerNorm(n_state)
        self.output = None  # quantize_int8 puts an int8 copy of the embedding here, for the logits

    def forward(self, tokens: Tensor, xa: Tensor, kv_cache: Optional[dict] = None, float_logits: bool = True,
                logits_at: Optional[list] = None) -> Tensor:
        """tokens (B, T) and audio features (B', S, n_state) -> fp32 logits (B, T, n_vocab).
        With a kv_cache, `tokens` are only the new ones; positions continue after the cached ones.
        float_logits=False keeps autocast's bf16 logits (a trainer's loss is faster on them on a CPU).
        logits_at: only these positions' logits, (B, len(logits_at), n_vocab). A decoder's first step
        reads two of a prompt's up to 225; the projection of the others was a fifth of its time."""
        first_attn = self.blocks[0].attn
        offset = kv_cache[first_attn][0].shape[1] if kv_cache and first_attn in kv_cache else 0
        x = self.token_embedding(tokens) + self.positional_embedding[offset : offset + tokens.shape[-1]]
        x = x.to(xa.dtype)
        for block in self.blocks:
            x = block(x, xa, causal=True, kv_cache=kv_cache)
        x = self.ln(x if logits_at is None else x[:, logits_at])
        if self.output is not None:
            return self.output(x).float()
        logits = x @ self.token_embedding.weight.to(x.dtype).T  # tied to the embedding
        return logits.float() if float_logits else logits


class Whisper(nn.Module):
    def __init__(self, dims: ModelDimensions, dropout: float = 0.0):
        super().__init__()
        self.dims = dims
        self.encoder = AudioEncoder(
            dims.n_mels, dims.n_audio_ctx, dims.n_audio_state, dims.n_audio_head, dims.n_audio_layer, dropout
        )
        self.decoder = TextDecoder(
            dims.n_vocab, dims.n_text_ctx, dims.n_text_state, dims.n_text_head, dims.n_text_layer, dropout
        )
        # (layer, head) pairs of cross-attention whose maps follow the audio; used for word timings.
        # Default for models that don't name theirs: every head in the upper half of the decoder.
        self.alignment_heads = [
            (layer, head) for layer in range(dims.n_text_layer // 2, dims.n_text_layer) for head in range(dims.n_text_head)
        ]
        self.encoder_bf16_math = False  # quantize_int8 turns it on: see onednn_bf16_math

    def init_weights(self):
        """For training from scratch (official checkpoints overwrite everything)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d)):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
        nn.init.normal_(self.decoder.positional_embedding, std=0.01)
        # scale the projections that write into the residual stream by depth, as GPT-2 does
        for name, p in self.named_parameters():
            if name.endswith(("attn.out.weight", "mlp.2.weight")):
                n_layer = self.dims.n_audio_layer if name.startswith("encoder") else 2 * self.dims.n_text_layer
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * n_layer))
        return self

    def embed_audio(self, mel: Tensor) -> Tensor:
        """(B, n_mels, frames) -> audio features. On a CPU one window at a time: ~15% faster than
        the batch (a window's activations stay in cache), and int8's activation scales, one per
        call, then don't mix windows, so a window's features don't depend on its batch."""
        with onednn_bf16_math(self.encoder_bf16_math and mel.device.type == "cpu"):
            if mel.device.type == "cpu" and mel.shape[0] > 1:
                return torch.cat([self.encoder(window[None]) for window in mel])
            return self.encoder(mel)

    def forward(self, mel: Tensor, tokens: Tensor) -> Tensor:
        return self.decoder(tokens, self.encoder(mel))

    @property
    def device(self):
        return self.decoder.positional_embedding.device

    @property
    def dtype(self):
        return self.decoder.positional_embedding.dtype

    @property
    def is_multilingual(self) -> bool:
        return self.dims.n_vocab >= 51865

    @property
    def num_languages(self) -> int:
        return self.dims.n_vocab - 51765 - int(self.is_multilingual)


class Int8Linear(nn.Module):
    """A Linear for CPU inference: int8 weights with one symmetric scale per output channel, the
    input quantised on every call (fbgemm's dynamic quantisation). Its outputs are bit-equal to those
    of torch.ao.quantization.quantize_dynamic with per_channel_dynamic_qconfig, which packs each
    weight three times and is deprecated; this packs it once."""

    def __init__(self, weight: Tensor, bias: Optional[Tensor] = None):
        super().__init__()
        weight = weight.detach().float()
        scale = (weight.abs().amax(dim=1) / 127.5).clamp(min=torch.finfo(torch.float32).eps).double()
        zero = torch.zeros(len(scale), dtype=torch.long)
        with warnings.catch_warnings():  # quantized tensors are deprecated in favour of torchao, still in torch
            warnings.simplefilter("ignore")
            qweight = torch.quantize_per_channel(weight, scale, zero, 0, torch.qint8)
        self.packed = torch.ops.quantized.linear_prepack(qweight, None if bias is None else bias.detach().float())

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.quantized.linear_dynamic(x, self.packed, True)  # reduce_range, as fbgemm wants


@contextmanager
def onednn_bf16_math(enabled: bool = True):
    """Within it, fp32 matmuls and convolutions on the CPU may run in oneDNN's bf16 math mode
    (torch >= 2.9; a no-op before): fp32 in and out, bf16 instructions allowed inside (allowed, not
    required: without them it is plain fp32). Measured on the AVX512-BF16 CPU of docs/bench.md, one
    core: the error stays near fp32's (a 2048-long dot product: 2e-4 against float64, strict fp32
    6e-5, bf16-rounded inputs 0.5), and a 30 s window's self-attention in tiny.en's encoder takes
    21 ms instead of 37. Not for the decoder: its one-token matmuls got slower under it."""
    mkldnn = torch.backends.mkldnn
    if not enabled or not hasattr(getattr(mkldnn, "matmul", None), "fp32_precision"):
        yield
        return
    saved = mkldnn.matmul.fp32_precision, mkldnn.conv.fp32_precision
    mkldnn.matmul.fp32_precision = mkldnn.conv.fp32_precision = "bf16"
    try:
        yield
    finally:
        mkldnn.matmul.fp32_precision, mkldnn.conv.fp32_precision = saved


def quantize_int8(model: Whisper) -> Whisper:
    """For CPU inference: every Linear, and the logits' projection (the embedding, 80 MB in fp32 for
    51864 tokens, read once per decoded token), become Int8Linear, each self-attention's three
    projections also as one (qkv: 0.1 ms of a 3 ms decoder step on one core), and the encoder's
    attention and convolutions run in oneDNN's bf16 math mode; the model is modified in place and
    returned. Its Linears' weights are gone afterwards: it can't be trained or saved."""
    model.float()  # dynamic quantisation takes fp32 activations
    model.encoder_bf16_math = True
    model.decoder.output = Int8Linear(model.decoder.token_embedding.weight)
    for block in list(model.encoder.blocks) + list(model.decoder.blocks):
        attn = block.attn
        key_bias = torch.zeros_like(attn.value.bias)
        attn.qkv = Int8Linear(torch.cat([attn.query.weight, attn.key.weight, attn.value.weight]),
                              torch.cat([attn.query.bias, key_bias, attn.value.bias]))
        del attn.query, attn.key, attn.value  # not packed a second time below: forward calls qkv alone
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                setattr(parent, name, Int8Linear(child.weight, child.bias))
    return model


# ------------------------------------------------------------------------------------------------
# Decoding: one loop for greedy, sampling and beam search, batched over 30 s windows. The rules
# (suppressed tokens, timestamp grammar, beam bookkeeping, ranking) follow openai-whisper's
# DecodingTask so that, on the same weights, the same tokens come out.


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
def detect_language(model: Whisper, audio_features: Tensor, tokenizer) -> list:
    """Most likely language of each window: [(code, {code: prob})], from the logits after <|sot|>."""
    sot = torch.full((audio_features.shape[0], 1), tokenizer.sot, device=audio_features.device)
    logits = model.decoder(sot, audio_features)[:, 0]
    language_ids = torch.tensor(tokenizer.all_language_tokens, device=logits.device)
    probs = logits[:, language_ids].softmax(dim=-1).cpu()
    codes = tokenizer.all_language_codes
    return [(codes[int(p.argmax())], dict(zip(codes, p.tolist()))) for p in probs]


# cuDNN's attention, torch's first choice on Hopper GPUs, plans a graph for every new shape: ~3 ms of
# CPU per call (measured on an H100, torch 2.11) when the self-attention's keys grow by one each step,
# 80% of a decode's time. The other kernels need no plan.
_DECODING_ATTENTION = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


# Inference entry points (here, transcribe.py, timing.py, eval.py) run under inference_mode, not
# no_grad: no version counters or view tracking on the ~500 small ops of a decoder step (tiny, profiled).
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
    """
    from tokenizer import get_tokenizer  # here, so that model.py imports without tiktoken

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
        audio_features = model.embed_audio(mel.to(model.device, model.dtype))
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
    if prefix:
        prefix_ids = tokenizer.encode(" " + prefix.strip()) if isinstance(prefix, str) else list(prefix)
        keep = n_ctx // 2 - sample_len  # room left in the first half of the context, if any
        start += prefix_ids[-keep:] if keep > 0 else prefix_ids
    if prompt:
        prompt_ids = tokenizer.encode(" " + prompt.strip()) if isinstance(prompt, str) else list(prompt)
        start = [tokenizer.sot_prev] + prompt_ids[-(n_ctx // 2 - 1) :] + start
    sample_begin, sot_index = len(start), start.index(tokenizer.sot)
    initial = torch.tensor(start, device=audio_features.device).repeat(n_audio, 1)
    if model.is_multilingual:  # each window gets its own language token
        initial[:, sot_index + 1] = torch.tensor([tokenizer.language_token(c) for c in languages])

    rules = _LogitRules(tokenizer, sample_begin, suppress_tokens, suppress_blank, timestamps, max_initial_timestamp,
                        n_audio_ctx=model.dims.n_audio_ctx)
    n_group = beam_size or best_of or 1
    tokens = initial.repeat_interleave(n_group, dim=0)
    sum_logprobs = torch.zeros(tokens.shape[0], device=tokens.device)
    beam = _BeamState(beam_size, patience, n_audio, tokenizer.eot) if beam_size else None
    kv_cache = {}
    cross_attention = {block.cross_attn for block in model.decoder.blocks}
    no_speech_probs = [float("nan")] * n_audio

    for step in range(sample_len):
        if step == 0:  # the whole start goes in; only <|startoftranscript|>'s and the last logits are read
            logits = model.decoder(tokens, audio_features, kv_cache, logits_at=[sot_index, tokens.shape[1] - 1])
            probs_at_sot = logits[::n_group, 0].softmax(dim=-1)
            no_speech_probs = probs_at_sot[:, tokenizer.no_speech].tolist()
        else:
            logits = model.decoder(tokens[:, -1:], audio_features, kv_cache)
        logits = logits[:, -1]
        rules.apply(logits, tokens)
        if beam is not None:
            tokens, sum_logprobs, source = beam.step(tokens, logits, sum_logprobs)
            # the beams now continue other rows' prefixes; the audio's keys and values don't move
            kv_cache = {m: kv if m in cross_attention else (kv[0][source], kv[1][source]) for m, kv in kv_cache.items()}
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
        group = [(seq[sample_begin : seq.index(tokenizer.eot, sample_begin)], score) for seq, score in group]
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
    else:  # inverse transform sampling, one uniform draw per row: torch.multinomial (which
        # Categorical uses) took ~1 ms per row of 51864 tokens on a CPU core, this ~0.1 ms
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
                 n_audio_ctx=1500):
        self.tokenizer, self.sample_begin, self.timestamps = tokenizer, sample_begin, timestamps
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
        self.max_initial_index = None
        if max_initial_timestamp:
            self.max_initial_index = round(max_initial_timestamp / (CHUNK_LENGTH / n_audio_ctx))

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
        best_text = logits[:, :ts_begin].float().amax(dim=-1)  # amax: 5 us, max(dim) 28 us (it finds indices too)
        logits[ts_mass > best_text, :ts_begin] = inf
