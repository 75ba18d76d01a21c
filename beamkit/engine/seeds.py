"""Per-call seeds: stable across processes and independent of the order calls finish in."""

from __future__ import annotations

from hashlib import blake2b


def derive(job_seed: int, *parts: object) -> int:
    """The seed of one call: a hash of the job's seed and what names the call ("0:3:image")."""
    text = ":".join([str(job_seed), *map(str, parts)])
    return int.from_bytes(blake2b(text.encode(), digest_size=4).digest(), "big") & 0x7FFFFFFF
