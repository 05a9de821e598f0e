"""HomeGallery api-server shapes: /objects and /faces answers for a raw JPEG body.

routes.py: its handlers and OpenAPI entries; render.py: its answers."""
