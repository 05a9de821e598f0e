// mlapi's web console: plain DOM code, no framework and nothing fetched from elsewhere.
// Every change carries the session's CSRF token; text from the server is only ever set as
// text (never as HTML), so a person's or a key's name cannot inject markup.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGES = ["try", "people", "unknown", "plates", "keys", "status"];
const COLOURS = ["#b91c1c", "#1d4ed8", "#047857", "#7c2d12", "#6d28d9", "#0f766e", "#a21caf", "#854d0e"];
let csrf = "";
let signedIn = false;
let detectorsLoading = null;
let statusTimer = null;
// For the browser test and the README's figures: when the last result was drawn.
window.mlapiTimings = {};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

async function api(method, path, body, headers = {}) {
  const init = { method, headers: { ...headers }, credentials: "same-origin" };
  if (method !== "GET") init.headers["X-CSRF-Token"] = csrf;
  if (body instanceof FormData || body instanceof Blob) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (response.status === 401 && path !== "/console/api/signin") {
    signedIn = false;
    route();
  }
  return response;
}

async function answer(response) {
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || body.msg || body.message || response.statusText);
  return body;
}

function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "never";
}

async function copy(text, said) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (error) {
    // Plain http on a LAN address is no secure context: the old way still works there.
    const area = el("textarea", { class: "offscreen", "aria-hidden": "true" }, text);
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  said.textContent = "Copied.";
  setTimeout(() => { said.textContent = ""; }, 3000);
}

// -- pages -----------------------------------------------------------------------------
function show(id) {
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== id;
  $("loading").hidden = true;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href") === `#${id}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function route() {
  clearInterval(statusTimer);
  $("nav").hidden = !signedIn;
  $("sign-out").hidden = !signedIn;
  if (!signedIn) {
    $("who").textContent = "";
    show("signin");
    return;
  }
  const page = PAGES.includes(location.hash.slice(1)) ? location.hash.slice(1) : "try";
  show(page);
  document.title = `${document.querySelector(`#nav a[href="#${page}"]`).textContent} · mlapi console`;
  ({ try: loadTry, people: loadPeople, unknown: loadUnknown, plates: loadPlates, keys: loadKeys, status: loadStatus })[page]();
}

async function start() {
  const response = await fetch("/console/api/session", { credentials: "same-origin" });
  const session = await response.json().catch(() => ({}));
  if (session.users === false) {
    $("signin-command").textContent = session.adduser;
    $("signin-container").hidden = !session.adduser.includes("CONTAINER");
    $("signin-setup").hidden = false;
  }
  if (response.ok && session.user) {
    csrf = session.csrf;
    signedIn = true;
    $("who").textContent = `${session.user} · mlapi ${session.version}`;
    $("sign-out").title = `Signed in as ${session.user}`;
  }
  route();
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("signin-error").textContent = "";
  const response = await api("POST", "/console/api/signin", {
    username: $("username").value, password: $("password").value,
  });
  try {
    const session = await answer(response);
    csrf = session.csrf;
    signedIn = true;
    $("signin-setup").hidden = true;
    $("password").value = "";
    $("who").textContent = `${session.user} · mlapi ${session.version}`;
    if (!PAGES.includes(location.hash.slice(1))) location.hash = "#try";
    route();
    $("main").focus();
  } catch (error) {
    $("signin-error").textContent = response.status === 401 ? "Wrong username or password." : error.message;
  }
});

$("sign-out").addEventListener("click", async () => {
  await api("DELETE", "/console/api/session");
  // A fresh page: nothing of the session (a new key, photos, faces) stays in this tab.
  location.replace(location.pathname);
});

// -- try a photo -----------------------------------------------------------------------
// What the page shows always belongs to the photo chosen: a new file, a new request or an
// error clears the old result first, and an answer for a photo no longer chosen is dropped.
let tryRun = 0;
let shownResult = null; // the result drawn now, redrawn when the picture changes size
const LABEL_PX = 12; // box labels, in CSS pixels at any screen width (the drawing scales)

function loadTry() {
  detectorsLoading = detectorsLoading || buildTryForm().catch((error) => {
    detectorsLoading = null;
    showTryError(`The detectors could not be listed: ${error.message}`);
  });
  return detectorsLoading;
}

function optionInput(d, o) {
  const id = `option-${d.name}-${o.name}`;
  const hintId = `${id}-hint`;
  const hints = [];
  let input;
  if (o.choices) {
    input = el("select", { id, "aria-describedby": hintId },
      o.choices.map((c) => el("option", { value: c, selected: String(c) === String(o.default) }, c)));
    hints.push(`one of ${o.choices.join(", ")}`);
  } else if (o.type === "boolean") {
    input = el("input", { type: "checkbox", id, checked: o.default, "aria-describedby": hintId });
  } else if (o.type === "number" || o.type === "integer") {
    const decimals = [o.default, o.min, o.max].filter((v) => typeof v === "number")
      .map((v) => (String(v).split(".")[1] || "").length);
    const step = o.type === "integer" ? 1 : 10 ** -Math.max(2, ...decimals);
    input = el("input", {
      id, type: "number", value: o.default ?? "", min: o.min, max: o.max, step,
      inputmode: o.type === "integer" ? "numeric" : "decimal", "aria-describedby": hintId,
    });
    if (o.min !== undefined && o.max !== undefined) hints.push(`${o.min} to ${o.max}`);
    else if (o.min !== undefined) hints.push(`at least ${o.min}`);
  } else {
    input = el("input", { id, type: "text", value: o.default ?? "", "aria-describedby": hintId });
  }
  hints.push(o.default === null || o.default === "" ? "empty by default" : `default ${o.default}`);
  input.dataset.key = `${d.name}.${o.name}`;
  input.dataset.default = String(o.default ?? "");
  const label = el("label", { for: id }, o.name.replace(/_/g, " "));
  const hint = el("span", { class: "hint", id: hintId }, hints.join(" · "));
  return el("div", { class: o.type === "boolean" ? "option check" : "option" },
    ...(o.type === "boolean" ? [input, label, hint] : [label, input, hint]));
}

