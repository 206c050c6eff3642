"""
Figures that explain Whisper, each computed from a real model on real audio, offline.

    python inquiry.py --out docs/inquiry                        # tiny.en on ../shared/data/jfk.flac
    python inquiry.py --model base.en --audio talk.flac --log out/log.jsonl --out /tmp/inquiry
    python inquiry.py --log out-a/log.jsonl --log out-b/log.jsonl --out /tmp/inquiry   # two runs compared

Writes PNGs and DIR/README.md with one paragraph per figure, numbers filled in from the run:
what the network sees (waveform, log-mel, the 30 s window), what its parts cost (parameters per
component of every official size, from the dims alone), how it knows where and when (positional
embeddings), where it looks while it writes each word (alignment heads, DTW, word boundaries from
timing.py), how focused each head is (attention entropy), how its vocabulary is laid out, and,
given train.py logs, how training went and when the decoder started to listen.
"""
import argparse
import json
import math
import os
import sys
import time
from dataclasses import astuple
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from audio import (  # noqa: E402
    FRAMES_PER_SECOND, SAMPLE_RATE, TOKENS_PER_SECOND, load_audio, log_mel_spectrogram, pad_or_trim, plot_utterance,
    window_frames, window_samples,
)
from decoding import decode  # noqa: E402
from model import ModelDimensions, Whisper  # noqa: E402
from timing import align, attention_scores, record_inputs  # noqa: E402
from tokenizer import get_tokenizer  # noqa: E402

DEFAULT_AUDIO = Path(__file__).resolve().parent.parent / "shared" / "data" / "jfk.flac"
SYNTHETIC_SENTENCE = "Whisper listens to thirty seconds of audio and writes down what it hears."
DPI = 100

# Official sizes: (width, encoder layers = decoder layers, heads = width / 64). Every size takes 80
# mels and 1500 audio / 448 text positions; .en vocabularies have 51864 tokens, multilingual 51865;
# large-v3 has 128 mels and 51866 tokens, and turbo is large-v3 with 4 decoder layers.
_SIZES = {"tiny": (384, 4), "base": (512, 6), "small": (768, 12), "medium": (1024, 24), "large": (1280, 32)}


def official_dims(name: str) -> ModelDimensions:
    size = name.split(".")[0].split("-")[0]
    width, layers = _SIZES[size]
    v3 = name.startswith("large-v3")
    return ModelDimensions(
        n_mels=128 if v3 else 80, n_audio_ctx=1500, n_audio_state=width, n_audio_head=width // 64,
        n_audio_layer=layers, n_vocab=51866 if v3 else 51864 if name.endswith(".en") else 51865,
        n_text_ctx=448, n_text_state=width, n_text_head=width // 64,
        n_text_layer=4 if name == "large-v3-turbo" else layers,
    )


OFFICIAL = ["tiny.en", "tiny", "base.en", "base", "small.en", "small", "medium.en", "medium",
            "large-v1", "large-v2", "large-v3", "large-v3-turbo"]
COMPONENTS = ["conv stem", "encoder self-attention", "encoder MLP", "decoder self-attention",
              "decoder cross-attention", "decoder MLP", "token embedding", "decoder positions", "layer norms"]


def save(fig, png: str) -> str:
    """Write the figure, then requantise it to 256 colours: a fifth to a half of the bytes with no
    visible loss, so that the PNGs stay small enough to commit."""
    fig.savefig(png, dpi=DPI)
    plt.close(fig)
    return shrink(png)


def shrink(png: str) -> str:
    from PIL import Image

    Image.open(png).convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(png, optimize=True)
    return png


def component(name: str) -> str:
    """Which column of the table a parameter (by its state_dict name) belongs to."""
    parts = name.split(".")
    side, part = parts[0], parts[1]
    if part.startswith("conv"):
        return "conv stem"
    if part == "token_embedding":
        return "token embedding"
    if part == "positional_embedding":
        return "decoder positions"  # the encoder's is a fixed buffer, not a parameter
    if part in ("ln_post", "ln") or (part == "blocks" and parts[3].endswith("_ln")):
        return "layer norms"
    if part == "blocks":
        kind = {"attn": "self-attention", "cross_attn": "cross-attention", "mlp": "MLP"}[parts[3]]
        return f"{side} {kind}"
    raise ValueError(f"parameter {name} has no column in the table")


def parameter_table(dims: ModelDimensions) -> dict:
    """{component: parameter count} for a model of these dims, built on the meta device: the shapes
    exist, the memory doesn't, so even large-v3 costs nothing to count."""
    return dict(_parameter_table(astuple(dims)))


@lru_cache(maxsize=None)  # a page asks for each size more than once; tables are tuples so no caller can edit one
def _parameter_table(dims: tuple) -> tuple:
    with torch.device("meta"):
        model = Whisper(ModelDimensions(*dims))
    counts = dict.fromkeys(COMPONENTS, 0)
    for name, p in model.named_parameters():
        counts[component(name)] += p.numel()
    return tuple(counts.items())


