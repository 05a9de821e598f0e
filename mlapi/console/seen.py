"""The console's part of the memory of faces seen: the "Unknown faces" page (groups of faces
recognition could not name, shown as face grids, named once, merged, forgotten; one face
moved out or forgotten) and each person's history on the People page ("Not NAME" when a
recognition was wrong). The handlers are the API's (mlapi.web.seen), behind the session."""

from __future__ import annotations

from mlapi.console.access import signed_in_only
from mlapi.web.kit import (
    MERGE_BODY,
    NAME_BODY,
    Pages,
    history_params,
    seen_handlers,
    unknown_params,
)

# The page's own picture address, behind its session; smaller pages than the API's.
PAGES = Pages(picture="/console/api/sightings/{id}/picture", groups=50, best=8, history=20)
_made = seen_handlers(PAGES)

unknown = signed_in_only(
    "the groups of unknown faces, most recently seen first, each with its best faces and "
    "maybe a known person it resembles; ?cluster=ID: every face of one group; `remembering`: "
    "whether this server keeps the faces it sees (false with --no-face-memory)",
    params=unknown_params(PAGES),
)(_made["unknown"])
name_cluster = signed_in_only(
    "name a group: its best faces become samples of the person (new or known), every face "
    "in it theirs: {name, samples, attributed, warning}",
    body=NAME_BODY,
)(_made["name_cluster"])
merge = signed_in_only("merge groups of unknown faces into the first: {cluster}", body=MERGE_BODY)(
    _made["merge"]
)
forget_cluster = signed_in_only("forget a group of unknown faces and its pictures: {removed}")(
    _made["forget_cluster"]
)
move_out = signed_in_only("move one face out of its group into a group of its own: {cluster}")(
    _made["move_out"]
)
forget_sighting = signed_in_only("forget one face seen and its picture: {removed: ID}")(
    _made["forget_sighting"]
)
picture = signed_in_only("a face seen, as the picture kept of it (JPEG)")(_made["picture"])
not_person = signed_in_only(
    "not this person after all: the face is unknown again (a group of its own) and the "
    "sample that named it is removed: {sighting, cluster, was, removed_sample}"
)(_made["not_person"])
person_sightings = signed_in_only(
    "where and when a person was seen, newest first: {sightings, offset, limit}",
    params=history_params(PAGES),
)(_made["person_sightings"])
