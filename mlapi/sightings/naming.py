"""What people do with the faces seen, for every front end (the API, the CLI, the console):
list the groups of unknown faces with a guess at who each may be, name a group (its best
faces become samples, every face in it that person's), and correct a recognition that was
wrong (the sample that caused it goes)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlapi.enroll import SAME_SAMPLE_AT
from mlapi.errors import GalleryError, UnknownSighting
from mlapi.similarity import MATCH_AT, normalise, similarity
from mlapi.stores import Cluster, Faces, Sighting, Sightings, rules

SAMPLES_PER_NAME = 3  # a group's best faces that become samples when it is named
MAYBE_AT = 0.45  # a group this similar to a known person is offered as "maybe NAME"


@dataclass(frozen=True)
class Named:
    name: str
    samples: tuple[str, ...]  # the new samples' ids
    attributed: int  # sightings now the person's
    also_matches: tuple[str, float] | None = None  # another person a new sample resembles


def shown_named(named: Named) -> dict[str, Any]:
    """A naming's outcome as the API and the console give it."""
    warning = None
    if named.also_matches is not None:
        other, score = named.also_matches
        warning = (
            f"these faces also match {other!r} (similarity {score:.2f}); while both hold "
            "them, recognition names neither"
        )
    return {
        "name": named.name,
        "samples": list(named.samples),
        "attributed": named.attributed,
        "warning": warning,
    }


def iso(seconds: float) -> str:
    """A time as the API gives it: UTC, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def maybe(faces: Faces, cluster: Cluster) -> dict[str, Any] | None:
    """The known person a group resembles, if any: {"name", "similarity"}."""
    match = faces.match(cluster.centroid, cluster.model)
    if match is None:
        return None
    score = similarity(match.similarity, cluster.model)
    return {"name": match.name, "similarity": round(score, 4)} if score >= MAYBE_AT else None


def shown_sighting(s: Sighting, picture_url: str) -> dict[str, Any]:
    """A sighting as the API and the console give it; `picture_url` has {id}."""
    shown: dict[str, Any] = {
        "id": s.id,
        "seen": iso(s.seen),
        "source": s.source,
        "route": s.route,
        "client": s.client,
        "box": list(s.box),
        "quality": round(s.quality, 4),
        "picture": picture_url.format(id=s.id),
    }
    if s.person is not None:
        shown["name"] = s.person
        shown["similarity"] = round(s.similarity, 4)
    return shown


def shown_cluster(faces: Faces, c: Cluster, picture_url: str) -> dict[str, Any]:
    return {
        "id": c.id,
        "count": c.count,
        "first_seen": iso(c.first_seen),
        "last_seen": iso(c.last_seen),
        "maybe": maybe(faces, c),
        "sightings": [shown_sighting(s, picture_url) for s in c.sightings],
    }


def unknown_listing(
    faces: Faces,
    sightings: Sightings,
    picture_url: str,
    best: int = 6,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    """The groups of unknown faces, most recently seen first, a page at a time."""
    clusters = sightings.clusters(best)
    page = clusters[offset : offset + limit]
    return {
        "clusters": [shown_cluster(faces, c, picture_url) for c in page],
        "total": len(clusters),
        "unknown_faces": sum(c.count for c in clusters),
    }


def name_cluster(
    faces: Faces,
    sightings: Sightings,
    cluster_id: str,
    name: str,
    chosen: list[str] | None = None,
    samples: int = SAMPLES_PER_NAME,
) -> Named:
    """Name a group (or the `chosen` sightings of it): its best faces (by quality) become
    samples of `name` (new or known), skipping a face the person already has; every face
    named becomes that person's sighting, so their history reaches back."""
    name = rules.person_name(name)
    cluster = sightings.cluster(cluster_id)
    members = list(cluster.sightings)  # best first
    if chosen is not None:
        wanted = set(chosen)
        stray = wanted - {s.id for s in members}
        if stray:
            raise UnknownSighting(f"sighting {sorted(stray)[0]!r} is not in group {cluster_id!r}")
        members = [s for s in members if s.id in wanted]
    if not members:
        raise GalleryError("name at least one face")
    vectors = sightings.embeddings([s.id for s in members])
    added: list[str] = []
    also: tuple[str, float] | None = None
    for s in members:
        if len(added) == samples:
            break
        vector = vectors.get(s.id)
        if vector is None:
            continue
        ranking = faces.ranking(np.asarray(vector, np.float32), s.model)
        own = [m for m in ranking if m.name == name]
        if own and own[0].similarity >= SAME_SAMPLE_AT:
            continue  # the person already has this very face
        others = [m for m in ranking if m.name != name]
        if others and also is None:
            close = similarity(others[0].similarity, s.model)
            if close >= MATCH_AT:
                also = (others[0].name, round(close, 4))
        added.append(faces.add(name, vector, s.model, f"sighting {s.id}", sightings.picture(s.id)))
    attributed = sightings.attribute([s.id for s in members], name)
    return Named(name, tuple(added), attributed, also)


def not_person(faces: Faces, sightings: Sightings, sighting_id: str) -> dict[str, Any]:
    """A recognition that was wrong: the sighting is unknown again (a group of its own),
    and the person's sample that made the match, if one did, is removed."""
    s = sightings.sighting(sighting_id)
    if s.person is None:
        raise UnknownSighting(f"sighting {sighting_id!r} is not of a known person")
    vector = sightings.embeddings([s.id]).get(s.id)
    removed = None
    if vector is not None:
        best: tuple[float, str] | None = None
        for sample in faces.samples():
            if sample.name != s.person or sample.model != s.model:
                continue
            found = faces.sample(sample.id)
            if found is None:
                continue
            cosine = float(np.dot(normalise(np.asarray(found[1], np.float32)), vector))
            if best is None or cosine > best[0]:
                best = (cosine, sample.id)
        if best is not None and similarity(best[0], s.model) >= MATCH_AT:
            faces.remove_sample(best[1])  # it named this face: it would again
            removed = best[1]
            faces.create(s.person)  # their last sample gone, they stay a person (with a history)
    cluster = sightings.unattribute(sighting_id)
    return {"sighting": sighting_id, "cluster": cluster, "was": s.person, "removed_sample": removed}


def rename_person(faces: Faces, sightings: Sightings, old: str, new: str) -> int:
    """Rename a person in the gallery; their sightings follow. Samples moved."""
    moved = faces.rename(old, new)
    sightings.renamed(old, rules.person_name(new))
    return moved


def history(
    sightings: Sightings, name: str, picture_url: str, limit: int = 50, offset: int = 0
) -> dict[str, Any]:
    """Where and when `name` was seen, newest first."""
    found = sightings.seen(name, limit, offset)
    return {"sightings": [shown_sighting(s, picture_url) for s in found]}
