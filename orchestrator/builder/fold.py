"""Fold every BatchNorm into the convolution that feeds it (torch.nn.utils.fusion.fuse_conv_bn_eval).

The conv -> BatchNorm pairs are found by tracing the model with torch.fx, not
by module registration order: order says nothing about data flow (a block may
register a BatchNorm that normalizes a sum, or a conv whose output also feeds
a shortcut), and folding such a pair would silently change the function. A
pair is folded only when the BatchNorm's sole input is the conv's output and
the conv's output goes nowhere else. The fused conv (with a bias) takes the
conv's place and the BatchNorm becomes nn.Identity, so the model keeps its
class, its layer names and its keep_outputs().
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from orchestrator.builder import STEPS, TorchNode
from orchestrator.errors import BuildError, first_line

if TYPE_CHECKING:
    from torch import nn


def conv_bn_pairs(model: nn.Module) -> tuple[list[tuple[str, str]], int]:
    """(conv name, BatchNorm name) of every foldable pair, in forward order, and the number of BatchNorms
    that cannot be folded (their input is not a convolution used by them alone)."""
    import torch.fx
    from torch import nn

    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:  # fx raises TraceError, TypeError, ... for data-dependent control flow
        raise BuildError(f"fold_bn: cannot trace {type(model).__name__} with torch.fx to find conv -> BatchNorm "
                         f"pairs: {first_line(exc)}") from exc
    modules = dict(model.named_modules())
    convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    pairs, unfoldable = [], 0
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(str(node.target)), norms):
            continue
        source = node.args[0] if node.args else None
        foldable = (isinstance(source, torch.fx.Node) and source.op == "call_module"
                    and isinstance(modules.get(str(source.target)), convs) and len(source.users) == 1)
        if foldable and isinstance(source, torch.fx.Node):
            pairs.append((str(source.target), str(node.target)))
        else:
            unfoldable += 1
    return pairs, unfoldable


def fold_batchnorm(model: nn.Module) -> tuple[int, int]:
    """Fold every foldable BatchNorm into its conv, in place (model in eval mode); (folded, left unfolded)."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    pairs, unfoldable = conv_bn_pairs(model)
    for conv_name, bn_name in pairs:
        conv, norm = model.get_submodule(conv_name), model.get_submodule(bn_name)
        if not isinstance(conv, nn.modules.conv._ConvNd) or not isinstance(norm, nn.modules.batchnorm._BatchNorm):
            raise BuildError(f"fold_bn: {conv_name} -> {bn_name} is not a convolution and a BatchNorm")
        fused = fuse_conv_bn_eval(conv, norm)
        model.set_submodule(conv_name, fused)
        model.set_submodule(bn_name, nn.Identity())
    return len(pairs), unfoldable


class FoldBatchNormStep:
    """Fold BatchNorm layers into their convolutions: fewer nodes, same function (to float rounding)."""

    name = "fold_bn"
    version = "1"
    produces = "torch"
    checkpoint = False  # deterministic and quick from its parent; the folded layout is not the recipe's model

    def run(self, ctx: Any, parent: TorchNode, params: dict[str, Any]) -> TorchNode:
        model = copy.deepcopy(parent.model)
        folded, unfoldable = fold_batchnorm(model)
        return TorchNode(model.eval(), {"bn_folded": folded, "bn_unfolded": unfoldable})


STEPS.register(FoldBatchNormStep.name)(FoldBatchNormStep())
