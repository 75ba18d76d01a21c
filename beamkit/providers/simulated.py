"""A provider set for tests and benchmarks: fixed latencies, seeded faults, recorded calls.

It stands in for the external services (not for beamkit's own parts), so the engine,
servers and widget can be driven hard and measured without a network or a key::

    sim = Simulation(image_latency=0.2, fail_rate=0.1)
    beamkit.providers.register("sim", sim.factory)
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
from dataclasses import dataclass, field
from typing import Any, Callable

from PIL import Image, PngImagePlugin

from ..candidate import Candidate, Dimension
from ..errors import BeamkitError, ErrorCode, ProviderError
from .base import DEFAULT_CALL_TIMEOUT, GeneratedImage, Limit, ProviderOptions, ProviderSet, VisionResult

#: (operation, args) -> an error to raise, or None
FaultHook = Callable[[str, tuple[Any, ...]], BaseException | None]
#: combined prompt -> (alignment 0..100, aesthetic 0..10)
ScoreHook = Callable[[str], tuple[float, float]]
#: (operation, args) -> True to make that call wait until it is cancelled
BlockHook = Callable[[str, tuple[Any, ...]], bool]


def _h(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")


def _tiny_png(prompt: str) -> bytes:
    img = Image.new("RGB", (8, 8), ((_h(prompt) >> 16) & 255, (_h(prompt) >> 8) & 255, _h(prompt) & 255))
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", prompt)
    buf = io.BytesIO()
    img.save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


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

    def factory(self, options: ProviderOptions) -> ProviderSet:
        return ProviderSet(
            name=self.name,
            llm=_LLM(self),
            image=_Image(self),
            vision=_Vision(self),
            limits=dict(self.limits),
            usage=lambda: {"calls": len(self.calls)},
            call_timeout=self.call_timeout,
        )

    def count(self, op: str) -> int:
        return sum(1 for name, _ in self.calls if name == op)

    async def call(self, op: str, latency: float, seed: int, *args: Any) -> None:
        self.calls.append((op, args))
        self.in_flight[op] = self.in_flight.get(op, 0) + 1
        self.max_in_flight[op] = max(self.max_in_flight.get(op, 0), self.in_flight[op])
        try:
            if self.block is not None and self.block(op, args):
                await asyncio.Event().wait()
            if self.fault is not None and (err := self.fault(op, args)) is not None:
                raise err
            rng = random.Random(f"{seed}:{op}")
            roll = rng.random()
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
        prompt = Image.open(io.BytesIO(image)).text.get("prompt", "")  # type: ignore[attr-defined]
        await self.sim.call("vision", self.sim.vision_latency, seed, prompt)
        if self.sim.score is not None:
            alignment, aesthetic = self.sim.score(prompt)
            return VisionResult(alignment, aesthetic, analysis="scored by hook")
        # Deterministic, spread out, and nudged up by each refinement so search has something to find.
        refinements = prompt.count("+r")
        alignment = min(100.0, _h(prompt) % 70 + 6 * refinements)
        aesthetic = (_h(prompt[::-1]) % 100) / 10
        return VisionResult(alignment, aesthetic, analysis=f"simulated: {refinements} refinements")


def fatal(code: str = ErrorCode.AUTH_ERROR, message: str = "simulated bad key") -> BeamkitError:
    return BeamkitError(message, code, fatal=True)
