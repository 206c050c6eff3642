"""
Whisper checkpoints in other projects' formats: Hugging Face transformers directories (read and
written) and CTranslate2 / faster-whisper directories (written here; pretrained.py reads them).

Both hold the same network as openai's format under other names, so conversion is renaming,
plus CTranslate2's fused attention projections. Neither transformers nor ctranslate2 is imported:
the files are plain JSON, safetensors and CTranslate2's model.bin (layout in GUIDE §4).

What each directory carries besides the weights:
  Hugging Face: config.json, generation_config.json (alignment heads, suppressed tokens),
    preprocessor_config.json, and tokenizer.json + tokenizer_config.json (made from our tiktoken
    ranks, English-only or multilingual).
  CTranslate2: config.json (alignment heads, suppressed tokens, language ids), vocabulary.json,
    preprocessor_config.json and tokenizer.json (faster-whisper reads its tokenizer from there).
A model trained without timestamps (pretrained.trained_with_timestamps) gets "timestamps": false
in its config.json; the two libraries ignore the key, our loader reads it back.
"""
import json
import os
import struct

import torch

from model import ModelDimensions, Whisper

HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


class CheckpointError(ValueError):
    """A checkpoint we can't use; the message names the file and the problem. (pretrained.py,
    which builds on this module, exports it too.)"""


# ------------------------------------------------------------------------------------------------
# Hugging Face transformers: WhisperForConditionalGeneration's state_dict and config.json


def is_hf_directory(directory: str) -> bool:
    return os.path.isfile(os.path.join(directory, "config.json")) and any(
        os.path.isfile(os.path.join(directory, name)) for name in HF_WEIGHTS)


def _hf_names(n_audio_layer: int, n_text_layer: int) -> list:
    """(openai key, HF key) for every weight; HF's output projection is tied to embed_tokens."""
    names = [("encoder.conv1", "model.encoder.conv1"), ("encoder.conv2", "model.encoder.conv2"),
             ("encoder.ln_post", "model.encoder.layer_norm"), ("decoder.ln", "model.decoder.layer_norm")]
    attention = [("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj"), ("out", "out_proj")]
    for side, n_layer in (("encoder", n_audio_layer), ("decoder", n_text_layer)):
        for i in range(n_layer):
            ours, theirs = f"{side}.blocks.{i}", f"model.{side}.layers.{i}"
            names += [(f"{ours}.attn.{a}", f"{theirs}.self_attn.{b}") for a, b in attention]
            names += [(f"{ours}.attn_ln", f"{theirs}.self_attn_layer_norm"), (f"{ours}.mlp.0", f"{theirs}.fc1"),
                      (f"{ours}.mlp.2", f"{theirs}.fc2"), (f"{ours}.mlp_ln", f"{theirs}.final_layer_norm")]
            if side == "decoder":
                names += [(f"{ours}.cross_attn.{a}", f"{theirs}.encoder_attn.{b}") for a, b in attention]
                names += [(f"{ours}.cross_attn_ln", f"{theirs}.encoder_attn_layer_norm")]
    keys = [(f"{a}.{p}", f"{b}.{p}") for a, b in names for p in ("weight", "bias")
            if not (p == "bias" and a.endswith(".key"))]  # key projections have no bias
    return keys + [("encoder.positional_embedding", "model.encoder.embed_positions.weight"),
                   ("decoder.positional_embedding", "model.decoder.embed_positions.weight"),
                   ("decoder.token_embedding.weight", "model.decoder.embed_tokens.weight")]


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    except ValueError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return value


def _read_safetensors(path: str) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except FileNotFoundError:  # a shard named in model.safetensors.index.json
        raise CheckpointError(f"{path}: no such file") from None
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{path}: damaged or truncated safetensors file ({str(e).splitlines()[0]})") from None


