"""Reading text with PaddleOCR's PP-OCRv6 networks, on numpy and OpenCV only.

Shared by `text` and `plates`. Three networks from the `pp-ocrv6` catalog model (the ONNX
files of PyPI `rapidocr`), each run through the runtime's one session factory:

- detection (DB): a probability map of "text here"; lines are the connected regions above
  0.3 whose mean probability reaches 0.5, each grown by area × 1.6 / perimeter on every
  side (DB's unclip, done on the minimum-area rectangle: growing a rectangle by a rounded
  offset and taking the minimum-area rectangle again gives exactly this);
- recognition (CTC): a line warped upright at 48 px high → per-column class probabilities
  over the dictionary held in the model's metadata; greedy decoding keeps each column's
  best class, merges repeats and drops CTC's blank. A charset restricts the classes looked
  at, so a Latin plate never reads as a look-alike CJK character;
- orientation: whether a line is upside down (PaddleOCR's v2.0 classifier).

Pre- and post-processing follow `rapidocr/config.yaml` of rapidocr 3.10.0 (BGR input,
(x / 255 - 0.5) / 0.5, detection sides a multiple of 32, its DB thresholds), written here
rather than depending on rapidocr, which brings shapely, pyclipper and omegaconf for what
is a few dozen lines on top of numpy and OpenCV. Two departures, measured by bench/ocr.py:
the detector's input is sized by its long side (rapidocr enlarges the short side to 736
px, which loses words that fill a small image and takes 0.8 s on a 1080p frame), and a
batch of lines is padded to its widest line, not to at least 320 px (the same words read,
up to three times less work for short lines).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from mlapi.detectors.base import LoadContext

MODEL = "pp-ocrv6"  # its first file, the text detector, is the artifact
RECOGNISER_FILE = "PP-OCRv6_rec_small.onnx"
ORIENTATION_FILE = "ch_ppocr_mobile_v2.0_cls_mobile.onnx"

STRIDE = 32  # detection input sides are multiples of this
BINARY_THRESHOLD = 0.3  # a map pixel is text above this
BOX_THRESHOLD = 0.5  # a region is a line when its mean probability reaches this
UNCLIP_RATIO = 1.6
MIN_SIDE = 3  # map pixels: thinner regions are noise
MAX_CANDIDATES = 1000
LINE_HEIGHT = 48  # the recogniser's input height
REC_BATCH = 6
ORIENTATION_SIZE = (48, 192)  # height, width
UPSIDE_DOWN = 0.9  # the classifier's confidence needed to turn a line over

LATIN_EXTRA = "‘’‚“”„–—…•€™"


def is_latin(ch: str) -> bool:
    """Printable ASCII, Latin-1 letters and signs, Latin Extended-A, common typography."""
    return len(ch) == 1 and (" " <= ch <= "~" or "\u00a0" <= ch <= "\u017f" or ch in LATIN_EXTRA)


def is_plate_character(ch: str) -> bool:
    return ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-. "


CHARSETS = {"latin": is_latin, "plate": is_plate_character}


@dataclass(frozen=True)
class Line:
    """A text line found by the detector: its corners (top-left, top-right, bottom-right,
    bottom-left) in the pixels it was found in, and its mean probability."""

    quad: np.ndarray  # 4×2 float32
    score: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        xs, ys = self.quad[:, 0], self.quad[:, 1]
        return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())

    @property
    def width(self) -> float:
        q = self.quad
        return float(max(np.linalg.norm(q[0] - q[1]), np.linalg.norm(q[3] - q[2])))

    @property
    def height(self) -> float:
        q = self.quad
        return float(max(np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[1] - q[2])))

    def moved(self, scale_x: float, scale_y: float, dx: float = 0.0, dy: float = 0.0) -> Line:
        quad = self.quad * np.array([scale_x, scale_y], np.float32) + np.array([dx, dy], np.float32)
        return Line(quad.astype(np.float32), self.score)


@dataclass(frozen=True)
class Reading:
    text: str
    confidence: float  # mean probability of the characters read; 0 when none
    probabilities: tuple[float, ...] = ()  # each character's

    def strip(self, left: float = 0.0, right: float = 0.0) -> Reading:
        """Without spaces at either end, nor end characters less probable than `left` at
        the start and `right` at the end (a character cut by the frame's edge)."""
        chars = list(zip(self.text, self.probabilities, strict=True))
        while chars and (chars[0][0] == " " or chars[0][1] < left):
            chars.pop(0)
        while chars and (chars[-1][0] == " " or chars[-1][1] < right):
            chars.pop()
        if not chars:
            return Reading("", 0.0)
        probabilities = tuple(p for _, p in chars)
        return Reading("".join(c for c, _ in chars), sum(probabilities) / len(chars), probabilities)


# -- detection ---------------------------------------------------------------------------
def detection_input(rgb: np.ndarray, long_side: int) -> tuple[np.ndarray, float, float]:
    """1×3×H×W BGR input with the long side near `long_side` (both sides multiples of 32),
    and the factors (x, y) from map pixels back to `rgb` pixels."""
    h, w = rgb.shape[:2]
    ratio = long_side / max(h, w)
    nh = max(STRIDE, round(h * ratio / STRIDE) * STRIDE)
    nw = max(STRIDE, round(w * ratio / STRIDE) * STRIDE)
    interp = cv2.INTER_AREA if nw < w else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, (nw, nh), interpolation=interp)
    tensor = np.empty((1, 3, nh, nw), np.float32)
    for plane, channel in zip(tensor[0], (2, 1, 0), strict=True):  # BGR
        np.multiply(resized[:, :, channel], 1 / 127.5, out=plane, dtype=np.float32)
        plane -= 1.0
    return tensor, w / nw, h / nh


