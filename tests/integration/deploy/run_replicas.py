#!/usr/bin/env python3
"""`make run REPLICAS=2` end to end (scripts/run.sh, as the Makefile runs it):
with no Redis reachable it starts a private redis-server, two chat_service
replicas and nginx in front of them on DAEBUS_HTTP_PORT, and prints the
address to open. Through that address /health answers from both replicas in
turn and two WebSocket clients land on different replicas (the page's own
Origin passes the same-origin check behind nginx) and chat in one room (a
message crosses from one replica to the other). Then the run is stopped
the way `timeout make run` stops it (SIGTERM to the script and to its process
group) and, in a second round, the way a terminal's Ctrl-C does (SIGINT to the
group): each replica stops once, gracefully, before Redis goes away; the
script exits 0; nginx, both replicas, Redis and the temporary directory are
gone. `make -n run` shows REPLICAS reaching the script.

Usage: run_replicas.py BUILD_DIR SOURCE_DIR
"""
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploy_env import free_port, http_get, port_open, wait_until  # noqa: E402

BUILD, SOURCE = sys.argv[1], sys.argv[2]
TIMEOUT = 20.0


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def make_passes_replicas():
    for extra, want in (([], "REPLICAS=1"), (["REPLICAS=2"], "REPLICAS=2")):
        out = subprocess.run(["make", "-n", "-C", SOURCE, "run", f"BUILD={BUILD}"] + extra,
                             capture_output=True, text=True)
        check(out.returncode == 0, f"make -n run {extra}: {out.stderr}")
        line = [ln for ln in out.stdout.splitlines() if "scripts/run.sh" in ln]
        check(line and f"env {want} bash scripts/run.sh" in line[-1], f"make -n run {extra} runs {line}")


def pids_with_cmdline(needle):
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if needle in f.read().replace(b"\0", b" ").decode(errors="replace"):
                        found.append(int(d))
            except OSError:
                pass
    return found


def pids_with_env(entry):
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/environ", "rb") as f:
                    if entry.encode() in f.read().split(b"\0"):
                        found.append(int(d))
            except OSError:
                pass
    return found


async def call(ws, type_, data):
    rid = f"{type_}-{time.monotonic()}"
    await ws.send(json.dumps({"type": type_, "data": data, "request_id": rid}))
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if m.get("request_id") == rid:
            check(m.get("type") == "response", f"{type_} answered {m}")
            return m["data"]


async def push(ws, type_):
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if m.get("type") == type_:
            return m["data"]


async def two_ws_clients(front, replica_urls):
    url = f"ws://localhost:{front}/ws"
    origin = f"http://localhost:{front}"
    conns = []
    try:
        for _ in range(2):
            ws = await websockets.connect(url, origin=origin, open_timeout=TIMEOUT)
            hello = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            check(hello.get("data", {}).get("status") == "connected", f"welcome through nginx: {hello}")
            conns.append(ws)
        per = []
        for u in replica_urls:
            per.append(json.loads(http_get(u + "/health")[2])["checks"]["websocket"]["clients"])
        check(per == [1, 1], f"two WebSocket clients landed {per} on the two replicas, want one each")
        # What the two tabs do: a room and a message from one replica to the other.
        alice, bob = conns
        for ws, name in ((alice, "alice"), (bob, "bob")):
            r = await call(ws, "register", {"username": name})
            check(r.get("status") == "registered", f"register {name}: {r}")
            r = await call(ws, "join_room", {"room": "lobby"})
            check(r.get("status") == "joined" and r.get("members") == (1 if name == "alice" else 2),
                  f"join_room {name}: {r}")
        r = await call(alice, "chat_message", {"room": "lobby", "message": "hello across replicas"})
        check(r.get("status") == "sent", f"chat_message: {r}")
        m = await push(bob, "new_message")
        check(m.get("text") == "hello across replicas" and m.get("sender") == "alice",
              f"bob (on the other replica) got {m}")
    finally:
        for ws in conns:
            await ws.close()


def nginx_errors(rundir):
    """The error log of this run's nginx (the last 4 KB), or why it cannot be read."""
    for name in ("nginx/error.log", "error.log"):
        try:
            with open(os.path.join(rundir, name), errors="replace") as f:
                return f.read()[-4096:]
        except OSError:
            pass
    return f"(no error.log under {rundir})"


