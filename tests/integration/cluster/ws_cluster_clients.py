#!/usr/bin/python3
"""Real WebSocket clients (python3-websockets) for test_ws_cluster*.c.

  ws_cluster_clients.py hold READY RESULT N PORTS PREFIX
      opens N clients, client i on port PORTS[i % len] with id PREFIX<i>
      (?id=...), writes READY ({"clients": {id: port}}) once every one got its
      connect reply, counts every "t" message each client receives by
      "<kind>:<seq>" (and keeps the order of those of kinds "b" and "bd"),
      and on SIGUSR1 writes RESULT
      ({id: {"got": {"a:1": 1, ...}, "order": ["b:1", ...], "closed": code or null}})
      and exits.
  ws_cluster_clients.py collide PORT ID
      connects with ?id=ID and expects HTTP 409 (id in use). Exit 0 = as expected.
"""
import asyncio
import json
import signal
import sys

import websockets

TIMEOUT = 20


async def open_client(port, cid):
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws?id={cid}", ping_interval=None,
                                  open_timeout=TIMEOUT, max_queue=None, close_timeout=1)
    hello = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert hello["data"]["client_id"] == cid, hello
    return ws


async def reader(ws, rec):
    try:
        async for raw in ws:
            m = json.loads(raw)
            if m.get("type") == "t":
                key = f'{m["data"]["kind"]}:{int(m["data"]["seq"])}'
                rec["got"][key] = rec["got"].get(key, 0) + 1
                if m["data"]["kind"] in ("b", "bd"):
                    rec["order"].append(key)
    except websockets.exceptions.ConnectionClosed:
        pass
    rec["closed"] = ws.close_code if ws.close_code is not None else 1006


async def hold(ready, result, n, ports, prefix):
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, stop.set)
    ids = [f"{prefix}{i}" for i in range(n)]
    sem = asyncio.Semaphore(64)

    async def one(i):
        async with sem:
            deadline = asyncio.get_running_loop().time() + TIMEOUT
            while True:  # a replica still starting answers 503
                try:
                    return await open_client(ports[i % len(ports)], ids[i])
                except websockets.exceptions.InvalidStatusCode as e:
                    if e.status_code != 503 or asyncio.get_running_loop().time() > deadline:
                        raise
                    await asyncio.sleep(0.05)

    conns = await asyncio.gather(*(one(i) for i in range(n)))
    recs = {cid: {"got": {}, "order": [], "closed": None} for cid in ids}
    tasks = [asyncio.create_task(reader(ws, recs[cid])) for ws, cid in zip(conns, ids)]
    with open(ready + ".tmp", "w") as f:
        json.dump({"clients": {cid: ports[i % len(ports)] for i, cid in enumerate(ids)}}, f)
    import os
    os.rename(ready + ".tmp", ready)
    await stop.wait()
    for t in tasks:
        t.cancel()
    with open(result + ".tmp", "w") as f:
        json.dump(recs, f)
    os.rename(result + ".tmp", result)


async def collide(port, cid):
    try:
        ws = await open_client(port, cid)
    except websockets.exceptions.InvalidStatusCode as e:
        return 0 if e.status_code == 409 else 1
    await ws.close()
    print(f"id {cid} was accepted on port {port}", file=sys.stderr)
    return 1


def main():
    if sys.argv[1] == "hold":
        asyncio.run(hold(sys.argv[2], sys.argv[3], int(sys.argv[4]),
                         [int(p) for p in sys.argv[5].split(",")], sys.argv[6]))
        return 0
    return asyncio.run(collide(int(sys.argv[2]), sys.argv[3]))


if __name__ == "__main__":
    sys.exit(main())
