"""The OpenAPI document for `mlapi serve` (served at /api/v1/openapi.json)."""

from __future__ import annotations

from typing import Any

from mlapi import __version__

_IMAGE_BODY = {
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        },
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
    }
}
_RAW_JPEG = {
    "required": True,
    "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
}
_ERRORS = {
    "400": {"description": "bad input: not an image, bad option, unknown parameter"},
    "401": {"description": "missing or invalid credentials"},
    "413": {"description": "body or image too large"},
    "503": {"description": "busy (see Retry-After) or model not installed"},
}


def _op(
    summary: str,
    *,
    body: dict | None = None,
    params: list | None = None,
    auth: bool = True,
    tag: str = "native",
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "responses": {"200": {"description": "OK"}, **(_ERRORS if body else {})},
    }
    if body:
        op["requestBody"] = body
    if params:
        op["parameters"] = params
    if not auth:
        op["security"] = []
    return op


def _body(media: str, properties: dict[str, Any], required: list[str] | None = None) -> dict:
    """A required request body of one media type: an object with these properties."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return {"required": True, "content": {media: {"schema": schema}}}


_BINARY = {"type": "string", "format": "binary"}
_COMPREFACE_FILE = _body("multipart/form-data", {"file": _BINARY})


def _query(name: str, description: str, enum: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if enum:
        schema["enum"] = enum
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _hg(summary: str) -> dict[str, Any]:
    return {"post": _op(summary, body=_RAW_JPEG, tag="homegallery")}


def document() -> dict[str, Any]:
    key = {
        "name": "key",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "an API key (for clients that cannot send headers)",
    }
    paths: dict[str, Any] = {
        "/health": {"get": _op("liveness and uptime", auth=False, tag="meta")},
        "/ready": {"get": _op("200 once the models are loaded, else 503", auth=False, tag="meta")},
        "/metrics": {
            "get": _op(
                "Prometheus metrics: requests by route and status, queue depth, rejections, "
                "inference time per detector (no key needed with --public-metrics)",
                tag="meta",
            )
        },
        "/api/v1/health": {"get": _op("mlapi 2.x health check", auth=False, tag="mlapi")},
        "/api/v1/login": {
            "post": _op(
                "exchange a username and password for an access token",
                auth=False,
                tag="mlapi",
                body={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["username", "password"],
                                "properties": {
                                    "username": {"type": "string"},
                                    "password": {"type": "string"},
                                },
                            }
                        }
                    },
                },
            )
        },
        "/api/v1/models": {"get": _op("installed detectors and their options")},
        "/api/v1/openapi.json": {"get": _op("this document", auth=False, tag="meta")},
        "/api/v1/detect": {
            "post": _op(
                "detect with any detectors; canonical JSON (see result.schema.json)",
                body=_IMAGE_BODY,
                params=[
                    _query("models", "comma-separated detector names (default objects)"),
                    _query("format", "answer shape", ["native", "mlapi"]),
                    _query("MODEL.KEY", "a detector option, e.g. objects.confidence=0.5"),
                ],
            )
        },
        "/api/v1/detect/object": {
            "post": _op(
                "the seed mlapi's detection array",
                body=_IMAGE_BODY,
                tag="mlapi",
                params=[
                    _query("type", "what to detect", ["object", "face"]),
                    _query("gender", "add gender to faces", ["true", "false"]),
                    _query("delete", "do not keep the upload", ["true", "false"]),
                    _query("response_format", "zm_detect 6.x's shape", ["zm_detect"]),
                ],
            )
        },
        "/api/v1/infer": {
            "post": _op(
                "ZoneMinder pyzm gateway: one model (type=object|face) on one frame "
                "(multipart image, or url + zm_auth)",
                body=_body(
                    "multipart/form-data",
                    {
                        "type": {"type": "string", "enum": ["object", "face"]},
                        "name": {"type": "string"},
                        "min_confidence": {"type": "number"},
                        "image": _BINARY,
                        "url": {"type": "string"},
                        "zm_auth": {"type": "string"},
                        "verify_ssl": {"type": "string"},
                    },
                    ["type"],
                ),
                tag="zoneminder",
            )
        },
        "/detectors": {"get": _op("DOODS: the object detectors and their labels", tag="doods")},
        "/api/v1/recognition/recognize": {
            "post": _op(
                "CompreFace: faces with every subject's similarity (multipart file; "
                "face_plugins, det_prob_threshold, limit, prediction_count, status)",
                body=_COMPREFACE_FILE,
                tag="compreface",
            )
        },
        "/api/v1/detection/detect": {
            "post": _op("CompreFace: faces only", body=_COMPREFACE_FILE, tag="compreface")
        },
        "/api/v1/verification/verify": {
            "post": _op(
                "CompreFace: compare the faces of source_image and target_image",
                body=_COMPREFACE_FILE,
                tag="compreface",
            )
        },
        "/api/v1/recognition/faces": {
            "post": _op(
                "CompreFace: add an example of ?subject=NAME",
                body=_COMPREFACE_FILE,
                tag="compreface",
            ),
            "get": _op("CompreFace: list examples (page, size, subject)", tag="compreface"),
            "delete": _op("CompreFace: delete the examples of ?subject=NAME", tag="compreface"),
        },
        "/api/v1/recognition/subjects": {"get": _op("CompreFace: subjects", tag="compreface")},
        "/api/v1/recognition/subjects/{subject}": {
            "delete": _op("CompreFace: delete a subject", tag="compreface")
        },
        "/detect": {
            "post": _op(
                "DOODS: detect in a base64 image with per-label thresholds in percent",
                body=_body(
                    "application/json",
                    {
                        "id": {"type": "string"},
                        "detector_name": {"type": "string"},
                        "data": {"type": "string", "format": "byte"},
                        "detect": {"type": "object", "additionalProperties": {"type": "number"}},
                    },
                    ["data"],
                ),
                tag="doods",
            )
        },
        "/objects": _hg("HomeGallery objects"),
        "/faces": _hg("HomeGallery faces"),
        "/embeddings": _hg("HomeGallery image embedding"),
    }
    for name in ("objects", "faces", "embeddings"):
        op = _hg(f"HomeGallery {name}, authenticated by the base URL")
        op["post"]["parameters"] = [key]
        op["post"]["security"] = []
        paths[f"/hg/{{key}}/{name}"] = op
    form = {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "api_key": {"type": "string"},
                        "min_confidence": {"type": "number"},
                        "userid": {"type": "string"},
                    },
                }
            }
        },
    }
    deepstack = {
        "/v1/vision/detection": "COCO objects (DeepStack)",
        "/v1/vision/custom/{model}": "objects from a named detector; `list` lists them",
        "/v1/vision/face": "faces (DeepStack)",
        "/v1/vision/face/": "faces (DeepStack, trailing slash)",
        "/v1/vision/face/recognize": "known faces from the gallery",
        "/v1/vision/face/register": "add samples of `userid` (one or more images)",
        "/v1/vision/face/list": "known people",
        "/v1/vision/face/delete": "forget `userid`",
        "/v1/vision/face/match": "similarity of the faces in two images",
        "/v1/vision/scene": "not available: 403",
        "/v1/vision/alpr": "not available: 403",
    }
    for path, summary in deepstack.items():
        op = _op(summary, body=form, tag="deepstack")
        op["security"] = []  # the api_key form field
        if "{model}" in path:
            op["parameters"] = [
                {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
            ]
        paths[path] = {"post": op}
    paths["/v1/server/status/ping"] = {
        "get": _op("CodeProject.AI ping", auth=False, tag="deepstack")
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "mlapi", "version": __version__},
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": paths,
    }
