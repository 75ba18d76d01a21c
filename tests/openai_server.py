"""A small OpenAI-compatible server for tests: the real ``openai.AsyncOpenAI`` talks to it over HTTP.

It implements ``POST /v1/chat/completions`` (plausible prompt text; JSON scores for a
request that carries an image; a verdict for a comparison, which carries two) and ``POST /v1/images/generations`` (``b64_json`` of a
real PNG), records every request, and injects faults on demand::

    server.fail("429", on="image", times=2, retry_after_ms=20)
    server.fail("slow", on="vision", delay=5)
    server.fail("vision_reply", content="```json\\n{...}\\n```")

and behaves as other compatible servers do when told to::

    server.latency = {"llm": 0.04, "image": 0.2, "vision": 0.08}   # seconds before each reply
    server.rate_limit("image", 30, window=60.0)   # a token bucket: 429 beyond, x-ratelimit-* headers
    server.image_reply = "url"                    # images as a URL to fetch (LiteLLM's mock, llmock)
    server.json_object = "ignore"                 # json_object answered with an unrelated object (llmock)
    server.json_object = "only"                   # json_schema refused with a 400 (json_object honoured)
    server.judge = "first"                        # comparisons: always the first picture shown (the default),
                                                  # "second", or "garbage" (a reply naming neither picture)

It runs in-process on the test's event loop (Tornado on asyncio), on 127.0.0.1 and a free port.
The ``openai_server`` fixture starts one per test.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import itertools
import json
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest_asyncio
import tornado.httpserver
import tornado.netutil
import tornado.web

TEST_KEY = "sk-test-beamkit-SECRET-0123456789abcdef"
OPERATION_HEADER = "X-Beamkit-Operation"


def make_png(size: int = 64, seed: int = 0) -> bytes:
    """A small real PNG: a gradient with a disc, so that Pillow and viewers accept it."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size))
    px = img.load()
    assert px is not None
    for y in range(size):
        for x in range(size):
            px[x, y] = ((x * 4 + seed * 17) % 256, (y * 4) % 256, (x + y + seed * 29) % 256)
    ImageDraw.Draw(img).ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=(240, 200, 40))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


@dataclass
class Recorded:
    """One request as the server saw it."""

    path: str
    body: Any
    headers: dict[str, str]
    kind: str  # "llm", "vision" or "image"
    operation: str  # the X-Beamkit-Operation header, or the kind
    status: int | None = None
    fault: str | None = None
    fault_opts: dict[str, Any] = field(default_factory=dict, repr=False)
    closed_early: bool = False  # the client hung up before the reply was written
    started: float = field(default_factory=time.monotonic)
    closed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


@dataclass
class Fault:
    kind: str
    on: str = "any"
    times: int = 1
    opts: dict[str, Any] = field(default_factory=dict)

    def matches(self, rec: Recorded) -> bool:
        if self.times <= 0:
            return False
        on = self.on
        if on == "any":
            return True
        if on == "chat":
            return rec.kind in ("llm", "vision")
        return on in (rec.kind, rec.operation) or rec.operation.startswith(on + "-")


class Bucket:
    """A token bucket: ``per_window`` requests per ``window`` seconds, ``burst`` at once at most.
    Servers enforce "30 a minute" at a finer grain than the minute (one every 2 s), as OpenAI does."""

    def __init__(self, per_window: int, window: float, burst: int) -> None:
        self.rate = per_window / window
        self.per_window, self.burst = per_window, burst
        self.tokens = float(burst)
        self.at = time.monotonic()
        self.accepted = self.rejected = 0

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.rate)
        self.at = now

    def take(self) -> float | None:
        """None when a request may go ahead (it takes a token), else the seconds until one is there."""
        self._refill()
        if self.tokens >= 1:
            self.tokens -= 1
            self.accepted += 1
            return None
        self.rejected += 1
        return (1 - self.tokens) / self.rate

    def headers(self) -> dict[str, str]:
        self._refill()
        return {
            "x-ratelimit-limit-requests": str(self.per_window),
            "x-ratelimit-remaining-requests": str(int(self.tokens)),
            # OpenAI's meaning: the time until the limit is back to its initial state
            "x-ratelimit-reset-requests": f"{(self.burst - self.tokens) / self.rate * 1000:.0f}ms",
        }


