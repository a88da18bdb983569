#!/usr/bin/env python3
"""Foreign client for the bus tests: speaks the Python Daebus wire format
(PROTOCOL.md §1) with python3-redis against a C service.

usage: foreign_client.py PORT SERVICE
Exits 0 when every check passed, 1 otherwise (the failing check on stderr).
"""
import json
import sys
import threading
import time
import uuid

import redis

port, service = int(sys.argv[1]), sys.argv[2]
r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def read_replies(ps, n, timeout=5.0):
    out, end = [], time.time() + timeout
    while len(out) < n and time.time() < end:
        m = ps.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if m and m["type"] == "message":
            out.append(m["data"])
    return out


# 1. The exact five-key request DaebusCaller.send_request publishes.
reply_to = "caller:%s" % uuid.uuid4()
ps = r.pubsub()
ps.subscribe(reply_to)
read_replies(ps, 0, 0.2)
rid = str(uuid.uuid4())
msg = {"action": "echo", "payload": {"k": "v", "n": [1, 2]}, "reply_to": reply_to,
       "request_id": rid, "service": service}
check(r.publish(service, json.dumps(msg)) == 1, "one subscriber on the service channel")
got = read_replies(ps, 1)
check(len(got) == 1, "a reply arrived")
if got:
    resp = json.loads(got[0])
    check(list(resp.keys()) == ["status", "payload", "request_id", "final"], "key order %r" % list(resp.keys()))
    check(resp == {"status": "success", "payload": {"k": "v", "n": [1, 2]}, "request_id": rid,
                   "final": True}, "reply content %r" % resp)

# 2. Progress then final (Python's workflow shape).
rid = str(uuid.uuid4())
msg.update(action="progress3", request_id=rid, payload={})
r.publish(service, json.dumps(msg))
got = [json.loads(x) for x in read_replies(ps, 4)]
check([g["final"] for g in got] == [False, False, False, True], "three non-final then one final")
check(all(g["status"] == "success" and g["request_id"] == rid for g in got), "progress status/ids")
if len(got) == 4:
    check(got[0]["payload"] == {"step": 1, "progress_percentage": 10}, "progress 1 %r" % got[0])
    check(got[1]["payload"]["progress_percentage"] == 100, "clamped to 100")
    check(got[3]["payload"] == {"done": True}, "final payload")

# 3. Error reply and unknown action.
rid = str(uuid.uuid4())
msg.update(action="fail_explicit", request_id=rid)
r.publish(service, json.dumps(msg))
got = [json.loads(x) for x in read_replies(ps, 1)]
check(got and got[0] == {"status": "error", "payload": {"error": "bad thing"}, "request_id": rid,
                         "final": True}, "error reply %r" % got)
rid = str(uuid.uuid4())
msg.update(action="no_such_action", request_id=rid)
t0 = time.time()
r.publish(service, json.dumps(msg))
got = [json.loads(x) for x in read_replies(ps, 1)]
check(got and got[0]["payload"] == {"error": "Unknown action 'no_such_action'"} and
      got[0]["status"] == "error", "unknown action %r" % got)
check(time.time() - t0 < 2, "unknown action answered at once")

# 4. Payload given as a JSON string (accepted by Python services).
rid = str(uuid.uuid4())
msg.update(action="echo", request_id=rid, payload=json.dumps({"s": 2}))
r.publish(service, json.dumps(msg))
got = [json.loads(x) for x in read_replies(ps, 1)]
check(got and got[0]["payload"] == {"s": 2}, "string payload parsed %r" % got)
ps.close()


# 5. A DaebusCaller-shaped client (listener thread, pending table, 5 s default).
class DaebusCaller:
    def __init__(self, target):
        self.target = target
        self.r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
        self.channel = "caller:%s" % uuid.uuid4()
        self.ps = self.r.pubsub()
        self.ps.subscribe(self.channel)
        self.pending, self.progress = {}, {}
        self.lock = threading.Lock()
        self.running = True
        self.t = threading.Thread(target=self._listen, daemon=True)
        self.t.start()

    def _listen(self):
        while self.running:
            m = self.ps.get_message(ignore_subscribe_messages=True, timeout=0.05)
            if not m or m["type"] != "message":
                continue
            data = json.loads(m["data"])
            rid = data.get("request_id")
            with self.lock:
                if rid not in self.pending:
                    continue
                if data.get("final", True):
                    self.pending[rid] = data
                elif self.progress.get(rid):
                    self.progress[rid](data.get("payload") or {})

    def send_request(self, action, payload, timeout=None, on_progress=None):
        timeout = timeout or 5
        rid = str(uuid.uuid4())
        with self.lock:
            self.pending[rid] = None
            self.progress[rid] = on_progress
        self.r.publish(self.target, json.dumps({"action": action, "payload": payload,
                                                "reply_to": self.channel, "request_id": rid,
                                                "service": self.target}))
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                resp = self.pending[rid]
            if resp is not None:
                if resp.get("status") == "error":
                    raise Exception(resp.get("payload", {}).get("error", "Unknown error"))
                return resp.get("payload", {})
            time.sleep(0.01)
        raise TimeoutError("Request to %s.%s timed out after %ss" % (self.target, action, timeout))

    def close(self):
        self.running = False
        self.t.join()
        self.ps.close()


c = DaebusCaller(service)
check(c.send_request("echo", {"a": 1}) == {"a": 1}, "DaebusCaller echo")
prog = []
check(c.send_request("progress3", {}, on_progress=prog.append) == {"done": True}, "DaebusCaller final")
check(len(prog) == 3 and prog[0]["step"] == 1, "DaebusCaller progress %r" % prog)
try:
    c.send_request("fail_explicit", {})
    check(False, "error reply raises")
except Exception as e:  # noqa: BLE001
    check(str(e) == "bad thing", "error text %r" % str(e))
results = []


def worker(i):
    results.append(c.send_request("echo", {"i": i}) == {"i": i})


ts = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
for t in ts:
    t.start()
for t in ts:
    t.join()
check(len(results) == 20 and all(results), "20 concurrent DaebusCaller requests")
c.close()

# 6. send_to_service shape (action merged at the top level, no payload key).
check(r.publish(service, json.dumps({"action": "record", "x": 1, "y": "z"})) == 1, "send_to_service")

sys.exit(1 if failures else 0)
