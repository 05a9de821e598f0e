"""`plates`: licence plates on the vehicles `objects` finds, read offline (PP-OCRv6).

Each car, truck, bus or motorcycle is cropped from the full-resolution image below its
roof line and scaled to 320 px for the text detector (a small vehicle is enlarged); the
lines it finds are read from the full-resolution pixels at the recogniser's own height,
with only upper-case letters, digits and a plate's separators allowed. Two lines stacked
like the halves of a square plate are read as one plate. A plate must look like one: a
line wider than high, narrower than three quarters of its vehicle and not cut by the
vehicle's box; four to ten letters and digits, at least two of them digits and three
different (this drops signs, brand names, stickers and rows of knobs); read with the
`confidence` asked for; and, when the `format` option is given, a full match of that
regular expression. One plate a vehicle: its most confident.

A frame where no vehicle gave a plate is also read whole at 320 px, where only large text
shows: a plate close-up (a crop of a plate, a car front filling the picture, which the
object detector often does not see as a vehicle). A close-up plate spans a tenth of the
frame's width at least and has a letter. See bench/ocr.py for the figures.

A plate that reads as a known plate (`mlapi plates add`: the same letters and digits, one
edit away, or matched by a known pattern; see mlapi.stores.matching.PlateIndex) carries
that plate's `name`, from the known plates the engine was given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from mlapi import attributes
from mlapi.detectors.base import Detector, Options
from mlapi.detectors.ocr import MODEL, Line, Reader, Reading, box_of, line_crop
from mlapi.errors import OptionError
from mlapi.images import Image
from mlapi.result import Detection, clip_box
from mlapi.text import normalise_plate

VEHICLES = ("car", "truck", "bus", "motorcycle")
VEHICLE_SIDE = 320  # the text detector's input for a vehicle crop (long side)
FRAME_SIDE = 320  # … for the whole frame, where only close-up plates are large enough
VEHICLE_MARGIN = 0.05  # of the vehicle box, added on each side (plates sit at its edge)
MAX_VEHICLES = 8  # the largest ones; more is a car park, not a camera's subject
MIN_CHARACTERS, MAX_CHARACTERS, MIN_DIGITS = 4, 10, 2
MIN_LINE_PX = 8  # a line lower than this (full-resolution pixels) cannot be read
MAX_PLATE_WIDTH = 0.75  # of the vehicle's width: wider text is lettering, not a plate
MIN_CLOSEUP_WIDTH = 0.1  # of the frame's width, for a plate found on the whole frame
EDGE_CHARACTER = 0.8  # a character at the frame's edge is read only above this probability
MAX_LINES = 4  # the most probable lines of a region that are read
VEHICLE_TOP = 0.25  # of the vehicle box above its plate region: roof and windows
MAX_FORMAT_LENGTH = 200


@dataclass(frozen=True)
class PlateOptions(Options):
    # The reading's mean character probability.
    confidence: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})
    # A regular expression the plate (letters and digits only) must match in full, e.g.
    # `[0-9]{2}[A-Z]{1,2}[0-9]{4,5}`; empty: any plate-shaped reading.
    format: str = ""
    # Also read a frame where no vehicle gave a plate, for plate close-ups.
    closeups: bool = True
    max_count: int = field(default=20, metadata={"min": 1, "max": 100})

    def __post_init__(self) -> None:
        if len(self.format) > MAX_FORMAT_LENGTH:
            raise OptionError(f"plates: format is longer than {MAX_FORMAT_LENGTH} characters")
        try:
            re.compile(self.format)
        except re.error as exc:
            raise OptionError(f"plates: format is not a regular expression ({exc})") from None


@dataclass(frozen=True)
class Candidate:
    lines: tuple[Line, ...]  # top to bottom, full-resolution pixels
    reading: Reading

    @property
    def plate(self) -> str:
        return normalise_plate(self.reading.text)

    @property
    def box(self) -> tuple[float, float, float, float]:
        return box_of(self.lines)


def stacked(top: Line, bottom: Line) -> bool:
    """Whether two lines are the halves of a two-line plate: one above the other, about as
    tall, overlapping horizontally, close."""
    a, b = top.box, bottom.box
    ha, hb = a[3] - a[1], b[3] - b[1]
    if not (a[1] < b[1] and 0.5 <= hb / max(ha, 1e-6) <= 2.0):
        return False
    overlap = min(a[2], b[2]) - max(a[0], b[0])
    if overlap < 0.5 * min(a[2] - a[0], b[2] - b[0]):
        return False
    wa, wb = a[2] - a[0], b[2] - b[0]
    return 0.4 <= wb / max(wa, 1e-6) <= 2.5 and b[1] - a[3] <= 0.5 * max(ha, hb)


def groups(lines: Sequence[Line]) -> list[tuple[int, ...]]:
    """Each line alone, and each pair that stacks like a two-line plate (indices)."""
    found: list[tuple[int, ...]] = [(i,) for i in range(len(lines))]
    for i, top in enumerate(lines):
        for j, bottom in enumerate(lines):
            if i != j and stacked(top, bottom):
                found.append((i, j))
    return found


def plausible(candidate: Candidate, options: PlateOptions, closeup: bool) -> bool:
    """Reads like a plate: four to ten letters and digits, mostly letters and digits, two
    digits at least, three different characters (not a row of knobs read as 0000), and on a
    close-up with no vehicle around it a letter too."""
    plate, text = candidate.plate, candidate.reading.text.replace(" ", "")
    digits = sum(c.isdigit() for c in plate)
    if not MIN_CHARACTERS <= len(plate) <= MAX_CHARACTERS or len(plate) < 0.6 * len(text):
        return False
    if digits < MIN_DIGITS or len(set(plate)) < 3 or (closeup and digits == len(plate)):
        return False
    if candidate.reading.confidence < options.confidence:
        return False
    return not options.format or re.fullmatch(options.format, plate) is not None


class Plates(Detector):
    name = "plates"
    task = "objects"
    description = "licence plates on vehicles, read (PP-OCRv6)"
    needs = ("objects",)
    models = (MODEL,)
    min_side = None  # plates are read from the full-resolution pixels
    Options = PlateOptions

    def load(self) -> None:
        self.reader = Reader(self.context)

    def detect(
        self, image: Image, options: PlateOptions, upstream: Mapping[str, list[Detection]]
    ) -> list[Detection]:
        rgb = image.pixels
        height, width = rgb.shape[:2]
        vehicles = [d for d in upstream["objects"] if d.label in VEHICLES]
        vehicles.sort(key=lambda d: -(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
        found: list[tuple[Candidate, str | None]] = []
        for vehicle in vehicles[:MAX_VEHICLES]:
            x1, y1, x2, y2 = (v * image.scale for v in vehicle.box)
            mx, my = (x2 - x1) * VEHICLE_MARGIN, (y2 - y1) * VEHICLE_MARGIN
            region = (
                max(0, int(x1 - mx)),
                max(0, int(y1 + (y2 - y1) * VEHICLE_TOP)),
                min(width, int(x2 + mx + 1)),
                min(height, int(y2 + my + 1)),
            )
            plates = self.read(rgb, region, VEHICLE_SIDE, options, closeup=False)
            found += [(c, vehicle.label) for c in plates[:1]]  # one plate a vehicle
        if not found and options.closeups:
            plates = self.read(rgb, (0, 0, width, height), FRAME_SIDE, options, closeup=True)
            found = [(c, None) for c in plates]
        return self.detections(found, image, options)

    def read(
        self,
        rgb: np.ndarray,
        region: tuple[int, int, int, int],
        side: int,
        options: PlateOptions,
        closeup: bool,
    ) -> list[Candidate]:
        """The plates read in `region` of `rgb` (a vehicle, or the whole frame for a
        close-up), most confident first, none sharing a line."""
        x0, y0, x1, y1 = region
        if min(x1 - x0, y1 - y0) < MIN_LINE_PX:
            return []
        found = self.reader.find_lines(rgb[y0:y1, x0:x1], side)
        lines = [
            line
            for line in (line.moved(1.0, 1.0, x0, y0) for line in found)
            if self.usable(line, region, rgb.shape[:2], closeup)
        ]
        if not lines:
            return []
        lines = sorted(lines, key=lambda line: -line.score)[:MAX_LINES]
        crops = [line_crop(rgb, line.quad) for line in lines]
        readings = self.reader.read(crops, "plate")
        # A character cut by the frame's left or right edge is read only when it is clear.
        width = rgb.shape[1]
        readings = [
            r.strip(
                EDGE_CHARACTER if line.box[0] <= 1 else 0.0,
                EDGE_CHARACTER if line.box[2] >= width - 1 else 0.0,
            )
            for r, line in zip(readings, lines, strict=True)
        ]
        region_width = x1 - x0
        candidates = []
        for group in groups(lines):
            candidate = Candidate(
                tuple(lines[i] for i in group), joined([readings[i] for i in group])
            )
            box = candidate.box
            if closeup and box[2] - box[0] < MIN_CLOSEUP_WIDTH * region_width:
                continue  # small text on a frame without vehicles: not a close-up
            if plausible(candidate, options, closeup):
                candidates.append(candidate)
        # A two-line plate is one plate: its halves are not plates of their own.
        paired = {id(line) for c in candidates if len(c.lines) > 1 for line in c.lines}
        candidates = [c for c in candidates if len(c.lines) > 1 or id(c.lines[0]) not in paired]
        candidates.sort(key=lambda c: -c.reading.confidence)
        chosen: list[Candidate] = []
        used: set[int] = set()
        for c in candidates:
            ids = {id(line) for line in c.lines}
            if not ids & used:
                chosen.append(c)
                used |= ids
        return chosen

    @staticmethod
    def usable(
        line: Line, region: tuple[int, int, int, int], frame: tuple[int, int], closeup: bool
    ) -> bool:
        """Whether a line may be (half of) a plate: high enough to read, wider than high, and
        on a vehicle narrower than MAX_PLATE_WIDTH of it and not cut by the crop's edges (a
        plate the vehicle's box cuts is another vehicle's, or is read whole from that one)."""
        if line.height < MIN_LINE_PX or line.width < line.height:
            return False
        if closeup:
            return True
        x0, y0, x1, y1 = region
        left, top, right, bottom = line.box
        if line.width > MAX_PLATE_WIDTH * (x1 - x0):
            return False
        height, width = frame
        cut = (
            (x0 > 0 and left <= x0 + 1)
            or (y0 > 0 and top <= y0 + 1)
            or (x1 < width and right >= x1 - 1)
            or (y1 < height and bottom >= y1 - 1)
        )
        return not cut

    def detections(
        self,
        found: list[tuple[Candidate, str | None]],
        image: Image,
        options: PlateOptions,
    ) -> list[Detection]:
        found.sort(key=lambda f: -f[0].reading.confidence)
        out: list[Detection] = []
        boxes: list[tuple[float, float, float, float]] = []
        back = 1 / image.scale
        known = self.context.plates if found else None  # opened only when a plate is read
        for candidate, vehicle in found:
            if len(out) == options.max_count:
                break
            box = candidate.box
            if any(_iou(box, b) > 0.5 for b in boxes):
                continue  # the same plate, seen from two overlapping vehicles
            boxes.append(box)
            attrs = attributes.read_plate(candidate.plate, candidate.reading.text, vehicle)
            match = known.match(candidate.plate) if known is not None else None
            if match is not None:
                attrs.update(attributes.known_plate(match.name))
            x1, y1, x2, y2 = (v * back for v in box)
            out.append(
                Detection(
                    "plate",
                    candidate.reading.confidence,
                    clip_box(x1, y1, x2, y2, image.width, image.height),
                    self.name,
                    attributes=attrs,
                )
            )
        return out


def joined(parts: Sequence[Reading]) -> Reading:
    """The lines of one plate read as one, top line first (the space between them counts
    as read for sure; the confidence is the lines' characters')."""
    read = [q for p in parts for q in p.probabilities]
    if not read:
        return Reading("", 0.0)
    probabilities: list[float] = []
    for part in parts:
        probabilities += [1.0] * bool(probabilities) + list(part.probabilities)
    return Reading(" ".join(p.text for p in parts), sum(read) / len(read), tuple(probabilities))


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
