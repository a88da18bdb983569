#!/usr/bin/env python3
"""Real WebSocket clients (python3-websockets) and a Daebus caller (python3-redis)
driving three chat_service replicas for test_bp_cluster*.c: every client is
connected straight to one replica's port, as a load balancer would spread them.

Usage: bp_cluster_client.py SCENARIO REDIS_URL PORTS [ARGS...]
  PORTS: comma-separated HTTP ports of the replicas
  rooms | admin          the functional scenarios
  away DIR               Redis killed and restarted by the test (files in DIR
                         say when): clear errors while away, a name of a
                         client that left meanwhile free again, rooms work
  kill PID               the replica on the last port (PID) is killed with -9
  unreached PID          the replica on the second port (PID) is stopped and its
                         WebSocket subscriber cut: its members get what they
                         missed from the room channel's history
  channels               rooms on channels: a member dropped without a close
                         frame rejoins another replica with "since" and gets
                         exactly the missed messages; the TypeScript client's
                         frames on room:<name> (who may subscribe, delivery)
  stress N SECONDS FILE  N clients chat in rooms for SECONDS (FILE is written
                         when the traffic starts: the test then kills a
                         replica and restarts Redis); every message to a live
                         member must arrive exactly once
Exit 0 when every check passed; otherwise prints what failed and exits 1.
"""
import asyncio
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
import uuid

import redis
import websockets

SCENARIO, REDIS_URL = sys.argv[1], sys.argv[2]
PORTS = [int(p) for p in sys.argv[3].split(",")]
ARGS = sys.argv[4:]
SERVICE = "chat_service"
TIMEOUT = 10.0


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class Client:
    """One WebSocket client on one replica; pushes are kept apart from replies."""

    def __init__(self, ws, port):
        self.ws = ws
        self.port = port
        self.pushes = []
        self.seq = 0
        self.client_id = None
        self.name = None

    @classmethod
    async def open(cls, port, name=None):
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=TIMEOUT,
                                      max_size=None, ping_interval=None)
        c = cls(ws, port)
        hello = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        check(hello["data"].get("status") == "connected", f"connect reply: {hello}")
        c.client_id = hello["data"]["client_id"]
        if name:
            r = await c.call("register", {"username": name})
            check(r.get("status") == "registered", f"register {name}: {r}")
            c.name = name
        return c

    async def call(self, type_, data):
        self.seq += 1
        rid = f"t-{self.seq}"
        await self.ws.send(json.dumps({"type": type_, "data": data, "request_id": rid}))
        deadline = time.monotonic() + TIMEOUT
        while True:
            left = deadline - time.monotonic()
            check(left > 0, f"no reply to {type_}")
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            if msg.get("type") in ("response", "error") and msg.get("request_id") == rid:
                check(msg["type"] == "response", f"{type_} answered {msg}")
                return msg["data"]
            self.pushes.append(msg)

    async def frame(self, msg):
        """Sends a frame of its own (a channel frame) with a request_id and
        returns the whole answer (response or error)."""
        self.seq += 1
        msg = dict(msg, request_id=f"f-{self.seq}")
        await self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + TIMEOUT
        while True:
            left = deadline - time.monotonic()
            check(left > 0, f"no answer to {msg}")
            got = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            if got.get("type") in ("response", "error") and got.get("request_id") == msg["request_id"]:
                return got
            self.pushes.append(got)

    def frames(self, type_):
        return [m for m in self.pushes if m.get("type") == type_]

    async def drain(self, wait):
        """Reads pushes for wait seconds."""
        end = time.monotonic() + wait
        while time.monotonic() < end:
            try:
                msg = json.loads(await asyncio.wait_for(self.ws.recv(), end - time.monotonic()))
            except asyncio.TimeoutError:
                break
            self.pushes.append(msg)

    def count(self, type_, pred=lambda d: True):
        return sum(1 for m in self.pushes if m.get("type") == type_ and pred(m.get("data")))

    async def expect(self, type_, pred=lambda d: True, what="", timeout=TIMEOUT):
        """Waits for a push of type_ whose data satisfies pred (kept in pushes)."""
        deadline = time.monotonic() + timeout
        while not any(m.get("type") == type_ and pred(m.get("data")) for m in self.pushes):
            left = deadline - time.monotonic()
            check(left > 0, f"{self.name or self.client_id} on {self.port}: no {type_} push "
                  f"{what}; got {self.pushes[-5:]}")
            try:
                msg = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            except asyncio.TimeoutError:
                continue
            self.pushes.append(msg)
        return next(m["data"] for m in self.pushes if m.get("type") == type_ and pred(m.get("data")))

    async def close(self):
        await self.ws.close()


