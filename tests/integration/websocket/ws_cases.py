#!/usr/bin/python3
"""Envelope and behaviour checks of the daebus-c WebSocket component, driven by
test_ws_envelopes.c: `ws_cases.py CASE PORT`. Exit 0 = pass; otherwise the
failing assertion is printed on stderr."""
import asyncio
import json
import sys
import time

import websockets

PORT = int(sys.argv[2])
URL = f"ws://127.0.0.1:{PORT}"


async def recv_json(ws, timeout=5):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def connect(path="/", **kw):
    ws = await websockets.connect(URL + path, ping_interval=None, **kw)
    hello = await recv_json(ws)  # the connect handler's reply
    assert hello["type"] == "response", hello
    assert hello["data"]["status"] == "connected", hello
    return ws, hello["data"]["client_id"]


def eq(a, b):
    assert a == b, f"{a!r} != {b!r}"


async def case_envelopes():
    ws, cid = await connect("/ws")
    assert cid.startswith("user_") and len(cid) == 5 + 36, cid
    # response with request_id echoed (string and number), compact JSON, key order
    await ws.send(json.dumps({"type": "echo", "data": {"a": 1}, "request_id": "r-17"}))
    raw = await asyncio.wait_for(ws.recv(), 5)
    eq(raw, '{"type":"response","data":{"a":1},"request_id":"r-17","success":true}')
    await ws.send(json.dumps({"type": "echo", "data": [1, 2], "request_id": 5}))
    eq(await recv_json(ws), {"type": "response", "data": [1, 2], "request_id": 5, "success": True})
    # no request_id: none in the reply; missing data -> {}
    await ws.send(json.dumps({"type": "echo"}))
    raw = await asyncio.wait_for(ws.recv(), 5)
    eq(raw, '{"type":"response","data":{},"success":true}')
    # handler failure
    await ws.send(json.dumps({"type": "fail"}))
    eq(await recv_json(ws), {"type": "error", "data": {"error": "boom 42"}, "success": False,
                             "error": "boom 42"})
    # invalid JSON, missing/empty/null type, unknown type
    await ws.send("{not json")
    eq(await recv_json(ws), {"type": "error", "error": "Invalid JSON", "success": False})
    for m in ({"data": {}}, {"type": ""}, {"type": None}):
        await ws.send(json.dumps(m))
        eq(await recv_json(ws), {"type": "error", "error": "No message type provided", "success": False})
    await ws.send(json.dumps({"type": "nope"}))
    eq(await recv_json(ws), {"type": "error", "error": "No handler found for message type 'nope'",
                             "success": False})
    # a handler returning nothing sends nothing: the next reply is the echo
    await ws.send(json.dumps({"type": "none"}))
    await ws.send(json.dumps({"type": "echo", "data": "after"}))
    eq(await recv_json(ws), {"type": "response", "data": "after", "success": True})
    # returning false sends false
    await ws.send(json.dumps({"type": "falsy"}))
    eq(await recv_json(ws), {"type": "response", "data": False, "success": True})
    # not an object
    await ws.send("[1,2]")
    eq(await recv_json(ws), {"type": "error", "error": "Message must be a JSON object", "success": False})
    # pathological nesting is refused before parsing (small worker stacks); 50 levels are fine
    await ws.send('{"type":"echo","data":' + "[" * 5000 + "]" * 5000 + "}")
    eq(await recv_json(ws), {"type": "error", "error": "JSON nested too deeply (max 100 levels)",
                             "success": False})
    await ws.send('{"type":"echo","data":' + "[" * 50 + "]" * 50 + "}")
    r = await recv_json(ws)
    eq(r["type"], "response")
    # fragmented message is reassembled
    await ws.send(iter(['{"type":"echo",', '"data":"frag"}']))
    eq(await recv_json(ws), {"type": "response", "data": "frag", "success": True})
    await ws.close()