class FakeOpenAI:
    """State of the test server: the recorded requests and the faults still to inject."""

    def __init__(self, api_key: str = TEST_KEY) -> None:
        self.api_key = api_key
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.png = make_png()
        self._counter = itertools.count(1)
        self._server: tornado.httpserver.HTTPServer | None = None
        self.port = 0
        #: seconds before each reply, per kind ("llm", "image", "vision")
        self.latency: dict[str, float] = {}
        #: per kind, the token bucket that answers 429 beyond it (see :meth:`rate_limit`)
        self.buckets: dict[str, Bucket] = {}
        #: whether rate-limited kinds send x-ratelimit-* headers on every reply
        self.ratelimit_headers = True
        #: "b64_json" (the default), or "url": a link to the PNG, served at /files/ (``image_url`` overrides it)
        self.image_reply = "b64_json"
        self.image_url: str | None = None
        #: "honour" (default), "ignore" (an unrelated object for json_object, llmock's way), or "only"
        #: (json_schema refused with a 400, json_object honoured), or "none" (any response_format refused)
        self.json_object = "honour"
        self.files: dict[str, bytes] = {}
        #: how a comparison (a chat request with two pictures) is answered: "first" (always the first
        #: picture shown, whatever it is), "second", or "garbage" (prose that names neither picture)
        self.judge = "first"

    # --- control ---------------------------------------------------------------------------

    def fail(self, kind: str, *, on: str = "any", times: int = 1, **opts: Any) -> Fault:
        """Inject a fault into the next ``times`` requests that match ``on``.

        ``on``: "any", "chat", "llm", "vision", "image", or an operation ("expand", "critique-how", ...).
        ``kind``: "429" (``retry_after_ms``), "insufficient_quota", "500", "401", "403", "404", "slow"
        (``delay`` seconds, then a normal reply), "content_policy", "content_filter", "refusal",
        "empty", "unsupported_temperature", "vision_reply" (``content``: the exact reply text),
        "malformed" and "fenced" (vision replies), "garbage" (a 200 whose body is not the API's JSON:
        ``body``, ``content_type``).
        """
        if on == "any" and kind in ("vision_reply", "fenced", "malformed"):
            on = "vision"
        fault = Fault(kind, on, times, opts)
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.requests.clear()
        self.faults.clear()

    def rate_limit(self, kind: str, per_window: int, *, window: float = 60.0, burst: int = 1) -> Bucket:
        """Allow ``per_window`` requests of ``kind`` per ``window`` seconds and answer 429 beyond."""
        bucket = self.buckets[kind] = Bucket(per_window, window, burst)
        return bucket

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def count(self, key: str = "operation") -> Counter:
        """Requests per operation (or per ``kind``)."""
        return Counter(getattr(r, key) for r in self.requests)

    def of(self, kind_or_operation: str) -> list[Recorded]:
        return [r for r in self.requests if kind_or_operation in (r.kind, r.operation) or r.operation.startswith(kind_or_operation + "-")]

    async def start(self) -> FakeOpenAI:
        app = tornado.web.Application(
            [
                (r"/v1/chat/completions", ChatHandler, {"fake": self}),
                (r"/v1/images/generations", ImagesHandler, {"fake": self}),
                (r"/files/(.+)", FileHandler, {"fake": self}),
                (r"/v1/.*", NotFoundHandler, {"fake": self}),
            ]
        )
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        self._server = tornado.httpserver.HTTPServer(app)
        self._server.add_sockets(sockets)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None

    # --- replies ---------------------------------------------------------------------------

    def next_number(self) -> int:
        return next(self._counter)


