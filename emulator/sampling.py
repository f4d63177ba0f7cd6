"""The original emulator's sampling sequence (docs/contract.md §2), kept bit-for-bit so runs are reproducible."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Draw:
    sleep_seconds: int
    index: int


def draws(seed: int, row_count: int, count: int | None = None) -> Iterator[Draw]:
    """`random.seed(seed)`; per post: sleep `randrange(0, 2)` s, then `k = randint(0, N-1)`.

    The sleep is always drawn, even when the caller does not sleep (burst or fixed rate), so the index sequence
    does not depend on the pacing mode.
    """
    if row_count < 1:
        raise ValueError("the source has no rows: run `make seed`")
    rng = random.Random(seed)
    produced = 0
    while count is None or produced < count:
        sleep_seconds = rng.randrange(0, 2)
        yield Draw(sleep_seconds, rng.randint(0, row_count - 1))
        produced += 1
