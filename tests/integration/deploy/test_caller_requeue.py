#!/usr/bin/env python3
"""The caller's durable requests after a lost connection, each case made on
purpose against a real redis-server (no Sentinel: what a failover does to the
stream is done by hand). sentinel_caller --count 4 queues four durable
requests to a service that is not running yet; then, as a failover could:
  A. its entry is deleted (the new master never got it): queued again;
  B. its entry is deleted and its done record set (a replica completed it
     and published its reply while the caller was away): reported at once as
     "reply lost" (not run again), not left to its time-out;
  C. untouched (replicated): not queued twice;
  E. its entry is deleted and its done record holds the final reply (what
     a replica keeps there, up to 4 KiB): that reply is delivered (published
     again by the caller's check), not run again, not reported lost.
The caller's connections are killed (CLIENT KILL); once it is back, the
stream holds C and a new entry for A; durable_service is started and answers
A and C. Checked: the statuses and messages of the three, C's single entry,
the caller's log line, nothing run twice. Then
  D. the caller's Redis is made a replica (REPLICAOF: a demoted master
     answers READONLY) when a new caller queues: the request is not failed
     but queued once Redis is a master again (REPLICAOF NO ONE), and answered.

Usage: test_caller_requeue.py SENTINEL_CALLER DURABLE_SERVICE
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sentinel_env import Failure, check, free_port, kill_all, spawn, tail, wait_until  # noqa: E402

import redis  # noqa: E402

CALLER_BIN, SERVICE_BIN = sys.argv[1], sys.argv[2]
SERVICE = "rq_test"
KEY = f"daebus:{SERVICE}:requests"
TIMEOUT = 20.0


def entries(r):
    return [(eid, json.loads(f[b"req"])["request_id"]) for eid, f in r.xrange(KEY)]


def readonly(r, url, service, tmp):
    """D. The caller's Redis is a replica (a demoted master: READONLY) when it
    queues: the request is not failed but queued once Redis takes writes."""
    service.kill()
    service.wait()
    other = free_port()
    spawn(["redis-server", "--port", str(other), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--repl-diskless-sync-delay", "0", "--dir", tmp], os.path.join(tmp, "redis2.log"))
    wait_until(redis.Redis(port=other, socket_timeout=2).ping, 10, "second redis-server up")
    r.execute_command("REPLICAOF", "127.0.0.1", other)
    wait_until(lambda: r.info("replication").get("master_link_status") == "up", 10, "the caller's Redis a replica")
    log = os.path.join(tmp, "caller2.log")
    t0 = time.monotonic()
    caller = subprocess.Popen([CALLER_BIN, url, SERVICE, "--count", "1", "--durable-timeout", "10",
                               "--sleep-ms", "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=open(log, "wb"), text=True)
    time.sleep(1.0)
    if caller.poll() is not None:
        raise Failure(f"the request failed on READONLY: {caller.stdout.read()}\n{tail(log)}")
    r.execute_command("REPLICAOF", "NO", "ONE")
    wait_until(lambda: r.xlen(KEY) == 1, 5, "the request queued once Redis takes writes")
    spawn([SERVICE_BIN, "--redis", url], os.path.join(tmp, "service2.log"), env=dict(os.environ, DUR_SERVICE=SERVICE))
    out, _ = caller.communicate(timeout=20)
    done = [line.split(" ", 6) for line in out.splitlines() if line.startswith("R ")]
    check(caller.returncode == 0 and len(done) == 1 and done[0][4] == "0",
          f"D: {out}\n{tail(log)}")
    print(f"test_caller_requeue: D queued after READONLY and answered ({time.monotonic() - t0:.2f} s)", flush=True)


def main():
    tmp = tempfile.mkdtemp(prefix="daebus-requeue-")
    ok = False
    t_all = time.monotonic()
    try:
        port = free_port()
        spawn(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", tmp], os.path.join(tmp, "redis.log"))
        r = redis.Redis(port=port, socket_timeout=2)
        wait_until(r.ping, 10, "redis-server up")
        url = f"redis://127.0.0.1:{port}"
        log = os.path.join(tmp, "caller.log")
        caller = subprocess.Popen([CALLER_BIN, url, SERVICE, "--count", "4", "--durable-timeout", str(TIMEOUT),
                                   "--sleep-ms", "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=open(log, "wb"), text=True)
        wait_until(lambda: r.xlen(KEY) == 4, 10, "four durable requests queued")
        (ea, a), (eb, b), (ec, c), (ee, e) = entries(r)
        r.xdel(KEY, ea)  # A: lost by the failover
        r.xdel(KEY, eb)  # B: completed meanwhile, its reply gone
        r.set(f"daebus:{SERVICE}:done:{b}", "1", ex=60)
        r.xdel(KEY, ee)  # E: completed meanwhile, its reply kept in the done record
        kept = json.dumps({"status": "success", "payload": {"kept": True}, "request_id": e, "final": True})
        r.set(f"daebus:{SERVICE}:done:{e}", kept, ex=60)
        t_kill = time.monotonic()
        r.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        wait_until(lambda: len(entries(r)) == 2 and entries(r)[1][1] == a, 10,
                   "A queued again after the reconnect (and C left alone)")
        got = entries(r)
        check(got[0] == (ec, c), f"C's entry changed: {got}")
        service = spawn([SERVICE_BIN, "--redis", url], os.path.join(tmp, "service.log"),
                        env=dict(os.environ, DUR_SERVICE=SERVICE))
        out, _ = caller.communicate(timeout=TIMEOUT + 10)
        check(caller.returncode == 0, f"sentinel_caller exited {caller.returncode}:\n{out}\n{tail(log)}")
        res = {f[5]: f for f in (line.split(" ", 6) for line in out.splitlines()) if f[0] == "R"}
        check(set(res) == {a, b, c, e}, f"completions: {out}")
        check(res[a][4] == "0" and res[c][4] == "0", f"A or C not answered: {res[a]} {res[c]}")
        check(res[b][4] == "-9" and "reply was lost (not run again)" in res[b][6], f"B: {res[b]}")
        b_after = float(res[b][3]) - t_kill
        check(b_after < 5.0, f"B reported {b_after:.2f} s after the kill: it waited for its time-out")
        check(res[e][4] == "0", f"E: its kept reply not delivered: {res[e]}")
        e_after = float(res[e][3]) - t_kill
        check(e_after < 5.0, f"E answered {e_after:.2f} s after the kill: not from its done record")
        runs = [int(r.get(f"dur:runs:{x}") or 0) for x in (a, b, c, e)]
        check(runs == [1, 0, 1, 0], f"handler runs of A, B, C, E: {runs} (want 1, 0, 1, 0)")
        text = open(log, errors="replace").read()
        want = ("of 4 durable request(s) in flight: 1 still queued, 2 completed meanwhile, "
                "1 lost by Redis and queued again")
        check(want in text, f"no caller line '{want}':\n{text}")
        print(f"test_caller_requeue: A queued again and answered, B reported lost {b_after:.2f} s after the "
              f"kill, C answered once, E answered from its done record {e_after:.2f} s after the kill", flush=True)
        readonly(r, url, service, tmp)
        print(f"test_caller_requeue: ok ({time.monotonic() - t_all:.1f} s)", flush=True)
        ok = True
    except (Failure, subprocess.TimeoutExpired) as e:
        print(f"test_caller_requeue: FAILED: {e}", flush=True)
        for name in ("caller", "service", "redis", "caller2", "service2"):
            print(f"--- {name}.log ---\n{tail(os.path.join(tmp, name + '.log'), 60)}", flush=True)
    finally:
        kill_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
