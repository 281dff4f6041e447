"""Runs the search: NSGA-II, dispatch of mask batches to workers, runs, checkpoints and results."""
