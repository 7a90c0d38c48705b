"""Suites: experiments (train task -> test task) grouped into the paper's tables.

A model is trained once per train task and tested on every test task paired with it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from mqarbench.data.spec import list_tasks, load_task
from mqarbench.data.yaml_io import read_yaml, validate
from mqarbench.errors import UserError

# The paper's tables an experiment can fill (its `table` field), with their titles: the CLI's
# tables and the leaderboard's pages both take them from here.
TABLES = {
    "table3": "Main results (Table 3)",
    "table1": "Positional shortcuts (Table 1)",
    "table2": "N-gram shortcuts (Table 2)",
    "fig6a": "Position robustness (Fig. 6a)",
}


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str  # e.g. "Std-Last"
    train: str
    test: str
    table: str  # e.g. "table3", "table1", "table2", "fig6a"


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    description: str
    include: list[str] = Field(default_factory=list)  # other suites whose experiments join this one
    experiments: list[Experiment] = Field(default_factory=list)

    def train_tasks(self) -> list[str]:
        return list(dict.fromkeys(e.train for e in self.experiments))

    def tests_for(self, train: str) -> list[str]:
        return list(dict.fromkeys(e.test for e in self.experiments if e.train == train))


_ADAPTER = TypeAdapter(Suite)


def _suites_dir():
    from mqarbench.paths import tasks_dir

    return tasks_dir() / "suites"


def list_suites() -> list[str]:
    return sorted(p.stem for p in _suites_dir().glob("*.yaml"))


def load_suite(name: str, _seen: tuple[str, ...] = ()) -> Suite:
    """Read ``tasks/suites/<name>.yaml``, merge its includes (each train/test pair once), check its tasks."""
    path = _suites_dir() / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"unknown suite {name!r}; known suites: {', '.join(list_suites())}")
    if name in _seen:
        raise UserError(f"{path}: suite {name!r} includes itself through {' -> '.join(_seen)}")
    suite = validate(_ADAPTER, read_yaml(path), path)
    if suite.name != name:
        raise UserError(f"{path}: field `name`: {suite.name!r} must match the file name {name!r}")
    merged, pairs = [], set()
    for exp in suite.experiments + [e for inc in suite.include for e in load_suite(inc, _seen + (name,)).experiments]:
        if (exp.train, exp.test) not in pairs:
            pairs.add((exp.train, exp.test))
            merged.append(exp)
    known = set(list_tasks())
    for exp in merged:
        for task in (exp.train, exp.test):
            if task not in known:
                raise UserError(f"{path}: experiment {exp.name!r} names unknown task {task!r}; "
                                f"known tasks: {', '.join(sorted(known))}")
    for train in dict.fromkeys(e.train for e in merged):
        if load_task(train).test_only:
            raise UserError(f"{path}: task {train!r} is test only and cannot be a train task")
    return suite.model_copy(update={"experiments": merged, "include": []})
