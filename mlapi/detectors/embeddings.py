"""`embeddings`: one vector per whole image for similarity search.

MobileNetV2-1.4 (ImageNet) global features from npm `nsfwjs`: 1792 floats, L2-normalised,
so the dot product of two vectors is their cosine similarity. `normalise=false` gives the
raw features (0 to about 6), the scale HomeGallery's similarity hash was tuned for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from mlapi.detectors.base import Detector, Options
from mlapi.images import Image
from mlapi.result import Detection

INPUT = 224
DIMENSIONS = 1792


@dataclass(frozen=True)
class EmbeddingOptions(Options):
    normalise: bool = True  # unit length (cosine = dot product); false: raw features


class ImageEmbedding(Detector):
    name = "embeddings"
    task = "embedding"
    description = f"a {DIMENSIONS}-d L2-normalised vector per image (MobileNetV2 features)"
    models = ("mobilenet-v2-embed",)
    min_side = INPUT
    Options = EmbeddingOptions

    def load(self) -> None:
        self.session, self.input_name = self.open_session()

    def detect(
        self, image: Image, options: EmbeddingOptions, upstream: Mapping[str, list[Detection]]
    ) -> list[Detection]:
        resized = cv2.resize(image.pixels, (INPUT, INPUT), interpolation=cv2.INTER_AREA)
        tensor = (resized.astype(np.float32) / 255.0)[None]
        vector = self.session.run(None, {self.input_name: tensor})[0][0]
        if options.normalise:
            vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        box = (0, 0, image.width, image.height)
        return [Detection("image", 1.0, box, self.name, embedding=tuple(float(v) for v in vector))]
