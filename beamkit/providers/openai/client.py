"""The roles, each over its own ``AsyncOpenAI`` client (its own base URL, key and model).

Retries of 5xx, 408, 409 and timeouts are the client's own (``max_retries``). A 429 inside an
engine call is left to the engine's adaptive limiter (engine/limits.py): every reply's
``x-ratelimit-*`` headers go to it, a 429 is marked ``x-should-retry: false`` so that the client
raises at once, and the limiter pauses the kind for the ``retry-after`` and retries the call. Outside
an engine call (a role object used alone) the client retries 429s itself, as before.

This module adds only what the client cannot know: one rephrased retry after a content-policy
refusal, one re-ask after an unreadable vision reply (a comparison is not re-asked: the
tournament counts an unreadable verdict as no vote), dropping a parameter that a model says it
does not take, stepping down from ``json_schema`` to ``json_object`` to plain text for a judge
that refuses one (remembered per model), and fetching an image that a server answers with a
``url`` (http and https only, size-capped). Cancelling the calling task cancels the HTTP request
in flight.
"""

from __future__ import annotations

import base64
import functools
import importlib
import io
import logging
import ssl
import time
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import openai
from openai import AsyncOpenAI

from ...candidate import Candidate, Dimension
from ...engine import limits
from ...errors import AuthError, BeamkitError, ErrorCode, ProviderError
from ..base import GeneratedImage, Verdict, VisionResult
from . import prompts
from .config import OpenAIConfig
from .errors import ContentPolicyRefusal, detail_of, is_content_policy, scrub, to_beamkit, unsupported_param
from .parse import ReplyError, clean_text, parse_scores, parse_verdict
from .pricing import UsageCounter

log = logging.getLogger("beamkit.providers.openai")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: parameters a model may refuse; on such a 400 they are dropped (or renamed) for that model and the call re-sent
_ADAPTABLE = {"temperature", "seed", "max_completion_tokens", "max_tokens", "top_p"}
OPERATION_HEADER = "X-Beamkit-Operation"
#: what the judge is asked to answer in, best first; a server that refuses one gets the next
FORMATS: tuple[str | None, ...] = ("json_schema", "json_object", None)
#: the largest picture fetched from an image URL
MAX_IMAGE_BYTES = 50 * 1024 * 1024