async function buildTryForm() {
  const detectorList = (await answer(await api("GET", "/console/api/detectors"))).detectors;
  const titles = Object.fromEntries(detectorList.map((d) => [d.name, d.title]));
  const box = $("try-detectors");
  for (const d of detectorList) {
    const id = `detector-${d.name}`;
    const about = `${id}-about`;
    const why = `${id}-why`;
    const needs = d.needs.length ? ` Runs ${d.needs.map((n) => titles[n] || n).join(" and ")} first.` : "";
    const options = d.options.length
      ? el("details", { class: "options", id: `options-${d.name}`, hidden: !d.default },
        el("summary", {}, `Options for ${d.title}`),
        el("div", { class: "option-grid" }, d.options.map((o) => optionInput(d, o))))
      : null;
    const check = el("input", {
      type: "checkbox", id, value: d.name, name: "models", checked: d.default, disabled: !d.runnable,
      "aria-describedby": d.runnable ? about : `${about} ${why}`,
      onchange: (event) => { if (options) options.hidden = !event.target.checked; },
    });
    box.append(el("div", { class: d.runnable ? "detector" : "detector unavailable", "data-name": d.name },
      el("div", { class: "check" }, check,
        el("label", { for: id }, d.title, " ", el("span", { class: "technical" }, `(${d.name})`))),
      el("p", { class: "about", id: about, title: d.technical }, d.description, needs),
      d.runnable ? null : el("p", { class: "why", id: why },
        `Not available: ${d.missing.length === 1 ? "its model is" : "its models are"} not on this server yet (${d.missing.join(", ")}). To add, run on the server: `,
        el("code", {}, d.command)),
      options));
  }
}

function tryQuery() {
  const models = [...document.querySelectorAll("#try-detectors input[name=models]:checked")].map((i) => i.value);
  const params = new URLSearchParams();
  if (models.length) params.set("models", models.join(","));
  const changed = [];
  for (const input of document.querySelectorAll("#try-detectors .options [data-key]")) {
    const value = input.type === "checkbox" ? String(input.checked) : input.value;
    if (value !== input.dataset.default && models.includes(input.dataset.key.split(".")[0])) {
      params.set(input.dataset.key, value);
      changed.push(`${input.dataset.key}=${value}`);
    }
  }
  return { models, params, changed };
}

