#!/usr/bin/env python3
"""Redis failover with Sentinel, real processes: Debian's redis-server as
master + one replica, three redis-sentinel (config files written here, private
ports, down-after 1 s), chat_service started with --redis redis-sentinel://...
Under load (daebus-call action calls and a daebus-call --listen broadcast
listener, both through the same Sentinel URL, and a WebSocket chat client)
the master is killed with -9. Checked: the service answers actions, its
broadcasts reach the listener and the chat round trip over WebSocket works
again within down-after + a few seconds (each measured and printed); calls
made meanwhile fail fast with a clear error instead of hanging; the service
logs the master change; nothing hangs. Then the sentinels are made to name
another master while the service's connections stay up (no error anywhere):
the service follows within its subscribers' health interval. Every process
is stopped at the end, even on failure.

Usage: test_sentinel.py CHAT_SERVICE DAEBUS_CALL
"""
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import redis
import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sentinel_env import (Cluster, Failure, check, free_port, kill_all, procs, spawn, tail,  # noqa: E402
                          wait_until)

CHAT, CALL = sys.argv[1], sys.argv[2]
DOWN_AFTER_MS = 1000
RECOVERY_LIMIT_S = DOWN_AFTER_MS / 1000 + 9.0  # down-after + election + promotion + reconnects
SERVICE = "sent_chat"
load = None


# ---- load ----

