"""bench.py's harness: which mode each row's worker runs in (the figures themselves are not tested)."""
import bench


def test_rows_run_batched_only_when_their_name_says_so():
    # the workers once inherited --batch-size's default (8), so every "sequential" row ran batched
    args = bench.parser().parse_args(["--part", "a", "--batch-size", "4"])
    systems, _ = bench.cpu_systems(args, "tiny.en.pt", "ct2-dir")
    assert {"ours int8", "ours int8 batch 4"} <= {name for name, _ in systems}
    for name, argv in systems:
        worker = bench.parser().parse_args(argv + ["--audio", "long.npy"])
        assert worker.batch == (4 if "batch" in name else None), name


def test_table_gives_medians_of_time_and_wer_and_every_run(monkeypatch):
    # the fallback samples, so one run's WER (the table once showed round 1's) can be any of them
    texts = iter(["a b c d", "a b x d", "a b x y", "a b c d", "a b c d", "a b c d"])
    times = iter([9.0, 3.0, 5.0, 1.0, 1.0, 1.0])

    seeds = []

    def fake_worker(argv):
        worker = bench.parser().parse_args(argv)
        seeds.append(worker.seed)
        assert worker.temperatures == "0"
        wall = next(times)
        return {"text": next(texts), "decode_s": wall - 0.5, "wall_s": wall, "rss_mb": 100.0, "resampled": int(wall)}

    monkeypatch.setattr(bench, "run_worker", fake_worker)
    out = bench.longform([("ours", []), ("peer", [])], "long.npy", 60.0, "a b c d", repeat=3, threads=1,
                         baseline="peer", seed=7, temperatures="0")
    assert seeds == [7, 7, 8, 8, 9, 9]  # a round's systems draw alike; each round draws anew
    # rounds are interleaved: ours gets 9, 5 and 1 s, and "a b c d", "a b x y", "a b c d"
    medians, every = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ours")]
    wall, wer, resampled, ratio = (medians[i].strip() for i in (1, 5, 6, 7))
    assert (wall, wer, resampled, ratio) == ("5.0", "0.00", "5", "5.00")  # WER median of 0, 50, 0 %; peer's wall is 1.0
    assert [c.strip() for c in every[1:]] == ["9.0 / 8.5 / 100 / 0.00 / 9", "5.0 / 4.5 / 100 / 50.00 / 5",
                                              "1.0 / 0.5 / 100 / 0.00 / 1"]
    assert "- ours: 5.00x the wall time of peer (WER 0.00% against 0.00%)" in out


def test_equal_wer_compares_with_the_fastest_peer_that_is_as_accurate():
    walls = {"ours int8": 8.0, "ours fp32": 19.0, "fast but worse": 5.0, "as good": 10.0, "better, slower": 20.0}
    wers = {"ours int8": 0.0375, "ours fp32": 0.0200, "fast but worse": 0.08, "as good": 0.0375, "better, slower": 0.03}
    lines = bench.equal_wer_lines(walls, wers).splitlines()
    assert "- ours int8: 0.80x the wall time of as good (WER 3.75% against 3.75%)" in lines
    assert "- ours fp32 (2.00%): no peer is as accurate" in lines


