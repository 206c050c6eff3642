"""
int8 inference on a CPU, by swapping modules: nothing here changes model.py's classes.

quantize_int8(model) turns, in place:
- every nn.Linear of the decoder into an Int8Linear (int8 weights, one scale per output channel,
  the input quantised on every call: fbgemm's dynamic quantisation);
- each self-attention into an Int8SelfAttention, whose query, key and value are one Int8Linear
  (the input is quantised once instead of three times);
- the decoder into an Int8TextDecoder, whose logits come from an int8 copy of the token embedding
  (the largest matrix of the small models, read once for every decoded token), and whose token
  embedding becomes an Int8Embedding that looks up the same int8 rows;
- the encoder, by what the CPU has (why: at AMX_BF16):
  - with AMX, into a Bf16Encoder, all of it in bf16, and each cross-attention into a
    Bf16AudioAttention, whose keys and values of the audio are bf16;
  - without, into a Bf16MathEncoder, whose fp32 matmuls and convolutions may use oneDNN's bf16
    math mode (the 1500-position self-attention is the encoder's largest cost), its Linears
    Bf16Linears where the CPU has bf16 dot products (why: at ENCODER_BF16), else Int8Linears.
The swapped modules keep their children and parameters; they are subclasses, so everything that
reads the model (word timings, figures) sees the same structure.
"""
import warnings
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model import AudioEncoder, MultiHeadAttention, TextDecoder, Whisper

# fbgemm quantises a Linear's input to 8 bits with one scale for the whole call. Without VNNI its
# kernels add pairs of u8 x s8 products in int16, which can saturate, so the input keeps to 7 bits
# (reduce_range); AVX512-VNNI adds them in int32, where the full 8 bits are safe and halve the
# input's rounding error: on tiny.en, teacher-forced logits move half as far from fp32's
# (docs/bench.md, "int8 accuracy").
_CPU = getattr(torch.cpu, "get_capabilities", dict)()
REDUCE_RANGE = not _CPU.get("avx512_vnni", False)
# The encoder's Linears in bf16, not int8, where the CPU has bf16 dot products (without them a bf16
# matmul has no fast kernel to run on; not measured: this project's CPUs have them). int8 rounds
# each call's 1500 positions to one input scale, and the mlp.2's input (the GELU of 1536 channels)
# has a few values far larger than the rest, so most keep a handful of steps: alone in int8 it moved
# tiny.en's logits twice as far as the encoder's attention projections. bf16 rounds each value on
# its own. On the AMD EPYC (AVX512-BF16, no AMX) the whole encoder's Linears in bf16 took its
# windows as long as int8 with only mlp.2 in bf16 and brought the logits nearer fp32's than that
# did, once the token lookups read int8 rows (docs/bench.md, "int8 accuracy").
ENCODER_BF16 = bool(_CPU.get("avx512_bf16", False) or _CPU.get("amx_bf16", False))
# With AMX a bf16 matmul runs on the tile unit. There the encoder wholly in bf16, attention
# included, takes half the time of int8 Linears around fp32 attention, and its features are nearer
# fp32's: int8 rounds the 1500 positions of a call to one input scale, bf16 rounds each value on its
# own. On tiny.en that difference decided whether windows failed the fallback's checks and were
# decoded again by sampling (docs/bench.md, "The encoder in bf16 on AMX"). Each decoded token then
# reads the audio's keys and values in bf16 too: half of fp32's bytes, and SDPA's bf16 kernel is
# faster there at every batch and beam shape measured. CPUs without AMX keep the int8 encoder
# (measured on one with AVX512-BF16 but no AMX; the bf16 encoder was not measured there).
AMX_BF16 = bool(_CPU.get("amx_bf16", False))


def quantize_rows(weight: Tensor) -> Tensor:
    """weight (out, in) as a qint8 tensor with one symmetric scale per row, the rounding of every
    Int8Linear. The scales come from aminmax, not abs().amax(): on the logits' matrix the |weight|
    temporary alone is 80 MB, the peak of a process that loads tiny.en in fp32 and quantises it."""
    weight = weight.detach().float()
    lo, hi = weight.aminmax(dim=1)
    scale = (torch.maximum(-lo, hi) / 127.5).clamp(min=torch.finfo(torch.float32).eps).double()
    zero = torch.zeros(len(scale), dtype=torch.long)
    with warnings.catch_warnings():  # quantized tensors are deprecated in favour of torchao, still in torch
        warnings.simplefilter("ignore")
        return torch.quantize_per_channel(weight, scale, zero, 0, torch.qint8)


class Int8Linear(nn.Module):
    """A Linear for CPU inference: int8 weights with one symmetric scale per output channel, the
    input quantised on every call, to 8 bits, or to 7 where REDUCE_RANGE. With 7 its outputs are
    bit-equal to those of torch.ao.quantization.quantize_dynamic with per_channel_dynamic_qconfig,
    which packs each weight three times, always uses 7 bits and is deprecated; this packs it once.
    `weight` is a float tensor, or one that quantize_rows made."""

    def __init__(self, weight: Tensor, bias: Tensor | None = None):
        super().__init__()
        qweight = weight if weight.is_quantized else quantize_rows(weight)
        self.packed = torch.ops.quantized.linear_prepack(qweight, None if bias is None else bias.detach().float())

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.quantized.linear_dynamic(x, self.packed, REDUCE_RANGE)


