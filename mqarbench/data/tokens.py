"""Token conventions shared by every task, model and scorer.

A few reserved ids sit at the bottom of the vocabulary; keys come from the lower half of the
remaining ids and values from the upper half, so a token's role in the context is never
ambiguous between a key and a value.
"""

from __future__ import annotations

PAD = 0
SEP = 1  # opens and closes an n-gram pair
SEP_KV = 2  # between the key tokens and the value tokens of an n-gram pair
MASK = 3  # stands in for the value tokens of an n-gram query
FIRST_ID = 4  # first id a key, value or filler token can take
NUM_RESERVED = FIRST_ID
DEFAULT_VOCAB_SIZE = 20_000
IGNORE = -100  # label of a position that is not scored

RESERVED_NAMES = {PAD: "PAD", SEP: "SEP", SEP_KV: "SEP_KV", MASK: "MASK"}


def key_range(vocab_size: int) -> tuple[int, int]:
    """Half-open range ``[low, high)`` of key ids."""
    return FIRST_ID, FIRST_ID + (vocab_size - NUM_RESERVED) // 2


def value_range(vocab_size: int) -> tuple[int, int]:
    """Half-open range ``[low, high)`` of value ids."""
    return key_range(vocab_size)[1], vocab_size


def filler_range(vocab_size: int) -> tuple[int, int]:
    """Half-open range of filler ("noise") ids: any key or value id, never a reserved one."""
    return FIRST_ID, vocab_size
