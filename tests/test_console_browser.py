"""The web console in a real browser: Debian's Chromium, driven by Playwright, against a
real `mlapi serve` on loopback with the real models. Each page is checked with axe-core
(from npm) and photographed for the README (docs/console/), so the pictures never go stale.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import services
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright
from servers import LiveServer

from mlapi.config import ServerConfig
from mlapi.engine import Engine
from mlapi.images import decode, encode_jpeg
from mlapi.store import ModelCache
from mlapi.stores.gallery import Gallery

PASSWORD = "a console password"
AXE = "axe-core@4.10.3"
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "console"
DESKTOP: ViewportSize = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        services.missing("Chromium (Debian's chromium package)")
    return str(found)


@pytest.fixture(scope="module")
def axe(store: ModelCache) -> str:
    """axe-core's script, from npm, installed once into the cache."""
    if shutil.which("npm") is None:
        services.missing("Node.js and npm")
    folder = store.root / "clients" / AXE.replace("@", "-")
    script = folder / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(folder), AXE],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    return script.read_text()


@pytest.fixture(scope="module")
def server(store: ModelCache, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("console")
    with Engine(store, gallery=Gallery(data / "gallery.json")) as engine:
        live = LiveServer(engine, data, ServerConfig())
        live.users.add("alice", PASSWORD)
        live.key = live.users.create_key("alice", "tests")
        try:
            yield live
        finally:
            live.stop()


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    args = ["--no-sandbox"] if os.geteuid() == 0 else []  # root may not use the sandbox
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=chromium, args=args)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, server: LiveServer) -> Iterator[Page]:
    context = browser.new_context(
        viewport=DESKTOP, permissions=["clipboard-read", "clipboard-write"]
    )
    opened = context.new_page()
    opened.on("dialog", lambda dialog: dialog.accept())  # "Remove …?", "Revoke …?"
    yield opened
    context.close()


def sign_in(page: Page, server: LiveServer) -> None:
    page.goto(server.url + "/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Try").wait_for()


def visit(page: Page, name: str) -> None:
    page.get_by_role("link", name=name, exact=True).click()
    page.wait_for_function(f"() => location.hash === '#{name.lower()}'")
    page.wait_for_load_state("networkidle")


def serious_violations(page: Page, axe: str) -> list[dict[str, Any]]:
    """axe-core's serious and critical findings. The page allows only its own scripts, so
    axe is served as one of them (a route only this browser sees) rather than inlined."""
    page.route("**/console/static/axe.min.js", lambda route: route.fulfill(
        body=axe, content_type="text/javascript"))  # fmt: skip
    page.add_script_tag(url="/console/static/axe.min.js")
    found: list[dict[str, Any]] = page.evaluate(
        """() => axe.run(document, {resultTypes: ["violations"]}).then((r) => r.violations
            .filter((v) => v.impact === "serious" || v.impact === "critical")
            .map((v) => ({id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target)})))"""
    )
    return found


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def crop(photos: Path, name: str, x1: int, x2: int, flip: bool = False) -> bytes:
    rgb = decode((photos / name).read_bytes()).pixels[:, x1:x2]
    return encode_jpeg(np.ascontiguousarray(rgb[:, ::-1] if flip else rgb))


def heic(photos: Path, name: str) -> bytes:
    import pillow_heif
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    rgb = decode((photos / name).read_bytes()).pixels
    pillow_heif.from_pillow(PILImage.fromarray(rgb)).save(buffer, quality=90)
    return buffer.getvalue()


def drawn(page: Page) -> list[tuple[str, list[int]]]:
    boxes: list[list[str]] = page.eval_on_selector_all(
        "#try-boxes g.detection", "gs => gs.map((g) => [g.dataset.label, g.dataset.box])"
    )
    return [(label, [int(v) for v in box.split(",")]) for label, box in boxes]


def detect_on_page(page: Page, photo: Path) -> dict[str, Any]:
    page.locator("#try").get_by_label("Photo", exact=True).set_input_files(str(photo))
    page.evaluate("() => { window.mlapiTimings = {}; }")
    page.get_by_role("button", name="Detect", exact=True).click()
    page.wait_for_function("() => window.mlapiTimings.drawn", timeout=60_000)
    shown: dict[str, Any] = json.loads(page.locator("#try-json").text_content() or "{}")
    return shown


