"""The model zoo with real torch: shapes, pruning and ONNX export, darknet and state_dict weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch_pruning as tp
from torch import nn

from orchestrator.builder.export import export_bytes
from orchestrator.errors import UserError, WeightsError
from orchestrator.models import MODELS
from orchestrator.models.darknet import load_darknet, save_darknet
from orchestrator.models.weights import load_weights

# name -> (factory arguments, input side in pixels, expected output shape); unlisted models: 10 classes, 3x32x32.
CASES: dict[str, tuple[dict[str, Any], int, tuple[int, ...]]] = {
    "digits_cnn": ({"num_classes": 10, "in_channels": 1, "width": 8}, 32, (1, 10)),
    "mobilenet_v1": ({"num_classes": 10, "in_channels": 3}, 32, (1, 10)),
    "mobilenet_v2": ({"num_classes": 10, "in_channels": 3}, 32, (1, 10)),
    "tiny_yolov2": ({"num_classes": 20, "in_channels": 3}, 416, (1, 125, 13, 13)),
}
DEFAULT_CASE: tuple[dict[str, Any], int, tuple[int, ...]] = ({"num_classes": 10, "in_channels": 3}, 32, (1, 10))


def build(name: str, **options: Any) -> tuple[Any, torch.Tensor]:
    """The model `name` in eval mode (its CASES arguments updated by `options`) and a random input for it."""
    arguments, side, _ = CASES.get(name, DEFAULT_CASE)
    arguments = {**arguments, **options}
    model = MODELS.get(name)(**arguments).eval()
    return model, torch.randn(1, arguments["in_channels"], side, side, generator=torch.Generator().manual_seed(0))


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm parameters and running statistics, so that loading them is observable."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                state = module.state_dict()
                size = module.num_features
                state["weight"].copy_(torch.rand(size, generator=generator) + 0.5)
                state["bias"].copy_(torch.randn(size, generator=generator) * 0.1)
                state["running_mean"].copy_(torch.randn(size, generator=generator) * 0.1)
                state["running_var"].copy_(torch.rand(size, generator=generator) + 0.5)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_builds_and_runs(name: str):
    model, x = build(name)
    with torch.no_grad():
        assert tuple(model(x).shape) == CASES.get(name, DEFAULT_CASE)[2]
    assert all(isinstance(layer, nn.Module) for layer in model.keep_outputs())


@pytest.mark.parametrize(("num_classes", "side", "shape"), [(20, 416, (1, 125, 13, 13)), (1, 416, (1, 30, 13, 13)),
                                                           (20, 320, (1, 125, 10, 10))])
def test_tiny_yolov2_output_grid(num_classes: int, side: int, shape: tuple[int, ...]):
    model = MODELS.get("tiny_yolov2")(num_classes=num_classes, in_channels=3).eval()
    with torch.no_grad():
        assert tuple(model(torch.zeros(1, 3, side, side)).shape) == shape
    assert len(model.anchors) == 5 and model.anchors[0] == (1.08, 1.19)
    assert model.keep_outputs() == [model.head]


@pytest.mark.parametrize(("width", "first", "last"), [(1.0, 32, 1024), (0.5, 16, 512), (0.25, 8, 256), (0.1, 8, 104)])
def test_mobilenet_v1_width_rounds_channels_to_multiples_of_8(width: float, first: int, last: int):
    model = MODELS.get("mobilenet_v1")(num_classes=10, in_channels=3, width=width)
    assert model.features[0][0].out_channels == first
    assert model.classifier.in_features == last


def test_non_positive_width_is_a_user_error():
    with pytest.raises(UserError, match="width=0"):
        MODELS.get("mobilenet_v2")(num_classes=10, in_channels=3, width=0)


def test_mobilenet_v2_strides():
    small, x = build("mobilenet_v2", width=0.25)
    imagenet, _ = build("mobilenet_v2", width=0.25, small_input=False)
    assert tuple(small.features[:-2](x).shape[-2:]) == (4, 4)
    assert tuple(imagenet.features[:-2](torch.zeros(1, 3, 224, 224)).shape[-2:]) == (7, 7)


def prune(model: Any, x: torch.Tensor, ratio: float = 0.5) -> None:
    """Prune `model` in place as orchestrator.builder.prune does."""
    pruner = tp.pruner.MetaPruner(model, x, importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=ratio, ignored_layers=model.keep_outputs())
    pruner.step()


def onnx_output(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(export_bytes(model, x), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "options", "side", "min_macs_drop"), [
    ("mobilenet_v1", {}, 32, 0.6),
    ("mobilenet_v2", {}, 32, 0.5),
    ("tiny_yolov2", {}, 160, 0.6),
    ("tiny_yolov2", {"num_classes": 1}, 160, 0.6),
])
def test_prune_half_then_export_runs_in_onnxruntime(name: str, options: dict[str, Any], side: int,
                                                     min_macs_drop: float):
    model, _ = build(name, **options)
    x = torch.randn(1, 3, side, side)
    randomize_batchnorm(model)
    macs_before, _ = tp.utils.count_ops_and_params(model, x)
    with torch.no_grad():
        shape_before = model(x).shape
    prune(model, x)
    macs_after, _ = tp.utils.count_ops_and_params(model, x)
    assert 1 - macs_after / macs_before >= min_macs_drop
    with torch.no_grad():
        expected = model(x)
    assert expected.shape == shape_before
    np.testing.assert_allclose(onnx_output(model, x), expected.numpy(), rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_mobilenet_v2_residual_blocks_are_pruned_together():
    model, x = build("mobilenet_v2", width=0.5)
    residual_blocks = [block for block in model.features if getattr(block, "residual", False)]
    before = [block.block[-2].out_channels for block in residual_blocks]
    prune(model, x)
    after = [block.block[-2].out_channels for block in residual_blocks]
    assert all(pruned < original for pruned, original in zip(after, before, strict=True))
    with torch.no_grad():
        assert tuple(model(x).shape) == (1, 10)


def num_darknet_floats(model: nn.Module) -> int:
    """Every parameter and BatchNorm running statistic: what a darknet file stores."""
    statistics = sum(2 * module.num_features for module in model.modules() if isinstance(module, nn.BatchNorm2d))
    return sum(parameter.numel() for parameter in model.parameters()) + statistics


@pytest.fixture(scope="module")
def voc_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A randomly initialised 20-class tiny-YOLOv2 and its darknet .weights file."""
    model = MODELS.get("tiny_yolov2")(num_classes=20, in_channels=3).eval()
    randomize_batchnorm(model)
    path = tmp_path_factory.mktemp("darknet") / "tiny-yolo-voc.weights"
    save_darknet(model, path, seen=64_000)
    return model, path


