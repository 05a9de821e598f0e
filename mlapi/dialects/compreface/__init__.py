"""CompreFace's REST API, for Double Take's CompreFace detector and `compreface-sdk`.

routes.py: its handlers and OpenAPI entries; render.py: its answers."""
