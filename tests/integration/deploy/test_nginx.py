#!/usr/bin/env python3
"""nginx in front of three chat_service replicas, as docs/operations.md
recommends (deploy_env.py starts it all): the docs' nginx block is what
scripts/nginx-conf.sh prints for the docs' command line; https:// requests go
round robin to all three replicas; plain HTTP redirects to https://; wss://
upgrades are proxied (each replica gets its share, the welcome and replies
come back, the Origin check still works behind the proxy); a replica killed
with -9 is passed over without one failed request. Clients: urllib and
python3-websockets, both verifying nginx's throw-away certificate.

Usage: test_nginx.py CHAT_SERVICE SOURCE_DIR
"""
import asyncio
import collections
import difflib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import websockets

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploy_env import Deployment, http_get, wait_until  # noqa: E402

CHAT, SOURCE = sys.argv[1], sys.argv[2]
TIMEOUT = 10.0
passed = []


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def case(fn):
    t0 = time.monotonic()
    if asyncio.iscoroutinefunction(fn):
        asyncio.run(fn())
    else:
        fn()
    passed.append(fn.__name__)
    print(f"test_nginx: {fn.__name__}: ok ({time.monotonic() - t0:.2f} s)", flush=True)


# ---- the docs and the script agree ----
def docs_block():
    """The command line and the nginx block between the markers of docs/operations.md."""
    text = open(os.path.join(SOURCE, "docs", "operations.md")).read()
    m = re.search(r"<!-- nginx-conf: begin -->\n(.*?)<!-- nginx-conf: end -->", text, re.S)
    check(m, "docs/operations.md: no '<!-- nginx-conf: begin/end -->' section")
    body = m.group(1)
    sh = re.search(r"```sh\n(.*?)```", body, re.S)
    conf = re.search(r"```nginx\n(.*?)```", body, re.S)
    check(sh and conf, "the nginx section of docs/operations.md lacks its ```sh or ```nginx block")
    return sh.group(1).replace("\\\n", " "), conf.group(1)


def docs_match_script():
    cmd, conf = docs_block()
    argv = shlex.split(cmd)
    check(argv[:1] == ["scripts/nginx-conf.sh"], f"docs command is not scripts/nginx-conf.sh: {cmd!r}")
    out = subprocess.run(["bash", os.path.join(SOURCE, argv[0])] + argv[1:], capture_output=True, text=True)
    check(out.returncode == 0, f"the docs' command failed: {out.stderr}")
    if out.stdout != conf:
        diff = "".join(difflib.unified_diff(conf.splitlines(True), out.stdout.splitlines(True), "docs", "script"))
        raise Failure("docs/operations.md's nginx block differs from the script's output:\n" + diff)


# ---- the deployment ----
d = Deployment(CHAT, SOURCE, replicas=3)


def https_round_robin():
    ctx = d.tls_context()
    ids = [d.health(d.https_url, context=ctx)["instance_id"] for _ in range(30)]
    want = {r["instance_id"] for r in d.replicas}
    check(len(want) == 3, f"replica ids not distinct: {want}")
    counts = collections.Counter(ids)
    check(set(counts) == want, f"https:// reached {dict(counts)}, want all of {sorted(want)}")
    check(all(c == 10 for c in counts.values()), f"30 requests not spread round robin: {dict(counts)}")
    # The page and its assets come through too.
    status, headers, body = http_get(d.https_url + "/", context=ctx)
    check(status == 200 and b"<html" in body.lower(), f"GET / through nginx: {status}")


def http_redirects_to_https():
    status, headers, _ = http_get(f"http://localhost:{d.http_port}/health?x=1")
    check(status == 301, f"plain HTTP answered {status}, want 301")
    loc = headers.get("Location")
    check(loc == f"{d.https_url}/health?x=1", f"redirect to {loc!r}")


def body_limit():
    req = urllib.request.Request(d.https_url + "/api/rooms", data=b"x" * (1024 * 1024 + 1), method="POST")
    try:
        urllib.request.urlopen(req, context=d.tls_context(), timeout=TIMEOUT)
        code = 200
    except urllib.error.HTTPError as e:
        code = e.code
    check(code == 413, f"a body over client_max_body_size answered {code}, want 413")


async def open_ws(origin):
    ws = await websockets.connect(d.wss_url, ssl=d.tls_context(), open_timeout=TIMEOUT, origin=origin)
    hello = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    check(hello.get("type") == "response" and hello["data"].get("status") == "connected",
          f"welcome through nginx: {hello}")
    return ws, hello["data"]["client_id"]


async def call(ws, type_, data, rid):
    await ws.send(json.dumps({"type": type_, "data": data, "request_id": rid}))
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if m.get("request_id") == rid:
            return m


async def wss_each_replica():
    origin = d.https_url  # what a browser sends for a page served by nginx
    conns = []
    try:
        for _ in range(3):
            conns.append(await open_ws(origin))
            # nginx's round robin counts every request: let no other one in between.
        per = [d.ws_clients(r) for r in d.replicas]
        check(per == [1, 1, 1], f"3 wss:// connections landed {per} on the replicas, want one each")
        for i, (ws, cid) in enumerate(conns):
            r = await call(ws, "register", {"username": f"nginx{i}"}, f"r{i}")
            check(r.get("type") == "response" and r["data"].get("status") == "registered",
                  f"register through nginx: {r}")
            pong = await ws.ping()
            await asyncio.wait_for(pong, TIMEOUT)
    finally:
        for ws, _ in conns:
            await ws.close()
    wait_until(lambda: [d.ws_clients(r) for r in d.replicas] == [0, 0, 0], TIMEOUT, "clients gone after close")


