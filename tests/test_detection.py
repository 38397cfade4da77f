"""Detection end to end: data sets in COCO's and VOC's own layouts, the evaluation set boards score, `orch score`,
and the two detection studies swept on a real agent, with average precision measured where the model runs and
checked against pycocotools on the very detections the board returned."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from orchestrator.artifacts import npz_bytes
from orchestrator.builder.detection import class_map, evaluation_set
from orchestrator.datasets import coco, voc
from orchestrator.errors import BuildError, DatasetError
from tests.support import REPO, orch, run_env
from tests.support.datasets import CocoBox, VocBox, write_coco, write_person_study_data, write_voc
from tests.support.detectors import trained_yolov5
from tests.support.sshd import Fleet, sshd_available


def pycocotools_stats(ground_truth: dict[str, Any], results: list[dict[str, Any]],
                      category_ids: list[int] | None = None) -> np.ndarray:
    """COCOeval's twelve numbers for `results` (pycocotools, the oracle), its printing silenced."""
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = json.loads(json.dumps(ground_truth))
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results) if results else COCO(), "bbox")
        if category_ids is not None:
            evaluation.params.catIds = category_ids
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return np.array(evaluation.stats)


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as connection:
        return connection.execute(sql, params).fetchall()


# --------------------------------------------------------------------------- data sets


def test_coco_test_split_is_every_image_by_id_with_truth_as_cocoeval_reads_it(tmp_path: Path):
    objects = {139: [CocoBox(1, 10, 10, 30, 40), CocoBox(18, 50, 20, 20, 20)], 140: [],
               141: [CocoBox(1, 5, 5, 60, 50, crowd=True), CocoBox(3, 40, 30, 30, 30)]}
    write_coco(tmp_path, objects=objects, n=3)
    splits = coco.load(coco.Spec(name="coco", root=str(tmp_path), image_size=48, classes=["person", "dog"]))
    truth = splits.truth
    assert splits.class_names == ("person", "dog") and truth.category_ids == (1, 18)
    assert truth.image_ids.tolist() == [139, 140, 141] and truth.metric == "coco_ap"
    assert truth.names == ("000000000139.jpg", "000000000140.jpg", "000000000141.jpg")
    assert truth.sizes.tolist() == [[96, 72]] * 3 and truth.source_classes == ("person", "car", "dog")
    boxes = truth.boxes
    assert boxes.category_id.tolist() == [1, 18, 1]  # the car is not a kept class
    assert boxes.crowd.tolist() == [False, False, True]
    np.testing.assert_allclose(boxes.xywh[0], [10, 10, 30, 40])
    # Training rows: non-crowd boxes only, renumbered, moved into the 48-px input (plain resize 96x72 -> 48x48).
    assert [len(rows) for rows in splits.train_y] == [2, 0, 0]
    np.testing.assert_allclose(splits.train_y[0], [[0, 5, 10 / 1.5, 20, 50 / 1.5, 0], [1, 25, 20 / 1.5, 35,
                                                                                       40 / 1.5, 0]], rtol=1e-5)


def test_coco_finds_the_ultralytics_layout_and_names_what_is_missing(tmp_path: Path):
    write_coco(tmp_path, n=2)
    (tmp_path / "images").mkdir()
    shutil.move(tmp_path / "val2017", tmp_path / "images" / "val2017")
    assert len(coco.load(coco.Spec(name="coco", root=str(tmp_path))).test_x) == 2
    with pytest.raises(DatasetError, match=r"instances_train2017.json: annotation file is missing"):
        coco.load(coco.Spec(name="coco", root=str(tmp_path), train_split="train2017"))
    with pytest.raises(DatasetError, match=r"no category named 'cat'; categories: person, car, dog"):
        coco.load(coco.Spec(name="coco", root=str(tmp_path), classes=["cat"]))
    (tmp_path / "annotations" / "instances_val2017.json").write_text("{\"images\": []}")
    with pytest.raises(DatasetError, match=r"not a COCO annotation file \(needs `images`, `annotations`"):
        coco.load(coco.Spec(name="coco", root=str(tmp_path)))


