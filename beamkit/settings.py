"""Every server setting, once: ``BeamkitSettings``, held by ``beamkit serve`` and the Jupyter extension.

Each default is written here and only here; the Python API and the job manager take
theirs from the constants below. ``beamkit serve --help-all`` lists the settings, and
``python -m beamkit.server.settings_doc`` writes the tables of docs/server.md and
docs/jupyter.md from them.

Where a setting is set, later wins: its default, a config file (``c.BeamkitSettings.max_jobs = 2``
in ``beamkit serve --config FILE`` or ``jupyter_server_config.py``), the command line.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from traitlets import Dict, Integer, List, TraitError, TraitType, Unicode, default, validate
from traitlets.config import Configurable

DEFAULT_OUTPUT = "output"
DEFAULT_PROVIDERS = "offline"
DEFAULT_MAX_JOBS = 4
DEFAULT_MAX_CONNECTIONS = 512
DEFAULT_MAX_QUEUE = 1000
#: bytes a WebSocket client may have waiting (live messages, replays, the socket's buffer)
DEFAULT_MAX_PENDING_BYTES = 64 * 1024 * 1024
#: bytes of sessions read back for replays that the server holds in memory, for all clients together
DEFAULT_REPLAY_MEMORY = 256 * 1024 * 1024
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000
#: the environment variable that gives ``token`` when nothing else does
TOKEN_ENV = "BEAMKIT_TOKEN"

#: settings that only ``beamkit serve`` reads: inside Jupyter, Jupyter's own address, auth and origins apply
STANDALONE_ONLY = ("host", "port", "token", "allow_origins")


class Providers(TraitType[Any, Any]):
    """A provider name for every role, or a mapping of role to provider name.

    On the command line: ``offline``, or ``llm=openai,image=offline,vision=openai``.
    """

    info_text = "a provider name, or a mapping of role to provider name"

    def validate(self, obj: Any, value: Any) -> Any:
        from .errors import InvalidRequest
        from .providers.base import check_providers  # the rule a job's `providers` follows, so a default can be no worse

        if isinstance(value, str) and "=" in value:
            value = _providers_from_text(value)
        try:
            return check_providers(value)
        except InvalidRequest as exc:
            raise TraitError(exc.message) from None

    def from_string(self, s: str) -> Any:
        # traitlets keeps the text when this raises, and validate() then says what is wrong with it
        return _providers_from_text(s)


def _providers_from_text(text: str) -> Any:
    from .providers.cli import parse_providers  # the one parser of this form, shared with `beamkit run`

    try:
        return parse_providers(text)
    except argparse.ArgumentTypeError as exc:
        raise TraitError(str(exc)) from None


class ProviderSettings(Dict):
    """Settings by provider name: ``{"openai": {"base_url": ..., "image": {"model": ...}}}``.

    On the command line each item is ``PROVIDER.NAME=VALUE`` or ``PROVIDER.ROLE.NAME=VALUE``
    (repeatable); values stay text there, and each provider reads them as its declared type.
    """

    info_text = "a dict of provider name to a dict of its settings"

    def validate(self, obj: Any, value: Any) -> Any:
        if isinstance(value, list):  # command-line items that from_string_list could not read: say why
            value = self.from_string_list(value)
        value = super().validate(obj, value)
        for name, settings in value.items():
            if not isinstance(name, str) or not isinstance(settings, dict):
                raise TraitError(f"provider_settings[{name!r}] must be a dict of that provider's settings, "
                                 f"not {type(settings).__name__}")
        return value

    def from_string_list(self, s_list: list[str]) -> Any:
        from .providers.cli import parse_set  # `beamkit run --set` reads ROLE.NAME=VALUE the same way

        by_provider: dict[str, list[str]] = {}
        for item in s_list:
            provider, dot, rest = item.partition(".")
            if not dot or not provider.strip() or "=" not in rest:
                raise TraitError(f"provider setting {item!r} is not PROVIDER.NAME=VALUE "
                                 "(e.g. openai.base_url=http://127.0.0.1:8000/v1, openai.image.model=NAME)")
            by_provider.setdefault(provider.strip(), []).append(rest)
        try:
            return {provider: parse_set(items) for provider, items in by_provider.items()}
        except argparse.ArgumentTypeError as exc:
            raise TraitError(str(exc)) from None


class BeamkitSettings(Configurable):
    """The settings of a beamkit server (``c.BeamkitSettings.<name>``).

    Each trait's ``flag`` tag is its ``beamkit serve`` option; those named in
    ``STANDALONE_ONLY`` do not apply inside Jupyter.
    """

    output = Unicode(DEFAULT_OUTPUT, help=(
        "Folder of sessions ({output}/sessions/{jobId}/). A relative path is taken from the working directory "
        "(beamkit serve) or from the server's root_dir (Jupyter).")).tag(config=True, flag="output")
    providers = Providers(DEFAULT_PROVIDERS, help=(
        "Providers of jobs whose request names none: one name for every role, or one per role "
        "({'llm': 'openai', 'image': 'offline', 'vision': 'openai'}; on the command line "
        "llm=openai,image=offline,vision=openai).")).tag(config=True, flag="providers")
    provider_settings = ProviderSettings(help=(
        "Settings of each provider, by its name, given to every job that uses it: "
        "{'openai': {'base_url': 'http://127.0.0.1:8000/v1', 'limits': {'image': {'per_minute': 5}}}} "
        "(the keys are those of docs/providers.md; per role as {'openai': {'image': {'model': ...}}}). "
        "On the command line PROVIDER.NAME=VALUE or PROVIDER.ROLE.NAME=VALUE, repeatable. A setting sent with a request (an API key header) wins over one set here."
    )).tag(config=True, flag="provider-setting")
    max_jobs = Integer(DEFAULT_MAX_JOBS, help="Jobs that may run at once; one more is a 429 RATE_LIMIT.").tag(
        config=True, flag="max-jobs")
    max_connections = Integer(DEFAULT_MAX_CONNECTIONS, help=(
        "WebSockets open at once; one more is refused before the upgrade with 429 RATE_LIMIT.")).tag(
        config=True, flag="max-connections")
    max_queue = Integer(DEFAULT_MAX_QUEUE, help=(
        "Messages a WebSocket client may fall behind before it is closed (1008).")).tag(config=True, flag="max-queue")
    max_pending_bytes = Integer(DEFAULT_MAX_PENDING_BYTES, help=(
        "Bytes a WebSocket client may have waiting to be sent (live messages, the replays it asked for, "
        "its socket's buffer) before it is closed (1008).")).tag(config=True, flag="max-pending-bytes")
    replay_memory = Integer(DEFAULT_REPLAY_MEMORY, help=(
        "Bytes of finished sessions the server holds in memory for replays, for every client together "
        "(each session once, however many clients replay it); a replay beyond it is refused with RATE_LIMIT.")).tag(
        config=True, flag="replay-memory")
    host = Unicode(DEFAULT_HOST, help="Address to listen on; any but a loopback address needs a token.").tag(
        config=True, flag="host")
    port = Integer(DEFAULT_PORT, help="Port to listen on; 0 picks a free one.").tag(config=True, flag="port")
    token = Unicode(None, allow_none=True, help=(
        f"Token every request must carry (Authorization: Bearer TOKEN, or ?token=TOKEN); required on a "
        f"non-loopback host. When unset, ${TOKEN_ENV}.")).tag(config=True, flag="token")
    allow_origins = List(Unicode(), help=(
        "Origins (http://localhost:8888) whose web pages may use the API and the WebSocket; '*' allows any page. "
        "Repeatable on the command line.")).tag(config=True, flag="allow-origin")

    @default("token")
    def _token_from_environment(self) -> str | None:
        return os.environ.get(TOKEN_ENV) or None

    @validate("max_jobs", "max_connections", "max_queue", "max_pending_bytes", "replay_memory")
    def _at_least_one(self, proposal: Any) -> int:
        value: int = proposal["value"]
        if value < 1:
            name = proposal["trait"].name
            raise TraitError(f"{name} (--{self.traits()[name].metadata['flag']}) must be at least 1, got {value}")
        return value

    @validate("port")
    def _a_port(self, proposal: Any) -> int:
        value: int = proposal["value"]
        if not 0 <= value <= 65535:
            raise TraitError(f"port must be between 0 and 65535, got {value}")
        return value

    @validate("token")
    def _no_empty_token(self, proposal: Any) -> str | None:
        return proposal["value"] or None  # an empty token is no token, not one that matches ""

    @validate("allow_origins")
    def _origins(self, proposal: Any) -> list[str]:
        return [o.rstrip("/") for o in proposal["value"]]  # browsers send no trailing slash

    def values(self) -> dict[str, Any]:
        """Every setting by name; lists as tuples, dicts copied, so the snapshot cannot change them."""
        out: dict[str, Any] = {}
        for name in self.trait_names(config=True):
            value = getattr(self, name)
            out[name] = tuple(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value
        return out