def _ordered(points: np.ndarray) -> np.ndarray:
    """Corners as top-left, top-right, bottom-right, bottom-left."""
    by_x = points[np.argsort(points[:, 0], kind="stable")]
    left, right = by_x[:2], by_x[2:]
    tl, bl = left[np.argsort(left[:, 1], kind="stable")]
    tr, br = right[np.argsort(right[:, 1], kind="stable")]
    return np.array([tl, tr, br, bl], np.float32)


def _mean_inside(prob: np.ndarray, quad: np.ndarray) -> float:
    """Mean probability inside a quadrilateral (DB's 'fast' box score)."""
    h, w = prob.shape
    x0 = int(np.clip(np.floor(quad[:, 0].min()), 0, w - 1))
    x1 = int(np.clip(np.ceil(quad[:, 0].max()), 0, w - 1))
    y0 = int(np.clip(np.floor(quad[:, 1].min()), 0, h - 1))
    y1 = int(np.clip(np.ceil(quad[:, 1].max()), 0, h - 1))
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    local = (quad - np.array([x0, y0], np.float32)).astype(np.int32)
    cv2.fillPoly(mask, [local], 1)
    return float(cv2.mean(prob[y0 : y1 + 1, x0 : x1 + 1], mask)[0])


def db_lines(
    prob: np.ndarray,
    threshold: float = BINARY_THRESHOLD,
    box_threshold: float = BOX_THRESHOLD,
    unclip_ratio: float = UNCLIP_RATIO,
) -> list[Line]:
    """Text lines in a DB probability map (H×W), in map pixels."""
    mask = cv2.dilate((prob > threshold).astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    h, w = prob.shape
    lines = []
    for contour in contours[:MAX_CANDIDATES]:
        centre, (rw, rh), angle = cv2.minAreaRect(contour)
        if min(rw, rh) < MIN_SIDE:
            continue
        score = _mean_inside(prob, cv2.boxPoints((centre, (rw, rh), angle)))
        if score < box_threshold:
            continue
        grow = rw * rh * unclip_ratio / (2 * (rw + rh))  # area × ratio / perimeter
        grown = (centre, (rw + 2 * grow, rh + 2 * grow), angle)
        if min(grown[1]) < MIN_SIDE + 2:
            continue
        quad = _ordered(cv2.boxPoints(grown))
        quad[:, 0] = np.clip(quad[:, 0], 0, w)
        quad[:, 1] = np.clip(quad[:, 1], 0, h)
        lines.append(Line(quad, score))
    return lines


# -- recognition -------------------------------------------------------------------------
def line_crop(rgb: np.ndarray, quad: np.ndarray, height: int = LINE_HEIGHT) -> np.ndarray:
    """The line inside `quad` (in `rgb` pixels), warped upright and scaled to `height`."""
    tl, tr, br, bl = quad
    width = max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl))
    tall = max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr))
    cw, ch = max(1, int(width)), max(1, int(tall))
    target = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float32)
    warp = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    crop = cv2.warpPerspective(
        rgb, warp, (cw, ch), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    if ch >= 1.5 * cw:  # a vertical line: read it turned
        crop = np.ascontiguousarray(np.rot90(crop))
        cw, ch = ch, cw
    out_w = max(1, round(cw * height / ch))
    interp = cv2.INTER_AREA if ch > height else cv2.INTER_CUBIC
    return cv2.resize(crop, (out_w, height), interpolation=interp)


def _normalised(crops: Sequence[np.ndarray], width: int) -> np.ndarray:
    """N×3×H×W BGR, (x / 255 - 0.5) / 0.5, each crop left-aligned and padded with zeros."""
    height = crops[0].shape[0]
    batch = np.zeros((len(crops), 3, height, width), np.float32)
    for out, crop in zip(batch, crops, strict=True):
        w = min(crop.shape[1], width)
        for plane, channel in zip(out, (2, 1, 0), strict=True):
            np.multiply(crop[:, :w, channel], 1 / 127.5, out=plane[:, :w], dtype=np.float32)
            plane[:, :w] -= 1.0
    return batch


class Reader:
    """PP-OCRv6's three networks, loaded once; `detect` may call it from several threads."""

    def __init__(self, context: LoadContext) -> None:
        folder = context.model_path(MODEL)
        self.detector = context.onnx_session(MODEL)
        self.recogniser = context.onnx_session(MODEL, folder / RECOGNISER_FILE)
        self.orientation = context.onnx_session(MODEL, folder / ORIENTATION_FILE)
        self._det_input = self.detector.get_inputs()[0].name
        self._rec_input = self.recogniser.get_inputs()[0].name
        self._cls_input = self.orientation.get_inputs()[0].name
        meta = self.recogniser.get_modelmeta().custom_metadata_map
        # Class 0 is CTC's blank; the last is the space the dictionary leaves out.
        self.alphabet: tuple[str, ...] = ("", *meta["character"].splitlines(), " ")
        classes = self.recogniser.get_outputs()[0].shape[-1]
        if isinstance(classes, int) and classes != len(self.alphabet):
            raise ValueError(f"{MODEL}: {len(self.alphabet)} characters for {classes} classes")
        self.subsets = charset_classes(self.alphabet)

    # detection
    def find_lines(self, rgb: np.ndarray, long_side: int) -> list[Line]:
        """Text lines in `rgb`, in its pixels, with the detector's input at `long_side`."""
        tensor, fx, fy = detection_input(rgb, long_side)
        prob = self.detector.run(None, {self._det_input: tensor})[0][0, 0]
        return [line.moved(fx, fy) for line in db_lines(prob)]

    # orientation
    def upside_down(self, crops: Sequence[np.ndarray]) -> list[bool]:
        """Which crops the classifier is sure are upside down."""
        if not crops:
            return []
        h, w = ORIENTATION_SIZE
        resized = []
        for crop in crops:
            cw = min(w, math.ceil(h * crop.shape[1] / crop.shape[0]))
            resized.append(cv2.resize(crop, (cw, h)))
        flipped = []
        for start in range(0, len(resized), REC_BATCH):
            batch = _normalised(resized[start : start + REC_BATCH], w)
            probs = self.orientation.run(None, {self._cls_input: batch})[0]
            flipped += [bool(p[1] > UPSIDE_DOWN and p[1] > p[0]) for p in probs]
        return flipped

    # recognition
    def read(self, crops: Sequence[np.ndarray], charset: str | None = "latin") -> list[Reading]:
        """What each crop (LINE_HEIGHT high) says; `charset` None reads every character.
        Crops are read in batches of similar widths, each padded to its batch's widest."""
        order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1])
        out: list[Reading] = [Reading("", 0.0)] * len(crops)
        subset = self.subsets[charset] if charset else None
        for start in range(0, len(order), REC_BATCH):
            chosen = order[start : start + REC_BATCH]
            width = max(crops[i].shape[1] for i in chosen)
            batch = _normalised([crops[i] for i in chosen], width)
            probs = self.recogniser.run(None, {self._rec_input: batch})[0]
            for i, p in zip(chosen, probs, strict=True):
                out[i] = ctc_decode(p, self.alphabet, subset)
        return out


