"""The split head (hidden states, then logits at scored positions) gives the whole forward's numbers."""

from __future__ import annotations

import pytest
import torch

from mqarbench.models.heads import has_split_head, logits_at
from mqarbench.models.registry import BUILTINS, load_adapter

V, L = 64, 24


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_split_head_matches_forward_at_masked_positions(name):
    torch.manual_seed(0)
    model = load_adapter(name).build("tiny", V, L).eval()
    assert has_split_head(model)
    x = torch.randint(0, V, (3, L))
    mask = torch.rand(3, L) < 0.3
    mask[0, -1] = True  # at least one position
    with torch.no_grad():
        full = model(x)  # (B, L, V)
        part = logits_at(model, x, mask)  # (N, V)
    assert part.shape == (int(mask.sum()), V)
    torch.testing.assert_close(part, full[mask], rtol=1e-5, atol=1e-5)


def test_model_without_split_head_is_used_whole():
    class Whole(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(V, V)

        def forward(self, input_ids):
            return self.emb(input_ids)

    model = Whole()
    x = torch.randint(0, V, (2, L))
    mask = torch.zeros(2, L, dtype=torch.bool)
    mask[1, 3] = True
    assert not has_split_head(model)
    torch.testing.assert_close(logits_at(model, x, mask), model.emb.weight[x[1, 3]][None])
