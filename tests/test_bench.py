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
