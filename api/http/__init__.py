"""The HTTP half of the ways in: the FastAPI app (app.py), its routes, schemas, dependencies and SSE."""
