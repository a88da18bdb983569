#!/usr/bin/python3
"""Real WebSocket clients (python3-websockets) for test_channels_recovery.c.

  channels_recovery.py CASE PORT_A PORT_B REDIS_PORT [FILE]
Cases: recover, trimmed, steady, catchup (FILE: replica B's pid),
epoch_pre (writes the position to FILE),
epoch_post (reads it: Redis restarted meanwhile), nobus (PORT_A: one process
without a bus). Each asserts what it checks
and exits 0 on success. The service is channels_service.c with
CHAN_HISTORY="hist:*" on two replicas of one Redis.
"""
import asyncio
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from channels_clients import Client, T, ok, op, wait_for  # noqa: E402


class RClient(Client):
    """Also records the order of answers and messages."""

    async def reader(self):
        self.events = []
        try:
            async for raw in self.ws:
                f = json.loads(raw)
                self.events.append(f)
                self.frame(f)
        except Exception:  # noqa: BLE001 - the socket is killed on purpose
            pass

    def kill(self):
        """The socket dies: no close frame."""
        self.ws.transport.abort()


def offsets(c, channel):
    return [m["offset"] for m in c.messages if m["channel"] == channel]


def check_run(c, channel, first, last):
    got = offsets(c, channel)
    dup = [(i, o) for i, o in enumerate(got) if i and o <= got[i - 1]]
    if dup:
        i = dup[0][0]
        ev = [e for e in c.events if e.get("channel") == channel]
        print(c.cid, [json.dumps(e) for e in ev[max(0, i - 2):i + 3]], file=sys.stderr)
    assert got == list(range(first, last + 1)), (c.cid, dup[:5], len(got), first, last)


async def subscribe(c, channel, rid, since=None):
    f = {"type": "subscribe", "channel": channel}
    if since is not None:
        f["since"] = since
    r = await c.ask(f, rid)
    ok(r, rid)
    return r["data"]


async def wait_hist(rport, ch, n, what, seconds=10):
    """Until channel ch's history stream holds n entries (publishes go out
    from the publishing replica's publisher thread, after op returned)."""
    import redis
    r = redis.Redis(port=rport)
    end = time.monotonic() + seconds
    while r.xlen(f"daebus:chan_test:ch:{ch}:hist") < n:
        assert time.monotonic() < end, what
        await asyncio.sleep(0.02)


async def case_recover(pa, pb, rport):
    ch = "hist:rec"
    x = await RClient(pa, "rx").open()
    d = await subscribe(x, ch, "s1")
    assert isinstance(d["offset"], int) and isinstance(d["epoch"], str), d
    assert op(pa, op="publish_many", channel=ch, n=5, tag="pre")["rc"] == 0
    await wait_for(lambda: len(x.messages) == 5, "5 live messages")
    m = x.messages[-1]
    assert m["offset"] == d["offset"] + 5 and m["epoch"] == d["epoch"], (d, m)
    since = {"offset": m["offset"], "epoch": m["epoch"]}
    x.kill()
    # 200 messages published while it is away (the other replica publishes)
    assert op(pb, op="publish_many", channel=ch, n=200, tag="gap")["rc"] == 0
    # they go out from B's publisher thread: in Redis before the live ones
    await wait_hist(rport, ch, 205, "the 200 missed in Redis")
    y = await RClient(pb, "rx2").open()
    # live publishes race with the recovery
    t = threading.Thread(target=lambda: op(pa, op="publish_many", channel=ch, n=50, tag="live"))
    t.start()
    t0 = time.monotonic()
    d2 = await subscribe(y, ch, "s2", since)
    await wait_for(lambda: len(y.messages) >= 200, "200 missed", 20)
    print(f"recover: answer + 200 missed messages in {(time.monotonic() - t0) * 1000:.1f} ms")
    t.join()
    assert d2["recovered"] is True and d2["epoch"] == since["epoch"], d2
    await wait_for(lambda: len(y.messages) >= 250, "200 missed + 50 live", 20)
    await asyncio.sleep(0.2)
    check_run(y, ch, since["offset"] + 1, since["offset"] + 250)
    got = [(m["data"]["p"], m["data"]["seq"]) for m in y.messages]
    assert got == [("gap", i) for i in range(1, 201)] + [("live", i) for i in range(1, 51)], got
    # the answer comes before the replayed messages
    kinds = [e.get("type") for e in y.events if e.get("request_id") == "s2" or
             e.get("type") == "channel_message"]
    assert kinds[0] == "response", kinds[:3]
    # a malformed since: a clear error, nothing subscribed
    r = await y.ask({"type": "subscribe", "channel": "hist:other", "since": {"offset": "x"}}, "s3")
    assert r["type"] == "error" and "since" in r["error"], r
    await y.close()


