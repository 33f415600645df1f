"""Processing-history probes: what a file's earlier encodings and resizings left in its pixels.

Each probe reads one whole image (not a face crop: cropping and resizing to the crop size
would overwrite the traces) and says something about its *processing history*, never about
whether the face is real:

* ``jpeg_quality``: the IJG quality of the last JPEG's quantisation tables (`imagemeta`);
* ``jpeg_grid_strength``: how strongly the last JPEG's own 8-px blocks show (JPEG files);
* ``earlier_grid_strength`` / ``earlier_grid_period`` / ``earlier_grid_scale``: the trace of an
  *earlier* JPEG block grid after resizing, which repeats every 8·W/W₀ pixels (Bianchi & Piva
  2012); the best-fitting period gives the earlier scale W/W₀ = period / 8;
* ``resampling_strength`` / ``resampling_frequency``: periodic correlation of the residual of a
  linear predictor fitted by EM (Popescu & Farid 2005), which interpolation leaves at
  frequency |1/s − round(1/s)| for a resize by s; `resampling_factors` lists the factors
  consistent with a frequency;
* ``double_jpeg_strength``: periodic empty bins in the histograms of the last JPEG's
  low-frequency DCT coefficients, the mark of an aligned double compression with a coarser
  first quantiser (Lukáš & Fridrich 2003). JPEG files only.

Strengths are log10 of a spectral peak's prominence (its power over the running median of the
neighbouring frequencies): about 0.3–1 on content alone, above `DETECTED_STRENGTH` when a
periodic trace is there. Everything is deterministic.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from facecluster.imagemeta import estimate_jpeg_quality
from facecluster.images import FORMATS, MAX_PIXELS, ImageError, display_name, read_bytes

#: The probes the audit compares with the labels and the clusters (all numbers, NaN where they do not apply).
PROBES = ("jpeg_quality", "jpeg_grid_strength", "earlier_grid_strength", "resampling_strength",
          "double_jpeg_strength")
#: What each probe is called in a sentence.
PROBE_NAMES = {
    "jpeg_quality": "last-JPEG quality",
    "jpeg_grid_strength": "last-JPEG block grid",
    "earlier_grid_strength": "earlier-JPEG-grid",
    "resampling_strength": "resampling",
    "double_jpeg_strength": "double-JPEG",
}
DETECTED_STRENGTH = 1.2  # log10 prominence: a trace 16× above its neighbouring frequencies (synthetic content: ≤ 0.55)
MAX_SIDE = 1024  # larger images are probed on their central MAX_SIDE² window (traces are stationary)
SHORTEST_PERIOD, LONGEST_PERIOD = 2.2, 32.0  # earlier-grid periods searched, in pixels
BLOCK_EXCLUSION = 0.012  # cycles/px either side of k/8 left out in a JPEG file: its own grid
LOW_FREQUENCY = 1 / LONGEST_PERIOD  # below this the spectrum is content, not traces
LOCAL_BAND = 0.03  # cycles/px either side of a frequency that make its background
EM_ITERATIONS = 8
OUTLIER_DENSITY = 1 / 256  # Popescu & Farid's uniform density of the "not interpolated" class
GRID_HARMONICS = 4  # harmonics of a candidate period summed to choose it
DCT_POSITIONS = ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (1, 2), (2, 1))  # low-frequency AC, (row, column)
DCT_BINS = 16  # coefficient values ±1…±16 of the last quantiser
DCT_MIN_COUNT = 200  # coefficients (≠0) a position needs before its histogram is read


def _band_spectrum(signal: np.ndarray, n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (cycles/px) and power of a 1-D signal, mean removed, Hann-windowed, zero-padded."""
    signal = signal - signal.mean()
    power = np.abs(np.fft.rfft(signal * np.hanning(len(signal)), n_fft)) ** 2
    return np.fft.rfftfreq(n_fft), power


