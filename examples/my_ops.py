"""Two candidate ops of your own, with no edit of dartsnas: import this module (``--ops-module
examples/my_ops.py`` on the command line, or ``import my_ops`` in Python) and name them in ``--primitives``.

The contract: built from (C, stride, affine); takes and returns C channels; divides height and width by stride;
``affine`` is False during search (BatchNorm without learnable scale and shift) and True in the trained network.
"""
import torch.nn as nn

from dartsnas import register_op


@register_op("conv_3x3_gelu", description="3x3 conv, BN, GELU (example user op)")
def conv_3x3_gelu(C: int, stride: int, affine: bool) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(C, C, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(C, affine=affine),
        nn.GELU(),
    )


class GroupedBottleneck(nn.Module):
    """ReLU, 3x3 grouped conv (groups of 2 channels), 1x1 conv, BN (example user op)"""

    def __init__(self, C: int, stride: int, affine: bool):
        super().__init__()
        groups = C // 2 if C % 2 == 0 else 1
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(C, C, 3, stride=stride, padding=1, groups=groups, bias=False),
            nn.Conv2d(C, C, 1, bias=False),
            nn.BatchNorm2d(C, affine=affine),
        )

    def forward(self, x):
        return self.body(x)


register_op("grouped_bottleneck_3x3", GroupedBottleneck)
