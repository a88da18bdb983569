#!/usr/bin/python3
"""Real WebSocket clients (python3-websockets) for test_channel_presence.c.

  presence_clients.py local PORT
  presence_clients.py cluster PORT1 PORT2 PID2
  presence_clients.py restart PORT   (with CHAN_DIR: files ready / up with the test)
Each case asserts what it checks and exits 0 on success (1 with a message
otherwise). The service is channels_service.c: presence on "room:*", none on
"quiet:*"; "&name=N" is the client's user data "name" (its presence info).
"""
import asyncio
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from channels_base import BaseClient, op, wait_file, wait_for  # noqa: E402


class Client(BaseClient):
    def __init__(self, port, cid):
        super().__init__(port, cid, f"&name=N-{cid}")
        self.events = []  # channel_presence frames
        self.rid = 0

    def frame(self, f):
        if f.get("type") == "channel_presence":
            self.events.append(f)
        else:
            super().frame(f)

    async def ask(self, frame):
        self.rid += 1
        rid = f"{self.cid}-{self.rid}"
        frame["request_id"] = rid
        await self.ws.send(json.dumps(frame))
        return await self.answer(rid, frame)

    async def sub(self, channel):
        a = await self.ask({"type": "subscribe", "channel": channel})
        assert a["success"] is True, a

    def seen(self, channel, event, who):
        return [e for e in self.events
                if e["channel"] == channel and e["event"] == event and e["client_id"] == who]


async def once(clients, channel, event, who):
    """Every client of clients gets the event exactly once (no duplicate later)."""
    for c in clients:
        await wait_for(lambda: c.seen(channel, event, who), f"{c.cid} sees {event} of {who}")
    await asyncio.sleep(0.3)
    for c in clients:
        n = len(c.seen(channel, event, who))
        assert n == 1, f"{c.cid} saw {event} of {who} {n} times"


def members(answer):
    return {m["client_id"]: m["info"] for m in answer}


async def case_local(port):
    a, b = await Client(port, "la").open(), await Client(port, "lb").open()
    await a.sub("room:l")
    await b.sub("room:l")
    await once([a], "room:l", "join", "lb")
    j = a.seen("room:l", "join", "lb")[0]
    assert j == {"type": "channel_presence", "channel": "room:l", "event": "join",
                 "client_id": "lb", "info": {"name": "N-lb"}}, j
    assert not b.events, b.events  # not its own join, nor a's earlier one
    r = op(port, op="presence", channel="room:l")
    assert r["rc"] == 0 and members(r["list"]) == {"la": {"name": "N-la"}, "lb": {"name": "N-lb"}}, r
    await b.close()
    await once([a], "room:l", "leave", "lb")
    assert "info" not in a.seen("room:l", "leave", "lb")[0]
    await a.close()


