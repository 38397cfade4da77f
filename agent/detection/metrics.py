"""Detection scores: COCO's twelve numbers and Pascal VOC average precision, in numpy alone.

COCO (`coco_eval`) reproduces pycocotools' COCOeval(iouType="bbox"): evaluate, accumulate and summarize with
the default parameters. Its twelve numbers (COCO_METRICS, in COCOeval.stats order):

  coco_ap          AP averaged over IoU 0.50:0.05:0.95, all areas, at most 100 detections per image
  coco_ap50        AP at IoU 0.50;  coco_ap75: AP at IoU 0.75
  coco_ap_small    AP of objects of area <= 32², coco_ap_medium: 32²..96², coco_ap_large: >= 96²
  coco_ar1/10/100  recall averaged over the ten IoU thresholds with at most 1, 10, 100 detections per image
  coco_ar_small, coco_ar_medium, coco_ar_large: that recall (100 detections) by area range

Each is a mean over categories (and thresholds) that have non-ignored ground truth; a number with no such
category is None where COCOeval prints -1. Per category, "coco_ap" and "coco_ap50" are the same means taken
over that category alone (all areas, 100 detections), as read from COCOeval.eval["precision"].

Pascal VOC (`voc_eval`, VOC_METRICS) reproduces the devkit's VOCevaldet.m at IoU >= 0.5: per class, detections
in descending score order, each assigned to the ground truth box of its image it overlaps most (the first on
ties); a difficult box makes it neither a true nor a false positive, the first detection to claim a box is a
true positive, a later one or one below the threshold a false positive. voc_ap50 is the all-point AP of the
VOC2010+ devkit (precision made monotone, area summed where recall changes), voc07_ap50 the 11-point AP of the
VOC2007 devkit (mean over recall t in 0, 0.1, ..., 1 of the best precision at recall >= t, 0 if none). In
`score` each is the mean over the classes that have non-difficult ground truth.

Conventions:
- Boxes are (x, y, width, height) in original-image pixels with continuous coordinates (COCO's convention),
  and IoU is intersection over union with no +1: pycocotools' bbIou, where for a crowd ground truth box the
  union is the detection's own area. The VOC devkit's boxes are 1-based and inclusive and its IoU adds 1 to
  widths and heights; with x1 = xmin - 1 and x2 = xmax (so width = xmax - xmin + 1) the continuous IoU here
  equals the devkit's.
- COCO's area ranges use a ground truth box's annotation `area` (a mask's area in COCO, not w*h) and a
  detection's w*h; a range's bounds belong to it (an area of exactly 32² is both small and medium).
- VOC treats a crowd box like a difficult one (the devkit has no crowd boxes): matching it scores nothing.
  Where the devkit's precision is 0/0 (difficult matches before any true or false positive) it is 0 here,
  which changes no AP.
- Detections on categories outside `category_ids` are ignored, as COCOeval does; a detection on an image
  outside `image_ids` is a ValueError (pycocotools asserts). Annotation ids are not read, so one quirk of
  pycocotools is not reproduced: it takes a match with an annotation whose id is 0 for no match.

Written in numpy because pycocotools cannot be installed on the boards' Python; the tests hold it to
pycocotools and to the PyPI package mean-average-precision within 1e-4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

COCO_METRICS = ("coco_ap", "coco_ap50", "coco_ap75", "coco_ap_small", "coco_ap_medium", "coco_ap_large",
                "coco_ar1", "coco_ar10", "coco_ar100", "coco_ar_small", "coco_ar_medium", "coco_ar_large")
VOC_METRICS = ("voc_ap50", "voc07_ap50")

# COCOeval's Params.setDetParams, with its own linspace definitions (np.arange would drift).
_IOU_THRESHOLDS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
_RECALL_THRESHOLDS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
_MAX_DETECTIONS = (1, 10, 100)
_AREA_RANGES_PX2 = ((0 ** 2, 1e5 ** 2), (0 ** 2, 32 ** 2), (32 ** 2, 96 ** 2), (96 ** 2, 1e5 ** 2))
_AREA_LABELS = ("all", "small", "medium", "large")
# evaluateImg's threshold is min(t, 1 - 1e-10), so an IoU of exactly 1 still matches at every t.
_MATCH_THRESHOLDS = np.minimum(_IOU_THRESHOLDS, 1 - 1e-10)
_VOC07_RECALL_POINTS = np.arange(0.0, 1.1, 0.1)
# Pairs of (detection, ground truth) whose IoU is computed at once: bounds memory on crowded images.
_PAIRS_PER_CHUNK = 1 << 22


@dataclass(eq=False)
class Boxes:
    """Boxes over a set of images, one row per box (arrays of equal length).

    image_id: (k,) int64; category_id: (k,) int64
    xywh: (k, 4) float64 x, y, width, height in original-image pixels, continuous coordinates
    score: (k,) detections' confidence
    area: (k,) ground truth's annotation `area` (COCO's area ranges use it); None: width * height
    crowd: (k,) bool ground truth's iscrowd; difficult: (k,) bool ground truth's Pascal VOC `difficult`
    """

    image_id: np.ndarray
    category_id: np.ndarray
    xywh: np.ndarray
    score: Optional[np.ndarray] = None
    area: Optional[np.ndarray] = None
    crowd: Optional[np.ndarray] = None
    difficult: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.image_id = np.asarray(self.image_id, dtype=np.int64).reshape(-1)
        self.category_id = np.asarray(self.category_id, dtype=np.int64).reshape(-1)
        self.xywh = np.asarray(self.xywh, dtype=np.float64).reshape(-1, 4)
        if self.score is not None:
            self.score = np.asarray(self.score, dtype=np.float64).reshape(-1)
        if self.area is not None:
            self.area = np.asarray(self.area, dtype=np.float64).reshape(-1)
        if self.crowd is not None:
            self.crowd = np.asarray(self.crowd, dtype=bool).reshape(-1)
        if self.difficult is not None:
            self.difficult = np.asarray(self.difficult, dtype=bool).reshape(-1)
        lengths = {name: len(values) for name, values in self._columns().items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"Boxes columns differ in length: {lengths}")

    @classmethod
    def empty(cls) -> Boxes:
        """No boxes at all."""
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)), score=np.zeros(0))

    def __len__(self) -> int:
        return len(self.image_id)

    def _columns(self) -> Dict[str, np.ndarray]:
        names = ("image_id", "category_id", "xywh", "score", "area", "crowd", "difficult")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def take(self, rows: np.ndarray) -> Boxes:
        """The boxes at `rows` (indexes or a boolean mask), in that order."""
        return Boxes(**{name: values[rows] for name, values in self._columns().items()})

    def areas(self) -> np.ndarray:
        """Each box's `area`, or width * height where none was given."""
        return self.area if self.area is not None else self.xywh[:, 2] * self.xywh[:, 3]

    def crowds(self) -> np.ndarray:
        return self.crowd if self.crowd is not None else np.zeros(len(self), dtype=bool)

    def difficults(self) -> np.ndarray:
        return self.difficult if self.difficult is not None else np.zeros(len(self), dtype=bool)

    def scores(self) -> np.ndarray:
        if self.score is None:
            raise ValueError("detections need a score")
        return self.score


