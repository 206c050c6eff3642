"""
Transcribe audio files with a Whisper checkpoint.

    python transcribe.py ../shared/data/jfk.flac
    python transcribe.py a.flac b.mp3 --model base.en --beam-size 1 --device cuda --dtype fp16

With one file, stdout is the transcript and nothing else; with several, each line is
"<file>: <transcript>". Progress and errors go to stderr. A file that can't be read is reported
in one line and skipped; the others are still transcribed, and the exit code is 1.

For now the audio is cut into consecutive 30 s windows, each decoded on its own.
"""
import argparse
import sys
import time

import torch

from audio import HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE, AudioError, load_audio, log_mel_spectrogram, pad_or_trim
from model import decode

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# a window whose first token is <|nospeech|>-likely *and* whose text the model doubts is silence
NO_SPEECH_THRESHOLD = 0.6
LOGPROB_THRESHOLD = -1.0
# Whisper writes "you" or "." over digital silence with confidence (openai-whisper does too), so a
# window whose loudest sample is below -80 dBFS is not decoded at all
SILENCE_PEAK = 10 ** (-80 / 20)


def transcribe(model, audio, beam_size=5, language=None, task="transcribe") -> dict:
    """Audio samples at 16 kHz -> {"text", "segments"}; one segment per 30 s window with speech."""
    mel = log_mel_spectrogram(audio, n_mels=model.dims.n_mels, padding=N_SAMPLES, device=model.device)
    n_content = mel.shape[-1] - N_FRAMES  # the padding only gives the last window its zeros
    segments = []
    for seek in range(0, max(n_content, 1), N_FRAMES):
        samples = audio[seek * HOP_LENGTH : (seek + N_FRAMES) * HOP_LENGTH]
        if len(samples) == 0 or float(abs(samples).max()) < SILENCE_PEAK:
            continue
        # like the reference: the content frames, then zeros (not the mel of silence) up to 30 s
        window = pad_or_trim(mel[:, seek : min(seek + N_FRAMES, n_content)], N_FRAMES)
        result = decode(model, window, beam_size=beam_size if beam_size > 1 else None, language=language, task=task)
        if result.no_speech_prob > NO_SPEECH_THRESHOLD and result.avg_logprob < LOGPROB_THRESHOLD:
            continue
        start = seek / (N_FRAMES / 30)
        end = min(seek + N_FRAMES, n_content) / (N_FRAMES / 30)
        segments.append(dict(start=start, end=end, text=result.text, tokens=result.tokens,
                             avg_logprob=result.avg_logprob, no_speech_prob=result.no_speech_prob))
    return {"text": " ".join(s["text"] for s in segments if s["text"]), "segments": segments}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help="audio files: flac, wav, ogg, mp3, ...")
    parser.add_argument("--model", default="tiny.en", help="official name, .pt file, CTranslate2 dir or training checkpoint")
    parser.add_argument("--beam-size", type=int, default=5, help="beam width; 1 decodes greedily")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument("--dtype", choices=list(DTYPES), default=None, help="default: fp16 on GPU, fp32 on CPU")
    parser.add_argument("--language", default=None, help="multilingual models: language code or name (default: detect)")
    parser.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    args = parser.parse_args(argv)

    from pretrained import CheckpointError, from_pretrained

    device = args.device or default_device()
    dtype = DTYPES[args.dtype or ("fp16" if device.startswith("cuda") else "fp32")]
    try:
        t0 = time.time()
        model = from_pretrained(args.model, device=device, dtype=dtype)
        print(f"loaded {args.model} on {device} in {time.time() - t0:.1f}s", file=sys.stderr)
    except (CheckpointError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    failed = 0
    for path in args.files:
        try:
            audio = load_audio(path)
        except AudioError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        t0 = time.time()
        result = transcribe(model, audio, beam_size=args.beam_size, language=args.language, task=args.task)
        seconds = len(audio) / SAMPLE_RATE
        print(f"{path}: {seconds:.1f}s of audio in {time.time() - t0:.1f}s", file=sys.stderr)
        print(result["text"] if len(args.files) == 1 else f"{path}: {result['text']}", flush=True)
    if failed:
        print(f"{failed} of {len(args.files)} files failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
