"""Train, select and evaluate models on suites: run matrix, training (App. B.5), metrics, executors."""
