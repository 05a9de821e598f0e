"""DOODS (`GET /detectors`, `POST /detect`), for Home Assistant's `doods` integration.

routes.py: its handlers and OpenAPI entries; render.py: its answers."""
