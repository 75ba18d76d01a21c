"""The writer of one session folder: the engine's Recorder, and the job's event log."""

from __future__ import annotations

import asyncio
import logging
import os
from functools import partial
from pathlib import Path
from typing import BinaryIO

from ..engine.recorder import SearchRecord
from ..errors import InternalError, InvalidRequest
from .files import Writer, atomic_write
from .metadata import MetadataRecord
from .owner import Ownership
from .paths import EVENTS_FILE, METADATA_FILE, SESSIONS, image_file, session_folder

log = logging.getLogger(__name__)


class SessionStore:
    """``{output}/sessions/{jobId}/``, written while its job runs.

    ``events.jsonl`` stays open for the job: each line is written and flushed as its event
    happens (a killed process loses at most the line being written), synced at each
    checkpoint and when the store closes. Pictures and metadata.json go through a worker
    thread, in order; ``close()`` waits for all of it and closes the file.
    """

    def __init__(self, output: str | os.PathLike[str], job_id: str) -> None:
        self.output = Path(output)
        self.job_id = job_id
        self.folder = session_folder(output, job_id)
        self._prefix = os.path.join(self.folder, "")  # plain strings: pathlib costs the loop more than the write
        self._events: BinaryIO | None = None
        self._writer = Writer(f"beamkit {job_id}")
        self._metadata = MetadataRecord()
        self._error: BaseException | None = None
        self._closing: asyncio.Future[None] | None = None
        #: the mark that a live process owns this session (storage/owner.py), held until the store closes
        self.owner = Ownership(self.folder)

    def create(self) -> None:
        """Make the folder (0700) and open its log (0600: prompts are nobody else's business).

        Raises InvalidRequest for a job id already used in this output folder, and InternalError
        naming the folder and the reason when it cannot be made (unwritable, no space, no descriptors).
        """
        try:
            try:
                os.mkdir(self.folder, 0o700)  # one call where the output folder is there (every job but the first)
            except FileNotFoundError:
                self.output.mkdir(parents=True, exist_ok=True)
                (self.output / SESSIONS).mkdir(mode=0o700, exist_ok=True)
                os.mkdir(self.folder, 0o700)
        except FileExistsError:
            raise InvalidRequest(f"job id {self.job_id!r} is already used by {self.folder}", "job_id") from None
        except OSError as exc:
            raise InternalError(f"beamkit cannot create the session folder {self.folder}: {_reason(exc)}") from None
        try:
            fd = os.open(self._prefix + EVENTS_FILE, _LOG_FLAGS, 0o600)
            self._events = os.fdopen(fd, "ab")
        except OSError as exc:
            raise InternalError(f"beamkit cannot write the session folder {self.folder}: {_reason(exc)}") from None
        try:
            self.owner.take()  # other processes sharing the output folder see the job as running, not interrupted
        except OSError as exc:
            if self._events is not None:
                self._events.close()
                self._events = None
            raise InternalError(f"beamkit cannot write the session folder {self.folder}: {_reason(exc)}") from None

    # -- the engine's Recorder ----------------------------------------------------------------

    def image_path(self, iteration: int, candidate_id: int) -> str:
        return self._prefix + image_file(iteration, candidate_id)

    def save_image(self, iteration: int, candidate_id: int, png: bytes) -> asyncio.Future[None]:
        return self._writer.submit(partial(atomic_write, self.image_path(iteration, candidate_id), png))

    def checkpoint(self, record: SearchRecord) -> None:
        text = self._metadata.render(record)
        # A finished job's log is synced by close(), right after its last line: once is enough.
        sync = record.status == "running"
        self._writer.submit(partial(self._keep, text, sync)).add_done_callback(self._note)

    async def flush(self) -> None:
        await self._writer.submit(_nothing)  # the worker does its work in order
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    # -- the job's event log ----------------------------------------------------------------------

    def append_line(self, line: str) -> None:
        """Append one event's line (its JSON text, without the newline)."""
        if self._events is None or self._writer.closed:
            raise RuntimeError(f"the session of {self.job_id} is not open")
        self._events.write(line.encode("utf-8") + b"\n")
        self._events.flush()

    def close(self) -> asyncio.Future[None]:
        """Finish what was handed over, sync and close the log; the future is done when it is.
        Calling it again returns the same future."""
        if self._closing is None:
            self._closing = self._writer.submit(self._close_log)
            self._closing.add_done_callback(self._note_close)
            self._writer.close()
        return self._closing

    # -- on the worker thread -----------------------------------------------------------------

    def _keep(self, text: str, sync: bool) -> None:
        atomic_write(self._prefix + METADATA_FILE, text.encode("utf-8"))
        if sync and self._events is not None:
            os.fsync(self._events.fileno())

    def cancel_requested(self) -> bool:
        """Whether another process sharing the output folder asked for this job to be cancelled."""
        return self.owner.held and self.owner.cancel_requested()

    def _close_log(self) -> None:
        events, self._events = self._events, None
        try:
            if events is not None:
                try:
                    events.flush()
                    os.fsync(events.fileno())
                finally:
                    events.close()
        finally:
            self.owner.release()  # after the last line: whoever sees no owner finds the job's end on disk

    def _note_close(self, fut: asyncio.Future[None]) -> None:
        # Whoever awaits close() reports its error; this only keeps an unawaited one from going unseen.
        if not fut.cancelled() and fut.exception() is not None:
            log.debug("closing the session of %s failed", self.job_id, exc_info=fut.exception())

    def _note(self, fut: asyncio.Future[None]) -> None:
        if fut.cancelled() or fut.exception() is None:
            return
        log.error("beamkit could not write the metadata of %s", self.job_id, exc_info=fut.exception())
        self._error = self._error or fut.exception()


def _nothing() -> None:
    return None


_LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__
