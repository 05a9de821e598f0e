"""`text`: every line of text in the image, read offline (PaddleOCR PP-OCRv6).

The text detector looks at the image with its long side at `size` pixels (960 by default:
a 1080p photo in about a third of a second on two cores); each line it finds is cut from
the full-resolution pixels, turned over when the orientation classifier is sure it is
upside down, and read. `charset=latin` (the default) reads Latin letters, digits and
punctuation only, so Latin text never comes back with a look-alike CJK character;
`charset=all` reads the recogniser's whole dictionary (Chinese, Japanese, Korean and more).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from mlapi import attributes
from mlapi.detectors.base import Detector, Options
from mlapi.detectors.ocr import MODEL, Reader, line_crop
from mlapi.images import Image
from mlapi.result import Detection, clip_box

SIZE = 960


@dataclass(frozen=True)
class TextOptions(Options):
    # A line's mean character probability.
    confidence: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})
    # Long side of the text detector's input: larger finds smaller text, slower.
    size: int = field(default=SIZE, metadata={"min": 320, "max": 2560})
    charset: str = field(default="latin", metadata={"choices": ("latin", "all")})
    max_count: int = field(default=100, metadata={"min": 1, "max": 1000})


class Text(Detector):
    name = "text"
    task = "objects"
    description = "lines of text, read (PP-OCRv6; Latin letters by default)"
    models = (MODEL,)
    min_side = None  # lines are read from the full-resolution pixels
    Options = TextOptions

    def load(self) -> None:
        self.reader = Reader(self.context)

    def detect(
        self, image: Image, options: TextOptions, upstream: Mapping[str, list[Detection]]
    ) -> list[Detection]:
        rgb = image.pixels
        lines = self.reader.find_lines(rgb, options.size)
        crops = [line_crop(rgb, line.quad) for line in lines]
        flipped = self.reader.upside_down(crops)
        crops = [
            np.ascontiguousarray(crop[::-1, ::-1]) if turn else crop
            for crop, turn in zip(crops, flipped, strict=True)
        ]
        charset = None if options.charset == "all" else options.charset
        readings = self.reader.read(crops, charset)
        back = 1 / image.scale
        found = []
        for line, reading in zip(lines, readings, strict=True):
            reading = reading.strip()
            if not reading.text or reading.confidence < options.confidence:
                continue
            x1, y1, x2, y2 = (v * back for v in line.box)
            found.append(
                Detection(
                    "text",
                    reading.confidence,
                    clip_box(x1, y1, x2, y2, image.width, image.height),
                    self.name,
                    attributes=attributes.read_text(reading.text),
                )
            )
        found.sort(key=lambda d: -d.confidence)
        return found[: options.max_count]