@dataclass
class Scores:
    """Every number of one scoring.

    metrics: each name of COCO_METRICS and VOC_METRICS -> its value, None where undefined
    per_class: one dict per category, in category_ids order: category_id, class (its name), n_truth (its
        non-crowd, non-difficult boxes), coco_ap, coco_ap50, voc_ap50, voc07_ap50
    """

    metrics: Dict[str, Optional[float]]
    per_class: List[Dict[str, Any]]


# --------------------------------------------------------------------------- shared helpers


def _ragged_arange(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The concatenation of range(s, s + n) over starts s and counts n."""
    ends = np.cumsum(counts)
    return np.arange(int(ends[-1]) if len(ends) else 0) - np.repeat(ends - counts - starts, counts)


def _lookup(sorted_ids: np.ndarray, values: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(index of each value in sorted_ids, whether it is there at all)."""
    index = np.searchsorted(sorted_ids, values)
    found = index < len(sorted_ids)
    found[found] = sorted_ids[index[found]] == values[found]
    return index, found


def _pairs_by_key(det_key: np.ndarray, gt_key_sorted: np.ndarray) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """(detection rows, ground truth rows) of every pair with equal keys, in chunks, ordered by detection row."""
    first = np.searchsorted(gt_key_sorted, det_key, "left")
    counts = np.searchsorted(gt_key_sorted, det_key, "right") - first
    cumulative = np.cumsum(counts)
    start = 0
    while start < len(det_key):
        done_before = cumulative[start - 1] if start else 0
        stop = max(int(np.searchsorted(cumulative, done_before + _PAIRS_PER_CHUNK, "right")), start + 1)
        rows = np.arange(start, stop)
        yield np.repeat(rows, counts[rows]), _ragged_arange(first[rows], counts[rows])
        start = stop


def _mean_defined(values: Iterable[Optional[float]]) -> Optional[float]:
    defined = [value for value in values if value is not None]
    return float(np.mean(defined)) if defined else None


# --------------------------------------------------------------------------- COCO


def _coco_iou(det_xywh: np.ndarray, gt_xywh: np.ndarray, gt_crowd: np.ndarray) -> np.ndarray:
    """IoU of aligned (detection, ground truth) pairs, as maskApi.c bbIou computes it, operation for operation."""
    dx, dy, dw, dh = det_xywh.T
    gx, gy, gw, gh = gt_xywh.T
    width = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    height = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    overlap = (width > 0) & (height > 0)
    inter = np.where(overlap, width * height, 0.0)
    det_area = dw * dh
    union = np.where(gt_crowd, det_area, det_area + gw * gh - inter)
    return np.where(overlap, inter / np.where(overlap, union, 1.0), 0.0)


def _coco_match(pair_cand: np.ndarray, pair_gt: np.ndarray, pair_iou: np.ndarray, cand_round: np.ndarray,
                gt_ignored: np.ndarray, gt_crowd: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """evaluateImg's greedy matching of candidate detections (those with some IoU >= 0.5): (matched,
    matched to an ignored box), each (areas, thresholds, candidates).

    A detection takes, among the boxes still free (or crowd), the non-ignored one of highest IoU >= t, the
    later one on ties; failing that, the ignored one likewise: exactly where COCOeval's loop over boxes sorted
    ignored-last ends. Detections of different (image, category) never compete, so round r matches the r-th
    candidate of every (image, category) at once, for every area range and threshold.
    """
    n_areas, n_thresholds, n_cands = len(gt_ignored), len(_MATCH_THRESHOLDS), int(cand_round.size)
    matched = np.zeros((n_areas, n_thresholds, n_cands), dtype=bool)
    matched_ignored = np.zeros_like(matched)
    if n_cands == 0:
        return matched, matched_ignored
    seg_start = np.searchsorted(pair_cand, np.arange(n_cands), "left")
    seg_len = np.searchsorted(pair_cand, np.arange(n_cands), "right") - seg_start
    # Per area range, each candidate's pairs in the order it prefers them.
    orders = np.stack([np.lexsort((-pair_gt, -pair_iou, ignored[pair_gt], pair_cand)) for ignored in gt_ignored])
    ordered_gt, ordered_iou = pair_gt[orders], pair_iou[orders]
    taken = np.zeros((n_areas, n_thresholds, gt_crowd.size), dtype=bool)
    area_ix = np.arange(n_areas)[:, None, None]
    threshold_ix = np.arange(n_thresholds)[None, :, None]
    by_round = np.argsort(cand_round, kind="stable")
    bounds = np.searchsorted(cand_round[by_round], np.arange(int(cand_round.max()) + 2))
    for round_ in range(len(bounds) - 1):
        cands = by_round[bounds[round_]:bounds[round_ + 1]]
        lens = seg_len[cands]
        local_start = np.cumsum(lens) - lens
        rows = _ragged_arange(seg_start[cands], lens)
        gts, ious = ordered_gt[:, rows], ordered_iou[:, rows]
        free = ~taken[area_ix, threshold_ix, gts[:, None, :]] | gt_crowd[gts][:, None, :]
        usable = free & (ious[:, None, :] >= _MATCH_THRESHOLDS[None, :, None])
        place = np.arange(rows.size) - np.repeat(local_start, lens)
        first = np.minimum.reduceat(np.where(usable, place, rows.size), local_start, axis=2)
        hit = first < rows.size
        chosen_gt = gts[area_ix, local_start + np.where(hit, first, 0)]
        a, t, c = np.nonzero(hit)
        taken[a, t, chosen_gt[a, t, c]] = True
        matched[:, :, cands] = hit
        matched_ignored[:, :, cands] = hit & gt_ignored[area_ix, chosen_gt]
    return matched, matched_ignored


def _segment_suffix_max(values: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """For each position, the largest value from there to the end of its segment (segments ascending).

    Exact: done on integer ranks of the values, each segment lifted above the ones after it.
    """
    if values.size == 0:
        return values
    distinct, rank = np.unique(values, return_inverse=True)
    lift = (int(segment.max()) - segment.astype(np.int64)) * len(distinct)
    keys = lift + rank.reshape(-1)
    return distinct[np.maximum.accumulate(keys[::-1])[::-1] - lift]


def _recall_steps(n_positive: int) -> np.ndarray:
    """For each recall threshold, the number of true positives whose recall (tp / n_positive, as accumulate
    divides) first reaches it: accumulate's searchsorted(rc, recThrs, side="left") lands on that one."""
    recalls = np.arange(1, n_positive + 1, dtype=np.float64) / n_positive
    return np.searchsorted(recalls, _RECALL_THRESHOLDS, "left") + 1


def _all_recall_steps(n_positive: np.ndarray) -> np.ndarray:
    """_recall_steps for every (category, area) with positives: (K, A, R), zeros elsewhere."""
    steps = np.zeros(n_positive.shape + (len(_RECALL_THRESHOLDS),), dtype=np.int64)
    for k, a in np.argwhere(n_positive):
        steps[k, a] = _recall_steps(int(n_positive[k, a]))
    return steps


def _counted(flags: np.ndarray, ends: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """How many flags (last axis) are set in [start, end) for each (start, end) pair, any leading axes kept."""
    cumulative = np.concatenate([np.zeros(flags.shape[:-1] + (1,), np.int64), np.cumsum(flags, axis=-1)], -1)
    return cumulative[..., ends] - cumulative[..., starts]


def _coco_accumulate(det_cat: np.ndarray, det_rank: np.ndarray, det_score: np.ndarray, det_outside: np.ndarray,
                     cand_rows: np.ndarray, matched: np.ndarray, matched_ignored: np.ndarray,
                     n_positive: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """COCOeval.accumulate: (precision (T, R, K, A, M), recall (T, K, A, M)), -1 where a category has no
    non-ignored ground truth in that area range.

    Per category, detections (the first maxDet of each image) are ranked by score over all images; precision
    and recall change only at true positives, so only those are computed: the false positives before each
    come from counts (kept - true positives - ignored), the ignored ones being out-of-range detections left
    unmatched and detections matched to ignored boxes.
    """
    n_areas, n_thresholds = matched.shape[:2]
    n_cats, n_recalls = len(n_positive), len(_RECALL_THRESHOLDS)
    precision = -np.ones((n_thresholds, n_recalls, n_cats, n_areas, len(_MAX_DETECTIONS)))
    recall = -np.ones((n_thresholds, n_cats, n_areas, len(_MAX_DETECTIONS)))
    # accumulate's order: by category, then a stable sort of -score over images in order, each image's
    # detections already by score; the rows arrive sorted by (category, image, rank).
    order = np.lexsort((-det_score, det_cat))
    position = np.empty(order.size, dtype=np.int64)
    position[order] = np.arange(order.size)
    cat_first = np.searchsorted(det_cat[order], np.arange(n_cats), "left")
    by_position = np.argsort(position[cand_rows])
    cand_rows = cand_rows[by_position]
    matched, matched_ignored = matched[..., by_position], matched_ignored[..., by_position]
    cand_at, cand_cat = position[cand_rows], det_cat[cand_rows]
    cand_cat_first = np.searchsorted(cand_cat, cand_cat, "left")
    cand_outside = det_outside[:, cand_rows][:, None, :]
    steps = _all_recall_steps(n_positive)

    def upto(flags: np.ndarray) -> np.ndarray:
        """Flags (any leading axes, detections in accumulate order) counted per category up to each candidate."""
        return _counted(flags, cand_at + 1, cat_first[cand_cat])

    def upto_cands(flags: np.ndarray) -> np.ndarray:
        """Flags on candidates (any leading axes) counted per category up to each candidate."""
        return _counted(flags, np.arange(1, flags.shape[-1] + 1), cand_cat_first)

    for m, max_dets in enumerate(_MAX_DETECTIONS):
        kept = det_rank[order] < max_dets
        cand_kept = det_rank[cand_rows] < max_dets
        true_pos = matched & ~matched_ignored & cand_kept
        n_true = upto_cands(true_pos)
        n_ignored = (upto_cands(matched & matched_ignored & cand_kept) + upto(kept & det_outside[:, order])[:, None]
                     - upto_cands(matched & cand_outside & cand_kept))
        n_false = upto(kept) - n_true - n_ignored
        a, t, c = np.nonzero(true_pos)
        tp, fp = n_true[a, t, c].astype(np.float64), n_false[a, t, c].astype(np.float64)
        segment = (a * n_thresholds + t) * n_cats + cand_cat[c]
        best_after = _segment_suffix_max(tp / (fp + tp + np.spacing(1)), segment)
        n_tp = np.bincount(segment, minlength=n_areas * n_thresholds * n_cats).reshape(n_areas, n_thresholds, n_cats)
        seg_first = (np.cumsum(n_tp) - n_tp.reshape(-1)).reshape(n_tp.shape)
        need = steps.transpose(1, 0, 2)[:, None, :, :]  # (A, 1, K, R)
        reached = need <= n_tp[..., None]
        at = np.where(reached, seg_first[..., None] + need - 1, 0)
        picked = np.where(reached, best_after[at] if best_after.size else 0.0, 0.0)  # (A, T, K, R)
        defined = (n_positive.T > 0)[:, None, :]  # (A, 1, K)
        precision[..., m] = np.where(defined[..., None], picked, -1).transpose(1, 3, 2, 0)
        recall[..., m] = np.where(defined, n_tp / np.maximum(n_positive.T, 1)[:, None, :], -1).transpose(1, 2, 0)
    return precision, recall


def _coco_summarize(precision: np.ndarray, recall: np.ndarray) -> List[Optional[float]]:
    """COCOeval.summarize's twelve numbers (None for its -1)."""

    def mean(ap: bool, iou: Optional[float] = None, area: str = "all", max_dets: int = 100) -> Optional[float]:
        values = precision if ap else recall
        if iou is not None:
            values = values[np.where(iou == _IOU_THRESHOLDS)[0]]
        values = values[..., _AREA_LABELS.index(area), _MAX_DETECTIONS.index(max_dets)]
        defined = values[values > -1]
        return float(np.mean(defined)) if defined.size else None

    return [mean(True), mean(True, iou=.5), mean(True, iou=.75), mean(True, area="small"),
            mean(True, area="medium"), mean(True, area="large"), mean(False, max_dets=1), mean(False, max_dets=10),
            mean(False), mean(False, area="small"), mean(False, area="medium"), mean(False, area="large")]


def _outside(areas: np.ndarray) -> np.ndarray:
    """(area ranges, boxes): True where a box's area is outside the range (bounds inclusive, as COCOeval)."""
    return np.stack([(areas < low) | (areas > high) for low, high in _AREA_RANGES_PX2])


def coco_eval(truth: Boxes, detections: Boxes, image_ids: Sequence[int], category_ids: Sequence[int]
              ) -> Tuple[List[Optional[float]], Dict[int, Dict[str, Optional[float]]]]:
    """COCOeval(iouType="bbox") over image_ids and category_ids: (its stats[0..11], None for -1; per category
    id {"coco_ap", "coco_ap50"}). A detection on an image outside image_ids is a ValueError."""
    images = np.unique(np.asarray(image_ids, dtype=np.int64))
    cats = np.unique(np.asarray(category_ids, dtype=np.int64))
    det_image, det_image_known = _lookup(images, detections.image_id)
    if not det_image_known.all():
        unknown = int(detections.image_id[np.argmin(det_image_known)])
        raise ValueError(f"a detection is on image id {unknown}, which is not among the scored images")
    n_images, n_cats = len(images), len(cats)

    gt_image, gt_image_known = _lookup(images, truth.image_id)
    gt_cat, gt_cat_known = _lookup(cats, truth.category_id)
    gt_rows = np.flatnonzero(gt_image_known & gt_cat_known)
    gt_key = gt_cat[gt_rows] * n_images + gt_image[gt_rows]
    # Per (image, category) the boxes stay in file order, as COCO's index lists them.
    by_key = np.argsort(gt_key, kind="stable")
    gt_rows, gt_key = gt_rows[by_key], gt_key[by_key]
    gt_xywh, gt_crowd = truth.xywh[gt_rows], truth.crowds()[gt_rows]
    gt_ignored = _outside(truth.areas()[gt_rows]) | gt_crowd
    gt_cat_sorted = gt_key // max(n_images, 1)
    n_positive = np.stack([np.bincount(gt_cat_sorted[~ignored], minlength=n_cats) for ignored in gt_ignored], 1)

    det_cat, det_cat_known = _lookup(cats, detections.category_id)
    det_rows = np.flatnonzero(det_cat_known)
    det_key = det_cat[det_rows] * n_images + det_image[det_rows]
    scores = detections.scores()[det_rows]
    by_score = np.lexsort((-scores, det_key))
    det_rows, det_key, scores = det_rows[by_score], det_key[by_score], scores[by_score]
    det_rank = np.arange(det_key.size) - np.searchsorted(det_key, det_key, "left")
    within = det_rank < _MAX_DETECTIONS[-1]  # computeIoU keeps each image's best maxDets[-1] only
    det_rows, det_key, scores, det_rank = det_rows[within], det_key[within], scores[within], det_rank[within]
    det_xywh = detections.xywh[det_rows]

    # Only pairs with IoU >= 0.5 can ever match; the rest of each detection's fate is its area.
    found = []
    for pair_det, pair_gt in _pairs_by_key(det_key, gt_key):
        iou = _coco_iou(det_xywh[pair_det], gt_xywh[pair_gt], gt_crowd[pair_gt])
        close = iou >= _MATCH_THRESHOLDS[0]
        found.append((pair_det[close], pair_gt[close], iou[close]))
    found.append((np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)))
    pair_det, pair_gt, pair_iou = (np.concatenate([chunk[column] for chunk in found]) for column in range(3))
    cand_rows, pair_cand = np.unique(pair_det, return_inverse=True)
    cand_key = det_key[cand_rows]
    cand_round = np.arange(cand_rows.size) - np.searchsorted(cand_key, cand_key, "left")
    matched, matched_ignored = _coco_match(pair_cand.reshape(-1), pair_gt, pair_iou, cand_round, gt_ignored,
                                           gt_crowd)

    det_outside = _outside(det_xywh[:, 2] * det_xywh[:, 3])
    precision, recall = _coco_accumulate(det_key // max(n_images, 1), det_rank, scores, det_outside, cand_rows,
                                         matched, matched_ignored, n_positive)
    per_category = {}
    for k, category_id in enumerate(cats):
        ap = precision[:, :, k, 0, -1]
        per_category[int(category_id)] = {"coco_ap": float(np.mean(ap)) if ap[0, 0] > -1 else None,
                                          "coco_ap50": float(np.mean(ap[0])) if ap[0, 0] > -1 else None}
    return _coco_summarize(precision, recall), per_category


# --------------------------------------------------------------------------- Pascal VOC


def _voc_ap(true_pos: np.ndarray, false_pos: np.ndarray, n_positive: int, eleven_point: bool) -> float:
    """The devkit's AP of one class from its detections' flags in score order."""
    tp, fp = np.cumsum(true_pos, dtype=np.float64), np.cumsum(false_pos, dtype=np.float64)
    rec = tp / n_positive
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if eleven_point:
        ap = 0.0
        for point in _VOC07_RECALL_POINTS:
            reached = prec[rec >= point]
            ap += (reached.max() if reached.size else 0.0) / 11
        return float(ap)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.maximum.accumulate(np.concatenate([[0.0], prec, [0.0]])[::-1])[::-1]
    changes = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[changes] - mrec[changes - 1]) * mpre[changes]))


def _voc_flags(truth: Boxes, detections: Boxes, cats: np.ndarray, iou_threshold: float
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(category index of each detection in the devkit's order, true positive, false positive, non-difficult
    boxes per category), detections on other categories dropped."""
    gt_cat, gt_known = _lookup(cats, truth.category_id)
    det_cat, det_known = _lookup(cats, detections.category_id)
    gt_rows, det_rows = np.flatnonzero(gt_known), np.flatnonzero(det_known)
    images = np.unique(np.concatenate([truth.image_id[gt_rows], detections.image_id[det_rows]]))
    gt_key = gt_cat[gt_rows] * len(images) + np.searchsorted(images, truth.image_id[gt_rows])
    by_key = np.argsort(gt_key, kind="stable")
    gt_rows, gt_key = gt_rows[by_key], gt_key[by_key]
    gt_skipped = truth.difficults()[gt_rows] | truth.crowds()[gt_rows]
    n_positive = np.bincount(gt_cat[gt_rows][~gt_skipped], minlength=len(cats))

    order = np.lexsort((-detections.scores()[det_rows], det_cat[det_rows]))
    det_rows = det_rows[order]
    det_key = det_cat[det_rows] * len(images) + np.searchsorted(images, detections.image_id[det_rows])
    best_iou = np.full(det_rows.size, -np.inf)
    best_gt = np.zeros(det_rows.size, dtype=np.int64)
    for pair_det, pair_gt in _pairs_by_key(det_key, gt_key):
        d = detections.xywh[det_rows[pair_det]]
        g = truth.xywh[gt_rows[pair_gt]]
        width = np.minimum(d[:, 0] + d[:, 2], g[:, 0] + g[:, 2]) - np.maximum(d[:, 0], g[:, 0])
        height = np.minimum(d[:, 1] + d[:, 3], g[:, 1] + g[:, 3]) - np.maximum(d[:, 1], g[:, 1])
        overlap = (width > 0) & (height > 0)  # the devkit looks at overlapping boxes only
        pair_det, pair_gt, inter = pair_det[overlap], pair_gt[overlap], (width * height)[overlap]
        iou = inter / (d[overlap, 2] * d[overlap, 3] + g[overlap, 2] * g[overlap, 3] - inter)
        # Each detection's best: highest IoU, the first box on ties (the devkit's strict ov > ovmax).
        best = np.lexsort((pair_gt, -iou, pair_det))
        firsts = best[np.flatnonzero(np.diff(pair_det[best], prepend=-1))]
        best_iou[pair_det[firsts]], best_gt[pair_det[firsts]] = iou[firsts], pair_gt[firsts]
    hit = best_iou >= iou_threshold
    skipped = hit & gt_skipped[best_gt]
    claims = np.flatnonzero(hit & ~skipped)
    true_pos = np.zeros(det_rows.size, dtype=bool)
    true_pos[claims[np.unique(best_gt[claims], return_index=True)[1]]] = True
    return det_cat[det_rows], true_pos, ~true_pos & ~skipped, n_positive


def _voc_both(truth: Boxes, detections: Boxes, category_ids: Sequence[int], iou_threshold: float
              ) -> Dict[int, Tuple[Optional[float], Optional[float]]]:
    """Per category id: (all-point AP, 11-point AP), None when it has no non-difficult ground truth."""
    cats = np.unique(np.asarray(category_ids, dtype=np.int64))
    det_cat, true_pos, false_pos, n_positive = _voc_flags(truth, detections, cats, iou_threshold)
    bounds = np.searchsorted(det_cat, np.arange(len(cats) + 1))
    found: Dict[int, Tuple[Optional[float], Optional[float]]] = {}
    for k, category_id in enumerate(cats):
        if n_positive[k] == 0:
            found[int(category_id)] = (None, None)
            continue
        rows = slice(bounds[k], bounds[k + 1])
        found[int(category_id)] = (_voc_ap(true_pos[rows], false_pos[rows], int(n_positive[k]), False),
                                   _voc_ap(true_pos[rows], false_pos[rows], int(n_positive[k]), True))
    return {int(c): found[int(c)] for c in category_ids}


def voc_eval(truth: Boxes, detections: Boxes, category_ids: Sequence[int], eleven_point: bool,
             iou_threshold: float = 0.5) -> Dict[int, Optional[float]]:
    """The VOC devkit's AP per category id (11-point VOC2007 or all-point VOC2010+), None for a category
    without non-difficult ground truth."""
    return {c: pair[1 if eleven_point else 0] for c, pair in _voc_both(truth, detections, category_ids,
                                                                       iou_threshold).items()}


# --------------------------------------------------------------------------- everything at once


def score(truth: Boxes, detections: Boxes, image_ids: Sequence[int], category_ids: Sequence[int],
          class_names: Sequence[str]) -> Scores:
    """COCO's twelve numbers, VOC AP at IoU 0.5 (mean over classes with non-difficult truth) and per-class AP
    of `detections` against `truth` over image_ids; class_names name category_ids in order."""
    if len(class_names) != len(category_ids):
        raise ValueError(f"{len(class_names)} class names for {len(category_ids)} category ids")
    stats, coco_per_category = coco_eval(truth, detections, image_ids, category_ids)
    in_images = _lookup(np.unique(np.asarray(image_ids, dtype=np.int64)), truth.image_id)[1]
    voc = _voc_both(truth.take(in_images), detections, category_ids, 0.5)
    metrics: Dict[str, Optional[float]] = {name: stats[index] for index, name in enumerate(COCO_METRICS)}
    metrics["voc_ap50"] = _mean_defined(pair[0] for pair in voc.values())
    metrics["voc07_ap50"] = _mean_defined(pair[1] for pair in voc.values())
    counted = in_images & ~truth.crowds() & ~truth.difficults()
    per_class = []
    for index, category_id in enumerate(category_ids):
        per_class.append({"category_id": int(category_id), "class": str(class_names[index]),
                          "n_truth": int(np.count_nonzero(counted & (truth.category_id == category_id))),
                          **coco_per_category[int(category_id)],
                          "voc_ap50": voc[int(category_id)][0], "voc07_ap50": voc[int(category_id)][1]})
    return Scores(metrics=metrics, per_class=per_class)


def truth_from_coco(dataset: Dict[str, Any]) -> Tuple[Boxes, List[int], List[int], List[str]]:
    """A parsed COCO instances JSON -> (ground truth, sorted image ids, sorted category ids, their names), as
    pycocotools' COCO and COCOeval read it. An annotation without `area` takes w*h; `difficult` is read when
    present (COCO has none)."""
    annotations = dataset.get("annotations", [])
    xywh = np.array([a["bbox"] for a in annotations], dtype=np.float64).reshape(-1, 4)
    truth = Boxes(image_id=np.array([a["image_id"] for a in annotations], dtype=np.int64),
                  category_id=np.array([a["category_id"] for a in annotations], dtype=np.int64), xywh=xywh,
                  area=np.array([a["area"] if "area" in a else xywh[i, 2] * xywh[i, 3]
                                 for i, a in enumerate(annotations)], dtype=np.float64),
                  crowd=np.array([bool(a.get("iscrowd", 0)) for a in annotations], dtype=bool),
                  difficult=np.array([bool(a.get("difficult", 0)) for a in annotations], dtype=bool))
    # COCO indexes images and categories by id, a repeated id keeping its last entry.
    categories = {int(c["id"]): str(c["name"]) for c in dataset.get("categories", [])}
    images = sorted({int(image["id"]) for image in dataset.get("images", [])})
    category_ids = sorted(categories)
    return truth, images, category_ids, [categories[c] for c in category_ids]


def detections_from_coco(results: List[Dict[str, Any]]) -> Boxes:
    """A parsed COCO results JSON ({image_id, category_id, bbox, score} each) -> detections, order kept."""
    if not results:
        return Boxes.empty()
    return Boxes(image_id=np.array([r["image_id"] for r in results], dtype=np.int64),
                 category_id=np.array([r["category_id"] for r in results], dtype=np.int64),
                 xywh=np.array([r["bbox"] for r in results], dtype=np.float64),
                 score=np.array([r["score"] for r in results], dtype=np.float64))
