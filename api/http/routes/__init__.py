"""The HTTP routes, one module per resource: experiments, results, artifacts, health and the web page."""
