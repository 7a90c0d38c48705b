"""One example decoded token by token, with the role of each position (for `tasks show` and the site).

Roles come from the example's own layout (``pair_starts``, ``query_starts``, each a slot of the
family's ``unit`` tokens, laid out as the family's generator writes them); a reserved token is
an ``answer-slot`` where it carries a label and ``special`` elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from mqarbench.data import tokens
from mqarbench.data.generators import CellData, generate_cell
from mqarbench.data.spec import Cell, NgramSpec, TaskSpec

ROLES = ("key", "value", "query", "answer-slot", "special", "filler")


@dataclass(frozen=True)
class Token:
    position: int
    id: int
    role: str  # one of ROLES
    label: int | None  # the token to predict after this one, where scored
    query: int | None  # which query the label belongs to
    candidates: tuple[int, ...] = ()  # position-robustness: the value of this key in every block

    @property
    def text(self) -> str:
        """The id, or the reserved token's name."""
        return tokens.RESERVED_NAMES.get(self.id, str(self.id))


def _slot_roles(spec: TaskSpec) -> tuple[list[str], list[str]]:
    """Roles of the tokens of a context pair and of a query, offset by offset."""
    if not isinstance(spec, NgramSpec):
        return ["key", "value"], ["query"]
    nk, nv = spec.key_tokens, spec.value_tokens
    return (["special"] + ["key"] * nk + ["special"] + ["value"] * nv + ["special"],
            ["special"] + ["query"] * nk + ["special"] * (nv + 2))


def mark(row: dict, spec: TaskSpec) -> list[Token]:
    """Every position of one example of ``spec`` (a row of a dataset split) with its role."""
    ids, labels, qidx = row["input_ids"], row["labels"], row["query_index"]
    roles = ["filler"] * len(ids)
    pair_roles, query_roles = _slot_roles(spec)
    for starts, slot in ((row["pair_starts"], pair_roles), (row["query_starts"], query_roles)):
        for start in starts:
            for offset, role in enumerate(slot):
                roles[start + offset] = role
    blocks = row.get("num_blocks") or 1
    out = []
    for t, (tok, label, q) in enumerate(zip(ids, labels, qidx)):
        label = None if label == tokens.IGNORE else int(label)
        role = roles[t]
        if tok in tokens.RESERVED_NAMES:
            role = "answer-slot" if label is not None else "special"
        cands = tuple(int(v) for v in row["candidates"][q * blocks:(q + 1) * blocks]) \
            if row.get("candidates") is not None and q >= 0 else ()
        out.append(Token(t, int(tok), role, label, None if q < 0 else int(q), cands))
    return out


def _row(data: CellData, i: int) -> dict:
    """Example ``i`` of a generated cell in the form of a dataset row."""
    row = {name: getattr(data, name)[i].tolist()
           for name in ("input_ids", "labels", "query_index", "pair_starts", "query_starts")}
    if data.candidates is not None:
        row.update(candidates=data.candidates[i].tolist(), num_blocks=data.num_blocks)
    return row


def pick_cell(spec: TaskSpec) -> Cell:
    """A readable cell: the shortest length, with a few pairs."""
    cells = spec.cells()
    shortest = min(c[0] for c in cells)
    row = [c for c in cells if c[0] == shortest]
    return next((c for c in row if c[1] >= 2), row[-1])


def example(spec: TaskSpec, cell: Cell | None = None, split: str | None = None) -> list[Token]:
    """One freshly generated example of ``spec`` at ``cell``, marked."""
    seq_len, pairs = cell or pick_cell(spec)
    return mark(_row(generate_cell(spec, split or spec.splits[0], seq_len, pairs, 1), 0), spec)


def pick_example(table, max_pairs: int = 8) -> dict:
    """The first example of a dataset split at the shortest length with the most pairs up to ``max_pairs``."""
    rows = table.select(["seq_len", "num_kv_pairs"]).to_pylist()
    cells = sorted({(r["seq_len"], r["num_kv_pairs"]) for r in rows})
    shortest = min(c[0] for c in cells)
    at_shortest = [c for c in cells if c[0] == shortest]
    cell = max([c for c in at_shortest if c[1] <= max_pairs] or at_shortest, key=lambda c: c[1])
    index = rows.index({"seq_len": cell[0], "num_kv_pairs": cell[1]})
    return table.slice(index, 1).to_pylist()[0]


def token_text(tok: Token) -> str:
    """A token for the terminal: K/V/Q before a key, value or query id, ``→label`` where scored."""
    text = f"<{tok.text}>" if tok.id in tokens.RESERVED_NAMES else \
        {"key": "K", "value": "V", "query": "Q"}.get(tok.role, "") + tok.text
    if tok.label is not None:
        text += f"→{tokens.RESERVED_NAMES.get(tok.label, tok.label)}"
        if tok.candidates:
            text += "|" + "|".join(str(c) for c in tok.candidates[1:])
    return text
