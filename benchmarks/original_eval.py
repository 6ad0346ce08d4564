"""An original-style DARTS training network, for the benchmark's training comparison only (not part of dartsnas).

Written here from the DARTS paper's description of its evaluation network and of how the 2018 code builds it:
a 3x3 stem to 3C channels, cells whose two inputs are preprocessed (a factorised reduction after a reduction
cell, else ReLU-conv1x1-BN), each node the sum of two ops on earlier states, drop path on every op that is not
an identity, the cell output the concatenation of the genotype's ``concat`` states, reduction cells at 1/3 and
2/3 of the depth, an auxiliary head after the 2/3 cell (8x8 maps: ReLU, 5x5 average pool stride 3, 1x1 conv to
128, BN, ReLU, 2x2 conv to 768, BN, ReLU, linear), global average pooling and a linear classifier. Everything in
NCHW with plain autograd, as the 2018 code runs it. Ops with BatchNorm use affine BN; pools have none.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in, c_out, k, stride, pad):
        super().__init__(nn.ReLU(), nn.Conv2d(c_in, c_out, k, stride, pad, bias=False), nn.BatchNorm2d(c_out))


class DilConv(nn.Sequential):
    def __init__(self, c_in, c_out, k, stride, pad, dil):
        super().__init__(nn.ReLU(), nn.Conv2d(c_in, c_in, k, stride, pad, dilation=dil, groups=c_in, bias=False),
                         nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))


class SepConv(nn.Sequential):
    def __init__(self, c_in, c_out, k, stride, pad):
        super().__init__(DilConv(c_in, c_in, k, stride, pad, 1), DilConv(c_in, c_out, k, 1, pad, 1))


class FactorizedReduce(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        x = F.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


def make_op(name: str, c: int, stride: int) -> nn.Module:
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c)
    if name == "max_pool_3x3":
        return nn.MaxPool2d(3, stride, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride, 1, count_include_pad=False)
    k = int(name[-1])
    if name.startswith("sep_conv"):
        return SepConv(c, c, k, stride, k // 2)
    if name.startswith("dil_conv"):
        return DilConv(c, c, k, stride, k - 1, 2)
    raise ValueError(f"op {name} is not in the original DARTS set")


def drop_path(x: torch.Tensor, p: float) -> torch.Tensor:
    keep = 1.0 - p
    mask = torch.empty(x.size(0), 1, 1, 1, device=x.device).bernoulli_(keep)
    return x.div(keep).mul(mask)


class Cell(nn.Module):
    def __init__(self, pairs, concat, c_pp, c_p, c, reduction, reduction_prev):
        super().__init__()
        self.pre0 = FactorizedReduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0)
        self.pre1 = ReLUConvBN(c_p, c, 1, 1, 0)
        self.ops = nn.ModuleList(make_op(op, c, 2 if reduction and src < 2 else 1) for op, src in pairs)
        self.sources = [src for _, src in pairs]
        self.concat = list(concat)

    def forward(self, s0, s1, drop_prob):
        states = [self.pre0(s0), self.pre1(s1)]
        for i in range(len(self.ops) // 2):
            node = 0
            for j in (2 * i, 2 * i + 1):
                h = self.ops[j](states[self.sources[j]])
                if self.training and drop_prob > 0 and not isinstance(self.ops[j], nn.Identity):
                    h = drop_path(h, drop_prob)
                node = node + h
            states.append(node)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    def __init__(self, c, num_classes):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True), nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(c, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class NetworkCIFAR(nn.Module):
    """``genotype``: a dartsnas Genotype in the DARTS form (normal and reduce cells of two pairs per node)."""

    def __init__(self, genotype, C: int = 36, num_classes: int = 10, layers: int = 20, auxiliary: bool = True):
        super().__init__()
        self.drop_path_prob = 0.0
        c_curr = 3 * C
        self.stem = nn.Sequential(nn.Conv2d(3, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        self.aux_pos = 2 * layers // 3
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            design = genotype.reduce if reduction else genotype.normal
            pairs = [pair for node in design.nodes for pair in node]
            cell = Cell(pairs, design.concat, c_pp, c_p, c_curr, reduction, reduction_prev)
            reduction_prev = reduction
            self.cells.append(cell)
            c_pp, c_p = c_p, len(design.concat) * c_curr
            if i == self.aux_pos:
                c_aux = c_p
        self.aux = AuxiliaryHead(c_aux, num_classes) if auxiliary else None
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x):
        aux = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_pos and self.aux is not None and self.training:
                aux = self.aux(s1)
        out = F.adaptive_avg_pool2d(s1, 1)
        return self.classifier(out.flatten(1)), aux
