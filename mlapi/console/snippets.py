"""Each documented client's configuration for this server and one API key: what the console
shows next to a key, ready to paste.

Every snippet is written in the shape its client reads, checked against that client's own
code or example file (named beside each one); tests/test_console.py parses each the way its
client does (PyYAML, configparser) and sends the request the client would build from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Snippet:
    client: str
    where: str  # the file or screen it goes in
    text: str
    syntax: str = "yaml"  # how the client reads it: yaml, ini or text (a settings screen)


def snippets(url: str, key: str) -> list[Snippet]:
    """`url`: the server as clients reach it (http://HOST:PORT); `key`: an API key."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    base = url.rstrip("/")
    # deepstack-python (Home Assistant's DeepStack component) only speaks plain http.
    plain_http = (
        ""
        if parts.scheme == "http"
        else "    # speaks plain http only: give the server's http address and port\n"
    )
    return [
        # robmarkcole/HASS-Deepstack-object, custom_components/deepstack_object/
        # image_processing.py: PLATFORM_SCHEMA's ip_address, port, api_key, targets
        # ([{target, confidence}]); deepstack-python builds http://{ip}:{port}/v1/vision
        # and sends api_key in the form.
        Snippet(
            "Home Assistant",
            "configuration.yaml (deepstack_object custom component)",
            "image_processing:\n"
            "  - platform: deepstack_object\n"
            f"{plain_http}"
            f"    ip_address: {host}\n"
            f"    port: {port}\n"
            f"    api_key: {key}\n"
            "    targets: [{target: person}]\n"
            "    source: [{entity_id: camera.front}]\n",
        ),
        # blakeblackshear/frigate, frigate/detectors/plugins/deepstack.py:
        # DeepstackDetectorConfig's api_url (posted to as is), api_key (a form field) and
        # api_timeout (0.1 s by default) under detectors.NAME with type: deepstack.
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
        # jakowenko/double-take, api/src/util/detectors/compreface.js: detectors.compreface's
        # url (it posts to URL/api/v1/recognition/recognize), key (the x-api-key header) and
        # det_prob_threshold; defaults in api/src/constants/defaults.js.
        Snippet(
            "Double Take",
            "config.yml",
            "detectors:\n"
            "  compreface:\n"
            f"    url: {base}\n"
            f"    key: {key}\n"
            "    det_prob_threshold: 0.8\n",
        ),
        # No file: Blue Iris (Settings → AI) and Agent DVR (server settings) take a
        # DeepStack / CodeProject.AI server's address and send no key, as CodeProject.AI's
        # own client (PyPI codeproject-ai-api: http://{ip}:{port}/v1/vision) does not.
        Snippet(
            "Blue Iris / Agent DVR",
            "Settings → AI → DeepStack / CodeProject.AI server",
            f"IP: {host}\n"
            f"Port: {port}\n"
            f"URL (Agent DVR): {base}\n"
            "No API key: start mlapi with --keyless-networks CAMERA_SERVER_IP/32\n",
            "text",
        ),
        # pliablepixels/zmeventnotification 7.x, hook/objectconfig.example.yml (its remote:
        # section) and hook/zmes_hook_helpers/utils.py (remote: is flattened into the
        # config, read with yaml.safe_load); hook/zm_detect.py hands ml_gateway, ml_user,
        # ml_password and ml_gateway_mode to pyzm, whose GatewayClient posts to
        # ML_GATEWAY/login and ML_GATEWAY/infer.
        Snippet(
            "ZoneMinder (zmeventnotification 7)",
            "objectconfig.yml",
            "remote:\n"
            f"  ml_gateway: {base}/api/v1\n"
            "  ml_gateway_mode: image   # url: mlapi fetches frames (--allow-url-fetch)\n"
            "  ml_user: YOUR_MLAPI_USER     # zm_detect logs in; it takes no API key\n"
            "  ml_password: YOUR_PASSWORD\n",
        ),
        # ZoneMinder/zmeventnotification 5.x-6.0, hook/objectconfig.ini: the [remote]
        # section's ml_gateway, ml_user, ml_password (read with configparser); zm_detect
        # logs in at ML_GATEWAY/login and posts to ML_GATEWAY/detect/object.
        Snippet(
            "ZoneMinder (zmeventnotification 5-6.0)",
            "objectconfig.ini",
            "[remote]\n"
            f"ml_gateway={base}/api/v1\n"
            "ml_fallback_local=no\n"
            "ml_user=YOUR_MLAPI_USER\n"
            "ml_password=YOUR_PASSWORD\n",
            "ini",
        ),
        # xemle/home-gallery, packages/cli/src/config/expand-defaults.js and
        # packages/cli/src/extractor.js: extractor.apiServer.url (https://api.home-gallery.org
        # unless set; GALLERY_API_SERVER in its docker compose);
        # packages/extractor/src/extract/image/api-server.js posts to URL/objects,
        # URL/faces and URL/embeddings with no header, so the key rides in the path.
        Snippet(
            "HomeGallery",
            "gallery.config.yml",
            "extractor:\n"
            "  apiServer:\n"
            f"    url: {base}/hg/{key}\n"
            "    timeout: 30\n"
            "    concurrent: 5\n",
        ),
        # home-assistant/core, homeassistant/components/doods/image_processing.py:
        # PLATFORM_SCHEMA's url, detector and auth_key; pydoods sends auth_key as the
        # doods-auth-key header to URL/detectors and URL/detect.
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
