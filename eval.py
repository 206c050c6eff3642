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

"""
import argparse
import os
import sys
import time

import torch

from audio import SAMPLE_RATE, AudioError, load_audio, window_mel, window_samples
from data import read_librispeech_dir
from decoding import transcribe_windows
from metrics import word_error_rate


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", help="LibriSpeech-layout directory (a subset, or a root holding several)")
    p.add_argument("--model", default="tiny.en", help="official name, .pt, CTranslate2 dir or training checkpoint")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--limit", type=int, default=None, help="only the first N utterances (sorted by id)")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--sample-len", type=int, default=None, help="max tokens per utterance (default: model's n_text_ctx / 2)")
    p.add_argument("--show", type=int, default=5, help="print this many reference/hypothesis pairs")
    args = p.parse_args(argv)
    for option in ("batch_size", "limit", "sample_len"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            print(f"error: --{option.replace('_', '-')} must be at least 1, got {getattr(args, option)}", file=sys.stderr)
            return 2

    from pretrained import CheckpointError, from_pretrained

    if not os.path.isdir(args.dir):
        print(f"error: {args.dir}: no such directory", file=sys.stderr)
        return 2
    items = read_librispeech_dir(args.dir)[: args.limit]
    if not items:
        print(f"error: {args.dir}: no *.trans.txt with audio found", file=sys.stderr)
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = from_pretrained(args.model, device=device, dtype=torch.float16 if device.startswith("cuda") else torch.float32)
    except (CheckpointError, RuntimeError) as e:
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
        print(f"warning: {failed} audio files could not be read and are not scored", file=sys.stderr)
    print(f"WER {100 * word_error_rate(references, hypotheses):.2f}% on {len(references)} utterances")
    return 0


if __name__ == "__main__":
    sys.exit(main())
