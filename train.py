"""
Train a Whisper from scratch, or fine-tune an official one, on shards from prepare_librispeech.py.

    python train.py config/synthetic_cpu.py                                # CPU or one GPU
    python train.py config/synthetic_cpu.py --batch_size=8 --max_iters=500 # --key=value overrides
    torchrun --standalone --nproc_per_node=8 train.py config/librispeech_base_8gpu.py
    python train.py config/finetune_tiny_en.py                             # from the official tiny.en
    python train.py config/synthetic_cpu.py --init_from=resume             # continue out_dir/ckpt.pt

The hyperparameters are the globals below; a config file (plain Python) and --key=value arguments
override them (configurator.py). Every eval_interval steps: val loss and greedy WER into
out_dir/log.jsonl and curves.png, then out_dir/ckpt.pt (and best.pt when the val loss improved): the
model in openai-whisper's format plus everything a resumed run needs to continue with exactly the
uninterrupted run's losses (docs/train.md).
"""
import json
import math
import os
import re
import sys
import tempfile
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

import configurator
from audio import spec_augment as mask_mel  # the config's bool has the name
from audio import window_frames
from cli import cpu_description
from data import CTC_CHARS, ShardLoader, ctc_targets, iterate_batches, read_meta, token_times
from decoding import transcribe_windows
from files import atomic_write, remove_stale_temps, temp_name
from metrics import word_error_rate
from model import ModelDimensions, Whisper, flops_per_utterance
from pretrained import CheckpointError, from_pretrained, official_names, save_checkpoint
from timing import attention_scores, record_inputs
from tokenizer import tokenizer_for

# -----------------------------------------------------------------------------------------------
# defaults (a config file or --key=value overrides any of these)
# I/O
out_dir = "out"
data_dir = "data/synth"
init_from = "scratch"  # 'scratch', 'resume' (out_dir/ckpt.pt), or anything from_pretrained takes: tiny.en, x.pt, a CT2 dir
eval_interval = 200  # steps between evals (val loss + WER) and checkpoints
eval_iters = 10  # val batches for the val loss (a fixed subset, the same every time)
eval_wer_utts = 64  # val utterances decoded greedily for the WER (a fixed subset); 0 skips the WER
eval_sample_len = 128  # max tokens decoded per utterance during eval
eval_at_start = True  # eval before the first step (the baseline for fine-tuning)
eval_only = False  # evaluate once and exit
log_interval = 10
plot_curves = True  # redraw out_dir/curves.png (losses and WER) at every eval
# model (init_from='scratch' only; otherwise the dims come from the checkpoint)
n_mels = 80
n_audio_ctx = 1500  # the audio context switch: 1500 = 30 s windows as in Whisper; fewer = shorter ones (docs/train.md)
n_audio_state = 384
n_audio_head = 6
n_audio_layer = 4
n_text_ctx = 448
n_text_state = 384
n_text_head = 6
n_text_layer = 4
dropout = 0.0  # residual dropout in every block (Whisper used none)
# > 0: add this times a CTC loss over characters from a linear head on the encoder's output, which makes a
# model trained from scratch listen much sooner (joint CTC-attention); the head is saved outside the model
ctc_weight = 0.0
# > 0 (windowed corpora): add this times a guided-attention loss (after Tachibana et al. 2017): every
# cross-attention head of the decoder's upper half pays for its attention to audio far from where the
# token it predicts is spoken (data.token_times), a Gaussian of guide_sigma seconds around that time
# counting as near. It shows the decoder where to listen instead of leaving it to find out.
guide_weight = 0.0
guide_sigma = 0.25
# data
batch_size = 16  # rows (windows) per micro-step per process: one utterance each, or several with pack
pack = False  # fill each window with consecutive utterances while they fit, instead of one and padding
bucket = False  # batch clips of similar length and cut each batch's window to its longest clip (see data.py)
gradient_accumulation_steps = 1  # micro-steps per optimizer step, summed over all processes
# Whisper's targets, for a corpus prepared in windows (prepare_librispeech.py --window-seconds): drawn per
# window, seeded (resumes are exact). Half with timestamps: transcribe.py's long-form paths decode with
# them, eval.py and the WER here without, and a model trained from scratch must learn both within its
# budget (distil-whisper, distilling from a model that had both, used 0.2). 0.1 with the previous window's
# text as a prompt (distil-whisper's figure), so that transcribe.py's condition_on_previous_text reads
# a context the model has met, without making it lean on the prompt.
timestamp_probability = 0.5
prompt_probability = 0.1
text_pad_multiple = 1  # pad each batch's text to a multiple of this many tokens: fewer shapes (see pad_text)
# SpecAugment-style masking of the training mels (eval never masks)
spec_augment = False
freq_masks = 2  # masks per utterance, each up to freq_mask_width mel bins
freq_mask_width = 27
time_masks = 2  # masks per utterance, each up to time_mask_width frames
time_mask_width = 40
# optimizer: AdamW as Whisper trained it
learning_rate = 1e-3
max_iters = 5000
weight_decay = 0.1  # only on tensors of 2 or more dimensions (matrices, embeddings, convs)
beta1 = 0.9
beta2 = 0.98
eps = 1e-6
grad_clip = 1.0  # 0 disables
# learning rate schedule: linear warmup, then decay to min_lr at lr_decay_iters
decay_lr = True
lr_schedule = "cosine"  # 'cosine' or 'linear' (Whisper: linear)
warmup_iters = 200
lr_decay_iters = 5000  # usually = max_iters
# > 0: stop after this many minutes of steps (evals not counted) or at max_iters, whichever comes first, with the
# decay following the time used, so that the schedule completes on a slow machine too (resumes are then not exact)
max_minutes = 0.0
min_lr = 1e-4
# system
device = "auto"  # 'auto' (cuda if present), 'cpu', 'cuda', 'cuda:1', ...
dtype = "auto"  # 'auto' (bfloat16 autocast on GPUs that have it, else float32), 'float32', 'bfloat16'
compile = False  # torch.compile the training model (eval and saving use the plain module)
profile_steps = 0  # > 0: torch.profiler records this many steps, logs their costliest ops, writes out_dir/profile.json
profile_skip = 10  # steps before the recorded ones (compilation, warm-up); open the trace in ui.perfetto.dev
seed = 1337
# -----------------------------------------------------------------------------------------------
config_keys = [k for k, v in globals().items() if not k.startswith("_") and isinstance(v, (bool, int, float, str))]
config = {k: globals()[k] for k in config_keys}