async def case_error_frames():
    # every error answering a message with a readable request_id carries it, "success": false
    # and a top-level "error" (what a request/response client such as daebus-client rejects on),
    # besides the keys Python clients read
    ws, cid = await connect("/ws")
    await ws.send(json.dumps({"type": "fail", "request_id": "x"}))
    eq(await recv_json(ws), {"type": "error", "data": {"error": "boom 42"}, "request_id": "x",
                             "success": False, "error": "boom 42"})
    await ws.send(json.dumps({"type": "nope", "request_id": 9}))
    eq(await recv_json(ws), {"type": "error", "error": "No handler found for message type 'nope'",
                             "request_id": 9, "success": False})
    await ws.send(json.dumps({"data": {}, "request_id": "no-type"}))
    eq(await recv_json(ws), {"type": "error", "error": "No message type provided",
                             "request_id": "no-type", "success": False})
    # invalid JSON: the id is read from the text when it can be
    await ws.send('{"type":"echo","request_id":"bad-1","data":{oops}')
    eq(await recv_json(ws), {"type": "error", "error": "Invalid JSON", "request_id": "bad-1",
                             "success": False})
    await ws.send('{"type":"echo","data":{"request_id":"inner"},"request_id":17,')
    eq(await recv_json(ws), {"type": "error", "error": "Invalid JSON", "request_id": 17,
                             "success": False})
    await ws.send('{"type":"echo","data":{"request_id":"only-inner"}')
    eq(await recv_json(ws), {"type": "error", "error": "Invalid JSON", "success": False})
    await ws.send('{"request_id":"deep","data":' + "[" * 5000 + "]" * 5000 + "}")
    eq(await recv_json(ws), {"type": "error", "error": "JSON nested too deeply (max 100 levels)",
                             "request_id": "deep", "success": False})
    await ws.close()


async def case_binary():
    # binary frames holding UTF-8 JSON are handled like text frames (as in Python)
    ws, cid = await connect("/ws")
    await ws.send(json.dumps({"type": "echo", "data": {"b": "\u00e9"}, "request_id": "b1"},
                             ensure_ascii=False).encode())
    eq(await recv_json(ws), {"type": "response", "data": {"b": "\u00e9"}, "request_id": "b1",
                             "success": True})
    await ws.send(json.dumps({"type": "nope", "request_id": "b2"}).encode())
    eq(await recv_json(ws), {"type": "error", "error": "No handler found for message type 'nope'",
                             "request_id": "b2", "success": False})
    await ws.send(b"[1,2]")
    eq(await recv_json(ws), {"type": "error", "error": "Message must be a JSON object", "success": False})
    # other binary data gets a clear error, and the connection stays usable
    want = {"type": "error", "error": "Binary frames must hold UTF-8 JSON: send JSON text frames",
            "success": False}
    await ws.send(b"\x00\x01\xff\xfe binary")
    eq(await recv_json(ws), want)
    await ws.send(b"plain text, not JSON")
    eq(await recv_json(ws), want)
    await ws.send(b'{"type":"echo","request_id":"b3",\xff}')
    eq(await recv_json(ws), dict(want, request_id="b3"))
    await ws.send(json.dumps({"type": "echo", "data": "still open"}))
    eq(await recv_json(ws), {"type": "response", "data": "still open", "success": True})
    await ws.close()


async def case_register_metadata():
    ws, cid = await connect("/ws?x=1")
    await ws.send(json.dumps({"type": "register", "data": {"user": {"username": "JohnDoe"}}}))
    eq(await recv_json(ws), {"type": "response", "data": {"status": "registered", "username": "JohnDoe"},
                             "success": True})
    before = time.time()
    await ws.send(json.dumps({"type": "meta"}))
    r = await recv_json(ws)
    m = r["data"]
    eq(m["client_id"], cid)
    eq(m["path"], "/ws")
    eq(m["secure"], False)
    eq(m["remote_address"][0], "127.0.0.1")
    assert isinstance(m["remote_address"][1], int)
    eq(m["messages_received"], 2)
    eq(m["messages_sent"], 2)  # connect reply + register reply
    eq(m["username"], "JohnDoe")
    eq(m["token"], "good")
    assert abs(m["last_activity"] - before) < 2, m
    assert m["connected_at"] <= m["last_activity"], m
    assert isinstance(m["connected_at"], float)
    await ws.close()


async def case_subprotocol():
    ws = await websockets.connect(URL + "/", subprotocols=["daebus-v1", "other"], ping_interval=None)
    eq(ws.subprotocol, "daebus-v1")
    await recv_json(ws)
    await ws.close()


async def case_reject():
    for path, hdrs in (("/?reject=1", {}), ("/", {"X-Token": "bad"})):
        try:
            ws = await websockets.connect(URL + path, extra_headers=hdrs, ping_interval=None)
            await ws.close()
            raise AssertionError("connection accepted")
        except websockets.exceptions.InvalidStatusCode as e:
            eq(e.status_code, 403)