# -- the tests ---------------------------------------------------------------------------
def test_sign_in_with_the_keyboard_after_a_wrong_password(
    page: Page, server: LiveServer, axe: str
) -> None:
    page.goto(server.url + "/")
    page.get_by_label("Username").wait_for()
    assert serious_violations(page, axe) == []
    shot(page, "signin")
    for _ in range(6):  # Tab from the top of the page to the first field
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "username":
            break
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    page.keyboard.type("not the password")
    page.keyboard.press("Enter")
    alert = page.get_by_role("alert")
    alert.filter(has_text="Wrong username or password.").wait_for()
    assert page.get_by_role("link", name="Try").is_hidden()
    page.get_by_label("Password").fill("")
    page.get_by_label("Password").focus()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.get_by_role("link", name="Try").wait_for()
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("() => document.cookie") == ""  # scripts cannot read the session
    for _ in range(12):  # back from the page (focused after sign-in) to the People link
        page.keyboard.press("Shift+Tab")
        if page.evaluate("() => document.activeElement.textContent") == "People":
            break
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="People", exact=True).wait_for()
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in").wait_for()
    assert page.context.cookies() == []


def test_try_draws_the_apis_answer_for_jpeg_and_heic(
    page: Page, server: LiveServer, photos: Path, tmp_path: Path, axe: str
) -> None:
    sign_in(page, server)
    page.locator("#try-detectors input").first.wait_for()
    models = page.eval_on_selector_all("#try-detectors input:checked", "i => i.map((x) => x.value)")
    assert {"objects", "faces", "genderage", "emotion"} <= set(models)
    phone = tmp_path / "phone.heic"
    phone.write_bytes(heic(photos, "gender_detection_input.jpg"))
    for photo in (photos / "face_detection_input.jpg", phone):
        shown = detect_on_page(page, photo)
        api = server.call(
            "POST",
            f"/api/v1/detect?models={','.join(models)}",
            photo.read_bytes(),
            {"X-API-Key": server.key, "Content-Type": "application/octet-stream"},
        ).json()
        assert shown == api  # the page shows the API's own answer, byte for byte as JSON
        assert drawn(page) == [(d["label"], d["box"]) for d in api["detections"]]
        rows = page.locator("#try-table tbody tr")
        assert rows.count() == len(api["detections"])
        image = page.locator("#try-image")
        assert image.evaluate("i => i.complete && i.naturalWidth > 0")  # HEIC: the preview
    faces = [d for d in shown["detections"] if d["label"] == "face"]
    assert len(faces) == 2  # the couple, from the phone's HEIC
    assert "faces" in (page.locator("#try-timing").text_content() or "")
    page.get_by_role("button", name="Copy curl command").click()
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied.startswith("curl -s -XPOST") and "--data-binary @'phone.heic'" in copied
    assert f"/api/v1/detect?models={','.join(models)}" in copied
    assert serious_violations(page, axe) == []


def test_people_from_two_photos_then_recognised_by_name(
    page: Page, server: LiveServer, photos: Path, tmp_path: Path, axe: str
) -> None:
    man = tmp_path / "man.jpg"
    man.write_bytes(crop(photos, "gender_detection_input.jpg", 420, 800))
    mirrored = tmp_path / "man-mirrored.jpg"
    mirrored.write_bytes(crop(photos, "gender_detection_input.jpg", 420, 800, flip=True))
    horse = tmp_path / "horse.jpg"
    horse.write_bytes(crop(photos, "object_detection_input.jpg", 400, 640))
    sign_in(page, server)
    visit(page, "People")
    page.get_by_label("Name", exact=True).fill("Richard")
    page.locator("#people").get_by_label("Photo", exact=True).set_input_files(
        [str(man), str(mirrored), str(horse)]
    )
    page.get_by_role("button", name="Add person").click()
    message = page.locator("#people-message")
    message.filter(has_text="2 of 3 photos added to Richard.").wait_for()
    assert "horse.jpg: refused: no face found in the photo" in (message.text_content() or "")
    thumbnails = page.get_by_role("list", name="Samples of Richard").get_by_role("img")
    assert thumbnails.count() == 2
    for i in range(2):
        thumbnails.nth(i).evaluate("i => i.decode()")
        assert thumbnails.nth(i).evaluate("i => i.naturalWidth") == 96
    page.get_by_label("Test photo").set_input_files(str(photos / "gender_detection_input.jpg"))
    page.get_by_role("button", name="Recognise").click()
    found = page.locator("#test-result .identity")
    found.first.wait_for()
    assert sorted(found.all_text_contents()) == ["Richard", "unknown"]
    assert serious_violations(page, axe) == []
    shot(page, "people")
    # The Try page now names him, as the API does.
    visit(page, "Try")
    shown = detect_on_page(page, photos / "gender_detection_input.jpg")
    identities = [
        d["attributes"].get("identity") for d in shown["detections"] if d["label"] == "face"
    ]
    assert sorted(identities) == ["Richard", "unknown"]
    shot(page, "try")
    # Rename, remove a sample, remove the person.
    visit(page, "People")
    page.get_by_label("New name for Richard").fill("Rich")
    page.get_by_role("button", name="Rename", exact=True).click()
    page.get_by_role("heading", name="Rich").wait_for()
    page.get_by_role("button", name="Remove sample 1 of Rich").click()
    page.get_by_role("list", name="Samples of Rich").get_by_role("img").nth(1).wait_for(
        state="detached"
    )
    page.get_by_role("button", name="Remove Rich").click()
    page.get_by_text("Nobody yet").wait_for()
    assert server.stores.faces.names() == []


