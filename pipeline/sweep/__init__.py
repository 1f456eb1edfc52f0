"""One Ray Tune sweep: its plan, the Ray session, the trainable each trial runs, the callback
that records trials in MLflow, checkpoints, and grids of fixed trials."""
