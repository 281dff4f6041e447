"""Analyses of a finished experiment: neuron importance, Grad-CAM heatmaps, ensembles, and their plots."""