def _axis_spectrum(per_axis: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Prominence spectrum of the horizontal and vertical signals: power over its local median, averaged.

    Dividing by the running median of the neighbouring frequencies (± `LOCAL_BAND`) takes
    out the content's sloping spectrum, so a periodic trace stands out wherever it lies.
    """
    from scipy.ndimage import median_filter

    n_fft = 1 << int(np.ceil(np.log2(8 * max(len(s) for s in per_axis))))
    width = max(3, int(2 * LOCAL_BAND * n_fft) | 1)
    total = None
    for signal in per_axis:
        frequencies, power = _band_spectrum(signal, n_fft)
        power = power / np.maximum(median_filter(power, size=width, mode="reflect"), 1e-12)
        total = power if total is None else total + power
    return frequencies, total / len(per_axis)


def _allowed(frequencies: np.ndarray, jpeg: bool, lowest: float = LOW_FREQUENCY) -> np.ndarray:
    allowed = (frequencies >= lowest) & (frequencies <= 0.5)
    if jpeg:  # the last JPEG's own grid and its harmonics are not an earlier trace
        for k in range(0, 5):
            allowed &= np.abs(frequencies - k / 8) > BLOCK_EXCLUSION
    return allowed


def _peak(frequencies: np.ndarray, power: np.ndarray, allowed: np.ndarray) -> tuple[float, float]:
    """(log10 of the highest allowed peak over the allowed band's median, its frequency)."""
    if not allowed.any():
        return float("nan"), float("nan")
    band = power[allowed]
    best = int(np.argmax(band))
    return float(np.log10(max(band[best], 1e-12))), float(frequencies[allowed][best])


def _strength_at(frequencies: np.ndarray, power: np.ndarray, frequency: float) -> float:
    """log10 of the power at ``frequency`` (highest bin within a small window) over the band median."""
    near = np.abs(frequencies - frequency) <= BLOCK_EXCLUSION / 3
    return float(np.log10(max(float(power[near].max()), 1e-12)))


def blockiness_signals(grey: np.ndarray) -> list[np.ndarray]:
    """Mean absolute second difference of the grey image across columns and across rows.

    A block grid makes every 8th (or, after resizing, every 8·W/W₀-th) column and row
    jump, so these signals repeat with the grid's period.
    """
    grey = grey.astype(np.float64)
    across_columns = np.abs(grey[:, 2:] - 2 * grey[:, 1:-1] + grey[:, :-2]).mean(axis=0)
    across_rows = np.abs(grey[2:, :] - 2 * grey[1:-1, :] + grey[:-2, :]).mean(axis=1)
    return [across_columns, across_rows]


def _fold(frequency: np.ndarray) -> np.ndarray:
    """A frequency of an integer-sampled signal, folded into [0, 0.5] cycles/px (aliasing)."""
    frequency = np.mod(frequency, 1.0)
    return np.minimum(frequency, 1.0 - frequency)


def _comb_scores(frequencies: np.ndarray, prominence: np.ndarray, allowed: np.ndarray,
                 periods: np.ndarray) -> np.ndarray:
    """Per candidate period, the summed log10 prominence at its first `GRID_HARMONICS` harmonics (folded).

    A grid of period P shows at 1/P, 2/P, …; summing over them prefers the true period to its
    half (which lacks 1/P) and to its double (whose odd harmonics are background, near 0).
    Harmonics in excluded frequencies count as background.
    """
    logged = np.where(allowed, np.log10(np.maximum(prominence, 1e-12)), 0.0)
    step = frequencies[1] - frequencies[0]
    scores = np.zeros(len(periods))
    for harmonic in range(1, GRID_HARMONICS + 1):
        index = np.rint(_fold(harmonic / periods) / step).astype(int)
        scores += logged[np.clip(index, 0, len(logged) - 1)]
    return scores


def grid_probes(grey: np.ndarray, jpeg: bool, exclude: tuple[float, ...] = ()) -> dict[str, float]:
    """The last JPEG's grid strength and the best-fitting earlier grid (strength, period, scale W/W₀).

    The period is the one whose harmonics stand out most (`_comb_scores`); its strength is
    the log10 prominence at its fundamental. ``exclude`` lists frequencies to ignore (the
    resampling pattern's, which a resize alone leaves in the blockiness too).
    """
    frequencies, prominence = _axis_spectrum(blockiness_signals(grey))
    allowed = _allowed(frequencies, jpeg)
    for frequency in exclude:
        allowed &= np.abs(frequencies - frequency) > BLOCK_EXCLUSION
    periods = 1 / np.linspace(1 / LONGEST_PERIOD, 1 / SHORTEST_PERIOD, 4000)
    fundamental_allowed = allowed[np.clip(np.rint((1 / periods) / (frequencies[1] - frequencies[0])).astype(int),
                                          0, len(allowed) - 1)]
    scores = np.where(fundamental_allowed, _comb_scores(frequencies, prominence, allowed, periods), -np.inf)
    if not np.isfinite(scores).any():
        strength = period = float("nan")
    else:
        period = float(periods[int(np.argmax(scores))])
        strength = _strength_at(frequencies, prominence, 1 / period)
    return {"jpeg_grid_strength": _strength_at(frequencies, prominence, 1 / 8) if jpeg else float("nan"),
            "earlier_grid_strength": strength, "earlier_grid_period": period, "earlier_grid_scale": period / 8}


def _neighbour_matrix(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each interior pixel's 8 neighbours (rows) and the pixel itself."""
    h, w = grey.shape
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    neighbours = np.stack([grey[1 + dy:h - 1 + dy, 1 + dx:w - 1 + dx].ravel() for dy, dx in shifts], axis=1)
    return neighbours, grey[1:-1, 1:-1].ravel()


def interpolation_map(grey: np.ndarray, iterations: int = EM_ITERATIONS) -> np.ndarray:
    """Popescu & Farid's probability map: how well each pixel is predicted from its 8 neighbours.

    The predictor's weights are fitted by expectation-maximisation (weighted least squares
    against a uniform outlier class); pixels made by interpolation are predicted well, and
    a resize makes them recur periodically.
    """
    grey = grey.astype(np.float64)
    neighbours, centre = _neighbour_matrix(grey)
    weights = np.ones(len(centre))
    sigma = max(float(np.std(centre)), 1.0)
    for _ in range(iterations):
        root = np.sqrt(weights)
        coefficients, *_ = np.linalg.lstsq(neighbours * root[:, None], centre * root, rcond=None)
        residual = centre - neighbours @ coefficients
        sigma = max(float(np.sqrt(np.sum(weights * residual ** 2) / max(weights.sum(), 1e-12))), 1e-3)
        density = np.exp(-residual ** 2 / (2 * sigma ** 2)) / (sigma * np.sqrt(2 * np.pi))
        weights = density / (density + OUTLIER_DENSITY)
    return weights.reshape(grey.shape[0] - 2, grey.shape[1] - 2)


def resampling_probes(grey: np.ndarray, jpeg: bool) -> dict[str, float]:
    """The strongest periodic correlation of the predictor residual: strength and frequency (cycles/px)."""
    probability = interpolation_map(grey)
    frequencies, power = _axis_spectrum([probability.mean(axis=0), probability.mean(axis=1)])
    strength, frequency = _peak(frequencies, power, _allowed(frequencies, jpeg))
    return {"resampling_strength": strength, "resampling_frequency": frequency}


def resampling_factors(frequency: float, lowest: float = 0.5, highest: float = 2.0) -> list[float]:
    """The resize factors s in [lowest, highest] whose interpolation pattern has this frequency.

    A resize by s repeats its interpolation weights at frequency |1/s − n| (n the nearest
    integer), so one frequency fits several factors; an earlier JPEG grid (period 8·s)
    tells them apart.
    """
    if not np.isfinite(frequency) or frequency <= 0:
        return []
    factors = []
    for n in range(0, int(np.ceil(1 / lowest)) + 2):
        for inverse in (n + frequency, n - frequency):
            if inverse > 0 and lowest <= 1 / inverse <= highest:
                factors.append(round(1 / inverse, 4))
    return sorted(set(factors))


def _block_coefficients(grey: np.ndarray, table: np.ndarray) -> np.ndarray:
    """The luminance's 8×8 DCT coefficients on the file's grid, in units of the last quantiser: [blocks, 8, 8]."""
    from scipy.fft import dctn

    h, w = (grey.shape[0] // 8) * 8, (grey.shape[1] // 8) * 8
    blocks = grey[:h, :w].astype(np.float64).reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)
    return dctn(blocks - 128, axes=(1, 2), norm="ortho") / table.reshape(8, 8)


def double_jpeg_strength(grey: np.ndarray, luminance_table) -> float:
    """Share of deep, isolated troughs in the low-frequency coefficient histograms (0 = none).

    Requantising with a finer step q₂ values that a first, coarser step q₁ had left on
    multiples of q₁ empties some bins of every histogram periodically; a single compression
    leaves smooth, Laplacian-shaped histograms. NaN when no position has enough coefficients.
    """
    if luminance_table is None or len(luminance_table) != 64:
        return float("nan")
    coefficients = np.rint(_block_coefficients(grey, np.asarray(luminance_table, dtype=np.float64)))
    shares = []
    for row, column in DCT_POSITIONS:
        values = np.abs(coefficients[:, row, column]).astype(int)
        values = values[(values >= 1) & (values <= DCT_BINS + 1)]
        if len(values) < DCT_MIN_COUNT:
            continue
        histogram = np.bincount(values, minlength=DCT_BINS + 2)[1:DCT_BINS + 2].astype(np.float64)
        inner = histogram[1:-1]
        around = (histogram[:-2] + histogram[2:]) / 2
        counted = around >= 10  # bins whose neighbours hold enough coefficients to judge a trough
        if counted.sum() < 3:
            continue
        shares.append(float(np.mean(inner[counted] < 0.5 * around[counted])))
    return float(np.mean(shares)) if shares else float("nan")


def _central_window(grey: np.ndarray) -> np.ndarray:
    """The central MAX_SIDE² window, its corner on the 8-px grid so a JPEG's blocks stay aligned."""
    h, w = grey.shape
    top = max(0, (h - MAX_SIDE) // 2) // 8 * 8
    left = max(0, (w - MAX_SIDE) // 2) // 8 * 8
    return grey[top:top + MAX_SIDE, left:left + MAX_SIDE]


def probe_image(image: Image.Image) -> dict:
    """Every probe of one opened image (PIL); JPEG-only probes are NaN for other formats."""
    jpeg = image.format == "JPEG"
    quantization = getattr(image, "quantization", None) or {}
    if jpeg:
        image.draft("L", image.size)  # the decoder's own luminance: no colour round trip
    grey = _central_window(np.asarray(image.convert("L"), dtype=np.float64))
    if min(grey.shape) < 32:
        raise ValueError(f"{grey.shape[1]}x{grey.shape[0]} pixels is too small to probe (at least 32x32)")
    quality = estimate_jpeg_quality(quantization)[0] if jpeg else None
    probes = {"jpeg_quality": float("nan") if quality is None else float(quality)}
    resampling = resampling_probes(grey, jpeg)
    grid = grid_probes(grey, jpeg)
    # A resize alone leaves its interpolation pattern in the blockiness too: when the grid's
    # period is that pattern and the predictor residual shows it more strongly, look again without it.
    frequency = resampling["resampling_frequency"]
    pattern = tuple(float(_fold(h * frequency)) for h in (1, 2, 3)) if np.isfinite(frequency) else ()
    if (np.isfinite(grid["earlier_grid_period"])
            and any(abs(1 / grid["earlier_grid_period"] - f) <= BLOCK_EXCLUSION for f in pattern)
            and resampling["resampling_strength"] >= grid["earlier_grid_strength"]):
        grid = grid_probes(grey, jpeg, exclude=pattern)
    probes.update(grid)
    probes.update(resampling)
    probes["double_jpeg_strength"] = double_jpeg_strength(grey, quantization.get(0)) if jpeg else float("nan")
    return probes


def probe_file(path, relative_name: str) -> tuple[dict | None, str | None]:
    """The probes of one file, or (None, a one-line reason naming the file) when it cannot be probed."""
    try:
        data = read_bytes(path, relative_name)
        image = Image.open(io.BytesIO(data), formats=FORMATS)
        if image.width * image.height > MAX_PIXELS:
            raise ImageError("too_large", f"{display_name(relative_name)}: over {MAX_PIXELS:,} pixels")
        return probe_image(image), None
    except ImageError as error:
        return None, str(error)
    except Exception as error:  # hostile or odd bytes are this file's problem, not the audit's
        return None, f"{display_name(relative_name)}: {type(error).__name__}: {display_name(str(error))[:120]}"
