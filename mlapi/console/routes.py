"""The web console: its page at `/`, its files, and the small JSON API its script calls
under `/console/api/` (sign-in, people, unknown faces, keys, status).

The page detects through the same route API clients use (`POST /api/v1/detect`, with the
session cookie and its CSRF header), so the boxes it draws are the API's answer. Everything
under `/console/api/` needs a signed-in browser: a key or token gets 401 there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from mlapi import __version__, edge, text
from mlapi.console.access import anyone, signed_in_only, user_of
from mlapi.console.history import EVERY, History
from mlapi.console.people import (
    add_person,
    create_person,
    people,
    recognise_photo,
    remove_person,
    remove_sample,
    rename_person,
    thumbnail,
)
from mlapi.console.plates import add_known_plate, plates, remove_plate
from mlapi.console.seen import (
    forget_cluster,
    forget_sighting,
    merge,
    move_out,
    name_cluster,
    not_person,
    person_sightings,
    picture,
    unknown,
)
from mlapi.console.snippets import snippets
from mlapi.engine import Engine
from mlapi.errors import AuthError, ModelMissing, UserError
from mlapi.images import decode, encode_jpeg
from mlapi.store import catalog
from mlapi.stores import rules
from mlapi.stores.console_sessions import SESSION_LIFETIME
from mlapi.web.kit import (
    ENGINE,
    SERVER,
    SESSION_COOKIE,
    Dialect,
    RequestError,
    Routes,
    check_password,
    console_session,
    in_pool,
    in_state,
    json_object,
    json_text,
    off_loop,
    own_host,
    plain_error,
    read_credentials,
    read_upload,
)

STATIC = Path(__file__).resolve().parent / "static"
FILES = {  # the only files served: nothing else under the folder is reachable
    "console.js": "text/javascript",
    "console.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
PREVIEW_SIDE = 1600  # long side of the picture drawn for a photo the browser cannot show
# What the Try page ticks at first: everything a person would look for in a photo.
TRY_FIRST = ("objects", "faces", "genderage", "emotion", "recognize")
HISTORY = web.AppKey("console_history", History)
SAMPLING = web.AppKey("console_sampling", asyncio.Task)


def _file(name: str) -> bytes:
    return (STATIC / name).read_bytes()


# -- the page and its files ----------------------------------------------------------------
@anyone("the web console's page")
async def page(request: web.Request) -> web.Response:
    return web.Response(
        body=_file("index.html"),
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )


@anyone("the console's script, style sheet and icon")
async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in FILES:
        raise web.HTTPNotFound(text="no such file")
    return web.Response(
        body=_file(name), content_type=FILES[name], headers={"Cache-Control": "no-cache"}
    )


# -- signing in and out ------------------------------------------------------------------
@anyone("console sign-in: a session cookie (HttpOnly, SameSite=Strict) and its CSRF token")
async def sign_in(request: web.Request) -> web.Response:
    """Only the page's own script signs in: JSON (which another site's form cannot send
    without asking first) from this origin, so no other site can sign a visitor in as
    someone else."""
    state = request.app[SERVER]
    if request.content_type != "application/json":
        raise RequestError(415, 'sign in with a JSON body: {"username": …, "password": …}')
    if edge.from_other_site(request.headers, own_host(request)):
        raise RequestError(403, "sign in from the console's own page")
    username, password = await read_credentials(request)
    user, stamp = await check_password(request, username, password)
    secret, csrf = await in_state(request, state.sessions.open, user, stamp)
    response = json_text({"user": user, "csrf": csrf, "version": __version__})
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(SESSION_LIFETIME),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_over_tls(request),
    )
    return response


def _over_tls(request: web.Request) -> bool:
    """Served over TLS, here or at a proxy in front (which says so in X-Forwarded-Proto):
    the cookie is then never sent in the clear."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.secure or forwarded == "https"


@anyone(
    "the signed-in console user and the session's CSRF token (user null when none; "
    "with no user on the server at all, the command that makes one)"
)
async def session(request: web.Request) -> web.Response:
    """Who is signed in (`user` null when nobody is: the page then shows its sign-in)."""
    state = request.app[SERVER]
    if SESSION_COOKIE not in request.cookies:
        signed_out: dict[str, Any] = {"user": None, "version": __version__}
        if not await in_state(request, state.users.names):
            # Nobody can sign in yet: the page says so, with the command that fixes it.
            signed_out.update(users=False, adduser=adduser_command())
        return json_text(signed_out)
    found = await console_session(request, state)  # 401 for an ended session
    return json_text({"user": found.user, "csrf": found.csrf, "version": __version__})