function quote(text) {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

function timingText(header, total) {
  const parts = (header || "").split(",").map((p) => p.trim()).filter(Boolean).map((p) => {
    const [name, ...rest] = p.split(";");
    const dur = rest.find((r) => r.startsWith("dur="));
    return dur ? `${name} ${Number(dur.slice(4)).toFixed(1)} ms` : name;
  });
  return `Server: ${parts.join(" · ")}. In the browser: ${total.toFixed(0)} ms.`;
}

async function pictureOf(file) {
  // The browser's own decoding when it can (EXIF orientation applied, as the server does);
  // else the server's rendering of what its detectors saw (a phone's HEIC).
  const image = $("try-image");
  const url = URL.createObjectURL(file);
  const shown = await new Promise((resolve) => {
    image.onload = () => resolve(true);
    image.onerror = () => resolve(false);
    image.src = url;
  });
  if (shown) return;
  const response = await api("POST", "/console/api/preview", file, { "Content-Type": "application/octet-stream" });
  if (!response.ok) throw new Error((await response.json().catch(() => ({}))).error || "cannot show this photo");
  const preview = URL.createObjectURL(await response.blob());
  await new Promise((resolve) => { image.onload = resolve; image.onerror = resolve; image.src = preview; });
}

function details(d) {
  const a = d.attributes || {};
  const parts = [];
  if (a.identity) parts.push(`${a.identity}${a.similarity !== undefined ? ` (similarity ${Number(a.similarity).toFixed(2)})` : ""}`);
  if (a.gender) parts.push(`${a.gender.label} ${Math.round(a.gender.confidence * 100)}%`);
  if (a.age !== undefined) parts.push(`age ${Math.round(a.age)}`);
  if (a.emotion) parts.push(a.emotion);
  if (a.plate) {
    parts.push(`reads ${a.plate}`);
    if (a.text && a.text !== a.plate) parts.push(`as read "${a.text}"`);
    parts.push(a.name ? `known plate: ${a.name}` : "no known plate");
    if (a.vehicle) parts.push(`on a ${a.vehicle}`);
  } else if (a.text) parts.push(`reads "${a.text}"`);
  if (d.embedding) parts.push(`embedding of ${d.embedding.length}`);
  return parts.join(", ");
}

function caption(d) {
  // A recognised face is named with its similarity to that person (what recognition
  // decided on), not with the face detector's confidence that it is a face.
  const a = d.attributes || {};
  if (a.identity && a.identity !== "unknown") {
    return a.similarity !== undefined ? `${a.identity} (similarity ${Number(a.similarity).toFixed(2)})` : a.identity;
  }
  const percent = `${Math.round(d.confidence * 100)}%`;
  // A plate by its reading and whose it is; a line of text by what it reads.
  if (a.plate) return `${d.label} ${a.plate}${a.name ? ` (${a.name})` : ""} ${percent}`;
  if (a.text) return `${d.label} "${a.text}" ${percent}`;
  return `${d.label} ${percent}`;
}

function overlaps(a, b) {
  return a.x1 < b.x2 && b.x1 < a.x2 && a.y1 < b.y2 && b.y1 < a.y2;
}

// Where a label of w×h goes: touching its box (above, below, beside; inside it unless it
// is a face), inside the picture, clear of every face box (its own included) and of the
// labels already placed; else further up or down from the box. null: nowhere near.
function placeLabel(box, w, h, faces, taken, width, height, isFace) {
  const fits = (r) => r.x1 >= 0 && r.y1 >= 0 && r.x2 <= width && r.y2 <= height
    && !faces.some((f) => overlaps(r, f)) && !taken.some((t) => overlaps(r, t));
  const at = (x, y) => ({ x1: x, y1: y, x2: x + w, y2: y + h });
  const clampX = (x) => Math.min(Math.max(x, 0), Math.max(width - w, 0));
  const xs = [box.x1, box.x2 - w];
  for (let x = box.x1 + w / 2; x < box.x2 - w; x += w / 2) xs.push(x);
  const columns = [...new Set(xs.map(clampX))];
  const rows = [box.y1 - h - 1, box.y2 + 1];
  if (!isFace) for (let y = box.y1; y <= box.y2 - h; y += h / 2) rows.push(y);
  for (const y of rows) {
    for (const x of columns) {
      if (fits(at(x, y))) return at(x, y);
    }
  }
  for (const spot of [at(box.x2 + 2, box.y1), at(box.x1 - w - 2, box.y1)]) if (fits(spot)) return spot;
  for (let step = 1; step * h <= height; step++) {
    for (const y of [box.y1 - h - step * h, box.y2 + step * h]) {
      for (const x of columns) {
        if (fits(at(x, y))) return at(x, y);
      }
    }
  }
  return null;
}

function drawBoxes(result) {
  shownResult = result;
  const layer = $("try-boxes");
  const image = $("try-image");
  layer.replaceChildren();
  const width = image.clientWidth;
  const height = image.clientHeight;
  if (!width || !height) return;
  // Drawn in the picture's CSS pixels: boxes scale with the picture, labels keep their size.
  layer.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const scale = width / result.width;
  const shown = result.detections.map((d, i) => ({ d, i })).filter(({ d }) => d.label !== "image"); // a whole-image embedding: nothing to point at
  const boxOf = (d) => ({ x1: d.box[0] * scale, y1: d.box[1] * scale, x2: d.box[2] * scale, y2: d.box[3] * scale });
  // A face box with its stroke's outer half: a label may touch it, never cover it.
  const faces = shown.filter(({ d }) => d.label === "face").map(({ d }) => boxOf(d))
    .map((f) => ({ x1: f.x1 - 1, y1: f.y1 - 1, x2: f.x2 + 1, y2: f.y2 + 1 }));
  const groups = shown.map(({ d, i }) => {
    const b = boxOf(d);
    const colour = COLOURS[i % COLOURS.length];
    const group = svg("g", { class: "detection", "data-box": d.box.join(","), "data-label": d.label });
    group.append(svg("rect", { class: "box", x: b.x1, y: b.y1, width: b.x2 - b.x1, height: b.y2 - b.y1, fill: "none", stroke: colour, "stroke-width": 2 }));
    layer.append(group);
    return { d, i, b, colour, group };
  });
  // Most confident first: it gets the spot nearest its box.
  const taken = [];
  const order = [...groups].sort((a, b) => b.d.confidence - a.d.confidence);
  for (const { d, i, b, colour, group } of order) {
    for (const words of [`${i + 1} ${caption(d)}`, `${i + 1}`]) {
      const text = svg("text", { "font-size": LABEL_PX, "font-family": "sans-serif", fill: "#fff" }, words);
      group.append(text);
      const w = Math.ceil(text.getComputedTextLength()) + 6;
      const h = LABEL_PX + 6;
      const spot = placeLabel(b, w, h, faces, taken, width, height, d.label === "face");
      if (!spot) {
        text.remove();
        continue;
      }
      taken.push(spot);
      const back = svg("rect", { class: "label", x: spot.x1, y: spot.y1, width: w, height: h, fill: colour });
      group.insertBefore(back, text);
      text.setAttribute("x", spot.x1 + 3);
      text.setAttribute("y", spot.y1 + LABEL_PX + 1);
      break;
    }
  }
  layer.setAttribute("aria-label", `${result.detections.length} detections`);
}

new ResizeObserver(() => { if (shownResult && !$("try-result").hidden) drawBoxes(shownResult); }).observe($("try-image"));

function clearTry() {
  // Nothing of an earlier photo stays on screen.
  shownResult = null;
  $("try-result").hidden = true;
  $("try-boxes").replaceChildren();
  $("try-table").tBodies[0].replaceChildren();
  $("try-json").textContent = "";
  $("try-commands").textContent = "";
  $("try-timing").textContent = "";
  $("try-image").removeAttribute("src");
  $("try-message").textContent = "";
  $("try-error").replaceChildren();
}

function showTryError(text) {
  $("try-message").textContent = "";
  $("try-error").replaceChildren(
    el("span", { class: "icon", "aria-hidden": "true" }, "!"),
    el("span", {}, text));
  $("try-error").scrollIntoView({ block: "nearest" });
}

function busy(on) {
  $("try-submit").disabled = on;
  $("try-busy").hidden = !on;
  $("try-form").setAttribute("aria-busy", String(on));
}

$("try-photo").addEventListener("change", () => {
  tryRun++; // an answer still on its way is for the photo no longer chosen
  busy(false);
  clearTry();
});

$("try-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("try-photo").files[0];
  if (!file) return;
  const run = ++tryRun;
  const { models, params, changed } = tryQuery();
  const message = $("try-message");
  clearTry();
  busy(true);
  const started = performance.now();
  window.mlapiTimings = { submitted: started };
  const type = file.type && file.type.startsWith("image/") ? file.type : "application/octet-stream";
  try {
    const response = await api("POST", `/api/v1/detect?${params}`, file, { "Content-Type": type });
    const result = await answer(response);
    if (run !== tryRun) return;
    window.mlapiTimings.answered = performance.now();
    await pictureOf(file);
    if (run !== tryRun) return;
    $("try-result").hidden = false;
    drawBoxes(result);
    const rows = result.detections.map((d, i) => el("tr", {},
      el("td", {}, i + 1), el("td", {}, d.label), el("td", {}, d.confidence.toFixed(3)),
      el("td", { class: "box-cell" }, d.box.join(", ")), el("td", {}, details(d))));
    $("try-table").tBodies[0].replaceChildren(...rows);
    $("try-json").textContent = JSON.stringify(result, null, 2);
    const total = performance.now() - started;
    $("try-timing").textContent = timingText(response.headers.get("Server-Timing"), total);
    const url = `${location.origin}/api/v1/detect?${String(params).replace(/%2C/g, ",")}`;
    const curl = `curl -s -XPOST ${quote(url)} -H "X-API-Key: $KEY" -H 'Content-Type: ${type}' --data-binary @${quote(file.name)}`;
    const cli = ["mlapi detect", models.length ? `-m ${models.join(",")}` : "", ...changed.map((c) => `-o ${quote(c)}`), quote(file.name)]
      .filter(Boolean).join(" ");
    $("try-commands").textContent = `${curl}\n${cli}`;
    $("copy-curl").onclick = () => copy(curl, $("copy-done"));
    $("copy-cli").onclick = () => copy(cli, $("copy-done"));
    message.textContent = `${result.detections.length} detection${result.detections.length === 1 ? "" : "s"} in a ${result.width}×${result.height} photo.`;
    $("try-result").scrollIntoView({ block: "start" });
    window.mlapiTimings.drawn = performance.now();
  } catch (error) {
    if (run !== tryRun) return;
    clearTry();
    showTryError(`Not detected: ${error.message}`);
    window.mlapiTimings.failed = performance.now();
  } finally {
    if (run === tryRun) busy(false);
  }
});

