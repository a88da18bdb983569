#!/usr/bin/python3
"""Real WebSocket clients (python3-websockets) for test_channels.c.

  channels_clients.py CASE PORT [PORT2 [PID2]]
Cases: local, auth, rate, cluster, kill. Each asserts what it checks and
exits 0 on success (1 with a message otherwise). The service is
channels_service.c (POST /op drives the server API).
"""
import asyncio
import json
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from channels_base import T, BaseClient, op, wait_file, wait_for  # noqa: E402,F401


class Client(BaseClient):
    def __init__(self, port, cid, role=None):
        super().__init__(port, cid, f"&role={role}" if role else "")
        self.role = role
        self.messages = []  # channel_message frames

    async def open(self):
        return await super().open(max_queue=None)

    def frame(self, f):
        if f.get("type") == "channel_message":
            self.messages.append(f)
        else:
            super().frame(f)

    async def ask(self, frame, rid):
        frame["request_id"] = rid
        await self.send(frame)
        return await self.answer(rid)


def ok(a, rid):
    assert a["type"] == "response" and a["success"] is True and a["request_id"] == rid, a


def refused(a, rid, text):
    assert a["type"] == "error" and a["success"] is False and a["request_id"] == rid, a
    assert text in a["error"], (text, a)


def seqs(c, channel=None):
    return [(m["data"]["p"], m["data"]["seq"]) for m in c.messages
            if channel is None or m["channel"] == channel]


async def case_local(port):
    a, b, c = [await Client(port, n).open() for n in ("la", "lb", "lc")]
    ok(await a.ask({"type": "subscribe", "channel": "open:a"}, "s1"), "s1")
    r = await b.ask({"type": "subscribe", "channel": "open:a"}, 7)
    ok(r, 7)
    assert r["data"] == {"channel": "open:a"}, r
    assert "shadow" not in json.dumps(r), "the SOCKET handler of the same name ran"
    # server side: subscribe c from the API, list, client channels
    assert op(port, op="subscribe", id="lc", channel="open:a")["rc"] == 0
    assert op(port, op="subscribe", id="nobody", channel="open:a")["rc"] == -4  # ENOENT
    subs = op(port, op="subscribers", channel="open:a")
    assert subs["rc"] == 0 and sorted(subs["list"]) == ["la", "lb", "lc"], subs
    chans = op(port, op="channels", id="lc")
    assert chans["rc"] == 0 and chans["list"] == ["open:a"], chans
    assert op(port, op="publish_many", channel="open:a", n=200, tag="s")["rc"] == 0
    want = [("s", i) for i in range(1, 201)]
    for cl in (a, b, c):
        await wait_for(lambda: len(cl.messages) >= 200, f"{cl.cid} 200 messages")
    # a client's broadcast frame reaches every subscriber (itself included), once
    r = await a.ask({"type": "broadcast", "channel": "open:a", "data": {"seq": 201, "p": "s"}},
                    "b1")
    ok(r, "b1")
    want.append(("s", 201))
    for cl in (a, b, c):
        await wait_for(lambda: len(cl.messages) >= 201, f"{cl.cid} broadcast")
        assert seqs(cl) == want, (cl.cid, seqs(cl)[:5])
        assert all(m["channel"] == "open:a" for m in cl.messages)
    # unsubscribe: nothing more
    r = await b.ask({"type": "unsubscribe", "channel": "open:a"}, "u1")
    ok(r, "u1")
    assert r["data"]["was_subscribed"] is True, r
    r = await b.ask({"type": "unsubscribe", "channel": "open:a"}, "u2")
    ok(r, "u2")
    assert r["data"]["was_subscribed"] is False, r
    assert op(port, op="publish", channel="open:a", data={"seq": 202, "p": "s"})["rc"] == 0
    await wait_for(lambda: len(a.messages) == 202 and len(c.messages) == 202, "after unsubscribe")
    await asyncio.sleep(0.2)
    assert len(b.messages) == 201, len(b.messages)
    # the subscriptions end with the connection
    await c.close()
    await wait_for(lambda: sorted(op(port, op="subscribers", channel="open:a")["list"]) == ["la"],
                   "c left the list")
    assert op(port, op="channels", id="lc")["rc"] == -4
    await a.close()
    await b.close()
    await wait_for(lambda: op(port, op="subscribers", channel="open:a")["list"] == [], "empty")


