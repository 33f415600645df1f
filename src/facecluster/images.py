"""Read and decode image files into RGB arrays, with one clear error per bad file.

Every way a file can fail has a stable reason code, recorded in results.json, and a
one-line message that names the file and the fix:

==================  =============================================================
empty_file          0 bytes
not_an_image        the content is no image format we read (e.g. text named .jpg)
unsupported_format  an image format we do not read (HEIC, SVG, PSD, PDF, RAW...)
corrupt             truncated or damaged image data
too_large           more than `MAX_PIXELS` pixels (decompression-bomb guard) or
                    `MAX_FILE_BYTES` bytes
too_small           shorter side under `MIN_SIDE` pixels: smaller than any face
                    the detector finds, so nothing to embed
unreadable          permission denied, name too long, I/O error
missing             the file vanished after the folder was listed
broken_link         a symbolic link to a missing file
symlink_loop        a symbolic link that points back at itself
not_a_file          a folder, named pipe, device or socket where a file should be
==================  =============================================================

Only the formats in `FORMATS` are ever parsed: Pillow's other plugins (EPS, which runs
Ghostscript, among them) are never tried on user files. Files are opened without following
a named pipe into a blocking read, and never read past `MAX_FILE_BYTES`.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import unicodedata
import warnings
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from PIL import BmpImagePlugin, GifImagePlugin, JpegImagePlugin, PngImagePlugin, TiffImagePlugin  # noqa: F401
from PIL import WebPImagePlugin  # noqa: F401  (registered here, so no other plugin is ever loaded)

from facecluster.errors import FaceclusterError

#: The only Pillow formats ever parsed (JPEG includes the multi-picture MPO many phones write).
FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF")
#: Images above this many pixels are refused: 10000×10000 and 108-megapixel photos pass,
#: decompression bombs do not. Decoded at full size, so memory stays under ~1 GB per worker.
MAX_PIXELS = 120_000_000
#: Files above this size are refused without being read whole.
MAX_FILE_BYTES = 512 * 2**20
#: MTCNN's smallest face is 20 px: a shorter side below this cannot hold a face to embed.
MIN_SIDE = 20

# Signatures of the formats we read: such a file that Pillow cannot open has a damaged header.
_READ_SIGNATURES = ((0, b"\xff\xd8\xff", "JPEG"), (0, b"\x89PNG", "PNG"), (0, b"GIF8", "GIF"), (0, b"BM", "BMP"),
                    (8, b"WEBP", "WEBP"), (0, b"II*\x00", "TIFF"), (0, b"MM\x00*", "TIFF"))
# Signatures of image formats we recognise but do not read, to name them in the message.
_SIGNATURES = (
    (0, b"%PDF", "PDF"), (0, b"%!PS", "PostScript/EPS"), (0, b"\xc5\xd0\xd3\xc6", "EPS"),
    (0, b"8BPS", "Photoshop PSD"), (0, b"\xff\x0a", "JPEG XL"), (4, b"JXL ", "JPEG XL"),
    (4, b"jP  ", "JPEG 2000"), (0, b"\xff\x4f\xff\x51", "JPEG 2000"), (0, b"qoif", "QOI"),
    (0, b"\x76\x2f\x31\x01", "OpenEXR"), (0, b"#?RADIANCE", "Radiance HDR"), (0, b"DDS ", "DDS"),
    (0, b"\x00\x00\x01\x00", "ICO"), (0, b"FUJIFILMCCD-RAW", "Fujifilm RAW"),
)
_FTYP_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC", b"heim": "HEIC", b"heis": "HEIC",
                b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}
_UNSUPPORTED_SUFFIXES = {
    ".heic": "HEIC", ".heif": "HEIF", ".avif": "AVIF", ".svg": "SVG", ".svgz": "SVG", ".psd": "Photoshop PSD",
    ".pdf": "PDF", ".eps": "EPS", ".ps": "PostScript", ".jxl": "JPEG XL", ".jp2": "JPEG 2000",
    ".j2k": "JPEG 2000", ".ico": "ICO", ".exr": "OpenEXR", ".hdr": "Radiance HDR", ".tga": "TGA",
    ".ppm": "PPM", ".pgm": "PGM", ".pbm": "PBM", ".pnm": "PNM", ".qoi": "QOI", ".dds": "DDS",
    ".raw": "camera RAW", ".cr2": "Canon RAW", ".cr3": "Canon RAW", ".nef": "Nikon RAW",
    ".arw": "Sony RAW", ".dng": "DNG RAW", ".orf": "Olympus RAW", ".rw2": "Panasonic RAW", ".raf": "Fujifilm RAW",
}
_FIX_CONVERT = "convert it to JPEG or PNG"


class ImageError(FaceclusterError):
    """An input file that cannot be used as an image.

    Attributes
    ----------
    code : str
        A stable reason code recorded in results.json (``empty_file``, ``not_an_image``...).
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def display_name(name: str | bytes | os.PathLike) -> str:
    """A file name safe to print on one line and to write into JSON or HTML text.

    Bytes that are not UTF-8 (kept by Python as lone surrogates) become ``\\xNN``; control,
    format (e.g. right-to-left override) and line-separator characters become escapes, so a
    hostile name can neither break a message into several lines nor drive the terminal.
    """
    name = os.fspath(name)
    if isinstance(name, bytes):
        text = name.decode("utf-8", "backslashreplace")
    else:
        try:
            text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # surrogates that did not come from undecodable bytes
            text = name.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(ch.encode("unicode_escape").decode("ascii")
                   if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text)


