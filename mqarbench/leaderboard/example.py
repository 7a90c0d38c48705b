"""One example of a task, its tokens marked by role, for the task pages.

Roles come from the example's own layout columns (``pair_starts``, ``query_starts``, each a
slot of ``unit`` tokens) and the token conventions: inside a pair, key ids come from the lower
half of the vocabulary and value ids from the upper half; a query repeats a key.
"""

from __future__ import annotations

from dataclasses import dataclass

from mqarbench.data import tokens


@dataclass(frozen=True)
class Token:
    position: int
    token_id: int
    role: str  # key | value | query | answer-slot | special | filler
    text: str  # the id, or the reserved token's name
    answer: int | None = None  # the label at this position


def roles(example: dict, unit: int, vocab_size: int) -> list[Token]:
    """Mark every position of one example (a row of a dataset split) with its role."""
    ids, labels = example["input_ids"], example["labels"]
    key_hi = tokens.key_range(vocab_size)[1]
    in_pair = {s + i for s in example["pair_starts"] for i in range(unit)}
    in_query = {s + i for s in example["query_starts"] for i in range(unit)}
    keys = {ids[p] for p in in_pair if p < len(ids) and tokens.FIRST_ID <= ids[p] < key_hi}
    out = []
    for pos, (tok, lab) in enumerate(zip(ids, labels)):
        answer = None if lab == tokens.IGNORE else lab
        if tok in tokens.RESERVED_NAMES:
            role = "answer-slot" if answer is not None else "special"
        elif answer is not None or (pos in in_query and tok in keys):
            role = "query"
        elif pos in in_pair:
            role = "key" if tok < key_hi else "value"
        else:
            role = "filler"
        out.append(Token(pos, tok, role, tokens.RESERVED_NAMES.get(tok, str(tok)), answer))
    return out


def pick_example(table, max_pairs: int = 8) -> dict:
    """The first test example of the shortest length with the most pairs up to ``max_pairs``."""
    rows = table.select(["seq_len", "num_kv_pairs"]).to_pylist()
    cells = sorted({(r["seq_len"], r["num_kv_pairs"]) for r in rows})
    shortest = min(c[0] for c in cells)
    at_shortest = [c for c in cells if c[0] == shortest]
    cell = max([c for c in at_shortest if c[1] <= max_pairs] or at_shortest, key=lambda c: c[1])
    index = rows.index({"seq_len": cell[0], "num_kv_pairs": cell[1]})
    return table.slice(index, 1).to_pylist()[0]
