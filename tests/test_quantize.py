"""int8 inference (quantize.py): close to fp32, and the same network structure."""
import pytest
import torch
from conftest import mel_window, real_clips

import quantize
from audio import load_audio
from decoding import decode, encode
from model import AudioEncoder, MultiHeadAttention
from pretrained import load_checkpoint
from quantize import Bf16Linear, Int8Linear, quantize_int8


@pytest.mark.slow
def test_int8_decodes_real_speech_like_fp32(ours, tiny_en_checkpoint):
    """quantize_int8 (transcribe.py --dtype int8): greedy text within a few % WER of fp32."""
    from metrics import word_error_rate

    int8 = quantize_int8(load_checkpoint(str(tiny_en_checkpoint)).eval())  # in place: not the shared `ours`
    mels = torch.stack([mel_window(load_audio(path)) for path in real_clips()])
    fp32_texts = [r.text for r in decode(ours, mels)]
    int8_texts = [r.text for r in decode(int8, mels)]
    assert word_error_rate(fp32_texts, int8_texts) <= 0.05
    assert not any(type(m) is torch.nn.Linear for m in int8.modules())  # every Linear is int8 or bf16, the logits too


def test_int8_logits_stay_as_close_to_fp32_as_rounding_the_weights_allows(ours, tiny_en_checkpoint, spoken):
    """Teacher-forced on fp32's own greedy tokens, int8's logits are on average no farther from
    fp32's than twice what rounding the weights to int8 alone moves them: the inputs' rounding adds
    at most as much again. The 7-bit per-call inputs of fbgemm's default (reduce_range) moved them
    four times as far, mostly in the encoder's mlp.2 (docs/bench.md, "int8 accuracy")."""
    if quantize.REDUCE_RANGE or not quantize.ENCODER_BF16:
        pytest.skip("the bound is for 8-bit int8 inputs (AVX512-VNNI) and a bf16 encoder (AVX512-BF16 or AMX)")
    int8 = quantize_int8(load_checkpoint(str(tiny_en_checkpoint)).eval())
    rounded = load_checkpoint(str(tiny_en_checkpoint)).eval()  # fp32 math on int8-rounded weights
    for module in rounded.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
            scale = module.weight.abs().amax(dim=1, keepdim=True) / 127.5  # Int8Linear's scales
            module.weight.data = (module.weight / scale).round().clamp(-128, 127) * scale
    mels = torch.stack([mel_window(a) for a in spoken])
    distance = {}
    with torch.inference_mode():
        features = encode(ours, mels)
        fp32 = decode(ours, features)
        for name, model in (("fp32", ours), ("int8", int8), ("rounded", rounded)):
            logits = [model.decoder(torch.tensor([[50257, 50362, *r.tokens]]),
                                    features[i : i + 1] if model is ours else encode(model, mels[i : i + 1]))
                      for i, r in enumerate(fp32)]
            distance[name] = logits if name == "fp32" else torch.cat(
                [(a - b).abs().flatten() for a, b in zip(logits, distance["fp32"])]).mean()
    assert distance["int8"] <= 2 * distance["rounded"], (distance["int8"], distance["rounded"])


def test_int8_features_of_a_window_do_not_depend_on_its_batch(tiny_en_checkpoint, spoken):
    """int8 quantises each call's activations with one scale: encoded as a batch, a window's
    features would change with the other windows in it (by up to 1.2 on tiny.en)."""

    int8 = quantize_int8(load_checkpoint(str(tiny_en_checkpoint)).eval())
    mels = torch.stack([mel_window(a) for a in spoken[:2]] + [torch.zeros_like(mel_window(spoken[0]))])
    with torch.no_grad():
        batch = encode(int8, mels)
        alone = torch.cat([encode(int8, mel[None]) for mel in mels])
    assert torch.equal(batch, alone)


def test_int8_encoder_in_bf16_math_is_no_farther_from_fp32(ours, tiny_en_checkpoint, spoken, monkeypatch):
    """Without AMX, quantize_int8 runs the encoder's fp32 matmuls in oneDNN's bf16 math mode: its
    features stay as close to fp32's as with strict fp32 math (int8's own rounding is the larger
    error), and the setting is back to what it was after the call."""
    monkeypatch.setattr(quantize, "AMX_BF16", False)  # that path, whatever this CPU has
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


def test_int8_linear_equals_torch_dynamic_quantisation(monkeypatch):
    """Int8Linear packs each weight once; with 7-bit inputs (reduce_range, fbgemm's default and the
    only setting quantize_dynamic has) its outputs equal quantize_dynamic's per-channel int8 Linear."""
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    monkeypatch.setattr(quantize, "REDUCE_RANGE", True)
    torch.manual_seed(0)
    for n_in, n_out, bias in ((384, 384, True), (384, 1536, True), (64, 5000, False)):
        linear = torch.nn.Linear(n_in, n_out, bias=bias)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = quantize_dynamic(torch.nn.Sequential(linear), {torch.nn.Linear: per_channel_dynamic_qconfig})[0]
        x = torch.randn(2, 9, n_in)
        assert torch.equal(Int8Linear(linear.weight, linear.bias)(x), reference(x))


