"""The DeepStack / CodeProject.AI dialect (`/v1/vision/*`), for Home Assistant, Frigate,
Blue Iris, Agent DVR, Double Take and CodeProject.AI's own clients.

routes.py: its handlers and OpenAPI entries; render.py: its answers."""
