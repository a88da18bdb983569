#!/usr/bin/env python3
"""A redis-py caller for the exactly-once tests: the Daebus wire format
(PROTOCOL.md section 1) with python3-redis, like DaebusCaller.

usage: once_client.py PORT SERVICE MODE N PREFIX [WINDOW] [TIMEOUT]
  MODE req:  N requests {"action":"work","payload":{"id":PREFIX-i}} with a
             request_id and reply_to, at most WINDOW (default 32) in flight;
             counts the final replies of each request_id.
  MODE ff:   N fire-and-forget requests (no request_id, no reply_to), ids
             PREFIX-i, then N more identical ones (id PREFIX-same).
  MODE pub:  N messages {"id": PREFIX-i} published to the channel SERVICE
             (used for LISTEN channels).
  MODE unknown, malformed: as req, for an action nobody has, or cut JSON
             whose reply_to and request_id can still be read: one error
             reply each.
  $ONCE_SLEEP_MS: requests ask the handler to sleep that long.
  $ONCE_RATE: at most that many requests per second (MODE req).
Prints one JSON line: {"sent", "answered", "dups", "errors", "overloaded",
"unanswered": [ids...], "subscribers": [counts seen by PUBLISH]}.
"""
import json
import os
import sys
import threading
import time
import uuid

import redis

port, service, mode, n, prefix = (int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]),
                                  sys.argv[5])
window = int(sys.argv[6]) if len(sys.argv) > 6 else 32
timeout = float(sys.argv[7]) if len(sys.argv) > 7 else 5.0
r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
out = {"sent": 0, "answered": 0, "dups": 0, "errors": 0, "overloaded": 0, "unanswered": [],
       "subscribers": []}


def note_receivers(count):
    if count not in out["subscribers"]:
        out["subscribers"].append(count)


def fire_and_forget():
    for i in range(n):
        note_receivers(r.publish(service, json.dumps(
            {"action": "work", "payload": {"id": "%s-%d" % (prefix, i)}, "service": service})))
        out["sent"] += 1
    same = json.dumps({"action": "work", "payload": {"id": "%s-same" % prefix}, "service": service})
    for _ in range(n):
        note_receivers(r.publish(service, same))
        out["sent"] += 1


def publish_only():
    for i in range(n):
        note_receivers(r.publish(service, json.dumps({"id": "%s-%d" % (prefix, i)})))
        out["sent"] += 1


sleep_ms = int(os.environ.get("ONCE_SLEEP_MS", "0"))


def request_text(pid, reply_to, rid):
    payload = {"id": pid}
    if sleep_ms:
        payload["sleep_ms"] = sleep_ms
    msg = {"action": "nope" if mode == "unknown" else "work", "payload": payload,
           "reply_to": reply_to, "request_id": rid, "service": service}
    text = json.dumps(msg)
    if mode == "malformed":  # reply_to and request_id first, then a cut payload
        text = json.dumps({"reply_to": reply_to, "request_id": rid})[:-1] + ', "action": "work", "payload": {'
    return text


def requests():
    reply_to = "caller:%s" % uuid.uuid4()
    ps = r.pubsub()
    ps.subscribe(reply_to)
    while ps.get_message(timeout=1.0) is None:
        pass  # the subscribe confirmation
    ids = {}       # request_id -> payload id
    finals = {}    # request_id -> final replies seen
    sent_at = {}
    inflight = threading.Semaphore(window)
    lock = threading.Lock()
    done_sending = threading.Event()

    def sender():
        pub = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
        rate = float(os.environ.get("ONCE_RATE", "0"))
        start = time.time()
        for i in range(n):
            if rate > 0:
                time.sleep(max(0.0, start + i / rate - time.time()))
            inflight.acquire()
            rid = str(uuid.uuid4())
            pid = "%s-%d" % (prefix, i)
            with lock:
                ids[rid] = pid
                finals[rid] = 0
                sent_at[rid] = time.time()
            note_receivers(pub.publish(service, request_text(pid, reply_to, rid)))
            out["sent"] += 1
        done_sending.set()

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    last_progress = time.time()
    while True:
        m = ps.get_message(timeout=0.05)
        now = time.time()
        if m and m["type"] == "message":
            resp = json.loads(m["data"])
            rid = resp.get("request_id")
            if resp.get("final") is not True or rid not in finals:
                continue
            with lock:
                finals[rid] += 1
                first = finals[rid] == 1
                slot = sent_at.pop(rid, None) is not None
            if slot:
                inflight.release()
            if first:
                out["answered"] += 1
                if resp.get("status") != "success":
                    out["errors"] += 1
                    if "overloaded" in str(resp.get("payload")):
                        out["overloaded"] += 1
                last_progress = now
            else:
                out["dups"] += 1
        with lock:  # a request unanswered for TIMEOUT seconds frees its slot (counted at the end)
            for rid, at in list(sent_at.items()):
                if now - at > timeout:
                    del sent_at[rid]
                    inflight.release()
        if done_sending.is_set() and not sent_at and now - last_progress > 0.3:
            break
    out["unanswered"] = sorted(ids[k] for k, v in finals.items() if v == 0)


{"req": requests, "unknown": requests, "malformed": requests, "ff": fire_and_forget,
 "pub": publish_only}[mode]()
print(json.dumps(out))
