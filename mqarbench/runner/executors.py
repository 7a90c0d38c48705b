"""Executors: where runs execute. ``local`` (this process, or K worker processes sharing one GPU)
and ``ray`` (one Ray task per run). They only schedule: every run goes through ``job.execute``,
so the executor never changes a result.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
from typing import Callable

from mqarbench.errors import UserError
from mqarbench.runner.job import execute
from mqarbench.runner.plan import RunSpec

# called with (spec, record) when a run finishes
Done = Callable[[RunSpec, dict], None]
# called with (spec, epoch, step, steps per epoch) after every optimizer step
Step = Callable[[RunSpec, int, int, int], None]
RAY_RETRIES = 3
# the environment that picks kernels: worker processes inherit it, a Ray cluster's workers are sent it
KERNEL_VARIABLES = ("MQARBENCH_KERNELS", "MQARBENCH_SELECTIVE_SCAN", "MQARBENCH_LONG_CONV", "MQARBENCH_GLOBAL_MIXER",
                    "MQARBENCH_CROSS_ENTROPY", "MQARBENCH_RMS_NORM", "MQARBENCH_DETERMINISTIC",
                    "CUBLAS_WORKSPACE_CONFIG", "TRITON_CACHE_AUTOTUNING")


def kernel_environment() -> dict[str, str]:
    """The kernel-picking variables set in this process."""
    return {name: os.environ[name] for name in KERNEL_VARIABLES if name in os.environ}


def run_local(specs: list[RunSpec], done: Done, on_step: Step | None = None, workers: int = 1) -> None:
    """Run one after another here, or on ``workers`` processes (several runs share one GPU)."""
    if workers <= 1:
        for spec in specs:
            step = (lambda e, s, n, spec=spec: on_step(spec, e, s, n)) if on_step else None
            done(spec, execute(spec, step))
        return
    ctx = mp.get_context("spawn")  # CUDA cannot be shared with a forked child
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(execute, spec): spec for spec in specs}
        try:
            for future in cf.as_completed(futures):
                done(futures[future], future.result())
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError('--executor ray needs Ray: pip install "mqarbench[distributed]"') from None
    return ray


def _unwrap(err: Exception) -> Exception:
    cause = getattr(err, "cause", None)
    return cause if isinstance(cause, UserError) else err


def run_ray(specs: list[RunSpec], done: Done, address: str | None = None, workers_per_gpu: int = 1,
            num_cpus: int | None = None) -> None:
    """One Ray task per run (a GPU share each where the cluster has GPUs), retried if killed.

    A retried task resumes from the run's last epoch checkpoint; finished runs are on disk.
    """
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        kwargs = {"address": address} if address else {"num_cpus": num_cpus, "include_dashboard": False}
        ray.init(ignore_reinit_error=True, log_to_driver=False, **kwargs)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        env = kernel_environment()  # a cluster's workers did not start from this process's environment
        task = ray.remote(num_gpus=1 / workers_per_gpu if gpus else 0, num_cpus=1, max_retries=RAY_RETRIES,
                          **({"runtime_env": {"env_vars": env}} if env else {}))(execute)
        pending = {task.remote(spec): spec for spec in specs}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(ready[0])
            try:
                record = ray.get(ready[0])
            except Exception as err:  # noqa: BLE001 - re-raised as the worker's own error
                raise _unwrap(err) from None
            done(spec, record)
    finally:
        if started:
            ray.shutdown()
