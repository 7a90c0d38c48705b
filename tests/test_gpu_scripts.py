"""benchmarks/gpu_tests.sh runs the GPU suite as parallel groups: together they must hold every
GPU test exactly once, or a new test would silently never run on the GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def collected(args: list[str]) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                         cwd=ROOT, capture_output=True, text=True, check=True, timeout=300).stdout
    return [line for line in out.splitlines() if "::" in line]


def gpu_tests(timeout: int, **env: str) -> subprocess.CompletedProcess:
    """benchmarks/gpu_tests.sh with this interpreter's python3 first on PATH."""
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    return subprocess.run(["bash", "benchmarks/gpu_tests.sh"], cwd=ROOT, env={**os.environ, "PATH": path, **env},
                          capture_output=True, text=True, timeout=timeout)


def test_gpu_test_groups_cover_every_gpu_test_exactly_once():
    listing = gpu_tests(300, GROUPS_ONLY="1").stdout.splitlines()
    groups = Counter(line.split(" ", 1)[0] for line in listing)
    tests = Counter(line.split(" ", 1)[1] for line in listing)
    assert set(groups) == {"quick", "rwkv7-kernels", "rwkv7-models", "gla", "delta", "others"} and min(groups.values()) >= 1
    assert [t for t, n in tests.items() if n > 1] == []
    assert set(tests) == set(collected(["-m", "gpu", "tests/"]))
    # the slow ones (Triton autotuning) are never in the quick group
    slow = set(collected(["-m", "gpu and triton_autotune", "tests/"]))
    assert slow and not slow & {line.split(" ", 1)[1] for line in listing if line.startswith("quick ")}


def test_a_group_cut_by_the_limit_fails_the_script_and_says_which(tmp_path):
    # the limit (1 s) and the kill after it (30 s) must end it within the timeout
    done = gpu_tests(120, OUT=str(tmp_path), LIMIT="1", IN_SESSION="1", GROUP_LOGS=str(tmp_path))
    assert done.returncode == 124  # timeout's status: the limit stopped pytest (collection takes longer)
    lines = (tmp_path / "wall_time.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == [f"group {g}" for g in ("quick", "rwkv7-kernels", "rwkv7-models", "gla", "delta", "others")]
    assert all("rc=124" in line for line in lines) and lines[-1].startswith("pytest -m gpu: rc=124")
    assert "KeyboardInterrupt" in (tmp_path / "gpu_tests.log").read_text()  # SIGINT reached pytest itself


def test_compressed_wheels_install_where_python_finds_them(tmp_path):
    """`.site.txz` (wheels.sh pack's form of the wheels) is unpacked onto PYTHONPATH by the scripts."""
    work, packed, site = tmp_path / "work", tmp_path / "packed", tmp_path / "site"
    (packed / "fake_gpu_wheel").mkdir(parents=True)
    (packed / "fake_gpu_wheel" / "__init__.py").write_text("VERSION = '1.2'\n")
    (work / "benchmarks").mkdir(parents=True)
    (work / "benchmarks" / "wheels.sh").write_text((ROOT / "benchmarks" / "wheels.sh").read_text())
    subprocess.run(f"tar cf - -C {packed} . | xz > {work}/.site.txz", shell=True, check=True)
    script = ("source benchmarks/wheels.sh install && "
              "python3 -c 'import fake_gpu_wheel; print(fake_gpu_wheel.VERSION)'")
    env = {**os.environ, "SITE_DIR": str(site), "PYTHONPATH": "",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1.2" and (site / "fake_gpu_wheel" / "__init__.py").exists()
