"""The WebSocket protocol of SPEC section 4 on a real standalone server."""

from __future__ import annotations

import asyncio
import json
import re
import struct

import pytest
from server_helpers import RawSocket, recv, send, start_server, until_terminal

from beamkit import storage
from beamkit.server.connection import TOO_SLOW, Connection
from beamkit.server.frames import payloads

pytestmark = pytest.mark.asyncio
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SMALL = {"N": 3, "M": 2, "iterations": 2, "seed": 11}


async def start(server, providers=None, **params):
    body = {"prompt": "a lighthouse at dusk", **SMALL, **params}
    if providers:
        body["providers"] = providers
    code, answer = await server.json("/api/beam-search", "POST", body)
    assert code == 200, answer
    return answer["jobId"]


async def subscribe(ws, job_id):
    await send(ws, {"type": "subscribe", "jobId": job_id})
    first = await recv(ws)
    assert first == {"type": "subscribed", "jobId": job_id, "timestamp": first["timestamp"]}
    assert TS.match(first["timestamp"])


def on_disk(server, job_id):
    return storage.read_events(server.output / "sessions" / job_id)


@pytest.mark.parametrize("path", ["/ws", "/"])
async def test_subscribe_gets_the_whole_job_in_order(server, path):
    job_id = await start(server)
    ws = await server.ws(path)
    await subscribe(ws, job_id)
    events = await until_terminal(ws, job_id)
    types = [e["type"] for e in events]
    assert types[0] == "started" and types[-1] == "complete"
    assert types == ["started", "iteration"] + ["candidate"] * 3 + ["iteration"] * 2 + ["candidate"] * 3 + ["iteration", "complete"]
    for e in events:
        assert e["jobId"] == job_id and TS.match(e["timestamp"])
    await server.manager.idle()
    assert events == on_disk(server, job_id)


async def test_late_and_concurrent_subscribers_see_the_same_sequence(server, providers):
    job_id = await start(server, providers.gated, N=4, iterations=3)
    early = [await server.ws() for _ in range(3)]  # concurrent, before anything ran
    for ws in early:
        await subscribe(ws, job_id)
    await providers.gate.arrived.wait()
    providers.gate.open()
    # one more joins in the middle: once the first has seen a few candidates
    seen = []
    while sum(e["type"] == "candidate" for e in seen) < 3:
        seen.append(await recv(early[0]))
    middle = await server.ws()
    await subscribe(middle, job_id)
    sequences = [seen + await until_terminal(early[0], job_id)]
    sequences += [await until_terminal(ws, job_id) for ws in (*early[1:], middle)]
    # and two after the end: one while the job object is still held, one from disk
    late = await server.ws()
    await subscribe(late, job_id)
    sequences.append(await until_terminal(late, job_id))
    await server.manager.idle()
    later = await server.ws()
    await subscribe(later, job_id)
    sequences.append(await until_terminal(later, job_id))
    assert len(sequences) == 6
    assert all(s == sequences[0] for s in sequences)
    assert sequences[0] == on_disk(server, job_id)
    assert sequences[0][-1]["type"] == "complete"


async def test_one_socket_follows_many_jobs(server):
    ids = [await start(server, prompt=f"job {i}") for i in range(3)]
    ws = await server.ws()
    for job_id in ids:
        await send(ws, {"type": "subscribe", "jobId": job_id})
    got: dict[str, list] = {job_id: [] for job_id in ids}
    done = set()
    while len(done) < 3:
        msg = await recv(ws)
        if msg["type"] == "subscribed":
            continue
        got[msg["jobId"]].append(msg)
        if msg["type"] in ("complete", "error"):
            done.add(msg["jobId"])
    await server.manager.idle()
    for job_id in ids:
        assert got[job_id] == on_disk(server, job_id)


async def test_unsubscribe_stops_that_jobs_events(server, providers):
    held = await start(server, providers.gated)
    other = await start(server)
    ws = await server.ws()
    await subscribe(ws, held)
    replay = []
    while len(replay) < 2:  # started, iteration 0 processing
        replay.append(await recv(ws))
    await send(ws, {"type": "unsubscribe", "jobId": held})
    msg = await recv(ws)
    assert msg["type"] == "unsubscribed" and msg["jobId"] == held
    await subscribe(ws, other)
    providers.gate.open()
    await server.manager.idle()
    rest = await until_terminal(ws, other)
    await send(ws, {"type": "ping"})
    assert (await recv(ws))["type"] == "pong"  # nothing of the held job came in between
    assert all(m["jobId"] == other for m in rest)


async def test_ping_pong(server):
    ws = await server.ws()
    await send(ws, {"type": "ping"})
    msg = await recv(ws)
    assert msg["type"] == "pong" and TS.match(msg["timestamp"])


