"""Jobs in a real kernel: re-run cells, the kernel's Stop button, ``beamkit.jobs()``.

Each test starts an ipykernel through jupyter_client and talks to it as JupyterLab does:
execute requests carrying a ``cellId`` (so a re-run is the same cell), comm messages for
the widgets' buttons, and a real SIGINT for the Stop button.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import beamkit
from beamkit.providers import register
from beamkit.providers.simulated import Simulation

SETUP = """
import asyncio, json, warnings
import ipywidgets
import beamkit
from beamkit.providers import register
from beamkit.providers.simulated import Simulation
from beamkit.widget import BeamWidget, Thumbnail, view
register('slow', Simulation(image_latency=0.05, name='slow').provider)

def census():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        models = list(ipywidgets.Widget.widgets.values())
    return {'models': len(models), 'beam_widgets': sum(isinstance(m, BeamWidget) for m in models),
            'thumbnails': sum(isinstance(m, Thumbnail) for m in models), 'running': [j.id for j in beamkit.jobs()]}

def model(model_id):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        return ipywidgets.Widget.widgets[model_id]
"""


class Kernel:
    """A kernel and a client that sends cells the way JupyterLab does."""

    def __init__(self, cwd: Path) -> None:
        from jupyter_client.manager import start_new_kernel

        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(cwd))

    def send(self, code: str, cell_id: str | None = None) -> str:
        content = {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                   "allow_stdin": False, "stop_on_error": True}
        msg = self.kc.session.msg("execute_request", content, metadata={"cellId": cell_id} if cell_id else {})
        self.kc.shell_channel.send(msg)
        return msg["header"]["msg_id"]

    def outputs(self, msg_id: str, *, until: str | None = None, timeout: float = 120) -> list[dict[str, Any]]:
        """The cell's iopub messages, until it is idle again (or ``until`` shows in its output)."""
        got: list[dict[str, Any]] = []
        text = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.kc.get_iopub_msg(timeout=timeout)
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            got.append(m)
            if m["msg_type"] == "stream":
                text += m["content"]["text"]
                if until is not None and until in text:
                    return got
            if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle" and until is None:
                return got
        raise AssertionError(f"the cell did not finish: {got[-5:]}")

    def run(self, code: str, cell_id: str | None = None, timeout: float = 120) -> list[dict[str, Any]]:
        out = self.outputs(self.send(code, cell_id), timeout=timeout)
        errors = [m["content"] for m in out if m["msg_type"] == "error"]
        assert not errors, "\n".join(e["evalue"] + "\n" + "\n".join(e["traceback"][-3:]) for e in errors)
        return out

    def value(self, expression: str) -> Any:
        out = self.run(f"print(json.dumps({expression}))")
        return json.loads("".join(m["content"]["text"] for m in out if m["msg_type"] == "stream"))

    def click(self, comm_id: str, content: dict[str, Any]) -> None:
        """What a button of a widget sends (an anywidget custom message)."""
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": {"method": "custom", "content": content}})
        self.kc.shell_channel.send(msg)

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    k = Kernel(tmp_path)
    try:
        k.run(SETUP)
        yield k
    finally:
        k.close()


def widget_ids(out: list[dict[str, Any]]) -> list[str]:
    return [m["content"]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
            for m in out if m["msg_type"] == "display_data"
            and "application/vnd.jupyter.widget-view+json" in m["content"]["data"]]