async def case_auth(port):
    a = await Client(port, "aa").open()
    v = await Client(port, "av", role="vip").open()
    # no rule: refused, with the request_id and a clear text
    refused(await a.ask({"type": "subscribe", "channel": "closed:x"}, "r1"), "r1",
            "Not allowed to subscribe to channel 'closed:x'")
    # subscribe allowed, broadcast not
    ok(await a.ask({"type": "subscribe", "channel": "news:x"}, "r2"), "r2")
    refused(await a.ask({"type": "broadcast", "channel": "news:x", "data": 1}, "r3"), "r3",
            "Not allowed to publish on channel 'news:x'")
    # the hook's reason
    refused(await a.ask({"type": "subscribe", "channel": "open:secret"}, "r4"), "r4",
            "secret is closed")
    refused(await a.ask({"type": "broadcast", "channel": "open:secret", "data": 1}, 5), 5,
            "secret is closed")
    # the hook sees the client's user data
    refused(await a.ask({"type": "subscribe", "channel": "vip:lounge"}, "r6"), "r6",
            "vip channels are for vip clients")
    ok(await v.ask({"type": "subscribe", "channel": "vip:lounge"}, "r7"), "r7")
    ok(await v.ask({"type": "broadcast", "channel": "vip:lounge", "data": {"hi": 1}}, "r8"), "r8")
    # bad frames
    refused(await a.ask({"type": "subscribe"}, "b1"), "b1", "Missing \"channel\"")
    refused(await a.ask({"type": "subscribe", "channel": 5}, "b2"), "b2",
            "\"channel\" must be a string")
    refused(await a.ask({"type": "subscribe", "channel": "x" * 201}, "b3"), "b3", "too long")
    refused(await a.ask({"type": "subscribe", "channel": ""}, "b4"), "b4", "empty")
    refused(await a.ask({"type": "subscribe", "channel": "open:\u0001"}, "b5"), "b5",
            "control character")
    refused(await a.ask({"type": "unsubscribe", "channel": None}, "b6"), "b6", "Missing")
    refused(await a.ask({"type": "broadcast", "channel": "open:a"}, "b7"), "b7",
            "Missing \"data\"")
    # a lone surrogate: cJSON refuses the JSON; the answer still carries the id
    await a.send('{"type":"subscribe","channel":"\\ud800","request_id":"b8"}')
    b8 = await a.answer("b8")
    assert b8["success"] is False and b8["request_id"] == "b8", b8
    # nothing was delivered that was not allowed
    for ch in ("closed:x", "open:secret", "vip:lounge"):
        op(port, op="publish", channel=ch, data={"leak": ch})
    op(port, op="publish", channel="news:x", data={"fine": 1})
    await wait_for(lambda: len(a.messages) >= 1, "news:x")
    await asyncio.sleep(0.3)
    assert [m["channel"] for m in a.messages] == ["news:x"], a.messages
    assert [m["data"] for m in v.messages] == [{"hi": 1}, {"leak": "vip:lounge"}], v.messages
    await a.close()
    await v.close()


async def case_rate(port):
    a = await Client(port, "ra").open()
    ok(await a.ask({"type": "subscribe", "channel": "open:r"}, "s"), "s")
    assert op(port, op="rate", max=5)["rc"] == 0  # 5 messages a minute from now on
    try:
        for i in range(8):
            await a.send({"type": "broadcast", "channel": "open:r", "data": {"i": i},
                          "request_id": f"p{i}"})
        for i in range(8):
            r = await a.answer(f"p{i}")
            if i < 5:
                ok(r, f"p{i}")
            else:
                refused(r, f"p{i}", "Rate limit exceeded")
        await wait_for(lambda: len(a.messages) >= 5, "5 delivered")
        await asyncio.sleep(0.3)
        assert [m["data"]["i"] for m in a.messages] == [0, 1, 2, 3, 4], a.messages
    finally:
        op(port, op="rate", max=0)
    await a.close()