def test_gpu_rows_follow_gpu_models_and_name_their_baseline(monkeypatch, tmp_path):
    # part (b) only runs where CUDA is: check its plan here, with the runs themselves faked
    import json

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "fake GPU")
    monkeypatch.setattr(bench, "long_audio", lambda minutes, directory: ("long.npy", 60.0, "ref", "fake"))
    monkeypatch.setattr(bench, "converted_tiny_en", lambda directory: "tiny.en.pt")
    plans = []
    monkeypatch.setattr(bench, "longform", lambda systems, *rest, **options: plans.append((systems, rest)) or "")
    args = bench.parser().parse_args(["--part", "b", "--gpu-models", "tiny.en,base", "--gpu-batch-size", "4"])
    bench.part_b(args, str(tmp_path))

    assert len(plans) == 3  # tiny.en in fp16 and bf16, then the base shape; no small, medium, large-v3
    for systems, (audio, seconds, reference, repeat, threads, baseline, device) in plans:
        names = [name for name, _ in systems]
        assert baseline in names and device == "cuda"
        for name, argv in systems:
            worker = bench.parser().parse_args(argv + ["--audio", audio])
            assert worker.batch == (4 if "batch" in name else None), name
    fp16 = dict(plans[0][0])
    if bench.have("whisper"):
        assert fp16["openai-whisper, cuDNN attention off"][1] == "openai-whisper-no-cudnn-attention"
    base = plans[2][0]
    dims = [json.loads(bench.parser().parse_args(argv).dims) for _, argv in base]
    assert all(d["n_audio_state"] == 512 and d["n_text_layer"] == 6 for d in dims)


def test_bad_options_are_usage_errors_before_anything_runs(capsys):
    import pytest

    for argv, needle in [(["--repeat", "0"], "--repeat must be positive, got 0"),  # once: a traceback at the end
                         (["--part", "x"], "--part 'x': expected a, b, c"),  # once: an empty report, exit 0
                         (["--temperatures", "0,x"], "--temperatures '0,x': expected comma-separated"),
                         (["--temperatures", "0,nan"], "--temperatures '0,nan': expected comma-separated"),
                         (["--minutes", "inf"], "--minutes must be finite"),
                         (["--minutes", "nan"], "--minutes must be positive, got nan"),
                         (["--repeat", "two"], "--repeat: invalid int value: 'two'"),
                         (["--beam-size", "0"], "--beam-size must be positive, got 0"),
                         (["--seed", "-1"], "--seed must be in 0..4294967293"),
                         (["--cpu-train-iters", "-1"], "--cpu-train-iters must be 0"),
                         (["--cpu-train-shape", "huge"], "--cpu-train-shape: invalid choice: 'huge'"),
                         (["--gpu-models", "tiny.en,larg-v3"], "--gpu-models: unknown 'larg-v3'"),
                         (["--gpu-train-shapes", "base,"], "--gpu-train-shapes: unknown ''"),
                         (["--systems", "ours,fastr"], "--systems: 'fastr' matches no part (a) system"),
                         (["--train-args", "--max_iters=5 compile=True"], "--train-args: compile=True is not of the"),
                         (["--data-dir", __file__], "not a directory"),
                         (["--part", "am", "--memory-minutes", "10"], "--memory-minutes '10': expected two or more"),
                         (["--memory-minutes", "10,0"], "--memory-minutes '10,0': expected two or more"),
                         (["--memory-minutes", "10,sixty"], "--memory-minutes '10,sixty': expected two or more"),
                         (["--memory-minutes", "10,inf"], "--memory-minutes '10,inf': expected two or more"),
                         (["--memory-layout", "packed"], "--memory-layout: invalid choice: 'packed'"),
                         (["--part", "mx"], "--part 'mx': expected a, b, c, m")]:
        with pytest.raises(SystemExit) as exit_:
            bench.main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and needle in err, (argv, err)
        assert err.count("\n") == 1 and "Traceback" not in err, err  # one line, not argparse's usage block


def test_cpu_description_names_the_model_and_the_isa_flags_that_matter(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
                       "flags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n\n"
                       "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n")
    assert bench.cpu_description(str(cpuinfo)).endswith(
        "ISA: amx_tile amx_bf16 amx_int8 avx512_bf16 avx512_vnni avx512f avx2")
    assert bench.cpu_description(str(cpuinfo)).startswith("Intel(R) Xeon(R) Platinum 8480+, ")
    cpuinfo.write_text("model name\t: AMD EPYC\nflags\t\t: fpu sse avx2\n")
    assert bench.cpu_description(str(cpuinfo)).endswith("ISA: avx2")


