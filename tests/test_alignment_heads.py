"""Word-time error against known word times, and choosing alignment heads (timing.py, eval.py
--word-times / --find-alignment-heads / --save). tiny.en on a few espeak utterances, no network."""
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import eval as eval_script  # noqa: E402
import timing  # noqa: E402
from audio import load_audio  # noqa: E402
from data import read_librispeech_dir  # noqa: E402
from decoding import encode  # noqa: E402
from tokenizer import tokenizer_for  # noqa: E402

TRUTH = [("THIRTY", 0.37, 0.68), ("FIVE,", 0.69, 0.94), ("TWENTY-ONE", 1.0, 1.6), ("CATS.", 1.7, 2.1)]


def as_predicted(truth, shift_start=0.0, shift_end=0.0):
    """What align returns for the true text, in the tokenizer's casing and with its leading spaces."""
    return [timing.WordTiming(" " + w.lower(), a + shift_start, b + shift_end, 1.0, []) for w, a, b in truth]


def test_error_is_zero_for_the_truth_and_the_shift_for_a_shift():
    assert np.array_equal(timing.word_time_errors(as_predicted(TRUTH), TRUTH), np.zeros((4, 2)))
    errors = timing.word_time_errors(as_predicted(TRUTH, 0.12, -0.04), TRUTH)
    assert np.allclose(errors[:, 0], 0.12) and np.allclose(errors[:, 1], 0.04)
    summary = timing.error_summary(errors)
    assert summary["words"] == 4 and summary["start_median"] == pytest.approx(0.12)
    assert summary["end_p90"] == pytest.approx(0.04)


def test_a_word_split_by_the_tokenizer_takes_its_first_start_and_last_end():
    predicted = [(" thirty", 0.37, 0.68), (" five,", 0.69, 0.94), (" twenty", 1.1, 1.3), ("-one", 1.3, 1.5),
                 (" cats.", 1.7, 2.1)]
    errors = timing.word_time_errors(predicted, TRUTH)
    assert np.allclose(errors[2], [0.1, 0.1]) and np.allclose(np.delete(errors, 2, axis=0), 0)


def test_own_text_is_scored_on_the_words_it_got_right():
    predicted = [(" Thirty", 0.4, 0.7), (" nine", 0.7, 0.9), (" twenty-one", 1.0, 1.6), (" cat", 1.7, 2.1)]
    errors = timing.word_time_errors(predicted, TRUTH)
    assert np.allclose(errors[0], [0.03, 0.02]) and np.allclose(errors[2], [0, 0])
    assert np.isnan(errors[1]).all() and np.isnan(errors[3]).all()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """About ten utterances with word times, from prepare_synthetic.py (all splits together)."""
    import prepare_synthetic

    root = tmp_path_factory.mktemp("timed")
    assert prepare_synthetic.main(["--out", str(root), "--hours", "0.003", "--workers", "1"]) in (0, None)
    return root


@pytest.fixture(scope="module")
def utterances(corpus, ours):
    tokenizer = tokenizer_for(ours.dims)
    times = timing.read_word_times(str(corpus))
    found = [timing.timed_utterance(ours, load_audio(path), text, times[utt], tokenizer)
             for utt, path, text in read_librispeech_dir(str(corpus)) if utt in times]
    assert len(found) >= 5
    # align takes the encoder's output in place of the mel: the test aligns each window several
    # times, and the encoder is most of the cost
    with torch.inference_mode():
        return [{**u, "mel": encode(ours, u["mel"][None])[0]} for u in found]


