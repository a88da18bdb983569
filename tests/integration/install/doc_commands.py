#!/usr/bin/env python3
"""Runs the shell commands of a Markdown guide (docs/getting-started.md) as a
new user would, and fails if one of them fails.

Usage: doc_commands.py SOURCE_DIR [GUIDE] [--absent GLOB]...
GUIDE defaults to docs/getting-started.md. Each --absent GLOB (relative to
the simulated HOME) must match no file once the guide has run: what a step
must not have built (e.g. `make run` builds no tests and no benchmarks).

Every ```sh block runs, in document order, with `bash -e` (so every command
of a block must succeed), in one simulated terminal: the working directory
and the exported environment carry over from one block to the next. The
environment is a fresh one for a user whose HOME is an empty temporary
directory, with:
  - DAEBUS_REDIS_URL pointing at a private redis-server on a free port that
    this script starts (so no block depends on a Redis the machine may run);
  - DAEBUS_HTTP_PORT set to a free port (what `make run` serves on), and the
    port 8081 written in the guide replaced by another free port, so that
    the guide's fixed ports do not collide with anything on the machine.

A block is changed only through an HTML comment on the line just before its
fence (the complete list):
  <!-- doctest: clone -->
      the block's `git clone ... daebus-c` is replaced by a copy of SOURCE_DIR
      (its git-tracked and untracked, not ignored files) into ./daebus-c;
  <!-- doctest: background until "TEXT" -->
      a long-running command (`make run`, a service): started in the
      background in a process group of its own; the next block runs once TEXT
      appears in its output (it must not exit before). At the end, each one
      gets a SIGTERM (as `timeout` or Ctrl-C would stop it) and must log a
      graceful stop, no "second signal", and end within 20 s;
  <!-- doctest: exit N "TEXT" -->
      the block must exit with status N and print TEXT (a documented failure:
      the guide states both);
  <!-- doctest: file NAME -->
      the block (of any language) is written to NAME in the current directory
      instead of being run;
  <!-- doctest: skip (why) -->
      the block is not run.
Blocks of other languages without a `file` marker are text, not commands.
"""
import glob
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

MARK = re.compile(r'^<!--\s*doctest:\s*(.*?)\s*-->\s*$')
FENCE = re.compile(r'^```(\S*)\s*$')


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def parse(path):
    """Returns [(line, lang, marker, text)] for every fenced block."""
    blocks, lines = [], open(path, encoding='utf-8').read().split('\n')
    i, marker = 0, None
    while i < len(lines):
        m = MARK.match(lines[i])
        if m:
            marker = m.group(1)
            i += 1
            continue
        f = FENCE.match(lines[i])
        if f:
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not lines[i].startswith('```'):
                body.append(lines[i])
                i += 1
            blocks.append((start, f.group(1), marker, '\n'.join(body) + '\n'))
            marker = None
        elif lines[i].strip():
            marker = None  # a marker applies only to the block right after it
        i += 1
    return blocks