def test_part_a_header_names_the_cpu(monkeypatch, tmp_path):
    # a CPU figure is read against its machine: model name and the ISA flags oneDNN's kernels use
    import pretrained

    monkeypatch.setattr(bench, "long_audio", lambda minutes, directory: ("long.npy", 60.0, "ref", "fake"))
    monkeypatch.setattr(bench, "converted_tiny_en", lambda directory: "tiny.en.pt")
    monkeypatch.setattr(pretrained, "bundled_tiny_en", lambda: "ct2-dir")
    monkeypatch.setattr(bench, "longform", lambda *args, **options: "TABLE")
    out = bench.part_a(bench.parser().parse_args(["--part", "a"]), str(tmp_path))
    assert f"\nCPU: {bench.cpu_description()}\n" in out and "ISA: " in out and "TABLE" in out
    import quantize

    bits = "7" if quantize.REDUCE_RANGE else "8"
    encoder = "bf16 (AMX)" if quantize.AMX_BF16 else ("bf16" if quantize.ENCODER_BF16 else "int8") + " Linears"
    assert f"\nours int8 on this CPU: {bits}-bit inputs, encoder {encoder}" in out


def test_beam_size_reaches_every_worker(monkeypatch):
    """--beam-size 5 (the command lines' default search) goes to every system's worker."""
    beams = []
    monkeypatch.setattr(bench, "run_worker", lambda argv: beams.append(bench.parser().parse_args(argv).beam_size)
                        or {"text": "a", "decode_s": 1.0, "wall_s": 1.0, "rss_mb": 1.0, "resampled": 0})
    bench.longform([("ours", []), ("peer", [])], "long.npy", 60.0, "a", repeat=1, threads=1, baseline="peer", beam_size=5)
    assert beams == [5, 5]
    assert bench.search_words(bench.parser().parse_args(["--beam-size", "5"])) == "beam 5 + temperature fallback"
    assert bench.search_words(bench.parser().parse_args(["--temperatures", "0"])) == "greedy, temperature 0 only"


def test_bench_imports_no_script():
    """Scripts run when imported (train.py trains): bench.py takes what it shares with them from modules."""
    import ast
    import os

    with open(os.path.join(os.path.dirname(bench.__file__), "bench.py")) as f:
        tree = ast.parse(f.read())
    imported = set()
    for node in ast.walk(tree):  # imports inside functions too
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    scripts = {"train", "eval", "inquiry", "bench", "prepare_synthetic", "prepare_librispeech"}
    assert not imported & scripts


def test_random_corpus_loads_like_a_prepared_one(tmp_path):
    """Part (c) trains on it where no corpus is prepared (a bare GPU machine): the loader must take it
    as it is, with LibriSpeech-like clip and text lengths."""
    import data

    directory = bench.random_corpus(str(tmp_path / "random"), n_train=24, n_val=4)
    meta = data.read_meta(directory)
    assert meta["splits"]["train"]["utterances"] == 24 and meta["eot"] == 50256 and meta["n_mels"] == 80
    mel, tokens_in, targets, _ = data.ShardLoader(directory, "train", batch_size=8, n_frames=3000).next_batch()
    assert mel.shape == (8, 80, 3000) and tokens_in.shape == targets.shape and tokens_in.shape[0] == 8
    entries = data.manifest(directory, "train")
    assert all(2 <= e["duration"] <= 30 and e["frames"] == round(100 * e["duration"]) for e in entries)
    assert 3 < sum(len(e["tokens"]) for e in entries) / sum(e["duration"] for e in entries) < 4  # tokens a second