def test_int8_linear_with_8_bit_inputs_does_not_saturate():
    """Where quantize.REDUCE_RANGE is off (AVX512-VNNI), inputs keep all 8 bits: the worst case for a
    kernel adding pairs of u8 x s8 products in int16 (every input at 255, every weight at 127) still
    gives the exact integer arithmetic, and a step is half of the 7-bit one's."""
    n_in = 384
    weight = torch.ones(4, n_in)
    weight[1::2] = -1
    x = torch.ones(3, n_in)
    x[:, 0] = -1  # the input's range is [-1, 1]: every other input quantises to the top of it
    linear = Int8Linear(weight)
    q_weight, _ = torch.ops.quantized.linear_unpack(linear.packed)
    assert q_weight.int_repr().abs().min() == 127
    top = 127 if quantize.REDUCE_RANGE else 255
    step = 2 / top
    zero = round(1 / step)
    x_q = ((x / step).round() + zero).clamp(0, top)
    exact = ((x_q - zero) * step) @ q_weight.dequantize().T
    assert torch.allclose(linear(x), exact, rtol=1e-5)


def test_int8_keeps_the_encoder_linears_in_bf16_where_the_cpu_has_bf16(tiny_en_checkpoint, monkeypatch):
    """Without AMX but with bf16 dot products, quantize_int8 makes every Linear of the encoder a
    Bf16Linear (fp32 out; the checkpoint's weights rounded to bf16) and the decoder's Int8Linears;
    without bf16 dot products the encoder's are Int8Linears too."""
    monkeypatch.setattr(quantize, "AMX_BF16", False)
    fp32 = load_checkpoint(str(tiny_en_checkpoint))
    for bf16 in (True, False):
        monkeypatch.setattr(quantize, "ENCODER_BF16", bf16)  # the swap, whatever this CPU has
        int8 = quantize_int8(load_checkpoint(str(tiny_en_checkpoint)).eval())
        for block, weights in zip(int8.encoder.blocks, fp32.encoder.blocks):
            linears = [block.mlp[0], block.mlp[2], block.attn.out]
            if bf16:
                linears += [block.attn.query, block.attn.key, block.attn.value]
                assert all(isinstance(x, Bf16Linear) and x.out_dtype == torch.float32 for x in linears)
                assert torch.equal(block.mlp[2].weight, weights.mlp[2].weight.bfloat16())
                assert torch.equal(block.attn.query.weight, weights.attn.query.weight.bfloat16())
            else:
                assert all(isinstance(x, Int8Linear) for x in linears + [block.attn.qkv])
        assert all(isinstance(block.mlp[2], Int8Linear) for block in int8.decoder.blocks)
        assert not any(type(m) is torch.nn.Linear for m in int8.modules())


def test_int8_with_amx_runs_the_encoder_in_bf16_nearer_fp32_than_int8(ours, tiny_en_checkpoint, spoken, monkeypatch):
    """Where the CPU has AMX, the encoder is bf16 throughout (every Linear a Bf16Linear, every other
    parameter bf16) and the audio's cached keys and values are bf16: features nearer fp32's than
    the int8 encoder's (each value rounded on its own, not to one scale per call). The logits of
    either path are bounded by test_int8_logits_stay_as_close_to_fp32_as_rounding_the_weights_allows
    (bf16 keys and values round the audio once more there). So are the features of the path for
    CPUs with bf16 dot products but no AMX (bf16 Linears, fp32 attention and norms). Runs on any
    CPU: bf16 works without AMX, only slower."""
    mels = torch.stack([mel_window(a) for a in spoken[:2]])
    tokens = torch.tensor([[50257, 50362, 383, 2068, 7586, 21831]] * len(mels))
    error = {}
    with torch.inference_mode():
        fp32_features = encode(ours, mels)
        for path, (amx, bf16) in {"amx": (True, True), "bf16 linears": (False, True), "int8": (False, False)}.items():
            monkeypatch.setattr(quantize, "AMX_BF16", amx)
            monkeypatch.setattr(quantize, "ENCODER_BF16", bf16)
            int8 = quantize_int8(load_checkpoint(str(tiny_en_checkpoint)).eval())
            features = encode(int8, mels)
            assert features.dtype == torch.float32
            kv_cache = {}
            int8.decoder(tokens, features, kv_cache)
            cross = [block.cross_attn for block in int8.decoder.blocks]
            assert {kv_cache[m][0].dtype for m in cross} == {torch.bfloat16 if amx else torch.float32}
            error[path] = (features - fp32_features).abs().mean()
    monkeypatch.setattr(quantize, "AMX_BF16", True)
    bf16 = quantize_int8(load_checkpoint(str(tiny_en_checkpoint)).eval())
    linears = [m for m in bf16.encoder.modules() if isinstance(m, (torch.nn.Linear, Int8Linear, Bf16Linear))]
    assert linears and all(isinstance(m, Bf16Linear) for m in linears)
    assert {p.dtype for p in bf16.encoder.parameters()} | {b.dtype for b in bf16.encoder.buffers()} == {torch.bfloat16}
    assert error["amx"] < error["int8"] / 2 and error["bf16 linears"] < error["int8"] / 2, error


def test_int8_embedding_looks_up_the_rows_of_the_int8_logits(tiny_en_checkpoint):
    """quantize_int8 keeps one int8 copy of the tied embedding for both of its uses: the lookup
    returns exactly the rows the logits are computed from, and the fp32 table is gone."""
    fp32 = load_checkpoint(str(tiny_en_checkpoint))
    int8 = quantize_int8(load_checkpoint(str(tiny_en_checkpoint)).eval())
    decoder = int8.decoder
    assert not any(isinstance(m, torch.nn.Embedding) for m in int8.modules())
    weight, _ = torch.ops.quantized.linear_unpack(decoder.output.packed)
    tokens = torch.tensor([[50257, 50362, 0, 383, 2068, 51863]])
    looked_up = decoder.token_embedding(tokens)
    assert torch.equal(looked_up, weight.dequantize()[tokens])
    rounding = (looked_up - fp32.decoder.token_embedding(tokens)).abs()
    assert 0 < rounding.max() <= weight.q_per_channel_scales()[tokens].max() / 2 + 1e-6
