"""What `import beamkit` offers: the exact list, so that adding or dropping a name is a decision."""

from __future__ import annotations

import subprocess
import sys

import beamkit

PUBLIC = [
    "start", "search", "run", "load", "estimate", "watch", "Job", "Result", "Candidate", "JobParams",
    "BeamkitError", "ErrorCode", "InvalidRequest", "NotFound", "RateLimited", "AuthError", "ContentPolicy",
    "CallTimeout", "ProviderError", "JobCancelled", "InternalError", "sweep", "jobs", "sessions",
]


def test_all_is_pinned():
    assert beamkit.__all__ == PUBLIC


def test_every_public_name_exists_and_nothing_else_is_exported_by_star():
    for name in PUBLIC:
        assert getattr(beamkit, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from beamkit import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(PUBLIC)


def test_import_beamkit_stays_free_of_the_widget_and_the_servers():
    code = ("import sys, beamkit; heavy = [m for m in ('ipywidgets', 'anywidget', 'tornado', 'jupyter_server', 'openai') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