const dropZone = $("try-form");
dropZone.addEventListener("dragover", (event) => { event.preventDefault(); dropZone.classList.add("dropping"); });
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dropping"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("dropping");
  if (event.dataTransfer.files.length) {
    $("try-photo").files = event.dataTransfer.files;
    $("try-photo").dispatchEvent(new Event("change"));
  }
});

// -- people ----------------------------------------------------------------------------
// A page of people at a time (the server's default size); "Show more" appends the next.
async function loadPeople(offset = 0) {
  const { people, total } = await answer(await api("GET", `/console/api/people?offset=${offset}`));
  const list = $("people-list");
  const cards = people.map(personCard);
  if (offset) {
    list.querySelector("li.more")?.remove();
    list.append(...cards);
  } else {
    list.replaceChildren(...cards);
  }
  if (!total) list.append(el("li", { class: "hint" }, "Nobody yet: add a person with a few photos of their face."));
  const shown = offset + people.length;
  if (people.length && shown < total) {
    list.append(el("li", { class: "more" }, el("button", { type: "button", onclick: () => loadPeople(shown) },
      `Show more people (${total - shown} not shown)`)));
  }
}

function personCard(person) {
  const samples = person.samples.map((s, i) => el("li", { class: "sample" },
    el("img", { src: `/console/api/samples/${encodeURIComponent(s.id)}/face.jpg`, alt: `Sample ${i + 1} of ${person.name}`, width: 96, height: 96, loading: "lazy", decoding: "async" }),
    el("button", { type: "button", class: "small", "aria-label": `Remove sample ${i + 1} of ${person.name}`, onclick: async () => {
      if (!confirm(`Remove this sample of ${person.name}?`)) return;
      await say(api("DELETE", `/console/api/samples/${encodeURIComponent(s.id)}`), "Sample removed.");
      loadPeople();
    } }, "Remove")));
  const renameId = `rename-${person.name}`;
  const addId = `add-${person.name}`;
  return el("li", { class: "person" },
    el("h3", {}, person.name, el("span", { class: "hint" }, ` · ${person.samples.length} sample${person.samples.length === 1 ? "" : "s"}`)),
    el("p", { class: "last-seen" }, `Last seen: ${when(person.last_seen)}`),
    el("ul", { class: "samples", "aria-label": `Samples of ${person.name}` }, samples),
    historyBox(person),
    el("form", { class: "row", onsubmit: async (event) => {
      event.preventDefault();
      const files = event.target.querySelector("input[type=file]").files;
      if (files.length) await addPhotos(person.name, files);
    } },
    el("label", { for: addId }, `Photo for ${person.name}`),
    el("input", { type: "file", id: addId, accept: "image/*,.heic,.heif", multiple: true }),
    el("button", { type: "submit" }, "Add sample")),
    el("form", { class: "row", onsubmit: async (event) => {
      event.preventDefault();
      const name = event.target.querySelector("input").value.trim();
      if (!name) return;
      await say(api("PUT", `/console/api/people/${encodeURIComponent(person.name)}`, { name }), `Renamed to ${name}.`);
      loadPeople();
    } },
    el("label", { for: renameId }, `New name for ${person.name}`),
    el("input", { id: renameId, required: true }),
    el("button", { type: "submit" }, "Rename")),
    el("button", { type: "button", class: "danger", onclick: async () => {
      if (!confirm(`Forget ${person.name} and every sample?`)) return;
      await say(api("DELETE", `/console/api/people/${encodeURIComponent(person.name)}`), `${person.name} removed.`);
      loadPeople();
    } }, `Remove ${person.name}`));
}

async function say(pending, done) {
  const message = $("people-message");
  try {
    await answer(await pending);
    message.textContent = done;
  } catch (error) {
    message.textContent = error.message;
  }
}

async function addPhotos(name, files) {
  const form = new FormData();
  form.append("name", name);
  for (const file of files) form.append("photo", file, file.name);
  const message = $("people-message");
  message.textContent = "Adding…";
  try {
    const outcome = await answer(await api("POST", "/console/api/people", form));
    const lines = outcome.photos.map((p) => el("li", {},
      `${files[p.photo - 1].name}: ${p.added ? "added" : `refused: ${p.reason}`}${p.warning ? ` (${p.warning})` : ""}`));
    message.replaceChildren(el("p", {}, `${outcome.added} of ${files.length} photos added to ${outcome.name}.`), el("ul", {}, lines));
  } catch (error) {
    message.textContent = error.message;
  }
  await loadPeople();
}

