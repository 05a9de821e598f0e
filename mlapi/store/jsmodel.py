"""Unpack a TF.js graph model bundled as JavaScript (as npm `nsfwjs` ships its models).

`model.min.js` holds the model.json as a JavaScript object literal; each
`group1-shardNofM.min.js` holds one weights file as a base64 string. This writes a plain
`model.json` plus `.bin` files beside them, which the TF.js importer then converts.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from mlapi.errors import MlapiError

_TOKEN = re.compile(
    r'"(?:\\.|[^"\\])*"'  # double-quoted string
    r"|'(?:\\.|[^'\\])*'"  # single-quoted string
    r"|!0|!1"  # minified true / false
    r"|[A-Za-z_$][\w$]*(?=:)"  # bare object key
    r"|(?<![\w.])\.\d"  # number without a leading zero
    r"|[^\"'!A-Za-z_$.]+|."
)


def _balanced(text: str, start: int) -> str:
    """The {…} starting at `start`, skipping brackets inside strings."""
    depth, quote, i = 0, "", start
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
        i += 1
    raise MlapiError("unterminated object literal in the model script")


def js_literal_to_json(literal: str) -> object:
    out = []
    for m in _TOKEN.finditer(literal):
        tok = m.group(0)
        if tok.startswith("'"):
            inner = tok[1:-1].replace("\\'", "'").replace('"', '\\"')
            tok = json.dumps(json.loads(f'"{inner}"'))
        elif tok in ("!0", "!1"):
            tok = "true" if tok == "!0" else "false"
        elif re.fullmatch(r"[A-Za-z_$][\w$]*", tok) and literal[m.end() : m.end() + 1] == ":":
            tok = f'"{tok}"'
        elif re.fullmatch(r"\.\d", tok):
            tok = "0" + tok
        out.append(tok)
    return json.loads("".join(out))


def unpack(model_js: Path, folder: Path) -> Path:
    """Write model.json and its .bin weight files into `folder`; return the model.json."""
    text = model_js.read_text()
    start = text.find("{format:")
    if start < 0:
        raise MlapiError(f"{model_js.name} holds no TF.js graph model")
    model = js_literal_to_json(_balanced(text, start))
    assert isinstance(model, dict)
    for group in model["weightsManifest"]:
        paths = []
        for name in group["paths"]:
            shard = (folder / f"{name}.min.js").read_text()
            found = re.search(r'exports="([A-Za-z0-9+/=]+)"', shard)
            if not found:
                raise MlapiError(f"{name}.min.js holds no base64 weights")
            (folder / f"{name}.bin").write_bytes(base64.b64decode(found.group(1)))
            paths.append(f"{name}.bin")
        group["paths"] = paths
    target = folder / "model.json"
    target.write_text(json.dumps(model))
    return target