class Int8Embedding(nn.Module):
    """The token embedding as the logits' int8 rows and scales, for lookups: a quarter of the fp32
    table, which was the largest tensor left in an int8 tiny.en (77 MB of its ~100)."""

    def __init__(self, qweight: Tensor):
        super().__init__()
        self.register_buffer("rows", qweight.int_repr())
        self.register_buffer("scales", qweight.q_per_channel_scales().float())

    def forward(self, tokens: Tensor) -> Tensor:
        return self.rows[tokens].float() * self.scales[tokens, None]


class Bf16Linear(nn.Module):
    """A Linear with bf16 weights, any float in, `out_dtype` out (fp32 unless given): each input
    rounded on its own, not to a scale shared with the rest of the call as in Int8Linear."""

    def __init__(self, weight: Tensor, bias: Tensor | None = None, out_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().bfloat16(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().bfloat16(), requires_grad=False)
        self.out_dtype = out_dtype

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x.bfloat16(), self.weight, self.bias).to(self.out_dtype)


class Int8SelfAttention(MultiHeadAttention):
    """Self-attention whose three projections are one Int8Linear, `qkv`."""

    def self_projections(self, x: Tensor):
        return self.qkv(x).chunk(3, dim=-1)


class Int8TextDecoder(TextDecoder):
    """The decoder with its logits from `output`, an int8 copy of the tied embedding."""

    def logits(self, x: Tensor) -> Tensor:
        return self.output(x)


class Bf16AudioAttention(MultiHeadAttention):
    """Cross-attention whose `key` and `value` are Bf16Linears that return bf16: the audio's keys and
    values, cached once a window and read for every token, are bf16; each query meets them in bf16."""

    def attention(self, q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
        return super().attention(q.to(k.dtype), k, v, causal).to(q.dtype)


class Bf16Encoder(AudioEncoder):
    """The encoder with bf16 parameters and Bf16Linears that stay in bf16: fp32 mel in, fp32 out."""

    def forward(self, mel: Tensor) -> Tensor:
        return super().forward(mel.bfloat16()).float()


class Bf16MathEncoder(AudioEncoder):
    def forward(self, mel: Tensor) -> Tensor:
        with onednn_bf16_math(mel.device.type == "cpu"):
            return super().forward(mel)


@contextmanager
def onednn_bf16_math(enabled: bool = True):
    """Within it, fp32 matmuls and convolutions on the CPU may run in oneDNN's bf16 math mode
    (torch >= 2.9; a no-op before): fp32 in and out, bf16 instructions allowed inside (allowed, not
    required: without them it is plain fp32). The error stays near fp32's (docs/bench.md has the
    measurements). Not for the decoder: its one-token matmuls were slower under it."""
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


def _become(module: nn.Module, cls: type) -> nn.Module:
    """Make `module` an instance of `cls`, a subclass of its class that only overrides methods:
    the same children, parameters and hooks, new behaviour (torch's parametrize does the same)."""
    assert issubclass(cls, type(module)), (cls, type(module))
    module.__class__ = cls
    return module


def _swap_linears(root: nn.Module, make) -> None:
    """Replace every nn.Linear under root by make(linear)."""
    for parent in list(root.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                setattr(parent, name, make(child))


def quantize_int8(model: Whisper) -> Whisper:
    """The model for int8 CPU inference, modified in place and returned (see the module docstring).
    Its Linears' fp32 weights are gone afterwards: it can't be trained or saved."""
    model.float()  # dynamic quantisation takes fp32 activations
    embedding = quantize_rows(model.decoder.token_embedding.weight)
    del model.decoder.token_embedding  # the fp32 table (77 MB for tiny.en) goes before the two int8 copies come
    model.decoder.token_embedding = Int8Embedding(embedding)
    _become(model.decoder, Int8TextDecoder).output = Int8Linear(embedding)
    del embedding
    encoder_int8 = not (AMX_BF16 or ENCODER_BF16)
    blocks = (list(model.encoder.blocks) if encoder_int8 else []) + list(model.decoder.blocks)
    for block in blocks:
        attn = _become(block.attn, Int8SelfAttention)
        key_bias = torch.zeros_like(attn.value.bias)
        attn.qkv = Int8Linear(torch.cat([attn.query.weight, attn.key.weight, attn.value.weight]),
                              torch.cat([attn.query.bias, key_bias, attn.value.bias]))
        del attn.query, attn.key, attn.value  # self_projections reads qkv alone: not packed twice below
    if AMX_BF16:
        _become(model.encoder, Bf16Encoder).bfloat16()
        _swap_linears(model.encoder, lambda linear: Bf16Linear(linear.weight, linear.bias, out_dtype=torch.bfloat16))
        for block in model.decoder.blocks:
            cross = _become(block.cross_attn, Bf16AudioAttention)
            cross.key, cross.value = (Bf16Linear(linear.weight, linear.bias, out_dtype=torch.bfloat16)
                                      for linear in (cross.key, cross.value))
    else:
        _become(model.encoder, Bf16MathEncoder)
        if ENCODER_BF16:
            _swap_linears(model.encoder, lambda linear: Bf16Linear(linear.weight, linear.bias))
    _swap_linears(model, lambda linear: Int8Linear(linear.weight, linear.bias))
    return model