BAD_MESSAGES = [
    ("not json", None),
    ("{\"type\": \"subscribe\", ", None),
    ("[1, 2]", None),
    ("\"subscribe\"", None),
    ("42", None),
    ("null", None),
    ({}, "type"),
    ({"jobId": "job-abc"}, "type"),
    ({"type": 5}, "type"),
    ({"type": None}, "type"),
    ({"type": "dance"}, "type"),
    ({"type": "SUBSCRIBE", "jobId": "job-abc"}, "type"),
    ({"type": "subscribe"}, "jobId"),
    ({"type": "subscribe", "jobId": 5}, "jobId"),
    ({"type": "subscribe", "jobId": ""}, "jobId"),
    ({"type": "subscribe", "jobId": ["job-abc"]}, "jobId"),
    ({"type": "unsubscribe"}, "jobId"),
    (b"\x00\x01binary", None),
]


@pytest.mark.parametrize("msg,field", BAD_MESSAGES, ids=[str(i) for i in range(len(BAD_MESSAGES))])
async def test_bad_input_is_an_error_event_and_the_socket_stays(server, msg, field):
    ws = await server.ws()
    await send(ws, msg)
    answer = await recv(ws)
    assert answer["type"] == "error"
    assert answer["error"]["code"] == "INVALID_REQUEST" and answer["error"]["message"]
    assert TS.match(answer["timestamp"])
    if field:
        assert answer["field"] == field
    await send(ws, {"type": "ping"})
    assert (await recv(ws))["type"] == "pong"
    job_id = await start(server)  # and the socket still works for real
    await subscribe(ws, job_id)
    assert (await until_terminal(ws, job_id))[-1]["type"] == "complete"


@pytest.mark.parametrize("job_id", ["job-doesnotexist", "../../etc/passwd", "job-../../x", "x" * 500])
@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe"])
async def test_unknown_job_is_not_found_with_its_id(server, job_id, kind):
    ws = await server.ws()
    await send(ws, {"type": kind, "jobId": job_id})
    answer = await recv(ws)
    assert answer["type"] == "error" and answer["error"]["code"] == "NOT_FOUND" and answer["jobId"] == job_id
    await send(ws, {"type": "ping"})
    assert (await recv(ws))["type"] == "pong"


async def test_bad_input_on_one_socket_does_not_touch_another(server, providers):
    job_id = await start(server, providers.gated)
    good, bad = await server.ws(), await server.ws()
    await subscribe(good, job_id)
    await subscribe(bad, job_id)
    for msg, _ in BAD_MESSAGES:
        await send(bad, msg)
    providers.gate.open()
    events = await until_terminal(good, job_id)
    await server.manager.idle()
    assert events == on_disk(server, job_id)
    errors = 0
    while errors < len(BAD_MESSAGES):  # the bad socket got one error per message, and the job
        msg = await recv(bad)
        errors += msg["type"] == "error" and msg["jobId"] is None


async def test_subscribing_again_starts_over(server):
    job_id = await start(server)
    ws = await server.ws()
    await subscribe(ws, job_id)
    first = await until_terminal(ws, job_id)
    await subscribe(ws, job_id)
    assert await until_terminal(ws, job_id) == first


async def test_a_stuck_client_is_dropped_and_does_not_delay_others(tmp_path, providers):
    # Big events (long prompts) and a peer with a tiny receive window that never reads:
    # the server's socket buffers fill, its outbox grows to max_queue, and it is dropped.
    server = await start_server(tmp_path / "out", providers.name, max_queue=200)
    # Some latency, as real providers have: the good client reads on this same loop, and
    # should get its turn between iterations.
    providers.sim.image_latency = 0.02
    try:
        job_id = await start(server, prompt="p" * 3900, N=64, M=2, iterations=20)
        stuck = await RawSocket.connect(server.server.port, rcvbuf=4096, limit=1024)
        stuck.send_json({"type": "subscribe", "jobId": job_id})
        await stuck.writer.drain()
        good = await server.ws()
        await subscribe(good, job_id)
        events = await until_terminal(good, job_id, timeout=120)
        assert events[-1]["type"] == "complete"
        assert sum(e["type"] == "candidate" for e in events) == 64 * 20
        await server.manager.idle()
        assert events == on_disk(server, job_id)
        # The stuck peer got a part, then a close (1008) or the end of the stream.
        got, close = 0, None
        while (frame := await asyncio.wait_for(stuck.frame(), 30)) is not None:
            opcode, payload = frame
            if opcode == 0x8:
                close = struct.unpack("!H", payload[:2])[0]
                break
            got += opcode == 0x1
        assert got < len(events)
        assert close in (None, TOO_SLOW)
        stuck.close()
    finally:
        await server.server.stop()


