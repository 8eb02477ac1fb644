"""Does one picture reappear in another? Geometry first, then the fine detail under it. Pure functions.

A copy is confirmed in two steps:

1. **an alignment**: a homography from ORB keypoints matched both ways and checked by RANSAC (also against the
   mirror image), or the one a close hash implies (which region of each picture, which quarter turn, mirrored
   or not);
2. **the detail agrees** under it: both pictures are brought to the coarser one's frame and their band-passed
   greyscale (a difference of Gaussians: print, seams, folds, texture; not flat colour and not lighting) is
   correlated over the overlap. An edited copy keeps its detail where it was; two different products on white,
   however alike their outline and colour, do not (their outlines may align, their insides do not), and two
   shots of one scene move everything off the plane the homography fits.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from services.reuse.regions import Box

ORB_SIDE = 512  # keypoints and detail are read on pictures scaled to at most this side
_ORB = cv2.ORB_create(nfeatures=1000)
_MATCHER = cv2.BFMatcher(cv2.NORM_HAMMING)
MIN_OVERLAP = 0.6  # the aligned overlap covers at least this share of one of the two pictures
SIGMAS = (1.0, 3.0)  # the band of detail compared, in pixels of the coarser frame


@dataclass(frozen=True)
class Keypoints:
    points: np.ndarray  # (N, 2) float32
    descriptors: np.ndarray | None


def keypoints(grey: np.ndarray) -> Keypoints:
    """ORB keypoints of a greyscale picture (uint8, at most ORB_SIDE a side)."""
    kps, des = _ORB.detectAndCompute(grey, None)
    return Keypoints(np.float32([k.pt for k in kps]).reshape(-1, 2), des)


@dataclass(frozen=True)
class Fit:
    """A homography from a's points to b's and the keypoint matches it was fitted on: (N, 2) points of a and
    of b, and which of them it explains (RANSAC, 5 px)."""

    matrix: np.ndarray | None
    inliers: int
    points_a: np.ndarray
    points_b: np.ndarray
    explained: np.ndarray  # bool (N,)


NO_FIT = Fit(None, 0, np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32), np.zeros(0, bool))


def fit(a: Keypoints, b: Keypoints) -> Fit:
    """The homography taking a's points onto b's that most keypoint matches (ratio test) agree on (RANSAC,
    5 px), with the matches; NO_FIT when there is none."""
    if a.descriptors is None or b.descriptors is None or len(a.points) < 8 or len(b.points) < 8:
        return NO_FIT
    pairs = _MATCHER.knnMatch(a.descriptors, b.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.75 * p[1].distance]
    if len(good) < 8:
        return NO_FIT
    src = a.points[[g.queryIdx for g in good]]
    dst = b.points[[g.trainIdx for g in good]]
    matrix, mask = cv2.findHomography(src, dst, cv2.RANSAC, 5.0)
    if matrix is None or mask is None:
        return NO_FIT
    return Fit(matrix, int(mask.sum()), src, dst, mask.ravel().astype(bool))


def homography(a: Keypoints, b: Keypoints) -> tuple[np.ndarray | None, int]:
    """(homography taking a's points onto b's, its inlier count): keypoint matches (ratio test) that one
    homography explains (RANSAC, 5 px). (None, 0) when there is no such homography."""
    found = fit(a, b)
    return found.matrix, found.inliers


# A photo photographed at a tilt, or warped by an editor's perspective or lens tool, is not exactly a homography
# of the original: a bilinear "quad" warp (what editors' free-transform does) leaves a homography fitted on the
# middle several pixels off at the edges, enough for the band-passed detail (1-3 px) to disagree there. The
# matches the homography roughly explains (within BEND_PX) then fit a smooth correction on top of it, a
# second-order polynomial of the position: a bend the keypoints themselves measure, nothing searched for.
BEND_PX = 10.0  # matches this close to the homography's prediction are fitted (5 px: RANSAC's own)
BEND_KEEP_PX = 2.0  # after a first fit, matches this close to it are fitted again
MIN_BEND_POINTS = 30  # matches a bend is fitted on at least (chance homographies had at most 17)


def _poly_terms(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    x, y = points[:, 0] / size[0] - 0.5, points[:, 1] / size[1] - 0.5
    return np.stack([np.ones_like(x), x, y, x * y, x * x, y * y], axis=1)


def bend(found: Fit, size_b: tuple[int, int]) -> np.ndarray | None:
    """(6, 2) coefficients of the correction, in a's pixels, to add to where the inverse homography sends a point
    of b (terms of _poly_terms over b's width and height), fitted on the matches near the homography; None when
    too few matches are near it."""
    if found.matrix is None or len(found.points_a) < MIN_BEND_POINTS:
        return None
    try:
        inverse = np.linalg.inv(found.matrix)
    except np.linalg.LinAlgError:
        return None
    back = cv2.perspectiveTransform(found.points_b.reshape(-1, 1, 2).astype(np.float64), inverse).reshape(-1, 2)
    residual = found.points_a - back
    keep = np.linalg.norm(residual, axis=1) <= BEND_PX
    coefficients = None
    for _ in range(2):
        if keep.sum() < MIN_BEND_POINTS:
            return None
        terms = _poly_terms(found.points_b[keep], size_b)
        coefficients = np.linalg.lstsq(terms, residual[keep], rcond=None)[0]
        error = np.linalg.norm(_poly_terms(found.points_b, size_b) @ coefficients - residual, axis=1)
        keep = error <= BEND_KEEP_PX
    return coefficients


def mirror_matrix(width: int) -> np.ndarray:
    """The homography of a left-right mirror of a picture ``width`` pixels wide."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def _turned(u: float, v: float, turns: int) -> tuple[float, float]:
    """Where a point at (u, v) (shares of width and height) of np.rot90(picture, turns) lies in the picture."""
    for _ in range(turns % 4):
        u, v = 1.0 - v, u
    return u, v


def box_homography(stored: Box, probe: Box, *, turns: int, mirrored: bool) -> np.ndarray:
    """The homography taking ``stored`` (a box of the stored picture) onto ``probe`` (a box of the new one) when
    the new box turned ``turns`` quarter turns (np.rot90) looks like the stored box, or its mirror image."""
    src, dst = [], []
    for u, v in ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)):
        src.append((stored[0] + u * (stored[2] - stored[0]), stored[1] + v * (stored[3] - stored[1])))
        pu, pv = _turned(1.0 - u if mirrored else u, v, turns)
        dst.append((probe[0] + pu * (probe[2] - probe[0]), probe[1] + pv * (probe[3] - probe[1])))
    return cv2.getPerspectiveTransform(np.float32(src), np.float32(dst))