$("person-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("person-name").value.trim();
  const files = $("person-photo").files;
  if (!name) return;
  if (files.length) await addPhotos(name, files);
  else {
    await say(api("POST", "/console/api/people/new", { name }), `${name} added; now add photos.`);
    await loadPeople();
  }
  $("person-form").reset();
});

$("test-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData();
  form.append("photo", $("test-photo").files[0]);
  const out = $("test-result");
  out.textContent = "Recognising…";
  try {
    const { faces } = await answer(await api("POST", "/console/api/people/test", form));
    if (!faces.length) {
      out.textContent = "No face found in the photo.";
      return;
    }
    out.replaceChildren(el("ol", { class: "faces" }, faces.map((f) => el("li", {},
      el("strong", { class: "identity" }, f.identity || "unknown"),
      ` at ${f.box.join(", ")}. Similarity: `,
      f.similarity.length ? f.similarity.map((s) => `${s.name} ${s.similarity.toFixed(2)}`).join(", ") : "nobody known yet"))));
  } catch (error) {
    out.textContent = error.message;
  }
});

// Where and when a person was seen, newest first, a page at a time; "Not NAME" when a
// recognition was wrong: the face is unknown again and the sample that named it goes.
const HISTORY_PAGE = 20;
const historiesOpen = new Set(); // people whose history is open, kept open across reloads

function historyBox(person) {
  const rows = el("tbody");
  const table = el("table", { class: "history" },
    el("caption", { class: "visually-hidden" }, `Where ${person.name} was seen`),
    el("thead", {}, el("tr", {},
      el("th", { scope: "col" }, "Face"), el("th", { scope: "col" }, "When"), el("th", { scope: "col" }, "Where"),
      el("th", { scope: "col" }, "Similarity"), el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "Actions")))),
    rows);
  let loaded = false;
  const opened = () => {
    if (!loaded) loadHistory(person, rows, 0);
    loaded = true;
  };
  const box = el("details", { class: "history-box", open: historiesOpen.has(person.name), ontoggle: () => {
    if (box.open) {
      historiesOpen.add(person.name);
      opened();
    } else {
      historiesOpen.delete(person.name);
    }
  } },
  el("summary", {}, `History: where ${person.name} was seen`),
  el("div", { class: "scroll" }, table));
  if (box.open) opened();
  return box;
}

async function loadHistory(person, rows, offset) {
  const name = encodeURIComponent(person.name);
  let found;
  try {
    found = (await answer(await api("GET", `/console/api/people/${name}/sightings?offset=${offset}&limit=${HISTORY_PAGE}`))).sightings;
  } catch (error) {
    rows.replaceChildren(el("tr", {}, el("td", { colspan: 5 }, error.message)));
    return;
  }
  rows.querySelector("tr.more")?.remove();
  rows.append(...found.map((s) => el("tr", {},
    el("td", {}, el("img", { src: s.picture, width: 48, height: 48, loading: "lazy", decoding: "async", alt: `${person.name}, seen ${seenAt(s)}` })),
    el("td", {}, seenAt(s)),
    el("td", {}, s.source || el("span", { class: "hint" }, "no camera named"), s.client ? el("span", { class: "hint" }, ` · ${s.client}`) : null),
    // A face named on Unknown faces has no similarity: a person said who it is.
    el("td", {}, s.similarity ? s.similarity.toFixed(2) : el("span", { class: "hint" }, "named by hand")),
    el("td", {}, el("button", { type: "button", class: "small danger", onclick: async () => {
      if (!confirm(`Not ${person.name}? The face becomes unknown again, and the sample of ${person.name} that matched it is removed.`)) return;
      let said;
      try {
        await answer(await api("POST", `/console/api/sightings/${encodeURIComponent(s.id)}/not`));
        said = `That face is no longer ${person.name}'s: it is under Unknown faces again.`;
      } catch (error) {
        said = error.message;
      }
      await loadPeople(); // their samples and history as they are now
      $("people-message").textContent = said;
    } }, `Not ${person.name}`)))));
  if (!offset && !found.length) rows.append(el("tr", {}, el("td", { colspan: 5 }, `${person.name} has not been seen yet.`)));
  if (found.length === HISTORY_PAGE) {
    rows.append(el("tr", { class: "more" }, el("td", { colspan: 5 },
      el("button", { type: "button", class: "secondary", onclick: () => loadHistory(person, rows, offset + found.length) }, "Show older"))));
  }
}

// -- unknown faces ---------------------------------------------------------------------
// The groups of faces recognition saw and could not name, most recently seen first, each
// as a grid of its best faces: named once ("Save", or "maybe NAME" with one click), merged
// (tick two or more, then "Merge"), forgotten; one face moved out or forgotten.
const GROUPS_PAGE = 50;
let unknownShown = []; // the groups listed now, in order (their ids for "Merge")

function unknownSay(text) {
  $("unknown-error").replaceChildren();
  $("unknown-message").textContent = text;
}

function unknownError(text) {
  $("unknown-message").textContent = "";
  $("unknown-error").replaceChildren(
    el("span", { class: "icon", "aria-hidden": "true" }, "!"),
    el("span", {}, text));
}

// A change to the groups: the list as it is now, then the answer in words.
async function unknownChange(pending, done) {
  let said = null;
  let failed = null;
  try {
    said = done(await answer(await pending));
  } catch (error) {
    failed = error.message;
  }
  await loadUnknown();
  if (failed === null) unknownSay(said);
  else unknownError(failed);
}

function faceCount(n) {
  return `${n} face${n === 1 ? "" : "s"}`;
}

function seenAt(s) {
  return new Date(s.seen).toLocaleString();
}

function seenWhere(s) {
  return s.source || s.route || "";
}

function namedText(named) {
  const samples = named.samples.length;
  const made = samples ? `${faceCount(samples)} became ${samples === 1 ? "a sample" : "samples"}` : "no new sample (the same faces are already theirs)";
  return `Named ${named.name}: ${made}; ${faceCount(named.attributed)} ${named.attributed === 1 ? "is" : "are"} now theirs.${named.warning ? ` Note: ${named.warning}.` : ""}`;
}

