"""Bad input and faults in the data pipeline: NaN audio, a Latin-1 transcript, a killed worker, bad options.

Each ends in a skipped-and-listed item or a one-line error, never a traceback or a hang, and a run
that was stopped resumes to exactly the bytes of an uninterrupted one. No network."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import data  # noqa: E402
import prepare_librispeech as prep  # noqa: E402
import prepare_synthetic as synth  # noqa: E402
from test_data import SENTENCES, speech, tree, write_chapter  # noqa: E402

NAN_ID = "26-495-0005"  # a float wav with NaN samples
LATIN1_ID = "26-495-0006"  # its transcript line is Latin-1
KILL_ID = "19-198-0003"  # in train's second shard (shard size 2): the worker that takes it dies


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Good utterances in train and dev, plus a NaN wav and a Latin-1 transcript line in one chapter."""
    root = tmp_path_factory.mktemp("faulty") / "LibriSpeech"
    good = [(i, t, speech(t, i)) for i, t in enumerate(SENTENCES)]
    write_chapter(root, "train-clean-100", 19, 198, good[0:5])
    chapter = root / "train-clean-100" / "26" / "495"
    chapter.mkdir(parents=True)
    nan = speech("the audio is broken here", 5)
    nan[8000:8010] = np.nan
    soundfile.write(chapter / f"{NAN_ID}.wav", nan, 16000, subtype="FLOAT")
    soundfile.write(chapter / f"{LATIN1_ID}.flac", speech("a coffee in the cafe", 6), 16000, subtype="PCM_16")
    soundfile.write(chapter / "26-495-0007.flac", good[7][2], 16000, subtype="PCM_16")
    (chapter / "26-495.trans.txt").write_bytes(
        f"{NAN_ID} THE AUDIO IS BROKEN HERE\n".encode()
        + f"{LATIN1_ID} A COFFEE IN THE CAF\xc9\n".encode("latin-1")  # line 2: 0xc9 is not UTF-8
        + f"26-495-0007 {SENTENCES[7].upper()}\n".encode())
    write_chapter(root, "dev-clean", 84, 121, good[5:7])
    return root


def args_for(corpus, out, workers=1):
    return ["--librispeech-dir", str(corpus), "--out", str(out), "--workers", str(workers), "--shard-size", "2"]


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """An uninterrupted, serial run: what every faulty or resumed run must reproduce byte for byte."""
    out = tmp_path_factory.mktemp("reference") / "ls"
    prep.main(args_for(corpus, out))
    return out


@pytest.fixture
def deadline():
    """A hang fails the test after 120 s instead of stalling the suite."""
    def hung(signum, frame):
        raise TimeoutError("prepare_librispeech hung")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_nan_audio_and_latin1_line_are_skipped_and_listed(corpus, reference, capsys, tmp_path):
    meta = json.loads((reference / "meta.json").read_text())
    skipped = {s["id"]: s for s in meta["skipped"]}
    assert set(skipped) == {NAN_ID, LATIN1_ID}
    assert skipped[NAN_ID]["reason"] == "undecodable audio"
    assert f"{NAN_ID}.wav" in skipped[NAN_ID]["detail"] and "NaN" in skipped[NAN_ID]["detail"]
    trans = corpus / "train-clean-100" / "26" / "495" / "26-495.trans.txt"
    assert skipped[LATIN1_ID] == dict(id=LATIN1_ID, split="train", reason="transcript line not UTF-8",
                                      detail=f"{trans}:2: not UTF-8 (byte 0xc9 at column 32)")
    kept = {e["id"] for split in ("train", "val") for e in data.manifest(reference, split)}
    assert kept == {f"19-198-{i:04d}" for i in range(5)} | {"26-495-0007", "84-121-0005", "84-121-0006"}
    # the same corpus for eval.py: the Latin-1 line is one warning naming the file and line, the rest is read
    items = data.read_librispeech_dir(str(corpus))
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "UTF-8" in line] == \
        [f"warning: {trans}:2: not UTF-8 (byte 0xc9 at column 32), skipped"]
    assert "Traceback" not in err
    assert {utt for utt, _, _ in items} == kept | {NAN_ID}  # eval reports the NaN file when it loads it
    # and the run names every skipped item on stderr
    prep.main(args_for(corpus, tmp_path / "again"))
    err = capsys.readouterr().err
    assert f"skipped {LATIN1_ID}: transcript line not UTF-8: {trans}:2:" in err and f"skipped {NAN_ID}:" in err