def _read_hf_weights(directory: str, torch_load) -> tuple:
    """(state_dict, the file it came from): model.safetensors, a sharded one, or pytorch_model.bin."""
    path = os.path.join(directory, "model.safetensors")
    if os.path.isfile(path):
        return _read_safetensors(path), path
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.isfile(index):
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index}: no weight_map")
        state_dict = {}
        for shard in sorted(set(weight_map.values())):
            state_dict.update(_read_safetensors(os.path.join(directory, shard)))
        return state_dict, index
    path = os.path.join(directory, "pytorch_model.bin")
    state_dict = torch_load(path)
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f"{path}: not a state_dict (a dict of tensors)")
    return state_dict, path


def hf_dims(config: dict, path: str) -> ModelDimensions:
    """config.json -> dims, refusing the variants this model can't represent."""
    if config.get("model_type") != "whisper":
        raise CheckpointError(f"{path}: not a Whisper model (model_type {config.get('model_type')!r})")
    try:
        d = int(config["d_model"])
        dims = ModelDimensions(
            n_mels=int(config["num_mel_bins"]), n_audio_ctx=int(config["max_source_positions"]),
            n_audio_state=d, n_audio_head=int(config["encoder_attention_heads"]),
            n_audio_layer=int(config["encoder_layers"]), n_vocab=int(config["vocab_size"]),
            n_text_ctx=int(config["max_target_positions"]), n_text_state=d,
            n_text_head=int(config["decoder_attention_heads"]), n_text_layer=int(config["decoder_layers"]))
    except KeyError as e:
        raise CheckpointError(f"{path}: not a Whisper config.json (no {e.args[0]})") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: not a Whisper config.json ({e})") from None
    unsupported = [f"{key} {config.get(key)!r}" for key, expected in
                   (("encoder_ffn_dim", 4 * d), ("decoder_ffn_dim", 4 * d), ("activation_function", "gelu"),
                    ("scale_embedding", False)) if config.get(key, expected) != expected]
    if unsupported:
        raise CheckpointError(f"{path}: a Whisper variant this model can't hold ({', '.join(unsupported)})")
    return dims


def read_hf(directory: str, torch_load) -> dict:
    """A transformers Whisper directory (WhisperForConditionalGeneration's or WhisperModel's) as
    {dims, state_dict (openai's keys), source (the weights' file), alignment_heads (None if not
    given), timestamps}; pretrained.load_hf builds the model. `torch_load` reads a
    pytorch_model.bin (pretrained's, with weights_only=True)."""
    config_path = os.path.join(directory, "config.json")
    config = _read_json(config_path)
    dims = hf_dims(config, config_path)
    state_dict, source = _read_hf_weights(directory, torch_load)
    # WhisperModel saves without the "model." that WhisperForConditionalGeneration puts first
    state_dict = {(k if k.startswith(("model.", "proj_out.")) else f"model.{k}"): v for k, v in state_dict.items()}
    embed = state_dict.get("model.decoder.embed_tokens.weight")
    projection = state_dict.pop("proj_out.weight", None)
    if projection is not None and embed is not None and not torch.equal(projection, embed):
        raise CheckpointError(f"{source}: proj_out differs from embed_tokens; this model ties its output "
                                "projection to the token embedding")
    ours, seen = {}, set()
    for a, b in _hf_names(dims.n_audio_layer, dims.n_text_layer):
        if b in state_dict:
            ours[a] = state_dict[b]
            seen.add(b)
    ours.update({k: v for k, v in state_dict.items() if k not in seen})  # pretrained._build names what is left
    heads = None
    generation_path = os.path.join(directory, "generation_config.json")
    if os.path.isfile(generation_path) and (given := _read_json(generation_path).get("alignment_heads")):
        try:
            heads = [(int(layer), int(head)) for layer, head in given]
        except (TypeError, ValueError):
            raise CheckpointError(f"{generation_path}: alignment_heads must be [layer, head] pairs") from None
    return {"dims": dims, "state_dict": ours, "source": source, "alignment_heads": heads,
            "timestamps": timestamps_flag(config, config_path)}


def timestamps_flag(config: dict, path: str) -> bool:
    """config.json's "timestamps" (written only as false), with trained_with_timestamps' meaning."""
    value = config.get("timestamps", True)
    if not isinstance(value, bool):
        raise CheckpointError(f"{path}: 'timestamps' must be true or false, not {value!r}")
    return value


