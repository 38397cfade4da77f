"""Malformed recipes: every one gets a single error naming the file, the line and the key.

Each case is a whole recipe with `#<-` on the line the error must point at.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.errors import RecipeError
from orchestrator.recipes import check_recipe, load_recipe

GOOD = """\
name: study
model: {arch: digits_cnn}
dataset: {name: digits, image_size: 32}
train: {epochs: 2, lr: 0.05}
variants:
  prune: {method: l1, ratio: [0, 0.5], finetune_epochs: [0, 1]}
  quantize: [none, int8_static]
benchmark:
  measure: {min_iters: 100, min_s: 1, max_s: 10}
  threads: [1]
"""


def case(old: str, new: str) -> str:
    """GOOD with `old` replaced by `new`, the line holding new's first line marked (unless `new` marks one)."""
    assert old in GOOD
    text = GOOD.replace(old, new)
    if "#<-" in new:
        return text
    first = new.splitlines()[0]
    return "\n".join(line + "  #<-" if first in line else line for line in text.splitlines()) + "\n"


CASES = [
    ("ratio out of range", case("ratio: [0, 0.5]", "ratio: [0, 0.5, 1.3]"),
     "variants.prune.ratio[2]", "1.3 is not in [0, 1)"),
    ("negative epochs", case("train: {epochs: 2, lr: 0.05}", "train: {epochs: -1, lr: 0.05}"),
     "train.epochs", "greater than or equal to 0"),
    ("epochs not a number", case("train: {epochs: 2, lr: 0.05}", "train: {epochs: two, lr: 0.05}"),
     "train.epochs", "valid integer"),
    ("zero learning rate", case("train: {epochs: 2, lr: 0.05}", "train: {epochs: 2, lr: 0}"),
     "train.lr", "greater than 0"),
    ("unknown top-level key", GOOD + "benchmarks: {}  #<-\n", "benchmarks", "unknown key"),
    ("misspelt prune key", case("prune: {method: l1, ratio: [0, 0.5], finetune_epochs: [0, 1]}",
                                "prune: {method: l1, ratios: [0, 0.5], finetune_epochs: [0, 1]}"),
     "variants.prune.ratios", "unknown key"),
    ("unknown model", case("model: {arch: digits_cnn}", "model: {arch: resnet9000}"),
     "model.arch", "unknown model 'resnet9000'"),
    ("model option that does not exist", case("model: {arch: digits_cnn}",
                                              "model: {arch: digits_cnn, options: {depth: 3}}"),
     "model.options", "options do not fit model digits_cnn"),
    ("two model sources", case("model: {arch: digits_cnn}", "model: {arch: digits_cnn, onnx: m.onnx}"),
     "model", "exactly one of"),
    ("unknown dataset", case("dataset: {name: digits, image_size: 32}", "dataset: {name: mnist, image_size: 32}"),
     "dataset.name", "unknown dataset 'mnist'"),
    ("unknown VOC class", case("dataset: {name: digits, image_size: 32}",
                               "dataset: {name: voc, root: d, classes: [person, dragon]}"),
     "dataset.classes[1]", "unknown VOC class 'dragon'"),
    ("image size zero", case("dataset: {name: digits, image_size: 32}", "dataset: {name: digits, image_size: 0}"),
     "dataset.image_size", "greater than 0"),
    ("unknown quantization preset", case("quantize: [none, int8_static]", "quantize: [none, int4_magic]"),
     "variants.quantize[1]", "unknown quantization 'int4_magic'"),
    ("bad quantization mapping", case("quantize: [none, int8_static]", "quantize: [none, {mode: static, format: qdx}]"),
     "variants.quantize[1].format", "'qdq' or 'qoperator'"),
    ("measurement of zero iterations", case("measure: {min_iters: 100, min_s: 1, max_s: 10}",
                                            "measure: {min_iters: 0, min_s: 1, max_s: 10}"),
     "benchmark.measure.min_iters", "greater than or equal to 1"),
    ("zero threads", case("threads: [1]", "threads: [1, 0]"), "benchmark.threads[1]", "greater than or equal to 1"),
    ("unknown accuracy mode", case("threads: [1]", "threads: [1]\n  accuracy: maybe  #<-"),
     "benchmark.accuracy", "'full_test_set' or 'none'"),
    ("recipe name with a space", case("name: study", "name: my study"), "name", "should match pattern"),
    ("duplicate key", GOOD + "name: again  #<-\n", "name", "duplicate key"),
    ("pruning an ONNX source", case("model: {arch: digits_cnn}", "model: {onnx: user.onnx}").replace(
        "prune: {method", "prune: {method"), "variants.prune", "needs a torch model"),
    ("required section missing", "name: study  #<-\nmodel: {arch: digits_cnn}\n", "dataset",
     "required key is missing"),
]


@pytest.mark.parametrize("text, key, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_recipe_names_file_line_and_key(tmp_path: Path, text: str, key: str, fragment: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as caught:
        check_recipe(path)
    message = str(caught.value)
    lines = text.splitlines()
    marked = [number for number, line in enumerate(lines, 1) if "#<-" in line]
    if key == "variants.prune":  # the conflict is reported at the prune section
        marked = [number for number, line in enumerate(lines, 1) if "prune:" in line]
    assert marked, "the case marks its line"
    assert caught.value.line == marked[0], message
    assert re.match(rf"^{re.escape(str(path))}:{marked[0]}:\d+ {re.escape(key)}: ", message), message
    assert fragment in message
    assert "\n" not in message


def test_there_are_at_least_fifteen_distinct_cases():
    assert len({c[0] for c in CASES}) == len(CASES) >= 15
    assert len({c[1] for c in CASES}) == len(CASES)


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("  quantize: [none, int8_static]", "  quantize: [none, int8_static\n  x: 1"))
    with pytest.raises(RecipeError, match=rf"^{re.escape(str(path))}:\d+:\d+: YAML syntax error"):
        load_recipe(path)