def test_voc_truth_is_the_devkits_boxes_as_continuous_spans_over_every_test_image(tmp_path: Path):
    objects = {"000001": [VocBox("person", 11, 6, 50, 26)], "000002": [VocBox("dog", 1, 1, 10, 10)],
               "000003": [VocBox("person", 5, 5, 20, 20, difficult=True)]}
    write_voc(tmp_path, objects=objects, sets={"trainval": ["000001"], "test": ["000001", "000002", "000003"]})
    splits = voc.load(voc.Spec(name="voc", root=str(tmp_path), classes=["person"], image_size=40))
    truth = splits.truth
    assert truth.names == ("000001", "000002", "000003")  # 000002 holds no person: still scored (false positives)
    assert truth.metric == "voc07_ap50" and truth.source_classes == voc.VOC_CLASSES
    np.testing.assert_allclose(truth.boxes.xywh, [[10, 5, 40, 21], [4, 4, 16, 16]])
    assert truth.boxes.difficult.tolist() == [False, True] and truth.boxes.image_id.tolist() == [0, 2]
    # The same span in the model input: [xmin - 1, xmax) x [ymin - 1, ymax) scaled by 40/80 and 40/60.
    np.testing.assert_allclose(splits.test_y[0], [[0, 5, 5 / 1.5, 25, 26 / 1.5, 0]], rtol=1e-5)


def test_the_evaluation_set_ships_the_original_files_without_pickles(tmp_path: Path):
    from agent.detection.evaluate import DetectionSet, is_detection_set

    write_coco(tmp_path, n=4)
    splits = coco.load(coco.Spec(name="coco", root=str(tmp_path)))
    dataset = evaluation_set(splits.truth, splits.class_names)
    path = tmp_path / "set.npz"
    path.write_bytes(npz_bytes(**dataset.to_arrays()))
    with np.load(path, allow_pickle=False) as data:
        assert is_detection_set(data)
        shipped = DetectionSet.from_arrays({name: data[name] for name in data.files})
    for index, file in enumerate(splits.truth.files):
        assert shipped.encoded(index) == file.read_bytes()
    assert shipped.class_names == ["person", "car", "dog"] and shipped.headline == "coco_ap"
    np.testing.assert_array_equal(shipped.truth.xywh, splits.truth.boxes.xywh)


def test_a_models_labels_map_to_the_data_sets_classes_by_name():
    from agent.detection.decoders import DetectionSpec

    spec = DetectionSpec(decoder="yolov5")
    assert class_map(spec, 1, ["person"], voc.VOC_CLASSES) == [0]
    assert class_map(spec, 20, ["person"], voc.VOC_CLASSES) == [-1] * 14 + [0] + [-1] * 5
    named = DetectionSpec(decoder="nms", class_names=["background", "dog", "person"])
    assert class_map(named, None, ["person", "dog"], ()) == [-1, 1, 0]
    with pytest.raises(BuildError, match="the model scores 7 classes and the data set has 1"):
        class_map(spec, 7, ["person"], voc.VOC_CLASSES)


# --------------------------------------------------------------------------- orch score