def http_json(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=TIMEOUT) as r:
        return json.loads(r.read())


class Caller:
    """The Python DaebusCaller's wire format, over redis-py. Counts the final
    replies to each request: with replicas there must be exactly one."""

    def __init__(self):
        self.r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        self.ps = self.r.pubsub()
        self.channel = f"caller:{uuid.uuid4()}"
        self.ps.subscribe(self.channel)
        self.ps.get_message(timeout=1.0)

    # asked again after a time-out; notify_user too (a second notification
    # would not fail the checks below)
    READ_ONLY = ("get_connected_clients", "find_inactive_clients", "get_instances", "notify_user")

    def request(self, action, payload=None, only_one=False):
        """only_one: after the reply, listen 0.3 s more: no second final reply
        (one replica takes each request). A read-only request is asked again
        once after a time-out, as a caller would: a request published while
        every replica stalled past its heartbeat is dropped by all of them
        (seen at a load average of 50 on 2 cores)."""
        try:
            return self._request(action, payload, only_one)
        except Failure:
            if action not in self.READ_ONLY:
                raise
            print(f"  {action}: no reply in {TIMEOUT} s, asking again", file=sys.stderr)
            return self._request(action, payload, only_one)

    def _request(self, action, payload, only_one):
        rid = str(uuid.uuid4())
        self.r.publish(SERVICE, json.dumps({"action": action, "payload": payload or {},
                                            "reply_to": self.channel, "request_id": rid,
                                            "service": SERVICE}))
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            m = self.ps.get_message(timeout=0.2)
            if not m or m["type"] != "message":
                continue
            reply = json.loads(m["data"])
            if reply.get("request_id") != rid or reply.get("final") is False:
                continue
            end = time.monotonic() + (0.3 if only_one else 0)
            while time.monotonic() < end:
                m = self.ps.get_message(timeout=0.05)
                if m and m["type"] == "message":
                    again = json.loads(m["data"])
                    check(again.get("request_id") != rid or again.get("final") is False,
                          f"{action}: a second final reply {again}")
            return reply["status"], reply["payload"]
        raise Failure(f"no reply to {action}")


def is_left(user, room):
    return lambda d: d.get("action") == "left" and d.get("user") == user and d.get("room") == room


# ---- scenarios ----