def adduser_command(prefix: Path | None = None, root: Path = Path("/")) -> str:
    """The command that makes the first user, as this server was started: from a checkout
    (`./run`), in a container (podman's or docker's), else the installed `mlapi` (the
    binary too). Never a path of this machine: the sign-in page shows it to anyone."""
    prefix = Path(sys.prefix) if prefix is None else prefix
    if (prefix.parent / "run").is_file() and (prefix.parent / "pyproject.toml").is_file():
        return "./run mlapi adduser NAME"
    if (root / "run" / ".containerenv").exists():
        return "podman exec -it CONTAINER mlapi adduser NAME"
    if (root / ".dockerenv").exists():
        return "docker exec -it CONTAINER mlapi adduser NAME"
    return "mlapi adduser NAME"


@anyone("end the console session")
async def sign_out(request: web.Request) -> web.Response:
    """Ends the session everywhere (its row is deleted), CSRF-checked like every change."""
    state = request.app[SERVER]
    if SESSION_COOKIE in request.cookies:
        try:
            await console_session(request, state)
        except AuthError:
            pass  # already ended: only the cookie is left to clear
        else:
            await in_state(request, state.sessions.close, request.cookies[SESSION_COOKIE])
    response = json_text({"signed_out": True})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


# -- trying a photo ----------------------------------------------------------------------
# What a person reads for each built-in detector on the Try page: a plain name (the
# technical one beside it) and one line on what it finds. A detector installed from
# elsewhere is shown by its own name and description.
PLAIN: dict[str, tuple[str, str]] = {
    "objects": ("Objects", "People, vehicles, animals and everyday things: 80 kinds in all."),
    "objects-accurate": (
        "Objects, more thorough",
        "The same 80 kinds of things, looked for in the photo and its mirror image: slower.",
    ),
    "yolo": ("Objects with YOLO", "The same 80 kinds of things with a Darknet YOLO model."),
    "faces": ("Faces", "Each face, with its eyes, nose, mouth and ears marked."),
    "recognize": (
        "Face identity",
        "For each face: which person from the People page it is, or unknown.",
    ),
    "genderage": ("Gender and age", "For each face: male or female, and an age in years."),
    "emotion": ("Expression", "For each face: happy, sad, angry, surprised, neutral and more."),
    "cvface": ("Faces, older model", "Each face, found by the model mlapi started with."),
    "plates": ("Licence plates", "Number plates on cars and other vehicles, read as text."),
    "text": ("Text", "Lines of printed text in the photo, read."),
    "faceprint": (
        "Face fingerprint",
        "For each face: numbers that tell faces apart, for your own matching.",
    ),
    "embeddings": (
        "Image fingerprint",
        "For the whole photo: numbers that find similar photos.",
    ),
}


@signed_in_only(
    "detectors: plain name, description, whether this server can run them (else the "
    "command that pulls their models), their options' defaults, bounds and choices"
)
async def detectors(request: web.Request) -> web.Response:
    """Every detector for the Try page's form: its plain name and one line on what it
    finds, whether it can run here (every model it and what it needs use is pulled; else
    which are missing and the command that pulls them), its options (default, bounds,
    choices) and whether the page ticks it at first."""
    engine = request.app[ENGINE]
    configured = request.app[SERVER].config.models
    rows = await off_loop(request, _detector_rows, engine, configured)
    return json_text({"detectors": rows})


def _detector_rows(engine: Engine, configured: tuple[str, ...]) -> list[dict[str, Any]]:
    """The form's rows. File-system checks only: no model is loaded (Engine.check_models)."""
    chosen = set(TRY_FIRST) & set(engine.registry) or set(configured)
    rows = []
    listed = list(PLAIN)  # the plain names' order: things, faces, text, fingerprints

    def place(name: str) -> tuple[int, str]:
        return (listed.index(name) if name in listed else len(listed), name)

    for name in sorted(engine.registry, key=place):
        cls = engine.registry[name]
        missing = _missing_models(engine, name)
        title, line = PLAIN.get(name, (name, cls.description))
        rows.append(
            {
                "name": name,
                "title": title,
                "description": line,
                "technical": cls.description,
                "task": cls.task,
                "needs": list(cls.needs),
                "runnable": not missing,
                "missing": missing,
                "command": f"mlapi models pull {' '.join(missing)}" if missing else None,
                "default": name in chosen and not missing,
                "options": cls.Options.describe(),
            }
        )
    return rows


