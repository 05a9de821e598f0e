"""Each documented client's configuration for this server and one API key, as the README
gives it: what the console shows next to a key, ready to paste."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Snippet:
    client: str
    where: str  # the file or screen it goes in
    text: str


def snippets(url: str, key: str) -> list[Snippet]:
    """`url`: the server as clients reach it (http://HOST:PORT); `key`: an API key."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    base = url.rstrip("/")
    return [
        Snippet(
            "Home Assistant",
            "configuration.yaml (deepstack_object custom component)",
            "image_processing:\n"
            "  - platform: deepstack_object\n"
            f"    ip_address: {host}\n"
            f"    port: {port}\n"
            f"    api_key: {key}\n"
            "    targets: [{target: person}]\n"
            "    source: [{entity_id: camera.front}]\n",
        ),
        Snippet(
            "Frigate",
            "config.yml",
            "detectors:\n"
            "  deepstack:\n"
            "    type: deepstack\n"
            f"    api_url: {base}/v1/vision/detection\n"
            f"    api_key: {key}\n"
            "    api_timeout: 0.5\n",
        ),
        Snippet(
            "Double Take",
            "config.yml",
            "detectors:\n"
            "  compreface:\n"
            f"    url: {base}\n"
            f"    key: {key}\n"
            "    det_prob_threshold: 0.8\n",
        ),
        Snippet(
            "Blue Iris / Agent DVR",
            "Settings → AI → DeepStack / CodeProject.AI server",
            f"IP: {host}\nPort: {port}\nURL (Agent DVR): {base}\n",
        ),
        Snippet(
            "ZoneMinder",
            "objectconfig.yml (zm_detect 6.x, remote mlapi)",
            "remote_ml_config:\n"
            "  enabled: yes\n"
            "  servers:\n"
            "    mlapi:\n"
            "      enabled: yes\n"
            f"      gateway: {base}/api/v1\n"
            "      user: YOUR_MLAPI_USER      # ZoneMinder logs in; it takes no API key\n"
            "      password: YOUR_PASSWORD\n",
        ),
        Snippet(
            "HomeGallery",
            "gallery.config.yml",
            f"api:\n  server: {base}/hg/{key}\n",
        ),
        Snippet(
            "DOODS",
            "configuration.yaml (doods integration)",
            "image_processing:\n"
            "  - platform: doods\n"
            f'    url: "{base}"\n'
            f"    auth_key: {key}\n"
            "    detector: default\n"
            "    source: [{entity_id: camera.front}]\n",
        ),
    ]
