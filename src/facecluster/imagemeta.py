"""What a file says about itself besides its pixels: format, size, JPEG quality, EXIF, name words.

Used by the shortcut audit: every attribute here is something a classifier could exploit
without ever looking at a face.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps

from facecluster.images import FORMATS, MAX_PIXELS, ImageError, display_name, read_bytes
from facecluster.store import FeatureStore, FeatureTable

# Words that give a real/fake label away when they sit in a file or folder name.
LABEL_WORDS = frozenset({
    "fake", "fakes", "real", "reals", "gan", "stylegan", "progan", "biggan", "synthetic", "synth", "generated",
    "deepfake", "genuine", "authentic", "ffhq", "celeba", "tpdne", "thispersondoesnotexist", "diffusion",
    "midjourney", "dalle", "photo", "photos", "unsplash", "human", "ai",
})

# The IJG (libjpeg) luminance and chrominance tables at quality 50 (natural order).
_IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])
_IJG_CHROMINANCE = np.array([17, 18, 24, 47] + [99] * 4 + [18, 21, 26, 66] + [99] * 4 + [24, 26, 56] + [99] * 5
                            + [47, 66] + [99] * 6 + [99] * 32)

GREY_CHROMA_LEVELS = 2.0  # JPEG round-off leaves a little chroma in a grey picture
THUMBNAIL = 32


@dataclass
class ImageMeta:
    """Metadata and a grey thumbnail of one file (``error`` set when it could not be read)."""

    format: str | None = None
    mode: str | None = None
    width: int = 0
    height: int = 0
    file_size: int = 0
    jpeg_quality: int | None = None
    jpeg_quality_exact: bool = False
    subsampling: str | None = None
    progressive: bool = False
    exif: bool = False
    greyscale: bool = False
    name_words: list[str] = field(default_factory=list)
    thumbnail: np.ndarray | None = None
    error: str | None = None


def _scaled(table: np.ndarray, quality: int) -> np.ndarray:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality  # integer, as in libjpeg
    return np.clip((table * scale + 50) // 100, 1, 255)


QUALITIES = np.arange(1, 101)
# Sorted IJG tables at every quality: [luminance or chrominance, quality - 1, 64].
_SORTED_IJG = np.array([[np.sort(_scaled(ref, int(q))) for q in QUALITIES]
                        for ref in (_IJG_LUMINANCE, _IJG_CHROMINANCE)], dtype=float)


def estimate_jpeg_quality(quantization: dict[int, list[int]]) -> tuple[int | None, bool]:
    """The IJG quality (1–100) whose tables are closest to a JPEG's, and whether they match exactly.

    Tables are compared as sorted values, so the zig-zag or natural order of the file does
    not matter. Files written with non-IJG tables (cameras, some editors) get the nearest
    quality (the lowest, on a tie) and ``exact = False``.
    """
    if not quantization:
        return None, False
    tables = [np.sort(np.asarray(quantization[k], dtype=float)) for k in sorted(quantization)]
    errors = np.zeros(len(QUALITIES))
    for references, table in zip(_SORTED_IJG, tables[:2]):
        if len(table) == 64:
            errors += np.abs(references - table).sum(axis=1)
    best = int(np.argmin(errors))
    return int(QUALITIES[best]), bool(errors[best] == 0)


def is_greyscale(image: Image.Image) -> bool:
    """True for a grey-mode image or a colour image whose chroma is (almost) zero everywhere."""
    if image.mode in ("1", "L", "LA", "I", "I;16", "F"):
        return True
    ycc = np.asarray(image.convert("RGB").convert("YCbCr"), dtype=np.int16)
    chroma = np.maximum(np.abs(ycc[..., 1] - 128), np.abs(ycc[..., 2] - 128))
    return bool(np.percentile(chroma, 99) <= GREY_CHROMA_LEVELS)


def name_words(relative_name: str, extra_words: frozenset[str] = frozenset()) -> list[str]:
    """Label words found in a name (letters-only tokens, case-insensitive; digits split tokens)."""
    tokens = set(re.findall(r"[a-z]+", relative_name.lower()))
    return sorted(tokens & (LABEL_WORDS | extra_words))


def read_meta(path, relative_name: str, extra_words: frozenset[str] = frozenset()) -> ImageMeta:
    """Read one file's metadata and its 32×32 grey thumbnail of the whole frame."""
    meta = ImageMeta(name_words=name_words(relative_name, extra_words))
    try:
        # The same guarded reading as the pipeline: no blocking on a named pipe, no endless
        # device, no file over the size limit, and only the formats facecluster parses.
        data = read_bytes(path, relative_name)
        meta.file_size = len(data)
        image = Image.open(io.BytesIO(data), formats=FORMATS)
        meta.format, meta.mode, (meta.width, meta.height) = image.format, image.mode, image.size
        if image.width * image.height > MAX_PIXELS:
            raise ImageError("too_large", f"{display_name(relative_name)}: over {MAX_PIXELS:,} pixels")
        meta.exif = bool(image.getexif())
        meta.progressive = bool(image.info.get("progressive") or image.info.get("progression"))
        if image.format == "JPEG":
            meta.jpeg_quality, meta.jpeg_quality_exact = estimate_jpeg_quality(getattr(image, "quantization", {}))
            from PIL import JpegImagePlugin

            meta.subsampling = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}.get(JpegImagePlugin.get_sampling(image), "other")
        image.draft("RGB", (4 * THUMBNAIL, 4 * THUMBNAIL))  # JPEG: decode at a reduced scale, much faster
        image = ImageOps.exif_transpose(image)
        meta.greyscale = is_greyscale(image)
        thumb = image.convert("L").resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BOX)
        meta.thumbnail = np.asarray(thumb, dtype=np.float32) / 255
    except ImageError as error:
        meta.error = str(error)
    except Exception as error:  # any parser failure on hostile bytes is this file's, not the audit's
        meta.error = f"{display_name(relative_name)}: {type(error).__name__}: {display_name(str(error))[:120]}"
    return meta