async def rooms():
    p1, p2, p3 = PORTS
    alice = await Client.open(p1, "alice")
    bob = await Client.open(p2, "bob")
    carol = await Client.open(p3, "carol")
    # usernames are unique across replicas (ASCII case ignored)
    imp = await Client.open(p2)
    r = await imp.call("register", {"username": "ALICE"})
    check(r == {"error": "Username is already taken", "status": "error"}, f"impostor: {r}")

    r = await alice.call("join_room", {"room": "lobby"})
    check(r.get("members") == 1 and r.get("history") == [], f"first join: {r}")
    r = await bob.call("join_room", {"room": "lobby"})
    check(r.get("members") == 2, f"bob joins on replica 2: {r}")
    d = await alice.expect("room_update", lambda d: d.get("user") == "bob")
    check(d == {"user": "bob", "action": "joined", "room": "lobby", "members": 2}, f"update: {d}")
    r = await carol.call("join_room", {"room": "lobby"})
    check(r.get("members") == 3, f"carol joins on replica 3: {r}")
    for c in (alice, bob):
        d = await c.expect("room_update", lambda d: d.get("user") == "carol")
        check(d.get("members") == 3, f"update carol: {d}")

    # a message from replica 1 reaches the members on replicas 2 and 3, once
    r = await alice.call("chat_message", {"room": "lobby", "message": "hello all"})
    check(r.get("status") == "sent", f"chat: {r}")
    for c in (bob, carol):
        d = await c.expect("new_message", lambda d: d.get("id") == r["message_id"])
        check(d["sender"] == "alice" and d["text"] == "hello all" and
              d["timestamp"] == r["timestamp"], f"new_message: {d}")
    for i in range(5):
        await bob.call("chat_message", {"room": "lobby", "message": f"b{i}"})
    await asyncio.gather(alice.drain(0.5), bob.drain(0.1), carol.drain(0.5))
    for c, want in ((alice, 5), (carol, 6), (bob, 1)):
        got = c.count("new_message")
        check(got == want, f"{c.name}: {got} new_message pushes, want {want}: no copy twice")

    # history and /api/rooms are the same from every replica
    dave = await Client.open(p1, "dave")
    r = await dave.call("join_room", {"room": "lobby"})
    check([m["text"] for m in r["history"]] == ["hello all"] + [f"b{i}" for i in range(5)],
          f"history on replica 1: {r['history']}")
    for p in PORTS:
        lobby = [x for x in http_json(p, "/api/rooms")["rooms"] if x["name"] == "lobby"]
        check(len(lobby) == 1 and lobby[0]["members"] == 4 and lobby[0]["message_count"] == 6,
              f"/api/rooms on {p}: {lobby}")
    r = await carol.call("list_rooms", {})
    check(r.get("rooms") == [{"name": "lobby", "members": 4}], f"list_rooms on 3: {r}")

    # leave: the others on every replica are told
    r = await carol.call("leave_room", {"room": "lobby"})
    check(r == {"status": "left", "room": "lobby"}, f"leave: {r}")
    for c in (alice, bob, dave):
        await c.expect("room_update", is_left("carol", "lobby"))

    # direct messages to a user on another replica, by name and by id
    r = await alice.call("direct_message", {"to": "Bob", "message": "psst"})
    check(r.get("status") == "sent", f"direct_message: {r}")
    d = await bob.expect("direct_message", lambda d: d.get("id") == r["message_id"])
    check(d["from"] == "alice" and d["text"] == "psst" and d["from_client_id"] == alice.client_id,
          f"direct_message push: {d}")
    r = await bob.call("direct_message", {"to": carol.client_id, "message": "by id"})
    d = await carol.expect("direct_message", lambda d: d.get("text") == "by id")
    check(d["from"] == "bob", f"dm by id: {d}")
    r = await bob.call("direct_message", {"to": "nobody", "message": "x"})
    check(r == {"error": "User nobody not connected", "status": "error"}, f"dm nobody: {r}")
    r = await imp.call("direct_message", {"to": "bob", "message": "x"})
    check(r == {"error": "Register a username first", "status": "error"}, f"dm anon: {r}")
    await asyncio.gather(bob.drain(0.3), carol.drain(0.3))
    check(bob.count("direct_message") == 1 and carol.count("direct_message") == 1, "dm twice")

    # a client closing on replica 2: the members on 1 hear it once
    await bob.close()
    for c in (alice, dave):
        await c.expect("room_update", is_left("bob", "lobby"))
    await asyncio.gather(alice.drain(0.5), dave.drain(0.1))
    check(alice.count("room_update", is_left("bob", "lobby")) == 1, "bob's departure twice")
    # the name is free again, on any replica
    bob2 = await Client.open(p3, "bob")
    for c in (alice, carol, dave, imp, bob2):
        await c.close()
    for p in PORTS:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and http_json(p, "/api/rooms")["total"] != 0:
            await asyncio.sleep(0.05)
        check(http_json(p, "/api/rooms")["total"] == 0, f"rooms left on {p}")