class Load:
    """Action calls, a broadcast listener and a WebSocket chat client, each
    noting the monotonic times of its successes."""

    def __init__(self, url, ws_url, tmp):
        self.url, self.ws_url, self.tmp = url, ws_url, tmp
        self.stop = threading.Event()
        self.calls = []  # (start, end, rc, output)
        self.broadcasts = []  # times
        self.ws_ok = []  # times
        self.ws_errors = []
        self.listeners = 0
        self.kill_at = 0
        self.threads = [threading.Thread(target=f, daemon=True)
                        for f in (self.caller, self.caller, self.listener, self.ws_thread)]

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(30)
            check(not t.is_alive(), "a load thread hangs")

    def caller(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            p = subprocess.run([CALL, SERVICE, "list_rooms", "{}", "--timeout", "20", "--redis", self.url],
                               capture_output=True, text=True, timeout=60)
            self.calls.append((t0, time.monotonic(), p.returncode, (p.stdout + p.stderr).strip()))
            time.sleep(0.05)

    def listener(self):
        while not self.stop.is_set():
            self.listeners += 1
            p = subprocess.Popen([CALL, "--listen", "system_status", "--redis", self.url],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            procs.append(p)
            killer = threading.Thread(target=lambda: (self.stop.wait(), p.terminate()), daemon=True)
            killer.start()
            for line in p.stdout:
                if '"instance_id"' in line:
                    self.broadcasts.append(time.monotonic())
            p.wait()
            time.sleep(0.1)

    def ws_thread(self):
        asyncio.run(self.ws_main())

    async def ws_main(self):
        n = 0
        while not self.stop.is_set():
            try:
                async with websockets.connect(self.ws_url, open_timeout=5) as a, \
                        websockets.connect(self.ws_url, open_timeout=5) as b:
                    await self.ws_session(a, b, n)
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as e:
                self.ws_errors.append(f"{time.monotonic():.2f} {e!r}")
                await asyncio.sleep(0.2)
            n += 1

    async def ws_call(self, ws, type_, data, rid):
        await ws.send(json.dumps({"type": type_, "data": data, "request_id": rid}))
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if m.get("request_id") == rid:
                return m

    async def ws_join(self, ws, name):
        await asyncio.wait_for(ws.recv(), 5)  # welcome
        r = await self.ws_call(ws, "register", {"username": name}, f"reg-{name}")
        if (r.get("data") or {}).get("status") != "registered":
            raise websockets.WebSocketException(f"register: {r}")
        r = await self.ws_call(ws, "join_room", {"room": "lobby"}, f"join-{name}")
        if r.get("type") == "error" or (r.get("data") or {}).get("status") == "error":
            raise websockets.WebSocketException(f"join_room: {r}")

    async def ws_session(self, a, b, n):
        """Two clients in one room: a's chat messages reach b (through Redis:
        the room lives there). Any refusal starts over with new clients (what
        a failover may have lost is made again)."""
        await self.ws_join(a, f"a{n}")
        await self.ws_join(b, f"b{n}")
        i = 0
        while not self.stop.is_set():
            i += 1
            text = f"m{n}.{i}"
            r = await self.ws_call(a, "chat_message", {"room": "lobby", "message": text}, f"c{n}.{i}")
            if r.get("type") == "error" or (r.get("data") or {}).get("status") == "error":
                self.ws_errors.append(f"{time.monotonic():.2f} chat_message: {r}")
                await asyncio.sleep(0.2)
                return
            end = time.monotonic() + 2
            while time.monotonic() < end:
                try:
                    m = json.loads(await asyncio.wait_for(b.recv(), max(end - time.monotonic(), 0.01)))
                except asyncio.TimeoutError:
                    break
                if m.get("type") == "new_message" and text in json.dumps(m):
                    self.ws_ok.append(time.monotonic())
                    break
            else:
                self.ws_errors.append(f"{time.monotonic():.2f} {text} did not reach the other client")
                return
            await asyncio.sleep(0.05)


def moved_without_errors(c, port, svc_log):
    """The sentinels name another master while the service's connections to
    the current one stay up (nobody closes them, no error reply): its
    subscribers notice within their health interval (asking the sentinels),
    and the rest of its connections follow (the epoch): actions, whose
    replies the service publishes through its pool, work on the new master."""
    t0 = time.monotonic()
    c.ports["master2"] = c.master_port
    c.start_redis("master2")  # the old port, a fresh master
    for p in c.sentinel_ports:
        s = redis.Redis(port=p, socket_timeout=2)
        s.execute_command("SENTINEL", "REMOVE", "mymaster")
        s.execute_command("SENTINEL", "MONITOR", "mymaster", "127.0.0.1", c.master_port, 2)
        s.execute_command("SENTINEL", "SET", "mymaster", "down-after-milliseconds", DOWN_AFTER_MS)
    check(c.master_port_now() == c.master_port, "the sentinels did not take the new master")
    now = redis.Redis(port=c.master_port, socket_timeout=2)
    wait_until(lambda: now.execute_command("PUBSUB", "NUMSUB", SERVICE)[1] >= 1, 20,
               "the service's bus subscriber on the master the sentinels name now")
    moved = time.monotonic() - t0

    def answered():
        p = subprocess.run([CALL, SERVICE, "list_rooms", "{}", "--timeout", "2", "--redis", c.url()],
                           capture_output=True, text=True, timeout=30)
        return p.returncode == 0

    wait_until(answered, 10, "an action answered on the master the sentinels name now")
    want = f"Redis master for 'mymaster' is now 127.0.0.1:{c.master_port} (was 127.0.0.1:{c.replica_port})"
    check(want in open(svc_log, errors="replace").read(), f"no log line '{want}'")
    print(f"test_sentinel: master moved without a failure: the service followed in {moved:.2f} s, "
          f"actions answered after {time.monotonic() - t0:.2f} s", flush=True)


def first_after(times, t):
    later = [x for x in times if x > t]
    return later[0] - t if later else None


def main():
    tmp = tempfile.mkdtemp(prefix="daebus-sentinel-")
    ok = False
    t_all = time.monotonic()
    try:
        c = Cluster(tmp, DOWN_AFTER_MS)
        c.start_redis("master")
        c.start_redis("replica", replicaof="master")
        c.wait_replica_synced("replica")
        c.start_sentinels()
        print(f"test_sentinel: master :{c.master_port}, replica :{c.replica_port}, sentinels "
              f"{c.sentinel_ports} ready ({time.monotonic() - t_all:.1f} s)", flush=True)

        # sentinel_password is sent to the sentinels (these have none: AUTH is refused, said, not hidden).
        p = subprocess.run([CALL, SERVICE, "list_rooms", "{}", "--timeout", "5", "--redis",
                            c.url() + "?sentinel_password=S3cr3t"], capture_output=True, text=True, timeout=30)
        check(p.returncode == 2 and "AUTH" in p.stderr and "mymaster" in p.stderr and "S3cr3t" not in p.stderr,
              f"a refused sentinel_password: rc {p.returncode}: {p.stderr[:300]}")

        port = free_port()
        svc_log = os.path.join(tmp, "service.log")
        svc = spawn([CHAT, "--port", str(port), "--redis", c.url(), "--service", SERVICE,
                     "--status-interval", "0.2", "--rate-limit", "0"], svc_log)

        def ready():
            check(svc.poll() is None, f"service exited {svc.returncode}:\n{tail(svc_log)}")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as r:
                return r.status == 200

        wait_until(ready, 20, "chat_service ready on the Sentinel URL")
        global load
        load = Load(c.url(), f"ws://127.0.0.1:{port}/ws", tmp)
        load.start()
        wait_until(lambda: load.broadcasts and load.ws_ok and any(x[2] == 0 for x in load.calls), 15,
                   "first action answer, broadcast and chat round trip")
        time.sleep(1.0)

        kill_at = load.kill_at = time.monotonic()
        c.redis["master"].send_signal(signal.SIGKILL)
        c.redis["master"].wait()
        wait_until(lambda: c.master_port_now() == c.replica_port, 30, "the sentinels promote the replica")
        switched = time.monotonic() - kill_at
        wait_until(lambda: [x for x in load.calls if x[0] > kill_at + switched and x[2] == 0]
                   and first_after(load.broadcasts, kill_at + switched) is not None
                   and first_after(load.ws_ok, kill_at + switched) is not None,
                   RECOVERY_LIMIT_S + 10, "actions, broadcasts and WebSocket chat after the failover")
        time.sleep(1.0)
        load.finish()

        call_ok = min(x[1] for x in load.calls if x[0] > kill_at and x[2] == 0) - kill_at
        bc = first_after(load.broadcasts, kill_at)
        wsr = first_after(load.ws_ok, kill_at)
        print(f"test_sentinel: kill -9 of the master; sentinels switched after {switched:.2f} s; "
              f"action answered again after {call_ok:.2f} s, broadcast after {bc:.2f} s, "
              f"WebSocket chat after {wsr:.2f} s (down-after {DOWN_AFTER_MS} ms)", flush=True)
        for what, t in (("action", call_ok), ("broadcast", bc), ("WebSocket chat", wsr)):
            check(t <= RECOVERY_LIMIT_S, f"{what} back after {t:.2f} s, want <= {RECOVERY_LIMIT_S} s")

        # Calls made while there was no master failed fast, with a clear error.
        first_ok = min(x[0] for x in load.calls if x[2] == 0)  # calls before it: start-up
        failed = [x for x in load.calls if x[2] != 0]
        slowest = max(x[1] - x[0] for x in load.calls)
        print(f"test_sentinel: {len(load.calls)} calls, {len(failed)} failed during the failover, "
              f"slowest {slowest:.2f} s; e.g. {failed[0][3][:200] if failed else '-'}", flush=True)
        check(slowest < 6.0, f"a call took {slowest:.2f} s (time-out 20 s): it hung on the dead master")
        for x in failed:
            check(x[2] == 2 and ("mymaster" in x[3] or "Redis" in x[3] or "redis" in x[3]),
                  f"a call failed without a clear error: rc {x[2]}: {x[3][:300]}")
            check(x[0] > kill_at - 1 or x[0] < first_ok,
                  f"a call failed {kill_at - x[0]:.2f} s before the kill: {x[3][:300]}")
        check(not [x for x in load.calls if x[2] != 0 and x[0] > kill_at + switched + RECOVERY_LIMIT_S],
              "calls still failing long after the failover")

        log = open(svc_log, errors="replace").read()
        want = f"Redis master for 'mymaster' is now 127.0.0.1:{c.replica_port} (was 127.0.0.1:{c.master_port})"
        check(want in log, f"the service did not log the master change ('{want}'):\n{tail(svc_log)}")
        check(log.count(f"Redis master for 'mymaster' is now 127.0.0.1:{c.replica_port}") == 1,
              f"the master change was logged more than once:\n{tail(svc_log, 80)}")

        moved_without_errors(c, port, svc_log)

        svc.send_signal(signal.SIGTERM)
        try:
            rc = svc.wait(10)
        except subprocess.TimeoutExpired:
            raise Failure("chat_service did not stop within 10 s of SIGTERM")
        check(rc == 0, f"chat_service exited {rc}:\n{tail(svc_log)}")
        ok = True
        print(f"test_sentinel: ok ({time.monotonic() - t_all:.1f} s)", flush=True)
    except Failure as e:
        print(f"test_sentinel: FAILED: {e}", flush=True)
        if load:
            bad = [(round(x[0] - load.kill_at, 2), x[2], x[3][:200]) for x in load.calls if x[2] != 0]
            print(f"failed calls (start after the kill, rc, output): {bad[:3]} ... {bad[-2:]}", flush=True)
            print(f"calls: {len(load.calls)} (last: {load.calls[-3:]}), broadcasts: {len(load.broadcasts)}, "
                  f"listeners started: {load.listeners}, chat round trips: {len(load.ws_ok)}, "
                  f"WebSocket errors: {load.ws_errors[-3:]}", flush=True)
            k = load.kill_at
            print(f"after the kill: calls ok {[round(x[1] - k, 2) for x in load.calls if x[2] == 0 and x[1] > k][:3]}, "
                  f"broadcasts {[round(x - k, 2) for x in load.broadcasts if x > k][:3]}, "
                  f"chat {[round(x - k, 2) for x in load.ws_ok if x > k][:3]}", flush=True)
        for name in ("service", "master", "replica", "sentinel0"):
            print(f"--- {name}.log ---\n{tail(os.path.join(tmp, name + '.log'), 25)}", flush=True)
    finally:
        kill_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
