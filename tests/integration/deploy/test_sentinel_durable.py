#!/usr/bin/env python3
"""Durable requests and one long-lived in-process caller through two Redis
failovers, with password-protected Redis and sentinels (docs/operations.md
"Redis Sentinel"). Real processes: Debian's redis-server as master + replica
(requirepass, masterauth), three redis-sentinel (requirepass of their own,
sentinel-pass, auth-pass for the master; down-after 1 s), two durable_service
replicas and one sentinel_caller, all on
redis-sentinel://:<master pw>@s1,s2,s3/mymaster?sentinel_password=<pw>.

sentinel_caller keeps ONE daebus_caller for the whole run and sends, 20 times
a second, a durable request (XADD + WAIT 1: acknowledged and replicated) and a
pub/sub request. The master is killed -9; once the sentinels promoted the
replica, the old master is started again (the sentinels make it a replica)
and the new master is killed -9 in turn (a second switch, back). Checked:
  - a wrong or missing sentinel password, or a wrong master password, is
    refused at once with a clear error that does not show the password (a
    service logs it and keeps trying, as for a wrong master password);
  - every durable request the caller accepted is answered (status 0), those
    in flight during a switch included (the caller queues them again with the
    same request_id once it is subscribed again), each run at least once;
  - pub/sub requests fail fast during a switch (within their time-out, with
    a clear error), never later than the switch + the recovery limit;
  - both kinds succeed again within down-after + a few seconds after each
    switch, on the same caller, which never restarts; no call outlives its
    time-out (+1 s);
  - the services log each master change.

Usage: test_sentinel_durable.py DURABLE_SERVICE SENTINEL_CALLER DAEBUS_CALL
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sentinel_env import Cluster, Failure, check, kill_all, procs, spawn, tail, wait_until  # noqa: E402

SERVICE_BIN, CALLER_BIN, CALL = sys.argv[1], sys.argv[2], sys.argv[3]
DOWN_AFTER_MS = 1000
RECOVERY_LIMIT_S = DOWN_AFTER_MS / 1000 + 9.0
SERVICE = "sent_dur"
MASTER_PW, SENTINEL_PW = "m4ster-Pw", "s3ntinel-Pw"
DURABLE_TIMEOUT, PUBSUB_TIMEOUT = 15.0, 3.0
EAUTH = -17  # DAEBUS_EAUTH (include/daebus/error.h)


class CallerRun:
    """sentinel_caller's output, parsed as it comes."""

    def __init__(self, url, log):
        self.done = []  # (kind, sent, done, status, id, message)
        self.refused = []  # (kind, t, rc)
        self.end = None
        self.p = subprocess.Popen([CALLER_BIN, url, SERVICE, "--wait-replicas", "1", "--rate", "20",
                                   "--durable-timeout", str(DURABLE_TIMEOUT), "--timeout", str(PUBSUB_TIMEOUT),
                                   "--sleep-ms", "200"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(log, "wb"), text=True)
        procs.append(self.p)
        self.t = threading.Thread(target=self.read, daemon=True)
        self.t.start()

    def read(self):
        for line in self.p.stdout:
            f = line.rstrip("\n").split(" ", 6)
            if f[0] == "R":
                self.done.append((f[1], float(f[2]), float(f[3]), int(f[4]), f[5], f[6]))
            elif f[0] == "S":
                self.refused.append((f[1], float(f[2]), int(f[3])))
            elif f[0] == "END":
                self.end = (int(f[1]), int(f[2]))

    def ok_after(self, kind, t):
        """Seconds from t to the first success of a request of kind sent after t."""
        later = [x[2] for x in self.done if x[0] == kind and x[1] > t and x[3] == 0]
        return min(later) - t if later else None

    def finish(self):
        self.p.stdin.close()
        try:
            rc = self.p.wait(DURABLE_TIMEOUT + 10)
        except subprocess.TimeoutExpired:
            raise Failure("sentinel_caller did not finish: a request never completed")
        self.t.join(5)
        return rc


def refused_urls(c):
    """Wrong passwords: refused at once, clearly, the password not shown."""
    for url, want, secret in ((c.url(sentinel_password="wrong-S"), "AUTH", "wrong-S"),
                              (c.url(sentinel_password=""), "NOAUTH", None),
                              (c.url(password="wrong-M"), "AUTH", "wrong-M")):
        t0 = time.monotonic()
        p = subprocess.run([CALL, SERVICE, "echo", "{}", "--timeout", "5", "--redis", url],
                           capture_output=True, text=True, timeout=30)
        took = time.monotonic() - t0
        check(p.returncode == 2 and want in p.stderr and "mymaster" in p.stderr
              and (secret is None or secret not in p.stderr) and took < 3,
              f"a refused password: rc {p.returncode} after {took:.2f} s: {p.stderr[:400]}")
        print(f"test_sentinel_durable: refused as it should ({took:.2f} s): {p.stderr.strip()[:300]}", flush=True)
    # A caller made with the C API gets DAEBUS_EAUTH when every sentinel refuses
    # the password (as for a refused master password), not DAEBUS_ECONN.
    for url in (c.url(sentinel_password="wrong-S"), c.url(sentinel_password=""), c.url(password="wrong-M")):
        p = subprocess.run([CALLER_BIN, url, SERVICE], capture_output=True, text=True, timeout=30)
        check(p.returncode == 2 and f"[{EAUTH} " in p.stderr, f"sentinel_caller on {url}: rc {p.returncode}: {p.stderr[:300]}")


def refused_service(c, tmp):
    """A service given a wrong sentinel password says so (and keeps trying,
    as with a wrong master password: the password may be fixed on the
    servers), without showing the password."""
    log = os.path.join(tmp, "refused.log")
    p = spawn([SERVICE_BIN, "--redis", c.url(sentinel_password="wrong-S2")], log,
              env=dict(os.environ, DUR_SERVICE=SERVICE))

    def said():
        text = open(log, errors="replace").read()
        return "AUTH: WRONGPASS" in text and "mymaster" in text

    wait_until(said, 10, "the service's log line about the refused sentinel password")
    check(p.poll() is None, f"the service exited on a refused password:\n{tail(log)}")
    check("wrong-S2" not in open(log, errors="replace").read(), "the service logged the password")
    p.kill()
    p.wait()


def start_services(c, tmp):
    env = dict(os.environ, DUR_SERVICE=SERVICE, DUR_VISIBILITY="2")
    logs = []
    for i in range(2):
        log = os.path.join(tmp, f"service{i}.log")
        spawn([SERVICE_BIN, "--redis", c.url()], log, env=env)
        logs.append(log)

    def answered():
        p = subprocess.run([CALL, SERVICE, "echo", "{}", "--timeout", "2", "--redis", c.url()],
                           capture_output=True, text=True, timeout=30)
        return p.returncode == 0

    wait_until(answered, 20, "durable_service answering on the Sentinel URL")
    return logs


def switch(c, run, label):
    """kill -9 of the master; waits for the promotion and for both kinds of
    request to succeed again. Returns (kill time, new master's name)."""
    old = c.master_port_now()
    old_name = c.name_of(old)
    t_kill = time.monotonic()
    c.redis[old_name].send_signal(signal.SIGKILL)
    c.redis[old_name].wait()
    new = [p for n, p in c.ports.items() if n != old_name][0]
    wait_until(lambda: c.master_port_now() == new, 30, f"{label}: the sentinels promote the replica")
    switched = time.monotonic() - t_kill
    wait_until(lambda: run.ok_after("durable", t_kill + switched) is not None
               and run.ok_after("pubsub", t_kill + switched) is not None,
               RECOVERY_LIMIT_S + 10, f"{label}: durable and pub/sub requests answered after the switch")
    d, p = run.ok_after("durable", t_kill), run.ok_after("pubsub", t_kill)
    print(f"test_sentinel_durable: {label}: kill -9 of {old_name}; sentinels switched after {switched:.2f} s; "
          f"a new durable request answered after {d:.2f} s, pub/sub after {p:.2f} s "
          f"(down-after {DOWN_AFTER_MS} ms)", flush=True)
    for what, t in (("durable", d), ("pub/sub", p)):
        check(t <= RECOVERY_LIMIT_S, f"{label}: {what} back after {t:.2f} s, want <= {RECOVERY_LIMIT_S} s")
    return t_kill, c.name_of(new), old_name


def check_calls(run, kills, c):
    durable = [x for x in run.done if x[0] == "durable"]
    pubsub = [x for x in run.done if x[0] == "pubsub"]
    bad = [x for x in durable if x[3] != 0]
    check(not bad, f"{len(bad)} of {len(durable)} durable request(s) not answered: {bad[:3]}")
    slowest = {k: max(x[2] - x[1] for x in run.done if x[0] == k) for k in ("durable", "pubsub")}
    check(slowest["pubsub"] <= PUBSUB_TIMEOUT + 1.0, f"a pub/sub call took {slowest['pubsub']:.2f} s")
    check(slowest["durable"] <= DURABLE_TIMEOUT + 1.0, f"a durable call took {slowest['durable']:.2f} s")

    def in_window(t):
        return any(k - 1.0 < t < k + RECOVERY_LIMIT_S + 2 for k in kills)

    failed = [x for x in pubsub if x[3] != 0]
    for x in failed:
        check(in_window(x[1]), f"a pub/sub request failed outside a switch: {x}")
        check(x[5] != "-", f"a pub/sub request failed without a message: {x}")
    for x in run.refused:
        check(in_window(x[1]), f"a request was refused outside a switch: {x}")
    # Durable requests in flight at a switch: answered after it.
    across = [x for x in durable if any(x[1] < k < x[2] for k in kills)]
    runs = c.client(c.ports[c.name_of(c.master_port_now())])
    pipe = runs.pipeline(transaction=False)
    for x in durable:
        pipe.get(f"dur:runs:{x[4]}")
    counts = [int(v or 0) for v in pipe.execute()]
    never = [x[4] for x, n in zip(durable, counts) if n == 0]
    twice = sum(1 for n in counts if n > 1)
    print(f"test_sentinel_durable: {len(durable)} durable requests all answered ({len(across)} in flight "
          f"across a switch; slowest {slowest['durable']:.2f} s; run twice {twice}, run-count lost with "
          f"the switch {len(never)}); {len(pubsub)} pub/sub, {len(failed)} failed during the switches "
          f"(slowest {slowest['pubsub']:.2f} s; e.g. {failed[0][5][:160] if failed else '-'}); "
          f"{len(run.refused)} refused at once while disconnected", flush=True)
    check(len(across) > 0, "no durable request was in flight across a switch: the test proved nothing")


def main():
    tmp = tempfile.mkdtemp(prefix="daebus-sentdur-")
    ok = False
    t_all = time.monotonic()
    run = None
    try:
        c = Cluster(tmp, DOWN_AFTER_MS, password=MASTER_PW, sentinel_password=SENTINEL_PW)
        c.start_redis("master")
        c.start_redis("replica", replicaof="master")
        c.wait_replica_synced("replica")
        c.start_sentinels()
        print(f"test_sentinel_durable: master :{c.ports['master']}, replica :{c.ports['replica']}, sentinels "
              f"{c.sentinel_ports} with passwords ready ({time.monotonic() - t_all:.1f} s)", flush=True)
        refused_urls(c)
        refused_service(c, tmp)
        svc_logs = start_services(c, tmp)
        run = CallerRun(c.url(), os.path.join(tmp, "caller.log"))
        wait_until(lambda: run.ok_after("durable", 0) is not None and run.ok_after("pubsub", 0) is not None,
                   15, "first durable and pub/sub answers")
        time.sleep(1.5)

        k1, new1, old1 = switch(c, run, "switch 1")
        # The old master comes back empty; the sentinels make it a replica of the new one.
        c.start_redis(old1)
        c.wait_replica_synced(old1)
        c.wait_sentinels_see_replica()
        time.sleep(1.0)
        k2, new2, _ = switch(c, run, "switch 2")
        time.sleep(1.5)
        rc = run.finish()
        check(rc == 0 and run.end and run.end[0] == run.end[1],
              f"sentinel_caller: rc {rc}, sent/completed {run.end}:\n{tail(os.path.join(tmp, 'caller.log'))}")
        check_calls(run, (k1, k2), c)

        for log in svc_logs:
            text = open(log, errors="replace").read()
            for a, b in ((new1, old1), (new2, new1)):
                want = f"Redis master for 'mymaster' is now 127.0.0.1:{c.ports[a]} (was 127.0.0.1:{c.ports[b]})"
                check(want in text, f"{log}: no line '{want}':\n{tail(log)}")
        clog = open(os.path.join(tmp, "caller.log"), errors="replace").read()
        check("after a lost connection, of" in clog, f"the caller did not check its durable requests again:\n{clog[-2000:]}")
        print("test_sentinel_durable: caller log:\n  " + "\n  ".join(clog.strip().splitlines()[-12:]), flush=True)
        print("test_sentinel_durable: service log:\n  " + "\n  ".join(tail(svc_logs[0], 14).strip().splitlines()),
              flush=True)
        ok = True
        print(f"test_sentinel_durable: ok ({time.monotonic() - t_all:.1f} s)", flush=True)
    except Failure as e:
        print(f"test_sentinel_durable: FAILED: {e}", flush=True)
        if run:
            print(f"calls: {len(run.done)}, refused: {run.refused[:5]}, "
                  f"failed: {[x for x in run.done if x[3] != 0][:5]}", flush=True)
        for name in ("service0", "caller", "master", "replica", "sentinel0"):
            print(f"--- {name}.log ---\n{tail(os.path.join(tmp, name + '.log'), 25)}", flush=True)
    finally:
        kill_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
