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
from mlapi.sightings.settings import FaceMemory
from mlapi.store import ModelCache
from mlapi.stores.gallery import Gallery
from mlapi.web.state import SERVER

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
    anchor = {"Unknown faces": "unknown"}.get(name, name.lower())
    page.wait_for_function(f"() => location.hash === '#{anchor}'")
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
    page.locator("#try-detectors input[name=models]").first.wait_for()
    models = page.eval_on_selector_all(
        "#try-detectors input[name=models]:checked", "i => i.map((x) => x.value)"
    )
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
    page.locator("#people").get_by_label("Name", exact=True).fill("Richard")
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
    # His box reads his name and how like him the face is, not the face detector's score.
    (his,) = [t for t in page.locator("#try-boxes text").all_text_contents() if "Richard" in t]
    assert his.split(" ", 1)[1].startswith("Richard (similarity ")
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


def test_plates_are_added_listed_refused_in_words_and_removed(
    page: Page, server: LiveServer, axe: str
) -> None:
    sign_in(page, server)
    visit(page, "Plates")
    form = page.locator("#plates")
    form.get_by_label("Name", exact=True).fill("Our van")
    form.get_by_label("Plate", exact=True).fill("ab-123 cd")
    page.get_by_role("button", name="Add plate").click()
    table = page.locator("#plate-table tbody")
    table.get_by_role("row", name="Our van AB123CD").wait_for()
    # A pattern that is no regular expression: the server's words, as an alert.
    form.get_by_label("Every plate a pattern matches").check()
    form.get_by_label("Name", exact=True).fill("Fleet")
    form.get_by_label("Pattern", exact=True).fill("FLEET[0-9")
    page.get_by_role("button", name="Add plate").click()
    alert = page.get_by_role("alert").filter(has_text="not a regular expression")
    alert.wait_for()
    assert alert.is_visible()
    assert [k.name for k in server.stores.plates.known()] == ["Our van"]
    form.get_by_label("Pattern", exact=True).fill("FLEET[0-9]{3}")
    page.get_by_role("button", name="Add plate").click()
    table.get_by_role("row", name="Fleet pattern FLEET[0-9]{3}").wait_for()
    assert page.locator("#plates-error").text_content() == ""  # the old error is gone
    assert serious_violations(page, axe) == []
    shot(page, "plates")
    page.get_by_role("button", name="Remove plate Our van").click()
    page.get_by_role("button", name="Remove plate Our van").wait_for(state="detached")
    assert [k.name for k in server.stores.plates.known()] == ["Fleet"]
    page.get_by_role("button", name="Remove plate Fleet").click()
    table.get_by_text("No known plates yet.").wait_for()


def test_try_labels_a_plate_by_its_reading_and_name_and_text_by_its_line(
    page: Page, server: LiveServer
) -> None:
    sign_in(page, server)
    said = page.evaluate(
        """() => [
            {label: "plate", confidence: 0.91, box: [0, 0, 9, 9],
             attributes: {plate: "AB123CD", text: "AB-123 CD", name: "Our van", vehicle: "car"}},
            {label: "plate", confidence: 0.8, box: [0, 0, 9, 9],
             attributes: {plate: "XY99", text: "XY99"}},
            {label: "text", confidence: 0.7, box: [0, 0, 9, 9], attributes: {text: "EXIT 12"}},
        ].map((d) => [caption(d), details(d)])"""
    )
    assert said == [
        ["plate AB123CD (Our van) 91%",
         'reads AB123CD, as read "AB-123 CD", known plate: Our van, on a car'],
        ["plate XY99 80%", "reads XY99, no known plate"],
        ['text "EXIT 12" 70%', 'reads "EXIT 12"'],
    ]  # fmt: skip


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
    objects = page.locator("#model-table tbody tr", has=page.get_by_text("nanodet", exact=True))
    assert objects.locator("td").nth(1).text_content() == "cpu"  # the device it runs on
    page.locator("#chart-rate polyline").first.wait_for(timeout=15_000)  # two samples, 5 s apart
    # Its route gets a latency line once a sample (every 5 s; the page re-reads as often)
    # has counted it.
    page.locator("#chart-latency text", has_text="/api/v1/detect").wait_for(timeout=20_000)
    assert page.locator("#chart-latency polyline, #chart-latency circle").count() >= 1
    # The API's routes first; the console's own calls folded into one line, last.
    rows = page.locator("#route-table tbody tr")
    assert (rows.first.text_content() or "").startswith("/api/v1/detect")
    folded = page.locator("#route-table tr.folded")
    assert folded.count() == 1 and rows.last.get_attribute("class") == "folded"
    assert "This console's own requests" in (folded.text_content() or "")
    assert page.locator("#route-table code", has_text="/console/").count() == 0
    # Each chart's y-axis is labelled with its unit; an idle route says so.
    for name, unit in (("rate", "req/s"), ("queue", "requests"), ("latency", "ms")):
        assert page.locator(f"#chart-{name} text.unit").text_content() == unit
    legend = page.locator("#chart-rate text", has_text="this console").text_content() or ""
    assert legend.startswith("this console: now")
    # Once a sample passes with no request, the route's latency says so (not "0.0 ms").
    page.locator("#chart-latency text", has_text="now no requests").first.wait_for(timeout=20_000)
    assert serious_violations(page, axe) == []
    shot(page, "status")


