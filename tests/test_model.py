"""Our network and decode loop against openai-whisper on the same tiny.en weights."""
import pytest
import torch

from audio import load_audio
from conftest import mel_window, real_clips
from decoding import decode
from model import ModelDimensions, Whisper

whisper = pytest.importorskip("whisper")


def reference_decode(reference, mel, **options):
    options = whisper.DecodingOptions(language="en", fp16=False, **options)
    return whisper.decode(reference, mel, options)


def test_state_dict_keys_and_shapes_equal_the_reference(ours, reference):
    ref_sd = reference.state_dict()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref_sd.items()}


@pytest.mark.slow
def test_logits_equal_the_reference(ours, reference, spoken):
    mel = torch.stack([mel_window(a) for a in spoken])
    tokens = torch.tensor([[50257, 50362, 383, 2068, 7586, 21831], [50257, 50362, 4222, 869, 336, 12627]])
    with torch.no_grad():
        ours_logits, ref_logits = ours(mel, tokens), reference(mel, tokens)
        features_diff = (ours.embed_audio(mel) - reference.embed_audio(mel)).abs().max()
    assert features_diff <= 1e-4
    assert (ours_logits - ref_logits).abs().max() <= 1e-4


def test_kv_cache_decoding_equals_the_full_forward(ours, spoken):
    mel = mel_window(spoken[0])[None]
    tokens = torch.tensor([[50257, 50362, 383, 2068, 7586, 21831, 18045, 625]])
    with torch.no_grad():
        features = ours.embed_audio(mel)
        full = ours.decoder(tokens, features)
        cache = {}
        steps = [ours.decoder(tokens[:, :3], features, cache)]
        steps += [ours.decoder(tokens[:, i : i + 1], features, cache) for i in range(3, tokens.shape[1])]
    assert (torch.cat(steps, dim=1) - full).abs().max() <= 1e-4


def test_encode_keeps_no_graph(ours, spoken):
    """transcribe.py encodes a window itself (the copy check may decode it twice): with a graph
    recorded, the encoder's activations were kept for a backward pass that never comes (a peak
    RSS of 760-800 against 460 MB on bench part (a))."""
    from decoding import encode

    features = encode(ours, mel_window(spoken[0])[None])
    assert features.is_inference() and not features.requires_grad
    assert features.shape == (1, ours.dims.n_audio_ctx, ours.dims.n_audio_state)


@pytest.mark.slow
@pytest.mark.parametrize("options", [dict(), dict(beam_size=5), dict(timestamps=True)], ids=["greedy", "beam5", "timestamps"])
def test_tokens_equal_the_reference_on_synthetic_speech(ours, reference, spoken, options):
    ref_options = {k: v for k, v in options.items() if k != "timestamps"}
    for audio in spoken:
        mel = mel_window(audio)
        result = decode(ours, mel, **options)
        expected = reference_decode(reference, mel, without_timestamps=not options.get("timestamps"), **ref_options)
        assert result.tokens == expected.tokens
        assert result.text == expected.text
        assert result.avg_logprob == pytest.approx(expected.avg_logprob, abs=1e-4)
        assert result.no_speech_prob == pytest.approx(expected.no_speech_prob, abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("beam_size", [None, 5], ids=["greedy", "beam5"])
def test_tokens_equal_the_reference_on_real_speech(ours, reference, beam_size):
    for path in real_clips():
        mel = mel_window(load_audio(path))
        ours_tokens = decode(ours, mel, beam_size=beam_size).tokens
        ref_tokens = reference_decode(reference, mel, without_timestamps=True, beam_size=beam_size).tokens
        assert ours_tokens == ref_tokens, path.name


@pytest.mark.slow
def test_beam_options_equal_the_reference(ours, reference, spoken):
    mel = mel_window(spoken[1])
    options = dict(beam_size=3, patience=2.0, length_penalty=0.6)
    result = decode(ours, mel, timestamps=True, **options)
    expected = reference_decode(reference, mel, **options)
    assert result.tokens == expected.tokens
    assert result.avg_logprob == pytest.approx(expected.avg_logprob, abs=1e-4)


@pytest.mark.slow
def test_prompt_and_prefix_equal_the_reference(ours, reference, spoken):
    mel = mel_window(spoken[0])
    for options in [dict(prompt="A story about foxes."), dict(prefix="The quick")]:
        result = decode(ours, mel, **options)
        expected = reference_decode(reference, mel, without_timestamps=True, **options)
        assert result.tokens == expected.tokens
        # read at <|startoftranscript|>, which a prompt moves away from the first position
        assert result.no_speech_prob == pytest.approx(expected.no_speech_prob, abs=1e-4)


def test_logits_of_some_positions_equal_those_of_all(ours, spoken):
    """decode projects only the positions it reads onto the vocabulary."""
    tokens = torch.tensor([[50257, 50362, 383, 2068, 7586, 21831]])
    with torch.no_grad():
        features = ours.embed_audio(mel_window(spoken[0])[None])
        every = ours.decoder(tokens, features)
        some = ours.decoder.logits(ours.decoder.hidden(tokens, features)[:, [1, 5]])
    assert some.shape == (1, 2, every.shape[-1])
    assert (some - every[:, [1, 5]]).abs().max() <= 1e-4


@pytest.mark.slow
def test_a_batch_decodes_like_its_items(ours, spoken):
    mels = torch.stack([mel_window(a) for a in spoken])
    for beam_size in (None, 3):
        batched = decode(ours, mels, beam_size=beam_size)
        singles = [decode(ours, mel, beam_size=beam_size) for mel in mels]
        assert [r.tokens for r in batched] == [r.tokens for r in singles]


def test_random_multilingual_model_loads_in_the_reference_with_equal_logits(tmp_path):
    from pretrained import save_checkpoint

    torch.manual_seed(0)
    dims = ModelDimensions(n_mels=128, n_audio_ctx=1500, n_audio_state=64, n_audio_head=1, n_audio_layer=2,
                           n_vocab=51866, n_text_ctx=448, n_text_state=64, n_text_head=1, n_text_layer=2)
    model = Whisper(dims).init_weights().eval()
    path = tmp_path / "random-v3.pt"
    save_checkpoint(model, str(path))
    reference = whisper.load_model(str(path), device="cpu")
    mel = torch.randn(1, 128, 3000)
    tokens = torch.tensor([[50258, 50259, 50360, 50364]])
    with torch.no_grad():
        assert (model(mel, tokens) - reference(mel, tokens)).abs().max() <= 1e-4


def test_decode_rejects_conflicting_options(ours, spoken):
    mel = mel_window(spoken[0])
    with pytest.raises(ValueError, match="patience requires beam_size"):
        decode(ours, mel, patience=2.0)
    with pytest.raises(ValueError, match="best_of needs temperature"):
        decode(ours, mel, best_of=3)


def test_sampling_follows_the_softmax_at_the_temperature():
    """Sampled decoding draws each token with probability softmax(logits / T): the frequencies of
    20,000 draws from a known distribution, with suppressed (-inf) tokens never drawn."""
    from decoding import _sample_step

    torch.manual_seed(0)
    logits = torch.full((20000, 1000), float("-inf"))  # a small vocabulary: 20,000 rows of 51864 need 12 GB
    logits[:, [5, 700, 999]] = torch.tensor([2.0, 1.0, 0.0])
    tokens = torch.zeros(20000, 3, dtype=torch.long)
    for temperature in (1.0, 0.5):
        new, _ = _sample_step(tokens, logits.clone(), torch.zeros(20000), temperature, eot=50256)
        drawn = new[:, -1]
        expected = torch.softmax(torch.tensor([2.0, 1.0, 0.0]) / temperature, dim=0)
        counts = torch.stack([(drawn == t).sum() for t in (5, 700, 999)])
        assert counts.sum() == 20000  # nothing else was drawn
        observed = counts / 20000
        assert (observed - expected).abs().max() < 0.015  # 3 standard errors at p = 0.5 is 0.011


def test_decode_keeps_cudnn_attention_off_and_restores_it(ours, spoken, monkeypatch):
    """cuDNN's attention plans a graph per new key length (~3 ms a call on an H100): decode must
    run its attention without it, and leave the setting as it found it."""
    import torch.nn.functional as F

    seen, sdpa = [], F.scaled_dot_product_attention

    def recording_sdpa(*args, **kwargs):
        seen.append(torch.backends.cuda.cudnn_sdp_enabled())
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording_sdpa)
    before = torch.backends.cuda.cudnn_sdp_enabled()
    decode(ours, mel_window(spoken[0]), sample_len=8)
    assert seen and not any(seen)
    assert torch.backends.cuda.cudnn_sdp_enabled() == before