async def case_cluster(p1, p2):
    cs = [await Client(p, n).open() for p, n in ((p1, "a1"), (p1, "b1"), (p2, "a2"), (p2, "b2"))]
    for i, c in enumerate(cs):
        ok(await c.ask({"type": "subscribe", "channel": "order:x"}, f"s{i}"), f"s{i}")
    subs = op(p1, op="subscribers", channel="order:x")
    assert subs["rc"] == 0 and sorted(subs["list"]) == ["a1", "a2", "b1", "b2"], subs
    chans = op(p1, op="channels", id="a2")  # a client of the other replica
    assert chans["rc"] == 0 and chans["list"] == ["order:x"], chans
    # 500 messages from two publishers on two replicas, interleaved
    rcs = {}
    ths = [threading.Thread(target=lambda p=p, t=t: rcs.__setitem__(t, op(
        p, op="publish_many", channel="order:x", n=250, tag=t)["rc"])) for p, t in
           ((p1, "p1"), (p2, "p2"))]
    for t in ths:
        t.start()
    while any(t.is_alive() for t in ths):
        await asyncio.sleep(0.01)
    assert rcs == {"p1": 0, "p2": 0}, rcs
    for c in cs:
        await wait_for(lambda: len(c.messages) >= 500, f"{c.cid}: 500 messages")
    ref = seqs(cs[0])
    for c in cs:
        s = seqs(c)
        assert len(s) == 500 and len(set(s)) == 500, (c.cid, len(s))
        for tag in ("p1", "p2"):
            assert [q for p, q in s if p == tag] == list(range(1, 251)), (c.cid, tag)
        assert s == ref, f"{c.cid} saw another order than a1"
    # a broadcast frame from a client of replica 2 reaches every subscriber once
    ok(await cs[2].ask({"type": "broadcast", "channel": "order:x", "data": {"p": "f", "seq": 1}},
                       "b"), "b")
    for c in cs:
        await wait_for(lambda: len(c.messages) >= 501, f"{c.cid}: the broadcast")
    await asyncio.sleep(0.3)
    for c in cs:
        assert len(c.messages) == 501 and seqs(c)[-1] == ("f", 1), c.cid
    # the server API on a client of the other replica: subscribe, deliver, unsubscribe
    a2 = cs[2]
    assert op(p1, op="subscribe", id="a2", channel="order:y")["rc"] == 0
    assert op(p1, op="subscribe", id="ghost", channel="order:y")["rc"] == -4  # ENOENT
    await wait_for(lambda: op(p2, op="channels", id="a2")["list"] == ["order:x", "order:y"] or
                   sorted(op(p2, op="channels", id="a2")["list"]) == ["order:x", "order:y"],
                   "a2 subscribed from replica 1")
    assert op(p1, op="subscribers", channel="order:y")["list"] == ["a2"]
    assert op(p1, op="publish", channel="order:y", data={"p": "y", "seq": 1})["rc"] == 0
    await wait_for(lambda: len(a2.messages) == 502, "a2: order:y")
    assert a2.messages[-1]["channel"] == "order:y", a2.messages[-1]
    assert op(p1, op="unsubscribe", id="a2", channel="order:y")["rc"] == 0
    await wait_for(lambda: op(p1, op="subscribers", channel="order:y")["list"] == [],
                   "a2 unsubscribed from replica 1")
    assert op(p2, op="channels", id="a2")["list"] == ["order:x"]
    # a client that leaves leaves the cluster-wide list
    await cs[3].close()
    await wait_for(lambda: sorted(op(p1, op="subscribers", channel="order:x")["list"]) ==
                   ["a1", "a2", "b1"], "b2 left the list")
    for c in cs[:3]:
        await c.close()
    await wait_for(lambda: op(p2, op="subscribers", channel="order:x")["list"] == [], "empty")


