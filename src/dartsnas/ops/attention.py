"""CoAtNet-style transformer ops on feature maps: relative self-attention and the feed-forward block.

- ``attention``: pre-norm (BN) multi-head self-attention over all spatial positions with a learned relative
  position bias per head, plus the input;
- ``ffn``: pre-norm (BN) 1 x 1 MLP ``C -> 4C -> C`` with GELU, plus the input.

At stride 2 both first downsample with a 3 x 3 max pool (stride 2, padding 1) and work on the pooled map, as
CoAtNet does. Attention costs memory quadratic in the number of positions: one ``[N, heads, HW, HW]`` matrix,
4 MiB per image and head at 32 x 32 in float32.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from . import register_op

__all__ = ["RelativeSelfAttention", "FeedForward", "ATTENTION_OPS"]

ATTENTION_OPS: tuple[str, ...] = ("attention", "ffn")
"""Names of the ops this module registers."""


def _downsample(stride: int) -> nn.Module:
    return nn.Identity() if stride == 1 else nn.MaxPool2d(3, stride=stride, padding=1)


class RelativeSelfAttention(nn.Module):
    """Pre-norm multi-head self-attention over all positions with a relative position bias, plus the input.

    ``x + proj(softmax(q k^T / sqrt(d) + B[h, dy, dx]) v)`` (CoAtNet eq. 3), q, k, v from one 1 x 1 conv of
    ``BN(x)``.

    ``heads = max(1, C // head_channels)`` and ``C`` must be a multiple of it. The bias table holds offsets up
    to ``max_distance - 1`` in each direction; larger offsets share the table's edge, so any input size works.
    The matmuls are written out (not ``scaled_dot_product_attention``) because torch's FLOP counter does not
    count the CPU fused kernel, which SDPA picks under ``no_grad``.
    """

    def __init__(self, C: int, stride: int = 1, *, affine: bool = True, head_channels: int = 32,
                 max_distance: int = 32):
        super().__init__()
        heads = max(1, C // head_channels)
        if C % heads:
            raise ValueError(f"attention needs channels divisible by its {heads} heads, got {C} channels")
        if max_distance < 1:
            raise ValueError(f"max_distance must be at least 1, got {max_distance}")
        self.heads = heads
        self.head_dim = C // heads
        self.max_distance = max_distance
        self.pool = _downsample(stride)
        self.norm = nn.BatchNorm2d(C, affine=affine)
        self.qkv = nn.Conv2d(C, 3 * C, 1, bias=False)
        self.proj = nn.Conv2d(C, C, 1)
        span = 2 * max_distance - 1
        self.relative_bias = nn.Parameter(torch.zeros(heads, span, span))
        nn.init.trunc_normal_(self.relative_bias, std=0.02)

    def position_bias(self, H: int, W: int) -> torch.Tensor:
        """The bias ``[heads, H*W, H*W]`` between positions ``i = y_i * W + x_i`` and ``j``: the table entry at
        the offset ``(y_i - y_j, x_i - x_j)``, each clamped to ``±(max_distance - 1)``."""
        M = self.max_distance
        device = self.relative_bias.device
        ys = torch.arange(H, device=device)
        xs = torch.arange(W, device=device)
        dy = (ys[:, None] - ys[None, :]).clamp(-(M - 1), M - 1) + (M - 1)  # [H, H]
        dx = (xs[:, None] - xs[None, :]).clamp(-(M - 1), M - 1) + (M - 1)  # [W, W]
        index = dy[:, None, :, None] * (2 * M - 1) + dx[None, :, None, :]  # [y_i, x_i, y_j, x_j]
        return self.relative_bias.flatten(1)[:, index.reshape(H * W, H * W)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        N, C, H, W = x.shape
        L = H * W
        qkv = self.qkv(self.norm(x)).reshape(N, 3, self.heads, self.head_dim, L)
        q, k, v = qkv.unbind(1)  # each [N, heads, d, L]
        logits = (q.transpose(-2, -1) * self.head_dim ** -0.5) @ k  # [N, heads, L, L]
        attn = torch.softmax(logits + self.position_bias(H, W).to(logits.dtype), dim=-1)
        out = (v @ attn.transpose(-2, -1)).reshape(N, C, H, W)  # out[:, :, i] = sum_j attn[i, j] v[:, :, j]
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            out = out.contiguous(memory_format=torch.channels_last)
        return x + self.proj(out)


class FeedForward(nn.Module):
    """Transformer MLP on each position: ``x + fc2(GELU(fc1(BN(x))))`` with 1 x 1 convs ``C -> expand * C -> C``."""

    def __init__(self, C: int, stride: int = 1, *, affine: bool = True, expand: int = 4):
        super().__init__()
        self.pool = _downsample(stride)
        self.norm = nn.BatchNorm2d(C, affine=affine)
        self.fc1 = nn.Conv2d(C, expand * C, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(expand * C, C, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


register_op("attention", lambda C, stride, affine: RelativeSelfAttention(C, stride, affine=affine),
            description="CoAtNet-style multi-head self-attention over positions, relative position bias, residual "
                        "(stride 2: 3x3 max pool first)")
register_op("ffn", lambda C, stride, affine: FeedForward(C, stride, affine=affine),
            description="transformer feed-forward: BN, 1x1 expand x4, GELU, 1x1 project, residual (stride 2: max "
                        "pool first)")
