"""Per-call seeds: stable across processes and independent of the order calls finish in."""

from __future__ import annotations

import hashlib


def derive(job_seed: int, *parts: object) -> int:
    text = ":".join(map(str, (job_seed, *parts))).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=4).digest(), "big") & 0x7FFFFFFF