def charset_classes(alphabet: Sequence[str]) -> dict[str, np.ndarray]:
    """The classes each charset reads (CTC's blank, class 0, included), by charset name."""
    return {
        name: np.array([i for i, ch in enumerate(alphabet) if i == 0 or keep(ch)], np.int64)
        for name, keep in CHARSETS.items()
    }


def ctc_decode(probs: np.ndarray, alphabet: Sequence[str], subset: np.ndarray | None) -> Reading:
    """Greedy CTC decoding of one line's T×C probabilities: each column's most probable
    class among `subset`'s (None: all; the others are masked before the argmax), repeats
    merged, blanks dropped."""
    if subset is not None:
        local = probs[:, subset]
        best = local.argmax(1)
        classes, scores = subset[best], local[np.arange(len(best)), best]
    else:
        classes = probs.argmax(1)
        scores = probs[np.arange(len(classes)), classes]
    keep = classes != 0
    keep[1:] &= classes[1:] != classes[:-1]
    if not keep.any():
        return Reading("", 0.0)
    chosen, kept = classes[keep], scores[keep]
    text = "".join(alphabet[c] for c in chosen)
    each = tuple(float(p) for c, p in zip(chosen, kept, strict=True) for _ in alphabet[c])
    return Reading(text, float(kept.mean()), each)


def box_of(lines: Sequence[Line]) -> tuple[float, float, float, float]:
    boxes = np.array([line.box for line in lines])
    return (
        float(boxes[:, 0].min()),
        float(boxes[:, 1].min()),
        float(boxes[:, 2].max()),
        float(boxes[:, 3].max()),
    )
