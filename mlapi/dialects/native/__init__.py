"""mlapi's own API: POST /api/v1/detect, answered in any of the CLI's --format renderers.

routes.py: its handlers and OpenAPI entries."""
