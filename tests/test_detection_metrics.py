"""agent/detection/metrics.py held to two outside scorers, and small cases worked by hand.

COCO: pycocotools' COCOeval(iouType="bbox") is the oracle for all twelve stats and each category's AP and AP50
(read from eval["precision"]), on random data sets that reach its corners (tests/support/detection_data.py).

VOC: the PyPI package mean-average-precision is the oracle for per-class AP at IoU 0.5, all-point and
11-point. Its conventions differ from the devkit's, and the comparison accounts for both: its boxes are
inclusive pixel boxes with +1 in widths and areas (a continuous (x, y, w, h) box is fed to it as the devkit's
1-based (x + 1, y + 1, x + w, y + h), whose IoU under its convention is the continuous IoU), and it counts a
detection as overlapping only when IoU > threshold strictly, where the devkit takes IoU >= threshold: the
random boxes have float coordinates, so an IoU of exactly 0.5 does not occur. Two of its bugs (difficult
boxes counted as positives, difficult flags mis-tiled) are worked around in the harness, on the data it stores.
It runs with pandas 3 as installed.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from agent.detection.metrics import (
    COCO_METRICS,
    VOC_METRICS,
    Boxes,
    coco_eval,
    detections_from_coco,
    score,
    truth_from_coco,
    voc_eval,
)
from tests.support import REPO
from tests.support.detection_data import mean_average_precision_ap, pycocotools_eval, random_coco

TOLERANCE = 1e-4
BOARD_PYTHON = REPO / ".venv-boards" / "onnxruntime-1.16" / "bin" / "python"


def _as_coco(value: float | None) -> float:
    return -1.0 if value is None else value


def _on_grid(dataset: dict, results: list[dict]) -> None:
    """Snap every box to a 4-pixel grid: IoUs tie exactly and land exactly on thresholds (0.5, 0.75)."""
    for item in dataset["annotations"] + results:
        item["bbox"] = [float(round(v / 4) * 4) or 4.0 for v in item["bbox"]]


@pytest.mark.parametrize(("seed", "n_images", "n_categories", "grid"),
                         [(0, 30, 5, False), (1, 40, 3, False), (2, 20, 8, False), (3, 60, 4, False),
                          (4, 30, 5, True), (5, 25, 6, True)])
def test_coco_agrees_with_pycocotools(seed, n_images, n_categories, grid):
    dataset, results = random_coco(seed, n_images=n_images, n_categories=n_categories)
    if grid:
        _on_grid(dataset, results)
    truth, image_ids, category_ids, _ = truth_from_coco(dataset)
    stats, per_category = coco_eval(truth, detections_from_coco(results), image_ids, category_ids)
    expected, precision = pycocotools_eval(dataset, results)
    # The data reach every area range, and a category without ground truth.
    assert min(expected[3:6]) > -1 and min(expected[9:12]) > -1
    assert (precision[:, :, :, 0, -1] == -1).all(axis=(0, 1)).any()
    assert [_as_coco(s) for s in stats] == pytest.approx(expected, abs=TOLERANCE)
    for k, category_id in enumerate(category_ids):
        ap = precision[:, :, k, 0, -1]
        defined = ap > -1
        want_ap = float(ap[defined].mean()) if defined.any() else None
        want_ap50 = float(ap[0][defined[0]].mean()) if defined.any() else None
        got = per_category[category_id]
        assert (got["coco_ap"] is None) == (want_ap is None)
        if want_ap is not None:
            assert got["coco_ap"] == pytest.approx(want_ap, abs=TOLERANCE)
            assert got["coco_ap50"] == pytest.approx(want_ap50, abs=TOLERANCE)


@pytest.mark.parametrize("seed", [10, 11, 12, 13])
def test_voc_agrees_with_mean_average_precision(seed):
    dataset, results = random_coco(seed, difficult=True, tied_scores=False)
    truth, _, category_ids, _ = truth_from_coco(dataset)
    assert truth.difficult is not None and truth.difficult.any()
    detections = detections_from_coco(results)
    for eleven_point in (False, True):
        expected = mean_average_precision_ap(dataset, results, eleven_point)
        found = voc_eval(truth, detections, category_ids, eleven_point)
        assert set(found) == set(category_ids)
        assert {c for c, ap in found.items() if ap is not None} == set(expected)
        assert {c: found[c] for c in expected} == pytest.approx(expected, abs=TOLERANCE)


def test_score_gathers_every_number():
    dataset, results = random_coco(20, difficult=True)
    truth, image_ids, category_ids, names = truth_from_coco(dataset)
    detections = detections_from_coco(results)
    scores = score(truth, detections, image_ids, category_ids, names)
    assert list(scores.metrics) == list(COCO_METRICS + VOC_METRICS)
    stats, per_category = coco_eval(truth, detections, image_ids, category_ids)
    assert [scores.metrics[name] for name in COCO_METRICS] == stats
    voc = voc_eval(truth, detections, category_ids, eleven_point=False)
    assert scores.metrics["voc_ap50"] == pytest.approx(np.mean([ap for ap in voc.values() if ap is not None]))
    assert [row["category_id"] for row in scores.per_class] == category_ids
    assert [row["class"] for row in scores.per_class] == names
    for row in scores.per_class:
        counted = [a for a in dataset["annotations"] if a["category_id"] == row["category_id"]
                   and not a["iscrowd"] and not a.get("difficult")]
        assert row["n_truth"] == len(counted)
        assert row["coco_ap"] == per_category[row["category_id"]]["coco_ap"]
        assert row["voc_ap50"] == voc[row["category_id"]]
    json.dumps(scores.metrics)
    json.dumps(scores.per_class)


# --------------------------------------------------------------------------- worked by hand


def _truth(rows, crowd=None, difficult=None, area=None) -> Boxes:
    """Ground truth from rows (image_id, category_id, x, y, w, h)."""
    table = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return Boxes(image_id=table[:, 0].astype(np.int64), category_id=table[:, 1].astype(np.int64), xywh=table[:, 2:],
                 crowd=None if crowd is None else np.array(crowd, dtype=bool),
                 difficult=None if difficult is None else np.array(difficult, dtype=bool),
                 area=None if area is None else np.array(area, dtype=np.float64))


def _detections(rows) -> Boxes:
    """Detections from rows (image_id, category_id, x, y, w, h, score)."""
    table = np.array(rows, dtype=np.float64).reshape(-1, 7)
    return Boxes(image_id=table[:, 0].astype(np.int64), category_id=table[:, 1].astype(np.int64),
                 xywh=table[:, 2:6], score=table[:, 6])


def test_one_perfect_detection_scores_one():
    truth = _truth([(1, 7, 10, 10, 50, 50)])  # 2,500 px²: medium
    scores = score(truth, _detections([(1, 7, 10, 10, 50, 50, 0.9)]), [1], [7], ["thing"])
    for name in ("coco_ap", "coco_ap50", "coco_ap75", "coco_ap_medium", "coco_ar1", "coco_ar100",
                 "coco_ar_medium", "voc_ap50", "voc07_ap50"):
        assert scores.metrics[name] == pytest.approx(1.0), name
    for name in ("coco_ap_small", "coco_ap_large", "coco_ar_small", "coco_ar_large"):
        assert scores.metrics[name] is None, name
    # pycocotools' precision is tp / (tp + fp + eps): one short of 1.0 in the last place.
    assert scores.per_class == [pytest.approx({"category_id": 7, "class": "thing", "n_truth": 1, "coco_ap": 1.0,
                                               "coco_ap50": 1.0, "voc_ap50": 1.0, "voc07_ap50": 1.0})]


def test_half_the_boxes_found():
    truth = _truth([(1, 1, 0, 0, 40, 40), (1, 1, 100, 100, 40, 40)])
    scores = score(truth, _detections([(1, 1, 0, 0, 40, 40, 0.9)]), [1], [1], ["a"])
    # Precision 1 up to recall 0.5: 51 of COCO's 101 recall points, 6 of VOC2007's 11.
    assert scores.metrics["coco_ap"] == pytest.approx(51 / 101)
    assert scores.metrics["coco_ar100"] == pytest.approx(0.5)
    assert scores.metrics["voc_ap50"] == pytest.approx(0.5)
    assert scores.metrics["voc07_ap50"] == pytest.approx(6 / 11)


def test_no_detections_scores_zero_not_none():
    scores = score(_truth([(1, 1, 0, 0, 40, 40)]), Boxes.empty(), [1, 2], [1], ["a"])
    assert scores.metrics["coco_ap"] == 0.0 and scores.metrics["coco_ar100"] == 0.0
    assert scores.metrics["voc_ap50"] == 0.0 and scores.metrics["voc07_ap50"] == 0.0


def test_crowd_boxes_are_not_counted_and_excuse_what_they_cover():
    truth = _truth([(1, 1, 0, 0, 40, 40), (2, 1, 0, 0, 200, 200)], crowd=[False, True])
    detections = _detections([(1, 1, 0, 0, 40, 40, 0.5), (2, 1, 20, 20, 30, 30, 0.9)])
    scores = score(truth, detections, [1, 2], [1], ["a"])
    # COCO: the detection inside image 2's crowd box is ignored (IoU with a crowd box is over the detection's
    # own area), though it outscores the true positive.
    assert scores.metrics["coco_ap"] == pytest.approx(1.0)
    # VOC treats the crowd box as difficult, but by plain IoU (900 / 40,000) it does not cover the detection,
    # which is a false positive ahead of the true one.
    assert scores.metrics["voc_ap50"] == pytest.approx(0.5)
    assert scores.per_class[0]["n_truth"] == 1
    # Only crowd boxes: nothing is defined.
    only_crowd = score(truth.take(np.array([1])), detections, [1, 2], [1], ["a"])
    assert all(only_crowd.metrics[name] is None for name in COCO_METRICS + VOC_METRICS)


def test_a_class_with_only_difficult_boxes_has_no_voc_ap():
    truth = _truth([(1, 1, 0, 0, 40, 40), (1, 2, 50, 50, 40, 40)], difficult=[False, True])
    detections = _detections([(1, 1, 0, 0, 40, 40, 0.9), (1, 2, 50, 50, 40, 40, 0.8)])
    assert voc_eval(truth, detections, [1, 2], eleven_point=False) == {1: 1.0, 2: None}
    scores = score(truth, detections, [1], [1, 2], ["a", "b"])
    assert scores.metrics["voc_ap50"] == 1.0
    assert scores.per_class[1]["n_truth"] == 0 and scores.per_class[1]["voc_ap50"] is None
    assert scores.per_class[1]["coco_ap"] == pytest.approx(1.0)  # COCO has no difficult boxes


def test_voc_and_coco_resolve_an_iou_tie_their_own_ways():
    # The first detection overlaps both boxes equally (IoU 90/110); the second matches the first box exactly
    # and the second box at IoU 80/120.
    truth = _truth([(1, 1, 0, 0, 10, 10), (1, 1, 2, 0, 10, 10)])
    detections = _detections([(1, 1, 1, 0, 10, 10, 0.9), (1, 1, 0, 0, 10, 10, 0.8)])
    # VOC: the tie goes to the first box, which the second detection, overlapping it most, then finds taken.
    assert voc_eval(truth, detections, [1], eleven_point=False) == {1: pytest.approx(0.5)}
    # COCO: the tie goes to the later box, leaving the first for the second detection up to IoU 0.95.
    stats, _ = coco_eval(truth, detections, [1], [1])
    assert stats[0] == pytest.approx((7 + 3 * 0.5 * 51 / 101) / 10)
    expected, _ = pycocotools_eval(
        {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}],
         "annotations": [{"id": n + 1, "image_id": 1, "category_id": 1, "bbox": [x, 0, 10, 10], "area": 100,
                          "iscrowd": 0} for n, x in enumerate((0, 2))]},
        [{"image_id": 1, "category_id": 1, "bbox": [x, 0, 10, 10], "score": s} for x, s in ((1, 0.9), (0, 0.8))])
    assert [_as_coco(s) for s in stats] == pytest.approx(expected)


def test_an_iou_of_exactly_the_threshold_matches():
    # IoU 100 / 200: the devkit's ov >= minoverlap and COCOeval's iou >= t both take it.
    truth = _truth([(1, 1, 0, 0, 10, 10)])
    detections = _detections([(1, 1, 0, 0, 20, 10, 0.9)])
    assert voc_eval(truth, detections, [1], eleven_point=False) == {1: 1.0}
    stats, _ = coco_eval(truth, detections, [1], [1])
    assert stats[1] == pytest.approx(1.0)


def test_voc_breaks_score_ties_in_the_order_detections_came():
    # The devkit sorts with MATLAB's stable sort: the true positive listed first ranks first.
    truth = _truth([(1, 1, 0, 0, 10, 10)])
    hit, miss = (1, 1, 0, 0, 10, 10, 0.5), (1, 1, 50, 50, 10, 10, 0.5)
    assert voc_eval(truth, _detections([hit, miss]), [1], eleven_point=False) == {1: 1.0}
    assert voc_eval(truth, _detections([miss, hit]), [1], eleven_point=False) == {1: 0.5}


def test_a_detection_on_an_unknown_image_is_refused():
    with pytest.raises(ValueError, match="image id 42"):
        coco_eval(_truth([(1, 1, 0, 0, 40, 40)]), _detections([(42, 1, 0, 0, 40, 40, 0.9)]), [1], [1])


def test_detections_on_unscored_categories_change_nothing():
    truth = _truth([(1, 1, 0, 0, 40, 40), (1, 1, 50, 50, 40, 40)])
    found = [(1, 1, 0, 0, 40, 40, 0.5)]
    noise = [(1, 3, 50, 50, 40, 40, 0.9)] * 5
    plain = score(truth, _detections(found), [1], [1], ["a"])
    assert score(truth, _detections(found + noise), [1], [1], ["a"]) == plain


def test_boxes_refuse_columns_of_different_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        Boxes(image_id=np.array([1, 2]), category_id=np.array([1]), xywh=np.zeros((2, 4)))


def test_truth_from_coco_reads_as_pycocotools_does():
    dataset = {"images": [{"id": 9}, {"id": 3}],
               "categories": [{"id": 5, "name": "b"}, {"id": 2, "name": "a"}],
               "annotations": [{"id": 1, "image_id": 9, "category_id": 5, "bbox": [0, 0, 4, 5]},
                               {"id": 2, "image_id": 3, "category_id": 2, "bbox": [0, 0, 4, 5], "area": 7.5,
                                "iscrowd": 1}]}
    truth, image_ids, category_ids, names = truth_from_coco(dataset)
    assert (image_ids, category_ids, names) == ([3, 9], [2, 5], ["a", "b"])
    assert truth.areas().tolist() == [20.0, 7.5]
    assert truth.crowds().tolist() == [False, True]
    assert len(detections_from_coco([])) == 0


@pytest.mark.skipif(not BOARD_PYTHON.exists(), reason="no board virtualenv (make boards)")
def test_the_boards_numpy_gives_the_same_numbers(tmp_path: Path):
    """The module on a board's stack (numpy 1.24) scores the same as here."""
    dataset, results = random_coco(30, difficult=True)
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"dataset": dataset, "results": results}))
    script = ("import json, sys, numpy; from agent.detection.metrics import *; "
              "d = json.load(open(sys.argv[1])); t, i, c, n = truth_from_coco(d['dataset']); "
              "s = score(t, detections_from_coco(d['results']), i, c, n); "
              "print(json.dumps({'numpy': numpy.__version__, 'metrics': s.metrics, 'per_class': s.per_class}))")
    done = subprocess.run([str(BOARD_PYTHON), "-c", script, str(data)], capture_output=True, text=True, cwd=REPO,
                          env={"PYTHONPATH": str(REPO)}, timeout=120)
    assert done.returncode == 0, done.stderr
    board = json.loads(done.stdout)
    assert board["numpy"].startswith("1.24")
    truth, image_ids, category_ids, names = truth_from_coco(dataset)
    scores = score(truth, detections_from_coco(results), image_ids, category_ids, names)
    here = json.loads(json.dumps({"metrics": scores.metrics, "per_class": scores.per_class}))
    assert board["metrics"] == pytest.approx(here["metrics"], abs=1e-12)
    assert len(board["per_class"]) == len(here["per_class"])
    for on_board, on_host in zip(board["per_class"], here["per_class"], strict=True):
        assert on_board == pytest.approx(on_host, abs=1e-12)
