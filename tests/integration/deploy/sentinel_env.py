#!/usr/bin/env python3
"""A Redis master, one replica and three sentinels (Debian's redis-server and
redis-sentinel) on private ports in a temp dir, for the Sentinel tests; with
passwords when asked: the master's (requirepass + masterauth on every Redis,
`sentinel auth-pass` on the sentinels) and the sentinels' own (requirepass +
`sentinel sentinel-pass`). Every process started here is in `procs`; kill_all()
stops them."""
import os
import shutil
import socket
import subprocess
import time

import redis

procs = []


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(fn, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if fn():
                return
        except (OSError, redis.RedisError):
            pass
        time.sleep(0.05)
    raise Failure(f"timed out waiting for: {what}")


def spawn(argv, log, **kw):
    out = open(log, "ab")
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
    out.close()
    procs.append(p)
    return p


def kill_all():
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass


def tail(path, n=40):
    try:
        return "".join(open(path, errors="replace").readlines()[-n:])
    except OSError:
        return ""


def sentinel_argv(conf):
    """Debian's redis-sentinel (scripts/deps.sh installs it); the same binary
    as redis-server, so `redis-server CONF --sentinel` when it is missing."""
    exe = shutil.which("redis-sentinel")
    return [exe, conf] if exe else ["redis-server", conf, "--sentinel"]


class Cluster:
    def __init__(self, tmp, down_after_ms=1000, password=None, sentinel_password=None):
        self.tmp = tmp
        self.down_after_ms = down_after_ms
        self.password, self.sentinel_password = password, sentinel_password
        self.ports = {"master": free_port(), "replica": free_port()}
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.redis = {}

    @property
    def master_port(self):
        return self.ports["master"]

    @property
    def replica_port(self):
        return self.ports["replica"]

    def client(self, port, **kw):
        return redis.Redis(port=port, password=self.password, socket_timeout=1, **kw)

    def sentinel(self, port):
        return redis.Redis(port=port, password=self.sentinel_password, socket_timeout=1)

    def start_redis(self, name, replicaof=None):
        port = self.ports[name]
        conf = os.path.join(self.tmp, f"{name}.conf")
        with open(conf, "w") as f:
            f.write(f"port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {self.tmp}\n"
                    f"dbfilename {name}.rdb\nloglevel notice\nrepl-diskless-sync yes\n"
                    f"repl-diskless-sync-delay 0\n")
            if self.password:
                f.write(f"requirepass {self.password}\nmasterauth {self.password}\n")
            if replicaof:
                f.write(f"replicaof 127.0.0.1 {self.ports[replicaof]}\n")
        self.redis[name] = spawn(["redis-server", conf], os.path.join(self.tmp, f"{name}.log"))
        wait_until(lambda: self.client(port).ping(), 10, f"{name} up")

    def start_sentinels(self):
        for i, port in enumerate(self.sentinel_ports):
            conf = os.path.join(self.tmp, f"sentinel{i}.conf")
            with open(conf, "w") as f:
                f.write(f"port {port}\nbind 127.0.0.1\ndir {self.tmp}\n"
                        f"sentinel monitor mymaster 127.0.0.1 {self.ports['master']} 2\n"
                        f"sentinel down-after-milliseconds mymaster {self.down_after_ms}\n"
                        "sentinel failover-timeout mymaster 4000\n"
                        "sentinel parallel-syncs mymaster 1\n")
                if self.password:
                    f.write(f"sentinel auth-pass mymaster {self.password}\n")
                if self.sentinel_password:
                    f.write(f"requirepass {self.sentinel_password}\n"
                            f"sentinel sentinel-pass {self.sentinel_password}\n")
            spawn(sentinel_argv(conf), os.path.join(self.tmp, f"sentinel{i}.log"))
        self.wait_sentinels_see_replica()

    def wait_sentinels_see_replica(self, timeout=30):
        def ready():
            for port in self.sentinel_ports:
                m = self.sentinel(port).sentinel_master("mymaster")
                if m["num-other-sentinels"] != 2 or m["num-slaves"] < 1:
                    return False
                slaves = self.sentinel(port).sentinel_slaves("mymaster")
                if not any("s_down" not in s.get("flags", "") and "disconnected" not in s.get("flags", "")
                           for s in slaves):
                    return False
            return True

        wait_until(ready, timeout, "3 sentinels that know each other and a live replica")

    def wait_replica_synced(self, name, timeout=20):
        wait_until(lambda: self.client(self.ports[name]).info("replication").get("master_link_status") == "up",
                   timeout, f"{name} in sync with the master")

    def url(self, password=None, sentinel_password=None):
        pw = password if password is not None else self.password
        sp = sentinel_password if sentinel_password is not None else self.sentinel_password
        auth = f":{pw}@" if pw else ""
        q = f"?sentinel_password={sp}" if sp else ""
        return (f"redis-sentinel://{auth}" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
                + f"/mymaster{q}")

    def master_port_now(self):
        for port in self.sentinel_ports:
            try:
                addr = self.sentinel(port).sentinel_get_master_addr_by_name("mymaster")
                if addr:
                    return int(addr[1])
            except redis.RedisError:
                pass
        return None

    def name_of(self, port):
        return next(n for n, p in self.ports.items() if p == port)
