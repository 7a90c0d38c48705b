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