async function loadUnknown(offset = 0) {
  const list = $("unknown-list");
  let listing;
  try {
    listing = await answer(await api("GET", `/console/api/unknown?offset=${offset}&limit=${GROUPS_PAGE}`));
  } catch (error) {
    unknownError(`The unknown faces could not be listed: ${error.message}`);
    return;
  }
  const { clusters, total } = listing;
  if (!offset) unknownShown = [];
  const cards = clusters.map((c, i) => clusterCard(c, offset + i + 1));
  unknownShown.push(...clusters.map((c) => c.id));
  if (offset) {
    list.querySelector("li.more")?.remove();
    list.append(...cards);
  } else {
    list.replaceChildren(...cards);
  }
  $("unknown-summary").textContent = total
    ? `${total} group${total === 1 ? "" : "s"} of unknown faces, ${faceCount(listing.unknown_faces)} in all.`
    : "";
  if (!total) {
    list.append(el("li", { class: "hint" }, listing.remembering
      ? "No unknown faces: a face recognition sees and cannot name appears here, grouped with others of the same person."
      : "No unknown faces: this server keeps none of the faces it sees (it was started with --no-face-memory)."));
  }
  const shown = offset + clusters.length;
  if (clusters.length && shown < total) {
    list.append(el("li", { class: "more" }, el("button", { type: "button", onclick: () => loadUnknown(shown) },
      `Show more groups (${total - shown} not shown)`)));
  }
  $("merge").disabled = total < 2;
}

function faceTile(s, number, group, alone) {
  const what = `face ${number} of group ${group}`;
  return el("li", { class: "sample" },
    el("img", {
      src: s.picture, width: 96, height: 96, loading: "lazy", decoding: "async",
      alt: `Face ${number} of group ${group}, seen ${seenAt(s)}${seenWhere(s) ? ` at ${seenWhere(s)}` : ""}`,
      title: `Seen ${seenAt(s)}${s.source ? ` at ${s.source}` : ""}${s.client ? ` (${s.client})` : ""} · quality ${s.quality.toFixed(2)}`,
    }),
    alone ? null : el("button", { type: "button", class: "small secondary", "aria-label": `Move out ${what}`, onclick: () =>
      unknownChange(api("POST", `/console/api/sightings/${encodeURIComponent(s.id)}/move`), () => `Face ${number} moved to a group of its own.`) }, "Move out"),
    el("button", { type: "button", class: "small danger", "aria-label": `Forget ${what}`, onclick: () => {
      if (!confirm("Forget this face and its picture?")) return;
      unknownChange(api("DELETE", `/console/api/sightings/${encodeURIComponent(s.id)}`), () => "Face forgotten.");
    } }, "Forget face"));
}

function clusterCard(c, group) {
  const heading = `group-${c.id}`;
  const nameId = `name-${c.id}`;
  const grid = el("ul", { class: "samples face-grid", "aria-label": `Faces of group ${group}` },
    c.sightings.map((s, i) => faceTile(s, i + 1, group, c.count === 1)));
  const more = c.count > c.sightings.length
    ? el("button", { type: "button", class: "secondary", onclick: async (event) => {
      try {
        const [all] = (await answer(await api("GET", `/console/api/unknown?cluster=${encodeURIComponent(c.id)}`))).clusters;
        grid.replaceChildren(...all.sightings.map((s, i) => faceTile(s, i + 1, group, all.count === 1)));
        event.target.remove();
      } catch (error) {
        unknownError(error.message);
      }
    } }, `Show all ${c.count} faces`)
    : null;
  const save = (name) => unknownChange(
    api("POST", `/console/api/unknown/${encodeURIComponent(c.id)}/name`, { name }), namedText);
  const maybe = c.maybe
    ? el("div", { class: "row maybe" },
      el("button", { type: "button", class: "secondary", "aria-describedby": `maybe-${c.id}`, onclick: () => save(c.maybe.name) }, `maybe ${c.maybe.name}`),
      el("span", { class: "hint", id: `maybe-${c.id}` }, `Looks like ${c.maybe.name} (similarity ${c.maybe.similarity.toFixed(2)}): one click names the group so.`))
    : null;
  return el("li", { class: "person cluster", "aria-labelledby": heading, "data-cluster": c.id },
    el("div", { class: "row" },
      el("input", { type: "checkbox", id: `merge-${c.id}`, class: "merge-pick", value: c.id }),
      el("label", { for: `merge-${c.id}` }, el("span", { class: "visually-hidden" }, `Group ${group}: `), "Select to merge"),
    ),
    el("h3", { id: heading }, `Group ${group}`,
      el("span", { class: "hint" }, ` · ${faceCount(c.count)} · last seen ${when(Date.parse(c.last_seen) / 1000)}${c.first_seen !== c.last_seen ? ` · first seen ${when(Date.parse(c.first_seen) / 1000)}` : ""}`)),
    grid,
    more,
    maybe,
    el("form", { class: "row", onsubmit: (event) => {
      event.preventDefault();
      const name = event.target.querySelector("input").value.trim();
      if (name) save(name);
    } },
    el("label", { for: nameId }, "Name"),
    el("input", { id: nameId, required: true, maxlength: 100, autocomplete: "off", "aria-describedby": heading }),
    el("button", { type: "submit" }, "Save")),
    el("button", { type: "button", class: "danger", "aria-label": `Forget group ${group}`, onclick: () => {
      if (!confirm(`Forget group ${group}: its ${faceCount(c.count)} and their pictures?`)) return;
      unknownChange(api("DELETE", `/console/api/unknown/${encodeURIComponent(c.id)}`), (done) => `Group ${group} forgotten (${faceCount(done.removed)}).`);
    } }, "Forget"));
}

