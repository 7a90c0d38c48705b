"""Hidden attention of selective SSMs (Ali et al., 2024; the paper's Eq. 5).

Unrolled, the scan of one channel d is a causal linear map from its inputs u to its outputs y:
    y_t = sum_{s<=t} alpha_{t,s} u_s,
    alpha_{t,s} = sum_n C_{t,n} exp(A_{d,n} sum_{k=s+1..t} Delta_k) Delta_s B_{s,n}
(before the D skip and the z gate). A layer's map is the mean over channels of |alpha|: the
sign of alpha varies between channels with the signs of B and C, so a raw mean lets strong
opposite-signed channels cancel, while |alpha| measures how much token s moves token t.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mqarbench.kernels import force_reference


def _mixers(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if callable(getattr(m, "ssm_inputs", None))]


def supports_hidden_attention(model: torch.nn.Module) -> bool:
    """True for models made of selective-scan mixers exposing ``ssm_inputs``."""
    return bool(_mixers(model))


def channel_attention(inputs: dict[str, torch.Tensor], bias: torch.Tensor,
                      channels: slice = slice(None)) -> torch.Tensor:
    """alpha (E', L, L) of batch item 0 for the given channels, from a mixer's ``ssm_inputs``."""
    work = torch.promote_types(inputs["dt"].dtype, torch.float32)
    delta = F.softplus(inputs["dt"][0, channels].to(work) + bias[channels].to(work)[:, None])
    a = inputs["A"][channels].to(work)  # (E, N)
    b, c = inputs["B"][0].to(work), inputs["C"][0].to(work)  # (N, L)
    cum = delta.cumsum(-1)  # (E, L): sum_{k<=t} Delta_k; delta is (E, L)
    gap = cum[:, :, None] - cum[:, None, :]  # (E, L_t, L_s): sum_{k=s+1..t} Delta_k
    length = delta.shape[-1]
    causal = torch.ones(length, length, dtype=torch.bool, device=delta.device).tril()
    decay = torch.exp(a[:, :, None, None] * gap[:, None].clamp(min=0))  # (E, N, L, L)
    alpha = torch.einsum("nt,ents,ns->ets", c, decay, b) * delta[:, None, :]  # (E, L, L)
    return alpha.masked_fill(~causal, 0.0)


@torch.no_grad()
def hidden_attention(model: torch.nn.Module, input_ids: torch.Tensor,
                     channel_block: int = 64) -> np.ndarray:
    """Per-layer hidden attention (n_layers, L, L), float32, for ``input_ids`` of shape (1, L)."""
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"input_ids must have shape (1, L), got {tuple(input_ids.shape)}")
    mixers = _mixers(model)
    captured: list[torch.Tensor] = []
    hooks = [m.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
             for m in mixers]
    try:
        with force_reference():
            model(input_ids)
            maps = []
            for mixer, hidden in zip(mixers, captured):
                inputs = mixer.ssm_inputs(hidden)
                total = None
                for start in range(0, mixer.d_inner, channel_block):  # bound (E', N, L, L)
                    part = channel_attention(inputs, mixer.dt_proj.bias,
                                             slice(start, start + channel_block))
                    part = part.abs().sum(0)
                    total = part if total is None else total + part
                maps.append((total / mixer.d_inner).cpu())
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack(maps).numpy().astype(np.float32)
