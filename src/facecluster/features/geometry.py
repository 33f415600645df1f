"""Where the face sits in the picture: MTCNN's 5 landmarks and box, normalised by the image size.

StyleGAN faces are aligned to one template before training (FFHQ: eyes and mouth at fixed
pixels), so a generated face is where the template put it; real photos are framed by a
photographer. This family therefore measures the **generation pipeline** (its alignment
template and cropping), not whether a face is real: re-cropping or aligning the images
changes it completely. It reads only the face records, never the pixels, so it is the same
for box and aligned crops.
"""

from __future__ import annotations

import numpy as np

from facecluster.features.base import HandcraftedFeatures, check_crops
from facecluster.records import FaceRecord


class GeometryFeatures(HandcraftedFeatures):
    """15 values: 5 landmarks (x / width, y / height), the box (x, y, w, h over the image size), found flag.

    An image without a detected face gets zeros and flag 0 (never NaN).
    """

    name = "geometry"
    version = 1
    cue = ("face position in the image: a cue of the generation pipeline (the alignment template used to "
           "make the fakes), not of realness; it disappears when the faces are aligned identically")

    def params(self) -> dict:
        return {"landmarks": "mtcnn-5", "normalization": "image width/height", "box": True, "found_flag": True}

    @property
    def dim(self) -> int:
        return 15

    def describe(self) -> dict:
        return {**super().describe(), "reads": "face records (landmarks, box, image size), not pixels",
                "caution": "cue of the generation pipeline (alignment template), not of realness"}

    def transform(self, crops: np.ndarray, records: np.ndarray) -> np.ndarray:
        """Normalised landmarks and box from the records (N×18); the crops only fix N."""
        crops = check_crops(crops, records)
        out = np.zeros((len(crops), self.dim), dtype=np.float32)
        for i, row in enumerate(np.asarray(records)):
            face = FaceRecord.from_array(row)
            width, height = face.image_width, face.image_height
            if not face.found or face.box is None or face.landmarks is None or not (width > 0 and height > 0):
                continue
            values = np.concatenate([face.landmarks.reshape(-1), face.box]).astype(np.float64)
            if not np.isfinite(values).all():
                continue
            scale = np.tile([width, height], 7)
            out[i, :14] = values / scale
            out[i, 14] = 1.0
        return out
