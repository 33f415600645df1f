"""An extraction worker keeps no memory per image: what it holds after N images does not grow with N.

yuface 2023.5.1's ``detect`` kept a 36 KiB buffer per call (1.4 GB per worker at 100k images); these
tests run the worker's own function (`face_work`) over a few hundred small synthetic images and
compare the bytes the C allocator holds (glibc ``mallinfo2``: numpy arrays, OpenCV, Pillow and
native libraries alike) after a warm-up pass and after several more.
"""

from __future__ import annotations

import ctypes
import io

import numpy as np
import pytest
from PIL import Image

from facecluster.config import FacesConfig, FeaturesConfig
from facecluster.engines.base import face_work, init_worker
from facecluster.features import make_extractor
from facecluster.features.image import image_reader

IMAGES = 40
#: Far above the allocator's noise (under 100 KiB here), far below what a leak of a few KiB per
#: image adds up to over a few hundred images (yuface's 36 KiB: 14 MiB).
ALLOWED_GROWTH = 1 << 20


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def malloc_in_use() -> int:
    """Bytes the C allocator has handed out and not had back (heap chunks and mmapped blocks)."""
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("needs glibc's mallinfo2 (glibc 2.33 or later) to count the bytes a worker holds")
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """JPEGs of varied sizes (64–400 px a side): varied buffer sizes, as in a real collection."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for k in range(IMAGES):
        height, width = (int(v) for v in rng.integers(64, 400, size=2))
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "JPEG", quality=int(rng.integers(70, 96)))
        path = folder / f"img_{k:03d}.jpg"
        path.write_bytes(out.getvalue())
        paths.append(path)
    return paths


def growth_over_passes(paths, faces_config: FacesConfig, passes: int, reader=None) -> int:
    """Bytes held after ``passes`` more passes of `face_work` over ``paths``, beyond those held after one."""
    init_worker(faces_config)
    jobs = [(path, path.name, None, faces_config, reader) for path in paths]

    def one_pass():
        for job in jobs:
            result = face_work(job)
            assert result.error is None, result.error

    one_pass()  # warm-up: lazily made buffers, the allocator's first arenas
    before = malloc_in_use()
    for _ in range(passes):
        one_pass()
    return malloc_in_use() - before


def held_message(grown: int, images: int) -> str:
    return f"a worker kept {grown / images / 1024:.1f} KiB per image ({grown >> 10} KiB over {images} images)"


def test_detecting_and_cropping_keeps_nothing_per_image(image_files):
    pytest.importorskip("yuface", reason="the yunet detector needs the yuface package (facecluster[yunet])")
    passes = 10
    grown = growth_over_passes(image_files, FacesConfig(detector="yunet", crop="aligned"), passes)
    assert grown < ALLOWED_GROWTH, held_message(grown, passes * len(image_files))


def test_full_resolution_families_keep_nothing_per_image(image_files):
    reader = image_reader(make_extractor(FeaturesConfig(extractor="spectrum-full+dct-full+noise-full")))
    assert reader is not None and len(reader.families) == 3
    paths, passes = image_files[:20], 8  # these families are slow: a whole-image FFT each
    grown = growth_over_passes(paths, FacesConfig(detector="none"), passes, reader)
    assert grown < ALLOWED_GROWTH, held_message(grown, passes * len(paths))
