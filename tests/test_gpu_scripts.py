"""The GPU machine's scripts, checked on CPU. benchmarks/gpu_tests.sh runs the GPU suite as
parallel groups: together they must hold every GPU test exactly once, or a new test would silently
never run on the GPU; the wheels and the Triton cache travel in the forms the scripts unpack."""

from __future__ import annotations

import json
import re
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


def fake_entry(cache: Path, key: str, name: str, warps: int, stages: int) -> Path:
    """One Triton cache entry: a compiled variant and its metadata."""
    entry = cache / key
    entry.mkdir(parents=True)
    (entry / f"{name}.cubin").write_bytes(b"\0" * 64)
    (entry / f"{name}.json").write_text(json.dumps({"name": name, "num_warps": warps, "num_stages": stages,
                                                    "num_ctas": 1, "maxnreg": None}))
    (entry / f"__grp__{name}.json").write_text("{}")
    return entry


def test_the_carried_triton_cache_keeps_autotuning_winners_only(tmp_path):
    """triton_cache_out.sh carries what a cache hit reads: the variant each cached autotuning result
    selects (and every kernel that was never autotuned), not the configs that lost."""
    cache = tmp_path / ".triton"
    winner = fake_entry(cache, "A", "chunk_fwd", warps=4, stages=2)
    loser = fake_entry(cache, "B", "chunk_fwd", warps=8, stages=3)
    plain = fake_entry(cache, "C", "not_autotuned", warps=8, stages=3)
    timings = cache / "D"
    timings.mkdir()
    cfg = {"kwargs": {"BT": 64}, "num_ctas": 1, "maxnreg": None}
    (timings / "chunk_fwd.autotune.json").write_text(json.dumps({"key": [1], "configs_timings": [
        [{**cfg, "num_warps": 8, "num_stages": 3}, [0.9, 0.8, 1.0]],
        [{**cfg, "num_warps": 4, "num_stages": 2}, [0.5, 0.4, 0.6]]]}))
    (tmp_path / "benchmarks").mkdir()
    for script in ("triton_cache_out.sh", "triton_cache_prune.py"):
        (tmp_path / "benchmarks" / script).write_text((ROOT / "benchmarks" / script).read_text())
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "benchmarks/triton_cache_out.sh", str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    listing = subprocess.run(f"cat {out}/triton_cache.txz.part-* | xz -d | tar tf -", shell=True,
                             capture_output=True, text=True, check=True).stdout.split()
    names = {Path(p).relative_to(".triton").as_posix() for p in listing}
    assert {"A/chunk_fwd.cubin", "C/not_autotuned.cubin", "D/chunk_fwd.autotune.json"} <= names
    assert not any(n.startswith("B/") for n in names)  # the slower config's compiled variant
    assert winner.exists() and loser.exists() and plain.exists()  # the live cache is left as it is