def test_found_heads_predict_word_starts_no_worse_than_the_upper_half(ours, utterances):
    tokenizer = tokenizer_for(ours.dims)
    found = timing.find_alignment_heads(ours, utterances, tokenizer)
    dims = ours.dims
    assert len(found["per_head"]) == dims.n_text_layer * dims.n_text_head
    assert found["heads"] and set(found["heads"]) <= set(found["per_head"])
    upper_half = [(layer, head) for layer in range(dims.n_text_layer // 2, dims.n_text_layer)
                  for head in range(dims.n_text_head)]
    default = timing.error_summary(np.concatenate(
        [timing.utterance_word_errors(ours, u, tokenizer, heads=upper_half) for u in utterances]))
    assert found["summary"]["words"] == default["words"] > 20
    assert found["summary"]["start_median"] <= default["start_median"]
    # the chosen set's figure is what aligning with those heads gives
    again = timing.error_summary(np.concatenate(
        [timing.utterance_word_errors(ours, u, tokenizer, heads=found["heads"]) for u in utterances]))
    assert again["start_median"] == pytest.approx(found["summary"]["start_median"])
    # forced alignment of espeak speech lands near the true starts (tiny.en's own heads)
    official = timing.error_summary(np.concatenate([timing.utterance_word_errors(ours, u, tokenizer) for u in utterances]))
    assert official["start_median"] < 0.2


def test_save_round_trips_and_keeps_every_other_key(corpus, tiny_en_checkpoint, tmp_path, capsys):
    path = tmp_path / "ckpt.pt"
    checkpoint = torch.load(tiny_en_checkpoint, weights_only=True)
    # a training checkpoint's extra state must survive
    checkpoint.update(optimizer={"state": {0: {"exp_avg": torch.arange(3.0)}}}, iter_num=7, timestamps=True)
    torch.save(checkpoint, path)
    before = torch.load(path, weights_only=True)
    assert eval_script.main(["--model", str(path), str(corpus), "--find-alignment-heads", "--heads", "3",
                             "--save", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    after = torch.load(path, weights_only=True)
    assert len(after["alignment_heads"]) == 3 and after["alignment_heads"] != before["alignment_heads"]
    chosen = " ".join(f"{a}.{b}" for a, b in after["alignment_heads"])
    assert f"chosen heads {chosen}:" in out and f"saved the chosen heads into {path}" in out
    assert sorted(after) == sorted(before)
    for key in before:
        if key == "model_state_dict":
            assert all(torch.equal(after[key][k], v) for k, v in before[key].items())
        elif key == "optimizer":
            assert torch.equal(after[key]["state"][0]["exp_avg"], before[key]["state"][0]["exp_avg"])
        elif key != "alignment_heads":
            assert after[key] == before[key], key

    from pretrained import from_pretrained

    assert from_pretrained(path).alignment_heads == [tuple(h) for h in after["alignment_heads"]]
    whisper = pytest.importorskip("whisper", reason="openai-whisper is a test dependency (see README)")
    model = whisper.load_model(str(path), device="cpu")
    assert torch.equal(model.decoder.token_embedding.weight, before["model_state_dict"]["decoder.token_embedding.weight"])

    assert eval_script.main(["--model", str(path), str(corpus), "--word-times", "--limit", "2", "--sample-len", "8",
                             "--show", "0"]) == 0
    out = capsys.readouterr().out
    assert f"word times with alignment heads {chosen}:" in out and "true text: word start error median" in out


def one_line_exit_2(argv, capsys, *needles):
    assert eval_script.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert all(n in err for n in needles), err
    assert "Traceback" not in err


def test_bad_inputs_are_one_line_and_exit_2(corpus, tmp_path, capsys):
    bare = tmp_path / "bare"
    shutil.copytree(corpus, bare, ignore=shutil.ignore_patterns("*.words.jsonl"))
    one_line_exit_2([str(bare), "--word-times"], capsys, str(bare), "words.jsonl")
    one_line_exit_2([str(bare), "--find-alignment-heads"], capsys, str(bare), "words.jsonl")
    one_line_exit_2([str(corpus), "--model", "tiny.en", "--find-alignment-heads", "--save"], capsys, "tiny.en",
                    "official")
    ct2 = tmp_path / "ct2"
    ct2.mkdir()
    one_line_exit_2([str(corpus), "--model", str(ct2), "--find-alignment-heads", "--save"], capsys, str(ct2),
                    "CTranslate2")
    one_line_exit_2([str(corpus), "--save"], capsys, "--find-alignment-heads")


def test_word_records_are_read_once_for_times_and_spans(tmp_path, capsys):
    """One reader of words.jsonl serves eval.py's word times and the long-form file's speech spans:
    a record without words keeps its span, a line that isn't a record is reported and skipped."""
    import prepare_synthetic
    import timing

    folder = tmp_path / "1" / "2"
    folder.mkdir(parents=True)
    (folder / "1-2.words.jsonl").write_text(
        '{"id": "1-2-0000", "speech": [0.3, 1.2], "words": [["HI", 0.25, 0.6], ["YOU", 0.7, 1.3]]}\n'
        '{"id": "1-2-0001", "speech": [0.1, 0.9], "words": null}\n'
        'not json\n'
        '{"id": "1-2-0002", "words": [["A", 1]]}\n')
    assert timing.read_word_records(str(tmp_path)) == {
        "1-2-0000": ((0.3, 1.2), [("HI", 0.25, 0.6), ("YOU", 0.7, 1.3)]), "1-2-0001": ((0.1, 0.9), None)}
    err = capsys.readouterr().err
    assert err.count("not a word-times record") == 2 and "1-2.words.jsonl:3" in err and "1-2.words.jsonl:4" in err
    assert timing.read_word_times(str(tmp_path)) == {"1-2-0000": [("HI", 0.25, 0.6), ("YOU", 0.7, 1.3)]}
    assert prepare_synthetic.speech_spans(str(tmp_path)) == {
        "1-2-0000": (0.25, 1.3, [("HI", 0.25, 0.6), ("YOU", 0.7, 1.3)]), "1-2-0001": (0.1, 0.9, None)}