def _same_width(dims: ModelDimensions, to: str):
    if dims.n_audio_state != dims.n_text_state:
        raise CheckpointError(f"{to} holds one d_model for encoder and decoder; this model has "
                                f"{dims.n_audio_state} and {dims.n_text_state}")


def _special_ids(model: Whisper) -> dict:
    """The token ids the other formats' configs name, from the tokenizer this model's dims imply."""
    from tokenizer import tokenizer_for

    tok = tokenizer_for(model.dims)
    return {
        "tokenizer": tok, "eot": tok.eot, "sot": tok.sot, "no_timestamps": tok.no_timestamps,
        "sot_prev": tok.sot_prev, "begin_suppress": [tok.encode(" ")[0], tok.eot],
        # openai-whisper's suppress_tokens="-1" plus the specials it never samples, as the official
        # conversions list them
        "suppress": sorted({*tok.non_speech_tokens, tok.sot, tok.translate, tok.transcribe, tok.sot_lm,
                            tok.sot_prev, tok.no_speech}),
        "languages": {f"<|{code}|>": tok.language_token(code) for code in tok.all_language_codes},
    }


def _preprocessor_config(dims: ModelDimensions) -> dict:
    """WhisperFeatureExtractor's settings: 16 kHz, 30 s windows, n_fft 400, hop 160 (GUIDE §2)."""
    return {"chunk_length": 30, "feature_extractor_type": "WhisperFeatureExtractor", "feature_size": dims.n_mels,
            "hop_length": 160, "n_fft": 400, "n_samples": 480000, "nb_max_frames": 3000, "padding_side": "right",
            "padding_value": 0.0, "processor_class": "WhisperProcessor", "return_attention_mask": False,
            "sampling_rate": 16000}


