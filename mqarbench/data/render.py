"""One example decoded token by token, with the role of each position (for `tasks show` and the site)."""

from __future__ import annotations

from dataclasses import dataclass

from mqarbench.data import tokens
from mqarbench.data.generators import generate_cell
from mqarbench.data.spec import Cell, TaskSpec


@dataclass(frozen=True)
class Token:
    position: int
    id: int
    role: str  # key | value | query | sep | mask | filler
    label: int | None  # the token to predict after this one, where scored
    query: int | None  # which query the label belongs to
    candidates: tuple[int, ...] = ()  # position-robustness: the value of this key in every block


def _roles(spec: TaskSpec) -> tuple[list[str], list[str]]:
    """Roles of the tokens of a context pair and of a query, offset by offset."""
    if spec.family != "ngram":
        return ["key", "value"], ["query"]
    nk, nv = spec.key_tokens, spec.value_tokens
    return (["sep"] + ["key"] * nk + ["sep"] + ["value"] * nv + ["sep"],
            ["sep"] + ["query"] * nk + ["sep"] + ["mask"] * nv + ["sep"])


def pick_cell(spec: TaskSpec) -> Cell:
    """A readable cell: the shortest length, with a few pairs."""
    cells = spec.cells() if spec.preset is None else spec.grid.cells
    shortest = min(c[0] for c in cells)
    row = [c for c in cells if c[0] == shortest]
    return next((c for c in row if c[1] >= 2), row[-1])


def example(spec: TaskSpec, cell: Cell | None = None, split: str | None = None) -> list[Token]:
    seq_len, pairs = cell or pick_cell(spec)
    split = split or spec.splits[0]
    data = generate_cell(spec, split, seq_len, pairs, 1)
    pair_roles, query_roles = _roles(spec)
    roles = ["filler"] * seq_len
    for start in data.pair_starts[0]:
        for offset, role in enumerate(pair_roles):
            roles[start + offset] = role
    for start in data.query_starts[0]:
        for offset, role in enumerate(query_roles):
            roles[start + offset] = role
    out = []
    for t in range(seq_len):
        label, q = int(data.labels[0, t]), int(data.query_index[0, t])
        cands = ()
        if data.candidates is not None and q >= 0:
            cands = tuple(int(v) for v in data.candidates[0].reshape(-1, data.num_blocks)[q])
        out.append(Token(t, int(data.input_ids[0, t]), roles[t], None if label == tokens.IGNORE else label,
                         None if q < 0 else q, cands))
    return out


def token_text(tok: Token) -> str:
    name = tokens.RESERVED_NAMES.get(tok.id)
    text = f"<{name}>" if name else {"key": "K", "value": "V", "query": "Q"}.get(tok.role, "") + str(tok.id)
    if tok.label is not None:
        text += f"→{tokens.RESERVED_NAMES.get(tok.label, tok.label)}"
        if tok.candidates:
            text += "|" + "|".join(str(c) for c in tok.candidates[1:])
    return text
