"""Customer size buckets (docs/domain.md, "Customer size"): the one home of the seat bounds.

Matching reads a customer's bucket as a code (its position in :data:`SIZE_BUCKETS`) and
a partner's accepted buckets as a bit mask, so the size test is one integer operation per
partner; reports read the bucket's name.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

#: The buckets in order, each with the fewest seats it starts at. Below the first bound a
#: customer is not FRP-eligible by default; a lower ``min_seats`` still counts it as XS.
SIZE_BUCKETS: tuple[str, ...] = ("XS", "S", "M", "L")
SIZE_FLOORS: tuple[int, ...] = (150, 500, 5_000, 10_000)
#: Each bucket's (fewest, most) seats; the largest has no upper bound.
SIZE_BOUNDS: dict[str, tuple[int, int | None]] = {
    b: (lo, hi - 1 if hi is not None else None)
    for b, lo, hi in zip(SIZE_BUCKETS, SIZE_FLOORS, (*SIZE_FLOORS[1:], None), strict=True)
}
#: A partner that lists no sizes takes every bucket.
ALL_SIZES = (1 << len(SIZE_BUCKETS)) - 1


def size_bucket(seats: int) -> str:
    """The bucket of a customer with ``seats`` seats."""
    return SIZE_BUCKETS[size_code(seats)]


def size_code(seats: int) -> int:
    """The bucket's position in :data:`SIZE_BUCKETS`."""
    code = 0
    for j, floor in enumerate(SIZE_FLOORS[1:], start=1):
        if seats >= floor:
            code = j
    return code


def size_code_expr(seats: pl.Expr) -> pl.Expr:
    """:func:`size_code`, column-wise (UInt8)."""
    code = pl.lit(0, dtype=pl.UInt8)
    for j, floor in enumerate(SIZE_FLOORS[1:], start=1):
        code = pl.when(seats >= floor).then(pl.lit(j, dtype=pl.UInt8)).otherwise(code)
    return code


def size_bucket_expr(seats: pl.Expr) -> pl.Expr:
    """:func:`size_bucket`, column-wise."""
    return pl.lit(pl.Series(SIZE_BUCKETS, dtype=pl.String)).gather(size_code_expr(seats))


def size_mask(sizes: Iterable[str | None] | None) -> int:
    """Bit j set when the partner takes bucket j; none listed (empty or null) = all."""
    listed = {s for s in sizes or () if s}
    if not listed:
        return ALL_SIZES
    return sum(1 << j for j, b in enumerate(SIZE_BUCKETS) if b in listed)
