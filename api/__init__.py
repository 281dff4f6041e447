"""The ways in: the `evoprune` command line and (later) the HTTP service."""