def _scale(matrix: np.ndarray, at: tuple[float, float]) -> float:
    """How much ``matrix`` enlarges lengths near the point ``at`` (square root of its Jacobian's determinant)."""
    x, y = at
    w = matrix[2, 0] * x + matrix[2, 1] * y + matrix[2, 2]
    if abs(w) < 1e-9:
        return 0.0
    u = (matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2]) / w
    v = (matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2]) / w
    jac = np.array([[matrix[0, 0] - matrix[2, 0] * u, matrix[0, 1] - matrix[2, 1] * u],
                    [matrix[1, 0] - matrix[2, 0] * v, matrix[1, 1] - matrix[2, 1] * v]]) / w
    return float(np.sqrt(abs(np.linalg.det(jac))))


def _band(grey: np.ndarray) -> np.ndarray:
    g = grey.astype(np.float32)
    return cv2.GaussianBlur(g, (0, 0), SIGMAS[0]) - cv2.GaussianBlur(g, (0, 0), SIGMAS[1])


@dataclass(frozen=True)
class Agreement:
    correlation: float  # of the band-passed detail over the overlap, -1..1
    overlap: float  # the larger of the shares of either picture the overlap covers
    local: float = 0.0  # median correlation over the textured blocks of the overlap (stickers hide only a few)
    centre: float | None = None  # the same over the blocks of the overlap's central half; None when too few


BLOCKS = 8  # the overlap's frame is cut into BLOCKS x BLOCKS blocks for the local agreement
CENTRE = slice(2, 6)  # the rows and columns of blocks that make the central half of the overlap
TEXTURE = 1.5  # band-passed standard deviation (grey levels) a block needs on both sides to count
MIN_BLOCKS = 4  # textured blocks a median is taken over at least (3 in the centre)
DETAILED_SHARE = 0.25  # share of a central block where both pictures must have detail for it to count


def _correlation(bx: np.ndarray, by: np.ndarray) -> float:
    bx, by = bx - bx.mean(), by - by.mean()
    denominator = float(np.sqrt((bx * bx).sum() * (by * by).sum()))
    return float((bx * by).sum() / denominator) if denominator > 0 else 0.0


