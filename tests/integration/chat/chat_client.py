#!/usr/bin/env python3
"""Real WebSocket clients (python3-websockets) and a Daebus caller (python3-redis)
driving chat_service for test_chat.c.

Usage: chat_client.py SCENARIO HTTP_PORT REDIS_URL
Exit 0 when every check passed; otherwise prints what failed and exits 1.
"""
import asyncio
import json
import sys
import time
import urllib.request
import uuid

import redis
import websockets

SCENARIO, PORT, REDIS_URL = sys.argv[1], int(sys.argv[2]), sys.argv[3]
WS_URL = f"ws://127.0.0.1:{PORT}/ws"
TIMEOUT = 10.0


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class Client:
    """One WebSocket client that keeps pushes apart from replies."""

    def __init__(self, ws):
        self.ws = ws
        self.pushes = []
        self.seq = 0
        self.client_id = None

    @classmethod
    async def open(cls, name=None):
        ws = await websockets.connect(WS_URL, open_timeout=TIMEOUT, max_size=None)
        c = cls(ws)
        hello = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        check(hello.get("type") == "response", f"connect reply type: {hello}")
        check(hello["data"].get("status") == "connected", f"connect reply: {hello}")
        c.client_id = hello["data"].get("client_id")
        check(isinstance(c.client_id, str) and c.client_id, f"client_id: {hello}")
        if name:
            # Usernames are unique among connected clients: the same name used
            # by the previous scenario is free once the server saw it leave.
            deadline = time.monotonic() + TIMEOUT
            while True:
                r = await c.call("register", {"username": name})
                if r.get("error") != "Username is already taken" or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            check(r.get("status") == "registered" and r.get("username") == name, f"register: {r}")
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

    async def expect(self, type_, pred=lambda d: True, what=""):
        """Waits for a push of type_ whose data satisfies pred."""
        for i, m in enumerate(self.pushes):
            if m.get("type") == type_ and pred(m.get("data")):
                return self.pushes.pop(i)["data"]
        deadline = time.monotonic() + TIMEOUT
        while True:
            left = deadline - time.monotonic()
            check(left > 0, f"no {type_} push {what}; got {self.pushes[-5:]}")
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            if msg.get("type") == type_ and pred(msg.get("data")):
                return msg["data"]
            self.pushes.append(msg)

    async def none_of(self, type_, wait=0.5):
        """Checks that no push of type_ arrives within wait seconds."""
        end = time.monotonic() + wait
        while time.monotonic() < end:
            try:
                msg = json.loads(await asyncio.wait_for(self.ws.recv(), end - time.monotonic()))
            except asyncio.TimeoutError:
                break
            self.pushes.append(msg)
        check(all(m.get("type") != type_ for m in self.pushes), f"unexpected {type_}: {self.pushes}")

    async def close(self):
        await self.ws.close()


def http_json(path):
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}{path}", timeout=TIMEOUT) as r:
        return json.loads(r.read())


class Caller:
    """The Python DaebusCaller's wire format, over redis-py."""

    def __init__(self):
        self.r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        self.ps = self.r.pubsub()
        self.channel = f"caller:{uuid.uuid4()}"
        self.ps.subscribe(self.channel)
        self.ps.get_message(timeout=1.0)  # subscribe confirmation

    def request(self, action, payload=None, service="chat_service"):
        rid = str(uuid.uuid4())
        self.r.publish(service, json.dumps({"action": action, "payload": payload or {},
                                            "reply_to": self.channel, "request_id": rid,
                                            "service": service}))
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            m = self.ps.get_message(timeout=0.2)
            if not m or m["type"] != "message":
                continue
            reply = json.loads(m["data"])
            if reply.get("request_id") != rid or reply.get("final") is False:
                continue
            return reply["status"], reply["payload"]
        raise Failure(f"no reply to {action}")


# ---- scenarios ----

