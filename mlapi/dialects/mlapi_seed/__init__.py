"""The seed mlapi's route, `POST /api/v1/detect/object`, which zm_detect also calls: an
image, or (its event path) a ZoneMinder event id whose frames the server reads.

routes.py: the handler and its OpenAPI entry; events.py: the ZoneMinder portal client and
the event path's options. Its answers are mlapi.render.mlapi_seed (the CLI prints them too).
"""
