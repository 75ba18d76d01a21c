"""A provider of every role for tests and benchmarks: fixed latencies, seeded faults, recorded calls.

It stands in for the external services (not for beamkit's own parts), so the engine,
servers and widget can be driven hard and measured without a network or a key::

    sim = Simulation(image_latency=0.2, fail_rate=0.1)
    beamkit.providers.register("sim", sim.provider)
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..candidate import Candidate, Dimension
from ..errors import BeamkitError, ErrorCode, ProviderError
from .base import (
    DEFAULT_CALL_TIMEOUT,
    ROLES,
    GeneratedImage,
    Limit,
    Provider,
    RoleHandle,
    RoleOptions,
    Setting,
    VisionResult,
)
from .openai.config import API_KEY_HEADER

#: (operation, args) -> an error to raise, or None
FaultHook = Callable[[str, tuple[Any, ...]], BaseException | None]
#: combined prompt -> (alignment 0..100, aesthetic 0..10)
ScoreHook = Callable[[str], tuple[float, float]]
#: (operation, args) -> True to make that call wait until it is cancelled
BlockHook = Callable[[str, tuple[Any, ...]], bool]


def _h(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")


_PNG = b"\x89PNG\r\n\x1a\n"
_IHDR = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)  # 8 x 8, 8-bit RGB


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


_HEAD, _END = _chunk(b"IHDR", _IHDR), _chunk(b"IEND", b"")


def _stored(data: bytes) -> bytes:
    """A zlib stream of one uncompressed block: zlib.compress would cost 30 times more (and let go of the GIL)."""
    return b"\x78\x01\x01" + struct.pack("<HH", len(data), len(data) ^ 0xFFFF) + data + struct.pack(">I", zlib.adler32(data))


def _tiny_png(prompt: str) -> bytes:
    """An 8 x 8 PNG of one colour that carries its prompt (an iTXt chunk), built by hand:
    Pillow would cost the event loop far more than the simulated call itself."""
    h = _h(prompt)
    rows = (b"\x00" + bytes(((h >> 16) & 255, (h >> 8) & 255, h & 255)) * 8) * 8
    return b"".join((
        _PNG,
        _HEAD,
        _chunk(b"iTXt", b"prompt\x00\x00\x00\x00\x00" + prompt.encode("utf-8")),
        _chunk(b"IDAT", _stored(rows)),
        _END,
    ))


def _prompt_in(png: bytes) -> str:
    """The ``prompt`` text chunk of a PNG ("" if it has none); raises ValueError for what is not a PNG."""
    if not png.startswith(_PNG):
        raise ValueError("the picture is not a PNG")
    pos = len(_PNG)
    while pos + 8 <= len(png):
        length, kind = struct.unpack_from(">I4s", png, pos)
        data = png[pos + 8: pos + 8 + length]
        pos += 12 + length
        if kind not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        key, _, rest = data.partition(b"\x00")
        if key != b"prompt":
            continue
        if kind == b"tEXt":
            return rest.decode("latin-1")
        if kind == b"zTXt":
            return zlib.decompress(rest[1:]).decode("latin-1")
        compressed, rest = rest[0], rest[2:]
        _language, _, rest = rest.partition(b"\x00")
        _translated, _, text = rest.partition(b"\x00")
        return (zlib.decompress(text) if compressed else text).decode("utf-8")
    return ""


@dataclass
class Simulation:
    llm_latency: float = 0.0
    image_latency: float = 0.0
    vision_latency: float = 0.0
    fail_rate: float = 0.0  # share of calls that raise a (non-fatal) ProviderError
    crash_rate: float = 0.0  # share of calls that raise a plain RuntimeError (a provider bug)
    stall_rate: float = 0.0  # share of calls that hang for stall_seconds
    stall_seconds: float = 3600.0
    call_timeout: float | None = DEFAULT_CALL_TIMEOUT  # the engine's bound on one call
    fault: FaultHook | None = None
    score: ScoreHook | None = None
    block: BlockHook | None = None
    limits: dict[str, Limit] = field(default_factory=dict)
    name: str = "simulated"
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)
    max_in_flight: dict[str, int] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    open_delay: float = 0.0  # seconds the process-level open hook takes
    opens: int = 0  # how often the open hook ran
    closes: int = 0  # how often the close hook ran
    #: each role's options, as the provider got them, in the order the roles were made
    created: list[RoleOptions] = field(default_factory=list)
    #: calls made, by operation: what usage reports at each iteration's end, without a scan of ``calls``
    _counts: dict[str, int] = field(default_factory=dict, repr=False)

    @cached_property
    def provider(self) -> SimulatedProvider:
        """This simulation as a Provider of every role: ``register(name, sim.provider)``."""
        return SimulatedProvider(self)

    def count(self, op: str) -> int:
        return self._counts.get(op, 0)

    async def call(self, op: str, latency: float, seed: int, *args: Any) -> None:
        self.calls.append((op, args))
        self._counts[op] = self._counts.get(op, 0) + 1
        self.in_flight[op] = self.in_flight.get(op, 0) + 1
        self.max_in_flight[op] = max(self.max_in_flight.get(op, 0), self.in_flight[op])
        try:
            if self.block is not None and self.block(op, args):
                await asyncio.Event().wait()
            if self.fault is not None and (err := self.fault(op, args)) is not None:
                raise err
            # Seeding a generator costs more than the rest of the call: only when there are faults to draw.
            faulty = self.fail_rate or self.crash_rate or self.stall_rate
            roll = random.Random(f"{seed}:{op}").random() if faulty else 1.0
            if roll < self.fail_rate:
                raise ProviderError(f"simulated failure in {op}", ErrorCode.PROVIDER_ERROR)
            roll -= self.fail_rate
            if roll < self.crash_rate:
                raise RuntimeError(f"simulated crash in {op}")
            roll -= self.crash_rate
            if roll < self.stall_rate:
                await asyncio.sleep(self.stall_seconds)
            if latency:
                await asyncio.sleep(latency)
        except asyncio.CancelledError:
            self.cancelled.append(op)
            raise
        finally:
            self.in_flight[op] -= 1

    def busy(self) -> int:
        """Calls in flight now, all kinds together."""
        return sum(self.in_flight.values())


class _LLM:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    async def expand(self, prompt: str, dimension: Dimension, *, seed: int) -> str:
        await self.sim.call("expand", self.sim.llm_latency, seed, prompt, dimension)
        return f"{dimension}:{prompt}#{seed % 1000}"

    async def refine(self, prompt: str, dimension: Dimension, critique: str, user_prompt: str, *, seed: int) -> str:
        await self.sim.call("refine", self.sim.llm_latency, seed, prompt, dimension, critique)
        return f"{prompt} +r{seed % 10}"

    async def combine(self, what: str, how: str, *, seed: int) -> str:
        await self.sim.call("combine", self.sim.llm_latency, seed, what, how)
        return f"{what} | {how}"

    async def critique(self, candidate: Candidate, dimension: Dimension, user_prompt: str, *, seed: int) -> str:
        await self.sim.call("critique", self.sim.llm_latency, seed, candidate.key, dimension)
        return f"critique of {candidate.key} on {dimension}"


class _Image:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    async def generate(self, prompt: str, *, seed: int) -> GeneratedImage:
        await self.sim.call("image", self.sim.image_latency, seed, prompt)
        return GeneratedImage(_tiny_png(prompt), {"seed": seed})


class _Vision:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    async def analyze(self, image: bytes, user_prompt: str, *, seed: int) -> VisionResult:
        prompt = _prompt_in(image)
        await self.sim.call("vision", self.sim.vision_latency, seed, prompt)
        if self.sim.score is not None:
            alignment, aesthetic = self.sim.score(prompt)
            return VisionResult(alignment, aesthetic, analysis="scored by hook")
        # Deterministic, spread out, and nudged up by each refinement so search has something to find.
        refinements = prompt.count("+r")
        alignment = min(100.0, _h(prompt) % 70 + 6 * refinements)
        aesthetic = (_h(prompt[::-1]) % 100) / 10
        return VisionResult(alignment, aesthetic, analysis=f"simulated: {refinements} refinements")


#: the operations of each role, for its usage
_OPERATIONS = {"llm": ("expand", "refine", "combine", "critique"), "image": ("image",), "vision": ("vision",)}


class SimulatedProvider(Provider):
    """Every role of one :class:`Simulation`. It declares a secret ``api_key`` carried by the same
    header as openai's, and an ``llm_model``, so that tests can follow settings to a provider."""

    roles = ROLES
    description = "simulated services for tests and benchmarks"
    settings = (
        Setting("api_key", str, secret=True, header=API_KEY_HEADER, help="recorded, never used"),
        Setting("llm_model", str, roles=("llm",), help="recorded, never used"),
    )

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    async def open(self) -> None:
        self.sim.opens += 1
        if self.sim.open_delay:
            await asyncio.sleep(self.sim.open_delay)

    def close(self) -> None:
        self.sim.closes += 1

    def create(self, role: str, options: RoleOptions) -> RoleHandle:
        sim = self.sim
        sim.created.append(options)
        impl: Any = {"llm": _LLM, "image": _Image, "vision": _Vision}[role](sim)
        ops = _OPERATIONS[role]
        return RoleHandle(
            impl,
            limit=sim.limits.get(role, Limit()),
            usage=lambda: {"calls": sum(sim.count(op) for op in ops)},
            call_timeout=sim.call_timeout,
            info={"simulation": sim.name},
        )


def fatal(code: str = ErrorCode.AUTH_ERROR, message: str = "simulated bad key") -> BeamkitError:
    return BeamkitError(message, code, fatal=True)
