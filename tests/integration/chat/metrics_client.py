#!/usr/bin/env python3
"""Checks metrics_service's pushes: usage metrics_client.py HTTP_PORT REDIS_URL.

A WebSocket client subscribes to the channel "metrics" (the built-in frame) and must
get metrics_update reports as channel messages; another channel is refused
(closed by default); a Redis
subscriber on "system" must get {"type": "metrics_update"} broadcasts.
Exit 0 when both arrived, 1 otherwise (with the reason).
"""
import asyncio
import json
import sys
import time

import redis
import websockets

PORT, REDIS_URL = int(sys.argv[1]), sys.argv[2]


async def main():
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    ps = r.pubsub()
    ps.subscribe("system")
    async with websockets.connect(f"ws://127.0.0.1:{PORT}/", open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": "other", "request_id": 0}))
        await ws.send(json.dumps({"type": "subscribe", "channel": "metrics", "request_id": 1}))
        got_refusal = got_reply = got_push = False
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (got_refusal and got_reply and got_push):
            m = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
            if m.get("request_id") == 0:
                if m.get("type") != "error" or m.get("success") is not False:
                    raise SystemExit(f"subscribe to another channel: {m}")
                got_refusal = True
            elif m.get("type") == "response" and m.get("request_id") == 1:
                if m.get("success") is not True or m["data"].get("channel") != "metrics":
                    raise SystemExit(f"subscribe reply: {m}")
                got_reply = True
            elif m.get("type") == "channel_message" and m.get("channel") == "metrics":
                d = m["data"]
                if d.get("type") != "metrics_update" or "uptime" not in d or "requests" not in d:
                    raise SystemExit(f"metrics_update: {m}")
                got_push = True
        if not (got_reply and got_push):
            raise SystemExit(f"WebSocket: refusal={got_refusal} reply={got_reply} push={got_push}")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        m = ps.get_message(timeout=0.2)
        if m and m["type"] == "message":
            d = json.loads(m["data"])
            if d.get("type") == "metrics_update" and d.get("service") == "metrics_service":
                print("metrics_client.py: ok")
                return
    raise SystemExit("no metrics_update on the Redis channel 'system'")


try:
    asyncio.run(main())
except SystemExit as e:
    if e.code:
        print(f"metrics_client.py: FAILED: {e.code}", file=sys.stderr)
        sys.exit(1)
except Exception as e:
    print(f"metrics_client.py: ERROR: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