async def test_protocol_pings_find_a_dead_peer(tmp_path, providers):
    server = await start_server(tmp_path / "out", providers.name, ping_interval=0.05, ping_timeout=0.05)
    try:
        alive = await RawSocket.connect(server.server.port)
        dead = await RawSocket.connect(server.server.port)
        # the live peer answers three pings and is still served
        pings = 0
        while pings < 3:
            opcode, payload = await asyncio.wait_for(alive.frame(), 10)
            if opcode == 0x9:
                alive.send(0xA, payload)
                pings += 1
        alive.send_json({"type": "ping"})
        while True:
            opcode, payload = await asyncio.wait_for(alive.frame(), 10)
            if opcode == 0x9:
                alive.send(0xA, payload)
            elif opcode == 0x1:
                assert json.loads(payload)["type"] == "pong"
                break
        # the dead one never answers: the server closes it
        while True:
            frame = await asyncio.wait_for(dead.frame(), 10)
            if frame is None or frame[0] == 0x8:
                break
            assert frame[0] == 0x9
        alive.close()
        dead.close()
    finally:
        await server.server.stop()


async def test_a_dropped_client_lets_go_of_its_jobs(server, providers):
    job_id = await start(server, providers.gated)
    ws = await server.ws()
    await subscribe(ws, job_id)
    feed = server.manager._live[job_id]
    assert len(feed.sinks) == 1
    sockets = server.server.app.settings["beamkit_sockets"]
    (handler,) = sockets
    closed = asyncio.Event()
    original = handler.on_close
    handler.on_close = lambda: (original(), closed.set())
    ws.close()
    await closed.wait()
    assert feed.sinks == [] and not sockets
    providers.gate.open()
    await server.manager.idle()


class FakeTransport:
    """A socket whose writes never finish (a peer that stopped reading)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None
        self.stall = asyncio.get_running_loop().create_future()

    def send(self, frames: list[bytes]):
        self.sent.extend(p.decode() for f in frames for p in payloads(f))
        return self.stall

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def test_connection_drops_a_client_that_falls_behind(server, providers):
    # 8 candidates may finish in one step of the loop: the queue holds more than such a burst
    job_id = await start(server, providers.gated, N=8, M=2, iterations=5)
    stuck, fine = FakeTransport(), FakeTransport()
    fine.stall.set_result(None)
    # Bytes the transport has not sent count: a peer that takes nothing is closed at its byte budget.
    slow = Connection(server.manager, stuck.send, stuck.close, max_queue=20, max_bytes=8192)
    quick = Connection(server.manager, fine.send, fine.close, max_queue=20, max_bytes=8192)
    for conn in (slow, quick):
        await conn.handle(json.dumps({"type": "subscribe", "jobId": job_id}))
    await providers.gate.arrived.wait()
    providers.gate.open()
    await server.manager.idle()
    assert slow.dropped and slow.closed and stuck.closed[0] == TOO_SLOW
    assert "behind" in stuck.closed[1] or "slow" in stuck.closed[1]
    assert sum(len(t.encode()) for t in stuck.sent) <= 8192
    assert not quick.dropped
    while quick.pending:  # let the quick writer finish its queue
        await asyncio.sleep(0)
    assert [json.loads(t) for t in fine.sent[1:]] == on_disk(server, job_id)
    quick.close()


async def test_messages_pushed_over_several_turns_of_the_loop_go_out_in_one_write(tmp_path, monkeypatch):
    from beamkit.server import connection
    from beamkit.server.manager import JobManager

    monkeypatch.setattr(connection, "COALESCE_S", 0.5)  # a window no slow machine can outrun between the pushes
    writes: list[list[bytes]] = []
    conn = Connection(JobManager(tmp_path), lambda frames: writes.append(list(frames)), lambda code, reason: None)
    for n in range(3):  # three answers, each in its own turn of the loop, well within the gathering window
        await conn.handle(json.dumps({"type": "ping", "jobId": f"j{n}"}))
        await asyncio.sleep(0)
    assert writes == []  # gathered, not yet written
    while conn.pending:
        await asyncio.sleep(0.001)
    assert len(writes) == 1 and [json.loads(p)["jobId"] for f in writes[0] for p in payloads(f)] == ["j0", "j1", "j2"]
    conn.close()


async def test_a_burst_that_fills_half_the_queue_is_written_at_once_not_at_the_gathering_timer(tmp_path, monkeypatch):
    from beamkit.server import connection
    from beamkit.server.manager import JobManager

    monkeypatch.setattr(connection, "COALESCE_S", 30.0)  # only the bound can make it write during this test
    writes: list[list[bytes]] = []
    conn = Connection(JobManager(tmp_path), lambda frames: writes.append(list(frames)), lambda code, reason: None,
                      max_queue=10)
    for n in range(25):  # more than the queue holds, over many turns: a client that reads is never dropped
        await conn.handle(json.dumps({"type": "ping", "jobId": f"j{n}"}))
        await asyncio.sleep(0)
    assert not conn.dropped and writes
    assert all(len(w) <= 5 for w in writes)  # written as soon as half the bound (5 items) waited
    while conn.pending:
        await asyncio.sleep(0)
    assert [json.loads(p)["jobId"] for w in writes for f in w for p in payloads(f)] == [f"j{n}" for n in range(25)]
    conn.close()
