"""The ways in: the command line (cli/), the HTTP service (http/), the Python API, and what they share."""
