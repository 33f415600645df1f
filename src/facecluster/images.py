"""Decode image files into RGB arrays, with one clear error per bad file."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow's own guard against decompression bombs stays on; images above this many
# pixels are refused with a clear reason instead of a warning.
MAX_PIXELS = 89_478_485


class ImageError(Exception):
    """An input file that cannot be used as an image.

    Attributes
    ----------
    code : str
        A stable reason code recorded in results.json (``empty_file``, ``not_an_image``...).
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def decode_rgb(data: bytes, name: str = "image") -> np.ndarray:
    """Decode bytes into an RGB uint8 array (H, W, 3), honouring EXIF orientation.

    Raises
    ------
    ImageError
        With a reason code and a one-line message naming ``name`` and the fix.
    """
    if not data:
        raise ImageError("empty_file", f"{name}: the file is empty (0 bytes); remove it or replace it with the image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PIXELS:
                raise ImageError("too_large", f"{name}: {image.width}x{image.height} pixels is over the "
                                 f"{MAX_PIXELS} limit; downscale it first")
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image, dtype=np.float64)
                top = max(float(array.max()), 1.0)
                image = Image.fromarray((array / top * 255).astype(np.uint8))
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, image.convert("RGBA"))
            rgb = np.asarray(image.convert("RGB"))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not_an_image", f"{name}: not an image file Pillow can read; remove it or convert it to JPEG/PNG") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageError("too_large", f"{name}: too many pixels (decompression-bomb guard); downscale it first") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError("corrupt", f"{name}: the image data is corrupt or truncated ({error}); re-export the file") from None
    return np.ascontiguousarray(rgb)


def read_bytes(path, name: str) -> bytes:
    """Read a file, turning OS errors into an `ImageError` with a reason code."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except PermissionError:
        raise ImageError("unreadable", f"{name}: permission denied; make the file readable") from None
    except FileNotFoundError:
        raise ImageError("missing", f"{name}: file vanished or is a broken link; restore it or remove the link") from None
    except OSError as error:
        raise ImageError("unreadable", f"{name}: cannot be read ({error.strerror}); check the file") from None