def _transport() -> ModuleType:
    """The HTTP library the installed openai client sends through (httpx, or httpx2 in later releases)."""
    for cls in openai.DefaultAsyncHttpxClient.__mro__:
        root = cls.__module__.split(".")[0]
        if root not in ("openai", "builtins"):
            return importlib.import_module(root)
    raise RuntimeError("the openai client's HTTP library was not found")  # pragma: no cover


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every client of the process, made as the HTTP library makes its default:
    loading the CA store takes 0.1-0.3 s, which three clients a job would otherwise pay each time."""
    context: ssl.SSLContext = _transport().create_ssl_context()
    return context


def http_client(**kwargs: Any) -> Any:
    """An HTTP client with the openai client's defaults and the process's TLS context."""
    return openai.DefaultAsyncHttpxClient(verify=_tls(), **kwargs)


async def _on_response(response: Any) -> None:
    """Every reply's rate-limit headers go to the engine's limiter of the call, which also takes its 429s."""
    if limits.current() is None:
        return
    limits.observe(response.headers)
    if response.status_code == 429:
        response.headers["x-should-retry"] = "false"  # the client's own retry would hold the slot, blind


class Backend:
    """One role's client and usage counter, and the calls every role makes."""

    def __init__(self, config: OpenAIConfig) -> None:
        self.config = config
        kwargs: dict[str, Any] = {
            "api_key": config.api_key,
            "timeout": config.timeout,
            "max_retries": config.max_retries,
        }
        if config.base_url:
            kwargs["base_url"] = config.base_url
        if config.organization:
            kwargs["organization"] = config.organization
        if config.project:
            kwargs["project"] = config.project
        kwargs["http_client"] = http_client(event_hooks={"response": [_on_response]})
        self.client = AsyncOpenAI(**kwargs)
        self.usage = UsageCounter(config.prices)
        self._dropped: dict[str, set[str]] = {}  # model -> parameters it refused
        self._format: dict[str, int] = {}  # model -> index in FORMATS of the judge's answer format that works
        self._fetcher: Any = None  # an HTTP client for image URLs, made on first use
        self._closed = False

    def __repr__(self) -> str:  # never show the key
        return f"<beamkit openai {self.config.role} backend {self.config.server}>"

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self.client.close()
            if self._fetcher is not None:
                await self._fetcher.aclose()

    def _error(self, err: BaseException, what: str) -> BeamkitError:
        limited = isinstance(err, openai.RateLimitError)
        # Under the engine's limiter a 429 was not retried by the client: the limiter counts its own tries.
        client_retried = not limited or limits.current() is None
        retries = (self.config.max_retries if client_retried and isinstance(
            err, (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError)) else None)
        mapped = to_beamkit(err, what=what, secrets=[self.config.api_key], retries=retries)
        response = getattr(err, "response", None)
        if limited and response is not None:
            pause = limits.retry_after(response.headers)
            if pause is not None:
                mapped.context["retry_after"] = pause
        return mapped

    # --- chat ---------------------------------------------------------------------------------

    async def chat(self, messages: list[dict[str, Any]], *, model: str, operation: str, seed: int,
                   temperature: float | None, max_tokens: int | None, json_mode: bool = False,
                   schema: dict[str, Any] | None = None) -> str:
        """One chat completion (after any parameter adaptation); its text, or a mapped error.

        ``json_mode`` asks for JSON, stepping down ``FORMATS``; ``schema`` is the ``json_schema``
        format's (the vision scores' when not given).

        A refusal (HTTP 400 on content grounds, a ``content_filter`` finish, or a ``refusal``)
        raises :class:`ContentPolicyRefusal` so that the caller can rephrase once.
        """
        dropped = self._dropped.setdefault(model, set())
        what = f"{operation} ({model})"
        for _ in range(len(_ADAPTABLE) + len(FORMATS)):
            params: dict[str, Any] = {"model": model, "messages": messages}
            if temperature is not None and "temperature" not in dropped:
                params["temperature"] = temperature
            if "seed" not in dropped:
                params["seed"] = seed
            if max_tokens is not None:
                if "max_completion_tokens" not in dropped:
                    params["max_completion_tokens"] = max_tokens
                elif "max_tokens" not in dropped:
                    params["max_tokens"] = max_tokens
            answer_format = FORMATS[self._format.get(model, 0)] if json_mode and self.config.json_mode else None
            if answer_format == "json_schema":
                params["response_format"] = {"type": "json_schema", "json_schema": schema or prompts.SCORES_SCHEMA}
            elif answer_format == "json_object":
                params["response_format"] = {"type": "json_object"}
            try:
                completion = await self.client.chat.completions.create(
                    **params, extra_headers={OPERATION_HEADER: operation}
                )
            except openai.BadRequestError as err:
                if is_content_policy(err):
                    raise ContentPolicyRefusal(scrub(detail_of(err), [self.config.api_key])) from None
                if answer_format is not None and _refuses_format(err):
                    log.info("model %s does not take response_format %s; asking for %s", model, answer_format,
                             FORMATS[self._format.get(model, 0) + 1] or "plain text")
                    self._format[model] = self._format.get(model, 0) + 1
                    continue
                param = unsupported_param(err)
                if param in _ADAPTABLE and param in params and param not in dropped:
                    log.info("model %s does not take '%s'; sending without it", model, param)
                    dropped.add(param)
                    continue
                raise self._error(err, what) from None
            except openai.APIError as err:
                raise self._error(err, what) from None
            except (ValueError, TypeError) as err:  # a 200 whose body is not the API's JSON
                raise _unreadable(what, err) from None
            return self._chat_result(completion, model, what)
        raise ProviderError(f"OpenAI {what} failed: the server refused every parameter variant")

    async def fetch_image(self, url: str, what: str) -> bytes:
        """The picture at an image reply's ``url``: http or https only, at most ``MAX_IMAGE_BYTES``,
        within the role's timeout."""
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            shown = f"a '{scheme}:' URL" if scheme else "a URL with no scheme"
            raise ProviderError(f"OpenAI {what} answered with {shown}; only http and https image URLs are fetched")
        http = _transport()
        if self._fetcher is None:
            self._fetcher = http_client(timeout=self.config.timeout, follow_redirects=True)
        try:
            async with self._fetcher.stream("GET", url) as reply:
                if reply.status_code != 200:
                    raise ProviderError(f"OpenAI {what}: fetching its image URL answered HTTP {reply.status_code}")
                declared = reply.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > MAX_IMAGE_BYTES:
                    raise ProviderError(f"OpenAI {what}: its image URL holds {int(declared)} bytes, more than "
                                        f"the {MAX_IMAGE_BYTES} fetched")
                chunks, size = [], 0
                async for chunk in reply.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_IMAGE_BYTES:
                        raise ProviderError(f"OpenAI {what}: its image URL holds more than the {MAX_IMAGE_BYTES} "
                                            "bytes fetched")
                    chunks.append(chunk)
        except http.TimeoutException:
            raise ProviderError(f"OpenAI {what}: fetching its image URL took longer than {self.config.timeout:g} s",
                                ErrorCode.TIMEOUT) from None
        except http.HTTPError as exc:
            raise ProviderError(f"OpenAI {what}: its image URL could not be fetched ({type(exc).__name__}: "
                                f"{scrub(str(exc), [self.config.api_key])})") from None
        return b"".join(chunks)

    def _chat_result(self, completion: Any, model: str, what: str) -> str:
        usage = getattr(completion, "usage", None)
        self.usage.add(
            model,
            input_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            output_tokens=getattr(usage, "completion_tokens", 0) or 0,
        )
        choices = getattr(completion, "choices", None) or []
        if not choices:
            raise ProviderError(f"OpenAI {what} returned no choices")
        choice = choices[0]
        message = getattr(choice, "message", None)
        refusal = getattr(message, "refusal", None)
        if getattr(choice, "finish_reason", None) == "content_filter" or refusal:
            raise ContentPolicyRefusal(str(refusal or "the reply was withheld by the content filter"))
        content = getattr(message, "content", None)
        return content if isinstance(content, str) else ""

    async def chat_with_policy_retry(self, messages: list[dict[str, Any]], *, what: str, **kwargs: Any) -> str:
        """``chat``; after a content-policy refusal, once more with softened wording; then CONTENT_POLICY."""
        try:
            return await self.chat(messages, **kwargs)
        except ContentPolicyRefusal:
            log.info("%s was refused on content grounds; retrying once with softened wording", what)
        try:
            return await self.chat(prompts.softened(messages), **{**kwargs, "seed": kwargs["seed"] + 1})
        except ContentPolicyRefusal as refusal:
            raise ProviderError(
                f"OpenAI {what} was refused by the content policy, also after rephrasing: {refusal.detail}",
                ErrorCode.CONTENT_POLICY,
            ) from None

    # --- images -------------------------------------------------------------------------------

    async def generate_image(self, prompt: str, *, seed: int) -> tuple[bytes, dict[str, Any]]:
        c = self.config
        model = c.model
        params: dict[str, Any] = {"model": model, "prompt": prompt, "n": 1}
        if c.size:
            params["size"] = c.size
        if c.quality:
            params["quality"] = c.quality
        if not model.startswith("gpt-image") and not model.startswith("chatgpt-image"):
            params["response_format"] = "b64_json"  # GPT image models always answer in base64 and refuse this
        if c.send_seed:
            params["extra_body"] = {"seed": seed}
        try:
            response = await self.client.images.generate(**params, extra_headers={OPERATION_HEADER: "image"})
        except openai.BadRequestError as err:
            if is_content_policy(err):
                raise ContentPolicyRefusal(scrub(detail_of(err), [c.api_key])) from None
            raise self._error(err, f"image generation ({model})") from None
        except openai.APIError as err:
            raise self._error(err, f"image generation ({model})") from None
        except (ValueError, TypeError) as err:
            raise _unreadable(f"image generation ({model})", err) from None
        usage = getattr(response, "usage", None)
        self.usage.add(
            model,
            input_tokens=getattr(usage, "input_tokens", 0) or 0,
            output_tokens=getattr(usage, "output_tokens", 0) or 0,
            images=1,
            quality=c.quality,
            size=c.size,
        )
        data = getattr(response, "data", None) or []
        b64 = getattr(data[0], "b64_json", None) if data else None
        url = getattr(data[0], "url", None) if data else None
        if b64:
            try:
                raw = base64.b64decode(b64, validate=False)
            except ValueError as exc:
                raise ProviderError(f"OpenAI image generation ({model}) returned bad base64: {exc}") from None
        elif isinstance(url, str) and url:
            raw = await self.fetch_image(url, f"image generation ({model})")  # LiteLLM's, llmock's gpt-image
        else:
            raise ProviderError(f"OpenAI image generation ({model}) returned no image (neither b64_json nor url)")
        meta: dict[str, Any] = {"model": getattr(response, "model", None) or model, "size": c.size, "quality": c.quality}
        if c.send_seed:
            meta["seed"] = seed
        revised = getattr(data[0], "revised_prompt", None)
        if revised:
            meta["revisedPrompt"] = revised
        return to_png(raw, model), meta