def test_keys_are_created_copied_and_revoked(page: Page, server: LiveServer, axe: str) -> None:
    sign_in(page, server)
    visit(page, "Keys")
    page.get_by_label("Key name").fill("camera")
    page.get_by_role("button", name="Create key").click()
    shown = page.locator("#new-key-value")
    shown.wait_for()
    key = shown.text_content() or ""
    assert key.startswith("mlk_")
    page.get_by_role("button", name="Copy key").click()
    assert page.evaluate("() => navigator.clipboard.readText()") == key
    page.get_by_text("Frigate", exact=True).click()  # its snippet, with this key filled in
    frigate = page.locator(".snippet", has_text="Frigate").locator("pre").text_content() or ""
    assert f"api_key: {key}" in frigate and f"{server.url}/v1/vision/detection" in frigate
    headers = {"X-API-Key": key}
    assert server.call("GET", "/api/v1/models", headers=headers).status == 200
    assert serious_violations(page, axe) == []
    shot(page, "keys")
    page.get_by_role("button", name="Revoke key camera").click()
    page.get_by_role("button", name="Revoke key camera").wait_for(state="detached")
    assert server.call("GET", "/api/v1/models", headers=headers).status == 401


def test_status_shows_the_request_just_made(
    page: Page, server: LiveServer, photos: Path, axe: str
) -> None:
    answer = server.call(
        "POST",
        "/api/v1/detect?models=objects",
        (photos / "object_detection_input.jpg").read_bytes(),
        {"X-API-Key": server.key, "Content-Type": "image/jpeg"},
    )
    assert answer.status == 200
    metrics = server.call("GET", "/metrics", headers={"X-API-Key": server.key}).body.decode()
    counted = next(
        line.rsplit(" ", 1)[1]
        for line in metrics.splitlines()
        if line.startswith('mlapi_request_seconds_count{route="/api/v1/detect"}')
    )
    sign_in(page, server)
    visit(page, "Status")
    row = page.locator("#route-table tr", has=page.get_by_text("/api/v1/detect", exact=True))
    row.wait_for()
    assert row.locator("td").nth(1).text_content() == counted  # the same counters as /metrics
    assert (page.locator("#status-summary").text_content() or "").startswith("Ready")
    licences = page.locator("#model-table").text_content() or ""
    assert "nanodet" in licences and "MIT" in licences
    page.locator("#chart-rate polyline").wait_for(timeout=15_000)  # two samples, 5 s apart
    # Its route gets a latency line once a sample (every 5 s; the page re-reads as often)
    # has counted it.
    page.locator("#chart-latency text", has_text="/api/v1/detect").wait_for(timeout=20_000)
    assert page.locator("#chart-latency polyline").count() >= 1
    assert serious_violations(page, axe) == []
    shot(page, "status")


def test_a_phone_sized_screen(browser: Browser, server: LiveServer, photos: Path, axe: str) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    try:
        page = context.new_page()
        sign_in(page, server)
        detect_on_page(page, photos / "object_detection_input.jpg")
        for name in ("Try", "People", "Keys", "Status"):
            visit(page, name)
            assert page.get_by_role("link", name=name, exact=True).is_visible()
            wide = page.evaluate("() => document.documentElement.scrollWidth - innerWidth")
            assert wide <= 0, f"{name} scrolls sideways by {wide} px on a phone"
        visit(page, "Try")
        assert serious_violations(page, axe) == []
        shot(page, "phone")
    finally:
        context.close()
