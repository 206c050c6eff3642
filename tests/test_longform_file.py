"""The long-form test file: prepare_synthetic.py --long-form joins a split's utterances with pauses
and level changes, and eval.py --long-form scores a transcript of it (WER, segment times, word
times). A tiny espeak corpus, no model, no network: the transcripts scored are built from the truth."""
import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import eval as eval_script  # noqa: E402
import prepare_synthetic as synth  # noqa: E402
from metrics import normalize  # noqa: E402

SR = synth.SAMPLE_RATE
# train is first in chapter order: kept small so that a short file already spans several chapters
CORPUS = ["--hours", "0.02", "--seed", "4", "--workers", "1", "--dev-fraction", "0.3", "--test-fraction", "0.3",
          "--test-seen-fraction", "0.3"]
MINUTES = 0.75


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("longform") / "corpus"
    synth.main(["--out", str(root), *CORPUS])
    return root


def build(corpus: Path, out: Path, seed: int = 7, minutes: float = MINUTES) -> dict:
    synth.main(["--long-form", str(corpus), "--minutes", str(minutes), "--out", str(out), "--seed", str(seed)])
    return json.loads((out / "long.json").read_text())


@pytest.fixture(scope="module")
def long_file(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("long")
    truth = build(corpus, out)
    audio, sr = soundfile.read(out / "long.flac", dtype="float32")
    assert sr == SR
    return out, truth, audio


def source_records(corpus: Path) -> dict:
    return {r["id"]: r for f in corpus.rglob("*.words.jsonl") for r in map(json.loads, f.read_text().splitlines())}


def test_seeded_deterministic_and_long_enough(corpus, long_file, tmp_path):
    out, truth, audio = long_file
    build(corpus, tmp_path / "again")
    assert (tmp_path / "again" / "long.flac").read_bytes() == (out / "long.flac").read_bytes()
    assert (tmp_path / "again" / "long.json").read_text() == (out / "long.json").read_text()
    other = build(corpus, tmp_path / "other", seed=8)
    assert [u["start"] for u in other["utterances"]] != [u["start"] for u in truth["utterances"]]
    assert truth["seconds"] >= MINUTES * 60 and abs(len(audio) / SR - truth["seconds"]) < 1e-3
    assert truth["audio"] == "long.flac" and truth["source"] == str(corpus)
    assert not list(out.glob("*.tmp"))  # written atomically: no temporaries left


def test_utterances_in_chapter_order_with_pauses_between(corpus, long_file):
    _, truth, audio = long_file
    utts = truth["utterances"]
    ids = [u["id"] for u in utts]
    assert ids == sorted(ids, key=lambda i: (int(i.split("-")[1]), i))
    texts = {line.split(" ", 1)[0]: line.split(" ", 1)[1]
             for f in corpus.rglob("*.trans.txt") for line in f.read_text().splitlines()}
    assert all(u["text"] == texts[u["id"]] for u in utts)
    gaps = [b["start"] - a["end"] for a, b in zip(utts, utts[1:])]
    # the inserted pause (>= 0.3 s) plus what is left of each clip's silence (<= 2 x 0.1 s margin)
    assert min(gaps) >= 0.3 and max(gaps) <= 4.5 + 2 * synth.LONG_MARGIN + 0.01
    for a, b in zip(utts, utts[1:]):  # the pause is digital silence: nothing of either clip
        after, before = a["end"] + synth.LONG_MARGIN + 0.01, b["start"] - synth.LONG_MARGIN - 0.01
        quiet = audio[math.ceil(after * SR) : int(before * SR)]
        assert len(quiet) and not np.any(quiet)


def test_word_times_follow_the_shift(corpus, long_file):
    _, truth, audio = long_file
    records = source_records(corpus)
    timed = [u for u in truth["utterances"] if u["words"]]
    assert timed
    for u in timed:
        src = records[u["id"]]
        words = u["words"]
        assert [w for w, _, _ in words] == [w for w, _, _ in src["words"]]
        assert all(u["start"] - 1e-3 <= s <= e <= u["end"] + 1e-3 for _, s, e in words)
        assert 0 <= u["start"] and u["end"] <= truth["seconds"]
        # one offset for the whole utterance: word times only moved
        shifts = [s - s0 for (_, s, _), (_, s0, _) in zip(words, src["words"])]
        shifts += [e - e0 for (_, _, e), (_, _, e0) in zip(words, src["words"])]
        assert max(shifts) - min(shifts) < 2e-3
        # and the sound there is the source clip's, scaled: the same samples at the shifted times,
        # give or take the times' rounding to 1 ms (16 samples)
        clip, _ = soundfile.read(str(next(corpus.rglob(u["id"] + ".flac"))), dtype="float32")
        a0, n = round(src["words"][0][1] * SR), round((src["words"][-1][2] - src["words"][0][1]) * SR)
        b0 = round(words[0][1] * SR)
        x = clip[a0 : a0 + n].astype(float)
        similarity = max(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-12)
                         for y in (audio[b0 + lag : b0 + lag + n].astype(float) for lag in range(-16, 17)))
        assert similarity > 0.99, (u["id"], similarity)