# ---- cached in the feature store -----------------------------------------------------------
#: Bump when what `read_meta` measures changes: it keys the metadata cached in the feature store.
META_VERSION = 1
MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV",
         "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
SUBSAMPLINGS = (None, "4:4:4", "4:2:2", "4:2:0", "other")
_EXACT_FLOAT32 = 2**24  # integers up to this are exact in float32
_HEAD = 12  # the fields before the thumbnail in a stored row


def meta_table(store: FeatureStore) -> FeatureTable:
    """The store's table of file metadata and thumbnails, keyed by content hash."""
    return store.table("image-meta", {"version": META_VERSION, "thumbnail": THUMBNAIL})


def meta_vector(meta: ImageMeta) -> np.ndarray | None:
    """``meta`` as one float32 row of `meta_table` (names excepted: they are not content); None when it
    cannot be stored exactly (an unreadable file is read again next time)."""
    if (meta.error is not None or meta.thumbnail is None or meta.format not in FORMATS or meta.mode not in MODES
            or meta.subsampling not in SUBSAMPLINGS or max(meta.width, meta.height) >= _EXACT_FLOAT32):
        return None
    head = [FORMATS.index(meta.format), MODES.index(meta.mode), meta.width, meta.height,
            meta.file_size // _EXACT_FLOAT32, meta.file_size % _EXACT_FLOAT32,
            -1 if meta.jpeg_quality is None else meta.jpeg_quality, meta.jpeg_quality_exact,
            SUBSAMPLINGS.index(meta.subsampling), meta.progressive, meta.exif, meta.greyscale]
    return np.concatenate([np.array(head, dtype=np.float32), meta.thumbnail.reshape(-1).astype(np.float32)])


def meta_from_vector(row: np.ndarray, name_words: list[str]) -> ImageMeta:
    """The `ImageMeta` a `meta_vector` row holds, with the file's ``name_words`` (from its current name)."""
    head = [int(v) for v in row[:_HEAD]]
    return ImageMeta(format=FORMATS[head[0]], mode=MODES[head[1]], width=head[2], height=head[3],
                     file_size=head[4] * _EXACT_FLOAT32 + head[5],
                     jpeg_quality=None if head[6] < 0 else head[6], jpeg_quality_exact=bool(head[7]),
                     subsampling=SUBSAMPLINGS[head[8]], progressive=bool(head[9]), exif=bool(head[10]),
                     greyscale=bool(head[11]), name_words=name_words,
                     thumbnail=np.asarray(row[_HEAD:], dtype=np.float32).reshape(THUMBNAIL, THUMBNAIL))
