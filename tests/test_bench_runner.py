"""The benchmark summary reads nvidia-smi's CSV right (the GPU figures in docs/benchmarks.md)."""

from bench_scripts import load_script


def test_gpu_timeline_buckets_samples_by_time(tmp_path):
    bench = load_script("bench_runner")
    csv = tmp_path / "gpu_util.csv"
    csv.write_text("timestamp, utilization.gpu [%], memory.used [MiB]\n"
                   "2026/11/23 11:03:01.500, 0 %, 0 MiB\n"
                   "2026/11/23 11:03:31.000, 100 %, 2048 MiB\n"
                   "2026/11/23 11:03:31.500, 50 %, 1024 MiB\n"
                   "2026/11/23 11:03:32.0\n")  # a row cut short when the sampler was killed
    samples = bench.gpu_samples(csv)
    assert [t for t, _, _ in samples] == [0.0, 29.5, 30.0]
    rows = bench.timeline(samples, bucket_s=30)
    assert rows[2].startswith("| 0 | 50 | 2.0 |")  # 0 and 100 % in the first 30 s; 2 GiB at most
    assert rows[3].startswith("| 30 | 50 | 1.0 |")
    assert "mean 50%" in bench.utilization(samples)


def test_matrix_rate_counts_runs_per_hour_and_mfu_with_and_without_the_embedding():
    bench = load_script("bench_runner")
    run = {"train_tokens_per_s": 1e6, "timing": {"train_s": 100.0}, "params": 3_000_000,
           "model_config": {"vocab_size": 20_000, "d_model": 100}}  # 2M embedding, 1M body
    row = bench.matrix_rate([(None, run), (None, run)], wall_s=360.0)[2]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["2", "360.0", "20.0"]  # 2 runs in 360 s = 20 an hour
    body = 100 * 6 * 1e6 * 2e8 / 360 / bench.PEAK_FLOPS  # 2 runs x 1e8 tokens
    assert cells[3] == f"{body:.2f}%" and cells[4] == f"{3 * body:.2f}%"
    # untied (pythia, fla models at paper): two tables; the input one is a lookup, not a matmul
    untied = {**run, "params": 5_000_000, "model_config": {**run["model_config"], "tie_embeddings": False}}
    cells = [c.strip() for c in bench.matrix_rate([(None, untied), (None, untied)], wall_s=360.0)[2].strip("|").split("|")]
    assert cells[3] == f"{body:.2f}%" and cells[4] == f"{3 * body:.2f}%"
