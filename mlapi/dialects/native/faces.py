"""The faces seen, in mlapi's own API: the groups of unknown faces (list, name, merge, move
one face out, forget) and each person's sightings (history, "not this person"). The
handlers are the console's too (mlapi.web.seen), here behind API keys and tokens."""

from __future__ import annotations

from mlapi.openapi import operation
from mlapi.web.kit import (
    MERGE_BODY,
    NAME_BODY,
    Pages,
    Routes,
    history_params,
    seen_handlers,
    unknown_params,
)

PAGES = Pages(picture="/api/v1/faces/sightings/{id}/picture")
_made = seen_handlers(PAGES)


def add_routes(routes: Routes) -> None:
    native = "native"
    routes.get(
        "/api/v1/faces/unknown",
        operation(
            "the groups of unknown faces recognition saw, most recently seen first: "
            "{clusters: [{id, count, first_seen, last_seen, maybe: {name, similarity} | null, "
            "sightings: [{id, seen, source, box, quality, picture}]}], total}; ?cluster=ID: "
            "every face of one group",
            tag=native,
            params=unknown_params(PAGES),
        )(_made["unknown"]),
    )
    routes.post(
        "/api/v1/faces/unknown/merge",
        operation("merge groups of unknown faces into the first: {cluster}", tag=native,
                  body=MERGE_BODY)(_made["merge"]),
    )  # fmt: skip
    routes.post(
        "/api/v1/faces/unknown/{cluster}/name",
        operation(
            "name a group: its best faces become samples of NAME (new or known), and every "
            "face in it NAME's sighting: {name, samples: [ids], attributed, warning}",
            tag=native,
            body=NAME_BODY,
        )(_made["name_cluster"]),
    )
    routes.delete(
        "/api/v1/faces/unknown/{cluster}",
        operation("forget a group of unknown faces (not a face, or nobody to name): {removed}",
                  tag=native)(_made["forget_cluster"]),
    )  # fmt: skip
    routes.post(
        "/api/v1/faces/sightings/{sighting}/move",
        operation("move one face out of its group into a group of its own: {cluster}",
                  tag=native)(_made["move_out"]),
    )  # fmt: skip
    routes.post(
        "/api/v1/faces/sightings/{sighting}/not",
        operation(
            "a recognition that was wrong: the face is unknown again (a group of its own) and "
            "the person's sample that matched it is removed: {sighting, cluster, was, "
            "removed_sample}",
            tag=native,
        )(_made["not_person"]),
    )
    routes.delete(
        "/api/v1/faces/sightings/{sighting}",
        operation("forget one sighting: {removed: ID}", tag=native)(_made["forget_sighting"]),
    )
    routes.get(
        "/api/v1/faces/sightings/{sighting}/picture",
        operation("a sighting's face picture (JPEG)", tag=native)(_made["picture"]),
    )
    routes.get(
        "/api/v1/faces/people/{name}/sightings",
        operation(
            "where and when a person was seen, newest first: {sightings: [{id, seen, source, "
            "box, similarity, picture}], offset, limit}",
            tag=native,
            params=history_params(PAGES),
        )(_made["person_sightings"]),
    )
