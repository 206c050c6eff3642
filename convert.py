"""
Convert a Whisper checkpoint between formats, to hand a model on or take one in:

    python convert.py out/ckpt.pt out-hf --to hf        # transformers' WhisperForConditionalGeneration
    python convert.py out/ckpt.pt out-ct2 --to ct2      # CTranslate2, i.e. faster-whisper
    python convert.py some-hf-finetune model.pt --to openai

SRC is anything transcribe.py --model takes: an official name (tiny.en works offline), an
openai-format .pt or a training checkpoint of ours, a CTranslate2 or a Hugging Face directory.
Only the network and its alignment heads are written: a training checkpoint's CTC head, optimizer
and run state stay behind. A model trained without timestamps says so in every format (the openai
file's "timestamps" key, config.json's elsewhere), so transcribe.py treats it right after the trip.
DST is a file for --to openai and a directory otherwise; it is written whole or not at all, and
an existing DST is replaced only with --force.
"""
import os
import sys

import torch

from cli import OneLineErrors, usage_error

FORMATS = ("openai", "hf", "ct2")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def parse_args(argv=None):
    parser = OneLineErrors(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("src", help="official name, .pt file, or CTranslate2 / Hugging Face directory")
    parser.add_argument("dst", help="output: a .pt file for --to openai, a directory for hf and ct2")
    parser.add_argument("--to", required=True, help=f"output format: {', '.join(FORMATS)}")
    parser.add_argument("--dtype", default="float32", help=f"weights' dtype in the output: {', '.join(DTYPES)}")
    parser.add_argument("--force", action="store_true", help="replace an existing DST")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.to not in FORMATS:
        usage_error(f"--to {args.to!r}: unknown format; use one of {', '.join(FORMATS)}")
    if args.dtype not in DTYPES:
        usage_error(f"--dtype {args.dtype!r}: use one of {', '.join(DTYPES)}")
    if os.path.lexists(args.dst) and not args.force:
        usage_error(f"{args.dst}: already exists; pass --force to replace it")
    if os.path.lexists(args.dst) and os.path.isdir(args.dst) != (args.to != "openai"):
        usage_error(f"{args.dst}: is a {'directory' if os.path.isdir(args.dst) else 'file'}; --to {args.to} "
                    f"writes a {'file' if args.to == 'openai' else 'directory'}")

    import formats
    from files import atomic_directory
    from pretrained import CheckpointError, from_pretrained, save_checkpoint

    try:
        model = from_pretrained(args.src, dtype=DTYPES[args.dtype])
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        if args.to == "openai":
            save_checkpoint(model, args.dst)  # atomic; keeps the timestamps flag
        else:
            writer = formats.write_hf if args.to == "hf" else formats.write_ct2
            with atomic_directory(args.dst, replace=args.force) as tmp:
                writer(model, tmp)
    except CheckpointError as e:  # a model the target format can't hold
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {args.dst}: cannot write ({e.strerror or e})", file=sys.stderr)
        return 1
    print(f"{args.src} -> {args.dst} ({args.to}, {args.dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