def run_session(tmp_path: Path, phases: str, scripts: dict[str, str],
                tools: dict[str, str]) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """gpu_session.sh with PHASES in a scratch folder: its benchmarks/ scripts replaced by
    ``scripts`` (name -> Python text; gpu_env.sh empty: no wheels or installs on CPU) and the
    commands in ``tools`` (name -> bash body) first on PATH. Returns (work dir, log dir, result)."""
    work, bin_dir, log = tmp_path / "work", tmp_path / "bin", tmp_path / "log"
    (work / "benchmarks").mkdir(parents=True)
    bin_dir.mkdir()
    (work / "benchmarks" / "gpu_session.sh").write_text((ROOT / "benchmarks" / "gpu_session.sh").read_text())
    for name, text in {"gpu_env.sh": "", **scripts}.items():
        (work / "benchmarks" / name).write_text(text)
    # nvidia-smi's sampler runs until killed, as on the machine: the session must not wait for it
    for tool, body in {"nvidia-smi": "exec sleep 300", **tools}.items():
        (bin_dir / tool).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (bin_dir / tool).chmod(0o755)
    env = {**os.environ, "SESSION_LOG": str(log), "PHASES": phases,
           "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "benchmarks/gpu_session.sh"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=60)
    return work, log, done


def test_session_todo_phase_trains_what_board_todo_lists(tmp_path):
    """gpu_session.sh's todo@MODEL@SUITE@SEEDS@train=... asks board_todo.py on the machine for the
    missing ids (a phase string stays short) and trains exactly those; nothing missing: no run."""
    board_todo = ("import sys\nprint(sys.argv[1:], file=open('todo_args.txt', 'a'))\n"
                  "if sys.argv[1] == '--seconds-only': print(0)\n"
                  "else: print('' if sys.argv[2] == 'done_model' else 'id1 id2')\n")
    work, log, done = run_session(
        tmp_path, "todo@rwkv7@all@3@train=standard+shuffle todo@done_model",
        {"bench_runner.py": "", "board_todo.py": board_todo}, {"mqarbench": 'echo "$@" >> mqarbench_calls.txt'})
    assert done.returncode == 0, done.stderr
    asked = (work / "todo_args.txt").read_text().splitlines()
    assert asked == [str([flag, "rwkv7", "--suite", "all", "--seeds", "3", "--train", "standard", "shuffle"])
                     for flag in ("--ids-only", "--seconds-only")] + \
        [str([flag, "done_model", "--suite", "all", "--seeds", "3"]) for flag in ("--ids-only", "--seconds-only")]
    calls = (work / "mqarbench_calls.txt").read_text().splitlines()
    assert calls == ["run --model rwkv7 --suite all --seeds 3 --only id1 id2 --preset small "
                     "--out mqar_runs/board --no-site"]
    progress = (log / "progress.txt").read_text()
    assert "todo done_model: nothing to train" in progress and "all done" in progress


def test_session_board_phase_picks_runs_by_ids_tasks_and_learning_rates(tmp_path):
    """board@MODELS@SUITE@SEEDS@PICK: one `mqarbench run` per comma-separated model, and one for
    models joined by +; PICK's comma-joined parts become --only, --train, --lr and --epochs (an ablation of
    several adapters at one learning rate; a calibration probe)."""
    ablation = "baselines.global_mamba:GlobalMambaK64,baselines.global_mamba:GlobalMambaNoBias"
    together = "baselines.global_mamba:GlobalMambaK64+baselines.global_mamba:GlobalMambaK256"
    work, log, done = run_session(
        tmp_path, f"board@{ablation}@all@3@train=k2v2+k1v1,lr=0.003 board@mamba@main@2@id1+id2 board@gla@all@1 "
                  f"board@{together}@all@3@lr=0.003 board@pythia@main@6@train=k2v2,lr=0.003+0.01,epochs=60",
        {"bench_runner.py": ""}, {"mqarbench": 'echo "$@" >> mqarbench_calls.txt'})
    assert done.returncode == 0, done.stderr
    tail = "--preset small --out mqar_runs/board --no-site"
    assert (work / "mqarbench_calls.txt").read_text().splitlines() == [
        f"run --model baselines.global_mamba:GlobalMambaK64 --suite all --seeds 3 --train k2v2 k1v1 --lr 0.003 {tail}",
        f"run --model baselines.global_mamba:GlobalMambaNoBias --suite all --seeds 3 --train k2v2 k1v1 --lr 0.003 {tail}",
        f"run --model mamba --suite main --seeds 2 --only id1 id2 {tail}",
        f"run --model gla --suite all --seeds 1 {tail}",
        f"run --model {together.replace('+', ',')} --suite all --seeds 3 --lr 0.003 {tail}",
        f"run --model pythia --suite main --seeds 6 --train k2v2 --lr 0.003 0.01 --epochs 60 {tail}"]
    assert "all done" in (log / "progress.txt").read_text()
    assert any(p.name.startswith("board-GlobalMambaK256-all-") for p in log.iterdir())


def test_session_deadline_skips_late_packs_and_caps_the_others(tmp_path, monkeypatch):
    """DEADLINE: a board pack with under MIN_PACK_S left is not started; one that starts gets at most
    what is left as its time limit (BOARD_LIMIT otherwise)."""
    monkeypatch.setenv("DEADLINE", "400")
    monkeypatch.setenv("MIN_PACK_S", "396")
    monkeypatch.setenv("BOARD_LIMIT", "1200")
    work, log, done = run_session(
        tmp_path, "board@mamba@all@3@train=k1v1 board@gla@all@3",
        {"bench_runner.py": ""},
        {"timeout": 'echo "$1" >> timeouts.txt; shift; "$@"',
         # the first pack takes the session past DEADLINE - MIN_PACK_S
         "mqarbench": 'echo "$@" >> mqarbench_calls.txt; sleep 6'})
    assert done.returncode == 0, done.stderr
    limits = [int(x) for x in (work / "timeouts.txt").read_text().split()]
    assert len(limits) == 1 and 396 <= limits[0] <= 400  # capped by the deadline, not BOARD_LIMIT
    assert len((work / "mqarbench_calls.txt").read_text().splitlines()) == 1
    progress = (log / "progress.txt").read_text()
    assert "board gla all skipped" in progress and "DEADLINE" in progress
    assert "board mamba all x3" in progress


def test_session_todo_pack_is_skipped_when_its_estimate_does_not_fit(tmp_path, monkeypatch):
    """todo@: board_todo.py's estimate of the pack's wall time (plus a tenth) replaces MIN_PACK_S;
    an unknown estimate (0) leaves MIN_PACK_S in charge."""
    monkeypatch.setenv("DEADLINE", "1000")
    monkeypatch.setenv("MIN_PACK_S", "100")
    board_todo = ("import sys\nslow = sys.argv[2] == 'slow'\n"
                  "if sys.argv[1] == '--seconds-only': print(950 if slow else 0)\n"
                  "else: print('id1')\n")
    work, log, done = run_session(
        tmp_path, "todo@slow todo@unknown", {"bench_runner.py": "", "board_todo.py": board_todo},
        {"mqarbench": 'echo "$@" >> mqarbench_calls.txt'})
    assert done.returncode == 0, done.stderr
    progress = (log / "progress.txt").read_text()
    assert "board slow all skipped" in progress and "needs 1045s" in progress  # 950 * 1.1 > ~1000 left
    assert (work / "mqarbench_calls.txt").read_text().splitlines() == [
        "run --model unknown --suite all --seeds 3 --only id1 --preset small --out mqar_runs/board --no-site"]


def test_session_models_phases_call_bench_models_with_their_fields(tmp_path):
    """`models` times small (at the runner's batch of 64) and paper; models@PRESET@FAMILIES@MODELS one table."""
    work, log, done = run_session(
        tmp_path, "models models@paper@fla@gla+deltanet",
        {"bench_models.py": "import sys\nprint(' '.join(sys.argv[1:]), file=open('bench_args.txt', 'a'))\n"}, {})
    assert done.returncode == 0, done.stderr
    assert (work / "bench_args.txt").read_text().splitlines() == [
        "--preset small --batch 64 --family mamba --family mamba2 --family fla",
        "--preset paper --family mamba --family mamba2 --family fla",
        "--preset paper --family fla --only gla deltanet"]
    progress = (log / "progress.txt").read_text()
    assert "done models rc=0" in progress and "done models@paper@fla@gla+deltanet rc=0" in progress


def test_session_gpu_phase_runs_the_gpu_tests_of_its_files(tmp_path):
    """gpu@FILE+FILE: `pytest -m gpu` on exactly those files, its rc the phase's."""
    work, log, done = run_session(
        tmp_path, "gpu@tests/a.py+tests/b.py", {},
        {"python3": 'echo "$@" >> python_calls.txt; [ "$7" = tests/a.py ] && exit 3; exit 0'})
    assert done.returncode == 0, done.stderr
    assert (work / "python_calls.txt").read_text().splitlines() == [
        "-c import torch, selective_scan_cuda, causal_conv1d_cuda",  # the first check: the extensions import (after torch: they link its libc10)
        "-m pytest -m gpu -q -rs tests/a.py tests/b.py"]
    progress = (log / "progress.txt").read_text()
    assert "done gpu@tests/a.py+tests/b.py rc=3" in progress and "0s GPU extensions import\n" in progress


def test_session_ab_phases_pass_their_environment_and_fields(tmp_path):
    """pack@ / epoch@ run their benchmark with the phase's VAR=VAL settings (an A/B of a kernel
    path) and only there; gpu@FILES@K passes K to pytest's -k with + as spaces."""
    echo = ("import os, sys\nprint(os.environ.get('MQARBENCH_CROSS_ENTROPY', '-'), os.environ.get('X', '-'), "
            "' '.join(sys.argv[1:]), file=open('bench_args.txt', 'a'))\n")
    work, log, done = run_session(
        tmp_path, "pack@mamba,pythia@1,24@MQARBENCH_CROSS_ENTROPY=torch+X=1 pack@mamba@8 "
        "epoch@small@standard@mamba,global_mamba@MQARBENCH_CROSS_ENTROPY=triton",
        {"bench_pack.py": echo, "bench_epoch.py": echo}, {})
    assert done.returncode == 0, done.stderr
    assert (work / "bench_args.txt").read_text().splitlines() == [
        "torch 1 --models mamba,pythia --packs 1,24",
        "- - --models mamba --packs 8",
        "triton - --models mamba,global_mamba --task standard --preset small"]
    work, log, done = run_session(
        tmp_path / "k", "gpu@tests/a.py@not+gla", {}, {"python3": 'echo "$@" >> python_calls.txt'})
    assert (work / "python_calls.txt").read_text().splitlines()[1] == "-m pytest -m gpu -q -rs tests/a.py -k not gla"


def test_session_says_in_its_first_line_when_the_gpu_extensions_do_not_import(tmp_path):
    _, log, done = run_session(tmp_path, "gpu@tests/a.py", {}, {"python3": "exit 1"})
    assert done.returncode == 0, done.stderr
    first = (log / "progress.txt").read_text().splitlines()[0]
    assert first == "0s GPU extensions do not import (imports.log; STRIP=0 bash benchmarks/wheels.sh pack)"


def test_session_matrix_phases_run_the_same_mamba_matrix_both_ways(tmp_path):
    """matrix / workers: the issue's matrix (main, packed with 3 seeds; 8 worker processes with
    seed 0); matrix@all@train=...: the same training runs with every suite's tests, under
    mqar_runs/board so that a poll brings them back for the board."""
    work, log, done = run_session(
        tmp_path, "matrix workers matrix@all@train=standard+k2v2 workers@all@train=standard+k2v2",
        {"bench_runner.py": ""}, {"mqarbench": 'echo "$@" >> mqarbench_calls.txt'})
    assert done.returncode == 0, done.stderr
    assert (work / "mqarbench_calls.txt").read_text().splitlines() == [
        "run --model mamba --suite main --seeds 3 --preset small --out mqar_runs/packed --no-site",
        "run --model mamba --suite main --seeds 1 --pack 1 --workers-per-gpu 8 --preset small "
        "--out mqar_runs/workers --no-site",
        "run --model mamba --suite all --seeds 3 --train standard k2v2 --preset small "
        "--out mqar_runs/board/matrix --no-site",
        "run --model mamba --suite all --seeds 1 --pack 1 --workers-per-gpu 8 --train standard k2v2 "
        "--preset small --out mqar_runs/board/workers --no-site"]
    progress = (log / "progress.txt").read_text()
    assert "done matrix rc=0" in progress and "done workers@all@train=standard+k2v2 rc=0" in progress


def test_poll_brings_back_runs_without_weights_and_only_the_last_attention_maps(tmp_path):
    """What a poll returns: the board's runs without weights or maps (under 16 MiB a file), and the
    maps the shortcut cell reads, attention/last.npz, on their own."""
    import tarfile

    work, out, log = tmp_path / "work", tmp_path / "out", tmp_path / "log"
    (work / "benchmarks").mkdir(parents=True)
    (work / "benchmarks" / "gpu_session.sh").write_text((ROOT / "benchmarks" / "gpu_session.sh").read_text())
    run = work / "mqar_runs" / "board" / "runs" / "abc"
    (run / "attention").mkdir(parents=True)
    for name in ("run.json", "best.pt", "best.pt.sha256", "attention/last.npz", "attention/shuffle.npz"):
        (run / name).write_text("x")
    out.mkdir()
    subprocess.run(["bash", "benchmarks/gpu_session.sh", "poll"], cwd=work, check=True, timeout=60,
                   env={**os.environ, "OUT": str(out), "SESSION_LOG": str(log)}, capture_output=True)
    subprocess.run(f"cat {out}/board_runs.tgz.part-* > {tmp_path}/board.tgz", shell=True, check=True)
    with tarfile.open(tmp_path / "board.tgz") as board:
        names = {Path(n).name for n in board.getnames() if Path(n).suffix}
    assert names == {"run.json", "best.pt.sha256"}
    with tarfile.open(out / "attention_last.tgz") as maps:
        assert [n for n in maps.getnames() if n.endswith(".npz")] == ["mqar_runs/board/runs/abc/attention/last.npz"]


def test_poll_waits_until_the_session_is_done_then_returns_at_once(tmp_path):
    """`poll S` sleeps up to S seconds but returns as soon as progress.txt says "all done", so a
    long poll never holds a machine whose work has ended; without it, it waits the S seconds."""
    import time

    work, out, log = tmp_path / "work", tmp_path / "out", tmp_path / "log"
    (work / "benchmarks").mkdir(parents=True)
    (work / "benchmarks" / "gpu_session.sh").write_text((ROOT / "benchmarks" / "gpu_session.sh").read_text())
    out.mkdir()
    log.mkdir()
    env = {**os.environ, "OUT": str(out), "SESSION_LOG": str(log)}

    def poll(seconds: int) -> float:
        start = time.monotonic()
        subprocess.run(["bash", "benchmarks/gpu_session.sh", "poll", str(seconds)], cwd=work, check=True,
                       timeout=120, env=env, capture_output=True)
        return time.monotonic() - start

    (log / "progress.txt").write_text("0s start board\n")
    assert poll(2) >= 2  # still running: the whole wait
    (log / "progress.txt").write_text("0s start board\n900s all done\n")
    assert poll(100) < 50  # done: at once, not after 100 s
    assert (out / "session.tgz").exists()


def test_maintainers_page_names_only_scripts_and_phases_that_exist():
    """docs/maintaining.md is the how-to for the board's GPU sessions: a renamed script or phase
    must not leave it pointing at nothing."""
    page = (ROOT / "docs" / "maintaining.md").read_text()
    scripts = set(re.findall(r"benchmarks/[\w/]+\.(?:py|sh)", page))
    assert {"benchmarks/board_todo.py", "benchmarks/gpu_session.sh", "benchmarks/update_board.py"} <= scripts
    assert [s for s in scripts if not (ROOT / s).is_file()] == []
    session = (ROOT / "benchmarks" / "gpu_session.sh").read_text()
    handled = set(re.findall(r"^\s+([\w|@*]+)\)", session, flags=re.M))
    patterns = {p for case in handled for p in case.split("|")}
    phases = re.findall(r"^\| `(\w+)", page, flags=re.M)  # the phase table's first column
    assert {"board", "todo", "tests", "models", "matrix", "wait"} <= set(phases)
    assert [p for p in phases if p not in patterns and f"{p}@*" not in patterns] == []
