"""agent/detection: decoders and NMS against known boxes, greedy NMS, onnxruntime's NonMaxSuppression, the region
loss's box parameterisation and the graph_nms build step; on this Python and on a board's (onnxruntime 1.16,
numpy 1.24)."""

from __future__ import annotations

import json
import subprocess
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image, ImageDraw

from agent.detection.decoders import DECODERS, DetectionSpec, decode, model_classes, output_roles
from agent.detection.nms import HEAD_ROWS, box_iou, nms
from agent.preprocess import Placement, Preprocess
from orchestrator.artifacts import ArtifactStore
from orchestrator.builder import STEPS, OnnxNode
from orchestrator.builder.context import BuildContext
from orchestrator.builder.graph_nms import nms_spec, raw_output_shape, with_nms
from orchestrator.errors import BuildError
from tests.support import REPO
from tests.support.detection_models import CLASSES, EXPECTED, FIXTURES, INPUT_HW, INPUT_NAME, live_model

BOARD_PYTHON = REPO / ".venv-boards" / "onnxruntime-1.16" / "bin" / "python"


def _session(model: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def _images(count: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((count, 3, *INPUT_HW), dtype=np.float32)


def _run(model: bytes, images: np.ndarray) -> tuple[list[np.ndarray], list[str]]:
    session = _session(model)
    return session.run(None, {INPUT_NAME: images}), [output.name for output in session.get_outputs()]


def _random_boxes(rng: np.random.Generator, count: int, classes: int) -> tuple[np.ndarray, ...]:
    """Boxes crowded into a small area (many overlaps), scores with ties, labels."""
    corner = rng.uniform(0, 60, (count, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(1, 40, (count, 2))], axis=1).astype(np.float32)
    scores = rng.random(count).astype(np.float32)
    scores[rng.random(count) < 0.2] = 0.5  # ties: broken by index
    return boxes, scores, rng.integers(0, classes, count)


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, threshold: float) -> list[int]:
    """The textbook loop: best first, drop what overlaps a kept box of the same class by more than threshold."""
    kept: list[int] = []
    for index in np.argsort(-scores, kind="stable"):
        overlaps = box_iou(boxes[index:index + 1], boxes[kept])[0]
        if not any(labels[k] == labels[index] and overlap > threshold for k, overlap in zip(kept, overlaps,
                                                                                             strict=True)):
            kept.append(int(index))
    return kept


# -- nms -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_nms_is_greedy_nms_per_class(seed):
    rng = np.random.default_rng(seed)
    boxes, scores, labels = _random_boxes(rng, int(rng.integers(50, 400)), int(rng.integers(1, 5)))
    threshold = float(rng.choice([0.3, 0.45, 0.7]))
    expected = greedy_nms(boxes, scores, labels, threshold)
    assert nms(boxes, scores, labels, threshold).tolist() == expected
    assert nms(boxes, scores, labels, threshold, 25).tolist() == expected[:25]


def test_nms_past_its_first_ranked_part_with_ties_at_the_cut():
    """More candidates than HEAD_ROWS, scores in 40 steps (ties everywhere, also where the head is cut), and
    more boxes wanted than the head holds: the rest is ranked and looked at too."""
    rng = np.random.default_rng(11)
    boxes, _, labels = _random_boxes(rng, 5000, 2)
    boxes *= 4  # spread out: about a third survive
    scores = (rng.integers(0, 40, 5000) / 40).astype(np.float32)
    expected = greedy_nms(boxes, scores, labels, 0.5)
    ranks = np.argsort(np.argsort(-scores, kind="stable"))
    assert ranks[expected[1499]] > HEAD_ROWS + 1000  # the 1500th box kept is far into the rest
    assert nms(boxes, scores, labels, 0.5, 1500).tolist() == expected[:1500]
    assert nms(boxes, scores, labels, 0.5).tolist() == expected


def test_nms_matches_onnxruntimes_nonmaxsuppression():
    rng = np.random.default_rng(7)
    count, classes = 600, 3
    boxes, scores, labels = _random_boxes(rng, count, classes)
    scores = rng.random(count).astype(np.float32)  # no ties: onnxruntime breaks them in heap order
    per_class = np.full((1, classes, count), -1.0, dtype=np.float32)  # -1: not this box's class (below 0)
    per_class[0, labels, np.arange(count)] = scores
    graph = helper.make_graph(
        [helper.make_node("NonMaxSuppression", ["boxes", "scores", "max", "iou", "score"], ["selected"])], "nms",
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, count, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, classes, count])],
        [helper.make_tensor_value_info("selected", TensorProto.INT64, ["M", 3])],
        [numpy_helper.from_array(np.array([count], np.int64), "max"),
         numpy_helper.from_array(np.array([0.45], np.float32), "iou"),
         numpy_helper.from_array(np.array([0.0], np.float32), "score")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    selected = _session(model.SerializeToString()).run(None, {"boxes": boxes[None], "scores": per_class})[0]
    theirs = {int(row[2]) for row in selected}
    assert all(labels[row[2]] == row[1] for row in selected)
    mine = nms(boxes, scores, labels, 0.45)
    assert set(mine.tolist()) == theirs and len(mine) == len(theirs)
    assert (np.diff(scores[mine]) <= 0).all()


def test_nms_edge_cases():
    empty = np.zeros((0, 4), np.float32)
    assert nms(empty, np.zeros(0), np.zeros(0, np.int64), 0.5).tolist() == []
    flipped = np.array([[10, 10, 0, 0], [0, 0, 10, 10]], np.float32)  # the same box by its other corners
    assert nms(flipped, np.array([0.9, 0.8]), np.array([0, 0]), 0.5).tolist() == [0]
    points = np.array([[5, 5, 5, 5], [5, 5, 5, 5]], np.float32)  # zero area: suppresses nothing
    assert nms(points, np.array([0.9, 0.8]), np.array([0, 0]), 0.1).tolist() == [0, 1]
    many = np.tile([[0, 0, 10, 10]], (3000, 1)).astype(np.float32) + np.arange(3000)[:, None] * 20
    assert len(nms(many, np.linspace(1, 0, 3000), np.zeros(3000, np.int64), 0.5, 2500)) == 2500


# -- decoders on known boxes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_each_layout_decodes_to_the_known_boxes(name):
    fixture = FIXTURES[name]()
    assert fixture.spec.problems() == []
    batch = 1 if name == "torchvision_nms" else 2
    outputs, names = _run(fixture.model, _images(batch))
    per_image = decode(outputs, names, fixture.spec, INPUT_HW)
    assert len(per_image) == batch
    for boxes, scores, labels in per_image:
        assert boxes.dtype == scores.dtype == np.float32 and labels.dtype == np.int64
        np.testing.assert_allclose(boxes, fixture.expected[0], atol=1e-3)
        np.testing.assert_allclose(scores, fixture.expected[1], atol=1e-5)
        assert labels.tolist() == fixture.expected[2].tolist()


@pytest.mark.parametrize("name, classes", [("yolov2_region", CLASSES), ("yolov5", CLASSES), ("yolov8", CLASSES),
                                           ("ssd_priors", CLASSES), ("ssd_decoded", CLASSES), ("tf_nms", None)])
def test_model_classes_from_output_shapes(name, classes):
    fixture = FIXTURES[name]()
    outputs, names = _run(fixture.model, _images(1))
    shapes = [list(output.shape) for output in outputs]
    assert model_classes(fixture.spec, shapes, names) == classes
    assert model_classes(fixture.spec, shapes) == classes  # roles by shape alone
    if name.startswith("yolo"):
        assert model_classes(fixture.spec, [["N", *shapes[0][1:]]]) == classes
        class_axis = {"yolov2_region": 1, "yolov5": 2, "yolov8": 1}[name]
        symbolic = [*shapes[0][:class_axis], "C", *shapes[0][class_axis + 1:]]
        assert model_classes(fixture.spec, [symbolic]) is None


def test_max_detections_and_conf_threshold_apply_to_every_layout():
    for name, make in FIXTURES.items():
        fixture = make()
        outputs, names = _run(fixture.model, _images(1))
        fixture.spec.max_detections, fixture.spec.conf_threshold = 2, 0.75
        boxes, scores, labels = decode(outputs, names, fixture.spec, INPUT_HW)[0]
        assert scores.tolist() == pytest.approx([0.9, 0.8], abs=1e-5), name
        assert labels.tolist() == [0, 1], name


def test_yolov2_region_decodes_boxes_as_the_region_loss_trains_them():
    """The board's decoder and orchestrator/models/region.py's loss read the raw map the same way: every candidate
    above the threshold, with NMS switched off, is a box and score of the loss's own parameterisation."""
    torch = pytest.importorskip("torch")
    from orchestrator.models.region import _boxes, _split

    anchors = [(1.08, 1.19), (3.42, 4.41), (6.63, 11.38), (9.42, 5.11), (16.62, 10.52)]
    raw = (np.random.default_rng(3).standard_normal((2, 5 * 25, 13, 13)) * 2).astype(np.float32)
    fields = _split(torch.from_numpy(raw), len(anchors))
    boxes = _boxes(fields, torch.tensor(anchors), 416 / 13).reshape(2, -1, 4).numpy()
    scores = (torch.sigmoid(fields[..., 4:5]) * torch.softmax(fields[..., 5:], dim=-1)).reshape(2, -1, 20).numpy()
    spec = DetectionSpec("yolov2_region", anchors=[list(a) for a in anchors], conf_threshold=0.005,
                         iou_threshold=1.0, max_detections=100000)
    for image, (got_boxes, got_scores, got_labels) in enumerate(decode([raw], ["output"], spec, (416, 416))):
        cells, classes = np.nonzero(scores[image] > 0.005)
        assert len(got_boxes) == len(cells) > 100
        expected_boxes = boxes[image][cells]  # compared in one order: by class, then by box corner
        order = np.lexsort((expected_boxes[:, 1], expected_boxes[:, 0], classes))
        got = np.lexsort((got_boxes[:, 1], got_boxes[:, 0], got_labels))
        assert got_labels[got].tolist() == classes[order].tolist()
        np.testing.assert_allclose(got_scores[got], scores[image][cells, classes][order], rtol=1e-5)
        np.testing.assert_allclose(got_boxes[got], expected_boxes[order], rtol=1e-5, atol=1e-3)


# -- output roles --------------------------------------------------------------------------------------------------
def test_output_roles_by_name_prefer_the_plain_tf2_outputs():
    names = ["detection_anchor_indices", "detection_boxes", "detection_classes", "detection_multiclass_scores",
             "detection_scores", "num_detections", "raw_detection_boxes", "raw_detection_scores"]
    shapes = [[1, 100], [1, 100, 4], [1, 100], [1, 100, 91], [1, 100], [1], [1, 1917, 4], [1, 1917, 91]]
    roles = output_roles(DetectionSpec("nms"), DECODERS.get("nms"), names, shapes, None)
    assert {role: names[index] for role, index in roles.items()} == {
        "boxes": "detection_boxes", "labels": "detection_classes", "scores": "detection_scores",
        "count": "num_detections"}


def test_output_roles_by_order_find_torchvisions_integer_labels():
    shapes, dtypes = [[7, 4], [7], [7]], [np.float32, np.int64, np.float32]
    roles = output_roles(DetectionSpec("nms"), DECODERS.get("nms"), ["3158", "3159", "3160"], shapes, dtypes)
    assert roles == {"boxes": 0, "labels": 1, "scores": 2}
    tf_like = output_roles(DetectionSpec("nms"), DECODERS.get("nms"), ["a", "b", "c", "d"],
                           [[1, 10, 4], [1, 10], [1, 10], [1]], [np.float32] * 4)
    assert tf_like == {"boxes": 0, "scores": 1, "labels": 2, "count": 3}
    ssd = output_roles(DetectionSpec("ssd"), DECODERS.get("ssd"), ["out0", "out1"], [[1, 50, 21], [1, 50, 4]], None)
    assert ssd == {"boxes": 1, "scores": 0}


def test_declared_output_roles_win_and_a_missing_output_is_named():
    spec = DetectionSpec("ssd", outputs={"boxes": "b", "scores": "a"})
    assert output_roles(spec, DECODERS.get("ssd"), ["a", "b"], [[1, 5, 4], [1, 5, 4]], None) == {"boxes": 1,
                                                                                                 "scores": 0}
    with pytest.raises(ValueError, match="'c'"):
        output_roles(DetectionSpec("ssd", outputs={"boxes": "c"}), DECODERS.get("ssd"), ["a", "b"],
                     [[1, 5, 4], [1, 5, 3]], None)
    with pytest.raises(ValueError, match="needs outputs for scores"):
        output_roles(DetectionSpec("ssd"), DECODERS.get("ssd"), ["boxes"], [[1, 5, 4]], None)


def test_flat_nms_outputs_are_split_by_batch_index_and_padded_to_the_batch():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 2, 2]], np.float32)
    outputs = [boxes, np.array([0.5, 0.9, 0.7], np.float32), np.array([1, 0, 2]), np.array([1, 1, 0])]
    spec = DetectionSpec("nms", outputs={"boxes": "b", "scores": "s", "labels": "l", "batch_index": "i"})
    per_image = decode(outputs, ["b", "s", "l", "i"], spec, (32, 32), batch_size=3)
    assert [scores.tolist() for _, scores, _ in per_image] == [[pytest.approx(0.7)],
                                                               [pytest.approx(0.9), pytest.approx(0.5)], []]