async def protocol():
    # register without a username: the guide's error reply
    anon = await Client.open()
    r = await anon.call("register", {})
    check(r == {"error": "Username is required", "status": "error"}, f"register {{}}: {r}")
    r = await anon.call("register", {"username": "   "})
    check(r.get("status") == "error", f"blank username: {r}")

    alice = await Client.open("alice")
    bob = await Client.open("bob")

    # join_room creates the room; the joiner gets members + history
    r = await alice.call("join_room", {"room": "lobby"})
    check(r.get("status") == "joined" and r.get("room") == "lobby", f"join: {r}")
    check(r.get("members") == 1 and r.get("history") == [], f"first join: {r}")
    r = await alice.call("join_room", {})
    check(r == {"error": "Room name is required", "status": "error"}, f"join without room: {r}")

    # bob joins: alice gets room_update "joined"
    r = await bob.call("join_room", {"room": "lobby"})
    check(r.get("members") == 2, f"second join: {r}")
    d = await alice.expect("room_update", lambda d: d.get("action") == "joined")
    check(d.get("user") == "bob" and d.get("room") == "lobby", f"room_update: {d}")
    await bob.none_of("room_update", 0.3)  # the joiner is not told about itself

    # chat_message: sender gets status sent; the other member gets new_message
    r = await alice.call("chat_message", {"room": "lobby", "message": "  hello bob  "})
    check(r.get("status") == "sent", f"chat_message reply: {r}")
    check(isinstance(r.get("message_id"), str) and r["message_id"].startswith("msg_"), f"id: {r}")
    check(isinstance(r.get("timestamp"), (int, float)) and abs(r["timestamp"] - time.time()) < 60,
          f"timestamp: {r}")
    d = await bob.expect("new_message")
    check(set(d) == {"id", "room", "sender", "text", "timestamp"}, f"new_message keys: {d}")
    check(d["id"] == r["message_id"] and d["room"] == "lobby" and d["sender"] == "alice"
          and d["text"] == "hello bob" and d["timestamp"] == r["timestamp"], f"new_message: {d}")
    await alice.none_of("new_message", 0.3)  # not echoed to the sender

    # errors: missing fields, unknown room, not a member
    r = await alice.call("chat_message", {"room": "lobby"})
    check(r == {"error": "Room and message are required", "status": "error"}, f"no text: {r}")
    r = await alice.call("chat_message", {"room": "nowhere", "message": "x"})
    check(r == {"error": "Room does not exist", "status": "error"}, f"unknown room: {r}")
    carol = await Client.open("carol")
    r = await carol.call("chat_message", {"room": "lobby", "message": "x"})
    check(r == {"error": "Not a member of this room", "status": "error"}, f"non-member: {r}")
    await bob.none_of("new_message", 0.2)

    # history: 100 kept per room; a join gets the last 20
    for i in range(105):
        await alice.call("chat_message", {"room": "lobby", "message": f"m{i}"})
    rooms = http_json("/api/rooms")
    lobby = [x for x in rooms["rooms"] if x["name"] == "lobby"]
    check(rooms["count"] == len(rooms["rooms"]) and len(lobby) == 1, f"/api/rooms: {rooms}")
    check(lobby[0]["message_count"] == 100 and lobby[0]["members"] == 2, f"lobby: {lobby}")
    check(isinstance(lobby[0]["created_at"], (int, float)), f"created_at: {lobby}")
    r = await carol.call("join_room", {"room": "lobby"})
    hist = r.get("history")
    check(r.get("members") == 3 and len(hist) == 20, f"join history: {len(hist or [])}")
    check([m["text"] for m in hist] == [f"m{i}" for i in range(85, 105)], "history order")
    r = await carol.call("register", {"username": "carol2"})
    check("lobby" in r.get("available_rooms", []), f"available_rooms: {r}")
    check(r.get("room_count") == 1 and "next_after" not in r, f"room_count: {r}")
    r = await carol.call("list_rooms", {})
    check(r.get("status") == "ok" and r.get("rooms") == [{"name": "lobby", "members": 3}]
          and r.get("room_count") == 1 and r.get("next_after") is None, f"list_rooms: {r}")

    # usernames are unique (ASCII case ignored) and clean
    r = await anon.call("register", {"username": "Alice"})
    check(r == {"error": "Username is already taken", "status": "error"}, f"impostor: {r}")
    r = await anon.call("register", {"username": "eve\u0000"})
    check(r == {"error": "Username must not contain control characters", "status": "error"},
          f"NUL in name: {r}")
    r = await anon.call("register", {"username": "x" * 65})
    check(r == {"error": "Username is too long (max 64 bytes)", "status": "error"}, f"long: {r}")

    # disconnect: the others get room_update "left"
    await bob.close()
    for c in (alice, carol):
        d = await c.expect("room_update", lambda d: d.get("action") == "left")
        check(d.get("user") == "bob" and d.get("room") == "lobby", f"left: {d}")
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        lobby = [x for x in http_json("/api/rooms")["rooms"] if x["name"] == "lobby"][0]
        if lobby["members"] == 2:
            break
        await asyncio.sleep(0.05)
    check(lobby["members"] == 2, f"members after disconnect: {lobby}")

    # a room goes (with its history) when its last member leaves
    r = await alice.call("join_room", {"room": "side"})
    r = await alice.call("chat_message", {"room": "side", "message": "soon gone"})
    r = await alice.call("leave_room", {"room": "side"})
    check(r == {"status": "left", "room": "side"}, f"leave: {r}")
    names = [x["name"] for x in http_json("/api/rooms")["rooms"]]
    check("side" not in names and "lobby" in names, f"empty room kept: {names}")
    r = await alice.call("join_room", {"room": "side"})
    check(r.get("members") == 1 and r.get("history") == [], f"side re-created: {r}")
    for c in (anon, alice, carol):
        await c.close()
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and http_json("/api/rooms")["total"] != 0:
        await asyncio.sleep(0.05)
    check(http_json("/api/rooms")["total"] == 0, "rooms left after everyone left")