async def admin():
    p1, p2, p3 = PORTS
    caller = Caller()
    alice = await Client.open(p1, "alice")
    bob = await Client.open(p2, "bob")
    carol = await Client.open(p3, "carol")
    anon = await Client.open(p3)
    ids = {c.client_id for c in (alice, bob, carol, anon)}

    st, p = caller.request("get_connected_clients", only_one=True)
    check(st == "success" and p["count"] == 4 and set(p["clients"]) == ids,
          f"get_connected_clients sees every replica's clients: {p}")
    check(p["clients"][bob.client_id]["username"] == "bob" and
          p["clients"][anon.client_id]["is_authenticated"] is False, f"client info: {p}")
    instances = {c["instance_id"] for c in p["clients"].values()}
    check(len(instances) == 3, f"instance_id of the clients: {instances}")
    for port in PORTS:
        h = http_json(port, "/health")
        cl = h["checks"].get("cluster", {})
        check(cl.get("instances") == 3 and cl.get("clients") == 4, f"/health cluster on {port}: {h}")
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{p2}/metrics", timeout=TIMEOUT).read()
    check(b"\ndaebus_cluster_ws_clients 4\n" in metrics and b"\ndaebus_instances 3\n" in metrics,
          "cluster gauges in /metrics")

    st, p = caller.request("notify_user", {"user_id": "carol", "message": "hi"}, only_one=True)
    check(st == "success" and p["delivered"] and p["client_id"] == carol.client_id, f"notify: {p}")
    d = await carol.expect("notification")
    check(d.get("message") == "hi", f"notification: {d}")
    st, p = caller.request("notify_user", {"user_id": bob.client_id, "message": "by id"})
    await bob.expect("notification", lambda d: d.get("message") == "by id")

    # the others are silent for 3.5 s, alice speaks 1 s (5 heartbeats: the
    # activity of a client of another replica is refreshed once per
    # heartbeat) before the query
    await asyncio.sleep(2.5)
    await alice.call("list_rooms", {})
    await asyncio.sleep(1.0)
    st, p = caller.request("find_inactive_clients", {"threshold_seconds": 2})
    check(st == "success" and set(p["clients"]) == ids - {alice.client_id},
          f"inactive over every replica: {p}")

    # kick a client of replica 3 (whichever replica takes the request)
    st, p = caller.request("kick_client", {"client_id": anon.client_id, "reason": "testing"},
                           only_one=True)
    check(st == "success" and p == {"success": True, "client_id": anon.client_id}, f"kick: {p}")
    d = await anon.expect("disconnect_notice")
    check(d.get("reason") == "testing", f"notice: {d}")
    try:
        while True:
            await asyncio.wait_for(anon.ws.recv(), TIMEOUT)
    except websockets.ConnectionClosed as e:
        check(e.code == 1000, f"kick close code {e.code}")
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        st, p = caller.request("get_connected_clients")
        if p.get("count") == 3:
            break
        await asyncio.sleep(0.1)
    check(p.get("count") == 3 and anon.client_id not in p["clients"], f"after kick: {p}")

    # shutdown of one named replica: only its clients are told
    st, p = caller.request("shutdown", {"scope": "bogus"})
    check(st == "error", f"bad scope: {p}")
    st, p = caller.request("shutdown", {"instance_id": "no-such-instance"})
    check(st == "error" and "not a live instance" in p.get("error", ""), f"bad id: {p}")
    st, p = caller.request("get_instances")
    third = [i for i in p["instances"] if i["http_port"] == p3]
    check(len(third) == 1, f"instances: {p}")
    st, p = caller.request("shutdown", {"instance_id": third[0]["id"], "message": "bye 3",
                                        "timeout": 1})
    check(st == "success" and p["scope"] == "instance" and p["instance_id"] == third[0]["id"],
          f"shutdown one: {p}")
    d = await carol.expect("server_shutdown")
    check(d.get("message") == "bye 3", f"server_shutdown: {d}")
    await asyncio.gather(alice.drain(0.5), bob.drain(0.1))
    check(alice.count("server_shutdown") == 0 and bob.count("server_shutdown") == 0,
          "only replica 3's clients are shut down")
    await alice.close()
    await bob.close()


async def kill():
    """Members on the replica killed: each departure announced once to the others."""
    p1, p2, p3 = PORTS
    pid = int(ARGS[0])
    heartbeat = float(ARGS[1])
    x1 = await Client.open(p1, "x1")
    x2 = await Client.open(p2, "x2")
    x3 = await Client.open(p3, "x3")
    x3b = await Client.open(p3, "x3b")
    for c in (x1, x2, x3, x3b):
        await c.call("join_room", {"room": "k"})
        await c.call("join_room", {"room": "k2"})
    await asyncio.gather(x1.drain(0.3), x2.drain(0.3))
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    for c in (x1, x2):
        for who in ("x3", "x3b"):
            for room in ("k", "k2"):
                await c.expect("room_update", is_left(who, room), timeout=3 * heartbeat + 5)
    took = time.monotonic() - t0
    await asyncio.gather(x1.drain(1.0), x2.drain(1.0))
    for c in (x1, x2):
        for who in ("x3", "x3b"):
            for room in ("k", "k2"):
                n = c.count("room_update", is_left(who, room))
                check(n == 1, f"{c.name}: {who} left {room} announced {n} times")
    last = [m["data"] for m in x1.pushes if m.get("type") == "room_update"][-1]
    check(last["members"] == 2, f"members after the departures: {last}")
    # 3 heartbeats for the component to notice, the rest for the departure
    # script, the cross-replica send and this client, with slack for a loaded
    # machine (measured: about 0.45 s with a 0.2 s heartbeat and 1.3 s with
    # 0.5 s; 4.0 s once under a load average of 47 on 2 cores)
    check(took <= 3 * heartbeat + 3.0, f"departures took {took:.2f} s (3 heartbeats = "
          f"{3 * heartbeat:.2f} s)")
    print(f"  departures of the killed replica's 2 members announced after {took * 1000:.0f} ms")
    r = await x1.call("join_room", {"room": "k"})
    check(r.get("members") == 2, f"room after: {r}")
    # a name of a dead client is free again
    x3new = await Client.open(p2, "x3")
    for c in (x1, x2, x3new):
        await c.close()