def test_forward_traces_whole_with_a_dynamic_text_length():
    """train.py compiles the model and its text length changes from batch to batch, so dynamo
    makes it symbolic: the forward must still be one graph (a graph break per decoder layer made
    compiling take twice as long)."""
    import torch._dynamo

    dims = ModelDimensions(n_audio_ctx=50, n_audio_state=64, n_audio_head=2, n_audio_layer=1,
                           n_text_state=64, n_text_head=2, n_text_layer=2)
    model = Whisper(dims).init_weights()
    mel, tokens = torch.randn(2, 80, 100), torch.randint(0, 50000, (2, 7))
    torch._dynamo.reset()
    torch._dynamo.mark_dynamic(tokens, 1)
    explained = torch._dynamo.explain(model)(mel, tokens)
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    assert explained.graph_count == 1


def test_dropout_drops_in_training_only():
    """The blocks call their Dropout only when training with p > 0 (decoding skips the call); train.py
    sets p on every Dropout of a loaded model, and then the training forward must drop."""
    dims = ModelDimensions(n_audio_ctx=50, n_audio_state=64, n_audio_head=2, n_audio_layer=1,
                           n_text_state=64, n_text_head=2, n_text_layer=2)
    model = Whisper(dims).init_weights()
    mel, tokens = torch.randn(2, 80, 100), torch.randint(0, 50000, (2, 7))
    with torch.no_grad():
        clean = model.eval()(mel, tokens)
        assert torch.equal(model.train()(mel, tokens), clean)  # p = 0
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.5
        assert torch.equal(model.eval()(mel, tokens), clean)
        model.train()
        first, second = model(mel, tokens), model(mel, tokens)
    assert not torch.allclose(first, clean) and not torch.allclose(first, second)


def test_append_positions_equals_concatenation_and_writes_only_its_own_buffer():
    """The self-attention cache grows in place (model.append_positions): step by step it holds what
    torch.cat would, a view of one buffer while there is room; a tensor that is not such a view
    (another one's slice, a plain tensor) is copied, never written past."""
    from model import append_positions

    torch.manual_seed(0)
    steps = [torch.randn(3, t, 8) for t in (5, 1, 1, 4, 1, 20, 1)]
    cache, buffers = None, set()
    for i, new in enumerate(steps):
        cache = append_positions(cache, new)
        assert torch.equal(cache, torch.cat(steps[: i + 1], dim=1))
        buffers.add(cache.untyped_storage().data_ptr())
    assert len(buffers) < len(steps)  # most steps wrote into the buffer they had
    outer = torch.zeros(3, 10, 8)
    grown = append_positions(outer[:, 2:4], torch.ones(3, 1, 8))
    assert torch.equal(outer, torch.zeros(3, 10, 8)) and grown.shape == (3, 3, 8)