async def admin():
    caller = Caller()
    alice = await Client.open("alice")
    anon = await Client.open()

    st, p = caller.request("get_connected_clients")
    check(st == "success" and p["count"] == 2, f"get_connected_clients: {st} {p}")
    a = p["clients"][alice.client_id]
    check(a["is_authenticated"] is True and a["username"] == "alice", f"alice info: {a}")
    check(p["clients"][anon.client_id]["is_authenticated"] is False, f"anon info: {p}")
    for k in ("connected_at", "remote_address", "messages_received"):
        check(k in a, f"client info lacks {k}: {a}")

    st, p = caller.request("find_inactive_clients")  # default 30 minutes
    check(st == "success" and p["count"] == 0 and p["clients"] == [], f"inactive (30 min): {p}")
    check(p["threshold_seconds"] == 1800, f"default threshold: {p}")
    # anon stays silent for 2.5 s, alice speaks just before the query: with a
    # 2 s threshold anon is inactive for sure and alice is active unless the
    # query takes 2 s to arrive (margins for a loaded machine).
    await asyncio.sleep(2.5)
    await alice.call("join_room", {"room": "ops"})
    st, p = caller.request("find_inactive_clients", {"threshold_seconds": 2})
    check(st == "success" and p["clients"] == [anon.client_id], f"inactive (2 s): {p}")

    st, p = caller.request("notify_user", {"user_id": "alice", "message": "hi from ops"})
    check(st == "success" and p["delivered"] is True and p["client_id"] == alice.client_id,
          f"notify_user by name: {p}")
    d = await alice.expect("notification")
    check(d.get("message") == "hi from ops" and "timestamp" in d, f"notification: {d}")
    st, p = caller.request("notify_user", {"user_id": anon.client_id, "message": "by id"})
    check(st == "success" and p["delivered"] is True, f"notify_user by id: {p}")
    d = await anon.expect("notification")
    check(d.get("message") == "by id", f"notification by id: {d}")
    st, p = caller.request("notify_user", {"user_id": "nobody", "message": "x"})
    check(st == "error" and p == {"error": "User nobody not connected"}, f"notify unknown: {p}")

    st, p = caller.request("kick_client", {})
    check(st == "error" and p == {"error": "No client_id provided"}, f"kick without id: {p}")
    st, p = caller.request("kick_client", {"client_id": anon.client_id, "reason": "testing"})
    check(st == "success" and p == {"success": True, "client_id": anon.client_id}, f"kick: {p}")
    d = await anon.expect("disconnect_notice")
    check(d.get("reason") == "testing" and "timestamp" in d, f"disconnect_notice: {d}")
    try:
        await asyncio.wait_for(anon.ws.recv(), TIMEOUT)
        raise Failure("kicked client still open")
    except websockets.ConnectionClosed as e:
        check(e.code == 1000, f"kick close code {e.code}")
    st, p = caller.request("kick_client", {"client_id": anon.client_id})
    check(st == "success" and p["success"] is False, f"kick again: {p}")
    st, p = caller.request("get_connected_clients")
    check(p["count"] == 1 and list(p["clients"]) == [alice.client_id], f"after kick: {p}")
    await alice.close()


async def status():
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    ps = r.pubsub()
    ps.subscribe("system_status")
    c = await Client.open("watcher")
    d = await c.expect("system_status", lambda d: d.get("active_users", 0) >= 1)
    for k in ("active_users", "rooms", "connections", "timestamp", "memory_mb", "cpu"):
        check(k in d, f"system_status lacks {k}: {d}")
    check(d["active_users"] >= 1 and d["connections"] >= 1, f"system_status counts: {d}")
    deadline = time.monotonic() + TIMEOUT
    got = None
    while time.monotonic() < deadline and got is None:
        m = ps.get_message(timeout=0.2)
        if m and m["type"] == "message":
            got = json.loads(m["data"])
    check(got is not None and "active_users" in got, f"system_status on Redis: {got}")
    await c.close()


async def shutdown():
    caller = Caller()
    c = await Client.open("last")
    st, p = caller.request("shutdown", {"message": "maintenance", "timeout": 1})
    check(st == "success" and p.get("shutdown_initiated") is True, f"shutdown: {p}")
    d = await c.expect("server_shutdown")
    check(d.get("message") == "maintenance", f"server_shutdown: {d}")
    try:
        while True:
            await asyncio.wait_for(c.ws.recv(), TIMEOUT)
    except websockets.ConnectionClosed as e:
        check(e.code in (1000, 1001), f"shutdown close code {e.code}")


def main():
    fn = {"protocol": protocol, "admin": admin, "status": status, "shutdown": shutdown}[SCENARIO]
    try:
        asyncio.run(asyncio.wait_for(fn(), 90))
    except Failure as e:
        print(f"chat_client.py {SCENARIO}: FAILED: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a crash is a failure too, with its reason
        print(f"chat_client.py {SCENARIO}: ERROR: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"chat_client.py {SCENARIO}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
