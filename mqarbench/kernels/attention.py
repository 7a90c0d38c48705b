"""Causal multi-head attention: ``scaled_dot_product_attention`` on CUDA, explicit softmax elsewhere.

q, k, v: (B, H, L, Dh) -> (B, H, L, Dh). On CUDA, SDPA picks the flash, cuDNN or memory-efficient
backend itself; the reference materialises the (L, L) score matrix in fp32.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from mqarbench.kernels import KernelChoice, use_reference

AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def causal_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(Dh) + causal mask) v, computed in fp32."""
    length = q.shape[-2]
    scores = q.float() @ k.float().transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, H, L, L)
    future = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(1)
    scores = scores.masked_fill(future, float("-inf"))
    return (scores.softmax(dim=-1) @ v.float()).to(q.dtype)  # (B, H, L, Dh)


def causal_attention_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, L, Dh)


def attention_impl(device: torch.device) -> tuple[AttentionFn, KernelChoice]:
    """SDPA on CUDA unless the reference is forced; the explicit softmax on CPU."""
    if device.type == "cuda" and not use_reference():
        return causal_attention_sdpa, KernelChoice("sdpa", True)
    return causal_attention_reference, KernelChoice("reference.causal_attention", False)
