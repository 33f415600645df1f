"""Build a dataset folder holding every kind of bad input, and what each entry must become.

`build_messy(root)` writes a small valid dataset (so the run can complete) plus one entry
per bad-input kind, and returns the `Entry` list: where each created path must end up in
results.json (``images`` with one of ``codes`` as its status, ``skipped`` with that code,
or ``inside`` a skipped folder) so a test can check that nothing is lost.
"""

from __future__ import annotations

import errno
import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from tests.conftest import synthetic_face

USABLE = frozenset({"ok", "no_face"})
HOSTILE_NAME = "evil\n[/]\x1b[31m\u202egpj.jpg"  # newline, rich markup, ANSI escape, right-to-left override


@dataclass(frozen=True)
class Entry:
    """One created path: ``rel`` (str, surrogate-escaped like os.listdir) and where it must be accounted."""

    kind: str
    rel: str
    where: str  # "images", "skipped" or "inside" (a file inside a skipped folder)
    codes: frozenset


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_with_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` with almost no data: a decompression bomb's shape."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def exif_rotated_jpeg(upright: Image.Image) -> bytes:
    """A JPEG stored turned 90° clockwise with EXIF orientation 8 ("rotate 270 to view"), so viewers show ``upright``."""
    stored = upright.transpose(Image.Transpose.ROTATE_270)  # what a phone held sideways writes
    exif = Image.Exif()
    exif[0x0112] = 8
    return encode(stored, "JPEG", quality=92, exif=exif.tobytes())


def top_marked_face(rng: np.random.Generator, size: int = 96) -> Image.Image:
    """A synthetic face with a pure red band along its top edge, to tell up from down."""
    array = np.asarray(synthetic_face(rng, "real", size)).copy()
    array[: size // 8] = (255, 0, 0)
    return Image.fromarray(array)


def deny_open(monkeypatch, path: Path) -> None:
    """Make facecluster's file opening refuse ``path`` with EACCES: chmod 000 stops nobody when tests run as root."""
    from facecluster import images

    real_open = os.open

    def denying(target, *args, **kwargs):
        if os.fspath(target) == os.fspath(path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(target))
        return real_open(target, *args, **kwargs)

    monkeypatch.setattr(images.os, "open", denying)


class Messy:
    """Writes entries under ``root`` and remembers what each must become."""

    def __init__(self, root: Path, seed: int = 0):
        self.root = root
        self.rng = np.random.default_rng(seed)
        self.entries: list[Entry] = []

    def face(self, label: str = "real", size: int = 96) -> Image.Image:
        return synthetic_face(self.rng, label, size)

    def jpeg(self, label: str = "real", size: int = 96) -> bytes:
        return encode(self.face(label, size), "JPEG", quality=90)

    def add(self, kind: str, rel: str, data: bytes | None, where: str = "images", codes=USABLE) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            path.write_bytes(data)
        self.entries.append(Entry(kind, rel, where, frozenset([codes] if isinstance(codes, str) else codes)))
        return path

    def link(self, kind: str, rel: str, target, where: str, codes) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)
        self.entries.append(Entry(kind, rel, where, frozenset([codes] if isinstance(codes, str) else codes)))


def build_messy(root: Path, outside: Path, as_root: bool) -> list[Entry]:
    """Write the messy dataset under ``root`` (and link targets under ``outside``); return its entries."""
    m = Messy(root)
    for split, n in (("train", 8), ("valid", 4)):
        for label in ("real", "fake"):
            for k in range(n):
                m.add("good", f"{split}/{label}/img_{k:03d}.jpg", m.jpeg(label))
    m.add("good", "test/real/img_000.jpg", m.jpeg("real"))
    m.add("good", "test/real/img_001.jpg", m.jpeg("real"))
    (root / "test" / "fake").mkdir(parents=True)  # empty label folder, and a one-class split

    jpeg, png = m.jpeg(), encode(m.face("fake"), "PNG")
    m.add("zero_byte", "train/real/empty.jpg", b"", codes="empty_file")
    m.add("truncated_jpeg", "train/real/truncated.jpg", jpeg[: len(jpeg) // 2], codes="corrupt")
    m.add("truncated_png", "train/fake/truncated.png", png[: len(png) // 2], codes="corrupt")
    damaged = bytearray(png)
    damaged[len(damaged) // 2] ^= 0xFF
    m.add("corrupt_png_crc", "train/fake/bad_crc.png", bytes(damaged), codes="corrupt")
    damaged = bytearray(jpeg)
    start = damaged.find(b"\xff\xc0")
    damaged[start + 5:start + 9] = b"\0\0\0\0"  # frame header says 0×0
    m.add("corrupt_jpeg_header", "train/real/bad_header.jpg", bytes(damaged), codes="corrupt")
    m.add("text_named_jpg", "train/real/notes.jpg", b"shopping list\neggs\n" * 20, codes="not_an_image")
    m.add("html_named_png", "train/fake/page.png", b"<!doctype html><html><body>hi</body></html>\n",
          codes="not_an_image")
    m.add("heic", "train/real/phone.heic", b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(200),
          codes="unsupported_format")
    m.add("svg", "train/fake/drawing.svg", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>\n',
          codes="unsupported_format")
    m.add("pdf_named_jpg", "train/fake/scan.jpg", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + bytes(200),
          codes="unsupported_format")
    m.add("eps_named_png", "train/real/vector.png", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 96 96\n"
          b"(pwned) print\n", codes="unsupported_format")

    m.add("png_alpha", "train/fake/alpha.png", encode(m.face("fake").convert("RGBA"), "PNG"))
    grey16 = (np.asarray(m.face("real").convert("L"), dtype=np.uint16) * 257)
    m.add("grey16_png", "train/real/grey16.png", encode(Image.fromarray(grey16), "PNG"))
    ok, rgb16 = cv2.imencode(".png", np.asarray(m.face("fake"))[..., ::-1].astype(np.uint16) * 257)
    m.add("rgb16_png", "train/fake/rgb16.png", rgb16.tobytes())
    m.add("palette_png", "train/real/palette.png", encode(m.face("real").convert("P", palette=Image.Palette.ADAPTIVE), "PNG"))
    m.add("palette_transparency_png", "train/fake/palette_alpha.png",
          encode(m.face("fake").convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=0))
    m.add("cmyk_jpeg", "train/real/cmyk.jpg", encode(m.face("real").convert("CMYK"), "JPEG", quality=90))
    m.add("greyscale_jpeg", "train/real/grey.jpg", encode(m.face("real").convert("L"), "JPEG", quality=90))
    m.add("bilevel_bmp", "train/fake/bilevel.bmp", encode(m.face("fake").convert("1"), "BMP"))
    float_grey = Image.fromarray(np.asarray(m.face("real").convert("L"), dtype=np.float32) / 255.0)
    m.add("float_tiff", "train/real/float.tif", encode(float_grey, "TIFF"))
    m.add("exif_rotated_jpeg", "train/real/rotated.jpg", exif_rotated_jpeg(top_marked_face(m.rng)))
    frames = [m.face("fake"), m.face("fake")]
    m.add("animated_gif", "train/fake/animated.gif", encode(frames[0], "GIF", save_all=True, append_images=frames[1:]))
    m.add("webp", "train/fake/photo.webp", encode(m.face("fake"), "WEBP"))
    m.add("uppercase_suffix", "train/real/LOUD.JPG", m.jpeg())
    m.add("no_suffix", "train/fake/no_suffix", m.jpeg("fake"))
    m.add("tiny", "train/real/tiny.png", encode(m.face("real", 96).resize((8, 8)), "PNG"), codes="too_small")
    m.add("thin_strip", "train/fake/strip.png", encode(m.face("fake").resize((2000, 20)), "PNG"))
    huge = Image.new("RGB", (6000, 4500), (90, 120, 200))
    huge.paste(m.face("real", 96).resize((3000, 3000)), (1500, 700))
    m.add("huge_jpeg", "valid/real/huge.jpg", encode(huge, "JPEG", quality=80))
    m.add("decompression_bomb", "train/fake/bomb.png", png_with_header(30000, 30000), codes="too_large")
    if not as_root:  # root reads anything; tests/robustness/test_dataset_edges.py simulates it instead
        path = m.add("unreadable", "train/real/locked.jpg", m.jpeg(), codes="unreadable")
        path.chmod(0)

    m.link("broken_symlink", "train/real/gone.jpg", "nowhere.jpg", "images", "broken_link")
    m.link("symlink_loop_file", "train/fake/loop_a.jpg", "loop_b.jpg", "images", "symlink_loop")
    m.link("symlink_loop_file", "train/fake/loop_b.jpg", "loop_a.jpg", "images", "symlink_loop")
    m.link("symlink_loop_folder", "train/real/again", ".", "skipped", "symlink_loop")
    m.link("symlink_inside", "train/real/alias.jpg", "img_000.jpg", "images", USABLE)
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "private.jpg").write_bytes(m.jpeg())
    m.link("symlink_outside_file", "train/real/elsewhere.jpg", outside / "private.jpg", "skipped", "outside_root")
    m.link("symlink_outside_folder", "train/fake/more", outside, "skipped", "outside_root")
    fifo = root / "train/real/pipe.jpg"
    os.mkfifo(fifo)
    m.entries.append(Entry("named_pipe", "train/real/pipe.jpg", "images", frozenset({"not_a_file"})))
    os.mkdir(root / "train/real/folder.jpg")  # a folder named like an image: nothing to read, nothing lost

    m.add("ds_store", "train/real/.DS_Store", b"\0\0\0\1Bud1", "skipped", "os_junk")
    m.add("thumbs_db", "train/fake/Thumbs.db", b"\xd0\xcf\x11\xe0", "skipped", "os_junk")
    m.add("apple_double", "train/real/._img_000.jpg", b"\0\5\x16\7", "skipped", "hidden")
    m.add("hidden_folder", "train/real/.cache/a.jpg", m.jpeg(), "inside", "hidden")
    m.add("hidden_folder", "train/real/.cache/b.jpg", m.jpeg(), "inside", "hidden")
    m.entries.append(Entry("hidden_folder", "train/real/.cache", "skipped", frozenset({"hidden"})))
    m.add("macosx_folder", "__MACOSX/train/real/._img_000.jpg", b"\0\5\x16\7", "inside", "os_junk")
    m.entries.append(Entry("macosx_folder", "__MACOSX", "skipped", frozenset({"os_junk"})))
    m.add("loose_file_in_split", "train/README.txt", b"about this data\n", "skipped", "not_in_label_folder")
    m.add("loose_file_in_root", "notes.md", b"# notes\n", "skipped", "not_in_label_folder")
    for k in range(3):
        m.add("unknown_folder", f"extras/img_{k}.jpg", m.jpeg(), "inside", "unknown_folder")
    m.entries.append(Entry("unknown_folder", "extras", "skipped", frozenset({"unknown_folder"})))

    non_utf8 = os.fsencode(root / "train" / "real") + b"/caf\xe9_\xff.jpg"
    with open(non_utf8, "wb") as handle:
        handle.write(m.jpeg())
    m.entries.append(Entry("non_utf8_name", os.fsdecode(b"train/real/caf\xe9_\xff.jpg"), "images", USABLE))
    m.add("long_name", "train/fake/" + "long_" * 48 + ".jpg", m.jpeg("fake"))
    m.add("hostile_name", f"train/fake/{HOSTILE_NAME}", b"", codes="empty_file")

    twin = m.jpeg("real")
    m.add("same_image_two_labels", "train/real/twin.jpg", twin)
    m.add("same_image_two_labels", "train/fake/twin.jpg", twin)
    twin = m.jpeg("fake")
    m.add("same_image_two_splits", "train/fake/twin_split.jpg", twin)
    m.add("same_image_two_splits", "valid/fake/twin_split.jpg", twin)
    return m.entries
