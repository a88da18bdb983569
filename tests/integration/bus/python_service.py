#!/usr/bin/env python3
"""A stand-in for a Python Daebus service (python3-redis): answers on its
service channel with json.dumps defaults (", " separators), as
PubSubResponse does, including a "progress"-status message and a final
message without the "final" key. Prints "ready" once subscribed.

usage: python_service.py PORT SERVICE
"""
import json
import sys
import time

import redis

port, service = int(sys.argv[1]), sys.argv[2]
r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
ps = r.pubsub()
ps.subscribe(service)
print("ready", flush=True)


def send(req, status, payload, final=True, with_final=True):
    msg = {"status": status, "payload": payload, "request_id": req.get("request_id")}
    if with_final:
        msg["final"] = final
    r.publish(req.get("reply_to") or "%s.responses" % req.get("service"), json.dumps(msg))


end = time.time() + 30
while time.time() < end:
    m = ps.get_message(ignore_subscribe_messages=True, timeout=0.1)
    if not m or m["type"] != "message":
        continue
    req = json.loads(m["data"])
    action, payload = req.get("action"), req.get("payload", {})
    if action == "quit":
        break
    if action == "echo":
        send(req, "success", payload)
    elif action == "prog":
        send(req, "progress", {"p": 1}, final=False)
        send(req, "success", {"p": 2, "progress_percentage": 50}, final=False)
        send(req, "success", {"p": 3}, with_final=False)
    elif action == "err":
        send(req, "error", {"error": "py bad"})
    elif action == "check_shape":
        ok = sorted(req.keys()) == ["action", "payload", "reply_to", "request_id", "service"]
        ok = ok and req["reply_to"].startswith("caller:") and len(req["request_id"]) == 36
        send(req, "success", {"five_keys": ok, "service": req["service"]})