async def unreached():
    """A member whose replica's WebSocket subscriber is away (as while a
    replica reconnects after a Redis restart) misses the PUBLISH of a room
    message: its replica must deliver it from the room channel's history
    before the next message, once, in order (docs/channels/history.md). The
    replica on the second port (PID) is stopped, its subscriber's connection
    killed, and resumed."""
    p1, p2, _ = PORTS
    pid = int(ARGS[0])
    r = redis.Redis.from_url(REDIS_URL)
    alice = await Client.open(p1, "u_alice")
    bob = await Client.open(p2, "u_bob")
    for c in (alice, bob):
        await c.call("join_room", {"room": "unreached"})
    await alice.drain(0.2)
    inst = r.hget(f"daebus:{SERVICE}:ws:clients", bob.client_id)
    inst_a = r.hget(f"daebus:{SERVICE}:ws:clients", alice.client_id)
    check(inst is not None and inst_a is not None, "alice or bob not in the directory")
    chan = f"daebus:{SERVICE}:ws:{inst.decode()}"
    chan_a = f"daebus:{SERVICE}:ws:{inst_a.decode()}"

    def subscribers(ch):
        return r.pubsub_numsub(ch)[0][1]

    os.kill(pid, signal.SIGSTOP)
    try:
        # the WebSocket subscribers: 2 channels each (last command "ping" when
        # their health check ran: an idle subscriber pings after 2 s)
        for c in r.client_list():
            if c.get("cmd") in ("subscribe", "ping") and c.get("sub") == "2":
                r.client_kill_filter(_id=c["id"])
        deadline = time.monotonic() + TIMEOUT
        while subscribers(chan) > 0 or subscribers(chan_a) < 1:
            check(time.monotonic() < deadline, "alice's replica did not subscribe again")
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # alice's replica knows it is up again; bob's is not
        lost = await alice.call("chat_message", {"room": "unreached", "message": "lost"})
    finally:
        os.kill(pid, signal.SIGCONT)
    check(lost.get("status") == "sent" and "warning" not in lost,
          f"sent while a replica's subscriber is away: {lost}")
    deadline = time.monotonic() + TIMEOUT
    while subscribers(chan) < 1:
        check(time.monotonic() < deadline, "bob's replica did not subscribe again")
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # its clients announced again
    ok = await alice.call("chat_message", {"room": "unreached", "message": "back"})
    check(ok.get("status") == "sent" and "warning" not in ok, f"after the return: {ok}")
    await bob.expect("new_message", lambda d: d.get("id") == ok["message_id"])
    await bob.drain(0.3)
    ids = [m["data"].get("id") for m in bob.pushes if m.get("type") == "new_message"]
    check(ids.count(lost["message_id"]) == 1 and ids.count(ok["message_id"]) == 1,
          f"bob must get the missed message and the next one once each: {ids}")
    check(ids.index(lost["message_id"]) < ids.index(ok["message_id"]),
          f"the missed message must come first: {ids}")
    frames = [m for m in bob.pushes if m.get("type") == "new_message"]
    offs = [m.get("offset") for m in frames]
    check(all(isinstance(o, int) for o in offs) and offs == sorted(offs) and
          all(m.get("channel") == "room:unreached" for m in frames),
          f"offsets in order on room:unreached: {frames}")
    for c in (alice, bob):
        await c.close()


