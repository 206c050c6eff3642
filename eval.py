"""
Word error rate of a Whisper checkpoint on a LibriSpeech-layout directory.

    python eval.py --model out-synth/ckpt.pt data/synth_raw/test
    python eval.py --model tiny.en ../shared/data/LibriSpeech/test-clean --batch-size 8

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
"""
import argparse
import os
import sys
import time

import torch

from audio import SAMPLE_RATE, AudioError, load_audio, window_mel, window_samples
from data import read_librispeech_dir
from decoding import transcribe_windows
from metrics import normalize, word_error_rate
from cli import OneLineErrors


def main(argv=None) -> int:
    p = OneLineErrors(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", help="LibriSpeech-layout directory (a subset, or a root holding several)")
    p.add_argument("--model", default="tiny.en", help="official name, .pt, CTranslate2 dir or training checkpoint")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, default=None, help="only the first N utterances (sorted by id)")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--sample-len", type=int, default=None, help="max tokens per utterance (default: model's n_text_ctx / 2)")
    p.add_argument("--show", type=int, default=5, help="print this many reference/hypothesis pairs")
    args = p.parse_args(argv)
    for option, low in (("batch_size", 1), ("limit", 1), ("sample_len", 1), ("show", 0)):
        if getattr(args, option) is not None and getattr(args, option) < low:
            print(f"error: --{option.replace('_', '-')} must be at least {low}, got {getattr(args, option)}",
                  file=sys.stderr)
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
    try:
        model = from_pretrained(args.model, device=device, dtype=torch.float16 if device.startswith("cuda") else torch.float32)
    except (CheckpointError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    t0 = time.time()
    references, hypotheses, n_cut, failed, seconds = [], [], 0, 0, 0.0
    window = window_samples(model.dims.n_audio_ctx)
    for start in range(0, len(items), args.batch_size):
        mels, refs = [], []
        for utt, path, text in items[start : start + args.batch_size]:
            try:
                audio = load_audio(path)
            except AudioError as e:
                print(f"error: {e}", file=sys.stderr)
                failed += 1
                continue
            n_cut += len(audio) > window
            seconds += len(audio) / SAMPLE_RATE
            mels.append(window_mel(audio, model.dims))
            refs.append(text)
        if mels:
            hypotheses += transcribe_windows(model, mels, args.batch_size, args.sample_len)
            references += refs
        print(f"\r{len(references)}/{len(items)} utterances", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    for ref, hyp in list(zip(references, hypotheses))[: args.show]:
        print(f"REF: {ref}\nHYP: {hyp}", file=sys.stderr)
    elapsed = time.time() - t0
    print(f"{seconds:.0f} s of audio in {elapsed:.1f} s on {device}", file=sys.stderr)
    if n_cut:
        print(f"warning: {n_cut} utterances were longer than the model's {window / SAMPLE_RATE:.0f} s window and were cut",
              file=sys.stderr)
    if failed:
        print(f"warning: {failed} audio files could not be used and are not scored", file=sys.stderr)
    # word_error_rate leaves out what normalises to nothing (e.g. a reference of "uh"): N counts what it scored
    scored = sum(1 for ref in references if normalize(ref).strip())
    if scored < len(references):
        print(f"warning: {len(references) - scored} references are empty once normalised and are not scored",
              file=sys.stderr)
    if not scored:
        print(f"error: {args.dir}: no utterance could be scored", file=sys.stderr)
        return 1
    print(f"WER {100 * word_error_rate(references, hypotheses):.2f}% on {scored} utterances")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