def _missing_models(engine: Engine, name: str) -> list[str]:
    """The models detector `name` would find missing when run with its default options:
    its own and those of what it needs (what Engine.check_models refuses), and a model an
    option names by default (yolo's)."""
    try:
        engine.check_models([name])
    except ModelMissing:
        pass
    else:
        defaults = [
            str(o["default"])
            for n in engine.plan([name])
            for o in engine.registry[n].Options.describe()
            if o["name"] == "model" and catalog.find(str(o["default"])) is not None
        ]
        return [m for m in defaults if not engine.store.is_pulled(m)]
    needed = [m for n in engine.plan([name]) for m in engine.registry[n].models]
    return list(dict.fromkeys(m for m in needed if not engine.store.is_pulled(m)))


@signed_in_only(
    "the photo as the detectors see it, as a JPEG (HEIC and other formats a browser cannot draw)"
)
async def preview(request: web.Request) -> web.Response:
    """The photo as the detectors see it (upright, as a JPEG): for formats a browser cannot
    draw (a phone's HEIC), so the boxes land on the same pixels."""
    upload = await read_upload(request, fetch=False)
    engine = request.app[ENGINE]
    jpeg = await in_pool(request, _preview, engine, upload.image, image=upload.image)
    return web.Response(body=jpeg, content_type="image/jpeg")


def _preview(engine: Engine, data: bytes) -> bytes:
    image = decode(data, max_pixels=engine.config.max_pixels)
    pixels = image.pixels
    long_side = max(pixels.shape[:2])
    if long_side > PREVIEW_SIDE:
        import cv2

        scale = PREVIEW_SIDE / long_side
        size = (round(pixels.shape[1] * scale), round(pixels.shape[0] * scale))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    return encode_jpeg(pixels, 85)


# -- keys --------------------------------------------------------------------------------
def _server_url(request: web.Request) -> str:
    """Where clients reach this server: --public-url, else the address this connection
    reached (never the client's own `Host`, which could be anything)."""
    public_url: str = request.app[SERVER].config.public_url
    if public_url:
        return public_url
    scheme = "https" if _over_tls(request) else "http"
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        return f"{scheme}://127.0.0.1"
    host, port = sockname[0], sockname[1]
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}"


def _snippets(request: web.Request, key: str) -> list[dict[str, str]]:
    return [dataclasses.asdict(s) for s in snippets(_server_url(request), key)]


@signed_in_only("the signed-in user's API keys and client configuration")
async def keys(request: web.Request) -> web.Response:
    user = user_of(request)
    accounts = request.app[SERVER].users
    mine = [k for k in await in_state(request, accounts.api_keys) if k.user == user]
    rows = [
        {"id": k.id, "name": k.name, "created": k.created, "last_used": k.last_used}
        for k in sorted(mine, key=lambda k: k.created)
    ]
    return json_text({"keys": rows, "snippets": _snippets(request, "YOUR_KEY")})


@signed_in_only("a new API key (shown once) and each client's configuration with it")
async def create_key(request: web.Request) -> web.Response:
    user = user_of(request)
    body = await json_object(request)
    name = text.name(str(body.get("name") or "").strip(), "the key's name")
    if not name or len(name) > 100:
        raise RequestError(400, "a key needs a name of 1 to 100 characters")
    accounts = request.app[SERVER].users
    secret = await in_state(request, accounts.create_key, user, name)
    key_id = rules.key_id(secret)
    return json_text(
        {"id": key_id, "name": name, "key": secret, "snippets": _snippets(request, secret)}
    )