async def case_rate_limit():
    # the server enabled rate limiting: 5 messages per 1.5 s
    ws, cid = await connect("/")
    got = []
    for i in range(7):  # 2 over the limit (3 consecutive would disconnect)
        msg = {"type": "echo", "data": i}
        if i == 6:
            msg["request_id"] = "rl-6"
        await ws.send(json.dumps(msg))
        got.append(await recv_json(ws))
    for i in range(5):
        eq(got[i], {"type": "response", "data": i, "success": True})
    eq(got[5], {"type": "error", "error": "Rate limit exceeded", "retry_after": 1.5, "success": False})
    eq(got[6], {"type": "error", "error": "Rate limit exceeded", "retry_after": 1.5,
                "request_id": "rl-6", "success": False})
    # rejected messages do not count: after the window everything is served again
    await asyncio.sleep(1.7)
    for i in range(5):
        await ws.send(json.dumps({"type": "echo", "data": i}))
        eq(await recv_json(ws), {"type": "response", "data": i, "success": True})
    await ws.close()


async def case_rate_disconnect():
    # rate_limit_disconnect_after = 3 on the server
    ws, cid = await connect("/")
    for i in range(5 + 3):
        await ws.send(json.dumps({"type": "echo", "data": i}))
    n_err = 0
    try:
        while True:
            r = await recv_json(ws)
            if r["type"] == "error":
                n_err += 1
    except websockets.exceptions.ConnectionClosed as e:
        eq(e.code, 1008)
        eq(e.reason, "Rate limit exceeded")
    eq(n_err, 3)


async def case_oversize():
    ws, cid = await connect("/")
    await ws.send("x" * (64 * 1024 + 1))  # the server's max_message_size is 64 KiB
    try:
        await recv_json(ws)
        raise AssertionError("still open")
    except websockets.exceptions.ConnectionClosed as e:
        eq(e.code, 1009)


async def case_bad_utf8():
    ws, cid = await connect("/")
    # websockets refuses to send invalid UTF-8 as text: write the frame by hand
    from websockets.frames import Frame, Opcode
    await ws.write_frame(True, Opcode.TEXT, b'{"type":"echo","data":"\xff\xfe"}')
    try:
        await recv_json(ws)
        raise AssertionError("still open")
    except websockets.exceptions.ConnectionClosed as e:
        eq(e.code, 1007)


async def case_kick():
    ws, cid = await connect("/")
    await ws.send(json.dumps({"type": "kick_me", "request_id": 1}))
    eq(await recv_json(ws), {"type": "disconnect_notice", "data": {"reason": "bye"}})
    try:
        await recv_json(ws)
        raise AssertionError("still open")
    except websockets.exceptions.ConnectionClosed as e:
        eq(e.code, 1000)
        eq(e.reason, "Server closed connection")


async def case_custom_id():
    # the server's generator returns "client_<port>" for X-Id: port, "" for X-Id: empty
    ws = await websockets.connect(URL + "/", extra_headers={"X-Id": "port"}, ping_interval=None)
    hello = await recv_json(ws)
    port = ws.local_address[1]
    eq(hello["data"]["client_id"], f"client_127.0.0.1_{port}")
    ws2 = await websockets.connect(URL + "/", extra_headers={"X-Id": "empty"}, ping_interval=None)
    hello2 = await recv_json(ws2)
    assert hello2["data"]["client_id"].startswith("user_"), hello2
    ws3 = await websockets.connect(URL + "/", extra_headers={"X-Id": "fixed"}, ping_interval=None)
    await recv_json(ws3)
    try:
        ws4 = await websockets.connect(URL + "/", extra_headers={"X-Id": "fixed"}, ping_interval=None)
        await ws4.close()
        raise AssertionError("duplicate id accepted")
    except websockets.exceptions.InvalidStatusCode as e:
        eq(e.status_code, 409)
    for w in (ws, ws2, ws3):
        await w.close()


async def case_hold():
    # opens N clients, reports their ids, then waits for server_shutdown + close 1001
    n = int(sys.argv[3])
    conns = []
    for _ in range(n):
        conns.append(await connect("/"))
    print(json.dumps([c for _, c in conns]), flush=True)
    for ws, _ in conns:
        r = await recv_json(ws, 30)
        eq(r, {"type": "server_shutdown", "data": {"message": "maintenance", "reconnect": False}})
    for ws, _ in conns:
        try:
            await recv_json(ws, 30)
            raise AssertionError("still open")
        except websockets.exceptions.ConnectionClosed as e:
            eq(e.code, 1001)


CASES = {k[5:]: v for k, v in globals().items() if k.startswith("case_")}

if __name__ == "__main__":
    try:
        asyncio.run(CASES[sys.argv[1]]())
    except Exception as e:  # noqa
        import traceback
        traceback.print_exc()
        sys.exit(1)
