"""How close each reduced-precision FaceNet is to fp32 on the dev faces.

For every precision: cosine similarity of each face's embedding to its fp32 embedding
(mean and worst image), nearest-neighbour agreement (does each face keep its nearest
other face?), and agreement of the study preset's cluster assignments (PCA 2-D fitted on
train, Mean-Shift and BIRCH as in ``--preset study``, clusters matched one-to-one) — when
the study is re-run on the reduced-precision features, when the fp32 run's fitted models
assign them, and, as a noise floor, when it is re-run on fp32 features moved by random
noise of the same mean cosine. Then, once, how reproducible the study's re-run is with no
reduced precision at all: the same fp32 graph in OpenCV's cv2.dnn, the same fp32 features
in another train order, and fp32 features plus noise of growing size (BIRCH with threshold
0.08 on 2-D PCA flips on very little). Faces are facecluster's own MTCNN crops of every dev
image; the int8 calibration used 128 train crops, so the valid split is also reported alone.

    python benchmarks/fidelity.py [--precision int8] [--detector mtcnn|yunet] [--limit N]

Writes ``benchmarks/results/fidelity-<time>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import dev_crops, dev_samples, print_table, write_results
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score

from facecluster.cluster import make_clusterer
from facecluster.features.facenet_model import FaceNetEmbedder
from facecluster.reduce import make_reducer
from facecluster.resolve import build_config

GOALS = {"cosine_mean": 0.995, "cosine_worst": 0.98, "nearest_neighbour_agreement": 0.95,
         "cluster_agreement": 0.99}
#: Mean cosines to fp32 at which the study's re-run is tried on noisy fp32 features.
NOISE_LEVELS = (0.9999999, 0.999999, 0.99999, 0.9999, 0.999)


def nearest_neighbours(vectors: np.ndarray) -> np.ndarray:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return similarity.argmax(1)


def matched_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of points in the same cluster once the two labellings' clusters are matched one-to-one."""
    ids_a, ids_b = np.unique(a), np.unique(b)
    table = np.array([[np.sum((a == i) & (b == j)) for j in ids_b] for i in ids_a])
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(a))


def study_clusters(features: np.ndarray, train: np.ndarray, also: np.ndarray | None = None,
                   order_seed: int | None = None):
    """The study preset's clusters of every face (fitted on train, as the pipeline does).

    With ``also``, the same fitted models (PCA and clusterers) also assign those features.
    With ``order_seed``, the train rows reach the clusterers in that seed's shuffled order.
    """
    config = build_config("study")
    reducer = make_reducer(config.reduce, seed=config.seed).fit(features[train])
    reduced = reducer.transform(features)
    fit_rows = np.flatnonzero(train)
    if order_seed is not None:
        fit_rows = np.random.default_rng(order_seed).permutation(fit_rows)
    clusters, assigned = {}, {}
    for name, method in config.methods.items():
        model = make_clusterer(method.algorithm, method.params, seed=config.seed).fit(reduced[fit_rows])
        clusters[name] = model.predict(reduced)
        if also is not None:
            assigned[name] = model.predict(reducer.transform(also))
    return (clusters, assigned) if also is not None else clusters


def with_noise(reference: np.ndarray, cosine_mean: float, seed: int = 0) -> np.ndarray:
    """fp32 embeddings moved by isotropic noise to the given mean cosine: how stable the clustering is anyway."""
    rng = np.random.default_rng(seed)
    sigma = np.sqrt(2 * (1 - cosine_mean) / reference.shape[1])
    noisy = reference + rng.normal(0, sigma, reference.shape)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def reproducibility(reference: np.ndarray, crops: np.ndarray, train: np.ndarray, batch_size: int) -> dict:
    """How far the study's clusters move when nothing about the features' precision changes.

    The re-run agreement of a reduced-precision model can be read only against these: the
    same fp32 graph run by another fp32 implementation (OpenCV's cv2.dnn instead of ONNX
    Runtime), the same fp32 features given to the clusterers in another order (BIRCH's tree
    depends on it), and fp32 features moved by random noise of growing size.
    """
    def agreement(other: dict) -> dict:
        return {name: matched_agreement(ref_clusters[name], other[name]) for name in ref_clusters}

    ref_clusters = study_clusters(reference, train)
    opencv = FaceNetEmbedder(backend="opencv", batch_size=batch_size).embed(crops)
    cosine = np.sum(reference * opencv, axis=1) / np.linalg.norm(opencv, axis=1)
    result = {
        "fp32_opencv": {"cosine_worst": float(cosine.min()),
                        "max_abs_difference": float(np.abs(reference - opencv).max()),
                        "agreement": agreement(study_clusters(opencv, train))},
        "train_order": [agreement(study_clusters(reference, train, order_seed=seed)) for seed in range(5)],
        "noise": [],
    }
    for level in NOISE_LEVELS:
        runs = [agreement(study_clusters(with_noise(reference, level, seed), train)) for seed in range(3)]
        result["noise"].append({"cosine_mean": level,
                                "agreement": {name: float(np.mean([r[name] for r in runs])) for name in ref_clusters}})
    return result


