"""benchmarks/runs_table.py: per-run validation and the board's cells for runs not yet submitted."""

from bench_scripts import load_script
from mqarbench.results.schema import RESULTS_SCHEMA
from mqarbench.results.store import to_table, write_results


def _row(seed, lr, valid, test, accuracy, slice_="overall"):
    row = {name: None for name in RESULTS_SCHEMA.names}
    row.update(model="gla", adapter_version="1", preset="small", train_task="k2v2", train_task_hash="h",
               seed=seed, lr=lr, valid_query_accuracy=valid, test_task=test, query_accuracy=accuracy,
               slice=slice_)
    return row


def test_cells_take_each_seeds_best_learning_rate_and_only_the_overall_slice(tmp_path):
    rows = {  # run dir -> its rows: seed 0 is best at 3e-3, seed 1 at 1e-3
        "a": [_row(0, 1e-3, 20.0, "k2v2", 10.0), _row(0, 1e-3, 20.0, "k2v2", 99.0, slice_="cell")],
        "b": [_row(0, 3e-3, 60.0, "k2v2", 50.0)],
        "c": [_row(1, 1e-3, 40.0, "k2v2", 30.0)],
        "d": [_row(1, 3e-3, 30.0, "k2v2", 90.0)],
    }
    for run, run_rows in rows.items():
        (tmp_path / run).mkdir()
        write_results(to_table(run_rows), tmp_path / run / "results.parquet")
    lines = load_script("runs_table").tables(tmp_path)
    assert "| gla | k2v2 | 0.001 | 20.0 / 40.0 |" in lines
    assert "| gla | k2v2 | 0.003 | 60.0 / 30.0 |" in lines
    # seed 0 -> 50.0 (3e-3), seed 1 -> 30.0 (1e-3): mean 40, sample std 14.14
    assert "| gla | k2v2 -> k2v2 | 40.00 ± 14.14 (n=2) |" in lines
