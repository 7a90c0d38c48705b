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
