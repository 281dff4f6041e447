"""The experiment configs: the embedded demo and the paper datasets, shipped as package data."""