def test_a_phone_sized_screen(browser: Browser, server: LiveServer, photos: Path, axe: str) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    try:
        page = context.new_page()
        sign_in(page, server)
        detect_on_page(page, photos / "gender_detection_input.jpg")
        # The detections table shows Label and Details whole, with no sideways scrolling.
        edges = page.evaluate(
            """() => ['#try-table th:nth-child(2)', '#try-table th:nth-child(5)']
                .map((s) => document.querySelector(s).getBoundingClientRect().right)"""
        )
        assert max(edges) <= 390, edges
        table = page.locator("#try-table")
        assert table.evaluate("t => t.scrollWidth <= t.parentElement.clientWidth")
        assert "female" in (page.locator("#try-table tbody").text_content() or "")
        for name in ("Try", "People", "Unknown faces", "Plates", "Keys", "Status"):
            visit(page, name)
            assert page.get_by_role("link", name=name, exact=True).is_visible()
            wide = page.evaluate("() => document.documentElement.scrollWidth - innerWidth")
            assert wide <= 0, f"{name} scrolls sideways by {wide} px on a phone"
        # The header is one row: the name, the six pages (on two lines) and Sign out, side
        # by side.
        tops = page.evaluate(
            """() => ['.brand', '#nav', '#sign-out'].map((s) =>
                document.querySelector(s).getBoundingClientRect())
                .map((r) => [r.top, r.bottom, r.right])"""
        )
        assert max(t[0] for t in tops) < min(t[1] for t in tops)  # they share a line
        height = page.locator("#sign-out").evaluate("b => b.getBoundingClientRect().height")
        assert height < 44  # "Sign out" on one line
        assert max(t[2] for t in tops) <= 390
        assert page.get_by_role("button", name="Sign out").is_visible()
        visit(page, "Try")
        assert serious_violations(page, axe) == []
        shot(page, "phone")
    finally:
        context.close()


# -- what a person sees on the Try page ----------------------------------------------------
def submit_try(page: Page) -> None:
    page.evaluate("() => { window.mlapiTimings = {}; }")
    page.get_by_role("button", name="Detect", exact=True).click()
    page.wait_for_function(
        "() => window.mlapiTimings.drawn || window.mlapiTimings.failed", timeout=60_000
    )


def result_cleared(page: Page) -> None:
    assert page.locator("#try-result").is_hidden()
    assert page.locator("#try-boxes g.detection").count() == 0
    assert page.locator("#try-table tbody tr").count() == 0
    assert page.locator("#try-image").get_attribute("src") is None


