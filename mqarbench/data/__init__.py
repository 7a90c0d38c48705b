"""Task specs, suites, presets and the versioned datasets generated from them."""

from mqarbench.data.presets import PRESETS, load_preset
from mqarbench.data.resolved import ResolvedSpec, resolve
from mqarbench.data.spec import TaskSpec, list_tasks, load_task
from mqarbench.data.store import Dataset, build_dataset, dataset_hash, verify_datasets
from mqarbench.data.suites import Experiment, Suite, list_suites, load_suite

__all__ = [
    "PRESETS", "Dataset", "Experiment", "ResolvedSpec", "Suite", "TaskSpec", "build_dataset", "dataset_hash",
    "list_suites", "list_tasks", "load_preset", "load_suite", "load_task", "resolve", "verify_datasets",
]