def _write_json(path: str, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")


def write_hf(model: Whisper, directory: str):
    """model.safetensors, config.json, generation_config.json, preprocessor_config.json and the
    tokenizer files, into an existing `directory`."""
    from safetensors.torch import save_file

    dims = model.dims
    _same_width(dims, "a Hugging Face Whisper")
    sd = model.state_dict()
    tensors = {b: sd[a].detach().cpu().contiguous() for a, b in _hf_names(dims.n_audio_layer, dims.n_text_layer)}
    save_file(tensors, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    ids = _special_ids(model)
    dtype = str(sd["decoder.token_embedding.weight"].dtype).removeprefix("torch.")
    config = {
        "architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper", "is_encoder_decoder": True,
        "d_model": dims.n_audio_state, "encoder_layers": dims.n_audio_layer,
        "encoder_attention_heads": dims.n_audio_head, "decoder_layers": dims.n_text_layer,
        "decoder_attention_heads": dims.n_text_head, "encoder_ffn_dim": 4 * dims.n_audio_state,
        "decoder_ffn_dim": 4 * dims.n_text_state, "num_mel_bins": dims.n_mels,
        "max_source_positions": dims.n_audio_ctx, "max_target_positions": dims.n_text_ctx,
        "vocab_size": dims.n_vocab, "activation_function": "gelu", "scale_embedding": False,
        "tie_word_embeddings": True, "dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0,
        "bos_token_id": ids["eot"], "eos_token_id": ids["eot"], "pad_token_id": ids["eot"],
        "decoder_start_token_id": ids["sot"], "begin_suppress_tokens": ids["begin_suppress"],
        "suppress_tokens": ids["suppress"], "use_cache": True, "dtype": dtype,
        **({"timestamps": False} if getattr(model, "timestamps", True) is False else {}),
    }
    _write_json(os.path.join(directory, "config.json"), config)
    multilingual = ids["tokenizer"].multilingual
    generation = {
        "alignment_heads": [list(h) for h in model.alignment_heads],
        "begin_suppress_tokens": ids["begin_suppress"], "suppress_tokens": ids["suppress"],
        "bos_token_id": ids["eot"], "eos_token_id": ids["eot"], "pad_token_id": ids["eot"],
        "decoder_start_token_id": ids["sot"], "no_timestamps_token_id": ids["no_timestamps"],
        "prev_sot_token_id": ids["sot_prev"], "is_multilingual": multilingual,
        "max_initial_timestamp_index": 50, "max_length": dims.n_text_ctx, "return_timestamps": False,
    }
    if multilingual:
        tok = ids["tokenizer"]
        generation.update(lang_to_id=ids["languages"],
                          task_to_id={"transcribe": tok.transcribe, "translate": tok.translate})
    _write_json(os.path.join(directory, "generation_config.json"), generation)
    _write_json(os.path.join(directory, "preprocessor_config.json"), _preprocessor_config(dims))
    _write_tokenizer_files(model, directory, hf=True)


def _write_tokenizer_files(model: Whisper, directory: str, hf: bool):
    """tokenizer.json (+ tokenizer_config.json for transformers), made from the tiktoken ranks the
    model's vocabulary uses."""
    tok = _special_ids(model)["tokenizer"]
    _write_json(os.path.join(directory, "tokenizer.json"), tokenizer_json(tok))
    if hf:
        specials = [name for name, i in sorted(tok.encoding._special_tokens.items(), key=lambda item: item[1])
                    if i <= tok.no_timestamps]
        _write_json(os.path.join(directory, "tokenizer_config.json"), {
            "tokenizer_class": "WhisperTokenizer", "model_max_length": 1024, "errors": "replace",
            "add_prefix_space": False, "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
            "additional_special_tokens": specials[1:],
        })


def bpe_merges(ranks: dict) -> list:
    """The merges a Hugging Face BPE needs to tokenize as tiktoken does with `ranks` (bytes -> rank):
    tiktoken merges the adjacent pair whose joined bytes have the lowest rank, so each token of
    two or more bytes is the join of the two parts that BPE over the lower ranks leaves of it, and
    listing those pairs in the order of the tokens' ranks gives HF's merge priorities."""
    merges = []
    for piece, rank in sorted(ranks.items(), key=lambda item: item[1]):
        parts = [bytes([b]) for b in piece]
        while len(parts) > 2:
            joins = [(ranks.get(parts[i] + parts[i + 1], rank), i) for i in range(len(parts) - 1)]
            best, i = min(joins)
            if best >= rank:
                break
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        if len(parts) == 2:
            merges.append(tuple(parts))
    return merges


def tokenizer_json(tok) -> dict:
    """A Hugging Face tokenizer.json (byte-level BPE) for our tokenizer.Tokenizer: the BPE ranks,
    their merges, and the special tokens up to <|notimestamps|> (faster-whisper and transformers
    number the timestamps after it themselves), laid out as the official Whisper ones are."""
    from tokenizer import _byte_to_unicode

    table = _byte_to_unicode()

    def text(piece: bytes) -> str:
        return "".join(table[b] for b in piece)

    ranks = tok.encoding._mergeable_ranks
    specials = sorted(tok.encoding._special_tokens.items(), key=lambda item: item[1])
    vocab = {text(piece): rank for piece, rank in ranks.items()}
    vocab["<|endoftext|>"] = tok.eot

    def special(name):
        return {"SpecialToken": {"id": name, "type_id": 0}}

    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    sequence = [special("<|startoftranscript|>"), special("<|notimestamps|>")]
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": name, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for name, i in specials if i <= tok.no_timestamps],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [*sequence, {"Sequence": {"id": "A", "type_id": 0}}, special("<|endoftext|>")],
            "pair": [*sequence, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "<|endoftext|>", "type_id": 1}}],
            "special_tokens": {name: {"id": name, "ids": [i], "tokens": [name]} for name, i in
                               sorted((n, tok.encoding._special_tokens[n]) for n in
                                      ("<|endoftext|>", "<|notimestamps|>", "<|startoftranscript|>"))},
        },
        "decoder": {**byte_level, "add_prefix_space": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "vocab": vocab,
                  "merges": [f"{text(a)} {text(b)}" for a, b in bpe_merges(ranks)]},
    }