def embed(embedder: FaceNetEmbedder, crops: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Embeddings, wall-clock faces/s and faces per CPU-second (the machine is shared)."""
    embedder.embed(crops[:embedder.batch_size])  # warm-up
    started, cpu = time.perf_counter(), time.process_time()
    vectors = embedder.embed(crops)
    return vectors, len(crops) / (time.perf_counter() - started), len(crops) / (time.process_time() - cpu)


def compare(reference: np.ndarray, other: np.ndarray, split: np.ndarray) -> dict:
    cosine = np.sum(reference * other, axis=1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(other, axis=1))
    train = split == "train"
    ref_clusters, same_models = study_clusters(reference, train, also=other)
    other_clusters = study_clusters(other, train)
    noisy_clusters = study_clusters(with_noise(reference, float(cosine.mean())), train)
    result = {
        "cosine_mean": float(cosine.mean()),
        "cosine_worst": float(cosine.min()),
        "cosine_mean_valid": float(cosine[split != "train"].mean()),
        "cosine_worst_valid": float(cosine[split != "train"].min()),
        "nearest_neighbour_agreement": float(np.mean(nearest_neighbours(reference) == nearest_neighbours(other))),
        # agreement: the study re-run end to end on these features (PCA and clusters refitted);
        # same_fit_agreement: the fp32 run's fitted PCA and clusterers assigning these features;
        # noise_floor_agreement: re-run on fp32 features moved by random noise of the same mean cosine.
        "clusters": {name: {"agreement": matched_agreement(ref_clusters[name], other_clusters[name]),
                            "same_fit_agreement": float(np.mean(ref_clusters[name] == same_models[name])),
                            "noise_floor_agreement": matched_agreement(ref_clusters[name], noisy_clusters[name]),
                            "ari": float(adjusted_rand_score(ref_clusters[name], other_clusters[name])),
                            "n_clusters": [int(len(np.unique(ref_clusters[name]))),
                                           int(len(np.unique(other_clusters[name])))]}
                     for name in ref_clusters},
    }
    result["cluster_agreement"] = min(c["agreement"] for c in result["clusters"].values())
    result["same_fit_cluster_agreement"] = min(c["same_fit_agreement"] for c in result["clusters"].values())
    result["goals_met"] = {key: result[key] >= goal for key, goal in GOALS.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--precision", nargs="+", default=["int8"])
    parser.add_argument("--limit", type=int, default=None, help="Only the first N dev images.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--detector", default="mtcnn", choices=["mtcnn", "yunet"],
                        help="Whose face crops to embed (int8 was calibrated on MTCNN's).")
    args = parser.parse_args()

    data = dev_crops(dev_samples(limit=args.limit), args.detector)
    crops, split = data["crops"], data["split"]
    reference_model = FaceNetEmbedder(backend="onnx", batch_size=args.batch_size)
    reference, fp32_rate, fp32_cpu_rate = embed(reference_model, crops)
    rows, results = [["fp32", "1", "1", "1", "1", "1", f"{fp32_rate:.0f}", f"{fp32_cpu_rate:.0f}"]], {}
    for precision in args.precision:
        model = FaceNetEmbedder(backend="onnx", batch_size=args.batch_size, precision=precision)
        vectors, rate, cpu_rate = embed(model, crops)
        _, fp32_rate_again, fp32_cpu_again = embed(reference_model, crops)  # interleaved: the machine is shared
        result = compare(reference, vectors, split)
        result.update({"faces_per_second": rate, "faces_per_cpu_second": cpu_rate,
                       "fp32_faces_per_second": (fp32_rate + fp32_rate_again) / 2,
                       "fp32_faces_per_cpu_second": (fp32_cpu_rate + fp32_cpu_again) / 2,
                       "model_sha256": model.model_sha256})
        results[precision] = result
        clusters = result["clusters"]
        rows.append([precision, f"{result['cosine_mean']:.4f}", f"{result['cosine_worst']:.4f}",
                     f"{result['nearest_neighbour_agreement']:.3f}",
                     *(f"{clusters[m]['agreement']:.3f} / {clusters[m]['same_fit_agreement']:.3f} / "
                       f"{clusters[m]['noise_floor_agreement']:.3f}" for m in ("meanshift", "birch")),
                     f"{rate:.0f}", f"{cpu_rate:.0f}"])
    floor = reproducibility(reference, crops, split == "train", args.batch_size)
    path = write_results("fidelity", {"faces": int(len(crops)), "detector": args.detector, "goals": GOALS,
                                      "precisions": results,
                                      "fp32_reproducibility": floor})
    print_table(["precision", "cosine mean", "cosine worst", "NN agreement",
                 "Mean-Shift agreement (re-run / same fit / noise floor)", "BIRCH agreement (same)",
                 "faces/s", "faces/CPU-s"], rows)
    print(f"goals: {GOALS}")
    print("\nThe study re-run on features that are not reduced-precision (agreement with the fp32 run):")
    floor_rows = [["fp32 in OpenCV cv2.dnn (max abs diff "
                   f"{floor['fp32_opencv']['max_abs_difference']:.1e})",
                   *(f"{floor['fp32_opencv']['agreement'][m]:.3f}" for m in ("meanshift", "birch"))]]
    floor_rows += [["same fp32 features, train rows shuffled (5 orders, worst)",
                    *(f"{min(o[m] for o in floor['train_order']):.3f}" for m in ("meanshift", "birch"))]]
    floor_rows += [[f"fp32 + noise, mean cosine {n['cosine_mean']} (3 draws, mean)",
                    *(f"{n['agreement'][m]:.3f}" for m in ("meanshift", "birch"))] for n in floor["noise"]]
    print_table(["features", "Mean-Shift agreement", "BIRCH agreement"], floor_rows)
    print(f"written: {path}")


if __name__ == "__main__":
    main()
