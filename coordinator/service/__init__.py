"""The HTTP service's side of the coordinator: runner and analysis actors, launcher, publishing, records."""