class _Base(tornado.web.RequestHandler):
    kind = "llm"

    def initialize(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        self.rec: Recorded | None = None

    def check_xsrf_cookie(self) -> None:  # an API, not a form
        pass

    def on_connection_close(self) -> None:
        if self.rec is not None:
            if self.rec.status is None:
                self.rec.closed_early = True
            self.rec.closed.set()

    def classify(self, body: Any) -> str:
        return self.kind

    def error(self, status: int, message: str, *, type_: str = "invalid_request_error", code: str | None = None,
              param: str | None = None, headers: dict[str, str] | None = None) -> None:
        self.set_status(status)
        for k, v in (headers or {}).items():
            self.set_header(k, v)
        self.reply({"error": {"message": message, "type": type_, "param": param, "code": code}})

    def reply(self, payload: Any) -> None:
        assert self.rec is not None
        self.rec.status = self.get_status()
        bucket = self.fake.buckets.get(self.rec.kind)
        if bucket is not None and self.fake.ratelimit_headers:
            for k, v in bucket.headers().items():  # as the reply leaves, as a real server computes them
                self.set_header(k, v)
        self.set_header("Content-Type", "application/json")
        self.set_header("x-request-id", f"req_{len(self.fake.requests)}")
        self.finish(json.dumps(payload))

    async def post(self) -> None:
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError:
            body = self.request.body.decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in self.request.headers.get_all()}  # names in lower case
        kind = self.classify(body)
        operation = self.request.headers.get(OPERATION_HEADER) or kind
        self.rec = Recorded(self.request.path, body, headers, kind, operation)
        self.fake.requests.append(self.rec)

        if self.request.headers.get("Authorization") != f"Bearer {self.fake.api_key}":
            given = (self.request.headers.get("Authorization") or "").removeprefix("Bearer ")
            # Echo the whole key, as a careless compatible server might: the client must scrub it.
            return self.error(401, f"Incorrect API key provided: {given}.", code="invalid_api_key")

        bucket = self.fake.buckets.get(kind)
        wait = bucket.take() if bucket is not None else None
        if wait is not None:
            return self.error(429, f"Rate limit reached for {kind} requests. Please try again in {wait:.3f}s.",
                              type_="requests", code="rate_limit_exceeded",
                              headers={"retry-after-ms": f"{wait * 1000:.0f}", "retry-after": str(math.ceil(wait))})
        fault = next((f for f in self.fake.faults if f.matches(self.rec)), None)
        if fault is not None:
            fault.times -= 1
            self.rec.fault, self.rec.fault_opts = fault.kind, fault.opts
            done = await self.inject(fault)
            if done:
                return
        if self.rec.closed_early:
            return
        latency = self.fake.latency.get(kind)
        if latency:
            await asyncio.sleep(latency)
        await self.answer(body)

    async def inject(self, fault: Fault) -> bool:
        """Apply a fault; True when it wrote the whole reply."""
        k, o = fault.kind, fault.opts
        if k == "429":
            self.error(429, "Rate limit reached for requests. Please try again shortly.", type_="requests",
                       code="rate_limit_exceeded", headers={"retry-after-ms": str(o.get("retry_after_ms", 10))})
        elif k == "insufficient_quota":
            self.error(429, "You exceeded your current quota, please check your plan and billing details.",
                       type_="insufficient_quota", code="insufficient_quota")
        elif k == "500":
            self.error(500, "The server had an error while processing your request.", type_="server_error")
        elif k == "401":
            self.error(401, f"Incorrect API key provided: {self.fake.api_key}.", code="invalid_api_key")
        elif k == "403":
            self.error(403, "You are not allowed to use this model.", type_="permission_error", code="forbidden")
        elif k == "404":
            self.error(404, "The model `no-such-model` does not exist or you do not have access to it.",
                       code="model_not_found")
        elif k == "content_policy":
            self.error(400, "Your request was rejected as a result of our safety system. Your prompt may contain "
                            "text that is not allowed by our safety system.", code="content_policy_violation")
        elif k == "unsupported_temperature":
            self.error(400, "Unsupported value: 'temperature' does not support 0.8 with this model. Only the default "
                            "(1) value is supported.", code="unsupported_value", param="temperature")
        elif k == "garbage":
            assert self.rec is not None
            self.rec.status = 200
            self.set_header("Content-Type", o.get("content_type", "text/html"))
            self.finish(o.get("body", "<html><body>upstream proxy error</body></html>"))
        elif k == "slow":
            assert self.rec is not None
            try:
                await asyncio.wait_for(self.rec.closed.wait(), float(o.get("delay", 5.0)))
            except TimeoutError:
                pass
            return self.rec.closed_early
        else:
            return False  # a fault in the reply's content: answer() reads rec.fault
        return True

    async def answer(self, body: Any) -> None:
        raise NotImplementedError


def _user_prompt(messages: list[dict[str, Any]]) -> str:
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        if m.get("role") == "user" and isinstance(content, str):
            found = re.search(r"<<<\n(.*?)\n>>>", content, re.S)
            return found.group(1) if found else content[:80]
    return "something"


def _images(body: Any) -> int:
    """How many pictures a chat request carries."""
    if not isinstance(body, dict):
        return 0
    return sum(isinstance(p, dict) and p.get("type") == "image_url"
               for m in body.get("messages") or [] if isinstance(m, dict) and isinstance(m.get("content"), list)
               for p in m["content"])


def _has_image(body: Any) -> bool:
    return _images(body) > 0


