"""Eye physiology: do the two eyes agree the way two real eyes, lit by the same lights, must?

Label-free physical-consistency cues (cue type ``physiological``):

- **corneal highlights** — both corneas mirror the same light sources, so their specular
  highlights sit at the same place relative to each iris and have the same shape (Hu et al.
  2021, "Exposing GAN-generated faces using inconsistent corneal specular highlights");
- **iris boundary** — a real iris edge is a circle seen in perspective, an ellipse; GAN irises
  and pupils are often irregular (Guo et al. 2022, "Eyes tell all");
- **iris colour and size** — the two irises of one person match (Matern et al. 2019).

MediaPipe's face mesh and iris models (`facecluster.features.eye_models`) place the eyes and
irises in the crop; everything else is measured on the crop's pixels, on a grid centred on each
iris and scaled by the mean iris radius, so the two eyes are compared point by point. Every
measurement is symmetric in the two eyes and the grids are mirror-symmetric, so the vector is
unchanged by a horizontal flip of the face. A face whose eyes cannot be read (no face, closed
eyes, an iris out of proportion, too little iris edge) gets defined values and ``eyes_read = 0``,
never NaN.

Eyes are small: an iris is 10–15 px across in a 256-px FFHQ-aligned face. Use crops that keep the
native resolution (``[faces] crop = "aligned"``, ``size = 256`` on faces-ffhq); at the default
160-px box crops an iris is about 7 px and a highlight one or two.
"""

from __future__ import annotations

import cv2
import numpy as np

from facecluster.features.base import HandcraftedFeatures, check_crops, luminance
from facecluster.features.eye_models import MODEL_SHA256, EyeLandmarker, EyeReading

COLUMNS = (
    "highlight_iou",            # IoU of the two highlight masks, irises aligned (0 without both)
    "highlight_offset",         # distance between the highlights' positions relative to their iris, in iris radii
    "highlight_area_ratio",     # smaller over larger highlight area (0 without both)
    "iris_boundary_residual",   # mean over the eyes of the iris edge's RMS distance to its fitted ellipse, in radii
    "iris_colour_difference",   # CIE76 ΔE between the two irises' median colours
    "iris_radius_ratio",        # smaller over larger iris radius
    "physical_consistency",     # mean of the agreements in [0, 1] that could be read (see `consistency_score`)
    "face_probability",         # the face mesh's probability that the crop holds a face
    "eyes_read",                # 1 when both eyes were read; else every measurement above is its no-reading value
    "highlights_found",         # share of the two eyes in which a highlight was found (0, 0.5, 1)
)
GRID = 41  # samples per side of each eye's grid (odd: the centre sample sits on the iris centre)
GRID_HALF_WIDTH = 1.6  # the grid spans ± this many mean iris radii
RAYS = 32  # rays for the iris edge (a multiple of 4, so the set of angles is mirror-symmetric)
EDGE_RANGE = (0.5, 1.6)  # the iris edge is looked for between these many radii from the centre
MIN_EDGE_POINTS = 6
MIN_EDGE_STEP = 0.01  # smallest luminance rise (0–1 scale) per ray sample taken as an iris edge
MIN_VISIBLE_IRIS = 0.35  # share of the iris disk inside the eye opening; below it the eye is closed
RADIUS_PER_EYE_WIDTH = (0.1, 0.5)  # plausible iris radius over the corner-to-corner eye width
MIN_FACE_PROBABILITY = 0.5
HIGHLIGHT_RADIUS = 0.85  # highlights are looked for this far out (iris radii): further out, the disk meets the sclera
HIGHLIGHT_CONTRAST = 0.12  # a highlight is at least this much brighter (0–1) than the iris' median
COLOUR_SCALE = 10.0  # ΔE at which the colour agreement falls to 1/e
RESIDUAL_SCALE = 0.1  # boundary residual (radii) at which the shape agreement falls to 1/e
NO_READING_SCORE = 0.0  # physical_consistency of a face whose eyes could not be read