async def case_kill(p1, p2, pid2):
    k1 = await Client(p1, "k1").open()
    k2 = await Client(p2, "k2").open()
    ok(await k1.ask({"type": "subscribe", "channel": "order:k"}, "s1"), "s1")
    ok(await k2.ask({"type": "subscribe", "channel": "order:k"}, "s2"), "s2")
    assert sorted(op(p1, op="subscribers", channel="order:k")["list"]) == ["k1", "k2"]
    os.kill(pid2, signal.SIGKILL)
    # the replica's clients are reaped within 3 heartbeats: k2 leaves the list
    await wait_for(lambda: op(p1, op="subscribers", channel="order:k")["list"] == ["k1"],
                   "k2 reaped", timeout=15)
    assert op(p1, op="channels", id="k2")["rc"] == -4
    # the surviving replica goes on delivering
    assert op(p1, op="publish", channel="order:k", data={"p": "k", "seq": 1})["rc"] == 0
    await wait_for(lambda: len(k1.messages) == 1, "k1 delivery")
    await k1.close()


async def case_restart(p1, p2):
    """Redis restarts (the test does it, driven by files in CHAN_DIR): a publish
    while it is away is refused (ECONN); once it is back the subscriber lists are
    written again (resync) and delivery goes on, once each."""
    d = os.environ["CHAN_DIR"]
    r1, r2 = await Client(p1, "r1").open(), await Client(p2, "r2").open()
    ok(await r1.ask({"type": "subscribe", "channel": "order:r"}, "s1"), "s1")
    ok(await r2.ask({"type": "subscribe", "channel": "order:r"}, "s2"), "s2")
    assert op(p1, op="publish", channel="order:r", data={"p": "r", "seq": 1})["rc"] == 0
    for c in (r1, r2):
        await wait_for(lambda: len(c.messages) == 1, f"{c.cid} before")
    open(f"{d}/ready", "w").close()
    await asyncio.get_event_loop().run_in_executor(None, wait_file, f"{d}/down")
    await wait_for(lambda: op(p1, op="publish", channel="order:r",
                              data={"p": "lost", "seq": 0})["rc"] == -9, "ECONN while away")
    assert op(p1, op="subscribers", channel="order:r")["rc"] == -9
    open(f"{d}/checked", "w").close()
    await asyncio.get_event_loop().run_in_executor(None, wait_file, f"{d}/up")
    for p in (p1, p2):
        await wait_for(lambda: sorted(op(p, op="subscribers", channel="order:r").get("list", []))
                       == ["r1", "r2"], "lists written again", timeout=20)
    assert op(p2, op="publish", channel="order:r", data={"p": "r", "seq": 2})["rc"] == 0
    for c in (r1, r2):
        await wait_for(lambda: len(c.messages) >= 2, f"{c.cid} after")
    await asyncio.sleep(0.3)
    for c in (r1, r2):
        assert seqs(c) == [("r", 1), ("r", 2)], (c.cid, seqs(c))
    await r1.close()
    await r2.close()


def main():
    case, ports = sys.argv[1], [int(x) for x in sys.argv[2:]]
    fn = {"local": case_local, "auth": case_auth, "rate": case_rate, "cluster": case_cluster,
          "kill": case_kill, "restart": case_restart}[case]
    try:
        asyncio.get_event_loop().run_until_complete(asyncio.wait_for(fn(*ports), 60))
    except Exception as e:  # the test prints why
        import traceback
        traceback.print_exc()
        print(f"channels_clients.py {case}: FAILED: {e!r}", file=sys.stderr)
        sys.exit(1)
    print(f"channels_clients.py {case}: ok")


if __name__ == "__main__":
    main()