class ChatHandler(_Base):
    def classify(self, body: Any) -> str:
        return "vision" if _has_image(body) else "llm"

    async def answer(self, body: Any) -> None:
        assert self.rec is not None
        n = self.fake.next_number()
        messages = body.get("messages") or []
        user = _user_prompt(messages)
        seed = body.get("seed") or 0
        op = self.rec.operation
        fault = self.rec.fault
        finish, refusal = "stop", None
        asked = (body.get("response_format") or {}).get("type") if isinstance(body.get("response_format"), dict) else None
        if asked and self.fake.json_object == "none":
            return self.error(400, f"Unsupported parameter: 'response_format' ({asked}) is not supported.",
                              param="response_format", code="unsupported_parameter")
        if asked == "json_schema" and self.fake.json_object == "only":
            return self.error(400, "Invalid parameter: 'response_format' of type 'json_schema' is not supported with "
                                   "this model.", param="response_format")
        if self.rec.kind == "vision" and _images(body) == 2:
            content = {
                "first": json.dumps({"winner": "first", "reason": "The first picture shows the request better."}),
                "second": json.dumps({"winner": "second", "reason": "The second picture shows the request better."}),
                "garbage": "Both pictures have their merits; it is hard to say.",
            }[self.fake.judge]
            if asked == "json_object" and self.fake.json_object == "ignore":
                content = json.dumps({"status": "ok", "result": "processed", "id": n})
        elif self.rec.kind == "vision":
            h = int(hashlib.sha256(f"{seed}-{n}".encode()).hexdigest(), 16)
            scores = {
                "alignment": 40 + h % 56,
                "aesthetics": round(3 + (h // 97) % 70 / 10, 1),
                "analysis": "The picture shows the requested subject with a clear focal point.",
                "strengths": ["clear subject", "pleasant colour"],
                "weaknesses": ["flat background"],
            }
            content: str | None = json.dumps(scores)
            if fault == "fenced":
                content = "Here is my evaluation:\n```json\n" + json.dumps(scores, indent=2) + "\n```\nThanks."
            elif fault == "malformed":
                content = "The alignment is quite good, I would say around eighty, and it looks nice."
            elif asked == "json_object" and self.fake.json_object == "ignore":
                content = json.dumps({"status": "ok", "result": "processed", "id": n})  # llmock's generic object
        elif op.startswith("expand-what"):
            content = f"{user}, seen in a vivid, specific scene (variant {n})"
        elif op.startswith("expand-how"):
            content = f"soft golden-hour light, wide-angle composition, warm palette, oil on canvas (variant {n})"
        elif op.startswith("refine-what"):
            content = f"{user}, with the critique addressed: a clearer subject and a calmer setting (v{n})"
        elif op.startswith("refine-how"):
            content = f"crisp rim lighting, rule-of-thirds composition, teal and amber palette (v{n})"
        elif op == "combine":
            content = f"Prompt: \"{user} -- combined rendering {n}\""
        elif op.startswith("critique"):
            content = "The subject is too small and the mood is unclear. Make the subject larger; name the time of day."
        elif op == "rephrase":
            content = "A gentle, family-friendly scene of the same subject."
        else:
            content = f"reply {n}"
        if fault == "vision_reply" or fault == "llm_reply":
            content = self.rec.fault_opts.get("content")
        elif fault == "empty":
            content = ""
        elif fault == "content_filter":
            content, finish = None, "content_filter"
        elif fault == "refusal":
            content, refusal = None, "I'm sorry, I can't help with that request."
        prompt_tokens = max(1, len(json.dumps(messages)) // 4)
        completion_tokens = max(1, len(content or "") // 4)
        self.reply(
            {
                "id": f"chatcmpl-{n}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "unknown"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": refusal},
                        "finish_reason": finish,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )


class ImagesHandler(_Base):
    kind = "image"

    async def answer(self, body: Any) -> None:
        n = self.fake.next_number()
        png = make_png(seed=n) if isinstance(body, dict) and body.get("n", 1) else self.fake.png
        item: dict[str, Any]
        if self.fake.image_reply == "url":
            self.fake.files[f"img-{n}.png"] = png
            item = {"url": self.fake.image_url or f"http://127.0.0.1:{self.fake.port}/files/img-{n}.png"}
        else:
            item = {"b64_json": base64.b64encode(png).decode("ascii")}
        if isinstance(body, dict) and str(body.get("model", "")).startswith("dall-e-3"):
            item["revised_prompt"] = f"A detailed painting of {body.get('prompt')}"  # as dall-e-3 answers
        self.reply(
            {
                "created": int(time.time()),
                "data": [item],
                "usage": {
                    "input_tokens": 40,
                    "output_tokens": 272,
                    "total_tokens": 312,
                    "input_tokens_details": {"image_tokens": 0, "text_tokens": 40},
                },
            }
        )


class FileHandler(tornado.web.RequestHandler):
    """Pictures that image replies link to (GET, no key: as a CDN serves them)."""

    def initialize(self, fake: FakeOpenAI) -> None:
        self.fake = fake

    def get(self, name: str) -> None:
        data = self.fake.files.get(name)
        if data is None:
            raise tornado.web.HTTPError(404)
        self.set_header("Content-Type", "image/png")
        self.finish(data)


class NotFoundHandler(_Base):
    kind = "other"

    async def answer(self, body: Any) -> None:
        self.error(404, f"Unknown path {self.request.path}", code="not_found")


@pytest_asyncio.fixture
async def openai_server():
    """A fresh FakeOpenAI listening on 127.0.0.1, on the test's event loop."""
    fake = await FakeOpenAI().start()
    try:
        yield fake
    finally:
        await fake.stop()
