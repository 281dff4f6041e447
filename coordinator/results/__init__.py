"""The results directory of an experiment: its layout, writer, checkpoint, summary and fronts."""