def test_rerunning_the_start_cell_frees_the_old_widget_and_keeps_its_job_in_reach(kernel: Kernel, tmp_path: Path) -> None:
    start = ("job = beamkit.start('a city of glass', providers='slow', N=16, M=2, iterations=20, seed={seed}, "
             f"output={str(tmp_path / 'out')!r})\njob")
    shown = []
    for seed in range(4):
        out = kernel.run(start.format(seed=seed), cell_id="start-cell")
        shown.append(widget_ids(out))
        # the job shows some pictures before the cell is run again, as a user would wait to see
        kernel.run("while view(job).thumbnail_count < 8:\n    await asyncio.sleep(0.05)", cell_id="wait-cell")
    assert all(len(ids) == 1 for ids in shown) and len({ids[0] for ids in shown}) == 4
    c, mine = kernel.value("[census(), view(job).thumbnail_count]")  # one cell: the job cannot move in between
    assert c["beam_widgets"] == 1  # the three replaced widgets were closed
    assert c["thumbnails"] == mine  # ... and their pictures with them
    assert c["models"] <= mine + 2  # the widget, its layout and its thumbnails: nothing left over
    assert len(c["running"]) == 4  # but no job was stopped by a re-run
    others = kernel.value("view(job).others")
    assert [o["jobId"] for o in others] == c["running"][:3]  # the new widget says which others still run

    # the new widget's Cancel next to an orphaned job stops that job
    kernel.run("held = {j.id: j for j in beamkit.jobs()}")
    kernel.click(shown[-1][0], {"type": "cancel_other", "jobId": c["running"][0]})
    kernel.run(f"async for _ in held[{c['running'][0]!r}].events():\n    pass")
    assert kernel.value(f"str(held[{c['running'][0]!r}].status)") == "cancelled"
    assert kernel.value("[j.id for j in beamkit.jobs()]") == c["running"][1:]
    assert kernel.value("[o['jobId'] for o in view(job).others]") == c["running"][1:3]

    # beamkit.jobs(): a table of the jobs running, and its Cancel all
    out = kernel.run("beamkit.jobs()", cell_id="jobs-cell")
    (table,) = widget_ids(out)
    text = [m["content"]["data"]["text/plain"] for m in out if m["msg_type"] == "display_data"]
    assert "3 beamkit jobs" in text[0]
    assert kernel.value(f"[r['jobId'] for r in model({table!r}).jobs]") \
        == c["running"][1:]
    kernel.click(table, {"type": "cancel_all"})
    kernel.run("for j in list(beamkit.running.running()):\n    async for _ in j.events():\n        pass")
    assert kernel.value("census()['running']") == []
    statuses = kernel.value(f"[r['status'] for r in model({table!r}).jobs]")
    assert statuses == ["cancelled"] * 3  # the table keeps the ended jobs, with how they ended


def test_interrupting_a_cell_that_awaits_the_job_cancels_the_job(kernel: Kernel, tmp_path: Path) -> None:
    kernel.run(f"job = beamkit.start('a long one', providers='slow', N=12, iterations=20, seed=1, output={str(tmp_path)!r})")
    msg_id = kernel.send("print('awaiting', flush=True)\nresult = await job", cell_id="await-cell")
    kernel.outputs(msg_id, until="awaiting")  # the cell is inside `await job`
    kernel.km.interrupt_kernel()  # the toolbar's Stop: SIGINT
    out = kernel.outputs(msg_id)
    assert any(m["msg_type"] == "error" for m in out)  # the user sees the cell stop
    kernel.run("async for _ in job.events():\n    pass")
    status, progress = kernel.value("[str(job.status), job.progress]")
    assert status == "cancelled"
    assert progress["candidatesProcessed"] < progress["totalCandidates"] == 240


@pytest.mark.asyncio
async def test_a_cancelled_waiter_that_is_no_cell_leaves_the_job_running(tmp_path: Path) -> None:
    """A server's task or ``wait_for`` that gives up waiting must not stop the job."""
    name = "kjslow"
    register(name, Simulation(image_latency=0.02, name=name).provider)
    job = beamkit.start("a server's job", providers=name, N=4, iterations=20, seed=1, output=tmp_path)
    waiter = asyncio.ensure_future(job.wait())
    await asyncio.sleep(0)  # the waiter is now inside wait()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(job.wait(), 0.01)
    assert not job.done and job in beamkit.jobs()
    job.cancel()
    with pytest.raises(beamkit.JobCancelled):
        await job
    assert job not in beamkit.jobs()
