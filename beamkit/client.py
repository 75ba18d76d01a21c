"""An async Python client of a beamkit server (standalone, or the Jupyter extension)::

    from beamkit.client import Client

    async with Client("http://127.0.0.1:3000") as client:       # or "http://host:8888/beamkit", token=...
        job_id = await client.start("a forest at dawn", N=6, M=2)
        async for event in client.follow(job_id):              # every event, from the first, to the end
            print(event["type"])
        print(await client.get_job(job_id))

Errors from the server are raised as ``BeamkitError`` with the server's code.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from . import events as ev
from .errors import BeamkitError, ErrorCode
from .events import JobStatus
from .state import SessionState

API_KEY_HEADER = "X-OpenAI-API-Key"


class Client:
    def __init__(
        self,
        url: str = "http://127.0.0.1:3000",
        *,
        token: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        reconnects: int = 3,
    ) -> None:
        """``url``: the server's root (``http://127.0.0.1:3000``) or, inside Jupyter, the
        extension's (``http://127.0.0.1:8888/beamkit``). ``api_key`` is sent with each job
        you start (``X-OpenAI-API-Key``) and is kept nowhere else. ``reconnects``: how many
        times ``follow`` opens a dropped socket again."""
        self.url = url.rstrip("/")
        self.token = token
        self._api_key = api_key
        self.timeout = timeout
        self.reconnects = reconnects
        self._http = AsyncHTTPClient(force_instance=True)

    def __repr__(self) -> str:  # never shows the token or the key
        return f"<beamkit.client.Client {self.url}>"

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- REST ---------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def _fetch(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        request = HTTPRequest(
            self.url + path,
            method=method,
            headers={**self._headers(), **(headers or {}), **({"Content-Type": "application/json"} if body is not None else {})},
            body=json.dumps(body) if body is not None else (b"" if method == "POST" else None),
            request_timeout=self.timeout,
        )
        try:
            response = await self._http.fetch(request)
        except HTTPClientError as exc:
            raise _error_of(exc) from None
        if response.headers.get("Content-Type", "").startswith("application/json"):
            return json.loads(response.body)
        return response.body

    async def health(self) -> dict[str, Any]:
        return await self._fetch("GET", "/health")

    async def start(self, prompt: str, **params: Any) -> str:
        """Start a job (parameters as in ``beamkit.start``: N, M, iterations, alpha, temperature,
        seed, providers); returns its jobId."""
        headers = {API_KEY_HEADER: self._api_key} if self._api_key else None
        answer = await self._fetch("POST", "/api/beam-search", {"prompt": prompt, **params}, headers)
        return answer["jobId"]

    async def get_job(self, job_id: str) -> dict[str, Any]:
        return await self._fetch("GET", f"/api/job/{job_id}")

    async def list_jobs(self) -> list[dict[str, Any]]:
        return (await self._fetch("GET", "/api/jobs"))["jobs"]

    async def cancel(self, job_id: str) -> dict[str, Any]:
        return await self._fetch("POST", f"/api/job/{job_id}/cancel")

    async def image(self, image_id: str, size: int | None = None) -> bytes:
        query = f"?{urlencode({'size': size})}" if size is not None else ""
        return await self._fetch("GET", f"/api/images/{image_id}{query}")

    # -- WebSocket ----------------------------------------------------------------------------

    @property
    def ws_url(self) -> str:
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path + "/ws", "", ""))

    async def connect(self) -> WebSocketClientConnection:
        """A raw WebSocket to the server, for your own messages."""
        request = HTTPRequest(self.ws_url, headers=self._headers(), connect_timeout=self.timeout)
        try:
            return await websocket_connect(request)
        except HTTPClientError as exc:
            raise _error_of(exc) from None

    async def follow(self, job_id: str) -> AsyncIterator[ev.Event]:
        """Every event of the job, typed (``beamkit.events``), from its first, then live ones,
        until ``complete`` or ``error``.

        A finished job is replayed from its session. If the socket drops, it is opened again
        (``reconnects`` times) and the replay picks up where it stopped, since every
        subscriber is sent the same sequence. Unknown job: BeamkitError NOT_FOUND. A message
        of a known type that is malformed is skipped (it still counts in the sequence);
        one of a type this version does not know comes as ``UnknownEvent``.
        """
        seen = 0
        attempts = 0
        while True:
            ws = await self.connect()
            try:
                await ws.write_message(json.dumps({"type": "subscribe", "jobId": job_id}))
                index = 0
                while True:
                    text = await ws.read_message()
                    if text is None:
                        break  # dropped: reconnect below
                    try:
                        msg = json.loads(text)
                        event: ev.Event | None = ev.decode(msg)
                    except ValueError:
                        msg, event = None, None
                    if not isinstance(msg, dict) or msg.get("jobId") != job_id:
                        continue
                    if isinstance(event, (ev.SubscribedEvent, ev.UnsubscribedEvent, ev.PongEvent)):
                        continue
                    if isinstance(event, ev.ErrorEvent) and index == 0 and event.code == ErrorCode.NOT_FOUND:
                        raise BeamkitError.from_code(event.code, event.message)
                    index += 1
                    if index <= seen:
                        continue  # already yielded before the socket dropped
                    seen = index
                    if event is None:
                        continue
                    yield event
                    if ev.is_terminal(event):
                        return
            finally:
                ws.close()
            attempts += 1
            if attempts > self.reconnects:
                raise BeamkitError(f"lost the connection to {self.ws_url} while following {job_id}", ErrorCode.PROVIDER_ERROR)

    async def state(self, job_id: str) -> SessionState:
        """Follow the job to its end and return what its events say (``beamkit.state``)."""
        state = SessionState(job_id)
        async for event in self.follow(job_id):
            state.apply(event)
        return state

    async def wait(self, job_id: str) -> dict[str, Any]:
        """Follow the job to its end; return the ``complete`` event's result, or raise its error
        (``JobCancelled`` for a cancelled job)."""
        state = await self.state(job_id)
        if state.status == JobStatus.COMPLETED and state.result is not None:
            return state.result
        if state.error is not None:
            raise _raised(state.error)
        raise BeamkitError(f"{job_id} ended without a result", ErrorCode.INTERNAL_ERROR)


def _raised(error: dict[str, Any]) -> BeamkitError:
    """The exception of a job's error as its event has it; a code this version does not know is INTERNAL_ERROR."""
    code, message = str(error.get("code")), str(error.get("message", ""))
    try:
        return BeamkitError.from_code(code, message)
    except ValueError:
        return BeamkitError(f"{message} [{code}]", ErrorCode.INTERNAL_ERROR)


def _error_of(exc: HTTPClientError) -> BeamkitError:
    body: dict[str, Any] = {}
    if exc.response is not None and exc.response.body:
        try:
            body = json.loads(exc.response.body)
        except ValueError:
            body = {}
    if not isinstance(body, dict):
        body = {}
    message = body.get("error") or body.get("message") or str(exc)
    code = body.get("code") or {401: ErrorCode.AUTH_ERROR, 403: ErrorCode.AUTH_ERROR, 404: ErrorCode.NOT_FOUND,
                                 429: ErrorCode.RATE_LIMIT}.get(exc.code, ErrorCode.INTERNAL_ERROR)
    context = {k: v for k, v in body.items() if k not in ("error", "code", "message")}
    return BeamkitError.from_code(code, str(message), status=exc.code, **context)