$("merge").addEventListener("click", () => {
  const picked = [...document.querySelectorAll("#unknown-list .merge-pick:checked")].map((i) => i.value);
  if (picked.length < 2) {
    unknownError("Tick two or more groups of the same person to merge them.");
    return;
  }
  // Into the one listed first (the most recently seen); the order on the page decides.
  picked.sort((a, b) => unknownShown.indexOf(a) - unknownShown.indexOf(b));
  unknownChange(api("POST", "/console/api/unknown/merge", { clusters: picked }), () => `${picked.length} groups merged into one.`);
});

// -- plates ----------------------------------------------------------------------------
function showPlatesError(text) {
  $("plates-message").textContent = "";
  $("plates-error").replaceChildren(
    el("span", { class: "icon", "aria-hidden": "true" }, "!"),
    el("span", {}, text));
}

async function loadPlates() {
  const body = $("plate-table").tBodies[0];
  try {
    const { plates } = await answer(await api("GET", "/console/api/plates"));
    body.replaceChildren(...plates.map((p) => el("tr", {},
      el("td", {}, p.name),
      el("td", {}, p.plate ? el("code", {}, p.plate) : ["pattern ", el("code", {}, p.pattern)]),
      el("td", {}, el("button", { type: "button", class: "danger", "aria-label": `Remove plate ${p.name}`, onclick: async () => {
        if (!confirm(`Forget ${p.name}'s plates and patterns?`)) return;
        $("plates-error").replaceChildren();
        try {
          await answer(await api("DELETE", `/console/api/plates/${encodeURIComponent(p.name)}`));
          $("plates-message").textContent = `${p.name} removed.`;
        } catch (error) {
          showPlatesError(error.message);
        }
        loadPlates();
      } }, "Remove")))));
    if (!plates.length) body.append(el("tr", {}, el("td", { colspan: 3 }, "No known plates yet.")));
  } catch (error) {
    showPlatesError(`The known plates could not be listed: ${error.message}`);
  }
}

function plateKind() {
  const pattern = $("plate-kind-pattern").checked;
  $("plate-value-label").textContent = pattern ? "Pattern" : "Plate";
  $("plate-value").name = pattern ? "pattern" : "plate";
  $("plate-value-hint").textContent = pattern
    ? "A regular expression every letter and digit of a plate must match: FLEET[0-9]{3}."
    : "Letters and digits, spaces, dots and hyphens between them: AB-123 CD.";
}
$("plate-kind-plate").addEventListener("change", plateKind);
$("plate-kind-pattern").addEventListener("change", plateKind);

$("plate-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("plates-error").replaceChildren();
  $("plates-message").textContent = "";
  const field = $("plate-kind-pattern").checked ? "pattern" : "plate";
  try {
    const added = await answer(await api("POST", "/console/api/plates", { name: $("plate-name").value, [field]: $("plate-value").value }));
    $("plates-message").textContent = `${added.name} added: ${added.plate || `pattern ${added.pattern}`}.`;
    $("plate-form").reset();
    plateKind();
  } catch (error) {
    showPlatesError(error.message);
  }
  await loadPlates();
});

// -- keys ------------------------------------------------------------------------------
async function loadKeys() {
  const { keys, snippets } = await answer(await api("GET", "/console/api/keys"));
  $("key-table").tBodies[0].replaceChildren(...keys.map((k) => el("tr", {},
    el("td", {}, k.name), el("td", {}, when(k.created)), el("td", {}, when(k.last_used)),
    el("td", {}, el("button", { type: "button", class: "danger", "aria-label": `Revoke key ${k.name}`, onclick: async () => {
      if (!confirm(`Revoke the key ${k.name}? Clients using it stop working at once.`)) return;
      await answer(await api("DELETE", `/console/api/keys/${encodeURIComponent(k.id)}`));
      loadKeys();
    } }, "Revoke")))));
  if (!keys.length) $("key-table").tBodies[0].append(el("tr", {}, el("td", { colspan: 4 }, "No keys yet.")));
  if ($("new-key").hidden) showSnippets(snippets, "With YOUR_KEY standing for a key; create one to see it filled in.");
}

function showSnippets(snippets, note) {
  $("snippets-for").textContent = note;
  $("snippets").replaceChildren(...snippets.map((s, i) => {
    const said = el("span", { role: "status" });
    return el("details", { class: "snippet" },
      el("summary", {}, s.client),
      el("p", { class: "hint" }, s.where),
      el("pre", { class: "code", tabindex: 0, id: `snippet-${i}` }, s.text),
      el("button", { type: "button", "aria-label": `Copy ${s.client} configuration`, onclick: () => copy(s.text, said) }, "Copy"),
      said);
  }));
}

$("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    const created = await answer(await api("POST", "/console/api/keys", { name: $("key-name").value }));
    $("new-key-value").textContent = created.key;
    $("copy-key").onclick = () => copy(created.key, $("copy-key-done"));
    $("new-key").hidden = false;
    showSnippets(created.snippets, `Filled in for the key ${created.name} and this server.`);
    $("key-form").reset();
    await loadKeys();
  } catch (error) {
    $("snippets-for").textContent = error.message;
  }
});