def _refuses_format(err: BaseException) -> bool:
    """A 400 that says the model does not take the response_format asked for."""
    detail = detail_of(err).lower()
    return (getattr(err, "param", None) in ("response_format", "response_format.type")
            or unsupported_param(err) == "response_format" or "response_format" in detail or "json_schema" in detail)


def _unreadable(what: str, err: BaseException) -> ProviderError:
    return ProviderError(f"OpenAI {what} returned a body that is not the API's JSON ({type(err).__name__})")


def to_png(raw: bytes, model: str = "image model") -> bytes:
    """PNG bytes as they are; another image format converted with Pillow; anything else an error."""
    if raw.startswith(PNG_MAGIC):
        return raw
    try:
        from PIL import Image

        with Image.open(io.BytesIO(raw)) as img:
            out = io.BytesIO()
            img.save(out, format="PNG")
            return out.getvalue()
    except Exception as exc:  # noqa: BLE001 - anything Pillow cannot read is not an image
        raise ProviderError(f"OpenAI {model} returned data that is not an image ({type(exc).__name__})") from None


def _downscale_png(png: bytes, longest: int) -> bytes:
    """The image at most ``longest`` pixels on its longer side (saves upload and tokens at detail=low)."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(png)) as source:
            if max(source.size) <= longest:
                return png
            img = source.convert("RGB")
            img.thumbnail((longest, longest))
            out = io.BytesIO()
            img.save(out, format="PNG")
            return out.getvalue()
    except Exception:  # noqa: BLE001 - send the original rather than fail here
        return png


class OpenAILLM:
    def __init__(self, backend: Backend) -> None:
        self._b = backend

    def __repr__(self) -> str:
        return f"<OpenAILLM {self._b.config.model}>"

    async def _text(self, operation: str, messages: list[dict[str, Any]], seed: int) -> str:
        c = self._b.config
        kwargs = dict(model=c.model, operation=operation, temperature=c.temperature, max_tokens=c.max_tokens)
        text = await self._b.chat_with_policy_retry(messages, what=f"{operation} ({c.model})", seed=seed, **kwargs)
        try:
            return clean_text(text)
        except ReplyError:
            pass
        # An empty reply: ask once more with another seed, then give up with the reason.
        text = await self._b.chat_with_policy_retry(messages, what=f"{operation} ({c.model})", seed=seed + 7, **kwargs)
        try:
            return clean_text(text)
        except ReplyError as exc:
            raise ProviderError(f"OpenAI {operation} ({c.model}) gave an unusable reply twice: {exc}") from None

    async def expand(self, prompt: str, dimension: Dimension, *, seed: int) -> str:
        return await self._text(f"expand-{dimension}", prompts.expand(prompt, dimension), seed)

    async def refine(self, prompt: str, dimension: Dimension, critique: str, user_prompt: str, *, seed: int) -> str:
        return await self._text(f"refine-{dimension}", prompts.refine(prompt, dimension, critique, user_prompt), seed)

    async def combine(self, what: str, how: str, *, seed: int) -> str:
        return await self._text("combine", prompts.combine(what, how), seed)

    async def critique(self, candidate: Candidate, dimension: Dimension, user_prompt: str, *, seed: int) -> str:
        return await self._text(f"critique-{dimension}", prompts.critique(candidate, dimension, user_prompt), seed)


class OpenAIImage:
    def __init__(self, backend: Backend) -> None:
        self._b = backend

    def __repr__(self) -> str:
        return f"<OpenAIImage {self._b.config.model}>"

    async def generate(self, prompt: str, *, seed: int) -> GeneratedImage:
        started = time.monotonic()
        try:
            png, meta = await self._b.generate_image(prompt, seed=seed)
        except ContentPolicyRefusal as first:
            softer = await self._rephrase(prompt, seed)
            try:
                png, meta = await self._b.generate_image(softer, seed=seed)
            except ContentPolicyRefusal as second:
                raise ProviderError(
                    f"OpenAI image generation ({self._b.config.model}) was refused by the content policy, "
                    f"also after rephrasing: {second.detail or first.detail}",
                    ErrorCode.CONTENT_POLICY,
                ) from None
            meta = {**meta, "rephrased": True, "promptUsed": softer}
        meta["seconds"] = round(time.monotonic() - started, 3)
        return GeneratedImage(png=png, metadata=meta)

    async def _rephrase(self, prompt: str, seed: int) -> str:
        """A softened prompt from the chat model, or by word substitution if that fails too."""
        c = self._b.config
        if not c.rephrase_model:
            return prompts.soften(prompt)
        try:
            text = await self._b.chat(
                prompts.rephrase_for_image(prompt), model=c.rephrase_model, operation="rephrase", seed=seed,
                temperature=c.temperature, max_tokens=c.max_tokens or 400,
            )
            return clean_text(text)
        except BeamkitError as exc:
            # An image-only server may have no such chat model (a 404): words are swapped instead. A bad key
            # would fail the image call as well, so it ends the job here already.
            if exc.fatal and isinstance(exc, AuthError):
                raise
        except (ContentPolicyRefusal, ReplyError):
            pass
        return prompts.soften(prompt)


class OpenAIVision:
    def __init__(self, backend: Backend) -> None:
        self._b = backend

    def __repr__(self) -> str:
        return f"<OpenAIVision {self._b.config.model}>"

    def _data_url(self, image: bytes) -> str:
        png = to_png(image, "vision input")
        if self._b.config.detail == "low":
            png = _downscale_png(png, 512)
        return "data:image/png;base64," + base64.b64encode(png).decode("ascii")

    async def analyze(self, image: bytes, user_prompt: str, *, seed: int) -> VisionResult:
        c = self._b.config
        messages = prompts.vision(user_prompt, self._data_url(image), c.detail)
        kwargs = dict(
            model=c.model, operation="vision", temperature=c.temperature,
            max_tokens=c.max_tokens, json_mode=True,
        )
        what = f"vision analysis ({c.model})"
        reply = await self._b.chat_with_policy_retry(messages, what=what, seed=seed, **kwargs)
        try:
            return parse_scores(reply)
        except ReplyError as exc:
            first_reason = str(exc)
            log.info("%s: unreadable reply (%s); asking once more", what, first_reason)
        again = [*messages, {"role": "assistant", "content": reply or ""}, prompts.vision_retry(first_reason)]
        reply = await self._b.chat_with_policy_retry(again, what=what, seed=seed + 1, **kwargs)
        try:
            return parse_scores(reply)
        except ReplyError as exc:
            raise ProviderError(
                f"OpenAI {what} gave no readable scores, also when asked again: {exc} (first reply: {first_reason})"
            ) from None

    async def compare(self, image_a: bytes, image_b: bytes, user_prompt: str, *, seed: int) -> Verdict:
        """Which of two pictures better fits the user's prompt: ``"a"`` the first given, ``"b"`` the second.

        One chat call carries both pictures, labelled first and second, and asks for
        ``{"winner": "first"|"second", "reason": ...}`` with the vision analysis's format step-down.
        An unreadable answer is a ``PROVIDER_ERROR`` with the reason (the tournament counts no vote).
        """
        c = self._b.config
        messages = prompts.compare(user_prompt, self._data_url(image_a), self._data_url(image_b), c.detail)
        what = f"comparison ({c.model})"
        reply = await self._b.chat_with_policy_retry(
            messages, what=what, seed=seed, model=c.model, operation="compare", temperature=c.temperature,
            max_tokens=c.max_tokens, json_mode=True, schema=prompts.VERDICT_SCHEMA,
        )
        try:
            return parse_verdict(reply)
        except ReplyError as exc:
            raise ProviderError(f"OpenAI {what} gave no readable verdict: {exc}") from None
