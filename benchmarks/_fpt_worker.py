"""The facenet-pytorch pipeline, as most users would write it: MTCNN + InceptionResnetV1, batches of 32.

Run by ``benchmarks/extract.py`` with the python of ``benchmarks/.venv-fpt`` (torch lives
there, not in facecluster's environment). Reads image paths (one per line) from a file,
prints one JSON line: images, faces, seconds (after the models are loaded), load_seconds.

InceptionResnetV1's weights are random (``pretrained=None``): its weights can only be
downloaded, and the throughput depends on the FLOPs, not the weights. MTCNN uses the
P/R/O-Net weights that ship inside the package.
"""

from __future__ import annotations

import json
import sys
import time
import types

started = time.perf_counter()


def _torchvision_shim() -> None:
    """Stand in for torchvision when its compiled ops cannot load (a CUDA build next to CPU torch).

    facenet-pytorch needs two functions from it: ``to_tensor`` and ``batched_nms``; the NMS
    used here is facenet-pytorch's own numpy implementation of the same algorithm.
    """
    import numpy as np
    import torch

    def to_tensor(picture):
        array = np.asarray(picture, dtype=np.float32)
        return torch.from_numpy(array.transpose(2, 0, 1).copy()) / 255.0

    def batched_nms(boxes, scores, idxs, iou_threshold):
        from facenet_pytorch.models.utils.detect_face import batched_nms_numpy

        return batched_nms_numpy(boxes, scores, idxs, iou_threshold, "Union")  # kept in descending score order

    modules = {name: types.ModuleType(name) for name in
               ("torchvision", "torchvision.transforms", "torchvision.transforms.functional",
                "torchvision.ops", "torchvision.ops.boxes")}
    modules["torchvision.transforms.functional"].to_tensor = to_tensor
    modules["torchvision.transforms"].functional = modules["torchvision.transforms.functional"]
    modules["torchvision.ops.boxes"].batched_nms = batched_nms
    modules["torchvision.ops"].boxes = modules["torchvision.ops.boxes"]
    sys.modules.update(modules)


def main() -> None:
    import torch

    try:
        import torchvision  # noqa: F401
        shim = False
    except Exception:  # noqa: BLE001 - any failure to load its ops means the shim
        for name in [m for m in sys.modules if m.startswith("torchvision")]:
            del sys.modules[name]
        _torchvision_shim()
        shim = True
    from facenet_pytorch import MTCNN, InceptionResnetV1
    from PIL import Image

    paths = open(sys.argv[1]).read().split("\n")
    paths = [p for p in paths if p]
    batch_size = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    torch.set_grad_enabled(False)
    detector = MTCNN(image_size=160, margin=32, device="cpu")
    model = InceptionResnetV1(pretrained=None).eval()
    load_seconds = time.perf_counter() - started

    begin = time.perf_counter()
    faces = fallbacks = 0
    for start in range(0, len(paths), batch_size):
        pictures = [Image.open(p).convert("RGB") for p in paths[start:start + batch_size]]
        try:
            # A batch needs pictures of one size; and with numpy 2, facenet-pytorch's batch code
            # fails when some picture in it has no face (its known bug): then image by image.
            if len({p.size for p in pictures}) != 1:
                raise ValueError("pictures of different sizes")
            crops = detector(pictures)
        except ValueError:
            fallbacks += 1
            crops = [detector(p) for p in pictures]
        crops = [c for c in crops if c is not None]
        if crops:
            embeddings = model(torch.stack(crops))
            faces += len(embeddings)
    seconds = time.perf_counter() - begin
    print(json.dumps({"images": len(paths), "faces": faces, "seconds": seconds, "load_seconds": load_seconds,
                      "torch": torch.__version__, "threads": torch.get_num_threads(), "torchvision_shim": shim,
                      "batches_run_image_by_image": fallbacks}))


if __name__ == "__main__":
    main()