def fail(message: str, code: int = 2):
    """One line on stderr and the exit code: 2 for bad options and inputs, 1 for a run gone wrong."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


try:
    configurator.apply(sys.argv[1:], config)  # unknown keys, wrong types and values out of range stop here
except configurator.ConfigError as e:
    fail(str(e))
globals().update(config)

# the options that depend on the machine and the files, before any work (configurator checks the rest)
if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
    fail(f"device={device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
if device.startswith("cuda") and not torch.cuda.is_available():
    fail(f"device={device!r}: no CUDA device is available to this PyTorch ({torch.__version__}); use --device=cpu")
if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
    fail(f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
resume_path, best_path = os.path.join(out_dir, "ckpt.pt"), os.path.join(out_dir, "best.pt")
if init_from == "resume" and not os.path.isfile(resume_path):
    fail(f"init_from='resume' but {resume_path} does not exist")
if init_from not in ("scratch", "resume") and init_from not in official_names() and not os.path.exists(init_from):
    fail(f"init_from={init_from!r}: expected 'scratch', 'resume', an official model name "
         f"({', '.join(official_names())}), or an existing checkpoint file or CTranslate2 directory")
if gradient_accumulation_steps % int(os.environ.get("WORLD_SIZE", "1")):
    fail(f"gradient_accumulation_steps={gradient_accumulation_steps} is not a multiple of the {os.environ['WORLD_SIZE']} "
         "processes")
if not os.path.isfile(os.path.join(data_dir, "meta.json")):
    fail(f"data_dir={data_dir!r}: no meta.json; run prepare_librispeech.py --out {data_dir} first")
try:  # made here, so that a run can't train for hours and then find it can't save
    os.makedirs(out_dir, exist_ok=True)
    tempfile.TemporaryFile(dir=out_dir).close()
except OSError as e:
    fail(f"out_dir={out_dir!r}: not writable ({e.strerror or e})")

# -----------------------------------------------------------------------------------------------
# processes and devices: torchrun sets RANK, LOCAL_RANK and WORLD_SIZE
ddp = "RANK" in os.environ
if device == "auto":
    device = "cuda" if torch.cuda.is_available() else "cpu"
device_type = "cuda" if device.startswith("cuda") else "cpu"
if ddp:
    dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    rank, local_rank, world_size = dist.get_rank(), int(os.environ["LOCAL_RANK"]), dist.get_world_size()
    if device_type == "cuda":
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    gradient_accumulation_steps //= world_size  # per process; the global batch stays the same
else:
    rank, local_rank, world_size = 0, 0, 1
master = rank == 0
if dtype == "auto":
    dtype = "bfloat16" if device_type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
autocast = torch.autocast(device_type, dtype=torch.bfloat16) if dtype == "bfloat16" else nullcontext()
torch.manual_seed(seed + rank)  # same init everywhere (DDP broadcasts rank 0's anyway); own masks/dropout per rank
if device_type == "cuda":
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def log(message: str):
    if master:
        print(message, flush=True)


# -----------------------------------------------------------------------------------------------
# model
iter_num, best_val_loss, checkpoint, train_seconds = 0, float("inf"), None, 0.0
meta = read_meta(data_dir)
if init_from == "scratch":  # the vocabulary the data was tokenised with decides n_vocab
    whisper = Whisper(ModelDimensions(n_mels, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer,
                                      meta.get("n_vocab", 51864), n_text_ctx, n_text_state, n_text_head,
                                      n_text_layer)).init_weights()
elif init_from == "resume":  # everything comes from this one load: model, optimizer, positions, RNG states
    try:
        checkpoint = torch.load(resume_path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (whatever torch raises; not its message, which suggests loading unsafely)
        fail(f"{resume_path}: not a readable checkpoint ({type(e).__name__})")
    missing = [k for k in ("dims", "model_state_dict", "optimizer", "iter_num", "best_val_loss", "loader_states",
                           "rng_states", "config") if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        fail(f"{resume_path}: no training state to resume ({', '.join(missing)} missing); to start from its "
             f"weights, use --init_from={resume_path} with another out_dir")
    whisper = Whisper(ModelDimensions(**checkpoint["dims"]))
    whisper.load_state_dict(checkpoint["model_state_dict"])
    whisper.alignment_heads = [tuple(h) for h in checkpoint.get("alignment_heads", whisper.alignment_heads)]
    iter_num, best_val_loss = checkpoint["iter_num"], checkpoint["best_val_loss"]
    train_seconds = checkpoint.get("train_seconds", 0.0)
    if os.path.isfile(best_path):  # its own val loss: killed between the two writes, best.pt is the newer (see save)
        best_val_loss = torch.load(best_path, map_location="cpu", mmap=True, weights_only=True)["val_loss"]
    for key, old in checkpoint["config"].items():
        if key in config and config[key] != old and key not in ("init_from", "max_iters", "eval_interval",
                                                                 "log_interval", "eval_only"):
            log(f"note: {key} was {old!r} in the checkpoint, now {config[key]!r}")
else:
    try:
        whisper = from_pretrained(init_from)  # fp32, CPU
    except CheckpointError as e:
        fail(str(e))
dims = whisper.dims
for module in whisper.modules():  # models come without dropout; this run's setting applies
    if isinstance(module, torch.nn.Dropout):
        module.p = dropout
n_frames = window_frames(dims.n_audio_ctx)
tokenizer = tokenizer_for(dims)
if meta.get("eot") != tokenizer.eot or meta.get("n_mels", 80) != dims.n_mels:
    fail(f"{data_dir}/meta.json: prepared for eot={meta.get('eot')} and n_mels={meta.get('n_mels')}, "
         f"but the model has eot={tokenizer.eot} and n_mels={dims.n_mels}")
log(f"model: {sum(p.numel() for p in whisper.parameters()) / 1e6:.1f}M parameters, {dims}")
log(f"window: {n_frames / 100:.0f} s ({n_frames} mel frames){', each batch cut to its longest clip' if bucket else ''}; "
    f"{world_size} process(es) on {device}, {dtype}; global batch {batch_size * gradient_accumulation_steps * world_size} "
    f"{'packed windows' if pack else 'windows' if meta.get('window_seconds') else 'utterances'}")
# a time-capped run's step count, and so its WER, depends on the machine: every log says which it was
log(f"machine: {torch.cuda.get_device_name() if device.startswith('cuda') else cpu_description()}, "
    f"torch {torch.__version__}, {torch.get_num_threads()} threads")

class Trainee(torch.nn.Module):
    """What the optimizer and DDP see: the Whisper, plus the CTC head when ctc_weight > 0."""

    def __init__(self, whisper: Whisper):
        super().__init__()
        self.whisper = whisper
        self.ctc_head = torch.nn.Linear(whisper.dims.n_audio_state, 1 + len(CTC_CHARS)) if ctc_weight > 0 else None
        blocks = whisper.decoder.blocks
        self.guided = [b.cross_attn for b in blocks[len(blocks) // 2:]] if guide_weight > 0 else []

    def forward(self, mel: torch.Tensor, tokens: torch.Tensor):
        """(logits, CTC logits or None, the guided heads' attention (layers, B, heads, T, S) in fp32 or None)"""
        audio = self.whisper.encoder(mel)
        with record_inputs(self.guided, detach=False) as seen:
            logits = self.whisper.decoder(tokens, audio)
        if device_type != "cpu":  # the CPU's loss reads autocast's bf16 logits (see the loss), a GPU's fp32
            logits = logits.float()
        # the guided heads' weights, recomputed from the inputs they had: the same parameters, so the
        # guide's gradient reaches them as if taken through the attention itself. Not the encoder's
        # output: the guide teaches the decoder where to look; the audio's features stay shaped by
        # what it must read there (an encoder pulled by the guide could encode position, not sound)
        weights = (torch.stack([attention_scores(a, seen[a][0], seen[a][1].detach()).softmax(-1) for a in self.guided])
                   if self.guided else None)
        return logits, self.ctc_head(audio) if self.ctc_head is not None else None, weights


model = Trainee(whisper).to(device).train()
if checkpoint is not None:
    if ("ctc_head" in checkpoint) != (model.ctc_head is not None):
        fail(f"{resume_path}: trained with{'' if 'ctc_head' in checkpoint else 'out'} a CTC head; resume with the same "
             f"ctc_weight setting ({'> 0' if 'ctc_head' in checkpoint else '0'})")
    if model.ctc_head is not None:
        model.ctc_head.load_state_dict(checkpoint["ctc_head"])

# optimizer: weight decay on matrices, embeddings and convs, not on biases and LayerNorm gains
decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
optimizer = torch.optim.AdamW(
    [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
    lr=learning_rate, betas=(beta1, beta2), eps=eps, fused=True,  # fused kernels on CUDA and CPU (torch >= 2.4)
)
if checkpoint is not None:
    optimizer.load_state_dict(checkpoint["optimizer"])

if compile:
    log("compiling the model...")
    model = torch.compile(model)
if ddp:
    model = DDP(model, device_ids=[local_rank] if device_type == "cuda" else None)
raw_model = model.module if ddp else model  # without the DDP wrapper; its .whisper is evaluated and saved unwrapped

# -----------------------------------------------------------------------------------------------
# data
try:
    loader = ShardLoader(data_dir, "train", batch_size, n_frames, rank, world_size, seed, pack, bucket,
                         timestamp_probability, prompt_probability)
    if checkpoint is not None:
        states = checkpoint["loader_states"]
        if len(states) != world_size:
            fail(f"{resume_path}: saved by {len(states)} process(es); resume with the same number, not {world_size}")
        loader.load_state_dict(states[rank])
        torch.set_rng_state(checkpoint["rng_states"][rank]["cpu"])
        if device_type == "cuda" and checkpoint["rng_states"][rank]["cuda"] is not None:
            torch.cuda.set_rng_state(checkpoint["rng_states"][rank]["cuda"])
    # fixed val subsets: the first eval_iters batches for the loss, the first eval_wer_utts for the WER
    # the val loss on targets mixed as in training; the WER on windows without timestamps (their texts)
    val_batches = list(iterate_batches(data_dir, "val", batch_size, n_frames, eval_iters * batch_size,
                                       timestamp_probability, prompt_probability, seed))
    wer_batches = list(iterate_batches(data_dir, "val", batch_size, n_frames, eval_wer_utts, 0.0) if eval_wer_utts else [])
except (ValueError, FileNotFoundError) as e:
    fail(str(e))
if not val_batches:
    fail(f"{data_dir}: the val split is empty; the loss can't be evaluated")
wer_mels = [mel for batch in wer_batches for mel in batch[0]]
wer_refs = [e["text"] for batch in wer_batches for e in batch[3]]
timestamps = bool(loader.specials) and timestamp_probability > 0  # saved in the checkpoint: transcribe.py reads it
if guide_weight > 0 and not loader.specials:
    fail(f"{data_dir}: guide_weight needs a corpus prepared in windows (prepare_librispeech.py --window-seconds), "
         f"whose utterance times it reads")
# each text token's length, by which data.token_times spreads an utterance's tokens over its speech
# (windows only), read in one call for the whole vocabulary
token_bytes = (np.array([len(b) for b in tokenizer.encoding.decode_tokens_bytes(list(range(tokenizer.eot)))])
               if loader.specials else None)
del checkpoint  # all of it is in place now; a large model's copy would only take memory


def lr_at(it: int, seconds: float) -> float:
    if not decay_lr:
        return learning_rate
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if max_minutes > 0:
        progress = min(1.0, seconds / (60 * max_minutes))
    elif it >= lr_decay_iters:
        return min_lr
    else:
        progress = (it - warmup_iters) / max(1, lr_decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * progress)) if lr_schedule == "cosine" else 1.0 - progress
    return min_lr + coeff * (learning_rate - min_lr)


def pad_text(tokens_in: torch.Tensor, targets: torch.Tensor) -> tuple:
    """A batch's text padded to a multiple of text_pad_multiple tokens (within n_text_ctx): eot in,
    ignored out, and causal attention keeps the padding from changing any real position. Why: on a
    GPU, cuDNN attention plans each new shape once, at a cost in CPU time (docs/bench.md, part b), and
    a batch's text length is a new shape for every decoder attention until all lengths were seen."""
    extra = min(-tokens_in.shape[1] % text_pad_multiple, dims.n_text_ctx - tokens_in.shape[1])
    return F.pad(tokens_in, (0, extra), value=tokenizer.eot), F.pad(targets, (0, extra), value=-100)


def attention_far(weights: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """(layers, B, heads, T, S) attention and (B, T) spoken times in seconds -> (layers, B, heads, T):
    each query's expected distance penalty, 1 - exp(-d^2 / 2 sigma^2) for audio d seconds from its
    token (audio token s is the 20 ms from 0.02 s; NaN times give garbage, masked by the caller)."""
    centres = (torch.arange(weights.shape[-1], device=weights.device) + 0.5) * 0.02
    d = centres - times.to(weights.device).nan_to_num(0.0)[:, None, :, None]  # (B, 1, T, S): every head alike
    return (weights * (1 - torch.exp(-d.square() / (2 * guide_sigma**2)))).sum(-1)


PEAK_FLOPS = {"A100": 312e12, "H100": 989e12, "H200": 989e12}  # dense bf16 per device
peak_flops = None
if device_type == "cuda":
    name = torch.cuda.get_device_name(device)
    peak_flops = next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def all_reduce(values: list, op=dist.ReduceOp.SUM) -> list:
    if not ddp:  # no round trip through the GPU: reading it back would make the host wait for the last step
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=op)
    return t.tolist()


@torch.no_grad()
def evaluate() -> dict:
    """Val loss (per target token) and greedy WER on the fixed subsets, split across processes."""
    net = raw_model.whisper
    net.eval()
    loss_sum, n_tokens = 0.0, 0
    # windows: how much of each cross-attention head's weight lies where its token is spoken (the
    # guide's Gaussian of guide_sigma, whether or not this run is guided): the moment the decoder
    # starts to listen is when some head's share rises well above that of attending evenly
    # everywhere (~0.09 in a 7 s window)
    heads = [b.cross_attn for b in net.decoder.blocks] if loader.specials else []
    aligned, n_timed = torch.zeros(len(heads), dims.n_text_head), 0
    for i in range(rank, len(val_batches), world_size):
        mel, tokens_in, targets, entries = val_batches[i]
        with autocast, record_inputs(heads) as seen:
            logits = net(mel.to(device), tokens_in.to(device))
            weights = torch.stack([attention_scores(a, *seen[a]).softmax(-1) for a in heads]) if heads else None
        loss_sum += F.cross_entropy(logits.float().flatten(0, 1), targets.to(device).flatten(), reduction="sum").item()
        n_tokens += int((targets != -100).sum())
        if heads:
            times = token_times(targets, entries, loader.specials, tokenizer.eot, token_bytes)
            timed = ~times.isnan()
            near = 1 - attention_far(weights, times).cpu()  # (layers, B, heads, T)
            aligned += near.permute(0, 1, 3, 2)[:, timed].sum(1)
            n_timed += int(timed.sum())
    loss_sum, n_tokens, n_timed, *aligned_sums = all_reduce([loss_sum, n_tokens, n_timed, *aligned.flatten().tolist()])
    result = {"val_loss": loss_sum / n_tokens}
    if heads and n_timed:
        aligned = torch.tensor(aligned_sums).view(len(heads), -1) / n_timed
        best = int(aligned.argmax())
        result["aligned"] = {"best": float(aligned.max()), "head": divmod(best, aligned.shape[1]),
                             "mean": float(aligned.mean()), "layers": aligned.mean(1).tolist()}
    if wer_mels:
        mine = list(range(rank, len(wer_mels), world_size))
        with autocast:
            texts = transcribe_windows(net, [wer_mels[i] for i in mine], batch_size, eval_sample_len)
        gathered = [list(zip(mine, texts))] * world_size
        if ddp:
            dist.all_gather_object(gathered, gathered[0])
        hyps = [text for _, text in sorted(pair for part in gathered for pair in part)]
        result["wer"] = word_error_rate(wer_refs, hyps)
        result["example"] = {"ref": wer_refs[0], "hyp": hyps[0]}
    net.train()
    return result


def save(improved: bool, extra: dict):
    """All processes call this: every rank's loader position and RNG state go into the checkpoint.
    best.pt is written before ckpt.pt, each atomically. Killed between the two, the run resumes from
    the ckpt.pt of the eval before and trains the same steps again, while best.pt already holds this
    eval's model and its val loss, which the resumed run compares against: the two always agree."""
    states = [{"loader": loader.state_dict(), "rng": {
        "cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device_type == "cuda" else None}}]
    if ddp:
        states *= world_size
        dist.all_gather_object(states, states[0])
    if master:
        if raw_model.ctc_head is not None:
            extra = {**extra, "ctc_head": {k: v.detach().cpu() for k, v in raw_model.ctc_head.state_dict().items()}}
        for path in [best_path, resume_path] if improved else [resume_path]:
            save_checkpoint(raw_model.whisper, path, optimizer=optimizer.state_dict(), iter_num=iter_num, config=config,
                            loader_states=[s["loader"] for s in states], rng_states=[s["rng"] for s in states], **extra)


def plot(log_path: str, png_path: str):
    """Redraw the loss and WER curves from the whole JSON-lines log."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(log_path) as f:
        rows = [json.loads(line) for line in f]
    train, evals = ([r for r in rows if r["kind"] == kind] for kind in ("train", "eval"))
    wer = [r for r in evals if r.get("wer") is not None]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot([r["iter"] for r in train], [r["loss"] for r in train], label="train", alpha=0.7)
    ax1.plot([r["iter"] for r in evals], [r["val_loss"] for r in evals], "o-", label="val")
    ax1.set(xlabel="step", ylabel="loss (nats/token)", yscale="log", title="loss")
    ax1.legend()
    ax2.plot([r["iter"] for r in wer], [100 * r["wer"] for r in wer], "o-", color="C2")
    ax2.set(xlabel="step", ylabel="WER (%)", title=f"greedy WER, {len(wer_mels)} val utterances", ylim=(0, None))
    fig.suptitle(out_dir)
    fig.tight_layout()
    with atomic_write(png_path) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


# -----------------------------------------------------------------------------------------------
# the log: a new run starts a new one; a resumed run keeps what came before its checkpoint
log_path = os.path.join(out_dir, "log.jsonl")
if master:
    for path in remove_stale_temps(out_dir):
        log(f"removed {path}, left by a run killed while writing it")
    kept = []
    if init_from == "resume" and os.path.exists(log_path):
        with open(log_path) as f:
            lines = f.read().splitlines()
        if lines and not lines[-1].endswith("}"):  # cut short by a kill
            lines.pop()
        kept = [line + "\n" for line in lines if json.loads(line)["iter"] <= iter_num]
    with atomic_write(log_path, "w") as f:
        f.writelines(kept)


def write_log(row: dict):
    if master:
        with open(log_path, "a") as f:
            f.write(json.dumps(row) + "\n")


def stop_if_diverged():
    """All processes stop together at a non-finite training loss, before anything trained on it is
    evaluated or saved over the last good checkpoint."""
    step = int(all_reduce([bad_step.item()], dist.ReduceOp.MAX)[0])
    if step:
        fail(f"step {step}: the training loss is not finite (nan or inf); stopped before saving anything trained on it", 1)


def profiler_for_run():
    """torch.profiler over steps profile_skip+1 .. profile_skip+profile_steps of this run, on the master."""
    if profile_steps <= 0 or not master:
        return None
    from torch.profiler import ProfilerActivity, profile, schedule

    def report(prof):
        sort = "self_device_time_total" if device_type == "cuda" else "self_cpu_time_total"
        log(f"profile of {profile_steps} step(s), by {sort}:\n" + prof.key_averages().table(sort_by=sort, row_limit=20))
        path = os.path.join(out_dir, "profile.json")
        prof.export_chrome_trace(temp_name(path))  # it takes a file name, not a file: renamed when complete
        os.replace(temp_name(path), path)
        log(f"trace: {path}")

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device_type == "cuda" else [])
    # the step before the recorded ones is a warm-up step (the profiler's own start-up is not measured)
    steps = schedule(wait=max(profile_skip - 1, 0), warmup=min(profile_skip, 1), active=profile_steps, repeat=1)
    return profile(activities=activities, schedule=steps, on_trace_ready=report)


# -----------------------------------------------------------------------------------------------
# training loop
profiler = profiler_for_run()
if profiler is not None:
    profiler.start()
start_iter, t_start, start_seconds, synced_seconds = iter_num, time.time(), train_seconds, train_seconds
t_log, window = time.time(), {"steps": 0, "tokens": 0, "seconds": 0.0, "flops": 0.0}
loss_sum_window = torch.zeros((), device=device)
ctc_sum_window = torch.zeros((), device=device)
guide_sum_window = torch.zeros((), device=device)
bad_step = torch.zeros((), dtype=torch.long, device=device)  # the first step with a non-finite loss, 0 if none
while True:
    lr = lr_at(iter_num, synced_seconds)
    for group in optimizer.param_groups:
        group["lr"] = lr

    is_last = iter_num >= max_iters or (max_minutes > 0 and synced_seconds >= 60 * max_minutes)
    # a checkpoint's step was evaluated before it was saved: a resumed run doesn't do it again
    if eval_only or ((iter_num % eval_interval == 0 or is_last)
                     and (iter_num > start_iter or (eval_at_start and init_from != "resume"))):
        stop_if_diverged()
        t_eval = time.time()
        result = evaluate()
        if not math.isfinite(result["val_loss"]):
            fail(f"step {iter_num}: the val loss is not finite (nan or inf); stopped before saving the model", 1)
        improved = result["val_loss"] < best_val_loss
        best_val_loss = min(best_val_loss, result["val_loss"])
        wer_text = f", WER {100 * result['wer']:.2f}%" if "wer" in result else ""
        aligned = result.get("aligned")
        aligned_text = (f", attention on the spoken audio {aligned['best']:.2f} (head {aligned['head'][0]}.{aligned['head'][1]}), "
                        f"{aligned['mean']:.2f} mean" if aligned else "")
        log(f"eval {iter_num}: val loss {result['val_loss']:.4f}{wer_text}{aligned_text} ({time.time() - t_eval:.1f}s, "
            f"{(time.time() - t_start) / 60:.1f} min so far)")
        if "example" in result:
            log(f"  ref: {result['example']['ref']}\n  hyp: {result['example']['hyp']}")
        write_log({"kind": "eval", "iter": iter_num, "val_loss": result["val_loss"], "wer": result.get("wer"),
                   **({"aligned": aligned} if aligned else {}),
                   "minutes": (time.time() - t_start) / 60})
        if eval_only:
            break
        if iter_num > start_iter:
            save(improved, {"best_val_loss": best_val_loss, "train_seconds": train_seconds, "timestamps": timestamps,
                            "val_loss": result["val_loss"], "wer": result.get("wer")})
        if master and plot_curves:
            plot(log_path, os.path.join(out_dir, "curves.png"))
        t_log += time.time() - t_eval  # eval time doesn't count against throughput
    if is_last:
        break

    # one optimizer step: fetch every micro-batch first so that the loss can be normalised by the
    # number of target tokens in the whole global batch (every token weighs the same, however the
    # batch is split into micro-steps and processes)
    t_step = time.time()
    batches = []
    for _ in range(gradient_accumulation_steps):
        mel, tokens_in, targets, rows = loader.next_batch()
        times = token_times(targets, rows, loader.specials, tokenizer.eot, token_bytes) if guide_weight > 0 else None
        batches.append((mel, tokens_in, targets, ctc_targets(rows, dims.n_audio_ctx) if ctc_weight > 0 else None, times))
        window["seconds"] += sum(e["duration"] for row in rows for e in row)
    n_tokens = sum(int((targets != -100).sum()) for _, _, targets, *_ in batches)
    n_chars = sum(len(ctc[0]) for *_, ctc, _ in batches if ctc is not None)
    n_timed = sum(int((~times.isnan()).sum()) for *_, times in batches if times is not None)
    # with the token count, the processes agree on the training time so far (they must stop together)
    n_tokens_global, n_chars_global, n_timed_global, synced_seconds = all_reduce([n_tokens, n_chars, n_timed,
                                                                                  train_seconds])
    synced_seconds /= world_size
    for micro_step, (mel, tokens_in, targets, ctc, times) in enumerate(batches):
        n_text = tokens_in.shape[1]  # the FLOPs count the text, not pad_text's padding
        tokens_in, targets = pad_text(tokens_in, targets)
        if device_type == "cuda":  # from pinned memory the copy doesn't wait for the GPU to finish the last step
            mel, tokens_in, targets = (t.pin_memory().to(device, non_blocking=True) for t in (mel, tokens_in, targets))
        else:
            mel, tokens_in, targets = mel.to(device), tokens_in.to(device), targets.to(device)
        if spec_augment:
            mel = mask_mel(mel, freq_masks, freq_mask_width, time_masks, time_mask_width)
        # DDP averages gradients over processes, hence the world_size; sync only on the last micro-step
        sync = micro_step == len(batches) - 1
        with model.no_sync() if ddp and not sync else nullcontext():
            with autocast:
                logits, ctc_logits, weights = model(mel, tokens_in)
            # Outside autocast, which would cast a CPU's bf16 logits to fp32 first: the CPU's fp32
            # log-softmax over the whole vocabulary is slow. The per-token losses are summed in fp32.
            loss_sum = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").float().sum()
            loss = loss_sum * world_size / n_tokens_global
            if ctc is not None:
                chars, n_chars_each, n_audio_each = ctc
                log_probs = ctc_logits.float().log_softmax(-1).transpose(0, 1)  # (T, B, classes), as ctc_loss wants
                ctc_sum = F.ctc_loss(log_probs, chars.to(device), n_audio_each.to(device), n_chars_each.to(device),
                                     reduction="sum", zero_infinity=True)
                loss = loss + ctc_weight * ctc_sum * world_size / n_chars_global
                ctc_sum_window += ctc_sum.detach() / n_chars_global
            if weights is not None and n_timed_global > 0:
                timed = ~times.isnan()
                far = attention_far(weights[:, :, :, : times.shape[1]], times).mean(dim=(0, 2))  # over layers, heads
                guide_sum = far[timed.to(device)].sum()
                loss = loss + guide_weight * guide_sum * world_size / n_timed_global
                guide_sum_window += guide_sum.detach() / n_timed_global
            loss.backward()
        loss_sum_window += loss_sum.detach() / n_tokens_global
        window["flops"] += mel.shape[0] * flops_per_utterance(dims, mel.shape[-1] // 2, n_text)
    window["tokens"] += n_tokens
    window["steps"] += 1
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip) if grad_clip > 0 else None
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    iter_num += 1
    # kept on the device, so that the host needn't wait for the step; read at the next log or eval
    bad_step = torch.where((bad_step == 0) & ~torch.isfinite(loss_sum_window + ctc_sum_window + guide_sum_window),
                           iter_num, bad_step)
    train_seconds += time.time() - t_step
    if profiler is not None:
        t_profiler = time.time()
        profiler.step()
        t_log += time.time() - t_profiler  # writing the report doesn't count against throughput

    if iter_num % log_interval == 0:
        stop_if_diverged()
        # one sync per log_interval: the summed loss of all processes, averaged over the window
        loss, ctc, guide, tokens, seconds = all_reduce([loss_sum_window.item(), ctc_sum_window.item(),
                                                        guide_sum_window.item(), window["tokens"], window["seconds"]])
        loss, ctc, guide, elapsed = (loss / window["steps"], ctc / window["steps"], guide / window["steps"],
                                     time.time() - t_log)
        mfu = window["flops"] / elapsed / peak_flops if peak_flops else None
        norm = grad_norm.item() if grad_norm is not None else float("nan")
        log(f"iter {iter_num}: loss {loss:.4f}{f', ctc {ctc:.4f}' if ctc_weight > 0 else ''}"
            f"{f', guide {guide:.4f}' if guide_weight > 0 else ''}, lr {lr:.2e}, "
            f"grad norm {norm:.2f}, {1000 * elapsed / window['steps']:.0f} ms/step, {tokens / elapsed:.0f} tok/s, "
            f"{seconds / elapsed:.1f} audio s/s, MFU {f'{100 * mfu:.1f}%' if mfu is not None else 'n/a'}")
        write_log({"kind": "train", "iter": iter_num, "loss": loss, **({"ctc": ctc} if ctc_weight > 0 else {}),
                   **({"guide": guide} if guide_weight > 0 else {}),
                   "lr": lr, "grad_norm": norm, "tokens_per_s": tokens / elapsed, "audio_s_per_s": seconds / elapsed,
                   "mfu": mfu, "minutes": (time.time() - t_start) / 60})
        t_log, window = time.time(), {"steps": 0, "tokens": 0, "seconds": 0.0, "flops": 0.0}
        loss_sum_window.zero_()
        ctc_sum_window.zero_()
        guide_sum_window.zero_()

if profiler is not None:
    if iter_num - start_iter <= profile_skip:
        log(f"profile: none recorded, the run ended before step {profile_skip + 1}")
    profiler.stop()  # a run that ends within the recorded steps reports those it had
log(f"done: {iter_num - start_iter} steps, {(train_seconds - start_seconds) / 60:.1f} min of training steps, "
    f"{(time.time() - t_start) / 60:.1f} min in all; checkpoint {resume_path}")
if ddp:
    dist.barrier()  # leave together: a gloo rank that exits first can make another abort at exit
    dist.destroy_process_group()
    # even so, a rank can abort as the interpreter shuts down, after the run and its checkpoint are
    # complete ("terminate called without an active exception": a C++ thread still joinable when
    # its owner is destroyed). Nothing is left to do or to write (files are closed after every
    # write), so the process leaves without running those destructors.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