# ------------------------------------------------------------------------------------------------
# figures; each returns the numbers its paragraph quotes


def figure_architecture(png: str) -> dict:
    tables = {name: parameter_table(official_dims(name)) for name in OFFICIAL}
    fig, (ax_table, ax_bars) = plt.subplots(2, 1, figsize=(13, 8.2), height_ratios=[1.1, 1], layout="constrained")
    ax_table.axis("off")
    header = ["model"] + [c.replace(" ", "\n", 1) for c in COMPONENTS] + ["total"]
    cells = [[name] + [f"{t[c] / 1e6:.2f}" for c in COMPONENTS] + [f"{sum(t.values()) / 1e6:.1f}"]
             for name, t in tables.items()]
    table = ax_table.table(cellText=cells, colLabels=header, loc="center", cellLoc="right")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.35)
    for (row, _), cell in table.get_celld().items():
        if row == 0:
            cell.set_height(cell.get_height() * 1.8)
    fig.suptitle("parameters per component, millions (counted from the dims, on the meta device)")
    left = np.zeros(len(tables))
    for i, c in enumerate(COMPONENTS):
        share = np.array([100 * t[c] / sum(t.values()) for t in tables.values()])
        ax_bars.barh(list(tables), share, left=left, label=c, color=plt.cm.tab10(i))
        left += share
    ax_bars.invert_yaxis()
    ax_bars.set(xlabel="share of parameters (%)", xlim=(0, 100))
    ax_bars.legend(ncol=5, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    save(fig, png)
    return {"tables": tables}


def cosine_similarity(embedding: torch.Tensor) -> np.ndarray:
    e = F.normalize(embedding.detach().float().cpu(), dim=-1)
    return (e @ e.T).numpy()


def figure_positions(model: Whisper, png: str) -> dict:
    enc = cosine_similarity(model.encoder.positional_embedding)
    dec = cosine_similarity(model.decoder.positional_embedding)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.3), layout="constrained")
    for ax, sim, title, unit in ((axes[0], enc, "encoder: fixed sinusoids", "audio position (20 ms each)"),
                                 (axes[1], dec, "decoder: learned", "text position (token index)")):
        step = max(1, len(sim) // 500)  # ~400 pixels across: every position would only cost drawing time
        image = ax.imshow(sim[::step, ::step], cmap="RdBu_r", vmin=-1, vmax=1, extent=[0, len(sim), len(sim), 0])
        ax.set(title=f"{title}, {sim.shape[0]} positions", xlabel=unit, ylabel="position")
    fig.colorbar(image, ax=axes, label="cosine similarity", shrink=0.9)
    save(fig, png)
    at = lambda sim, d: float(np.diagonal(sim, d).mean()) if d < len(sim) else float("nan")  # noqa: E731
    half = len(dec) // 2  # the previous-text prompt may fill at most half the decoder's context
    return {"enc_1": at(enc, 1), "enc_50": at(enc, 50), "enc_min": float(enc.min()), "n_enc": len(enc),
            "dec_1": at(dec, 1), "dec_50": at(dec, 50), "dec_100": at(dec, 100), "dec_min": float(dec.min()),
            "n_dec": len(dec), "half": half, "dec_half": at(dec, half)}


def token_label(tokenizer, token: int) -> str:
    return "<eot>" if token == tokenizer.eot else tokenizer.decode_with_timestamps([token]).replace(" ", "·")


def figure_alignment(mel: torch.Tensor, alignment, tokenizer, png: str, max_heads: int = 8) -> dict:
    """mel: the content frames only. Top: the mel with the words; middle: the DTW matrix and path;
    bottom: each alignment head's attention."""
    seconds = mel.shape[-1] / FRAMES_PER_SECOND
    n_rows = alignment.matrix.shape[0]  # one row per predicted token: text tokens, then <eot>
    predicted = alignment.tokens[len(alignment.tokens) - n_rows:]
    labels = [token_label(tokenizer, t) for t in predicted]
    heads = alignment.heads[:max_heads]
    n_cols = min(4, len(heads))
    head_rows = math.ceil(len(heads) / n_cols)
    fig = plt.figure(figsize=(12, 3.2 + 0.16 * n_rows + 1.7 * head_rows), layout="constrained")
    grid = fig.add_gridspec(2 + head_rows, n_cols, height_ratios=[1.3, 0.1 * n_rows + 0.6] + [1.4] * head_rows)
    ax_mel = fig.add_subplot(grid[0, :])
    ax_dtw = fig.add_subplot(grid[1, :], sharex=ax_mel)
    ax_mel.imshow(mel.cpu().numpy(), origin="lower", aspect="auto", cmap="magma", extent=[0, seconds, 0, mel.shape[0]])
    for w in alignment.words:
        ax_mel.axvline(w.start, color="white", linewidth=0.8)
        ax_mel.text((w.start + w.end) / 2, mel.shape[0] + 2, w.word.strip(), rotation=45, fontsize=8,
                    rotation_mode="anchor", ha="left", va="bottom")
    if alignment.words:
        ax_mel.axvline(alignment.words[-1].end, color="white", linewidth=0.8)
    ax_mel.set(ylabel="mel bin", xlim=(0, seconds))
    n_audio = alignment.matrix.shape[1]
    ax_dtw.imshow(alignment.matrix, aspect="auto", cmap="viridis", interpolation="nearest",
                  extent=[0, n_audio / TOKENS_PER_SECOND, n_rows - 0.5, -0.5])
    ax_dtw.plot((alignment.time_indices + 0.5) / TOKENS_PER_SECOND, alignment.text_indices, color="red", linewidth=1,
                label="DTW path")
    for w in alignment.words:
        ax_dtw.axvline(w.start, color="white", linewidth=0.5, linestyle="--")
    ax_dtw.set_yticks(range(n_rows), labels, fontsize=7)
    ax_dtw.set(xlabel="seconds", ylabel="token being written",
               title=f"mean of {len(alignment.heads)} alignment heads (standardised per frame, median-filtered)")
    ax_dtw.legend(loc="upper right", fontsize=8)
    first = len(alignment.tokens) - n_rows - 1  # the weights' rows include the start tokens; show the same rows
    for k, (layer, head) in enumerate(heads):
        ax = fig.add_subplot(grid[2 + k // n_cols, k % n_cols])
        # a power norm lifts the weaker weights into view: each row's peak is sharp and ~1 frame wide
        ax.imshow(alignment.weights[k, first : first + n_rows].numpy(), aspect="auto", cmap="Greys",
                  norm=matplotlib.colors.PowerNorm(0.4), interpolation="antialiased",
                  extent=[0, n_audio / TOKENS_PER_SECOND, n_rows - 0.5, -0.5])
        ax.set_title(f"layer {layer}, head {head}", fontsize=9)
        ax.set(xticks=[], yticks=[])  # the middle panel's axes; ticks are most of matplotlib's drawing time
    fig.suptitle("where the decoder looks while it writes each token")
    save(fig, png)
    return {"n_heads": len(alignment.heads), "n_shown": len(heads)}


def entropy_bits(scores: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(scores) along the last dim, in bits."""
    logp = scores.float().log_softmax(dim=-1)
    return -(logp.exp() * logp).sum(dim=-1) / math.log(2)


@torch.no_grad()
def attention_entropy(model: Whisper, encoder_inputs: dict, features: torch.Tensor, decoder_in: list, n_audio: int,
                      n_start: int):
    """Entropy in bits of encoder self-attention and decoder cross-attention, each (layers, heads),
    averaged over the audio positions that hold speech and over the positions that write text; and
    the share of each cross-attention head's weight that lands on speech rather than padding. All
    over the whole window, padding included, as the model attends.

    encoder_inputs: what record_inputs saw the encoder's attention modules called with."""
    cross_attn = [b.cross_attn for b in model.decoder.blocks]
    with record_inputs(cross_attn) as seen:
        model.decoder(torch.tensor([decoder_in], device=model.device), features[None])
    encoder = [entropy_bits(attention_scores(b.attn, *encoder_inputs[b.attn])[0, :, :n_audio]).mean(-1)
               for b in model.encoder.blocks]
    cross, on_speech = [], []
    for m in cross_attn:
        scores = attention_scores(m, *seen[m])[0, :, n_start - 1 : -1]  # the positions that predict text
        cross.append(entropy_bits(scores).mean(-1))
        on_speech.append(scores.softmax(dim=-1)[..., :n_audio].sum(-1).mean(-1))
    return tuple(torch.stack(x).cpu().numpy() for x in (encoder, cross, on_speech))


def figure_entropy(encoder: np.ndarray, cross: np.ndarray, on_speech: np.ndarray, alignment_heads: list, n_ctx: int,
                   png: str) -> dict:
    fig, axes = plt.subplots(1, 2, figsize=(12, 1.6 + 0.45 * max(len(encoder), len(cross))), layout="constrained")
    vmax = math.log2(n_ctx)
    for ax, values, title in ((axes[0], encoder, "encoder self-attention"), (axes[1], cross, "decoder cross-attention")):
        image = ax.imshow(values, cmap="viridis_r", vmin=0, vmax=vmax, aspect="auto")
        ax.set(title=title, xlabel="head", ylabel="layer", xticks=range(values.shape[1]), yticks=range(values.shape[0]))
        if values.size <= 200:
            for (layer, head), v in np.ndenumerate(values):
                ax.text(head, layer, f"{v:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if v < vmax / 2 else "black")
    for layer, head in alignment_heads:
        axes[1].add_patch(plt.Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    fig.colorbar(image, ax=axes, label=f"entropy (bits; uniform over {n_ctx} = {vmax:.2f})")
    fig.suptitle("how spread out each head's attention is (red: alignment heads)")
    save(fig, png)
    aligned = np.zeros(cross.shape, dtype=bool)
    for layer, head in alignment_heads:
        aligned[layer, head] = True
    mean = lambda x, mask: float(x[mask].mean()) if mask.any() else float("nan")  # noqa: E731
    return {"enc_min": float(encoder.min()), "enc_max": float(encoder.max()), "cross_min": float(cross.min()),
            "cross_max": float(cross.max()), "uniform": vmax, "n_ctx": n_ctx, "n_align": int(aligned.sum()),
            "align_h": mean(cross, aligned), "other_h": mean(cross, ~aligned),
            "align_speech": mean(on_speech, aligned), "other_speech": mean(on_speech, ~aligned),
            "speech_min": float(on_speech.min()), "speech_max": float(on_speech.max())}


def vocabulary_layout(tokenizer) -> list:
    """[(kind, first id, last id)] of the vocabulary, in id order."""
    t = tokenizer
    return [
        ("text (BPE)", 0, t.eot - 1), ("<|endoftext|>", t.eot, t.eot), ("<|startoftranscript|>", t.sot, t.sot),
        ("languages", t.sot + 1, t.sot + t.num_languages), ("translate, transcribe", t.translate, t.transcribe),
        ("startoflm, startofprev", t.sot_lm, t.sot_prev), ("<|nospeech|>", t.no_speech, t.no_speech),
        ("<|notimestamps|>", t.no_timestamps, t.no_timestamps),
        ("timestamps <|0.00|>..<|30.00|>", t.timestamp_begin, t.encoding.n_vocab - 1),
    ]


def figure_vocabulary(png: str) -> dict:
    vocabularies = {".en": get_tokenizer(False)}
    try:  # the multilingual ranks are a local file where openai-whisper is installed
        vocabularies["multilingual"] = get_tokenizer(True)
        vocabularies["large-v3"] = get_tokenizer(True, 100)
    except Exception as e:  # offline without the file: show what we have
        print(f"note: multilingual vocabulary unavailable ({str(e).splitlines()[0]})", file=sys.stderr)
    layouts = {name: vocabulary_layout(t) for name, t in vocabularies.items()}
    # the specials are a sliver of the whole: two zooms, around <|endoftext|> and after the languages
    eot = [spans[1][1] for spans in layouts.values()]
    tasks = [spans[4][1] for spans in layouts.values()]
    zooms = [(min(eot) - 2.5, max(eot) + 4.5), (min(tasks) - 2.5, max(tasks) + 9.5)]
    fig = plt.figure(figsize=(11, 2.2 + 1.3 * len(layouts)), layout="constrained")
    grid = fig.add_gridspec(2, 2)
    ax_all = fig.add_subplot(grid[0, :])
    ax_zooms = [fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])]
    for row, spans in enumerate(layouts.values()):
        for k, (kind, first, last) in enumerate(spans):
            for ax in [ax_all] + ax_zooms:
                ax.barh(row, last - first + 1, left=first - 0.5, height=0.7, color=plt.cm.tab10(k), edgecolor="black",
                        linewidth=0.3, label=kind if row == 0 and ax is ax_all else None)
            for ax, (lo, hi) in zip(ax_zooms, zooms):  # label the ids in view: single ones, and where spans end
                for i in sorted({first, last} if last - first > 1 else range(first, last + 1)):
                    if not lo < i < hi:
                        continue
                    ax.text(i, row, str(i), ha="center", va="center", fontsize=7, rotation=90)
    n_vocab = max(spans[-1][2] + 1 for spans in layouts.values())
    ax_all.set(title="token ids: the whole vocabulary", xlim=(0, n_vocab))
    ax_all.legend(ncol=5, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    ax_zooms[0].set(title="zoom: end of the text, start of the specials", xlabel="token id", xlim=zooms[0])
    ax_zooms[1].set(title="zoom: after the languages", xlabel="token id", xlim=zooms[1])
    for ax in [ax_all] + ax_zooms:
        ax.set_yticks(range(len(layouts)), list(layouts))
        ax.invert_yaxis()
    save(fig, png)
    return {"layouts": layouts}


def read_log(path: str) -> list:
    """The JSON-lines log train.py writes ({"kind": "train"|"eval", "iter", "loss", "lr", ...}).
    Tolerant: lines that aren't JSON objects are skipped, any key may be missing."""
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def figure_training(runs: list, png: str) -> dict:
    """Curves of one or more train.py logs, runs = [(label, rows)], each run one colour in every
    panel: loss (train solid, val dashed), WER, attention on the spoken audio (windowed runs: best
    head solid, mean of the heads dotted) and learning rate. Returns the last values of each run."""
    number = lambda v: isinstance(v, (int, float)) and math.isfinite(v)  # noqa: E731

    def series(rows, key):  # (step, value) wherever the value is a number; the line number when there's no step
        points = [(r["iter"] if number(r.get("iter")) else i, r[key]) for i, r in enumerate(rows) if number(r.get(key))]
        return np.array(points, dtype=float).reshape(-1, 2)

    keys = ("loss", "val_loss", "wer", "aligned_best", "aligned_mean", "lr")
    data = []
    for _, rows in runs:
        for r in rows:  # train.py's windowed runs: how much cross-attention lies where each token is spoken
            aligned = r.get("aligned")
            if isinstance(aligned, dict):
                r["aligned_best"], r["aligned_mean"] = aligned.get("best"), aligned.get("mean")
        data.append({key: series(rows, key) for key in keys})
    panels = [p for p in (("loss", "val_loss"), ("wer",), ("aligned_best", "aligned_mean"), ("lr",))
              if any(len(d[k]) for d in data for k in p)]
    if not panels:
        return {"runs": [{"label": label, "n_rows": len(rows)} for label, rows in runs], "panels": 0}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), layout="constrained", squeeze=False)
    styles = {"val_loss": "--", "aligned_mean": ":"}
    ylabels = {"loss": "loss (nats/token; val dashed)", "wer": "WER (%)",
               "aligned_best": "attention on the spoken audio\n(best head; mean dotted)", "lr": "learning rate"}
    for ax, panel in zip(axes[0], panels):
        for colour, ((label, _), d) in enumerate(zip(runs, data)):
            for key in panel:
                if len(d[key]):
                    x, y = d[key].T
                    y = 100 * y if key == "wer" else y
                    ax.plot(x, y, styles.get(key, "-"), color=f"C{colour}", marker="o" if len(x) < 30 else None,
                            markersize=3, label=label if key == panel[0] else None)
        ax.set(xlabel="step", ylabel=ylabels[panel[0]])
        if panel[0] == "aligned_best":
            ax.set_ylim(0, 1)
        if panel[0] == "wer":
            ax.set_ylim(0, min(ax.get_ylim()[1], 300))  # a looping run's 1000% would flatten the rest
    axes[0][0].legend()
    fig.suptitle(", ".join(label for label, _ in runs))
    save(fig, png)

    def last(d, key):
        return float(d[key][-1, 1]) if len(d[key]) else None

    return {"panels": len(panels), "runs": [
        {"label": label, "n_rows": len(rows), "last_step": max(int(v[-1, 0]) for v in d.values() if len(v)),
         "loss": last(d, "loss"), "val_loss": last(d, "val_loss"), "wer": last(d, "wer"),
         "aligned": last(d, "aligned_best"), "lr_max": float(d["lr"][:, 1].max()) if len(d["lr"]) else None}
        for (label, rows), d in zip(runs, data) if any(len(v) for v in d.values())]}


# ------------------------------------------------------------------------------------------------
# the run and its page


def synthetic_speech(text: str = SYNTHETIC_SENTENCE) -> np.ndarray:
    """espeak-ng speech at 16 kHz, for when no recording is at hand."""
    import soxr

    from tts import ESpeak

    engine = ESpeak()
    audio = engine.synth(text, "en-us").astype(np.float32) / 32768.0
    return soxr.resample(audio, engine.sample_rate, SAMPLE_RATE).astype(np.float32)


def run(model: Whisper, audio: np.ndarray, out_dir: str, model_name: str = "model", audio_name: str = "audio",
        log_paths: list = (), audio_note: str = "") -> dict:
    """Write every figure and README.md into out_dir; returns the numbers behind them, with the
    alignment whose words (what timing.word_timings returns for this audio) the figure shows."""
    os.makedirs(out_dir, exist_ok=True)
    png = lambda name: os.path.join(out_dir, f"{name}.png")  # noqa: E731
    dims, figures, seconds_spent = model.dims, {}, {}
    facts = {"figures": figures, "seconds_spent": seconds_spent}
    clock = [time.time()]

    def lap(stage):
        seconds_spent[stage] = round(time.time() - clock[0], 2)
        clock[0] = time.time()

    window, n_window_samples = window_frames(dims.n_audio_ctx), window_samples(dims.n_audio_ctx)
    if len(audio) > n_window_samples:
        audio_note += (f" The audio is {len(audio) / SAMPLE_RATE:.2f} s long; only its first "
                       f"{window / FRAMES_PER_SECOND:.0f} s (one window of this model) are used.")
        audio = audio[:n_window_samples]
    seconds = len(audio) / SAMPLE_RATE
    n_frames = len(audio) * FRAMES_PER_SECOND // SAMPLE_RATE
    # as transcribe.py does: the mel of the audio followed by zeros, cut to the frames with audio,
    # then zero-padded to the window
    mel = log_mel_spectrogram(audio, dims.n_mels, padding=n_window_samples)[:, :n_frames]
    window_mel = pad_or_trim(mel, window)
    figures["utterance"] = plot_utterance(audio, png("utterance"), f"{audio_name}: {seconds:.2f} s", dims.n_mels,
                                          window_seconds=window / FRAMES_PER_SECOND)
    shrink(figures["utterance"])
    facts["utterance"] = {"seconds": seconds, "n_frames": n_frames, "window": window,
                          "mel_min": float(mel.min()), "mel_max": float(mel.max())}
    lap("utterance")

    # one encoder pass, recording what each self-attention layer sees (for the entropy figure);
    # decoding and alignment reuse its features
    with torch.no_grad(), record_inputs([b.attn for b in model.encoder.blocks]) as encoder_inputs:
        features = model.embed_audio(window_mel[None].to(model.device, model.dtype))[0]
    result = decode(model, features)
    if model.is_multilingual:
        tokenizer = get_tokenizer(True, model.num_languages, result.language)
    else:
        tokenizer = get_tokenizer(False)
    lap("decode")
    alignment = align(model, features, result.tokens, tokenizer, num_frames=n_frames)
    facts.update(transcript=result.text, tokens=result.tokens, alignment=alignment, words=alignment.words)
    if alignment.words:
        figures["alignment"] = png("alignment")
        facts["alignment_fig"] = figure_alignment(mel, alignment, tokenizer, png("alignment"))
    lap("alignment")

    n_start = len(tokenizer.sot_sequence) + 1  # sot sequence and <|notimestamps|>
    entropy = attention_entropy(model, encoder_inputs, features, alignment.tokens, max(n_frames // 2, 1), n_start)
    figures["entropy"] = png("entropy")
    facts["entropy"] = figure_entropy(*entropy, alignment.heads, dims.n_audio_ctx, png("entropy"))
    lap("entropy")

    figures["positions"] = png("positions")
    facts["positions"] = figure_positions(model, png("positions"))
    figures["architecture"] = png("architecture")
    facts["architecture"] = figure_architecture(png("architecture"))
    facts["model_params"] = sum(p.numel() for p in model.parameters())
    facts["model_table"] = parameter_table(dims)
    figures["vocabulary"] = png("vocabulary")
    facts["vocabulary"] = figure_vocabulary(png("vocabulary"))
    if log_paths:
        facts["training"] = figure_training([(run_label(path), read_log(path)) for path in log_paths], png("training"))
        if facts["training"]["panels"]:
            figures["training"] = png("training")
    lap("other figures")

    facts["readme"] = os.path.join(out_dir, "README.md")
    with open(facts["readme"], "w") as f:
        f.write(readme(facts, model_name, audio_name, audio_note, log_paths))
    return facts


def millions(n: int) -> str:
    return f"{n / 1e6:.1f}M"


def compare(a: float, b: float, more: str, less: str, same: str = "about the same as") -> str:
    """Words for how a relates to b, so that the page says what this run measured."""
    return more if a > b * 1.05 else less if a < b / 1.05 else same


def run_label(log_path: str) -> str:
    """A run's name in the legend: its out_dir (out-synth/log.jsonl -> out-synth)."""
    return os.path.basename(os.path.dirname(os.path.abspath(log_path))) or log_path


def readme(facts: dict, model_name: str, audio_name: str, audio_note: str, log_paths: list) -> str:
    u, e, p = facts["utterance"], facts["entropy"], facts["positions"]
    tables = facts["architecture"]["tables"]
    tiny, large, turbo = tables["tiny.en"], tables["large-v3"], tables["large-v3-turbo"]
    total = lambda t: sum(t.values())  # noqa: E731
    enc = lambda t: t["conv stem"] + t["encoder self-attention"] + t["encoder MLP"]  # noqa: E731
    dec = lambda t: t["decoder self-attention"] + t["decoder cross-attention"] + t["decoder MLP"]  # noqa: E731
    words, out = facts["words"], []
    out.append(f"# Inquiry: {model_name} on {audio_name}\n\n"
               f"Written by `python inquiry.py` from the model's weights and the audio; every number on this page "
               f"comes from that run. {audio_note.strip()}".strip() + "\n\nTranscript (greedy): "
               + (f"*{facts['transcript']}*\n" if facts["transcript"] else "none: the model wrote no text, so there "
                  "are no words to align and no alignment figure.\n"))

    out.append("## What the model hears\n\n![waveform and log-mel](utterance.png)\n")
    out.append(
        f"The waveform ({u['seconds']:.2f} s at 16 kHz) and its log-mel spectrogram as the encoder gets it: "
        f"{u['n_frames']} frames of 10 ms with audio, "
        + (f"zero-padded to a fixed window of {u['window']} frames ({u['window'] / 100:.0f} s; the padding is "
           f"shaded)" if u["n_frames"] < u["window"] else f"the whole window of {u['window']} frames")
        + ". The encoder always processes the whole window, so a short clip costs as much as a long one. "
        f"The values span {u['mel_min']:.2f} to {u['mel_max']:.2f}: "
        f"Whisper clamps each utterance to 8 log10 units below its loudest bin and maps that range with "
        f"(x + 4) / 4, so quiet and loud recordings look alike to the model.\n")

    out.append("## What its parts cost\n\n![parameters per component](architecture.png)\n")
    out.append(
        f"Parameters per component of every official size, counted from the dimensions alone (each model is built "
        f"on PyTorch's meta device: shapes without memory). In tiny.en ({millions(total(tiny))}) the token "
        f"embedding is {millions(tiny['token embedding'])}, {100 * tiny['token embedding'] / total(tiny):.0f}% of "
        f"the model and more than the whole encoder ({millions(enc(tiny))}); it doubles as the output layer "
        f"(tied weights). In large-v3 ({millions(total(large))}) the embedding is "
        f"{100 * large['token embedding'] / total(large):.0f}% and the blocks dominate: each MLP (d → 4d → d) holds "
        f"twice the weights of an attention layer, and a decoder block, with its cross-attention, costs 1.5× an "
        f"encoder block. large-v3-turbo keeps 4 of the 32 decoder blocks: {millions(dec(large))} of decoder-block "
        f"weights become {millions(dec(turbo))}, {millions(total(turbo))} in all. The encoder's positional "
        f"embedding is a fixed sinusoid, a buffer rather than a parameter. The model loaded here has "
        f"{facts['model_params']:,} parameters; the table computed from its dims sums to "
        f"{total(facts['model_table']):,}.\n")
    out.append("| model | " + " | ".join(COMPONENTS) + " | total |\n|---" + "|---:" * (len(COMPONENTS) + 1) + "|\n"
               + "".join(f"| {name} | " + " | ".join(f"{t[c] / 1e6:.2f}" for c in COMPONENTS)
                         + f" | {total(t):,} |\n" for name, t in tables.items())
               + "\n(millions of parameters; the total exactly)\n")

    out.append("## How it knows where it is\n\n![positional embeddings](positions.png)\n")
    out.append(
        f"Cosine similarity between the positional embeddings of every pair of positions. The encoder's "
        f"{p['n_enc']} positions are fixed sinusoids: neighbours are {p['enc_1']:.2f} similar, positions 50 apart "
        f"(1 s) {p['enc_50']:.2f}, and no pair is below {p['enc_min']:.2f}: a smooth band that only encodes distance. "
        f"The decoder's {p['n_dec']} positions are learned: neighbours are {p['dec_1']:.2f} similar, 50 apart "
        f"{p['dec_50']:.2f}, 100 apart {p['dec_100']:.2f}, down to {p['dec_min']:.2f} for some pairs. Positions "
        f"exactly {p['half']} apart (half the context, the most a previous-text prompt may fill) are "
        f"{p['dec_half']:.2f} similar, {compare(p['dec_half'], p['dec_100'], 'more', 'less')} than positions 100 "
        f"apart{': look for a second diagonal' if p['dec_half'] > 1.05 * p['dec_100'] else ''}.\n")

    if "alignment" in facts["figures"]:
        a = facts["alignment_fig"]
        first = ", ".join(f"“{w.word.strip()}” {w.start:.2f}–{w.end:.2f} s" for w in words[:3])
        longest = max(words, key=lambda w: w.end - w.start)
        median = float(np.median([w.end - w.start for w in words]))
        pause = (" DTW gives every frame to some word, so a pause ends up inside the word next to it."
                 if longest.end - longest.start > 2.5 * median else "")
        shown = f" (the first {a['n_shown']})" if a["n_shown"] < a["n_heads"] else ""
        out.append("## Where it looks while it writes\n\n![cross-attention and DTW](alignment.png)\n")
        out.append(
            f"Bottom: the cross-attention of the model's {a['n_heads']} alignment heads{shown} while it reads its "
            f"own transcript back (rows: the token being written; columns: 20 ms audio positions); each head looks "
            f"at a narrow part of the audio that moves on with the text. Middle: the heads standardised per frame, "
            f"median-filtered and averaged, a diagonal band; dynamic time warping finds the cheapest monotonic path "
            f"through it (red), and where the path reaches a word's first token the word starts (lines on the mel, "
            f"top). {len(words)} words: {first}, …; the median lasts {median:.2f} s, the longest is "
            f"“{longest.word.strip()}” ({longest.end - longest.start:.2f} s).{pause} These are exactly the "
            f"times `timing.word_timings` returns, which match openai-whisper's word timestamps on the same weights "
            f"(tests/test_inquiry.py).\n")

    out.append("## How focused each head is\n\n![attention entropy](entropy.png)\n")
    out.append(
        f"Entropy of each head's attention in bits, averaged over the audio positions with speech (encoder) and "
        f"over the tokens written (decoder cross-attention); attending uniformly over all {e['n_ctx']} "
        f"positions would be {e['uniform']:.2f} bits. Encoder heads range from {e['enc_min']:.1f} to "
        f"{e['enc_max']:.1f} bits, from heads that look at a few neighbouring frames to heads that gather the whole "
        f"window. Cross-attention ranges from {e['cross_min']:.1f} to {e['cross_max']:.1f} bits. The "
        f"{e['n_align']} alignment heads (red) average {e['align_h']:.1f} bits against {e['other_h']:.1f} for the "
        f"other heads, and put {100 * e['align_speech']:.0f}% of their weight on frames with speech against "
        f"{100 * e['other_speech']:.0f}% (the rest goes to the padding; the range over all heads is "
        f"{100 * e['speech_min']:.0f}–{100 * e['speech_max']:.0f}%). What singles out an alignment head is "
        f"{'not a low entropy but' if e['align_h'] >= e['other_h'] - 0.3 else 'a lower entropy and above all'} "
        f"that its peak moves along the audio with the text.\n")

    spans = {kind: (a, b) for kind, a, b in facts["vocabulary"]["layouts"][".en"]}
    ts = spans["timestamps <|0.00|>..<|30.00|>"]
    multi = ""
    if "multilingual" in facts["vocabulary"]["layouts"]:
        m = {kind: (a, b) for kind, a, b in facts["vocabulary"]["layouts"]["multilingual"]}
        multi = (f" The multilingual vocabulary has its own BPE with one more text token, so every special id shifts "
                 f"by one (`<|endoftext|>` {m['<|endoftext|>'][0]}); large-v3 adds a 100th language (Cantonese), "
                 f"which shifts the rest once more.")
    out.append("## The vocabulary\n\n![vocabulary layout](vocabulary.png)\n")
    out.append(
        f"Token ids of the English-only vocabulary: text {spans['text (BPE)'][0]}–{spans['text (BPE)'][1]} "
        f"(GPT-2's BPE), `<|endoftext|>` {spans['<|endoftext|>'][0]}, `<|startoftranscript|>` "
        f"{spans['<|startoftranscript|>'][0]}, {spans['languages'][1] - spans['languages'][0] + 1} language tokens "
        f"{spans['languages'][0]}–{spans['languages'][1]} (present but unused in .en models), the task and control "
        f"tokens {spans['translate, transcribe'][0]}–{spans['<|notimestamps|>'][0]}, and {ts[1] - ts[0] + 1} "
        f"timestamps (0.00 to 30.00 s in 20 ms steps) {ts[0]}–{ts[1]}. "
        f"{100 * spans['text (BPE)'][1] / ts[1]:.0f}% of the ids are text; the rest is the protocol that lets one "
        f"decoder transcribe, translate, name the language and keep time.{multi}\n")

    if "training" in facts:
        t = facts["training"]
        out.append("## Training\n")
        if t["panels"]:
            logs = ", ".join(f"`{path}`" for path in log_paths)
            out.append(f"![training curves](training.png)\n\nLoss, WER, the cross-attention's weight on the audio "
                       f"where each token is spoken (train.py's windowed runs log it at every eval: a head that "
                       f"spreads its weight evenly over a 7 s window puts ~0.09 there, one that follows the speech most of it) and the learning "
                       f"rate, from {logs}. Last values:\n")
            for r in t["runs"]:
                parts = [f"train loss {r['loss']:.3f}" if r["loss"] is not None else "",
                         f"val loss {r['val_loss']:.3f}" if r["val_loss"] is not None else "",
                         f"WER {100 * r['wer']:.1f}%" if r["wer"] is not None else "",
                         f"attention on the spoken audio {r['aligned']:.2f} (best head)" if r["aligned"] is not None else "",
                         f"peak learning rate {r['lr_max']:.2e}" if r["lr_max"] is not None else ""]
                out.append(f"- {r['label']} ({r['n_rows']} log lines, up to step {r['last_step']}): "
                           f"{', '.join(x for x in parts if x)}")
            out.append("")
        else:
            out.append(f"{', '.join(log_paths)}: no line with loss, val_loss, wer or lr: no figure.\n")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny.en", help="official name, .pt file, CTranslate2 dir or training checkpoint")
    parser.add_argument("--audio", default=None, help=f"audio file (default: {DEFAULT_AUDIO}, else synthetic speech)")
    parser.add_argument("--log", action="append", default=[],
                        help="a train.py log (out/log.jsonl) for the training curves; repeat it to compare runs")
    parser.add_argument("--out", required=True, help="folder for the PNGs and README.md")
    args = parser.parse_args(argv)

    from audio import AudioError
    from pretrained import CheckpointError, from_pretrained

    try:
        for path in args.log:
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{path}: no such file")
        note = ""
        if args.audio:
            audio, name = load_audio(args.audio), args.audio
        elif DEFAULT_AUDIO.exists():
            audio, name = load_audio(DEFAULT_AUDIO), DEFAULT_AUDIO.name
        else:
            audio, name = synthetic_speech(), "synthetic speech"
            note = f"{DEFAULT_AUDIO} is absent, so the audio is espeak-ng saying “{SYNTHETIC_SENTENCE}”"
        model = from_pretrained(args.model)
    except (AudioError, CheckpointError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    facts = run(model, audio, args.out, args.model, name, args.log, note)
    spent = ", ".join(f"{stage} {t:.1f}s" for stage, t in facts["seconds_spent"].items())
    print(f"{len(facts['figures'])} figures and {facts['readme']} ({spent})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
