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

    def fake_worker(argv):
        wall = next(times)
        return {"text": next(texts), "decode_s": wall - 0.5, "wall_s": wall, "rss_mb": 100.0}

    monkeypatch.setattr(bench, "run_worker", fake_worker)
    out = bench.longform([("ours", []), ("peer", [])], "long.npy", 60.0, "a b c d", repeat=3, threads=1,
                         baseline="peer")
    # rounds are interleaved: ours gets 9, 5 and 1 s, and "a b c d", "a b x y", "a b c d"
    medians, every = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ours")]
    wall, wer, ratio = medians[1].strip(), medians[5].strip(), medians[6].strip()
    assert (wall, wer, ratio) == ("5.0", "0.00", "5.00")  # WER median of 0, 50, 0 %; peer's wall is 1.0
    assert [c.strip() for c in every[1:]] == ["9.0 / 8.5 / 100 / 0.00", "5.0 / 4.5 / 100 / 50.00",
                                              "1.0 / 0.5 / 100 / 0.00"]
