"""int8 inference (quantize.py): close to fp32, and the same network structure."""
import pytest
import torch

from audio import load_audio
from conftest import mel_window, real_clips
from decoding import decode, encode
from model import AudioEncoder, MultiHeadAttention
from pretrained import load_checkpoint
from quantize import Int8Linear, quantize_int8


@pytest.mark.slow
def test_int8_decodes_real_speech_like_fp32(ours, tiny_en_checkpoint):
    """quantize_int8 (transcribe.py --dtype int8): greedy text within a few % WER of fp32."""
    from metrics import word_error_rate

    int8 = quantize_int8(load_checkpoint(str(tiny_en_checkpoint)).eval())  # in place: not the shared `ours`
    mels = torch.stack([mel_window(load_audio(path)) for path in real_clips()])
    fp32_texts = [r.text for r in decode(ours, mels)]
    int8_texts = [r.text for r in decode(int8, mels)]
    assert word_error_rate(fp32_texts, int8_texts) <= 0.05
    assert not any(type(m) is torch.nn.Linear for m in int8.modules())  # every Linear is int8, the logits too


def test_int8_features_of_a_window_do_not_depend_on_its_batch(tiny_en_checkpoint, spoken):
    """int8 quantises each call's activations with one scale: encoded as a batch, a window's
    features would change with the other windows in it (by up to 1.2 on tiny.en)."""

    int8 = quantize_int8(load_checkpoint(str(tiny_en_checkpoint)).eval())
    mels = torch.stack([mel_window(a) for a in spoken[:2]] + [torch.zeros_like(mel_window(spoken[0]))])
    with torch.no_grad():
        batch = encode(int8, mels)
        alone = torch.cat([encode(int8, mel[None]) for mel in mels])
    assert torch.equal(batch, alone)


def test_int8_encoder_in_bf16_math_is_no_farther_from_fp32(ours, tiny_en_checkpoint, spoken):
    """quantize_int8 runs the encoder's fp32 matmuls in oneDNN's bf16 math mode: its features stay
    as close to fp32's as with strict fp32 math (int8's own rounding is the larger error), and the
    setting is back to what it was after the call."""

    int8 = quantize_int8(load_checkpoint(str(tiny_en_checkpoint)).eval())
    mkldnn = torch.backends.mkldnn
    before = getattr(getattr(mkldnn, "matmul", None), "fp32_precision", None)
    mels = torch.stack([mel_window(a) for a in spoken[:2]])
    with torch.no_grad():
        fp32 = encode(ours, mels)
        fast = encode(int8, mels)
        assert getattr(getattr(mkldnn, "matmul", None), "fp32_precision", None) == before
        int8.encoder.__class__ = AudioEncoder  # the same weights in strict fp32 math
        strict = encode(int8, mels)
    error_fast, error_strict = (fast - fp32).abs().mean(), (strict - fp32).abs().mean()
    assert error_fast <= 1.1 * error_strict, (error_fast, error_strict)


def test_int8_packed_qkv_gives_the_logits_of_three_projections(tiny_en_checkpoint, spoken):
    """quantize_int8 packs each self-attention's query, key and value into one Int8Linear; the input
    is quantised once either way, so the logits are the same to the bit."""
    int8 = quantize_int8(load_checkpoint(str(tiny_en_checkpoint)).eval())
    fp32 = load_checkpoint(str(tiny_en_checkpoint))
    tokens = torch.tensor([[50257, 50362, 383, 2068, 7586, 21831]])
    with torch.no_grad():
        features = int8.embed_audio(mel_window(spoken[0])[None])
        packed = int8.decoder(tokens, features)
        for block, weights in zip(int8.decoder.blocks, fp32.decoder.blocks):  # back to three projections
            assert block.attn.qkv is not None
            block.attn.__class__ = MultiHeadAttention
            for name in ("query", "key", "value"):
                linear = getattr(weights.attn, name)
                setattr(block.attn, name, Int8Linear(linear.weight, linear.bias))
        assert torch.equal(int8.decoder(tokens, features), packed)


def test_int8_linear_equals_torch_dynamic_quantisation():
    """Int8Linear packs each weight once; its outputs equal quantize_dynamic's per-channel int8 Linear."""
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    torch.manual_seed(0)
    for n_in, n_out, bias in ((384, 384, True), (384, 1536, True), (64, 5000, False)):
        linear = torch.nn.Linear(n_in, n_out, bias=bias)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = quantize_dynamic(torch.nn.Sequential(linear), {torch.nn.Linear: per_channel_dynamic_qconfig})[0]
        x = torch.randn(2, 9, n_in)
        assert torch.equal(Int8Linear(linear.weight, linear.bias)(x), reference(x))
