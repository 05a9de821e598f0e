"""ZoneMinder's pyzm gateway (`POST /api/v1/infer`, zmeventnotification 7.x).

routes.py: its handlers and OpenAPI entries; render.py: its answers."""

from mlapi.dialects.zoneminder.routes import DIALECT

__all__ = ["DIALECT"]