async def wss_foreign_origin_refused():
    try:
        ws = await websockets.connect(d.wss_url, ssl=d.tls_context(), open_timeout=TIMEOUT,
                                      origin="https://evil.example")
        await ws.close()
        raise Failure("an upgrade from another Origin was let in through nginx")
    except websockets.exceptions.InvalidStatusCode as e:
        check(e.status_code == 403, f"foreign Origin answered {e.status_code}, want 403")


async def graceful_stop_and_restart():
    """A rolling restart of one replica behind nginx: its WebSocket client gets
    server_shutdown and close 1001 through nginx (the others' clients nothing),
    GETs through nginx never fail meanwhile, and once it is back nginx sends it
    requests again (after fail_timeout at most)."""
    ctx = d.tls_context()
    conns, where = [], []
    for _ in range(3):
        before = [d.ws_clients(r) for r in d.replicas]
        ws, _ = await open_ws(d.https_url)
        after = [d.ws_clients(r) for r in d.replicas]
        conns.append(ws)
        where.append([a - b for a, b in zip(after, before)].index(1))
    check(sorted(where) == [0, 1, 2], f"3 wss:// connections landed on replicas {where}")
    victim = d.replicas[1]
    mine = conns[where.index(1)]
    others = [c for i, c in enumerate(conns) if where[i] != 1]
    statuses = []
    stop_gets = threading.Event()

    def get_loop():
        while not stop_gets.is_set():
            statuses.append(http_get(d.https_url + "/health/live", context=ctx)[0])

    t = threading.Thread(target=get_loop)
    t.start()
    try:
        await asyncio.sleep(0.2)
        victim["proc"].send_signal(signal.SIGTERM)
        got = []
        try:
            while True:
                got.append(json.loads(await asyncio.wait_for(mine.recv(), TIMEOUT)).get("type"))
        except websockets.exceptions.ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
        check("server_shutdown" in got, f"the stopped replica's client got {got}, no server_shutdown")
        check(code == 1001, f"the stopped replica's client was closed with {code}, want 1001")
        rc = await asyncio.get_running_loop().run_in_executor(None, victim["proc"].wait, TIMEOUT)
        check(rc == 0, f"the stopped replica exited {rc}")
        await asyncio.sleep(0.3)
    finally:
        stop_gets.set()
        t.join()
    bad = [s for s in statuses if s != 200]
    check(len(statuses) > 10 and not bad, f"GET through nginx during the stop: {len(bad)} of {len(statuses)} failed: {bad[:5]}")
    for ws in others:
        try:
            m = await asyncio.wait_for(ws.recv(), 0.3)
            check(json.loads(m).get("type") != "server_shutdown", "another replica's client got server_shutdown")
        except asyncio.TimeoutError:
            pass
        await ws.close()
    # Back in the rotation.
    again = d.start_replica(again=victim)
    d.wait_replicas_ready([again])
    t0 = time.monotonic()
    ids = set()
    while again["instance_id"] not in ids and time.monotonic() - t0 < 10:
        ids.add(d.health(d.https_url, context=ctx)["instance_id"])
        time.sleep(0.05)
    check(again["instance_id"] in ids, "the restarted replica got no request through nginx within 10 s")
    print(f"test_nginx: {len(statuses)} GETs during the stop, all 200; the restarted replica got requests "
          f"again after {time.monotonic() - t0:.2f} s", flush=True)


def replica_killed():
    victim = d.replicas[2]
    victim["proc"].send_signal(signal.SIGKILL)
    victim["proc"].wait()
    victim["killed"] = True
    ctx = d.tls_context()
    ids = []
    for _ in range(12):
        h = d.health(d.https_url, context=ctx)
        ids.append(h["instance_id"])
    live = {r["instance_id"] for r in d.replicas[:2]}
    counts = collections.Counter(ids)
    check(set(counts) == live, f"after kill -9 of one replica, requests reached {dict(counts)}; want {sorted(live)}")


def main():
    t0 = time.monotonic()
    case(docs_match_script)
    d.start()
    print(f"test_nginx: deployment up in {time.monotonic() - t0:.2f} s (nginx https {d.https_port}, "
          f"http {d.http_port}; replicas {[r['port'] for r in d.replicas]})", flush=True)
    ok = False
    try:
        case(https_round_robin)
        case(http_redirects_to_https)
        case(body_limit)
        case(wss_each_replica)
        case(wss_foreign_origin_refused)
        case(graceful_stop_and_restart)
        case(replica_killed)
        ok = True
    finally:
        if not ok:
            d.dump()
        problems = d.stop()
    check(not problems, "; ".join(problems))
    print(f"test_nginx: {len(passed)} passed, 0 failed ({time.monotonic() - t0:.2f} s)")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - every failure ends the same way
        if not isinstance(e, Failure):
            import traceback
            traceback.print_exc()
        print(f"test_nginx: FAIL: {e!r}" if not isinstance(e, Failure) else f"test_nginx: FAIL: {e}")
        print(f"{len(passed)} passed, 1 failed")
        sys.exit(1)