def _os_error(error: OSError, path, shown: str) -> ImageError:
    """The `ImageError` for an OS error met while opening ``path``."""
    if error.errno == errno.ENOENT:
        if os.path.islink(path):
            target = display_name(os.readlink(path))
            return ImageError("broken_link", f"{shown}: a symbolic link to {target}, which does not exist; "
                                             "fix the link or remove it")
        return ImageError("missing", f"{shown}: the file vanished while the run was going; restore it or rerun")
    if error.errno == errno.ELOOP:
        return ImageError("symlink_loop", f"{shown}: a symbolic link that loops back on itself; "
                                          "point it at the image or remove it")
    if error.errno in (errno.EACCES, errno.EPERM):
        return ImageError("unreadable", f"{shown}: permission denied; make the file readable (chmod a+r)")
    if error.errno == errno.ENXIO:
        return ImageError("not_a_file", f"{shown}: a socket or device, not a file; replace it with the image file")
    return ImageError("unreadable", f"{shown}: cannot be read ({error.strerror or error}); check the file")


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def open_regular(path, name: str | None = None) -> BinaryIO:
    """Open ``path`` for reading only if it is a regular file (links followed).

    A named pipe is opened without blocking and refused, so a hostile folder cannot hang the
    run; folders, devices and sockets are refused too.

    Raises
    ------
    ImageError
        ``missing``, ``broken_link``, ``symlink_loop``, ``unreadable`` or ``not_a_file``.
    """
    shown = display_name(name if name is not None else path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        raise _os_error(error, path, shown) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ImageError("not_a_file", f"{shown}: {_kind(mode)}, not an image file; "
                                           "replace it with the image file or remove it")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path, name: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """Read a whole image file, turning every OS-level problem into an `ImageError`."""
    try:
        with open_regular(path, name) as handle:
            if os.fstat(handle.fileno()).st_size > max_bytes:
                raise _too_big(name, max_bytes)
            data = handle.read(max_bytes + 1)
    except OSError as error:  # I/O error during the read itself
        raise _os_error(error, path, display_name(name)) from None
    if len(data) > max_bytes:
        raise _too_big(name, max_bytes)
    return data


def _too_big(name: str, max_bytes: int) -> ImageError:
    return ImageError("too_large", f"{display_name(name)}: the file is over {max_bytes >> 20} MiB; "
                                   "downscale or recompress it")


def _unidentified(data: bytes, name: str, shown: str) -> ImageError:
    """`corrupt` for a damaged header of a format we read, `unsupported_format` for one we
    recognise but do not read, else `not_an_image`."""
    ours = next((label for offset, magic, label in _READ_SIGNATURES if data[offset:offset + len(magic)] == magic), None)
    if ours is not None:
        return ImageError("corrupt", f"{shown}: starts like a {ours} file but its header is damaged; "
                                     "re-export or replace the file")
    found = next((label for offset, magic, label in _SIGNATURES if data[offset:offset + len(magic)] == magic), None)
    if found is None and data[4:8] == b"ftyp":
        found = _FTYP_BRANDS.get(data[8:12])
    head = data[:1024].lstrip().lower()
    if found is None and (head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head)):
        found = "SVG"
    if found is None:
        found = _UNSUPPORTED_SUFFIXES.get(os.path.splitext(os.fspath(name))[1].lower())
    if found is not None:
        return ImageError("unsupported_format", f"{shown}: {found} images are not read; {_FIX_CONVERT}")
    return ImageError("not_an_image", f"{shown}: not an image (no {'/'.join(FORMATS[:4])}/... data); "
                                      "remove it or replace it with the image")


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; an unreadable EXIF block leaves the pixels as stored."""
    try:
        ImageOps.exif_transpose(image, in_place=True)  # no copy when there is nothing to turn
    except Exception:  # hostile or broken EXIF must not cost the image its pixels
        pass
    return image


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and float single-channel images scaled to 8 bits (65535 → 255, 1.0 → 255)."""
    if image.mode.startswith("I;16"):
        return Image.fromarray((np.asarray(image).astype(np.uint32) // 257).astype(np.uint8))
    if image.mode == "I":
        array = np.asarray(image, dtype=np.float64)
        top = float(array.max(initial=0))
        scale = 1.0 if top <= 255 else 257.0 if top <= 65535 else top / 255
        return Image.fromarray(np.clip(array / scale, 0, 255).astype(np.uint8))
    if image.mode == "F":
        array = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if array.max(initial=0) <= 1.0:
            array = array * 255
        return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    return image


def _to_rgb(image: Image.Image) -> np.ndarray:
    image = _to_8bit(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))  # transparent → white
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def decode_rgb(data: bytes, name: str = "image") -> np.ndarray:
    """Decode bytes into an RGB uint8 array (H, W, 3), honouring the EXIF orientation.

    Greyscale, palette, CMYK, 16-bit and float images are converted; transparency is laid on
    white; of an animated image the first frame is used.

    Raises
    ------
    ImageError
        With a reason code and a one-line message naming ``name`` and the fix.
    """
    shown = display_name(name)
    if not data:
        raise ImageError("empty_file", f"{shown}: the file is empty (0 bytes); remove it or replace it with the image")
    try:
        with warnings.catch_warnings():
            # Sizes are checked below; Pillow's bomb warning and EXIF complaints are not news.
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError("too_large", f"{shown}: {width}x{height} pixels is over the limit of "
                                              f"{MAX_PIXELS:,} (decompression-bomb guard); downscale it first")
            if min(width, height) < MIN_SIDE:
                raise ImageError("too_small", f"{shown}: {width}x{height} pixels is smaller than the smallest face "
                                              f"the detector finds ({MIN_SIDE} px); use a larger image or remove it")
            image.load()
            rgb = _to_rgb(_upright(image))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise _unidentified(data, name, shown) from None
    except (Image.DecompressionBombError, MemoryError):
        raise ImageError("too_large", f"{shown}: too many pixels to decode safely; downscale it first") from None
    except Exception as error:  # any parser failure on hostile bytes is this file's problem, not the run's
        reason = display_name(str(error))[:120] or type(error).__name__
        raise ImageError("corrupt", f"{shown}: the image data is damaged or truncated ({reason}); "
                                    "re-export or replace the file") from None
    return np.ascontiguousarray(rgb)
