"""`mlapi db copy`: the data folder's TinyDB files into PostgreSQL, rows keeping their ids
and hashes, so keys, tokens, samples and the faces seen (groups included) go on working."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import psycopg

from mlapi import text
from mlapi.stores import pg_sightings
from mlapi.stores.database import (
    LONG,
    Database,
)
from mlapi.stores.files import FileSnapshot


def copy_files(folder: Path, db: Database) -> dict[str, tuple[int, int]]:
    """Copy the TinyDB files in `folder` (users, API keys, the signing secret, the gallery,
    the known plates, the faces seen with their pictures) into the database: {what:
    (copied, already there)}. Rows keep their ids and hashes, so keys, tokens and samples
    go on working, and a second run copies nothing again."""
    users = FileSnapshot(folder / "users.json").read()[0]
    gallery = FileSnapshot(folder / "gallery.json").read()[0]
    plates = FileSnapshot(folder / "plates.json").read()[0]
    seen = FileSnapshot(folder / "sightings.json").read()[0].get("sightings", {})
    secret_file = folder / "jwt.secret"
    counts: dict[str, tuple[int, int]] = {}

    def insert(
        conn: psycopg.Connection[Any], what: str, sql: str, rows: list[tuple[Any, ...]]
    ) -> int:
        with conn.cursor() as cursor:  # one pipelined round of inserts, not one trip each
            cursor.executemany(sql, rows)
            copied = max(cursor.rowcount, 0) if rows else 0
        counts[what] = (copied, len(rows) - copied)
        return copied

    with db.connection(LONG) as conn, conn.transaction():
        insert(
            conn,
            "users",
            "INSERT INTO mlapi_users VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            [(u["name"], u["hash"], u["created"]) for u in users.get("users", {}).values()],
        )
        insert(
            conn,
            "API keys",
            "INSERT INTO mlapi_keys VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [
                (k["id"], k["name"], k["user"], k["sha256"], k["created"], k.get("last_used"))
                for k in users.get("keys", {}).values()
            ],
        )
        secrets_ = [(secret_file.read_text().strip(),)] if secret_file.exists() else []
        insert(
            conn,
            "signing secret",
            "INSERT INTO mlapi_secret VALUES (1, %s) ON CONFLICT DO NOTHING",
            secrets_,
        )
        samples = [
            (r["id"], text.shown(r["name"]), r["model"], r["created"], r.get("source", ""),
             r["embedding"])
            for r in gallery.get("samples", {}).values()
        ]  # fmt: skip
        if insert(
            conn,
            "face samples",
            "INSERT INTO mlapi_samples VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            samples,
        ):
            conn.execute("UPDATE mlapi_gallery_version SET version = version + 1")
        faces = folder / "faces"
        insert(
            conn,
            "face thumbnails",
            "INSERT INTO mlapi_thumbnails SELECT %s, %s WHERE EXISTS "
            "(SELECT 1 FROM mlapi_samples WHERE id = %s) ON CONFLICT DO NOTHING",
            [
                (r["id"], jpeg.read_bytes(), r["id"])
                for r in gallery.get("samples", {}).values()
                if (jpeg := faces / f"{r['id']}.jpg").is_file()
            ],
        )
        insert(
            conn,
            "known plates",
            "INSERT INTO mlapi_plates VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [
                (r["name"], r.get("plate", ""), r.get("pattern", ""), r["created"])
                for r in plates.get("plates", {}).values()
            ],
        )
        pictures = folder / "sightings"
        if insert(
            conn,
            "face sightings",
            f"{pg_sightings.INSERT} ON CONFLICT DO NOTHING",
            [
                (r["id"], r["seen"], r["model"], base64.b64decode(r["embedding"]), r["box"],
                 r["quality"], r.get("person"), r.get("similarity", 0.0), r.get("source", ""),
                 r.get("route", ""), r.get("client", ""), r.get("cluster"),
                 jpeg.read_bytes() if (jpeg := pictures / f"{r['id']}.jpg").is_file() else None)
                for _, r in sorted(seen.items(), key=lambda doc: int(doc[0]))
            ],
        ):  # fmt: skip
            pg_sightings.rebuild_sums(conn)  # the groups' sums, for placing new faces
    return counts