# -- specs ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fields, problem", [
    ({"decoder": "yolov3"}, ("decoder", "must be one of nms, ssd, yolov2_region, yolov5, yolov8")),
    ({"decoder": "yolov2_region"}, ("anchors", "yolov2_region needs anchors: (w, h) per anchor, in grid cells")),
    ({"decoder": "yolov2_region", "anchors": [[1, 2, 3]]},
     ("anchors", "must be a list of (w, h) pairs of finite numbers, sizes > 0")),
    ({"decoder": "ssd", "anchors": [[0.5, 0.5, 0, 0.1]]},
     ("anchors", "must be a list of [cx, cy, w, h] priors of finite numbers, sizes > 0")),
    ({"decoder": "yolov5", "anchors": [[1, 1]]},
     ("anchors", "do not apply to yolov5 (only yolov2_region anchors and ssd priors)")),
    ({"decoder": "yolov8", "conf_threshold": 1.5}, ("conf_threshold", "must be a number from 0 to below 1")),
    ({"decoder": "yolov8", "iou_threshold": 0}, ("iou_threshold", "must be a number above 0, at most 1")),
    ({"decoder": "yolov8", "max_detections": 0}, ("max_detections", "must be an integer of at least 1")),
    ({"decoder": "nms", "box_format": "xywh"}, ("box_format", "must be one of xyxy, yxyx, cxcywh")),
    ({"decoder": "yolov5", "box_format": "xyxy"}, ("box_format", "applies to ssd without priors and to nms only")),
    ({"decoder": "ssd", "scores": "logits"}, ("scores", "must be one of probabilities, softmax, sigmoid")),
    ({"decoder": "nms", "background": True}, ("background", "is true or false, and applies to ssd only")),
    ({"decoder": "ssd", "label_offset": 1}, ("label_offset", "applies to nms only")),
    ({"decoder": "ssd", "variances": [0.1]}, ("variances", "must be two numbers above 0: [centre, size]")),
    ({"decoder": "nms", "class_names": []}, ("class_names", "must be a non-empty list of names")),
    ({"decoder": "nms", "outputs": {"boxes": "a", "priors": "b"}},
     ("outputs", "unknown role(s) priors; nms has boxes, scores, labels, count, batch_index")),
])
def test_spec_problems_name_the_field(fields, problem):
    assert DetectionSpec.from_dict(fields).problems() == [problem]