# ------------------------------------------------------------------------------------------------
# CTranslate2: model.bin (the layout pretrained.read_ctranslate2 parses) and config.json

_CT2_DTYPE_IDS = {torch.float32: 0, torch.int8: 1, torch.float16: 4, torch.bfloat16: 5}


def ct2_layout(n_audio_layer: int, n_text_layer: int) -> list:
    """Where each of our weights lives in CTranslate2's WhisperSpec, for both directions (the
    writer below, pretrained.load_ctranslate2): (our module or tensor, its CTranslate2 scope or
    name, kind). kind is "tensor" (one tensor, renamed), "linear" (weight and bias), "norm"
    (weight, bias as gamma, beta), or the attention projections fused into one linear there, in
    order (the key's missing bias stored as zeros). CT2_SUFFIXES spells out the first three."""
    layout = []
    for side, n_layer in (("encoder", n_audio_layer), ("decoder", n_text_layer)):
        for i in range(n_layer):
            ours, theirs = f"{side}.blocks.{i}", f"{side}/layer_{i}"
            layout += [(f"{ours}.attn", f"{theirs}/self_attention/linear_0", ("query", "key", "value")),
                       (f"{ours}.attn.out", f"{theirs}/self_attention/linear_1", "linear"),
                       (f"{ours}.attn_ln", f"{theirs}/self_attention/layer_norm", "norm")]
            if side == "decoder":
                layout += [(f"{ours}.cross_attn.query", f"{theirs}/attention/linear_0", "linear"),
                           (f"{ours}.cross_attn", f"{theirs}/attention/linear_1", ("key", "value")),
                           (f"{ours}.cross_attn.out", f"{theirs}/attention/linear_2", "linear"),
                           (f"{ours}.cross_attn_ln", f"{theirs}/attention/layer_norm", "norm")]
            layout += [(f"{ours}.mlp.0", f"{theirs}/ffn/linear_0", "linear"),
                       (f"{ours}.mlp.2", f"{theirs}/ffn/linear_1", "linear"),
                       (f"{ours}.mlp_ln", f"{theirs}/ffn/layer_norm", "norm")]
    return layout + [
        ("encoder.conv1", "encoder/conv1", "linear"), ("encoder.conv2", "encoder/conv2", "linear"),
        ("encoder.positional_embedding", "encoder/position_encodings/encodings", "tensor"),
        ("encoder.ln_post", "encoder/layer_norm", "norm"),
        ("decoder.token_embedding.weight", "decoder/embeddings/weight", "tensor"),
        ("decoder.positional_embedding", "decoder/position_encodings/encodings", "tensor"),
        ("decoder.ln", "decoder/layer_norm", "norm"),
    ]


# the tensors of each plain kind of ct2_layout row: (our name's suffix, CTranslate2's), for both directions
CT2_SUFFIXES = {"tensor": [("", "")], "linear": [(".weight", "/weight"), (".bias", "/bias")],
                "norm": [(".weight", "/gamma"), (".bias", "/beta")]}


def ct2_variables(model: Whisper) -> dict:
    """openai state_dict -> CTranslate2 WhisperSpec variables (ct2_layout)."""
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    t = {}
    for ours, theirs, kind in ct2_layout(model.dims.n_audio_layer, model.dims.n_text_layer):
        if kind in CT2_SUFFIXES:
            t.update((theirs + their_suffix, sd[ours + our_suffix]) for our_suffix, their_suffix in CT2_SUFFIXES[kind])
        else:
            t[f"{theirs}/weight"] = torch.cat([sd[f"{ours}.{p}.weight"] for p in kind])
            t[f"{theirs}/bias"] = torch.cat([torch.zeros_like(sd[f"{ours}.value.bias"]) if p == "key"
                                             else sd[f"{ours}.{p}.bias"] for p in kind])
    return t