class Runner:
    def __init__(self, src, guide):
        self.src, self.guide = os.path.abspath(src), guide
        self.tmp = tempfile.mkdtemp(prefix='daebus-doc-')
        self.home = os.path.join(self.tmp, 'home')
        os.mkdir(self.home)
        self.cwd = self.home
        self.http_port, self.port_8081 = free_port(), free_port()
        self.background = []  # (line, Popen, log path)
        self.redis = None
        keep = ('PATH', 'LANG', 'LC_ALL', 'TERM', 'USER', 'LOGNAME', 'SHELL', 'TZ')
        self.env = {k: v for k, v in os.environ.items() if k in keep}
        self.env['HOME'] = self.home

    def start_redis(self):
        port = free_port()
        rdir = os.path.join(self.tmp, 'redis')
        os.mkdir(rdir)
        self.redis = subprocess.Popen(
            ['redis-server', '--port', str(port), '--bind', '127.0.0.1', '--save', '',
             '--appendonly', 'no', '--dir', rdir, '--loglevel', 'warning'],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(('127.0.0.1', port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        self.env['DAEBUS_REDIS_URL'] = 'redis://127.0.0.1:%d' % port
        self.env['DAEBUS_HTTP_PORT'] = str(self.http_port)

    def fail(self, line, why, output=''):
        print('doc_commands: FAIL: %s:%d: %s' % (self.guide, line, why))
        if output:
            print('--- output\n' + output[-6000:])
        sys.exit(1)

    def script(self, text):
        return text.replace('8081', str(self.port_8081))

    def clone(self, line, text):
        m = re.search(r'git clone \S+( \S+)? (\S+)', text)
        if not m:
            self.fail(line, 'clone marker on a block without `git clone`')
        dest = m.group(2)
        copy = ('mkdir -p %s && (cd %s && { git ls-files -co --exclude-standard -z 2>/dev/null || '
                'find . -path ./build\\* -prune -o -type f -print0; } | '
                'tar --null -T - -cf -) | tar -C %s -xf -' %
                (shlex.quote(dest), shlex.quote(self.src), shlex.quote(dest)))
        return text[:m.start()] + copy + text[m.end():]

    def run_block(self, line, text, expect=0, expect_text=None):
        state = os.path.join(self.tmp, 'state')
        body = ('set -e\n' + text + '\nset +e\n{ pwd; env -0; } > %s\n' % shlex.quote(state))
        p = subprocess.run(['bash', '-c', body], cwd=self.cwd, env=self.env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=1200)
        print('doc_commands: %s:%d: exit %d' % (self.guide, line, p.returncode))
        if p.returncode != expect:
            self.fail(line, 'exit status %d, the guide expects %d' % (p.returncode, expect),
                      p.stdout)
        if expect_text is not None and expect_text not in p.stdout:
            self.fail(line, 'the output lacks "%s"' % expect_text, p.stdout)
        if expect == 0:
            raw = open(state, 'rb').read().decode()
            cwd, _, env = raw.partition('\n')
            self.cwd = cwd
            self.env = dict(kv.split('=', 1) for kv in env.split('\0') if '=' in kv)

    def run_background(self, line, text, until):
        log = os.path.join(self.tmp, 'bg-%d.log' % line)
        out = open(log, 'w')
        p = subprocess.Popen(['bash', '-c', text], cwd=self.cwd, env=self.env, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True)
        self.background.append((line, p, log))
        deadline = time.time() + 900  # make run builds first
        while time.time() < deadline:
            if until in open(log, errors='replace').read():
                print('doc_commands: %s:%d: running (saw "%s")' % (self.guide, line, until))
                return
            if p.poll() is not None:
                self.fail(line, 'exited (%d) before "%s"' % (p.returncode, until),
                          open(log, errors='replace').read())
            time.sleep(0.2)
        self.fail(line, 'no "%s" within 900 s' % until, open(log, errors='replace').read())

    def stop_background(self):
        for line, p, log in reversed(self.background):
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                self.fail(line, 'still running 20 s after SIGTERM', open(log).read())
            text = open(log, errors='replace').read()
            if 'shutting down gracefully' not in text or 'second signal' in text:
                self.fail(line, 'no single graceful stop after SIGTERM', text)
            print('doc_commands: %s:%d: stopped gracefully' % (self.guide, line))
        self.background = []

    def cleanup(self):
        for _, p, _ in self.background:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(20)
            except (OSError, subprocess.TimeoutExpired):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
        if self.redis:
            self.redis.kill()
            self.redis.wait()
        subprocess.run(['rm', '-rf', self.tmp])

    def run(self):
        blocks = parse(self.guide)
        ran = 0
        for line, lang, marker, text in blocks:
            marker = marker or ''
            m = re.match(r'file (\S+)$', marker)
            if m:
                with open(os.path.join(self.cwd, m.group(1)), 'w') as f:
                    f.write(text)
                print('doc_commands: %s:%d: wrote %s' % (self.guide, line, m.group(1)))
                continue
            if lang != 'sh' or marker.startswith('skip'):
                continue
            text = self.script(text)
            ran += 1
            if marker == 'clone':
                self.run_block(line, self.clone(line, text))
            elif marker.startswith('background'):
                m = re.match(r'background until "(.*)"$', marker)
                if not m:
                    self.fail(line, 'bad marker: ' + marker)
                self.run_background(line, text, m.group(1))
            elif marker.startswith('exit'):
                m = re.match(r'exit (\d+) "(.*)"$', marker)
                if not m:
                    self.fail(line, 'bad marker: ' + marker)
                self.run_block(line, text, int(m.group(1)), m.group(2))
            elif marker:
                self.fail(line, 'unknown marker: ' + marker)
            else:
                self.run_block(line, text)
        self.stop_background()
        if ran == 0:
            self.fail(0, 'no sh blocks found')
        print('doc_commands: ok (%d blocks of %s)' % (ran, self.guide))


def main():
    args, absent = [], []
    argv = sys.argv[1:]
    while argv:
        a = argv.pop(0)
        if a == '--absent' and argv:
            absent.append(argv.pop(0))
        else:
            args.append(a)
    src = args[0]
    guide = args[1] if len(args) > 1 else os.path.join(src, 'docs', 'getting-started.md')
    r = Runner(src, guide)
    try:
        r.start_redis()
        r.run()
        for pattern in absent:
            found = glob.glob(os.path.join(r.home, pattern))
            if found:
                r.fail(0, '%s exists (%s); that step should not have built it' %
                       (pattern, ', '.join(os.path.relpath(f, r.home) for f in found[:3])))
            print('doc_commands: nothing matches %s' % pattern)
    finally:
        r.cleanup()


if __name__ == '__main__':
    main()
