from mqarbench.results.schema import RESULTS_SCHEMA
from mqarbench.results.select import select_best_lr
from mqarbench.results.store import to_table


def _row(lr, valid, seed=0, test="last"):
    row = {name: None for name in RESULTS_SCHEMA.names}
    row.update(model="mamba", adapter_version="1", preset="tiny", train_task="standard",
               train_task_hash="h", seed=seed, lr=lr, valid_query_accuracy=valid, test_task=test)
    return row


def test_best_lr_kept_per_seed_with_ties_to_smaller_rate():
    table = to_table([
        _row(1e-3, 50.0), _row(1e-2, 80.0), _row(1e-2, 80.0, test="shuffle"),
        _row(1e-3, 70.0, seed=1), _row(1e-2, 70.0, seed=1),
    ])
    kept = select_best_lr(table).to_pylist()
    assert {(r["seed"], r["lr"], r["test_task"]) for r in kept} == {
        (0, 1e-2, "last"), (0, 1e-2, "shuffle"), (1, 1e-3, "last")}