def test_levels_change_between_chapters_and_never_clip(long_file):
    _, truth, audio = long_file
    utts = truth["utterances"]
    assert float(np.abs(audio).max()) <= 0.99 + 1 / 32768
    for u in utts:  # the recorded level is the speech's measured RMS
        speech = audio[int(u["start"] * SR) : int(u["end"] * SR)].astype(float)
        assert abs(20 * np.log10(np.sqrt(np.mean(speech**2))) - u["level_db"]) < 0.5
    boundaries = [(a, b) for a, b in zip(utts, utts[1:]) if a["id"].split("-")[1] != b["id"].split("-")[1]]
    assert len(boundaries) >= 2
    # each chapter starts at a level audibly different from the one before (4 dB, less what a peak cap took)
    assert all(abs(a["level_db"] - b["level_db"]) > 2 for a, b in boundaries)
    assert max(u["level_db"] for u in utts) - min(u["level_db"] for u in utts) > 5


def test_builder_errors_are_one_line(corpus, tmp_path, capsys):
    for args in (["--long-form", str(tmp_path / "missing"), "--out", str(tmp_path / "o")],
                 ["--long-form", str(tmp_path), "--out", str(tmp_path / "o")],  # no transcripts
                 ["--long-form", str(corpus), "--minutes", "60", "--out", str(tmp_path / "o")],
                 ["--long-form", str(corpus)]):
        with pytest.raises(SystemExit) as e:
            synth.main(args)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "o" / "long.flac").exists() and not (tmp_path / "o" / "long.json").exists()


# ------------------------------------------------------------------------------------------------
# the scorer


def transcript_of(truth: dict) -> dict:
    """What transcribe.py --word-timestamps --output-format json would write if it were perfect."""
    segments = [dict(id=i, start=u["start"], end=u["end"], text=" " + u["text"].capitalize(),
                     words=[dict(word=" " + w, start=s, end=e, probability=1.0) for w, s, e in u["words"]])
                for i, u in enumerate(truth["utterances"]) if u["words"]]
    return dict(text="".join(s["text"] for s in segments), segments=segments, language="en")


def test_a_perfect_transcript_scores_zero(long_file, tmp_path, capsys):
    out, truth, _ = long_file
    perfect = transcript_of(truth)
    assert len(perfect["segments"]) == len(truth["utterances"])  # every utterance of this corpus has word times
    s = eval_script.score_long_form(truth, perfect)
    assert s["wer"] == 0 and s["unmatched"] == 0 and s["segments"] == len(truth["utterances"])
    assert s["start"] == s["end"] == dict(median=0.0, p90=0.0, within=1.0)
    assert s["words"]["words"] == s["true_words"] > 0 and s["words"]["start_median"] == s["words"]["end_p90"] == 0
    (tmp_path / "hyp.json").write_text(json.dumps(perfect))
    assert eval_script.main(["--long-form", str(out), "--hypothesis", str(tmp_path / "hyp.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"long-form WER 0.00% on {len(truth['utterances'])} utterances ({truth['seconds']:.0f} s)"
    assert lines[1].startswith("segments: ") and lines[2].startswith("word times: ")


def test_shifted_and_dropped(long_file):
    _, truth, _ = long_file
    shifted = copy.deepcopy(transcript_of(truth))
    for seg in shifted["segments"]:
        seg["start"] += 0.3
        seg["end"] += 0.3
        for w in seg["words"]:
            w["start"] += 0.3
            w["end"] += 0.3
    s = eval_script.score_long_form(truth, shifted)
    assert s["wer"] == 0 and s["unmatched"] == 0
    for k in ("start", "end"):
        assert s[k]["median"] == pytest.approx(0.3, abs=1e-6) and s[k]["within"] == 0
    assert s["words"]["start_median"] == pytest.approx(0.3, abs=1e-6)
    assert s["words"]["end_p90"] == pytest.approx(0.3, abs=1e-6)

    dropped = copy.deepcopy(transcript_of(truth))
    gone = dropped["segments"].pop(3)
    s = eval_script.score_long_form(truth, dropped)
    n_words = sum(len(u["words"]) for u in truth["utterances"])
    # deletions only, counted as word_error_rate counts: after Whisper's normaliser (numbers as digits)
    normalised = len(normalize(" ".join(u["text"] for u in truth["utterances"])).split())
    assert s["wer"] == pytest.approx(len(normalize(gone["text"]).split()) / normalised)
    assert s["unmatched"] == 1 and s["segments"] == len(truth["utterances"]) - 1
    assert s["start"]["within"] == pytest.approx(1 - 1 / len(truth["utterances"]))
    assert s["words"]["words"] == n_words - len(gone["words"]) and s["words"]["start_median"] == 0


def test_runs_the_cli_like_a_user(long_file, monkeypatch, capsys):
    """Without --hypothesis, eval.py runs transcribe.py in a subprocess with the user's options."""
    out, truth, _ = long_file
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        result_dir = Path(command[command.index("--output-dir") + 1])
        (result_dir / "long.json").write_text(json.dumps(transcript_of(truth)))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert eval_script.main(["--long-form", str(out), "--model", "tiny.en", "--device", "cpu"]) == 0
    (command,) = calls
    assert command[:2] == [sys.executable, str(ROOT / "transcribe.py")]
    assert command[2:] == [str(out / "long.flac"), "--model", "tiny.en", "--word-timestamps", "--output-format",
                           "json", "--output-dir", command[-3], "--device", "cpu"]
    assert capsys.readouterr().out.startswith("long-form WER 0.00%")

    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: subprocess.CompletedProcess(command, 2))
    assert eval_script.main(["--long-form", str(out), "--model", "nonsense"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"error: {out / 'long.flac'}: transcribe.py failed (exit code 2)"
