"""train.py and eval.py end to end, on a tiny synthetic corpus made here (no network, ~3 min on 2 cores).

Every run is a subprocess, exactly as a user runs it: `python train.py --key=value ...`, and
torchrun for DDP. Losses are read back from the run's log.jsonl.
"""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

PY = sys.executable
# a small but real model: 2+2 blocks of width 128, a 6 s window (the tiny corpus has clips of 1-5 s)
TINY = ["--n_audio_ctx=300", "--n_audio_state=128", "--n_audio_head=2", "--n_audio_layer=2",
        "--n_text_state=128", "--n_text_head=2", "--n_text_layer=2"]
# matplotlib's import and a figure cost ~0.7 s a run; test_overfit_memorises_and_eval_py_scores_it draws one
QUIET = ["--eval_at_start=False", "--eval_iters=1", "--eval_wer_utts=2", "--eval_sample_len=8", "--plot_curves=False"]


def run(args, timeout=300, env=None, check=True):
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def train(*args, **kw):
    return run([PY, "train.py", *map(str, args)], **kw)


def train_losses(out_dir, key="loss") -> dict:
    with open(os.path.join(out_dir, "log.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return {r["iter"]: r[key] for r in rows if r["kind"] == "train"}


def eval_losses(out_dir) -> list:
    with open(os.path.join(out_dir, "log.jsonl")) as f:
        return [json.loads(line)["val_loss"] for line in f if '"eval"' in line]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """~9 train, ~2 dev, ~1 test utterances of synthetic speech, sharded for the loader."""
    root = tmp_path_factory.mktemp("corpus")
    raw, shards = root / "raw", root / "shards"
    run([PY, "prepare_synthetic.py", "--hours", "0.01", "--dev-fraction", "0.2", "--test-fraction", "0.05",
         "--out", raw, "--workers", "2"])
    run([PY, "prepare_librispeech.py", "--librispeech-dir", raw, "--out", shards, "--workers", "2"])
    n_train = sum(1 for _ in open(shards / "train.jsonl"))
    assert n_train >= 6 and (shards / "val.jsonl").stat().st_size > 0
    return raw, shards, n_train


def test_overfit_memorises_and_eval_py_scores_it(corpus, tmp_path):
    """A tiny model memorises ~8 utterances; eval.py then transcribes their audio files exactly."""
    raw, shards, n_train = corpus
    out = tmp_path / "out"
    batch = min(8, n_train)
    train(f"--data_dir={shards}", f"--out_dir={out}", *TINY, *QUIET, f"--batch_size={batch}", "--max_iters=100",
          "--lr_decay_iters=100", "--warmup_iters=10", "--learning_rate=3e-3", "--min_lr=3e-4", "--weight_decay=0.0",
          "--eval_interval=1000", "--log_interval=20", "--plot_curves=True")
    losses = train_losses(out)
    assert losses[100] < 0.05, losses
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # eval.py reads the flac files and pads them to the model's 6 s window, as the loader did
    proc = run([PY, "eval.py", "--model", out / "ckpt.pt", raw / "train"])
    last = proc.stdout.strip().splitlines()[-1]
    assert last == f"WER 0.00% on {n_train} utterances", proc.stdout + proc.stderr


@pytest.mark.parametrize("padding", [["--pack=True"], ["--bucket=True", "--dtype=bfloat16"]],
                         ids=["pack", "bucket-bf16"])
def test_resume_continues_exactly(corpus, tmp_path, padding):
    """Stop after 3 steps, resume, and steps 4-6 have the same losses as an uninterrupted run, with
    dropout, SpecAugment and the CTC head on (so RNG states, loader positions and the head's weights
    must come back too), with either way of saving on padding; the second as the quick start runs."""
    _, shards, _ = corpus
    common = [f"--data_dir={shards}", *TINY, *QUIET, "--batch_size=2", "--lr_decay_iters=6", "--warmup_iters=2",
              "--eval_interval=100", "--log_interval=1", "--dropout=0.1", "--spec_augment=True",
              "--time_mask_width=20", "--freq_mask_width=10", "--ctc_weight=0.5", *padding]
    train(*common, f"--out_dir={tmp_path / 'a'}", "--max_iters=6")
    train(*common, f"--out_dir={tmp_path / 'b'}", "--max_iters=3")
    train(*common, f"--out_dir={tmp_path / 'b'}", "--max_iters=6", "--init_from=resume")
    a, b = train_losses(tmp_path / "a"), train_losses(tmp_path / "b")
    assert sorted(b) == [1, 2, 3, 4, 5, 6]  # the resumed log continues the stopped one
    assert [a[i] for i in (4, 5, 6)] == [b[i] for i in (4, 5, 6)], (a, b)
    ca, cb = train_losses(tmp_path / "a", "ctc"), train_losses(tmp_path / "b", "ctc")
    assert all(ca[i] > 0 for i in ca) and [ca[i] for i in (4, 5, 6)] == [cb[i] for i in (4, 5, 6)], (ca, cb)
    wa = torch.load(tmp_path / "a" / "ckpt.pt", weights_only=True)
    wb = torch.load(tmp_path / "b" / "ckpt.pt", weights_only=True)
    assert all(torch.equal(wa["model_state_dict"][k], wb["model_state_dict"][k]) for k in wa["model_state_dict"])
    assert all(torch.equal(wa["ctc_head"][k], wb["ctc_head"][k]) for k in wa["ctc_head"])
    # the head is a training aid outside the openai-format model, and a resume must keep it
    proc = train(*common, f"--out_dir={tmp_path / 'b'}", "--max_iters=7", "--init_from=resume", "--ctc_weight=0",
                 check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "ctc_weight" in proc.stderr, proc.stderr


# DDP and one process see the same 8 utterances per step (the loader deals each rank a strided slice
# of one permutation) and the loss is normalised by the global token count, so they differ only by
# float summation order: all-reduced vs accumulated gradients. Tolerance: 1e-4 relative over 4 steps.
DDP_RTOL = 1e-4


def test_ddp_two_processes_match_one(corpus, tmp_path):
    _, shards, n_train = corpus
    if n_train < 8:
        pytest.skip("needs 8 train utterances")
    common = [f"--data_dir={shards}", *TINY, *QUIET, "--batch_size=4", "--gradient_accumulation_steps=2",
              "--max_iters=4", "--lr_decay_iters=4", "--warmup_iters=1", "--eval_interval=100", "--log_interval=1",
              "--ctc_weight=0.5"]  # the CTC loss is normalised by the global character count, like the tokens
    train(*common, f"--out_dir={tmp_path / 'one'}")
    run([PY, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "train.py", *common,
         f"--out_dir={tmp_path / 'two'}"])
    one, two = train_losses(tmp_path / "one"), train_losses(tmp_path / "two")
    assert sorted(one) == sorted(two) == [1, 2, 3, 4]
    for i in one:
        assert two[i] == pytest.approx(one[i], rel=DDP_RTOL), (one, two)
    ctc_one, ctc_two = train_losses(tmp_path / "one", "ctc"), train_losses(tmp_path / "two", "ctc")
    for i in ctc_one:
        assert ctc_two[i] == pytest.approx(ctc_one[i], rel=DDP_RTOL), (ctc_one, ctc_two)
    assert eval_losses(tmp_path / "two")[-1] == pytest.approx(eval_losses(tmp_path / "one")[-1], rel=DDP_RTOL)


def test_finetune_tiny_en_smoke(corpus, tmp_path, tiny_en_checkpoint):
    """Two steps from tiny.en lower the val loss; the checkpoint loads in transcribe.py and in
    openai-whisper, which decodes the same tokens as our decode loop."""
    raw, shards, _ = corpus
    out = tmp_path / "ft"
    train(f"--data_dir={shards}", f"--out_dir={out}", f"--init_from={tiny_en_checkpoint}", "--batch_size=2",
          "--max_iters=2", "--lr_decay_iters=2", "--warmup_iters=0", "--learning_rate=5e-5", "--weight_decay=0.0",
          "--eval_interval=100", "--eval_iters=1", "--eval_wer_utts=0", "--log_interval=1", timeout=240)
    before, after = eval_losses(out)
    assert after < before
    flac = sorted(raw.rglob("*.flac"))[0]
    proc = run([PY, "transcribe.py", "--model", out / "ckpt.pt", "--beam-size", "1", flac])
    assert proc.stdout.strip()

    whisper = pytest.importorskip("whisper")
    from audio import load_audio, log_mel_spectrogram, pad_or_trim
    from decoding import decode
    from pretrained import from_pretrained

    reference = whisper.load_model(str(out / "ckpt.pt"), device="cpu")
    mel = log_mel_spectrogram(pad_or_trim(load_audio(str(flac))))
    theirs = whisper.decode(reference, mel, whisper.DecodingOptions(language="en", without_timestamps=True, fp16=False))
    ours = decode(from_pretrained(out / "ckpt.pt"), mel)
    assert ours.tokens == theirs.tokens


def test_padding_the_text_changes_no_loss(corpus, tmp_path):
    """text_pad_multiple pads each batch's text (fewer shapes for cuDNN's attention plans on a GPU);
    the padding is masked out of the loss and causal attention keeps it from the real positions."""
    _, shards, n_train = corpus
    runs = {}
    for multiple in (1, 16):
        out = tmp_path / f"pad{multiple}"
        train(f"--data_dir={shards}", f"--out_dir={out}", *TINY, *QUIET, f"--batch_size={min(4, n_train)}",
              "--max_iters=3", "--eval_interval=1000", "--log_interval=1", f"--text_pad_multiple={multiple}")
        runs[multiple] = train_losses(out)
    assert runs[1].keys() == runs[16].keys() == {1, 2, 3}
    for step, loss in runs[1].items():
        assert abs(runs[16][step] - loss) < 1e-4 * loss, (runs[1], runs[16])  # not bit-equal: other matmul shapes


def test_profile_records_the_steps_it_says(corpus, tmp_path):
    """--profile_steps: a table of the costliest ops in the log and a trace of exactly those steps."""
    _, shards, n_train = corpus
    out = tmp_path / "out"
    proc = train(f"--data_dir={shards}", f"--out_dir={out}", *TINY, *QUIET, f"--batch_size={min(4, n_train)}",
                 "--max_iters=5", "--eval_interval=1000", "--log_interval=1", "--profile_skip=2", "--profile_steps=2")
    assert "profile of 2 step(s), by self_cpu_time_total" in proc.stdout and "aten::" in proc.stdout, proc.stdout
    from cli import cpu_description  # a time-capped run's figures mean little without the machine they came from

    assert f"machine: {cpu_description()}, torch {torch.__version__}, " in proc.stdout, proc.stdout
    with open(out / "profile.json") as f:
        trace = json.load(f)
    steps = sorted({e["name"] for e in trace["traceEvents"] if e.get("name", "").startswith("ProfilerStep#")})
    assert steps == ["ProfilerStep#2", "ProfilerStep#3"], steps  # the 3rd and 4th of 5 steps (it counts from 0)
    assert not list(out.glob("*.tmp"))  # written under a temporary name, then renamed


def test_config_errors_name_the_key_and_file(tmp_path):
    from configurator import ConfigError, apply

    defaults = {"batch_size": 16, "learning_rate": 1e-3, "init_from": "scratch"}
    bad = tmp_path / "bad.py"
    bad.write_text("learning_rate = 1e-3\nlerning_rate = 1e-4  # typo\n")
    for argv, needle in [
        (["--not_a_key=1"], "--not_a_key=1: unknown config key 'not_a_key'"),
        (["--batch_size=big"], "'batch_size' should be int, got 'big'"),
        (["--batch_size=True"], "--batch_size=True: 'batch_size' should be int, got True"),  # True is an int to Python
        (["--learning_rate=-1.0"], "learning_rate=-1.0: must be positive"),  # checked after every override
        ([str(bad)], f"{bad}: unknown config key 'lerning_rate'"),
        (["config/does_not_exist.py"], "config/does_not_exist.py: no such config file"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(needle)):
            apply(argv, dict(defaults))
    config = dict(defaults)
    apply(["--learning_rate=1", "--init_from=tiny.en"], config)  # an int where a float is expected is fine
    assert config == {"batch_size": 16, "learning_rate": 1.0, "init_from": "tiny.en"}


@pytest.mark.parametrize("args, needle", [
    (["--lerning_rate=1e-4"], "error: --lerning_rate=1e-4: unknown config key 'lerning_rate'"),
    (["--init_from=nonsense-model"], "error: init_from='nonsense-model': expected 'scratch', 'resume', an official"),
    (["--batch_size=0"], "error: batch_size=0: must be at least 1"),  # once a ZeroDivisionError in the loader
    (["--log_interval=0"], "error: log_interval=0: must be at least 1"),  # once a ZeroDivisionError after step 1
    (["--max_iters=-1"], "error: max_iters=-1: must not be negative"),
    (["--guide_sigma=0"], "error: guide_sigma=0.0: must be positive"),  # a division by zero in the guide
])
def test_train_py_exits_with_one_clear_line(args, needle):
    proc = train(*args, check=False, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith(needle), proc.stderr


def test_guide_needs_a_windowed_corpus(corpus, tmp_path):
    """The attention guide reads utterance times that only windows have: one line, before any step."""
    _, shards, _ = corpus
    proc = train(f"--data_dir={shards}", f"--out_dir={tmp_path / 'out'}", *TINY, "--batch_size=2", "--guide_weight=1.0",
                 check=False, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        f"error: {shards}: guide_weight needs a corpus prepared in windows (prepare_librispeech.py --window-seconds), "
        "whose utterance times it reads"), proc.stderr


def test_eval_py_rejects_a_zero_batch_in_one_line(tmp_path):
    proc = run([PY, "eval.py", "--batch-size", "0", tmp_path], check=False, timeout=120)  # once: range() step 0
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --batch-size must be at least 1, got 0", proc.stderr
