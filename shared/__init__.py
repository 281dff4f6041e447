"""Types every layer uses: experiment config, mask encoding, Pareto maths, stores, events."""
