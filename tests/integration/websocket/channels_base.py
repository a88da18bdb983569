"""The parts the channel test clients share (channels_clients.py,
presence_clients.py, channels_recovery.py): POST /op to channels_service.c, a
python3-websockets client that keeps its answers by request id, the waits."""
import asyncio
import json
import os
import time
import urllib.request

import websockets

T = 10


def op(port, **body):
    """POST /op to channels_service on port (drives the server API)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/op", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=T) as r:
        return json.loads(r.read())


async def wait_for(pred, what, timeout=T):
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, f"timed out: {what}"
        await asyncio.sleep(0.01)


def wait_file(path, timeout=30):
    """Blocks until path exists (a flag file the C test writes into CHAN_DIR)."""
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < end, f"no {path}"
        time.sleep(0.01)


class BaseClient:
    """One WebSocket client of channels_service: ws://127.0.0.1:PORT/ws?id=CID
    plus query; the hello frame checked; a reader task that files each frame
    with frame() (answers by request id, the rest in other)."""

    def __init__(self, port, cid, query=""):
        self.port, self.cid, self.query = port, cid, query
        self.answers = {}  # request_id -> frame
        self.other = []

    async def open(self, **connect):
        self.ws = await websockets.connect(f"ws://127.0.0.1:{self.port}/ws?id={self.cid}{self.query}",
                                           ping_interval=None, open_timeout=T, close_timeout=1,
                                           **connect)
        hello = json.loads(await asyncio.wait_for(self.ws.recv(), T))
        assert hello["data"]["client_id"] == self.cid, hello
        self.task = asyncio.ensure_future(self.reader())
        return self

    def frame(self, f):
        if "request_id" in f:
            self.answers[f["request_id"]] = f
        else:
            self.other.append(f)

    async def reader(self):
        try:
            async for raw in self.ws:
                self.frame(json.loads(raw))
        except websockets.ConnectionClosed:
            pass

    async def send(self, frame):
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def answer(self, rid, what=None):
        end = time.monotonic() + T
        while rid not in self.answers:
            assert time.monotonic() < end, f"{self.cid}: no answer to {what or rid}"
            await asyncio.sleep(0.005)
        return self.answers[rid]

    async def close(self):
        await self.ws.close()
        await self.task