def test_an_error_is_shown_as_one_and_clears_the_old_result(
    page: Page, server: LiveServer, photos: Path, tmp_path: Path, axe: str
) -> None:
    sign_in(page, server)
    detect_on_page(page, photos / "object_detection_input.jpg")
    assert page.locator("#try-boxes g.detection").count() > 0
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo\n")
    page.locator("#try").get_by_label("Photo", exact=True).set_input_files(str(notes))
    result_cleared(page)  # a new file: the old photo and boxes go at once
    submit_try(page)
    alert = page.get_by_role("alert").filter(has_text="Not detected")
    alert.wait_for()
    assert "image" in (alert.text_content() or "").lower()
    assert alert.locator(".icon").is_visible()
    colour = alert.evaluate("a => getComputedStyle(a).color")
    assert colour == "rgb(185, 28, 28)"  # the page's danger red, not body text
    result_cleared(page)
    assert (page.locator("#try-message").text_content() or "") == ""
    assert serious_violations(page, axe) == []
    shot(page, "try-error")
    # A bad option: the server's refusal is shown the same way (the browser's own range
    # check is bypassed, as a script or an old page could).
    detect_on_page(page, photos / "object_detection_input.jpg")
    page.locator("#option-objects-confidence").evaluate("i => { i.value = '7'; }")
    page.evaluate("() => { window.mlapiTimings = {}; }")
    page.evaluate(
        "() => document.getElementById('try-form')"
        ".dispatchEvent(new Event('submit', {cancelable: true}))"
    )
    page.wait_for_function("() => window.mlapiTimings.failed", timeout=60_000)
    refused = page.get_by_role("alert").filter(has_text="confidence")
    refused.wait_for()
    result_cleared(page)
    # The error goes with the next success.
    page.locator("#options-objects summary").click()
    page.locator("#option-objects-confidence").fill("0.35")
    submit_try(page)
    assert (page.locator("#try-error").text_content() or "") == ""
    assert page.locator("#try-boxes g.detection").count() > 0