def test_spec_round_trips_and_refuses_unknown_keys():
    spec = FIXTURES["ssd_priors"]().spec
    assert DetectionSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ValueError, match="unknown detection spec key.*: iou, nms_threshold"):
        DetectionSpec.from_dict({"decoder": "nms", "nms_threshold": 0.5, "iou": 0.5})
    assert sorted(DECODERS.names()) == ["nms", "ssd", "yolov2_region", "yolov5", "yolov8"]


# -- back to the original image ------------------------------------------------------------------------------------
@pytest.mark.parametrize("resize", ["letterbox", "plain"])
def test_placement_maps_boxes_back_to_the_original_image(resize):
    """A white rectangle drawn at a known place in a 200x100 image, found in the model input, mapped back."""
    image = Image.new("RGB", (200, 100))
    ImageDraw.Draw(image).rectangle([40, 30, 119, 69], fill=(255, 255, 255))  # covers x 40-120, y 30-70
    values, placement = Preprocess(size=list(INPUT_HW), resize=resize, pad_value=0).image(image)
    ys, xs = np.nonzero(values[0] > 0.5)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=np.float32)
    # A pixel-wide tolerance per input pixel: bilinear resizing blurs the rectangle's edges.
    np.testing.assert_allclose(placement.to_original(found)[0], [40, 30, 120, 70],
                               atol=1 / min(placement.scale_x, placement.scale_y))