// -- status ----------------------------------------------------------------------------
// A small line chart: one line per series ({name, values}; null where nothing was asked),
// a y-axis labelled with its unit at 0 and at the top, a legend under it.
function chart(node, lines, unit) {
  node.replaceChildren();
  const width = 300;
  const height = 80;
  const left = 54; // room for the y-axis labels
  const plot = width - left;
  const legend = 14 * Math.max(1, lines.length);
  node.setAttribute("viewBox", `0 0 ${width} ${height + 4 + legend}`);
  const numbers = lines.flatMap((l) => l.values).filter((v) => v !== null);
  const top = Math.max(1e-9, ...numbers);
  const axis = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2).replace(/\.?0+$/, "") || "0");
  node.append(svg("line", { x1: left, y1: height, x2: width, y2: height, stroke: "#6b7280" }));
  node.append(svg("line", { x1: left, y1: 4, x2: left, y2: height, stroke: "#6b7280" }));
  node.append(svg("text", { x: left - 4, y: 12, "font-size": 10, fill: "#374151", "text-anchor": "end" }, numbers.length ? axis(top) : "—"));
  node.append(svg("text", { x: left - 4, y: height, "font-size": 10, fill: "#374151", "text-anchor": "end" }, "0"));
  node.append(svg("text", { x: left - 4, y: height / 2 + 4, "font-size": 10, fill: "#374151", "text-anchor": "end", class: "unit" }, unit));
  lines.forEach((line, i) => {
    const { values } = line;
    const step = values.length > 1 ? plot / (values.length - 1) : plot;
    const colour = COLOURS[(i + 1) % COLOURS.length];
    // One polyline per run of samples that had requests: idle stretches stay gaps.
    let run = [];
    const flush = () => {
      if (run.length > 1) node.append(svg("polyline", { points: run.join(" "), fill: "none", stroke: colour, "stroke-width": 2 }));
      else if (run.length === 1) {
        const [x, y] = run[0].split(",");
        node.append(svg("circle", { cx: x, cy: y, r: 2, fill: colour }));
      }
      run = [];
    };
    values.forEach((v, j) => {
      if (v === null) flush();
      else run.push(`${(left + j * step).toFixed(1)},${(height - (v / top) * (height - 4)).toFixed(1)}`);
    });
    flush();
    const last = values.length ? values[values.length - 1] : null;
    const seen = values.filter((v) => v !== null);
    const now = last === null ? "no requests" : `${last.toFixed(1)} ${unit}`;
    const peak = seen.length ? `, peak ${Math.max(...seen).toFixed(1)}` : "";
    const label = `${line.name ? `${line.name}: ` : ""}now ${now}${peak}`;
    node.append(svg("text", { x: 0, y: height + 14 * (i + 1), "font-size": 11, fill: lines.length > 1 ? colour : "#374151" }, label));
  });
}

const CHARTED_ROUTES = 4; // the busiest API routes of the window get a latency line each
const isConsole = (route) => route === "/" || route.startsWith("/console/");

function series(history) {
  const rate = [];
  const ownRate = [];
  const queue = [];
  const perRoute = {};
  const busy = {};
  for (let i = 1; i < history.length; i++) {
    const a = history[i - 1];
    const b = history[i];
    const dt = Math.max(b.t - a.t, 1e-3);
    let own = 0;
    for (const [route, [count]] of Object.entries(b.routes)) {
      if (isConsole(route)) own += Math.max(0, count - (a.routes[route] || [0])[0]);
    }
    rate.push(Math.max(0, b.requests - a.requests - own) / dt);
    ownRate.push(own / dt);
    queue.push(b.waiting + b.inference);
    for (const [route, [count, seconds]] of Object.entries(b.routes)) {
      if (isConsole(route)) continue; // the page's own calls
      const [n0, s0] = a.routes[route] || [0, 0];
      const n = count - n0;
      perRoute[route] = perRoute[route] || new Array(i - 1).fill(null);
      perRoute[route].push(n > 0 ? ((seconds - s0) / n) * 1000 : null); // idle: no point
      busy[route] = (busy[route] || 0) + n;
    }
    for (const values of Object.values(perRoute)) if (values.length < i) values.push(null);
  }
  const latency = Object.keys(perRoute)
    .filter((route) => busy[route] > 0)
    .sort((x, y) => busy[y] - busy[x])
    .slice(0, CHARTED_ROUTES)
    .map((route) => ({ name: route, values: perRoute[route] }));
  return { rate, ownRate, queue, latency };
}

function routeRows(routes) {
  // The API's routes first, busiest first; the console's own traffic folded into one line.
  const api = routes.filter((r) => !isConsole(r.route));
  const own = routes.filter((r) => isConsole(r.route));
  const latency = (n, ms) => (n ? `${ms} ms` : "no requests");
  const rows = api.map((r) => el("tr", {},
    el("td", {}, el("code", {}, r.route)), el("td", {}, r.requests), el("td", {}, latency(r.requests, r.mean_ms))));
  if (!api.length) rows.push(el("tr", {}, el("td", { colspan: 3 }, "No API requests yet.")));
  if (own.length) {
    const n = own.reduce((sum, r) => sum + r.requests, 0);
    const ms = n ? (own.reduce((sum, r) => sum + r.requests * r.mean_ms, 0) / n).toFixed(1) : 0;
    rows.push(el("tr", { class: "folded" },
      el("td", {}, `This console's own requests (${own.length} route${own.length === 1 ? "" : "s"})`),
      el("td", {}, n), el("td", {}, latency(n, ms))));
  }
  return rows;
}

async function loadStatus() {
  const s = await answer(await api("GET", "/console/api/status"));
  $("status-summary").textContent = `${s.ready ? "Ready" : "Warming up"} · mlapi ${s.version} · ${s.processes} process${s.processes === 1 ? "" : "es"} × ${s.workers} workers · queue: ${s.queue.waiting || 0} waiting, ${s.queue.inference || 0} running`;
  const { rate, ownRate, queue, latency } = series(s.history);
  chart($("chart-rate"), [{ name: "API", values: rate }, { name: "this console", values: ownRate }], "req/s");
  chart($("chart-queue"), [{ name: "", values: queue }], "requests");
  chart($("chart-latency"), latency.length ? latency : [{ name: "no API requests", values: [] }], "ms");
  $("route-table").tBodies[0].replaceChildren(...routeRows(s.routes));
  $("model-table").tBodies[0].replaceChildren(...s.models.flatMap((d) => (d.models.length ? d.models : [{ name: "(none)", licence: "" }])
    .map((m) => el("tr", {}, el("td", {}, d.detector), el("td", {}, d.device || "cpu"), el("td", {}, m.name), el("td", {}, m.licence)))));
  clearInterval(statusTimer);
  statusTimer = setInterval(() => { if (!$("status").hidden) loadStatus(); }, s.every * 1000);
}

window.addEventListener("hashchange", route);
start();
