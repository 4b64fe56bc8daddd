"""The training loop, its metrics, checkpoints, run folder and plots."""
