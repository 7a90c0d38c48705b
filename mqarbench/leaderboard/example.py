"""One example of a task, its tokens marked by role, for the task pages.

Roles are read from the example itself: a key-range token that recurs is a key (a filler never
equals a key), a token some query must answer is a value, a labelled position is a query, and
reserved ids are separators. Anything else is filler.
"""

from __future__ import annotations

from dataclasses import dataclass

from mqarbench.data import tokens


@dataclass(frozen=True)
class Token:
    position: int
    token_id: int
    role: str  # key | value | query | answer-slot | special | filler
    text: str  # what to show: the id, or the reserved name
    answer: int | None = None  # the label at this position


def roles(input_ids: list[int], labels: list[int], vocab_size: int) -> list[Token]:
    """Mark every position of one example with its role."""
    key_lo, key_hi = tokens.key_range(vocab_size)
    answers = {lab for lab in labels if lab != tokens.IGNORE}
    counts: dict[int, int] = {}
    for tok in input_ids:
        counts[tok] = counts.get(tok, 0) + 1
    keys = {tok for tok, n in counts.items() if n > 1 and key_lo <= tok < key_hi}
    seen_key: set[int] = set()
    out = []
    for pos, (tok, lab) in enumerate(zip(input_ids, labels)):
        label = None if lab == tokens.IGNORE else lab
        if tok in tokens.RESERVED_NAMES:
            role = "answer-slot" if label is not None else "special"
            text = tokens.RESERVED_NAMES[tok]
        else:
            text = str(tok)
            if tok in keys:
                role = "query" if tok in seen_key else "key"
                seen_key.add(tok)
            elif label is not None:
                role = "query"
            elif tok in answers:
                role = "value"
            else:
                role = "filler"
        out.append(Token(pos, tok, role, text, label))
    return out


def pick_example(table, max_pairs: int = 8) -> dict:
    """The first test example of the shortest length with the most pairs up to ``max_pairs``."""
    rows = table.select(["seq_len", "num_kv_pairs"]).to_pylist()
    cells = sorted({(r["seq_len"], r["num_kv_pairs"]) for r in rows})
    shortest = min(c[0] for c in cells)
    fitting = [c for c in cells if c[0] == shortest and c[1] <= max_pairs] or [c for c in cells if c[0] == shortest]
    cell = max(fitting, key=lambda c: c[1])
    index = rows.index({"seq_len": cell[0], "num_kv_pairs": cell[1]})
    return table.slice(index, 1).to_pylist()[0]