def test_train_args_reach_every_train_py_run(monkeypatch, tmp_path):
    import os
    import subprocess

    import torch

    seen = []

    def fake_run(argv, **kw):  # train.py's log, as a short run writes it
        seen.append(argv)
        out_dir = next(a.split("=", 1)[1] for a in argv if a.startswith("--out_dir="))
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "log.jsonl"), "w") as f:
            f.write('{"kind": "train", "tokens_per_s": 10.0, "audio_s_per_s": 3.0, "mfu": null}\n')
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    monkeypatch.setattr(bench, "cpu_peak_flops", lambda threads: 1e11)
    args = bench.parser().parse_args(["--part", "c", "--data-dir", str(tmp_path / "none"), "--train-args",
                                      "--text_pad_multiple=32 --profile_steps=2"])
    out = bench.part_c(args, str(tmp_path))
    assert "random frames and tokens shaped like LibriSpeech" in out and len(seen) == 1  # the CPU row; no GPU here
    assert seen[0][-2:] == ["--text_pad_multiple=32", "--profile_steps=2"]


def test_memory_files_have_one_layout_whatever_their_length(tmp_path):
    # part (m) compares peak RSS across lengths: only the length may differ between its files
    import numpy as np
    import soundfile as sf

    clips = [(np.full(16000, 0.25, np.float32), "one"), (np.full(8000, -0.5, np.float32), "two")]
    for layout, texts, runs in [("sparse", "one two " * 3, [(0, 16000), (24000, 32000)]),  # every 10 s
                                ("dense", "one two " * 12, [(0, 16000), (24000, 32000)])]:  # back to back, 2 s a pair
        files = {}
        for minutes in (0.25, 0.5):
            path = tmp_path / f"{layout}-{minutes}.flac"
            reference = bench.memory_file(minutes, layout, clips, str(path), period_s=10)
            audio, sr = sf.read(path, dtype="float32")
            assert sr == 16000 and len(audio) == minutes * 60 * 16000 and sf.info(path).format == "FLAC"
            files[minutes] = (audio, reference)
        audio, reference = files[0.5]
        assert reference == texts.strip()
        step = 10 * 16000 if layout == "sparse" else 40000  # a period, or one pair of clips and gaps
        expected = np.zeros(len(audio), np.float32)
        for start in range(0, len(audio), step):
            for (a, b), value in zip(runs, (0.25, -0.5)):
                if start + b <= len(audio):
                    expected[start + a : start + b] = value
        np.testing.assert_allclose(audio, expected, atol=1e-4)  # 16-bit samples; silence exactly 0
        assert not audio[expected == 0].any()
        short, _ = files[0.25]
        assert np.array_equal(short, audio[: len(short)])  # the 15 s file is the 30 s file's start


def test_part_m_runs_transcribe_py_once_per_file_and_gives_the_ratio(monkeypatch, tmp_path):
    import numpy as np
    import soundfile as sf

    clips = [(np.full(16000, 0.25, np.float32), "hello there")]
    monkeypatch.setattr(bench, "known_clips", lambda: (clips, "fake clips"))
    runs = []

    def fake_run(argv):  # the file exists while its run runs; 500 MB, then 525 MB
        info = sf.info(argv[2])
        runs.append((argv, info.frames))
        return 0, "Hello there. " * round(info.frames / 16000 / 300), "", 10.0 * len(runs), 475.0 + 25 * len(runs)

    monkeypatch.setattr(bench, "run_measured", fake_run)
    args = bench.parser().parse_args(["--part", "m", "--memory-minutes", "10,60", "--threads", "1"])
    out = bench.part_m(args, str(tmp_path))
    assert [frames for _, frames in runs] == [10 * 60 * 16000, 60 * 60 * 16000]
    for argv, _ in runs:
        assert argv[1] == "transcribe.py" and argv[3:] == bench.MEMORY_OPTIONS + ["--threads", "1"]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in out.splitlines() if line.startswith("| ")][1:]
    assert rows == [["10", "500", "1.000", "10.0", "60.0", "4", "0.00"],
                    ["60", "525", "1.050", "20.0", "180.0", "24", "0.00"]]
    assert out.rstrip().endswith("60 min / 10 min peak RSS: 1.050 (within 10%)")
    assert f"CPU: {bench.cpu_description()}\n" in out and "--beam-size 1 --temperature-increment-on-fallback 0" in out