async def case_cluster(p1, p2, pid2):
    a = await Client(p1, "a").open()
    b = await Client(p2, "b").open()
    c = await Client(p1, "c").open()
    d = await Client(p2, "d").open()
    await a.sub("room:1")
    await b.sub("room:1")
    await once([a], "room:1", "join", "b")
    await c.sub("room:1")
    await once([a, b], "room:1", "join", "c")
    assert a.seen("room:1", "join", "c")[0]["info"] == {"name": "N-c"}
    for x in (a, b, c):
        assert not x.seen("room:1", "join", x.cid), f"{x.cid} saw its own join"
    assert not d.events, d.events  # not subscribed: hears nothing
    # the list, cluster-wide: API on either replica, and the frame
    want = {"a": {"name": "N-a"}, "b": {"name": "N-b"}, "c": {"name": "N-c"}}
    for p in (p1, p2):
        r = op(p, op="presence", channel="room:1")
        assert r["rc"] == 0 and members(r["list"]) == want, r
    r = await b.ask({"type": "presence", "channel": "room:1"})
    assert r["success"] is True and r["data"]["channel"] == "room:1", r
    assert members(r["data"]["members"]) == want, r
    # only subscribers may ask; a channel without presence
    r = await d.ask({"type": "presence", "channel": "room:1"})
    assert r["success"] is False and r["error"] == "Not subscribed to channel 'room:1'", r
    r = await a.ask({"type": "presence", "channel": "quiet:1"})
    assert r["success"] is False and r["error"] == "Channel 'quiet:1' has no presence", r
    r = await a.ask({"type": "presence"})
    assert r["success"] is False and "Missing \"channel\"" in r["error"], r
    assert op(p1, op="presence", channel="quiet:1")["rc"] != 0
    # no events on a channel without presence
    await a.sub("quiet:1")
    await b.sub("quiet:1")
    await d.sub("quiet:1")
    await d.ask({"type": "unsubscribe", "channel": "quiet:1"})
    # leave on unsubscribe, once, to the others
    r = await c.ask({"type": "unsubscribe", "channel": "room:1"})
    assert r["data"]["was_subscribed"] is True, r
    await once([a, b], "room:1", "leave", "c")
    assert not c.seen("room:1", "leave", "c")
    # order: 20 quick join / leave of d (replica 2) reach a (replica 1) in order
    for _ in range(20):
        await d.ws.send(json.dumps({"type": "subscribe", "channel": "room:1"}))
        await d.ws.send(json.dumps({"type": "unsubscribe", "channel": "room:1"}))
    await wait_for(lambda: len(a.seen("room:1", "leave", "d")) == 20, "a sees 20 leaves of d")
    seq = [e["event"] for e in a.events if e["client_id"] == "d"]
    assert seq == ["join", "leave"] * 20, seq
    # leave on disconnect
    for x in (a, b):
        x.events.clear()
    await c.sub("room:1")
    await once([a, b], "room:1", "join", "c")
    await a.close()
    await once([b, c], "room:1", "leave", "a")
    # kill -9 of b's replica: the survivor reaps b and d, c hears b leave once
    os.kill(pid2, signal.SIGKILL)
    await wait_for(lambda: c.seen("room:1", "leave", "b"), "c sees b leave after kill -9", 15)
    await asyncio.sleep(1.5)  # a few heartbeats more: no second leave
    n = len(c.seen("room:1", "leave", "b"))
    assert n == 1, f"leave of b seen {n} times"
    assert not [e for e in c.events if e["channel"] != "room:1"], c.events
    assert not [e for e in a.events + b.events if e["channel"].startswith("quiet")]
    r = op(p1, op="presence", channel="room:1")
    assert r["rc"] == 0 and members(r["list"]) == {"c": {"name": "N-c"}}, r
    await c.close()
    try:
        await b.ws.close()
        await d.ws.close()
    except Exception:
        pass


async def case_restart(port):
    """Redis restarts: the member list and the info come back (the resync)."""
    d = os.environ["CHAN_DIR"]
    e = await Client(port, "e").open()
    await e.sub("room:r")
    want = {"e": {"name": "N-e"}}
    r = op(port, op="presence", channel="room:r")
    assert r["rc"] == 0 and members(r["list"]) == want, r
    open(f"{d}/ready", "w").close()
    await asyncio.get_event_loop().run_in_executor(None, wait_file, f"{d}/up")
    end = time.monotonic() + 15
    while True:
        r = op(port, op="presence", channel="room:r")
        if r["rc"] == 0 and members(r["list"]) == want:
            break
        assert time.monotonic() < end, f"after the restart: {r}"
        await asyncio.sleep(0.1)
    await e.close()


def main():
    case = sys.argv[1]
    try:
        if case == "local":
            asyncio.run(case_local(int(sys.argv[2])))
        elif case == "restart":
            asyncio.run(case_restart(int(sys.argv[2])))
        else:
            asyncio.run(case_cluster(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
    except AssertionError as e:
        print(f"presence_clients.py {case}: FAILED: {e}", file=sys.stderr)
        return 1
    print(f"presence_clients.py {case}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
