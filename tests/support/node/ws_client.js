// ws_client.js - what the node test clients share (gateway_client.js,
// chat_gateway_client.js, channels_node_client.js): a WebSocket (npm ws, found
// through NODE_PATH, set by node_test.sh) that keeps every JSON frame it gets,
// a wait for the frame a predicate accepts, the TypeScript client's request ids
// and its sendAction frame. Usage:
//   const { open, waitFrame, sendAction } = require('../../support/node/ws_client.js');
'use strict';
const WebSocket = require('ws');

let seq = 0;

// Resolves with an open socket whose frames (parsed) are kept in ws.frames.
function open(url, protocols) {
  return new Promise((resolve, reject) => {
    const ws = protocols ? new WebSocket(url, protocols) : new WebSocket(url);
    ws.frames = [];
    ws.waiters = [];
    ws.on('message', (buf) => {
      const f = JSON.parse(buf.toString());
      ws.frames.push(f);
      ws.waiters = ws.waiters.filter((w) => !w(f));
    });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

// Resolves with the first frame (seen already or arriving) that pred accepts;
// rejects after ms with the last frames seen.
function waitFrame(ws, pred, ms = 5000) {
  const seen = ws.frames.find(pred);
  if (seen) return Promise.resolve(seen);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no frame in ' + ms + ' ms; got ' +
      JSON.stringify(ws.frames.slice(-5)))), ms);
    ws.waiters.push((f) => { if (!pred(f)) return false; clearTimeout(t); resolve(f); return true; });
  });
}

// A fresh request id, as the TypeScript client makes them: req_<time>_<n>.
function requestId() {
  return `req_${Date.now()}_${++seq}`;
}

// The TypeScript client's sendAction frame.
function publishFrame(service, action, payload, id) {
  return {
    type: 'publish', channel: service,
    data: { action, payload, reply_channel: 'reply_' + id, request_id: id, timestamp: Date.now() },
  };
}

// Sends service.action(payload) as the TypeScript client does; returns the request id.
function send(ws, service, action, payload) {
  const id = requestId();
  ws.send(JSON.stringify(publishFrame(service, action, payload, id)));
  return id;
}

// send(), then resolves with its response frame.
function sendAction(ws, service, action, payload, ms) {
  const id = send(ws, service, action, payload);
  return waitFrame(ws, (f) => f.type === 'response' && f.request_id === id, ms);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

module.exports = { open, waitFrame, requestId, publishFrame, send, sendAction, sleep };