def sample(image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image`` at continuous coordinates (pixel ``i`` spans ``[i, i + 1)``)."""
    return cv2.remap(image, (xs - 0.5).astype(np.float32), (ys - 0.5).astype(np.float32),
                     interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def inside_polygon(xs: np.ndarray, ys: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Which points lie inside a closed polygon (even-odd rule)."""
    inside = np.zeros(xs.shape, dtype=bool)
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    for ax, ay, bx, by in zip(x0, y0, x1, y1):
        crosses = (ay > ys) != (by > ys)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = ax + (ys - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (xs < at)
    return inside


def iris_edge(grey: np.ndarray, eye: EyeReading) -> np.ndarray:
    """Points (crop pixels) where the iris gives way to the brighter sclera, one per ray at most.

    On each ray the strongest dark-to-bright step is kept when it is steep enough and lies inside
    the eye opening (a step at the eyelid is not the iris' edge).
    """
    radius = eye.iris_radius
    angles = 2 * np.pi * np.arange(RAYS) / RAYS
    steps = np.linspace(*EDGE_RANGE, 23) * radius
    xs = eye.iris_centre[0] + np.cos(angles)[:, None] * steps
    ys = eye.iris_centre[1] + np.sin(angles)[:, None] * steps
    profile = sample(grey, xs, ys)
    rise = np.diff(profile, axis=1)
    best = np.argmax(rise, axis=1)
    where = (steps[best] + steps[best + 1]) / 2
    points = np.column_stack([eye.iris_centre[0] + np.cos(angles) * where, eye.iris_centre[1] + np.sin(angles) * where])
    keep = (rise[np.arange(RAYS), best] >= MIN_EDGE_STEP) & inside_polygon(points[:, 0], points[:, 1], eye.contour)
    return points[keep]


def ellipse_residual(points: np.ndarray) -> float | None:
    """RMS distance (in the ellipse's own radii) of points to the ellipse fitted to them, or None."""
    if len(points) < MIN_EDGE_POINTS:
        return None
    (cx, cy), (width, height), angle = cv2.fitEllipse(points.astype(np.float32))
    if not (width > 0 and height > 0 and np.isfinite([cx, cy, width, height, angle]).all()):
        return None
    theta = np.deg2rad(angle)
    relative = points - [cx, cy]
    u = (relative[:, 0] * np.cos(theta) + relative[:, 1] * np.sin(theta)) / (width / 2)
    v = (-relative[:, 0] * np.sin(theta) + relative[:, 1] * np.cos(theta)) / (height / 2)
    return float(np.sqrt(np.mean((np.hypot(u, v) - 1.0) ** 2)))


class EyeMeasures:
    """One eye measured on its grid: visible iris, highlight mask and position, colour, edge fit."""

    def __init__(self, image: np.ndarray, grey: np.ndarray, eye: EyeReading, scale: float):
        offsets = np.linspace(-GRID_HALF_WIDTH, GRID_HALF_WIDTH, GRID) * scale
        xs, ys = np.meshgrid(eye.iris_centre[0] + offsets, eye.iris_centre[1] + offsets)
        distance = np.hypot(xs - eye.iris_centre[0], ys - eye.iris_centre[1]) / eye.iris_radius
        opening = inside_polygon(xs, ys, eye.contour)
        iris = (distance <= 1.0) & opening
        self.visible_iris = float(iris.sum() / max((distance <= 1.0).sum(), 1))
        values = sample(grey, xs, ys)
        self.highlight = np.zeros_like(iris)
        cornea = iris & (distance <= HIGHLIGHT_RADIUS)
        if cornea.any():
            median = float(np.median(values[iris]))
            threshold = median + max(HIGHLIGHT_CONTRAST, 0.5 * (float(values[cornea].max()) - median))
            self.highlight = cornea & (values >= threshold)
        self.highlight_position = (np.array([xs[self.highlight].mean() - eye.iris_centre[0],
                                             ys[self.highlight].mean() - eye.iris_centre[1]]) / scale
                                   if self.highlight.any() else None)
        annulus = iris & (distance >= 0.3) & (distance <= 0.85) & ~self.highlight
        if annulus.sum() >= 4:
            lab = cv2.cvtColor(sample(image, xs, ys).astype(np.float32), cv2.COLOR_RGB2Lab)
            self.colour = np.median(lab[annulus], axis=0)
        else:
            self.colour = None
        self.boundary_residual = ellipse_residual(iris_edge(grey, eye))
        proportion = eye.iris_radius / max(eye.width, 1e-6)
        self.readable = (self.visible_iris >= MIN_VISIBLE_IRIS and self.colour is not None
                         and self.boundary_residual is not None
                         and RADIUS_PER_EYE_WIDTH[0] <= proportion <= RADIUS_PER_EYE_WIDTH[1])


def consistency_score(iou: float, colour_difference: float, residual: float, radius_ratio: float,
                      highlights: int) -> float:
    """The mean of the agreements in [0, 1]: highlight IoU (when either eye has a highlight),
    exp(-ΔE / `COLOUR_SCALE`), exp(-residual / `RESIDUAL_SCALE`) and the radius ratio. Higher: more consistent."""
    terms = [np.exp(-colour_difference / COLOUR_SCALE), np.exp(-residual / RESIDUAL_SCALE), radius_ratio]
    if highlights:
        terms.append(iou)
    return float(np.mean(terms))


def pair_features(left: EyeMeasures, right: EyeMeasures, left_eye: EyeReading, right_eye: EyeReading,
                  face_probability: float) -> np.ndarray:
    """The `COLUMNS` vector of one face from its two measured eyes, the right one measured in the mirrored crop.

    The right eye's highlight mask and position are mirrored back before they are compared, and
    every value is symmetric in the two eyes, so swapping them (mirroring the face) changes nothing.
    """
    out = np.zeros(len(COLUMNS), dtype=np.float64)
    out[COLUMNS.index("face_probability")] = face_probability
    highlights = int(left.highlight.any()) + int(right.highlight.any())
    out[COLUMNS.index("highlights_found")] = highlights / 2
    if not (left.readable and right.readable and face_probability >= MIN_FACE_PROBABILITY):
        out[COLUMNS.index("physical_consistency")] = NO_READING_SCORE
        return out
    iou = 0.0
    if highlights == 2:
        right_mask = right.highlight[:, ::-1]  # back to the crop's orientation (the grid is mirror-symmetric)
        iou = float((left.highlight & right_mask).sum() / (left.highlight | right_mask).sum())
        right_position = right.highlight_position * [-1.0, 1.0]
        # |a + b| rather than |a - (-b)|: the same floating-point result whichever eye comes first
        gap = [left.highlight_position[0] + right.highlight_position[0], left.highlight_position[1] - right_position[1]]
        out[COLUMNS.index("highlight_offset")] = float(np.hypot(abs(gap[0]), abs(gap[1])))
        areas = sorted([left.highlight.sum(), right.highlight.sum()])
        out[COLUMNS.index("highlight_area_ratio")] = areas[0] / areas[1]
    radii = sorted([left_eye.iris_radius, right_eye.iris_radius])
    residual = (left.boundary_residual + right.boundary_residual) / 2
    colour_difference = float(np.sqrt(np.sum((left.colour - right.colour) ** 2)))
    out[COLUMNS.index("highlight_iou")] = iou
    out[COLUMNS.index("iris_boundary_residual")] = residual
    out[COLUMNS.index("iris_colour_difference")] = colour_difference
    out[COLUMNS.index("iris_radius_ratio")] = radii[0] / radii[1]
    out[COLUMNS.index("physical_consistency")] = consistency_score(iou, colour_difference, residual,
                                                                    radii[0] / radii[1], highlights)
    out[COLUMNS.index("eyes_read")] = 1.0
    return out


class EyeFeatures(HandcraftedFeatures):
    """Eye physiology: highlight agreement, iris edge regularity, iris colour and size agreement (10 values).

    See `COLUMNS` for the layout. The models are checked against their pinned SHA-256 and loaded
    on the first `transform`.
    """

    name = "eyes"
    version = 1
    cue = ("physiological: whether the two eyes agree as real eyes must (corneal highlights, iris edge, "
           "iris colour and size); needs crops at about the native resolution")

    def __init__(self):
        self._landmarker: EyeLandmarker | None = None

    def params(self) -> dict:
        return {"models": {"face_landmark": MODEL_SHA256["face_landmark.tflite"][:16],
                           "iris_landmark": MODEL_SHA256["iris_landmark.tflite"][:16]},
                "grid": GRID, "grid_half_width": GRID_HALF_WIDTH, "rays": RAYS,
                "highlight_contrast": HIGHLIGHT_CONTRAST, "highlight_radius": HIGHLIGHT_RADIUS, "min_visible_iris": MIN_VISIBLE_IRIS}

    @property
    def dim(self) -> int:
        return len(COLUMNS)

    def describe(self) -> dict:
        return {**super().describe(), "columns": list(COLUMNS), "models": dict(MODEL_SHA256),
                "wants": "crops near native resolution, e.g. [faces] crop = 'aligned', size = 256 on 256-px images"}

    def transform(self, crops: np.ndarray, records: np.ndarray) -> np.ndarray:
        """The `COLUMNS` of each crop: float32 N×10, never NaN."""
        crops = check_crops(crops, records)
        if len(crops) and self._landmarker is None:
            self._landmarker = EyeLandmarker()
        return super().transform(crops, records)

    def _one(self, crop: np.ndarray, record: np.ndarray | None) -> np.ndarray:
        left_eye, right_eye, probability = self._landmarker.read_eyes(crop)
        scale = (left_eye.iris_radius + right_eye.iris_radius) / 2
        if not (np.isfinite(scale) and scale > 0.5):  # a degenerate reading: nothing to measure
            out = np.zeros(len(COLUMNS))
            out[COLUMNS.index("face_probability")] = probability
            out[COLUMNS.index("physical_consistency")] = NO_READING_SCORE
            return np.nan_to_num(out)
        image = crop.astype(np.float32) / 255.0
        grey = (luminance(crop) / 255.0).astype(np.float32)
        left = EyeMeasures(image, grey, left_eye, scale)
        # the right eye was read in the mirrored crop (see EyeLandmarker.read_eyes): measure it there
        right = EyeMeasures(np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(grey[:, ::-1]), right_eye, scale)
        features = pair_features(left, right, left_eye, right_eye, probability)
        return np.nan_to_num(features, nan=0.0, posinf=0.0, neginf=0.0)