def kill_worker_on(item_id: str, marker: Path = None):
    """A decode that SIGKILLs its own worker process on item_id: every time, or with `marker`, the first
    time only (O_EXCL makes exactly one worker win, whichever process gets there)."""
    real_decode = prep.decode

    def decode(item):
        if item["id"] == item_id and os.getpid() != PARENT:
            try:
                if marker is not None:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
                os.kill(os.getpid(), signal.SIGKILL)
            except FileExistsError:
                pass
        return real_decode(item)

    return decode


PARENT = os.getpid()


def test_killed_worker_is_retried_and_output_is_identical(corpus, reference, tmp_path, monkeypatch, capsys, deadline):
    monkeypatch.setattr(prep, "decode", kill_worker_on(KILL_ID, tmp_path / "killed-once"))
    out = tmp_path / "ls"
    prep.main(args_for(corpus, out, workers=2))
    assert (tmp_path / "killed-once").exists()  # a worker did die
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "worker process died" in line]
    assert len(warnings) == 1 and f"{out / 'train' / '00001'}:" in warnings[0] and KILL_ID in warnings[0]
    assert "Traceback" not in err
    assert tree(out) == tree(reference)


def test_worker_dying_twice_stops_in_one_line_and_resumes_identically(corpus, reference, tmp_path, monkeypatch,
                                                                      deadline):
    monkeypatch.setattr(prep, "decode", kill_worker_on(KILL_ID))
    out = tmp_path / "ls"
    with pytest.raises(SystemExit) as e:
        prep.main(args_for(corpus, out, workers=2))
    message = str(e.value)
    assert message.startswith(f"error: {out / 'train' / '00001'}: worker processes died twice")
    assert KILL_ID in message and "\n" not in message
    assert (out / "train" / "00000.json").exists() and not (out / "meta.json").exists()
    (out / "train" / "00001.npy.4242.tmp").write_bytes(b"a write the kill interrupted")
    (out / "meta.json.4242.tmp").write_bytes(b"{")
    monkeypatch.setattr(prep, "decode", kill_worker_on("nobody"))
    processed, real_process = [], prep.process
    monkeypatch.setattr(prep, "process", lambda item: processed.append(item["id"]) or real_process(item))
    prep.main(args_for(corpus, out))
    assert tree(out) == tree(reference)  # the stale temporaries are gone too
    assert "19-198-0000" not in processed and KILL_ID in processed  # the finished shard was not redone