def test_detect_shows_progress_and_the_result_in_view(
    browser: Browser, server: LiveServer, photos: Path
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = context.new_page()
        held: list[Any] = []
        page.route("**/api/v1/detect*", lambda route: held.append(route))
        sign_in(page, server)
        page.locator("#try").get_by_label("Photo", exact=True).set_input_files(
            str(photos / "object_detection_input.jpg")
        )
        page.evaluate("() => { window.mlapiTimings = {}; }")
        button = page.get_by_role("button", name="Detect", exact=True)
        button.click()
        page.wait_for_function("() => document.getElementById('try-submit').disabled")
        assert page.locator("#try-busy").is_visible()  # spinner and "Detecting…"
        assert page.locator("#try-busy .spinner").is_visible()
        page.wait_for_function("() => true")  # let the held request arrive
        while not held:
            page.wait_for_timeout(50)
        held[0].continue_()
        page.wait_for_function("() => window.mlapiTimings.drawn", timeout=60_000)
        assert button.is_enabled() and page.locator("#try-busy").is_hidden()
        # The result is scrolled to: its picture's top is on screen.
        top = page.locator("#try-result").evaluate("r => r.getBoundingClientRect().top")
        assert -1 <= top < 844  # (a subpixel above the top edge is on screen)
        # A new file while a request is on its way: its answer is never shown.
        page.locator("#try").get_by_label("Photo", exact=True).set_input_files(
            str(photos / "face_detection_input.jpg")
        )
        button.click()
        while len(held) < 2:
            page.wait_for_timeout(50)
        page.locator("#try").get_by_label("Photo", exact=True).set_input_files(
            str(photos / "gender_detection_input.jpg")
        )
        held[1].continue_()
        page.wait_for_timeout(1500)
        result_cleared(page)
        assert button.is_enabled()
    finally:
        context.close()


def test_a_detector_without_its_model_is_offered_disabled_with_the_command(
    browser: Browser, store: ModelCache, tmp_path: Path, axe: str
) -> None:
    """A server whose cache lacks dlib's face network: recognition and the faceprint
    cannot run, and the page says why and what to run instead of offering them."""
    cache = ModelCache(tmp_path / "cache", bundled=[])
    cache.models.mkdir(parents=True)
    for folder in store.models.iterdir():
        if folder.name != "dlib-face":
            (cache.models / folder.name).symlink_to(folder)
    with Engine(cache, gallery=Gallery(tmp_path / "gallery.json")) as engine:
        live = LiveServer(engine, tmp_path / "data", ServerConfig())
        live.users.add("alice", PASSWORD)
        context = browser.new_context(viewport=DESKTOP)
        try:
            page = context.new_page()
            sign_in(page, live)
            identity = page.get_by_label("Face identity (recognize)")
            identity.wait_for()
            assert identity.is_disabled() and not identity.is_checked()
            assert page.get_by_label("Face fingerprint (faceprint)").is_disabled()
            why = page.locator(".detector[data-name=recognize] .why")
            assert why.is_visible()
            assert why.locator("code").text_content() == "mlapi models pull dlib-face"
            described = identity.get_attribute("aria-describedby") or ""
            assert "detector-recognize-why" in described.split()
            assert page.get_by_label("Objects (objects)").is_enabled()
            assert page.get_by_label("Faces (faces)").is_checked()
            assert serious_violations(page, axe) == []
        finally:
            context.close()
            live.stop()


def test_options_appear_only_for_ticked_detectors_as_inputs_of_their_kind(
    page: Page, server: LiveServer, photos: Path
) -> None:
    sign_in(page, server)
    objects = page.get_by_label("Objects (objects)")
    objects.wait_for()
    assert objects.is_checked()
    # Each detector: a plain name with its technical one, and a line that is on screen.
    plain = (
        "Face identity (recognize)",
        "Face fingerprint (faceprint)",
        "Image fingerprint (embeddings)",
        "Licence plates (plates)",
        "Text (text)",
    )
    for name in plain:
        page.get_by_label(name).wait_for()
    abouts = page.locator("#try-detectors .about")
    assert abouts.count() == page.locator("#try-detectors input[name=models]").count()
    assert all(abouts.nth(i).is_visible() for i in range(abouts.count()))
    # Options for what is ticked, none for what is not.
    assert page.locator("#options-objects").is_visible()
    assert page.locator("#options-text").is_hidden()
    page.get_by_label("Text (text)").check()
    assert page.locator("#options-text").is_visible()
    page.get_by_label("Text (text)").uncheck()
    assert page.locator("#options-text").is_hidden()
    page.get_by_label("Objects (objects)").uncheck()
    assert page.locator("#options-objects").is_hidden()
    page.get_by_label("Objects (objects)").check()
    # Fixed choices are select boxes, numbers are number inputs with their range.
    page.locator("#options-genderage summary").click()
    choice = page.locator("#option-genderage-model")
    assert choice.evaluate("s => s.tagName") == "SELECT"
    assert choice.evaluate("s => [...s.options].map((o) => o.value)") == ["faceres", "dlib"]
    page.locator("#options-objects summary").click()
    confidence = page.locator("#option-objects-confidence")
    assert confidence.get_attribute("type") == "number"
    assert (confidence.get_attribute("min"), confidence.get_attribute("max")) == ("0", "1")
    count = page.locator("#option-objects-max_count")
    assert (count.get_attribute("type"), count.get_attribute("step")) == ("number", "1")
    assert page.locator("#option-objects-flip").get_attribute("type") == "checkbox"
    assert page.get_by_label("confidence").first.is_visible()
    shot(page, "options")
    # A changed option goes with the request, and into the commands shown.
    confidence.fill("0.6")
    shown = detect_on_page(page, photos / "object_detection_input.jpg")
    assert all(d["confidence"] >= 0.6 for d in shown["detections"] if d["model"] == "objects")
    commands = page.locator("#try-commands").text_content() or ""
    assert "objects.confidence=0.6" in commands and "-o 'objects.confidence=0.6'" in commands


LABELS_AND_FACES = """() => {
    const box = (e) => { const r = e.getBoundingClientRect();
        return {x1: r.left, y1: r.top, x2: r.right, y2: r.bottom}; };
    const groups = [...document.querySelectorAll('#try-boxes g.detection')];
    return {
        faces: groups.filter((g) => g.dataset.label === 'face')
            .map((g) => box(g.querySelector('rect.box'))),
        labels: [...document.querySelectorAll('#try-boxes rect.label')].map(box),
        texts: [...document.querySelectorAll('#try-boxes text')].map((t) =>
            parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a),
        unlabelled: groups.filter((g) => !g.querySelector('rect.label')).length,
        groups: groups.length,
    };
}"""


@pytest.mark.parametrize("width", [360, 1280])
def test_labels_are_readable_and_never_cover_a_face(
    browser: Browser, server: LiveServer, photos: Path, width: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": 800}, is_mobile=width < 500)
    try:
        page = context.new_page()
        sign_in(page, server)
        detect_on_page(page, photos / "face_detection_input.jpg")  # five men in a row
        if width == 360:
            page.locator("#try-result").screenshot(path=str(SHOTS / "phone-group.png"))
        found = page.evaluate(LABELS_AND_FACES)
        assert len(found["faces"]) == 5 and found["groups"] >= 10  # their faces and bodies
        assert found["texts"] and min(found["texts"]) >= 11, found["texts"]
        assert found["unlabelled"] == 0
        for label in found["labels"]:  # touching is not covering: 0.5 px for rounding
            for face in found["faces"]:
                assert not (
                    label["x1"] < face["x2"] - 0.5 and face["x1"] < label["x2"] - 0.5
                    and label["y1"] < face["y2"] - 0.5 and face["y1"] < label["y2"] - 0.5
                ), (label, face)  # fmt: skip
        print(f"label size at {width} px: {min(found['texts']):.1f} CSS px")
    finally:
        context.close()


def test_a_server_with_no_users_says_so_on_the_sign_in_page(
    browser: Browser, tmp_path: Path, axe: str
) -> None:
    with Engine(ModelCache(tmp_path / "cache")) as engine:
        live = LiveServer(engine, tmp_path / "data", ServerConfig(models=()))
        context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
        try:
            page = context.new_page()
            page.goto(live.url + "/")
            notice = page.locator("#signin-setup")
            notice.wait_for()
            assert "no users yet" in (notice.text_content() or "")
            # This server runs from a checkout: the command is the checkout's.
            assert page.locator("#signin-command").text_content() == "./run mlapi adduser NAME"
            assert serious_violations(page, axe) == []
            shot(page, "no-users")
            live.users.add("alice", PASSWORD)
            sign_in(page, live)
            assert notice.is_hidden()
        finally:
            context.close()
            live.stop()


def test_unknown_faces_named_on_the_page_then_a_persons_last_seen_and_history(
    browser: Browser, store: ModelCache, photos: Path, tmp_path: Path, axe: str
) -> None:
    """Five men seen twice by a camera: five groups of two faces on "Unknown faces". One
    face moved out, its group named by typing, the moved face then "maybe Ahmed" with one
    click; two groups merged, one forgotten. People then shows Ahmed last seen and where;
    "Not Ahmed" takes one face back to the unknown. Names are shown as text, never markup."""
    five = (photos / "face_detection_input.jpg").read_bytes()
    with Engine(store) as engine:
        live = LiveServer(engine, tmp_path / "data", memory=FaceMemory(sightings_interval=0))
        live.users.add("alice", PASSWORD)
        key = live.users.create_key("alice", "door")
        context = browser.new_context(viewport=DESKTOP)
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())  # "Forget …?", "Not Ahmed?"

        def seen_by_the_camera() -> None:
            answer = live.upload(
                "/api/v1/detect",
                {"image": five},
                fields={"models": "recognize", "source": "front door"},
                headers={"X-API-Key": key},
            )
            assert answer.status == 200, answer.body
            live.app[SERVER].recorder.flush()  # type: ignore[union-attr]

        try:
            seen_by_the_camera()
            seen_by_the_camera()
            sign_in(page, live)
            page.get_by_role("link", name="Unknown faces", exact=True).click()
            page.get_by_role("heading", name="Unknown faces", exact=True).wait_for()
            groups = page.locator("#unknown-list li.cluster")
            groups.nth(4).wait_for()
            assert groups.count() == 5 and page.title() == "Unknown faces · mlapi console"
            assert page.locator("#unknown-summary").text_content() == (
                "5 groups of unknown faces, 10 faces in all."
            )
            first = groups.first
            grid = first.get_by_role("list", name="Faces of group 1").get_by_role("img")
            assert grid.count() == 2
            for i in range(2):  # the face pictures, drawn
                grid.nth(i).evaluate("i => i.decode()")
                assert grid.nth(i).evaluate("i => i.naturalWidth") == 96
            assert "front door" in (grid.first.get_attribute("alt") or "")
            assert serious_violations(page, axe) == []
            shot(page, "unknown")

            # One face out to a group of its own; the rest of its group named by typing.
            group_id = first.get_attribute("data-cluster")
            first.get_by_role("button", name="Move out face 2 of group 1").click()
            groups.nth(5).wait_for()
            his = page.locator(f'#unknown-list li[data-cluster="{group_id}"]')
            his.get_by_label("Name", exact=True).fill("Ahmed")
            his.get_by_role("button", name="Save", exact=True).click()
            message = page.locator("#unknown-message")
            message.filter(has_text="Named Ahmed").wait_for()
            assert message.text_content() == (
                "Named Ahmed: 1 face became a sample; 1 face is now theirs."
            )
            # The face moved out looks like him now: one click names it so.
            maybe = page.get_by_role("button", name="maybe Ahmed", exact=True)
            maybe.wait_for()
            assert groups.count() == 5
            maybe.click()
            message.filter(has_text="no new sample").wait_for()
            assert groups.count() == 4 and maybe.count() == 0

            # Two groups merged into one of four faces; another forgotten.
            groups.nth(0).get_by_label("Select to merge").check()
            groups.nth(1).get_by_label("Select to merge").check()
            page.get_by_role("button", name="Merge", exact=True).click()
            message.filter(has_text="2 groups merged into one.").wait_for()
            assert groups.count() == 3
            assert groups.nth(0).get_by_role("img").count() == 4
            groups.nth(2).get_by_role("button", name="Forget group 3").click()
            message.filter(has_text="Group 3 forgotten (2 faces).").wait_for()
            assert groups.count() == 2
            # A name is shown as typed, never as markup.
            groups.nth(1).get_by_label("Name", exact=True).fill("<img src=x onerror=alert(1)>")
            groups.nth(1).get_by_role("button", name="Save", exact=True).click()
            message.filter(has_text="Named <img src=x").wait_for()
            assert groups.count() == 1

            # Seen once more, now by name: People shows when and where.
            seen_by_the_camera()
            page.get_by_role("link", name="People", exact=True).click()
            card = page.locator(
                "#people-list li.person", has=page.get_by_role("heading", name="Ahmed")
            )
            card.wait_for()
            last = card.locator(".last-seen").text_content() or ""
            assert last.startswith("Last seen: ") and last != "Last seen: never"
            card.get_by_text("History: where Ahmed was seen").click()
            rows = card.locator("table.history tbody tr")
            rows.nth(2).wait_for()
            assert rows.count() == 3  # twice before he had a name, once since
            assert all("front door" in t for t in rows.all_text_contents())
            assert card.get_by_role("button", name="Not Ahmed", exact=True).count() == 3
            stranger = page.locator("#people-list li.person h3").filter(has_text="<img src=x")
            assert (stranger.text_content() or "").startswith("<img src=x onerror=alert(1)>")
            assert page.locator('img[src="x"]').count() == 0
            assert serious_violations(page, axe) == []
            shot(page, "people-history")

            # "Not Ahmed": that face is unknown again, the sample that named it gone, his
            # history one shorter (and still open).
            card.get_by_role("button", name="Not Ahmed", exact=True).first.click()
            page.locator("#people-message").filter(has_text="no longer Ahmed's").wait_for()
            rows.nth(1).wait_for()
            assert rows.count() == 2
            assert "0 samples" in (card.get_by_role("heading").text_content() or "")
            # Unknown: the merged group, the forgotten man seen again, and that face.
            page.get_by_role("link", name="Unknown faces", exact=True).click()
            groups.nth(2).wait_for()
            assert groups.count() == 3
        finally:
            context.close()
            live.stop()