@signed_in_only("revoke one of the signed-in user's API keys")
async def revoke_key(request: web.Request) -> web.Response:
    user = user_of(request)
    key_id = request.match_info["id"]
    accounts = request.app[SERVER].users
    owned = {k.id for k in await in_state(request, accounts.api_keys) if k.user == user}
    if key_id not in owned:
        raise RequestError(404, f"you have no API key with id {key_id!r}")
    try:
        await in_state(request, accounts.revoke_key, key_id)
    except UserError as exc:  # revoked meanwhile, from another page or the CLI
        raise RequestError(404, exc.message) from exc
    return json_text({"revoked": key_id})


# -- status ------------------------------------------------------------------------------
@signed_in_only("readiness, models and licences, queue, latency by route and the last minutes")
async def status(request: web.Request) -> web.Response:
    state, engine = request.app[SERVER], request.app[ENGINE]
    whole = state.whole()
    devices = engine.runtime.devices()  # where each runs (after any fall back to the CPU)
    loaded = [
        {
            "detector": name,
            "device": devices.get(name, "cpu"),
            "models": [_licensed(m) for m in engine.registry[name].models],
        }
        for name in state.config.models
    ]
    by_route = [
        {"route": r, "requests": n, "mean_ms": round(s / n * 1000, 1) if n else 0.0}
        for r, n, s in sorted(whole.get("latency", []), key=lambda row: -row[1])
    ]
    return json_text(
        {
            "version": __version__,
            "ready": state.everyone_ready(),
            "processes": state.group.size if state.group else 1,
            "workers": engine.config.workers,
            "models": loaded,
            "queue": whole["queue"],
            "routes": by_route,
            "every": EVERY,
            "history": request.app[HISTORY].rows(),
        }
    )


def _licensed(model: str) -> dict[str, str]:
    entry = catalog.find(model)
    return {"name": model, "licence": entry.licence if entry else "see its manifest"}


def add_routes(routes: Routes) -> None:
    app = routes.app
    routes.get("/", page, "public")
    routes.get("/console/static/{name}", static, "public")
    routes.post("/console/api/signin", sign_in, "public")
    routes.get("/console/api/session", session, "public")
    routes.delete("/console/api/session", sign_out, "public")
    for method, path, handler in (
        ("GET", "/console/api/detectors", detectors),
        ("POST", "/console/api/preview", preview),
        ("GET", "/console/api/people", people),
        ("POST", "/console/api/people", add_person),
        ("POST", "/console/api/people/new", create_person),
        ("POST", "/console/api/people/test", recognise_photo),
        ("PUT", "/console/api/people/{name}", rename_person),
        ("DELETE", "/console/api/people/{name}", remove_person),
        ("DELETE", "/console/api/samples/{id}", remove_sample),
        ("GET", "/console/api/samples/{id}/face.jpg", thumbnail),
        ("GET", "/console/api/people/{name}/sightings", person_sightings),
        ("GET", "/console/api/unknown", unknown),
        ("POST", "/console/api/unknown/merge", merge),
        ("POST", "/console/api/unknown/{cluster}/name", name_cluster),
        ("DELETE", "/console/api/unknown/{cluster}", forget_cluster),
        ("GET", "/console/api/sightings/{sighting}/picture", picture),
        ("POST", "/console/api/sightings/{sighting}/move", move_out),
        ("POST", "/console/api/sightings/{sighting}/not", not_person),
        ("DELETE", "/console/api/sightings/{sighting}", forget_sighting),
        ("GET", "/console/api/plates", plates),
        ("POST", "/console/api/plates", add_known_plate),
        ("DELETE", "/console/api/plates/{name}", remove_plate),
        ("GET", "/console/api/keys", keys),
        ("POST", "/console/api/keys", create_key),
        ("DELETE", "/console/api/keys/{id}", revoke_key),
        ("GET", "/console/api/status", status),
    ):
        routes.add(method, path, handler, "session")
    app[HISTORY] = History()

    async def sample() -> None:
        state = app[SERVER]
        while True:
            app[HISTORY].record(state.whole())
            await asyncio.sleep(EVERY)

    async def start(app: web.Application) -> None:
        app[SAMPLING] = asyncio.create_task(sample())

    async def stop(app: web.Application) -> None:
        app[SAMPLING].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await app[SAMPLING]

    app.on_startup.append(start)
    app.on_cleanup.append(stop)


# The console is the page's own: it speaks plain errors and is never opened to a network.
DIALECT = Dialect("console", add_routes, error_body=plain_error, keyless=False)
