"""ZoneMinder's pyzm gateway (`POST /api/v1/infer`, zmeventnotification 7.x).

routes.py: its handlers and OpenAPI entries; render.py: its answers."""