def test_to_original_undoes_scale_and_padding_and_clips():
    placement = Placement((200, 100), scale_x=0.64, scale_y=0.64, pad_x=0, pad_y=16)
    boxes = np.array([[12.8, 35.2, 64, 60.8], [-5, 0, 140, 120]])
    np.testing.assert_allclose(placement.to_original(boxes), [[20, 30, 100, 70], [0, 0, 200, 100]])
    assert placement.to_original(np.zeros((0, 4))).shape == (0, 4)


# -- graph_nms -----------------------------------------------------------------------------------------------------
def _same_detections(mine: list, theirs: list) -> None:
    assert len(mine) == len(theirs)
    for (boxes, scores, labels), (graph_boxes, graph_scores, graph_labels) in zip(mine, theirs, strict=True):
        assert labels.tolist() == graph_labels.tolist()
        np.testing.assert_allclose(graph_boxes, boxes, rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(graph_scores, scores, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("decoder, few", [("yolov2_region", 0.7), ("yolov5", 0.4), ("yolov8", 0.9)])
@pytest.mark.parametrize("many", [True, False])
def test_graph_nms_gives_the_numpy_decoders_detections(decoder, few, many):
    """Many: every image has more than max_detections candidates. Few: fewer, and one image may have none."""
    model, spec = live_model(decoder)
    spec.conf_threshold, spec.max_detections = (0.05, 20) if many else (few, 100)
    images = _images(3)
    raw, names = _run(model, images)
    appended = with_nms(onnx.load_from_string(model), spec, INPUT_HW, list(raw[0].shape)).SerializeToString()
    outputs, graph_names = _run(appended, images)
    assert graph_names == ["boxes", "scores", "labels", "batch_index"]
    assert [o.dtype for o in outputs] == [np.float32, np.float32, np.int64, np.int64]
    mine = decode(raw, names, spec, INPUT_HW)
    assert 3 <= sum(len(scores) for _, scores, _ in mine) <= 3 * spec.max_detections
    _same_detections(mine, decode(outputs, graph_names, nms_spec(spec), INPUT_HW, batch_size=3))


def test_graph_nms_on_a_qdq_int8_model(tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{INPUT_NAME: _images(1, seed)} for seed in range(4)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    model, spec = live_model("yolov2_region")
    (tmp_path / "float.onnx").write_bytes(model)
    quantize_static(str(tmp_path / "float.onnx"), str(tmp_path / "int8.onnx"), Images(),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    quantized = (tmp_path / "int8.onnx").read_bytes()
    assert "DequantizeLinear" in {node.op_type for node in onnx.load_from_string(quantized).graph.node}
    images = _images(2)
    raw, names = _run(quantized, images)
    appended = with_nms(onnx.load_from_string(quantized), spec, INPUT_HW, list(raw[0].shape)).SerializeToString()
    outputs, graph_names = _run(appended, images)
    _same_detections(decode(raw, names, spec, INPUT_HW),
                     decode(outputs, graph_names, nms_spec(spec), INPUT_HW, batch_size=2))


class _StoreContext:
    """What the step uses of BuildContext when the recipe asks for no scoring: the store, put_onnx (BuildContext's
    own) and the recipe's `benchmark.accuracy: none`."""

    put_onnx = BuildContext.put_onnx
    recipe = SimpleNamespace(benchmark=SimpleNamespace(accuracy="none"))

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store


def test_graph_nms_step_stores_the_new_model_and_its_nms_spec(tmp_path):
    model, spec = live_model("yolov5")
    old = onnx.load_from_string(model)
    old.opset_import[0].version = 10  # Conv, Reshape, Transpose, Sigmoid, Mul: the same at 10
    store = ArtifactStore(tmp_path)
    model_input = {"name": INPUT_NAME, "shape": [1, 3, *INPUT_HW], "dtype": "float32"}
    parent = OnnxNode(store.put(old.SerializeToString(), ".onnx"), {"input": model_input})
    node = STEPS.get("graph_nms").run(_StoreContext(store), parent, {"detection": spec.to_dict()})
    assert DetectionSpec.from_dict(node.meta["detection"]) == nms_spec(spec)
    assert node.meta["host_accuracy"] is None  # not scored: the recipe says accuracy none
    assert node.meta["opsets"][""] >= 11  # converted: NonMaxSuppression's TopK and ScatterND need 11
    images = _images(2)
    raw, names = _run(model, images)
    outputs, graph_names = _run(store.path(node.sha256, ".onnx").read_bytes(), images)
    _same_detections(decode(raw, names, spec, INPUT_HW),
                     decode(outputs, graph_names, nms_spec(spec), INPUT_HW, batch_size=2))
    assert raw_output_shape(model, model_input, None) == [1, 192, 5 + CLASSES]
    with pytest.raises(BuildError, match="decoder 'ssd' is not supported"):
        STEPS.get("graph_nms").run(_StoreContext(store), parent, {"detection": {"decoder": "ssd"}})
    with pytest.raises(BuildError, match=r"detection.anchors must be a list of \(w, h\) pairs"):
        STEPS.get("graph_nms").run(_StoreContext(store), parent, {"detection": {"decoder": "yolov2_region",
                                                                                "anchors": [[1, 2, 3]]}})


# -- the board's Python: onnxruntime 1.16, numpy 1.24 --------------------------------------------------------------
BOARD_SCRIPT = """
import json, sys
import numpy as np, onnxruntime as ort
from agent.detection.decoders import DetectionSpec, decode
cases = json.load(open(sys.argv[1]))
found = {}
for case in cases:
    session = ort.InferenceSession(case["model"], providers=["CPUExecutionProvider"])
    images = np.load(case["images"])
    outputs = session.run(None, {session.get_inputs()[0].name: images})
    per_image = decode(outputs, [o.name for o in session.get_outputs()], DetectionSpec.from_dict(case["spec"]),
                       tuple(case["input_hw"]), batch_size=len(images))
    for index, (boxes, scores, labels) in enumerate(per_image):
        found["%s/%d/boxes" % (case["name"], index)] = boxes
        found["%s/%d/scores" % (case["name"], index)] = scores
        found["%s/%d/labels" % (case["name"], index)] = labels
np.savez(sys.argv[2], **found)
print(ort.__version__, np.__version__)
"""


@pytest.mark.skipif(not BOARD_PYTHON.exists(), reason="needs the onnxruntime 1.16 board venv (`make test` makes it)")
def test_every_fixture_decodes_the_same_on_the_boards_runtime(tmp_path):
    cases, mine = [], {}
    live = {f"graph_nms_{decoder}": live_model(decoder) for decoder in ("yolov2_region", "yolov5", "yolov8")}
    models = {name: (make().model, make().spec) for name, make in FIXTURES.items()}
    for name, (model, spec) in live.items():
        raw_shape = list(_run(model, _images(1))[0][0].shape)
        models[name] = (with_nms(onnx.load_from_string(model), spec, INPUT_HW, raw_shape).SerializeToString(),
                        nms_spec(spec))
        models[name.replace("graph_nms", "numpy_nms")] = (model, spec)  # many candidates through agent's NMS
    for name, (model, spec) in models.items():
        images = _images(1 if name == "torchvision_nms" else 2)
        (tmp_path / f"{name}.onnx").write_bytes(model)
        np.save(tmp_path / f"{name}.npy", images)
        cases.append({"name": name, "model": str(tmp_path / f"{name}.onnx"), "images": str(tmp_path / f"{name}.npy"),
                      "spec": spec.to_dict(), "input_hw": list(INPUT_HW)})
        outputs, names = _run(model, images)
        for index, found in enumerate(decode(outputs, names, spec, INPUT_HW, batch_size=len(images))):
            mine.update({f"{name}/{index}/{part}": value
                         for part, value in zip(("boxes", "scores", "labels"), found, strict=True)})
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    done = subprocess.run([str(BOARD_PYTHON), "-c", BOARD_SCRIPT, str(tmp_path / "cases.json"),
                           str(tmp_path / "board.npz")], capture_output=True, text=True, cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1.16.3", "1.24.4"]
    board = np.load(tmp_path / "board.npz")
    assert sorted(board.files) == sorted(mine)
    for key, value in mine.items():
        assert board[key].dtype == value.dtype, key
        np.testing.assert_allclose(board[key], value, rtol=1e-6, atol=1e-4, err_msg=key)
    assert sum(len(mine[f"{name}/0/scores"]) for name in live) > 30
    np.testing.assert_allclose(board["tf_nms/1/boxes"], EXPECTED[0], atol=1e-3)
    assert board["tf_nms/1/labels"].tolist() == EXPECTED[2].tolist()