def _coco_results(truth: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """Detections near the truth (some good, some shifted, some junk) in COCO's results format."""
    rng = np.random.default_rng(seed)
    results = []
    for annotation in truth["annotations"]:
        x, y, w, h = annotation["bbox"]
        for shift in (0.0, 0.2, 0.6):
            results.append({"image_id": annotation["image_id"], "category_id": annotation["category_id"],
                            "bbox": [x + shift * w * rng.random(), y + shift * h * rng.random(), w, h],
                            "score": float(rng.random())})
    for image in truth["images"]:
        results.append({"image_id": image["id"], "category_id": 3, "bbox": [1.0, 2.0, 20.0, 20.0],
                        "score": float(rng.random())})
    return results


def test_orch_score_prints_cocos_twelve_numbers_as_pycocotools_computes_them(tmp_path: Path):
    write_coco(tmp_path, n=10)
    truth = json.loads((tmp_path / "annotations" / "instances_val2017.json").read_text())
    results = _coco_results(truth, seed=3)
    detections = tmp_path / "detections.json"
    detections.write_text(json.dumps(results))
    env = run_env(tmp_path)
    done = orch("score", str(tmp_path / "annotations" / "instances_val2017.json"), str(detections), "-f", "json",
                env=env)
    assert done.returncode == 0, done.stderr
    scored = json.loads(done.stdout)
    expected = pycocotools_stats(truth, results)
    names = ("coco_ap", "coco_ap50", "coco_ap75", "coco_ap_small", "coco_ap_medium", "coco_ap_large",
             "coco_ar1", "coco_ar10", "coco_ar100", "coco_ar_small", "coco_ar_medium", "coco_ar_large")
    ours = np.array([-1 if scored["metrics"][name] is None else scored["metrics"][name] for name in names])
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    assert scored["headline"] == "coco_ap" and [c["class"] for c in scored["per_class"]] == ["person", "car", "dog"]
    table = orch("score", str(tmp_path / "annotations" / "instances_val2017.json"), str(detections), env=env)
    assert table.returncode == 0 and "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all" in table.stdout
    assert f"= {expected[0]:0.3f}   <- headline" in table.stdout and "AP per class" in table.stdout


def test_orch_score_reads_the_voc_devkits_own_results_files(tmp_path: Path):
    write_voc(tmp_path / "voc", ids=[f"{index:06d}" for index in range(1, 13)])
    folder = tmp_path / "voc" / "VOCdevkit" / "VOC2007"
    test_ids = (folder / "ImageSets" / "Main" / "test.txt").read_text().split()
    results, files = [], {}
    for image_id in test_ids:
        for obj in voc.read_annotation(folder / "Annotations" / f"{image_id}.xml"):
            score = 0.5 + 0.4 * (len(results) % 3) / 3
            files.setdefault(obj.class_name, []).append(f"{image_id} {score:.6f} {obj.box[0]:.1f} {obj.box[1]:.1f} "
                                                        f"{obj.box[2]:.1f} {obj.box[3] + 3:.1f}")
            results.append({"image_id": image_id, "category_id": obj.class_name, "score": round(score, 6),
                            "bbox": [obj.box[0] - 1, obj.box[1] - 1, obj.box[2] - obj.box[0] + 1,
                                     obj.box[3] + 3 - obj.box[1] + 1]})
    devkit = tmp_path / "results"
    devkit.mkdir()
    for name, lines in files.items():
        (devkit / f"comp4_det_test_{name}.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "detections.json").write_text(json.dumps(results))
    env = run_env(tmp_path)
    from_files = orch("score", str(tmp_path / "voc"), str(devkit), "-f", "json", env=env)
    from_json = orch("score", str(tmp_path / "voc"), str(tmp_path / "detections.json"), "-f", "json", env=env)
    assert from_files.returncode == 0 and from_json.returncode == 0, from_files.stderr + from_json.stderr
    by_files, by_json = json.loads(from_files.stdout), json.loads(from_json.stdout)
    assert by_files["headline"] == "voc07_ap50" and by_files["metrics"]["voc07_ap50"] is not None
    assert by_files["metrics"] == pytest.approx(by_json["metrics"], abs=1e-9)
    bad = devkit / "comp4_det_test_person.txt"
    bad.write_text("999999 0.5 1 1 10 10\n")
    done = orch("score", str(tmp_path / "voc"), str(devkit), env=env)
    assert done.returncode == 2 and f"{bad}:1: expected `image_id score xmin ymin xmax ymax`" in done.stderr


# --------------------------------------------------------------------------- the studies, swept on a real agent


def _coco_detections(db: Path, result_id: int) -> list[dict[str, Any]]:
    return [{"image_id": image, "category_id": category, "bbox": [x, y, w, h], "score": score}
            for image, category, x, y, w, h, score in query(
                db, "SELECT image_id, category_id, x, y, w, h, score FROM detections WHERE result_id = ? "
                    "ORDER BY id", result_id)]


@pytest.mark.slow
@pytest.mark.skipif(not sshd_available(), reason="needs root and OpenSSH's sshd (.ci/run installs it)")
def test_a_users_yolov5_export_is_quantized_and_scored_by_coco_map_on_the_device(tmp_path: Path):
    """recipes/onnx-ptq.yaml reduced: a YOLOv5-layout export we trained on the fixture, at 64 and 32 px, fp32,
    dynamic uint8 and static int8, each scored on `local` and on a board behind a real sshd; each device's AP is
    pycocotools' on the detections that device returned."""
    data = tmp_path / "data" / "coco"
    write_coco(data, "train2017", n=96, seed=1)
    write_coco(data, "val2017", n=16, seed=2, first_id=5000)
    (tmp_path / "models").mkdir()
    trained_yolov5(data, tmp_path / "models" / "yolov5n.onnx", size=64, epochs=150)
    (tmp_path / "recipes").mkdir()
    recipe = tmp_path / "recipes" / "onnx-ptq.yaml"
    recipe.write_text((REPO / "recipes" / "onnx-ptq.yaml").read_text()
                      .replace("test_limit: 500, image_size: 640", "train_split: train2017, image_size: 64")
                      .replace("input_size: [640, 320]", "input_size: [64, 32]")
                      .replace("calibration_samples: 64", "calibration_samples: 16")
                      .replace("measure: {min_iters: 100, min_s: 5, max_s: 120}",
                               "measure: {min_iters: 64, min_s: 0.05, max_s: 10}")
                      .replace("warmup: {min_iters: 5, min_s: 1}", "warmup: {min_iters: 2, min_s: 0.01}")
                      .replace("accuracy: full_test_set", "accuracy: full_test_set\n  keep_detections: true"))
    fleet = Fleet(tmp_path / "fleet", ["127.0.0.2"])
    try:
        done = orch("sweep", str(recipe), "--devices", "local,board1", env=fleet.env(run_env(tmp_path)))
    finally:
        fleet.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    db = tmp_path / "results.db"
    results = query(db, "SELECT v.name, r.status, r.accuracy_metric, r.accuracy, r.id, v.host_accuracy, "
                        "r.postprocess_ms_per_image, d.name FROM results r JOIN variants v ON "
                        "v.sha256 = r.variant_sha256 JOIN devices d ON d.id = r.device_id")
    assert sorted((row[7], row[0]) for row in results) == sorted(
        (device, f"{size}px/{q}") for device in ("board1", "local") for size in (64, 32)
        for q in ("fp32", "dynamic_uint8", "int8_static"))
    truth = json.loads((data / "annotations" / "instances_val2017.json").read_text())
    for name, status, metric, value, result_id, host, postprocess_ms, _ in results:
        assert status == "ok" and metric == "coco_ap" and value is not None and postprocess_ms > 0, name
        stats = pycocotools_stats(truth, _coco_detections(db, result_id))
        assert value == pytest.approx(stats[0], abs=1e-4), name  # the board's number is pycocotools' number
        stored = dict(query(db, "SELECT metric, value FROM accuracy_metrics WHERE result_id = ? AND class_name "
                                "IS NULL", result_id))
        assert stored["coco_ap50"] == pytest.approx(stats[1], abs=1e-4)
        assert stored["coco_ar100"] == pytest.approx(stats[8], abs=1e-4)
        assert {"voc_ap50", "voc07_ap50", "coco_ap_small"} <= set(stored)
        per_class = query(db, "SELECT class_name FROM accuracy_metrics WHERE result_id = ? AND metric = 'coco_ap'"
                              " AND class_name IS NOT NULL", result_id)
        assert sorted(row[0] for row in per_class) == ["car", "dog", "person"]
        assert value == pytest.approx(host, abs=1e-6), name  # same bytes, same runtime, same code: same AP
    for name, sha256 in query(db, "SELECT name, sha256 FROM variants"):  # each variant runs at its own size
        size = int(name.split("px")[0])
        session = ort.InferenceSession(str(tmp_path / "artifacts" / f"{sha256}.onnx"),
                                       providers=["CPUExecutionProvider"])
        assert session.get_inputs()[0].shape[2:] == [size, size], name
    fp32 = {row[0]: row[3] for row in results}["64px/fp32"]
    assert fp32 >= 0.25, f"the model trained on the easy fixture scores coco_ap {fp32}"  # 0 or NULL cannot pass


@pytest.mark.slow
def test_the_tiny_yolov2_person_study_runs_end_to_end_with_ap_per_pruning_step(tmp_path: Path):
    """recipes/tinyyolov2-voc-person.yaml reduced: Darknet weights, a fresh person head retrained, iterative
    pruning with AP after every round, BN folded, fp32 and int8, NMS in numpy and in the graph, and the baselines
    (the 20-class source network, the retrained head), every variant scored by VOC2007 person AP on the agent."""
    write_person_study_data(tmp_path / "data", images=24)
    (tmp_path / "recipes").mkdir()
    recipe = tmp_path / "recipes" / "tinyyolov2-voc-person.yaml"
    recipe.write_text((REPO / "recipes" / "tinyyolov2-voc-person.yaml").read_text()
                      .replace("image_size: 416", "image_size: 64")
                      .replace("retrain: {epochs: 10", "retrain: {epochs: 2")
                      .replace("ratio: [0, 0.25, 0.5], steps: 3, finetune_epochs: 2",
                               "ratio: [0, 0.5], steps: 2, finetune_epochs: 1")
                      .replace("calibration_samples: 64", "calibration_samples: 4")
                      .replace("threads: [1, 4]", "threads: [1]")
                      .replace("measure: {min_iters: 100, min_s: 5, max_s: 120}",
                               "measure: {min_iters: 64, min_s: 0.05, max_s: 10}")
                      .replace("warmup: {min_iters: 5, min_s: 1}", "warmup: {min_iters: 2, min_s: 0.01}")
                      .replace("  pipeline: {source: ../data/videos/street.mp4, frames: 300, save_frames: 8}\n",
                               ""))  # tests/test_pipeline.py runs the pipeline
    done = orch("sweep", str(recipe), "--devices", "local", env=run_env(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    db = tmp_path / "results.db"
    results = query(db, "SELECT v.name, r.status, r.accuracy_metric, r.accuracy, v.host_accuracy, v.sha256 "
                        "FROM results r JOIN variants v ON v.sha256 = r.variant_sha256")
    names = sorted(row[0] for row in results)
    assert names == sorted([f"{prune}/fold/{q}{nms}" for prune in ("dense/ft1", "l1-0.50x2/ft1")
                            for q in ("fp32", "int8_static") for nms in ("", "/nms")]
                           + ["baseline/source", "baseline/retrained"])  # the 20-class network, the new head
    for name, status, metric, value, host, _ in results:
        assert status == "ok" and metric == "voc07_ap50" and 0 <= value <= 1, name
        assert value == pytest.approx(host, abs=1e-6), name  # the agent's AP is the host's: same bytes, same code
    pruned = next(row[5] for row in results if row[0] == "l1-0.50x2/ft1/fold/fp32")
    steps = query(db, "SELECT step, ratio, accuracy_metric, accuracy FROM pruning_steps WHERE variant_sha256 = ? "
                      "ORDER BY step", pruned)
    assert [row[0] for row in steps] == [0, 1, 2] and [row[1] for row in steps] == [0.0, 0.25, 0.5]
    assert all(row[2] == "voc07_ap50" and 0 <= row[3] <= 1 for row in steps)
    per_class = query(db, "SELECT DISTINCT class_name FROM accuracy_metrics WHERE class_name IS NOT NULL")
    assert per_class == [("person",)]
