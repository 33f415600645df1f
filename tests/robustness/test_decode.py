"""Decoding odd but valid images correctly, and refusing bad files with the right reason."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from facecluster.config import FacesConfig
from facecluster.faces import crop_face, locate_face
from facecluster.images import ImageError, decode_rgb, display_name, read_bytes
from tests.robustness.messy import deny_open, encode, exif_rotated_jpeg, png_with_header, top_marked_face


def test_exif_orientation_is_honoured_so_the_face_crop_is_upright():
    upright = top_marked_face(np.random.default_rng(1))
    data = exif_rotated_jpeg(upright)
    assert Image.open(io.BytesIO(data)).size == (96, 96)  # square: only the band tells
    rgb = decode_rgb(data, "rotated.jpg")
    crop = crop_face(rgb, locate_face(rgb, None, FacesConfig(detector="none")), margin=0.2, size=160)
    top, bottom, left = crop[:12].mean(axis=(0, 1)), crop[-12:].mean(axis=(0, 1)), crop[:, :12].mean(axis=(0, 1))
    assert top[0] > 200 and top[1] < 60 and top[2] < 60  # the red band is on top
    assert bottom[0] < 200 and left[1] > 60  # and not at the bottom or on a side


def test_sixteen_bit_grey_is_scaled_not_clipped():
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (32, 1))
    rgb = decode_rgb(encode(Image.fromarray(ramp), "PNG"), "ramp.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (32, 64, 3)
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255 and 120 <= rgb[0, 32, 0] <= 135


def test_transparent_pixels_become_white():
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[:16] = (255, 0, 0, 255)  # opaque red top, fully transparent bottom
    rgb = decode_rgb(encode(Image.fromarray(rgba, "RGBA"), "PNG"), "alpha.png")
    assert tuple(rgb[0, 0]) == (255, 0, 0) and tuple(rgb[-1, -1]) == (255, 255, 255)


def test_cmyk_and_greyscale_and_palette_keep_their_colours():
    red = Image.new("RGB", (32, 32), (220, 30, 30))
    for image, name in ((red.convert("CMYK"), "cmyk.jpg"), (red.convert("P"), "palette.png")):
        rgb = decode_rgb(encode(image, "JPEG" if name.endswith("jpg") else "PNG"), name)
        assert rgb[16, 16, 0] > 180 and rgb[16, 16, 1] < 80, name
    grey = decode_rgb(encode(red.convert("L"), "JPEG"), "grey.jpg")
    assert grey.shape == (32, 32, 3) and np.ptp(grey[16, 16]) == 0


@pytest.mark.parametrize("data, code", [
    (b"", "empty_file"),
    (b"GIF89a" + bytes(20), "corrupt"),
    (b"just some text, not a picture\n", "not_an_image"),
    (b"\0\0\0\x1cftypavif" + bytes(64), "unsupported_format"),
    (b"8BPS\0\1" + bytes(64), "unsupported_format"),
    (png_with_header(40000, 40000), "too_large"),
    (png_with_header(11000, 11000), "too_large"),
    (png_with_header(19, 400), "too_small"),
])
def test_bad_bytes_give_the_reason_code_and_name_the_file(data, code):
    with pytest.raises(ImageError) as caught:
        decode_rgb(data, "dir/x.jpg")
    assert caught.value.code == code
    assert str(caught.value).startswith("dir/x.jpg: ") and "\n" not in str(caught.value)


def test_eps_is_never_handed_to_ghostscript(monkeypatch):
    from PIL import EpsImagePlugin

    def forbidden(*args, **kwargs):
        raise AssertionError("Ghostscript was called on a user file")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", forbidden)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n"
    with pytest.raises(ImageError) as caught:
        decode_rgb(eps, "vector.jpg")
    assert caught.value.code == "unsupported_format"


def test_a_named_pipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageError) as caught:  # would hang forever if opened for a blocking read
        read_bytes(fifo, "pipe.jpg")
    assert caught.value.code == "not_a_file"


def test_folders_and_devices_are_not_files(tmp_path):
    for path in (tmp_path, "/dev/null"):
        with pytest.raises(ImageError) as caught:
            read_bytes(path, "x.jpg")
        assert caught.value.code == "not_a_file"


def test_a_link_to_an_endless_device_is_refused(tmp_path):
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    with pytest.raises(ImageError) as caught:
        read_bytes(tmp_path / "zero.jpg", "zero.jpg")
    assert caught.value.code == "not_a_file"


def test_oversized_files_are_refused_without_reading_them(tmp_path):
    path = tmp_path / "big.jpg"
    with open(path, "wb") as handle:
        handle.truncate(2048)  # sparse
    with pytest.raises(ImageError) as caught:
        read_bytes(path, "big.jpg", max_bytes=1024)
    assert caught.value.code == "too_large"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied_is_unreadable(tmp_path):
    path = tmp_path / "locked.jpg"
    path.write_bytes(b"x")
    path.chmod(0)
    with pytest.raises(ImageError) as caught:
        read_bytes(path, "locked.jpg")
    assert caught.value.code == "unreadable" and "chmod" in str(caught.value)


def test_permission_denied_is_unreadable_simulated(tmp_path, monkeypatch):
    """The same path as the test above, for root (which no file mode stops): os.open says EACCES."""
    path = tmp_path / "locked.jpg"
    path.write_bytes(b"x")
    deny_open(monkeypatch, path)
    with pytest.raises(ImageError) as caught:
        read_bytes(path, "locked.jpg")
    assert caught.value.code == "unreadable" and str(caught.value).startswith("locked.jpg: permission denied")


@pytest.mark.parametrize("name, shown", [
    ("plain/name.jpg", "plain/name.jpg"),
    (os.fsdecode(b"caf\xe9.jpg"), "caf\\xe9.jpg"),
    ("two\nlines.jpg", "two\\nlines.jpg"),
    ("\x1b[2Jclear.jpg", "\\x1b[2Jclear.jpg"),
    ("gpj\u202e.exe", "gpj\\u202e.exe"),
    ("\u00e9t\u00e9 \u4e2d.jpg", "\u00e9t\u00e9 \u4e2d.jpg"),  # printable Unicode stays as it is
    ("lone\ud800.jpg", "lone\\ud800.jpg"),
])
def test_display_name_is_one_printable_line(name, shown):
    assert display_name(name) == shown
    assert display_name(name).isprintable()