async def stress():
    """N clients in rooms of ~30 on every replica chat while the test kills a
    replica and restarts Redis. A message counts when its sender got "sent"
    without a warning; each counted message must reach every member of its
    room that stayed connected exactly once, and a message sent with a
    warning (a member not reached: its replica dead, or its subscriber not
    back yet after the Redis restart) at most once."""
    n, seconds = int(ARGS[0]), float(ARGS[1])
    nrooms = max(1, n // 30)
    clients = []
    for i in range(n):
        c = await Client.open(PORTS[i % len(PORTS)], f"s{i}")
        c.room = f"room{i % nrooms}"
        clients.append(c)
    await asyncio.gather(*(c.call("join_room", {"room": c.room}) for c in clients))
    members = {}
    for c in clients:
        members.setdefault(c.room, []).append(c)
    for c in clients:  # everyone joined: forget the join updates
        await c.drain(0.01)
        c.pushes.clear()
    sent = {}  # message id -> (room, sender, second)
    warned = {}  # the same for the messages "sent" with a warning
    stats = {"refused": 0, "warned": 0, "lost_senders": 0}

    async def reader(c):
        try:
            async for raw in c.ws:
                c.pushes.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        c.dead = True

    async def talker(c):
        i = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end and not getattr(c, "dead", False):
            i += 1
            rid = f"m{i}"
            try:
                await c.ws.send(json.dumps({"type": "chat_message", "request_id": rid,
                                            "data": {"room": c.room, "message": f"{c.name}-{i}"}}))
            except websockets.ConnectionClosed:
                break
            deadline = time.monotonic() + TIMEOUT
            reply = None
            while reply is None and time.monotonic() < deadline and not getattr(c, "dead", False):
                for m in c.pushes:
                    if m.get("request_id") == rid:
                        reply = m
                        break
                else:
                    await asyncio.sleep(0.02)
            if reply is None:
                stats["lost_senders"] += 1
                break
            c.pushes.remove(reply)
            d = reply.get("data") or {}
            if d.get("status") == "sent" and "warning" not in d:
                sent[d["message_id"]] = (c.room, c, time.monotonic() - t_start)
            elif d.get("status") == "sent":  # some members may miss it, none twice
                stats["warned"] += 1
                warned[d["message_id"]] = (c.room, c, time.monotonic() - t_start)
            else:
                stats["refused"] += 1
            await asyncio.sleep(1.0 + (hash(c.name) % 100) / 100.0)

    t_start = time.monotonic()
    readers = [asyncio.ensure_future(reader(c)) for c in clients]
    if len(ARGS) > 2:  # tells the test the traffic started
        with open(ARGS[2], "w") as f:
            f.write("started\n")
    await asyncio.gather(*(talker(c) for c in clients))
    # deliveries in flight: until nothing arrived for a second (at most 20 s)
    quiet, last, end = 0, -1, time.monotonic() + 20
    while quiet < 8 and time.monotonic() < end:
        await asyncio.sleep(0.5)
        total = sum(len(c.pushes) for c in clients)
        quiet = quiet + 1 if total == last else 0
        last = total
    live = [c for c in clients if not getattr(c, "dead", False)]
    got = {c: {} for c in live}
    for c in live:
        for m in c.pushes:
            if m.get("type") == "new_message":
                got[c][m["data"]["id"]] = got[c].get(m["data"]["id"], 0) + 1
    expected = missing = dup = 0
    where = {}  # (second sent, sender port, receiver port) -> missing deliveries
    for mid, (room, sender, at) in sent.items():
        for c in members[room]:
            if c is sender or c not in got:
                continue
            expected += 1
            k = got[c].get(mid, 0)
            missing += k == 0
            dup += k > 1
            if k != 1:
                key = (int(at), sender.port, c.port)
                where[key] = where.get(key, 0) + 1
    for mid, (room, sender, at) in warned.items():
        for c in members[room]:
            if c is not sender and c in got and got[c].get(mid, 0) > 1:
                dup += 1
                key = (int(at), sender.port, c.port)
                where[key] = where.get(key, 0) + 1
    if where:
        print("  deliveries missing or duplicated by (second, sender port, receiver port):",
              sorted(where.items()))
    for c in clients:
        await c.ws.close()
    for r in readers:
        r.cancel()
    print(f"  {n} clients, {len(live)} live at the end, {len(sent)} messages counted, "
          f"{expected} deliveries expected, {missing} missing, {dup} duplicated; "
          f"{stats['refused']} refused while Redis was away, {stats['warned']} sent with a "
          f"warning, {stats['lost_senders']} senders lost with their replica")
    check(len(sent) > n, f"too few messages counted: {len(sent)}")
    check(len(live) < n, "no client was lost with the killed replica")
    check(dup == 0, f"{dup} deliveries duplicated")
    check(missing == 0, f"{missing} of {expected} deliveries missing")


async def wait_file(path, timeout=30):
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        check(time.monotonic() < end, f"the test did not write {path}")
        await asyncio.sleep(0.02)


def touch(path):
    with open(path, "w") as f:
        f.write("1\n")


async def redis_away():
    """With the test: DIR/1 written here (clients set up), the test kills
    Redis and writes DIR/2; the checks while it is away, DIR/3 here; the test
    restarts Redis and writes DIR/4; the checks once it is back."""
    d = ARGS[0]
    watcher = await Client.open(PORTS[0], "watcher")
    stale = await Client.open(PORTS[1], "stale1")
    for c in (watcher, stale):
        await c.call("join_room", {"room": "s"})
    touch(f"{d}/1")
    await wait_file(f"{d}/2")
    await redis_down()
    await stale.close()  # its departure cannot be written now
    await asyncio.sleep(0.3)
    touch(f"{d}/3")
    await wait_file(f"{d}/4")
    deadline = time.monotonic() + TIMEOUT
    tries = []  # every answer, for the failure message
    while True:  # the replicas reconnect (backoff)
        c = await Client.open(PORTS[2])
        r = await c.call("register", {"username": "stale1"})
        tries.append((round(TIMEOUT - (deadline - time.monotonic()), 2), c.client_id, r))
        if r.get("status") == "registered" or time.monotonic() > deadline:
            break
        await c.close()
        await asyncio.sleep(0.2)
    check(r.get("status") == "registered",
          f"the departed client's name is free: {r}; stale1 was {stale.client_id}; "
          f"attempts (s, client, answer): {tries[:5]}")
    # ... and it left its room. (The watcher is told so too, unless the
    # WebSocket component took the watcher's own replica for dead after the
    # outage - its alive key expired while Redis was away - and the watcher
    # left the room that way: seen on a loaded machine.)
    rooms = {x["name"]: x["members"] for x in http_json(PORTS[2], "/api/rooms")["rooms"]}
    check(rooms.get("s", 0) <= 1, f"the departed client is still in its room: {rooms}")
    await c.close()
    await watcher.close()
    await redis_back()


async def redis_down():
    """Redis is away: clear errors from every replica, nothing else."""
    unavailable = {"error": "Rooms unavailable (Redis unreachable); try again", "status": "error"}
    for p in PORTS:
        c = await Client.open(p)
        r = await c.call("register", {"username": f"u{p}"})
        check(r == unavailable, f"register on {p} without Redis: {r}")
        for t, d in (("join_room", {"room": "x"}), ("list_rooms", {}),
                     ("chat_message", {"room": "x", "message": "m"}),
                     ("leave_room", {"room": "x"}), ("direct_message", {"to": "a", "message": "m"})):
            r = await c.call(t, d)
            check(r == unavailable, f"{t} on {p} without Redis: {r}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{p}/api/rooms", timeout=TIMEOUT)
            raise Failure("/api/rooms answered 200 without Redis")
        except urllib.error.HTTPError as e:
            body = json.loads(e.read())
            check(e.code == 503 and body.get("status") == "unavailable", f"/api/rooms: {body}")
        await c.close()


async def redis_back():
    """Redis is back: the rooms work again across replicas."""
    a = await Client.open(PORTS[0], "back_a")
    b = await Client.open(PORTS[1], "back_b")
    await a.call("join_room", {"room": "again"})
    r = await b.call("join_room", {"room": "again"})
    check(r.get("members") == 2, f"join after Redis came back: {r}")
    r = await b.call("chat_message", {"room": "again", "message": "hi"})
    await a.expect("new_message", lambda d: d.get("id") == r.get("message_id"))
    await a.close()
    await b.close()


async def register_retry(c, name):
    """register until the name is free (the replica that held the dropped
    client's connection frees it when it sees the drop)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        r = await c.call("register", {"username": name})
        if r.get("status") == "registered":
            c.name = name
            return
        check(time.monotonic() < deadline, f"register {name} again: {r}")
        await asyncio.sleep(0.1)


async def channels():
    """Rooms on channels (docs/channels.md): room:<name> with history."""
    p1, p2, p3 = PORTS
    alice = await Client.open(p1, "ch_alice")
    bob = await Client.open(p2, "ch_bob")
    r = await alice.call("join_room", {"room": "rec"})
    check(isinstance(r.get("offset"), int) and isinstance(r.get("epoch"), str) and
          "recovered" not in r, f"join reply of a room with history: {r}")
    await bob.call("join_room", {"room": "rec"})
    first = await alice.call("chat_message", {"room": "rec", "message": "m0"})
    await bob.expect("new_message", lambda d: d.get("id") == first["message_id"])
    f0 = bob.frames("new_message")[-1]
    check(f0.get("channel") == "room:rec" and isinstance(f0.get("offset"), int) and
          f0.get("epoch") == r["epoch"], f"new_message frame: {f0}")
    await alice.drain(0.2)
    check(alice.count("new_message") == 0, "the sender got its own message")

    # bob's connection dies without a close frame; 200 messages meanwhile
    since = {"offset": f0["offset"], "epoch": f0["epoch"]}
    bob.ws.transport.abort()
    ids = []
    for i in range(200):
        s_ = await alice.call("chat_message", {"room": "rec", "message": f"missed {i}"})
        check(s_.get("status") == "sent" and "warning" not in s_, f"chat {i}: {s_}")
        ids.append(s_["message_id"])
    # bob comes back on replica 3 and recovers
    bob2 = await Client.open(p3)
    await register_retry(bob2, "ch_bob")
    r = await bob2.call("join_room", {"room": "rec", "since": since})
    check(r.get("status") == "joined" and r.get("recovered") is True, f"rejoin with since: {r}")
    got = bob2.frames("new_message")
    check([m["data"]["id"] for m in got] == ids,
          f"recovered {len(got)} messages, want exactly the 200 missed in order")
    check([m["offset"] for m in got] == list(range(since["offset"] + 1, since["offset"] + 201)),
          "offsets of the recovered messages")
    check(r.get("offset") == since["offset"] + 200, f"position in the reply: {r}")
    live = await alice.call("chat_message", {"room": "rec", "message": "live"})
    await bob2.expect("new_message", lambda d: d.get("id") == live["message_id"])
    await bob2.drain(0.3)
    check([m["data"]["id"] for m in bob2.frames("new_message")] == ids + [live["message_id"]],
          "after the recovered ones: the live one, once, nothing twice")

    # an epoch that is not the room's: not recovered, the reply's history instead
    carol = await Client.open(p2, "ch_carol")
    r = await carol.call("join_room", {"room": "rec", "since": {"offset": 3, "epoch": "0bad"}})
    check(r.get("recovered") is False and len(r.get("history", [])) > 0, f"bad epoch: {r}")
    await carol.drain(0.2)
    check(carol.count("new_message") == 0, "a join without recovery replayed messages")
    r = await carol.call("join_room", {"room": "rec2", "since": {"offset": -1, "epoch": "x"}})
    check(r.get("status") == "error" and "since" in r.get("error", ""), f"malformed since: {r}")

    # the TypeScript client's frames on room:<name>
    dave = await Client.open(p1)
    a = await dave.frame({"type": "subscribe", "channel": "room:rec"})
    check(a.get("type") == "error" and "Register" in a.get("error", ""), f"unregistered: {a}")
    await register_retry(dave, "ch_dave")
    a = await dave.frame({"type": "subscribe", "channel": "room:rec"})
    check(a.get("type") == "error" and "Join the room" in a.get("error", ""), f"non-member: {a}")
    m = await alice.call("chat_message", {"room": "rec", "message": "not for dave"})
    # delivered (the publish is queued: wait until it went out) before dave joins
    await carol.expect("new_message", lambda d: d.get("id") == m["message_id"])
    await asyncio.sleep(0.2)
    await dave.call("join_room", {"room": "rec"})
    a = await dave.frame({"type": "subscribe", "channel": "room:rec"})
    check(a.get("type") == "response" and a.get("success") is True, f"member subscribes: {a}")
    m2 = await alice.call("chat_message", {"room": "rec", "message": "to the channel"})
    await dave.drain(0.3)
    cm = [x for x in dave.frames("channel_message") if x.get("channel") == "room:rec"]
    check(len(cm) == 1 and cm[0]["data"].get("id") == m2["message_id"],
          f"a channel subscriber gets channel_message frames: {dave.pushes[-3:]}")
    check(not any(x["data"].get("id") in (m["message_id"], m2["message_id"])
                  for x in dave.frames("new_message")), "dave got a message twice or too early")
    # presence: the room's members with their usernames; a join seen by a channel subscriber
    a = await dave.frame({"type": "presence", "channel": "room:rec"})
    names = sorted(m["info"].get("username") for m in a.get("data", {}).get("members", []))
    check(a.get("type") == "response" and names == ["ch_alice", "ch_bob", "ch_carol", "ch_dave"],
          f"presence of room:rec: {a}")
    erin = await Client.open(p3, "ch_erin")
    await erin.call("join_room", {"room": "rec"})
    deadline = time.monotonic() + TIMEOUT

    def erin_events():
        return [x for x in dave.frames("channel_presence") if x.get("client_id") == erin.client_id]

    while not erin_events():
        check(time.monotonic() < deadline, f"no presence join of erin: {dave.pushes[-3:]}")
        await dave.drain(0.1)
    pe = erin_events()
    check(len(pe) == 1 and pe[0].get("event") == "join" and
          pe[0].get("info", {}).get("username") == "ch_erin", f"presence join: {pe}")
    await erin.close()
    a = await dave.frame({"type": "broadcast", "channel": "room:rec", "data": {"text": "x"}})
    check(a.get("type") == "error" and "chat_message" in a.get("error", ""), f"broadcast: {a}")
    await dave.call("join_room", {"room": "rec"})  # new_message frames again
    m3 = await alice.call("chat_message", {"room": "rec", "message": "typed again"})
    await dave.expect("new_message", lambda d: d.get("id") == m3["message_id"])
    for c in (alice, bob2, carol, dave):
        await c.close()


def main():
    fn = {"rooms": rooms, "admin": admin, "kill": kill, "stress": stress,
          "away": redis_away, "unreached": unreached, "channels": channels}[SCENARIO]
    try:
        asyncio.run(asyncio.wait_for(fn(), 120))
    except Failure as e:
        print(f"bp_cluster_client.py {SCENARIO}: FAILED: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        print(f"bp_cluster_client.py {SCENARIO}: ERROR: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"bp_cluster_client.py {SCENARIO}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
