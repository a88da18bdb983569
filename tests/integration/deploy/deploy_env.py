#!/usr/bin/env python3
"""The deployment docs/operations.md recommends, started for a test: a private
redis-server, N chat_service replicas on it, a throw-away TLS certificate made
with `openssl req -x509`, and Debian's nginx in front of the replicas with the
nginx.conf that scripts/nginx-conf.sh prints (the script the docs show), run as
the current user from a temporary directory (`nginx -p DIR -c DIR/nginx.conf`,
one process in the foreground, its pid and logs in DIR). Everything runs on
127.0.0.1 at free ports and is stopped by stop(); children get SIGKILL if the
test itself dies (PR_SET_PDEATHSIG), so nothing outlives it.

As a library: Deployment(...).start() / .stop(). As a program (the browser
test): deploy_env.py --chat BIN --source DIR [--replicas N] -- COMMAND ARGS...
runs COMMAND with DEPLOY_* variables describing the deployment (see env()),
then stops everything; its exit status is COMMAND's (1 if the stop failed).
"""
import argparse
import base64
import ctypes
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

READY_S = 20.0
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port, host="127.0.0.1"):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_until(cond, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {seconds:g} s: {what}")


def http_get(url, context=None, timeout=5.0, headers=None):
    """(status, headers, body bytes); redirects are not followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    handlers = [NoRedirect()]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class Deployment:
    """Redis + N replicas of chat_service + nginx (TLS and plain HTTP)."""

    def __init__(self, chat, source, replicas=3, http_mode="redirect", chat_env=None):
        self.chat, self.source, self.n = chat, source, replicas
        self.http_mode = http_mode
        self.chat_env = dict(chat_env or {})
        self.dir = tempfile.mkdtemp(prefix="daebus-deploy-")
        self.redis = None
        self.replicas = []  # dicts: port, proc, log
        self.nginx = None
        self.https_port = self.http_port = None
        self.stopped = False

    # ---- start ----
    def _spawn(self, argv, log, env=None):
        out = open(log, "wb")
        try:
            return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, preexec_fn=_die_with_parent)
        finally:
            out.close()

    def start_redis(self):
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}"
        self.redis = self._spawn(["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--dir", self.dir, "--loglevel",
                                  "warning"], os.path.join(self.dir, "redis.log"))
        wait_until(lambda: port_open(self.redis_port), READY_S, "redis-server listening")

    def start_replica(self, again=None):
        """A new replica on a free port, or `again` (a stopped one) restarted on its port."""
        i = again["index"] if again else len(self.replicas)
        port = again["port"] if again else free_port()
        log = os.path.join(self.dir, f"replica{i}{'-again' if again else ''}.log")
        env = dict(os.environ, **self.chat_env)
        proc = self._spawn([self.chat, "--port", str(port), "--redis", self.redis_url], log, env)
        r = {"index": i, "port": port, "proc": proc, "log": log, "url": f"http://127.0.0.1:{port}"}
        if again:
            self.replicas[i] = r
        else:
            self.replicas.append(r)
        return r

    def wait_replicas_ready(self, which=None):
        for r in which or self.replicas:
            def ready(r=r):
                if r["proc"].poll() is not None:
                    raise RuntimeError(f"replica {r['index']} exited {r['proc'].returncode}:\n" + self.tail(r["log"]))
                try:
                    return http_get(r["url"] + "/health/ready", timeout=1.0)[0] == 200
                except OSError:
                    return False
            wait_until(ready, READY_S, f"replica {r['index']} ready on port {r['port']}")
            r["instance_id"] = self.health(r["url"])["instance_id"]
        # Every replica sees every other one (the cluster view is whole).
        wait_until(lambda: all(self.health(r["url"])["checks"].get("instances", {}).get("count") == len(self.replicas)
                               for r in self.replicas), READY_S, "every replica sees every other one")

    def make_certificate(self):
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", self.key, "-out", self.cert, "-days", "1", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # The key's SPKI hash: Chromium trusts exactly this key with
        # --ignore-certificate-errors-spki-list (a pin, not "ignore all").
        der = subprocess.run(["openssl", "x509", "-in", self.cert, "-pubkey", "-noout"], check=True,
                             capture_output=True).stdout
        der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=der, check=True,
                             capture_output=True).stdout
        self.spki = base64.b64encode(hashlib.sha256(der).digest()).decode()

    def nginx_conf_args(self):
        args = ["--standalone", os.path.join(self.dir, "nginx"), "--server-name", "localhost",
                "--https", f"127.0.0.1:{self.https_port}", "--cert", self.cert, "--key", self.key,
                "--http", f"127.0.0.1:{self.http_port}", "--http-mode", self.http_mode]
        for r in self.replicas:
            args += ["--upstream", f"127.0.0.1:{r['port']}"]
        return args

    def start_nginx(self):
        self.https_port, self.http_port = free_port(), free_port()
        ndir = os.path.join(self.dir, "nginx")
        os.makedirs(ndir, exist_ok=True)
        conf = subprocess.run(["bash", os.path.join(self.source, "scripts", "nginx-conf.sh")] + self.nginx_conf_args(),
                              check=True, capture_output=True, text=True).stdout
        self.nginx_conf = os.path.join(ndir, "nginx.conf")
        with open(self.nginx_conf, "w") as f:
            f.write(conf)
        self.nginx_dir = ndir
        self.nginx = self._spawn(["nginx", "-p", ndir, "-c", self.nginx_conf], os.path.join(ndir, "stderr.log"))

        def up():
            if self.nginx.poll() is not None:
                raise RuntimeError(f"nginx exited {self.nginx.returncode}:\n" +
                                   self.tail(os.path.join(ndir, "stderr.log")) + self.tail(os.path.join(ndir, "error.log")))
            return port_open(self.https_port) and port_open(self.http_port)
        wait_until(up, READY_S, "nginx listening")

    def start(self):
        try:
            self.start_redis()
            for _ in range(self.n):
                self.start_replica()
            self.make_certificate()
            self.wait_replicas_ready()
            self.start_nginx()
        except BaseException:
            self.dump()
            self.stop()
            raise
        return self

    # ---- use ----
    @property
    def https_url(self):
        return f"https://localhost:{self.https_port}"

    @property
    def wss_url(self):
        return f"wss://localhost:{self.https_port}/ws"

    def tls_context(self):
        """Verifies nginx's certificate against the throw-away one (no 'insecure')."""
        return ssl.create_default_context(cafile=self.cert)

    def health(self, base, context=None):
        status, _, body = http_get(base + "/health", context=context)
        if status not in (200, 503):
            raise RuntimeError(f"GET {base}/health: {status} {body[:200]!r}")
        return json.loads(body)

    def ws_clients(self, r):
        """WebSocket clients connected to replica r itself (its /health, not through nginx)."""
        return self.health(r["url"])["checks"]["websocket"]["clients"]

    def env(self):
        return {
            "DEPLOY_URL": self.https_url + "/",
            "DEPLOY_HTTP_URL": f"http://localhost:{self.http_port}/",
            "DEPLOY_REPLICAS": ",".join(r["url"] for r in self.replicas),
            "DEPLOY_INSTANCES": ",".join(r["instance_id"] for r in self.replicas),
            "DEPLOY_CERT": self.cert,
            "DEPLOY_SPKI": self.spki,
            "DEPLOY_DIR": self.dir,
            "REDIS_URL": self.redis_url,
        }

    # ---- stop ----
    @staticmethod
    def tail(path, n=25):
        try:
            with open(path, errors="replace") as f:
                lines = f.readlines()
            return f"--- {path}\n" + "".join(lines[-n:])
        except OSError:
            return ""

    def dump(self):
        for r in self.replicas:
            sys.stderr.write(self.tail(r["log"]))
        if self.nginx is not None:
            sys.stderr.write(self.tail(os.path.join(self.nginx_dir, "error.log")))
            sys.stderr.write(self.tail(os.path.join(self.nginx_dir, "access.log")))

    @staticmethod
    def _stop(proc, sig=signal.SIGTERM, timeout=10.0):
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                return "killed"
        return proc.returncode

    def stop(self):
        """Replicas first (their WebSocket close frames go out through nginx),
        then nginx, then Redis. Returns a list of problems (empty: clean)."""
        if self.stopped:
            return []
        self.stopped = True
        problems = []
        for r in self.replicas:
            if r.get("killed"):
                self._stop(r["proc"])
                continue
            rc = self._stop(r["proc"])
            if rc != 0:
                problems.append(f"replica {r['index']} exited {rc} after SIGTERM (want 0)")
        rc = self._stop(self.nginx)
        if rc not in (0, None):
            problems.append(f"nginx exited {rc} after SIGTERM (want 0)")
        self._stop(self.redis)
        if self.nginx is not None and os.path.exists(os.path.join(self.nginx_dir, "nginx.pid")):
            problems.append("nginx left its pid file behind")
        if problems:
            self.dump()
        shutil.rmtree(self.dir, ignore_errors=True)
        return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chat", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        ap.error("no command")
    d = Deployment(a.chat, a.source, a.replicas, http_mode="redirect", chat_env={"CHAT_STATUS_INTERVAL": "2"})
    d.start()
    rc = 1
    try:
        rc = subprocess.run(cmd, env=dict(os.environ, **d.env())).returncode
        if rc != 0:
            d.dump()
    finally:
        problems = d.stop()
    for p in problems:
        print("deploy_env: " + p, file=sys.stderr)
    sys.exit(rc if rc != 0 else (1 if problems else 0))


if __name__ == "__main__":
    main()
