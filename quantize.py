"""
int8 inference on a CPU, by swapping modules: nothing here changes model.py's classes.

quantize_int8(model) turns, in place:
- every nn.Linear into an Int8Linear (int8 weights, one scale per output channel, the input
  quantised on every call: fbgemm's dynamic quantisation), except the encoder's mlp.2, which
  becomes a Bf16Linear where the CPU has bf16 instructions (why: at the swap);
- each self-attention into an Int8SelfAttention, whose query, key and value are one Int8Linear
  (the input is quantised once instead of three times);
- the decoder into an Int8TextDecoder, whose logits come from an int8 copy of the token embedding
  (the largest matrix of the small models, read once for every decoded token);
- the encoder into a Bf16MathEncoder, whose fp32 matmuls and convolutions may use oneDNN's bf16 math
  mode: the 1500-position self-attention is the encoder's largest cost.
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
# The encoder's mlp.2 in bf16 (see quantize_int8) only where the CPU has bf16 dot products: without
# them a bf16 matmul has no fast kernel to run on (not measured: this project's CPUs have them).
ENCODER_MLP_BF16 = bool(_CPU.get("avx512_bf16", False) or _CPU.get("amx_bf16", False))


class Int8Linear(nn.Module):
    """A Linear for CPU inference: int8 weights with one symmetric scale per output channel, the
    input quantised on every call, to 8 bits, or to 7 where REDUCE_RANGE. With 7 its outputs are
    bit-equal to those of torch.ao.quantization.quantize_dynamic with per_channel_dynamic_qconfig,
    which packs each weight three times, always uses 7 bits and is deprecated; this packs it once."""

    def __init__(self, weight: Tensor, bias: Tensor | None = None):
        super().__init__()
        weight = weight.detach().float()
        scale = (weight.abs().amax(dim=1) / 127.5).clamp(min=torch.finfo(torch.float32).eps).double()
        zero = torch.zeros(len(scale), dtype=torch.long)
        with warnings.catch_warnings():  # quantized tensors are deprecated in favour of torchao, still in torch
            warnings.simplefilter("ignore")
            qweight = torch.quantize_per_channel(weight, scale, zero, 0, torch.qint8)
        self.packed = torch.ops.quantized.linear_prepack(qweight, None if bias is None else bias.detach().float())

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.quantized.linear_dynamic(x, self.packed, REDUCE_RANGE)


class Bf16Linear(nn.Module):
    """A Linear with bf16 weights, fp32 in and out: each input rounded on its own, not to a scale
    shared with the rest of the call as in Int8Linear."""

    def __init__(self, weight: Tensor, bias: Tensor | None = None):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().bfloat16(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().bfloat16(), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x.bfloat16(), self.weight, self.bias).float()


class Int8SelfAttention(MultiHeadAttention):
    """Self-attention whose three projections are one Int8Linear, `qkv`."""

    def self_projections(self, x: Tensor):
        return self.qkv(x).chunk(3, dim=-1)


class Int8TextDecoder(TextDecoder):
    """The decoder with its logits from `output`, an int8 copy of the tied embedding."""

    def logits(self, x: Tensor) -> Tensor:
        return self.output(x)


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


def quantize_int8(model: Whisper) -> Whisper:
    """The model for int8 CPU inference, modified in place and returned (see the module docstring).
    Its Linears' fp32 weights are gone afterwards: it can't be trained or saved."""
    model.float()  # dynamic quantisation takes fp32 activations
    _become(model.encoder, Bf16MathEncoder)
    _become(model.decoder, Int8TextDecoder).output = Int8Linear(model.decoder.token_embedding.weight)
    for block in list(model.encoder.blocks) + list(model.decoder.blocks):
        attn = _become(block.attn, Int8SelfAttention)
        key_bias = torch.zeros_like(attn.value.bias)
        attn.qkv = Int8Linear(torch.cat([attn.query.weight, attn.key.weight, attn.value.weight]),
                              torch.cat([attn.query.bias, key_bias, attn.value.bias]))
        del attn.query, attn.key, attn.value  # self_projections reads qkv alone: not packed twice below
    # The encoder's mlp.2 reads the GELU of 1536 channels at 1500 positions, a few values far larger
    # than the rest, so one int8 scale for the call leaves most of them a handful of steps. Alone in
    # int8 it moved tiny.en's logits twice as far as the encoder's attention projections and four
    # times as far as its mlp.0 (docs/bench.md, "int8 accuracy"); bf16 rounds each value on its own.
    for block in model.encoder.blocks if ENCODER_MLP_BF16 else []:
        block.mlp[2] = Bf16Linear(block.mlp[2].weight, block.mlp[2].bias)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                setattr(parent, name, Int8Linear(child.weight, child.bias))
    return model
