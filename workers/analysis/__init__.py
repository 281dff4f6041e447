"""Analysis of a front: important neurons, Grad-CAM heatmaps and ensembles of front members."""
