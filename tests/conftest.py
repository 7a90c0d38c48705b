import pytest
import torch


def pytest_collection_modifyitems(config, items):
    # Tests that autotune Triton kernels on first use (flash-linear-attention, minutes on a
    # fresh cache) run last, so that a time limit cuts them and not the quick ones.
    items.sort(key=lambda item: "triton_autotune" in item.keywords)  # stable: order kept otherwise
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _kernel_choice_restored():
    """`mqarbench run` settles its kernel choice in os.environ for the workers it starts; in a test
    process that must not outlive the test. Whatever the suite was started with stays. (Not
    monkeypatch.delenv: it records nothing for a variable that is not set.)"""
    import os

    names = ("MQARBENCH_DETERMINISTIC", "CUBLAS_WORKSPACE_CONFIG", "TRITON_CACHE_AUTOTUNING")
    before = {name: os.environ.get(name) for name in names}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
