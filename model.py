"""
Whisper, the network: an audio encoder and a text decoder, and nothing else.

The parameter names are exactly those of openai-whisper's state_dict, so official checkpoints load
with strict=True and the checkpoints we save load in openai-whisper. Elsewhere: loading weights in
pretrained.py, the decode loop in decoding.py, int8 inference in quantize.py.
"""
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


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
        if x.dtype == self.weight.dtype == torch.float32:  # the casts below would be no-ops, yet each is a dispatch
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
    this step's keys and values to it (append_positions: views of buffers that grow); cross-attention
    computes the audio's keys and values once and reuses them on every later step.
    """

    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.query = nn.Linear(n_state, n_state)
        self.key = nn.Linear(n_state, n_state, bias=False)  # a key bias would shift every score equally
        self.value = nn.Linear(n_state, n_state)
        self.out = nn.Linear(n_state, n_state)

    def forward(self, x: Tensor, xa: Optional[Tensor] = None, causal: bool = False, kv_cache: Optional[dict] = None):
        if xa is None:
            q, k, v = self.self_projections(x)
            if kv_cache is not None:
                cached_k, cached_v = kv_cache.get(self, (None, None))
                kv_cache[self] = k, v = append_positions(cached_k, k), append_positions(cached_v, v)
        elif kv_cache is not None and self in kv_cache:
            q, (k, v) = self.query(x), kv_cache[self]
        else:
            q, k, v = self.query(x), self.key(xa), self.value(xa)
            if kv_cache is not None:  # every later step reads these: split them into heads once
                k, v = self.split_heads(k).contiguous(), self.split_heads(v).contiguous()
                kv_cache[self] = (k, v)
        return self.out(self.attention(q, k, v, causal))

    def self_projections(self, x: Tensor):
        """Self-attention's query, key and value of x (quantize.py fuses the three)."""
        return self.query(x), self.key(x), self.value(x)

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


def append_positions(cached: Optional[Tensor], new: Tensor) -> Tensor:
    """cached (B, S, C) followed by new (B, T, C) along the positions, as a view of a buffer with
    room for more. When `cached` is such a view with room left, `new` is written after it in place;
    otherwise the buffer is replaced by one with twice the positions. Each decoded token then
    copies its own keys and values, where torch.cat copied the whole cache, prompt included, every
    step: with 5 beams and a 224-token prompt that was the largest memory traffic of a step."""
    B, T, C = new.shape
    S = 0 if cached is None else cached.shape[1]
    room = S
    if cached is not None and cached.shape[0] == B and cached.stride()[1:] == (C, 1) and cached.storage_offset() == 0:
        room = cached.stride(0) // C  # its buffer's positions, if the storage really holds them all
        room = room if cached.untyped_storage().nbytes() >= B * room * C * cached.element_size() else S
    if cached is not None and S + T <= room:
        buffer = cached.as_strided((B, room, C), (room * C, C, 1))
    else:
        buffer = new.new_empty(B, 2 * (S + T), C)
        if cached is not None:
            buffer[:, :S] = cached
    buffer[:, S : S + T] = new
    return buffer[:, : S + T]


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
        """x + y, with dropout on y only where a trainer asked for it: an identity Dropout is still
        a call, and decoding crosses three per block for every token."""
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

    def forward(self, tokens: Tensor, xa: Tensor, kv_cache: Optional[dict] = None) -> Tensor:
        """tokens (B, T) and audio features (B', S, n_state) -> logits (B, T, n_vocab) in the
        compute dtype (a trainer's loss on a CPU is faster on autocast's bf16; decoding casts).
        With a kv_cache, `tokens` are only the new ones; positions continue after the cached ones."""
        return self.logits(self.hidden(tokens, xa, kv_cache))

    def hidden(self, tokens: Tensor, xa: Tensor, kv_cache: Optional[dict] = None) -> Tensor:
        """The final states (B, T, n_state), before the projection onto the vocabulary. Decoding
        projects only the positions it reads: its first step reads two of a prompt's many."""
        first_attn = self.blocks[0].attn
        offset = kv_cache[first_attn][0].shape[1] if kv_cache and first_attn in kv_cache else 0
        x = self.token_embedding(tokens) + self.positional_embedding[offset : offset + tokens.shape[-1]]
        x = x.to(xa.dtype)
        for block in self.blocks:
            x = block(x, xa, causal=True, kv_cache=kv_cache)
        return self.ln(x)

    def logits(self, x: Tensor) -> Tensor:
        return x @ self.token_embedding.weight.to(x.dtype).T  # tied to the embedding


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
        """(B, n_mels, frames) -> audio features (B, frames // 2, n_audio_state)."""
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


def flops_per_utterance(dims: ModelDimensions, n_audio: int, n_text: int) -> float:
    """FLOPs of one training step's forward and backward (3x forward) for one utterance of n_audio
    audio tokens and n_text text tokens: matmuls only, as PaLM counts for MFU."""
    da, dt, La, Lt = dims.n_audio_state, dims.n_text_state, dims.n_audio_layer, dims.n_text_layer
    macs = 2 * n_audio * dims.n_mels * 3 * da + n_audio * 3 * da * da  # conv1 (2x frames), conv2
    macs += n_audio * La * (12 * da * da + 2 * n_audio * da)  # encoder: projections + MLP, attention
    macs += n_audio * Lt * 2 * da * dt  # cross-attention keys and values of the audio
    macs += n_text * Lt * (14 * dt * dt + 2 * n_text * dt + 2 * n_audio * dt)  # decoder blocks
    macs += n_text * dims.n_vocab * dt  # logits
    return 6.0 * macs
