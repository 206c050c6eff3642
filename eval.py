"""
Word error rate of a Whisper checkpoint on a LibriSpeech-layout directory.

    python eval.py --model out-synth/ckpt.pt data/synth_raw/test
    python eval.py --model tiny.en ../shared/data/LibriSpeech/test-clean --batch-size 8
    python eval.py --model tiny.en data/synthetic_src/test_seen --word-times
    python eval.py --model out-synth/ckpt.pt data/synthetic_src/dev --find-alignment-heads --save
    python eval.py --model tiny.en --long-form data/long_test

Reads every <speaker>-<chapter>.trans.txt under DIR and the .flac/.wav files they name, decodes
greedily through decoding.decode (the one decode loop), and ends with the line
`WER x.xx% on N utterances`. Hypotheses and references are both passed through Whisper's English
text normaliser before jiwer counts errors, as in the Whisper paper.

The audio is padded or cut to the model's own window, 2 * n_audio_ctx mel frames: 30 s for official
models, shorter for models trained from scratch on short clips (train.py's `n_audio_ctx`). That is
log_mel_spectrogram(pad_or_trim(audio, window)), exactly the mel train.py's loader feeds, so a model
is scored on the input it was trained on. Longer utterances are cut to the window and counted.

A bad item (audio that can't be read or holds NaN/Inf samples, a transcript line that isn't UTF-8,
a missing audio file) is reported in one line that names it and skipped; N counts the utterances
actually scored, and the exit code is 1 if any audio file was skipped. A bad option, directory,
device or model is one line and exit code 2, before any work.

Word times (directories from prepare_synthetic.py, whose chapters have <speaker>-<chapter>.words.jsonl
with each word's true start and end): `--word-times` also aligns each utterance's window to its true
text with the model's alignment heads (timing.align, what --word-timestamps uses) and prints the
median and 90th-percentile error of the word starts and ends, then does the same for the model's
own greedy transcript, over the words it got right. `--find-alignment-heads` skips the WER pass:
it scores every decoder cross-attention head on its own (timing.find_alignment_heads), prints each
head's median word-start error, the chosen heads, and the error with the model's current heads and
with the chosen ones. Use a split the heads will not be judged on (dev), then check them with
--word-times on another (test_seen). `--save` writes the chosen heads into the checkpoint file under
"alignment_heads" (openai-whisper ignores the key; from_pretrained reads it), keeping every other
key, training state included.

Long-form (a file of many utterances, pauses and level changes from `prepare_synthetic.py
--long-form SPLIT --out DIR`): `eval.py --long-form DIR --model M` runs the user's command,
`transcribe.py DIR/long.flac --model M --word-timestamps --output-format json`, in a subprocess
(`--hypothesis FILE.json` scores an existing transcript instead) and prints the WER of the whole
text (to set beside the per-utterance WER), how far each true utterance's start and end are from
those of the segment that overlaps it most (median, p90, share within 0.2 s), and the word-time
errors over the words the transcript got right.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

from audio import SAMPLE_RATE, AudioError, load_audio, window_mel, window_samples
from data import read_librispeech_dir
from decoding import transcribe_windows
from metrics import normalize, word_error_rate
from cli import OneLineErrors
import timing


def main(argv=None) -> int:
    p = OneLineErrors(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", nargs="?", help="LibriSpeech-layout directory (a subset, or a root holding several)")
    p.add_argument("--model", default="tiny.en", help="official name, .pt, CTranslate2 dir or training checkpoint")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, default=None, help="only the first N utterances (sorted by id)")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--sample-len", type=int, default=None, help="max tokens per utterance (default: model's n_text_ctx / 2)")
    p.add_argument("--show", type=int, default=5, help="print this many reference/hypothesis pairs")
    p.add_argument("--word-times", action="store_true",
                   help="also the word-time error against the *.words.jsonl truth (median, 90th percentile)")
    p.add_argument("--find-alignment-heads", action="store_true",
                   help="choose the cross-attention heads that predict the true word times best (no WER pass)")
    p.add_argument("--heads", type=int, default=None,
                   help="with --find-alignment-heads: keep the best N heads (default: add heads while the error falls)")
    p.add_argument("--save", action="store_true", help="with --find-alignment-heads: write the heads into --model's file")
    p.add_argument("--long-form", metavar="DIR", default=None,
                   help="instead: transcribe DIR/long.flac (prepare_synthetic.py --long-form) through transcribe.py "
                        "--word-timestamps and score it against DIR/long.json")
    p.add_argument("--hypothesis", metavar="JSON", default=None,
                   help="with --long-form: score this transcribe.py --output-format json file instead of running it")
    args = p.parse_args(argv)
    if args.hypothesis and not args.long_form:
        print("error: --hypothesis only goes with --long-form", file=sys.stderr)
        return 2
    if args.long_form is not None:
        if args.dir is not None:
            print(f"error: --long-form scores DIR/long.flac; give no other directory (got {args.dir})", file=sys.stderr)
            return 2
        return long_form(args)
    if args.dir is None:
        print("error: give a LibriSpeech-layout directory to score, or --long-form DIR (see --help)", file=sys.stderr)
        return 2
    for option, low in (("batch_size", 1), ("limit", 1), ("sample_len", 1), ("show", 0), ("heads", 1)):
        if getattr(args, option) is not None and getattr(args, option) < low:
            print(f"error: --{option.replace('_', '-')} must be at least {low}, got {getattr(args, option)}",
                  file=sys.stderr)
            return 2

    if (args.save or args.heads is not None) and not args.find_alignment_heads:
        print(f"error: --{'save' if args.save else 'heads'} only goes with --find-alignment-heads", file=sys.stderr)
        return 2
    if args.save and not os.path.isfile(args.model):
        what = "a CTranslate2 directory" if os.path.isdir(args.model) else "an official model name or a missing file"
        print(f"error: --save writes the heads into a checkpoint file of ours; {args.model} is {what} "
              "(save it as a .pt first)", file=sys.stderr)
        return 2

    from pretrained import CheckpointError, check_device, from_pretrained

    try:
        device = check_device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not os.path.isdir(args.dir):
        print(f"error: {args.dir}: no such directory", file=sys.stderr)
        return 2
    items = read_librispeech_dir(args.dir)[: args.limit]  # it reports and skips lines it can't use
    if not items:
        print(f"error: {args.dir}: no *.trans.txt with audio found", file=sys.stderr)
        return 2
    times = {}
    if args.word_times or args.find_alignment_heads:
        times = timing.read_word_times(args.dir)
        if not any(utt in times for utt, _, _ in items):
            print(f"error: {args.dir}: no *.words.jsonl with word times for these utterances (prepare_synthetic.py "
                  "writes them)", file=sys.stderr)
            return 2
    try:
        model = from_pretrained(args.model, device=device, dtype=torch.float16 if device.startswith("cuda") else torch.float32)
    except (CheckpointError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.find_alignment_heads:
        return find_heads(model, items, times, args)

    from tokenizer import tokenizer_for

    tokenizer = tokenizer_for(model.dims)
    t0 = time.time()
    errors_true, errors_own = [], []
    references, hypotheses, n_cut, seconds, unreadable = [], [], 0, 0.0, []
    window = window_samples(model.dims.n_audio_ctx)
    for start in range(0, len(items), args.batch_size):
        mels, refs, timed = [], [], []
        for utt, audio, text in readable(items[start : start + args.batch_size], unreadable):
            n_cut += len(audio) > window
            seconds += len(audio) / SAMPLE_RATE
            mels.append(window_mel(audio, model.dims))
            refs.append(text)
            if utt in times:
                timed.append((len(mels) - 1, timed_utterance(model, audio, text, times[utt], tokenizer, mels[-1])))
        if mels:
            hypotheses += transcribe_windows(model, mels, args.batch_size, args.sample_len)
            references += refs
            for i, utterance in timed:
                errors_true.append(timing.utterance_word_errors(model, utterance, tokenizer))
                own = tokenizer.encode(" " + hypotheses[len(hypotheses) - len(mels) + i].strip())
                errors_own.append(timing.utterance_word_errors(model, utterance, tokenizer, tokens=own))
        print(f"\r{len(references)}/{len(items)} utterances", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    for ref, hyp in list(zip(references, hypotheses))[: args.show]:
        print(f"REF: {ref}\nHYP: {hyp}", file=sys.stderr)
    elapsed = time.time() - t0
    print(f"{seconds:.0f} s of audio in {elapsed:.1f} s on {device}", file=sys.stderr)
    if n_cut:
        print(f"warning: {n_cut} utterances were longer than the model's {window / SAMPLE_RATE:.0f} s window and were cut",
              file=sys.stderr)
    if unreadable:
        print(f"warning: {len(unreadable)} audio files could not be used and are not scored", file=sys.stderr)
    # word_error_rate leaves out what normalises to nothing (e.g. a reference of "uh"): N counts what it scored
    scored = sum(1 for ref in references if normalize(ref).strip())
    if scored < len(references):
        print(f"warning: {len(references) - scored} references are empty once normalised and are not scored",
              file=sys.stderr)
    if not scored:
        print(f"error: {args.dir}: no utterance could be scored", file=sys.stderr)
        return 1
    print(f"WER {100 * word_error_rate(references, hypotheses):.2f}% on {scored} utterances")
    if args.word_times:
        heads = " ".join(f"{layer}.{head}" for layer, head in model.alignment_heads)
        print(f"word times with alignment heads {heads}:")
        for what, errors in (("true text", errors_true), ("own text", errors_own)):
            # np.zeros((0, 2)): every utterance with word times may have been a skipped audio file
            print(f"  {what}: {summary_line(timing.error_summary(np.concatenate([np.zeros((0, 2)), *errors])))} "
                  f"({len(errors)} utterances with known times)")
    return 1 if unreadable else 0


def timed_utterance(model, audio, text, words, tokenizer, mel=None):
    """timing.timed_utterance with the window already encoded: timing.align takes the encoder's
    output in place of the mel, and each window is aligned more than once."""
    from decoding import encode

    utterance = timing.timed_utterance(model, audio, text, words, tokenizer, mel)
    with torch.inference_mode():
        return {**utterance, "mel": encode(model, utterance["mel"][None])[0]}


def summary_line(s: dict) -> str:
    return (f"word start error median {s['start_median']:.3f} s, p90 {s['start_p90']:.3f} s; "
            f"end median {s['end_median']:.3f} s, p90 {s['end_p90']:.3f} s; {s['words']} words")


def readable(items, unreadable: list):
    """(utterance id, audio, text) for each item whose audio loads; each that doesn't is reported on
    stderr and appended to `unreadable`, and the rest go on."""
    for utt, path, text in items:
        try:
            yield utt, load_audio(path), text
        except AudioError as e:
            print(f"error: {e}", file=sys.stderr)
            unreadable.append(path)


def find_heads(model, items, times, args) -> int:
    """--find-alignment-heads (and --save): see the module docstring."""
    from tokenizer import tokenizer_for

    tokenizer = tokenizer_for(model.dims)
    utterances, unreadable = [], []
    for utt, audio, text in readable([item for item in items if item[0] in times], unreadable):
        utterances.append(timed_utterance(model, audio, text, times[utt], tokenizer))
    if not utterances:
        print(f"error: {args.dir}: no utterance with word times could be read", file=sys.stderr)
        return 1
    t0 = time.time()
    before = timing.error_summary(np.concatenate([timing.utterance_word_errors(model, u, tokenizer) for u in utterances]))

    def progress(done, total):
        print(f"\r{done}/{total} utterances", end="", file=sys.stderr, flush=True)

    found = timing.find_alignment_heads(model, utterances, tokenizer, k=args.heads, progress=progress)
    print(file=sys.stderr)
    print(f"median word-start error (s) of each head alone, {len(utterances)} utterances, "
          f"{before['words']} words; rows: layers, columns: heads")
    for layer in range(model.dims.n_text_layer):
        row = " ".join(f"{found['per_head'][(layer, head)]:6.3f}" for head in range(model.dims.n_text_head))
        print(f"  layer {layer:2d}: {row}")
    print(f"current heads {' '.join(f'{a}.{b}' for a, b in model.alignment_heads)}: {summary_line(before)}")
    print(f"chosen heads {' '.join(f'{a}.{b}' for a, b in found['heads'])}: {summary_line(found['summary'])}")
    print(f"{time.time() - t0:.1f} s", file=sys.stderr)
    if args.save:
        from files import atomic_save
        from pretrained import _torch_load

        checkpoint = _torch_load(args.model)  # from_pretrained read it already: a checkpoint dict
        checkpoint["alignment_heads"] = [list(h) for h in found["heads"]]
        atomic_save(checkpoint, args.model)
        print(f"saved the chosen heads into {args.model}")
    return 1 if unreadable else 0


# ------------------------------------------------------------------------------------------------
# --long-form: one file of many utterances through the command line, against its truth


def run_transcribe(audio: str, model: str, device: str = None) -> dict:
    """The user's command, `transcribe.py AUDIO --model M --word-timestamps --output-format json`,
    in its own process (scripts never import scripts); its progress goes to our stderr. Returns the
    JSON it wrote; raises RuntimeError with its exit code if it failed (it said why on stderr)."""
    import json
    import subprocess
    import tempfile

    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "transcribe.py")
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, script, audio, "--model", model, "--word-timestamps", "--output-format", "json",
                   "--output-dir", out] + (["--device", device] if device else [])
        code = subprocess.run(command, stdout=subprocess.DEVNULL).returncode
        if code:
            raise RuntimeError(f"{audio}: transcribe.py failed (exit code {code})")
        stem = os.path.splitext(os.path.basename(audio))[0]
        with open(os.path.join(out, stem + ".json"), encoding="utf-8") as f:
            return json.load(f)


def score_long_form(truth: dict, hypothesis: dict, within: float = 0.2) -> dict:
    """Scores a transcript of a long file (transcribe.py's JSON) against prepare_synthetic.py's truth.

    wer: of the whole hypothesis text against the whole true text. Segments: each true utterance is
    matched to the hypothesis segment it overlaps most in time (none: unmatched), and the |start|
    and |end| differences are summarised (median, p90, share within `within` seconds of all
    utterances). Word times: all hypothesis words against all true words through
    timing.word_time_errors, which matches differing texts along their longest common subsequence."""
    utterances = truth["utterances"]
    segments = [s for s in hypothesis["segments"] if s["text"].strip()]
    wer = word_error_rate([" ".join(u["text"] for u in utterances)], [" ".join(s["text"].strip() for s in segments)])
    diffs = np.full((len(utterances), 2), np.nan)
    for i, u in enumerate(utterances):
        overlaps = [min(u["end"], s["end"]) - max(u["start"], s["start"]) for s in segments]
        if overlaps and max(overlaps) > 0:
            best = segments[int(np.argmax(overlaps))]
            diffs[i] = abs(best["start"] - u["start"]), abs(best["end"] - u["end"])
    matched = diffs[~np.isnan(diffs).any(axis=1)]

    def stats(column: np.ndarray) -> dict:
        n = len(utterances)
        return dict(median=float(np.median(column)) if len(column) else float("nan"),
                    p90=float(np.percentile(column, 90)) if len(column) else float("nan"),
                    within=float(np.sum(column <= within)) / n if n else float("nan"))

    true_words = [w for u in utterances if u["words"] for w in u["words"]]
    own_words = [(w["word"], w["start"], w["end"]) for s in segments for w in s.get("words") or []]
    words = timing.error_summary(timing.word_time_errors(own_words, true_words)) if own_words and true_words else None
    return dict(wer=wer, utterances=len(utterances), seconds=truth["seconds"], segments=len(segments),
                unmatched=len(utterances) - len(matched), start=stats(matched[:, 0]), end=stats(matched[:, 1]),
                within_s=within, words=words, true_words=len(true_words))


def long_form(args) -> int:
    """--long-form: see the module docstring."""
    import json

    truth_path = os.path.join(args.long_form, "long.json")
    try:
        with open(truth_path, encoding="utf-8") as f:
            truth = json.load(f)
        if not all({"start", "end", "text", "words"} <= u.keys() for u in truth["utterances"]):
            raise ValueError("an utterance lacks start, end, text or words")
        float(truth["seconds"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        print(f"error: {truth_path}: not a long-form truth from prepare_synthetic.py --long-form ({e})",
              file=sys.stderr)
        return 2
    audio = os.path.join(args.long_form, truth.get("audio", "long.flac"))
    source = args.hypothesis or audio
    try:
        if args.hypothesis:
            with open(args.hypothesis, encoding="utf-8") as f:
                hypothesis = json.load(f)
        else:
            hypothesis = run_transcribe(audio, args.model, args.device)
        s = score_long_form(truth, hypothesis)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"error: {source}: not a transcribe.py JSON transcript ({e})", file=sys.stderr)
        return 2
    print(f"long-form WER {100 * s['wer']:.2f}% on {s['utterances']} utterances ({s['seconds']:.0f} s)")
    print(f"segments: {s['segments']} for {s['utterances']} utterances, {s['unmatched']} utterances overlap none; "
          + "; ".join(f"|{k} diff| median {s[k]['median']:.3f} s, p90 {s[k]['p90']:.3f} s, "
                      f"{100 * s[k]['within']:.0f}% within {s['within_s']} s" for k in ("start", "end")))
    if s["words"] is None:
        print("word times: none (the transcript has no word timestamps, or the truth no word times)")
    else:
        print(f"word times: {summary_line(s['words'])} matched of {s['true_words']} true words")
    return 0


if __name__ == "__main__":
    sys.exit(main())
