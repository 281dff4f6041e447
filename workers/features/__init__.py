"""Features: image sources, backbones, the content-addressed feature cache and the in-memory FeatureSet."""