@pytest.mark.parametrize("extra, needle", [
    (["--workers", "0"], "--workers must be at least 1, got 0"),
    (["--workers", "1.5"], "argument --workers: invalid int value: '1.5'"),
    (["--workers", "True"], "argument --workers: invalid int value: 'True'"),
    (["--shard-size", "0"], "--shard-size must be at least 1, got 0"),
    (["--val-fraction", "nan"], "--val-fraction must be at least 0 and below 1, got nan"),
    (["--val-fraction", "1"], "--val-fraction must be at least 0 and below 1, got 1.0"),
    (["--n-mels", "64"], "argument --n-mels: invalid choice: 64"),
    (["--text-case", "upper"], "argument --text-case: invalid choice: 'upper'"),
    (["--wrkers", "2"], "unrecognized arguments: --wrkers 2"),
])
def test_prepare_librispeech_bad_options_exit_2_in_one_line(corpus, tmp_path, capsys, extra, needle):
    with pytest.raises(SystemExit) as e:
        prep.main(["--librispeech-dir", str(corpus), "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()  # nothing was made


def test_prepare_librispeech_unwritable_out_and_other_settings(corpus, reference, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as e:
        prep.main(args_for(corpus, tmp_path / "a_file" / "out"))
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {tmp_path / 'a_file' / 'out'}: output directory is not writable")
    with pytest.raises(SystemExit) as e:  # resuming someone else's output with other settings
        prep.main(args_for(corpus, reference) + ["--n-mels", "128"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err == f"error: {reference / 'config.json'}: {reference} was prepared with " \
                                       "other settings; use another --out\n"


@pytest.mark.parametrize("extra, needle", [
    (["--hours", "nan"], "--hours must be a positive number, got nan"),
    (["--hours", "inf"], "--hours must be a positive number, got inf"),
    (["--hours", "-1"], "--hours must be a positive number, got -1.0"),
    (["--seed", "1.5"], "argument --seed: invalid int value: '1.5'"),
    (["--workers", "many"], "argument --workers: invalid int value: 'many'"),
    (["--test-fraction", "-0.1"], "must not be negative and must leave audio for train"),
    (["--dev-fraction", "nan"], "must not be negative and must leave audio for train"),
])
def test_prepare_synthetic_bad_options_exit_2_in_one_line(tmp_path, capsys, extra, needle):
    with pytest.raises(SystemExit) as e:
        synth.main(["--out", str(tmp_path / "s"), "--hours", "0.001", *extra])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "s").exists()


def test_prepare_synthetic_refuses_unwritable_out_and_existing_corpus(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit) as e:
        synth.main(["--out", str(tmp_path / "a_file" / "s"), "--hours", "0.001"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(f"error: {tmp_path / 'a_file' / 's'}: output directory is not writable")
    (tmp_path / "s" / "dev").mkdir(parents=True)
    with pytest.raises(SystemExit) as e:
        synth.main(["--out", str(tmp_path / "s"), "--hours", "0.001"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err == \
         f"error: {tmp_path / 's' / 'dev'}: already exists; pass --overwrite to replace it\n"
    assert (tmp_path / "s" / "dev").is_dir()


def test_the_command_line_itself_says_one_line(corpus, tmp_path):
    """The script as a user runs it: no traceback, one line, exit code 2."""
    proc = subprocess.run([sys.executable, str(ROOT / "prepare_librispeech.py"), *args_for(corpus, tmp_path / "o"),
                           "--val-fraction", "-0.5"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "error: --val-fraction must be at least 0 and below 1, got -0.5\n"


def test_hf_missing_column_or_dataset_is_one_line(tmp_path, monkeypatch, capsys):
    import datasets

    local = datasets.Dataset.from_list([dict(audio="x.wav", sentence="Hello.")])
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, split=None, streaming=False: local)
    with pytest.raises(SystemExit) as e:
        prep.main(["--hf", "fake/cv", "--out", str(tmp_path / "o"), "--workers", "1"])  # --text-column text
    err = capsys.readouterr().err
    assert e.value.code == 2  # the error is the last line, after the progress bar's
    assert err.endswith("\nerror: fake/cv (train): no column 'text'; columns are audio, sentence\n")
    assert "Traceback" not in err

    def missing(name, config=None, split=None, streaming=False):
        raise FileNotFoundError(f"Dataset '{name}' doesn't exist on the Hub or cannot be accessed.\nmore text")

    monkeypatch.setattr(datasets, "load_dataset", missing)
    with pytest.raises(SystemExit) as e:
        prep.main(["--hf", "fake/nothing", "--out", str(tmp_path / "o2"), "--workers", "1"])
    assert str(e.value) == ("error: fake/nothing (default, train): cannot load (FileNotFoundError: Dataset "
                            "'fake/nothing' doesn't exist on the Hub or cannot be accessed.)")