def block_correlations(x: np.ndarray, y: np.ndarray, valid: np.ndarray, *,
                       both_detailed: np.ndarray | None = None) -> np.ndarray:
    """BLOCKS x BLOCKS correlations of ``x`` and ``y`` over the overlap's bounding box, NaN where a block is
    mostly outside the overlap or flat on either side. With ``both_detailed`` (a mask), a block is read only on
    the pixels where both pictures have detail, and counts when at least DETAILED_SHARE of it has: a flat sticker
    over a plain garment then leaves no block to disagree, while a different garment still disagrees."""
    rows_any, cols_any = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    frame = (slice(rows_any[0], rows_any[-1] + 1), slice(cols_any[0], cols_any[-1] + 1))  # the overlap's box
    x, y, valid = x[frame], y[frame], valid[frame]
    detailed = None if both_detailed is None else both_detailed[frame] & valid
    h, w = valid.shape
    grid = np.full((BLOCKS, BLOCKS), np.nan)
    for i in range(BLOCKS):
        for j in range(BLOCKS):
            rows, cols = slice(i * h // BLOCKS, (i + 1) * h // BLOCKS), slice(j * w // BLOCKS, (j + 1) * w // BLOCKS)
            keep = valid[rows, cols]
            if keep.mean() < 0.5:
                continue
            if detailed is not None:
                keep = detailed[rows, cols]
                if keep.mean() < DETAILED_SHARE:
                    continue
            bx, by = x[rows, cols][keep], y[rows, cols][keep]
            if bx.std() < TEXTURE or by.std() < TEXTURE:
                continue
            grid[i, j] = _correlation(bx, by)
    return grid


def _detailed(band: np.ndarray) -> np.ndarray:
    """Where a band-passed picture has detail: its mean magnitude over 5x5 pixels is at least TEXTURE."""
    return cv2.blur(np.abs(band), (5, 5)) >= TEXTURE


def _centre(grid: np.ndarray) -> float | None:
    """The median of the central half's block correlations, None when fewer than MIN_BLOCKS - 1 count."""
    centre = grid[CENTRE, CENTRE]
    centre = centre[~np.isnan(centre)]
    return round(float(np.median(centre)), 4) if len(centre) >= MIN_BLOCKS - 1 else None


def _local(grid: np.ndarray) -> float:
    """The median block correlation. It takes the global correlation's place: one re-shot of a scene agrees a
    little everywhere, a copy agrees well everywhere but under what was pasted over it."""
    found = grid[~np.isnan(grid)]
    return float(np.median(found)) if len(found) >= MIN_BLOCKS else 0.0


MIN_SHRINK = 0.05  # an alignment that shrinks a picture more than this is no copy (and too costly to smooth)


def _bent_maps(matrix: np.ndarray, coefficients: np.ndarray, shape_b: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """For each pixel of b, where in a it comes from: the inverse homography and the bend on top of it."""
    h, w = shape_b
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
    back = cv2.perspectiveTransform(grid.reshape(-1, 1, 2), np.linalg.inv(matrix)).reshape(-1, 2)
    back = back + (_poly_terms(grid, (w, h)) @ coefficients).astype(np.float32)
    return back[:, 0].reshape(h, w).astype(np.float32), back[:, 1].reshape(h, w).astype(np.float32)


def agreement(a: np.ndarray, b: np.ndarray, matrix: np.ndarray, *, bent: np.ndarray | None = None) -> Agreement:
    """How well the fine detail of greyscale picture ``a`` agrees with ``b``'s once ``matrix`` (a homography from
    a's pixels to b's) lays a over b, compared in the coarser of the two frames. With ``bent`` (coefficients
    from ``bend``), a is laid over b by the homography bent by them, in b's frame."""
    ha, wa = a.shape
    hb, wb = b.shape
    try:
        inverse = np.linalg.inv(matrix)
    except np.linalg.LinAlgError:
        return Agreement(0.0, 0.0)
    scale = _scale(matrix, (wa / 2, ha / 2))
    if scale <= 0 or not MIN_SHRINK <= scale <= 1 / MIN_SHRINK:
        return Agreement(0.0, 0.0)
    if scale <= 1 or bent is not None:  # a shrinks onto b (or is bent onto it): compare in b's frame
        src, dst, warp, shrink = a, b, matrix, min(scale, 1.0)
    else:  # b is the coarser: bring b into a's frame
        src, dst, warp, shrink = b, a, inverse, 1 / scale
    src_f = src.astype(np.float32)
    if shrink < 0.7:  # smooth before shrinking, as a smaller photo would have been
        src_f = cv2.GaussianBlur(src_f, (0, 0), 0.5 / shrink)
    h, w = dst.shape
    if bent is not None:
        map_x, map_y = _bent_maps(matrix, bent, (h, w))
        moved = cv2.remap(src_f, map_x, map_y, cv2.INTER_LINEAR, borderValue=0)
        valid = cv2.remap(np.ones(src.shape, np.uint8), map_x, map_y, cv2.INTER_NEAREST, borderValue=0)
    else:
        moved = cv2.warpPerspective(src_f, warp, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
        valid = cv2.warpPerspective(np.ones(src.shape, np.uint8), warp, (w, h), flags=cv2.INTER_NEAREST,
                                    borderValue=0)
    valid = cv2.erode(valid, np.ones((7, 7), np.uint8)).astype(bool)
    covered = valid.sum()
    if covered < 400:
        return Agreement(0.0, 0.0)
    overlap = max(covered / (h * w), min(1.0, covered / (src.shape[0] * src.shape[1] * shrink * shrink)))
    band_moved, band_dst = _band(moved), _band(dst)
    x, y = band_moved[valid], band_dst[valid]
    x, y = x - x.mean(), y - y.mean()
    denominator = float(np.sqrt((x * x).sum() * (y * y).sum()))
    correlation = float((x * y).sum() / denominator) if denominator > 0 else 0.0
    local = _local(block_correlations(band_moved, band_dst, valid))
    # the centre holds the product: a different garment laid on the same floor agrees around it (the floor) and
    # not on it; read where both pictures have detail, so that a flat sticker over the middle does not count
    centre = _centre(block_correlations(band_moved, band_dst, valid,
                                        both_detailed=_detailed(band_moved) & _detailed(band_dst)))
    return Agreement(round(correlation, 4), round(float(overlap), 4), round(local, 4), centre)