async def case_trimmed(pa, pb, rport):
    ch = "hist:trim"
    x = await RClient(pa, "tx").open()
    d = await subscribe(x, ch, "t1")
    assert op(pa, op="publish_many", channel=ch, n=50, tag="a")["rc"] == 0
    subprocess.run(["redis-cli", "-p", str(rport), "XTRIM", f"daebus:chan_test:ch:{ch}:hist",
                    "MAXLEN", "10"], check=True, capture_output=True)
    y = await RClient(pb, "ty").open()
    d2 = await subscribe(y, ch, "t2", {"offset": d["offset"], "epoch": d["epoch"]})
    assert d2["recovered"] is False and d2["offset"] == d["offset"] + 50, d2
    assert op(pa, op="publish_many", channel=ch, n=3, tag="b")["rc"] == 0
    await wait_for(lambda: len(y.messages) == 3, "live after a failed recovery")
    await asyncio.sleep(0.2)
    assert [m["data"]["p"] for m in y.messages] == ["b"] * 3, y.messages  # no history sent
    # a wrong epoch: not recovered either
    d3 = await subscribe(y, "hist:trim2", "t3", {"offset": 0, "epoch": "nope"})
    assert d3["recovered"] is False, d3
    await x.close()
    await y.close()


async def case_steady(pa, pb, rport):
    ch = "hist:steady"
    n = 600
    base = await RClient(pb, "sb").open()
    d = await subscribe(base, ch, "b1")
    since = {"offset": d["offset"], "epoch": d["epoch"]}
    t = threading.Thread(target=lambda: op(pa, op="publish_many", channel=ch, n=n, tag="s"))
    t.start()
    late = []
    for i, port in enumerate((pb, pa, pb, pa)):
        await wait_for(lambda: len(base.messages) >= (i + 1) * n // 6, "the stream runs")
        c = await RClient(port, f"sl{i}").open()
        dd = await subscribe(c, ch, "l", since)
        assert dd["recovered"] is True, dd
        late.append(c)
    t.join()
    for c in [base] + late:
        await wait_for(lambda: len(c.messages) >= n, f"{c.cid}: {n} messages", 20)
    await asyncio.sleep(0.2)
    for c in [base] + late:
        check_run(c, ch, since["offset"] + 1, since["offset"] + n)
    for c in [base] + late:
        await c.close()


async def case_epoch_pre(pa, pb, rport, path):
    ch = "hist:ep"
    x = await RClient(pa, "ex").open()
    d = await subscribe(x, ch, "e1")
    assert op(pa, op="publish_many", channel=ch, n=5, tag="a")["rc"] == 0
    await wait_for(lambda: len(x.messages) == 5, "5 messages")
    with open(path, "w") as f:
        json.dump({"offset": x.messages[-1]["offset"], "epoch": d["epoch"]}, f)
    await x.close()


async def case_epoch_post(pa, pb, rport, path):
    ch = "hist:ep"
    with open(path) as f:
        since = json.load(f)
    end = time.monotonic() + 20  # until both replicas publish again
    while op(pa, op="publish", channel=ch, data={"p": "b", "seq": 0})["rc"] != 0:
        assert time.monotonic() < end, "no publish after the restart"
        await asyncio.sleep(0.1)
    y = await RClient(pb, "ey").open()
    d = await subscribe(y, ch, "e2", since)
    assert d["recovered"] is False and d["epoch"] != since["epoch"], (d, since)
    assert op(pa, op="publish", channel=ch, data={"p": "c", "seq": 1})["rc"] == 0
    await wait_for(lambda: len(y.messages) == 1, "live after the restart")
    assert y.messages[0]["epoch"] == d["epoch"], y.messages
    await y.close()


async def case_catchup(pa, pb, rport, pid_b):
    """Replica B's Redis subscriber is away (B stopped, every pub/sub
    connection killed) while A publishes: B's client gets the missed messages
    from the history before the next one, once each, in order. Under load B
    sometimes has them already when it is back (not understood yet: see the
    issue's note); every round must then still be whole and in order, and the
    catch-up itself must have been seen in one of three rounds."""
    seen = False
    for k in range(3):
        if await catchup_round(pa, pb, rport, int(pid_b), f"hist:cu{k}"):
            seen = True
            break
        print(f"catchup: round {k}: B had the missed ones when back; again", flush=True)
    assert seen, "no round where B missed the messages"


async def catchup_round(pa, pb, rport, pid_b, ch):
    """One round on channel ch. Returns: whether B caught up (it had not
    delivered the missed messages before the next one came)."""
    import signal
    import redis
    r = redis.Redis(port=rport)
    ws_chan = "daebus:chan_test:ws"
    x = await RClient(pb, "cx").open()
    await subscribe(x, ch, "c1")
    assert op(pa, op="publish_many", channel=ch, n=3, tag="before")["rc"] == 0
    await wait_for(lambda: len(x.messages) == 3, "3 messages before")
    os.kill(pid_b, signal.SIGSTOP)
    try:
        old = {c["id"] for c in r.client_list(_type="pubsub")}
        r.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        # A subscribes again; B cannot (stopped). Redis may close a killed
        # connection a moment later: every old one gone, or B gets what
        # follows on its old connection.
        end = time.monotonic() + 5
        while r.pubsub_numsub(ws_chan)[0][1] < 1 or \
                old & {c["id"] for c in r.client_list(_type="pubsub")}:
            assert time.monotonic() < end, "replica A did not subscribe again"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        assert op(pa, op="publish_many", channel=ch, n=5, tag="missed")["rc"] == 0
        # A's history publishes go out from its publisher thread: B stays
        # away until they are in Redis (each one's XADD and PUBLISH are one
        # script), else a late one reaches B live once it is back.
        await wait_hist(rport, ch, 8, "A's publishes in Redis")
    finally:
        os.kill(pid_b, signal.SIGCONT)
    end = time.monotonic() + 10
    while r.pubsub_numsub(ws_chan)[0][1] < 2:
        assert time.monotonic() < end, "replica B did not subscribe again"
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    caught_up = len(x.messages) == 3
    assert op(pa, op="publish_many", channel=ch, n=1, tag="next")["rc"] == 0
    await wait_for(lambda: len(x.messages) >= 9, "the 5 missed and the next one", 10)
    await asyncio.sleep(0.3)
    got = [(m["data"]["p"], m["data"]["seq"]) for m in x.messages]
    want = [("before", i) for i in range(1, 4)] + [("missed", i) for i in range(1, 6)] + \
        [("next", 1)]
    assert got == want, got
    first = x.messages[0]["offset"]
    check_run(x, ch, first, first + 8)
    await x.close()
    return caught_up


async def case_nobus(pa, pb, rport):
    """pa: one process without a bus: history channels are history-less."""
    ch = "hist:solo"
    x = await RClient(pa, "nx").open()
    d = await subscribe(x, ch, "n1", {"offset": 0, "epoch": "e"})
    assert d == {"channel": ch, "recovered": False}, d
    assert op(pa, op="publish_many", channel=ch, n=3, tag="n")["rc"] == 0
    await wait_for(lambda: len(x.messages) == 3, "3 messages")
    assert all("offset" not in m for m in x.messages), x.messages
    await x.close()


def main():
    case, pa, pb, rport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    fn = globals()["case_" + case]
    args = (pa, pb, rport) + tuple(sys.argv[5:])
    try:
        asyncio.run(asyncio.wait_for(fn(*args), 50))
    except AssertionError as e:
        print(f"{case}: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"{case}: ok")


if __name__ == "__main__":
    main()