@pytest.mark.slow
def test_darknet_round_trip(voc_weights: tuple[Any, Path]):
    model, path = voc_weights
    assert path.stat().st_size == 20 + 4 * num_darknet_floats(model)
    fresh = MODELS.get("tiny_yolov2")(num_classes=20, in_channels=3).eval()
    load_weights(fresh, path, "darknet")
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


@pytest.mark.slow
def test_darknet_skip_last_loads_everything_but_the_head(voc_weights: tuple[Any, Path]):
    model, path = voc_weights
    person = MODELS.get("tiny_yolov2")(num_classes=1, in_channels=3).eval()
    fresh_head = {key: value.clone() for key, value in person.head.state_dict().items()}
    load_darknet(person, path, skip_last=True)
    for key, value in person.features.state_dict().items():
        torch.testing.assert_close(value, model.features.state_dict()[key], rtol=0, atol=0)
    for key, value in person.head.state_dict().items():
        torch.testing.assert_close(value, fresh_head[key], rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize(("damage", "message"), [
    (lambda data: data[:-100], "floats after its 20-byte header but the model needs"),
    (lambda data: data[:20 + 4 * 500], "they run out in conv 2 of 9, 'features.2.0'"),
    (lambda data: data + b"junk", "4 bytes left over"),
    (lambda data: data[:10], "header truncated"),
])
def test_damaged_darknet_file_is_refused_naming_the_file(voc_weights: tuple[Any, Path], tmp_path: Path,
                                                        damage: Any, message: str):
    _, path = voc_weights
    damaged = tmp_path / "damaged.weights"
    damaged.write_bytes(damage(path.read_bytes()))
    fresh = MODELS.get("tiny_yolov2")(num_classes=20, in_channels=3)
    with pytest.raises(WeightsError, match=message) as caught:
        load_darknet(fresh, damaged)
    assert str(caught.value).startswith(str(damaged)) and "\n" not in str(caught.value)


def small_darknet_model() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.LeakyReLU(0.1), nn.Conv2d(4, 2, 1))


def test_darknet_old_header_is_16_bytes(tmp_path: Path):
    model = small_darknet_model().eval()
    randomize_batchnorm(model)
    path = tmp_path / "old.weights"
    save_darknet(model, path, version=(0, 1, 0), seen=12)
    assert path.stat().st_size == 16 + 4 * num_darknet_floats(model)
    fresh = small_darknet_model().eval()
    load_darknet(fresh, path)
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


