"""metadata.json (SPEC section 6): its shape, kept as JSON pieces so a checkpoint encodes only what changed.

A candidate's record is encoded once when it is reported, and again only if it changes
afterwards (a parent gains a critique); a checkpoint joins the pieces. The file is compact
JSON, written whole by the session's worker thread.
"""

from __future__ import annotations

import json
from typing import Any

from ..candidate import Candidate
from ..engine.recorder import SearchRecord
from ..result import best_record

#: compact, and made once: ``json.dumps`` with options builds a new encoder each call
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _mark(c: Candidate) -> tuple[Any, ...]:
    # What may change once a candidate has been reported: its critiques, when it is a parent.
    return (c.status, len(c.critiques))


class MetadataRecord:
    """One session's metadata.json, rendered again at each checkpoint from kept pieces.

    ``record.candidates`` only grows, so each render looks at the candidates added since the
    last one, and again at the kept ones (only a beam's members become parents and gain
    critiques); everything else is joined as it was.
    """

    def __init__(self) -> None:
        self._seen = 0  # how many of record.candidates have been looked at
        self._pending: list[Candidate] = []  # not finished when last looked at
        self._slot: dict[tuple[int, int], int] = {}  # key -> index in _pieces
        self._kept: dict[tuple[int, int], Candidate] = {}
        self._pieces: list[str] = []
        self._marks: list[tuple[Any, ...]] = []

    def _put(self, c: Candidate) -> None:
        mark = _mark(c)
        i = self._slot.get(c.key)
        if i is None:
            self._kept[c.key] = c
            self._slot[c.key] = len(self._pieces)
            self._pieces.append(_dumps(c.to_dict()))
            self._marks.append(mark)
        elif self._marks[i] != mark:
            self._pieces[i] = _dumps(c.to_dict())
            self._marks[i] = mark

    def render(self, record: SearchRecord) -> str:
        fresh = self._pending + record.candidates[self._seen:]
        self._seen = len(record.candidates)
        # Cut off by a cancel or a failure, a candidate never finished: it is not recorded.
        self._pending = [c for c in fresh if c.status == "pending"]
        for c in fresh:
            if c.status != "pending":
                self._put(c)
        for refs in record.beams.values():
            for ref in refs:
                if ref in self._kept:
                    self._put(self._kept[ref])
        best = best_record(self._kept, record.beams, record.config.get("ranking"))  # _kept: every finished one
        head = _dumps({"jobId": record.job_id, "status": record.status, "config": record.config})
        tail = _dumps({
            "beams": {str(i): [{"iteration": a, "candidateId": b} for a, b in refs] for i, refs in record.beams.items()},
            "best": best,
            "lineage": best["lineage"] if best else [],
            "duration": record.duration_ms,
            "usage": record.usage,
            "error": record.error,
            "stoppedBy": record.stopped_by,
            **({"comparisons": record.comparisons} if record.comparisons else {}),
        })
        if record.chosen_by:  # a steered job: who chose each beam, "model" or "person"
            tail = f'{tail[:-1]},"chosenBy":{_dumps({str(i): who for i, who in record.chosen_by.items()})}}}'
        return f'{head[:-1]},"candidates":[{",".join(self._pieces)}],{tail[1:]}'