def _ct2_settings(dims: ModelDimensions) -> dict:
    """The scalar settings CTranslate2's WhisperSpec stores next to the weights: name -> (dtype id,
    little-endian bytes). activation 3 is GELU; alignment_heads/layer are the decoder's unused
    defaults (the real heads are in config.json)."""
    return {
        "decoder/activation": (1, struct.pack("<b", 3)), "decoder/alibi": (1, b"\0"),
        "decoder/alignment_heads": (2, struct.pack("<h", 1)), "decoder/alignment_layer": (2, struct.pack("<h", -1)),
        "decoder/num_heads": (2, struct.pack("<h", dims.n_text_head)), "decoder/pre_norm": (1, b"\1"),
        "decoder/scale_embeddings": (1, b"\0"), "decoder/start_from_zero_embedding": (1, b"\0"),
        "encoder/num_heads": (2, struct.pack("<h", dims.n_audio_head)),
    }


def write_ct2_model_bin(model: Whisper, f):
    """CTranslate2's model.bin (binary version 6, WhisperSpec revision 3) to the binary file `f`."""

    def string(s):
        data = s.encode()
        f.write(struct.pack("<H", len(data) + 1) + data + b"\0")

    variables = ct2_variables(model)
    settings = _ct2_settings(model.dims)
    f.write(struct.pack("<I", 6))
    string("WhisperSpec")
    f.write(struct.pack("<II", 3, len(variables) + len(settings)))
    for name in sorted([*variables, *settings]):  # CTranslate2's own converter writes them sorted
        string(name)
        if name in settings:
            dtype, raw = settings[name]
            f.write(struct.pack("<BBI", 0, dtype, len(raw)) + raw)
            continue
        tensor = variables[name].contiguous()
        if tensor.dtype not in _CT2_DTYPE_IDS:
            raise ValueError(f"{name}: CTranslate2 can't store {tensor.dtype}")
        f.write(struct.pack("<B", tensor.dim()) + struct.pack(f"<{tensor.dim()}I", *tensor.shape))
        raw = tensor.view(torch.int16).numpy().tobytes() if tensor.dtype == torch.bfloat16 else tensor.numpy().tobytes()
        f.write(struct.pack("<BI", _CT2_DTYPE_IDS[tensor.dtype], len(raw)) + raw)
    f.write(struct.pack("<I", 1))  # one alias: the output projection is the token embedding
    string("decoder/projection/weight")
    string("decoder/embeddings/weight")


def _vocabulary(model: Whisper) -> list:
    """Every token as a string, by id: GPT-2's byte-to-unicode stand-ins for the BPE ranks, the
    special tokens by name (timestamps included): CTranslate2's vocabulary.json."""
    from tokenizer import _byte_to_unicode

    encoding = _special_ids(model)["tokenizer"].encoding
    table = _byte_to_unicode()
    tokens = [None] * encoding.n_vocab
    for piece, rank in encoding._mergeable_ranks.items():
        tokens[rank] = "".join(table[b] for b in piece)
    for name, i in encoding._special_tokens.items():
        tokens[i] = name
    return tokens[: model.dims.n_vocab]


def write_ct2(model: Whisper, directory: str):
    """model.bin, config.json, vocabulary.json, preprocessor_config.json and tokenizer.json into an
    existing `directory`."""
    with open(os.path.join(directory, "model.bin"), "wb") as f:
        write_ct2_model_bin(model, f)
    ids = _special_ids(model)
    config = {
        "alignment_heads": [list(h) for h in model.alignment_heads],
        "lang_ids": sorted(ids["languages"].values()),
        "suppress_ids": ids["suppress"],
        "suppress_ids_begin": ids["begin_suppress"],
        **({"timestamps": False} if getattr(model, "timestamps", True) is False else {}),
    }
    _write_json(os.path.join(directory, "config.json"), config)
    _write_json(os.path.join(directory, "vocabulary.json"), _vocabulary(model))
    _write_json(os.path.join(directory, "preprocessor_config.json"), _preprocessor_config(model.dims))
    _write_tokenizer_files(model, directory, hf=False)


# ------------------------------------------------------------------------------------------------
# a directory written whole or not at all