def one_round(rnd, how):
    front = free_port()
    dead = free_port()  # nothing listens there: the script starts its own Redis
    log = tempfile.NamedTemporaryFile(prefix="daebus-runrep-", suffix=".log", delete=False)
    mark = f"DAEBUS_RUN_REPLICAS_TEST={os.getpid()}-{rnd}"  # inherited by all it starts
    env = dict(os.environ, REPLICAS="2", DAEBUS_REDIS_URL=f"redis://127.0.0.1:{dead}",
               DAEBUS_HTTP_PORT=str(front), DAEBUS_RUN_REPLICAS_TEST=mark.split("=", 1)[1])
    # As make runs it, in a process group of its own (a terminal's, or timeout's).
    proc = subprocess.Popen(["bash", os.path.join(SOURCE, "scripts", "run.sh"), BUILD], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=SOURCE,
                            start_new_session=True)
    redis_port = rundir = None
    replica_ports = []

    def text():
        with open(log.name, errors="replace") as f:
            return f.read()

    def fail(what):
        raise Failure(f"round {rnd} ({how}): {what}\n--- run.sh output\n{text()}")

    try:
        try:
            wait_until(lambda: f"open http://localhost:{front}/" in text() or proc.poll() is not None,
                       TIMEOUT, "the address to open")
        except RuntimeError:
            fail("no 'open http://localhost:PORT/' line within 20 s")
        if proc.poll() is not None:
            fail(f"run.sh exited {proc.returncode} before printing the address")
        out = text()
        m = re.search(r"private redis-server on port (\d+)", out)
        m or fail("no private redis-server started")
        redis_port = int(m.group(1))
        m = re.search(r"run: 2 replicas of chat_service on ports (\d+) (\d+), nginx in front on port (\d+)", out)
        m or fail("no line naming the replicas' ports")
        replica_ports = [int(m.group(1)), int(m.group(2))]
        check(int(m.group(3)) == front, f"nginx on {m.group(3)}, want {front}")
        mine = set(pids_with_env(mark))
        nginx_pids = [p for p in pids_with_cmdline("nginx -p /tmp/daebus-run-") if p in mine]
        len(nginx_pids) == 1 or fail(f"nginx processes of this run: {nginx_pids}")
        with open(f"/proc/{nginx_pids[0]}/cmdline") as f:
            rundir = re.search(r"-p\0(/tmp/daebus-run-\w+)", f.read()).group(1)
        n = len(mine - {proc.pid} - set(nginx_pids))
        n == 2 or fail(f"{n} replicas of this run running, want 2")

        # Through nginx: both replicas answer, in turn.
        urls = [f"http://127.0.0.1:{p}" for p in replica_ports]
        ids = {json.loads(http_get(u + "/health")[2])["instance_id"] for u in urls}
        len(ids) == 2 or fail(f"replica ids {ids}")
        seen = [json.loads(http_get(f"http://localhost:{front}/health")[2])["instance_id"] for _ in range(6)]
        set(seen) == ids or fail(f"/health through nginx answered from {seen}, want both of {ids}")
        status, _, body = http_get(f"http://localhost:{front}/")
        status == 200 and b"<html" in body.lower() or fail(f"GET / through nginx: {status}")
        try:
            asyncio.run(two_ws_clients(front, urls))
        except Failure:
            raise
        except Exception as e:  # a refused or closed upgrade: show what the processes said
            fail(f"two WebSocket clients through nginx: {e!r}\n--- nginx error log\n{nginx_errors(rundir)}")

        # Stop it.
        if how == "SIGTERM":  # what `timeout make run` delivers
            os.kill(proc.pid, signal.SIGTERM)
            os.killpg(proc.pid, signal.SIGTERM)
        else:  # the terminal's Ctrl-C
            os.killpg(proc.pid, signal.SIGINT)
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            fail("run.sh still running 15 s after the signal")
        out = text()
        code == 0 or fail(f"run.sh exited {code}, want 0")
        n = out.count("shutting down gracefully")
        n == 2 or fail(f"{n} graceful stops, want 2 (one per replica)")
        "second signal" not in out or fail("a replica got a second signal")
        out.count("stopped (shutdown took") == 2 or fail("not both replicas reported their stop")
        "lost connection to Redis" not in out or fail("Redis went away before the replicas had stopped")
        "run: 2 replicas exited with status 0 0" in out or fail("run.sh did not report status 0 for both")
        # Everything is gone once run.sh has exited.
        for p in [front] + replica_ports:
            not port_open(p) or fail(f"port {p} still open after run.sh exited")
        not pids_with_env(mark) or fail("a replica or nginx of this run is still running")
        not os.path.exists(rundir) or fail(f"{rundir} left behind")
        try:
            wait_until(lambda: not port_open(redis_port), 3, "Redis gone")
        except RuntimeError:
            fail(f"private redis-server on port {redis_port} still running")
        print(f"run_replicas: round {rnd} ok ({how}: nginx {front}, replicas {replica_ports}, Redis {redis_port})",
              flush=True)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for p in pids_with_env(mark):
            os.kill(p, signal.SIGKILL)
        if redis_port:
            for p in pids_with_cmdline(f"redis-server 127.0.0.1:{redis_port}"):
                os.kill(p, signal.SIGKILL)
        os.unlink(log.name)


def main():
    t0 = time.monotonic()
    make_passes_replicas()
    print("run_replicas: make -n run passes REPLICAS on: ok", flush=True)
    one_round(1, "SIGTERM")
    one_round(2, "SIGINT")
    print(f"run_replicas: 3 passed, 0 failed ({time.monotonic() - t0:.1f} s)")


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"run_replicas: FAIL: {e}")
        sys.exit(1)