def test_darknet_refuses_missing_files_and_layers_it_cannot_store(tmp_path: Path):
    with pytest.raises(WeightsError, match="no such weights file"):
        load_darknet(small_darknet_model(), tmp_path / "absent.weights")
    with pytest.raises(WeightsError, match=r"'classifier' \(Linear\) has no darknet form"):
        save_darknet(MODELS.get("mobilenet_v1")(num_classes=10, in_channels=3, width=0.25), tmp_path / "v1.weights")


def test_state_dict_round_trip_with_checkpoint_wrapping(tmp_path: Path):
    model, x = build("mobilenet_v2", width=0.25)
    randomize_batchnorm(model)
    plain, wrapped = tmp_path / "plain.pt", tmp_path / "wrapped.pt"
    torch.save(model.state_dict(), plain)
    torch.save({"epoch": 3, "model_state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, wrapped)
    for path in (plain, wrapped):
        fresh, _ = build("mobilenet_v2", width=0.25)
        load_weights(fresh, path, "state_dict")
        with torch.no_grad():
            torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


def test_state_dict_skip_head_keeps_the_fresh_classifier(tmp_path: Path):
    path = tmp_path / "ten.pt"
    ten, _ = build("mobilenet_v1", width=0.25)
    torch.save(ten.state_dict(), path)
    two, _ = build("mobilenet_v1", width=0.25, num_classes=2)
    fresh_classifier = two.classifier.weight.clone()
    with pytest.raises(WeightsError, match=r"shape mismatch: classifier\.weight \(10, 256\) vs model \(2, 256\)"):
        load_weights(two, path, "state_dict")
    load_weights(two, path, "state_dict", skip_head=True)
    torch.testing.assert_close(two.classifier.weight, fresh_classifier, rtol=0, atol=0)
    torch.testing.assert_close(two.features[0][0].weight, ten.features[0][0].weight, rtol=0, atol=0)


@pytest.mark.parametrize(("content", "message"), [
    (lambda model: model.state_dict() | {"extra.weight": torch.zeros(1)}, "unexpected keys: extra.weight"),
    (lambda model: {k: v for k, v in model.state_dict().items() if not k.startswith("features.0.")},
     r"missing keys: features\.0\.0\.weight, features\.0\.1\.weight, .* and 1 more"),
    (lambda model: model, "holds more than tensors"),
    (lambda model: [1, 2, 3], "not a state_dict"),
])
def test_state_dict_that_does_not_fit_is_refused(tmp_path: Path, content: Any, message: str):
    model, _ = build("mobilenet_v1", width=0.25)
    path = tmp_path / "bad.pt"
    torch.save(content(model), path)
    with pytest.raises(WeightsError, match=message) as caught:
        load_weights(model, path, "state_dict")
    assert str(caught.value).startswith(str(path))


def test_files_that_are_not_torch_files_are_refused(tmp_path: Path):
    model, _ = build("mobilenet_v1", width=0.25)
    for data in (b"", b"these are not weights\n", b"PK\x03\x04 a broken zip"):
        path = tmp_path / "junk.pt"
        path.write_bytes(data)
        with pytest.raises(WeightsError, match="not a torch weights file"):
            load_weights(model, path, "state_dict")
    with pytest.raises(WeightsError, match="no such weights file"):
        load_weights(model, tmp_path / "absent.pt", "state_dict")
    with pytest.raises(WeightsError, match="unknown weights format 'onnx'"):
        load_weights(model, path, "onnx")  # type: ignore[arg-type]


# -- the YOLOv2 region layer and VOC average precision ---------------------------------------------------------

def encoded_output(box: np.ndarray, size: int, grid: int, num_classes: int = 1) -> torch.Tensor:
    """A raw tiny-YOLOv2 output map whose one confident prediction is exactly `box` (x1, y1, x2, y2 pixels)."""
    from orchestrator.models.region import _best_anchor
    from orchestrator.models.tiny_yolov2 import VOC_ANCHORS

    stride = size / grid
    fields = torch.full((1, len(VOC_ANCHORS), 5 + num_classes, grid, grid), -10.0)
    centre_x, centre_y = (box[0] + box[2]) / 2 / stride, (box[1] + box[3]) / 2 / stride
    width, height = (box[2] - box[0]) / stride, (box[3] - box[1]) / stride
    anchor = _best_anchor(torch.tensor(VOC_ANCHORS), width, height)
    cell_x, cell_y = int(centre_x), int(centre_y)
    logit = lambda p: float(np.log(p / (1 - p)))  # noqa: E731
    fields[0, anchor, :5, cell_y, cell_x] = torch.tensor([
        logit(centre_x - cell_x), logit(centre_y - cell_y), float(np.log(width / VOC_ANCHORS[anchor][0])),
        float(np.log(height / VOC_ANCHORS[anchor][1])), 10.0])
    fields[0, anchor, 5:, cell_y, cell_x] = 0.0
    return fields.view(1, -1, grid, grid)


def test_region_layer_decodes_what_its_loss_calls_perfect():
    """The board's yolov2_region decoder finds exactly the box the region loss calls a perfect prediction."""
    from agent.detection.decoders import DetectionSpec, decode
    from agent.detection.metrics import Boxes, voc_eval
    from orchestrator.models.region import region_loss
    from orchestrator.models.tiny_yolov2 import VOC_ANCHORS

    truth = np.array([[0, 40.0, 30.0, 90.0, 100.0, 0]], np.float32)
    output = encoded_output(truth[0, 1:5], size=128, grid=4)
    assert float(region_loss(output, [truth], VOC_ANCHORS, 128)) < 1e-5
    spec = DetectionSpec("yolov2_region", anchors=[list(anchor) for anchor in VOC_ANCHORS])
    ((boxes, scores, labels),) = decode([output.numpy()], ["output"], spec, (128, 128))
    assert scores[0] > 0.99 and labels[0] == 0 and (scores[1:] < 0.01).all()
    np.testing.assert_allclose(boxes[0], truth[0, 1:5], atol=1e-3)
    xywh = lambda b: np.array([[b[0], b[1], b[2] - b[0], b[3] - b[1]]])  # noqa: E731
    found = Boxes(image_id=np.array([0]), category_id=np.array([0]), xywh=xywh(boxes[0]), score=scores[:1])
    expected = Boxes(image_id=np.array([0]), category_id=np.array([0]), xywh=xywh(truth[0, 1:5]))
    assert voc_eval(expected, found, [0], eleven_point=False)[0] == pytest.approx(1.0)
    shifted = encoded_output(truth[0, 1:5] + 8, size=128, grid=4)  # a worse prediction costs more
    assert float(region_loss(shifted, [truth], VOC_ANCHORS, 128)) > 0.01


def test_voc_ap_is_the_all_point_area_and_ignores_difficult_objects():
    from agent.detection.metrics import Boxes, voc_eval

    def boxes(rows: list[list[float]]) -> np.ndarray:
        return np.array([[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in rows], np.float64)

    truth = Boxes(image_id=np.zeros(3, np.int64), category_id=np.zeros(3, np.int64),
                  xywh=boxes([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]]),
                  difficult=np.array([False, False, True]))
    found = Boxes(image_id=np.zeros(5, np.int64), category_id=np.zeros(5, np.int64),
                  xywh=boxes([[0, 0, 10, 10], [40, 40, 50, 50], [60, 60, 70, 70], [0, 0, 10, 10], [20, 20, 30, 30]]),
                  score=np.array([.9, .85, .8, .75, .7]))
    # hit, difficult (ignored), miss, duplicate (a miss), hit: precision 1 at recall 0.5, 0.5 at recall 1
    assert voc_eval(truth, found, [0, 1], eleven_point=False) == {0: pytest.approx(0.5 * 1 + 0.5 * 0.5), 1: None}
    nothing = Boxes(image_id=np.zeros(0, np.int64), category_id=np.zeros(0, np.int64), xywh=np.zeros((0, 4)),
                    score=np.zeros(0))
    assert voc_eval(truth, nothing, [0], eleven_point=False)[0] == 0.0


@pytest.mark.slow
def test_region_loss_retrains_a_tiny_yolov2_head():
    from orchestrator.builder.train import fit
    from orchestrator.models.region import region_loss

    model = MODELS.get("tiny_yolov2")(num_classes=1, in_channels=3)
    rng = np.random.default_rng(0)
    images = rng.random((8, 3, 64, 64), dtype=np.float32)
    truths = [np.array([[0, 8 + i, 10, 40 + i, 50, 0]], np.float32) for i in range(8)]

    def loss(outputs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return region_loss(outputs, [truths[i] for i in index.tolist()], model.anchors, 64)

    with torch.no_grad():
        before = float(loss(model.eval()(torch.from_numpy(images)), torch.arange(8)))
    fit(model, images, truths, epochs=30, lr=0.01, batch_size=4, seed=0, loss=loss, trainable=["head"])
    with torch.no_grad():
        after = float(loss(model(torch.from_numpy(images)), torch.arange(8)))
    assert after < 0.5 * before
