// The socket.io v4 signaling server that signalpost is measured against:
// what a Node developer would write for the same job, with nothing tuned.
// Rooms with a capacity, a signal to one socket id or to the rest of the
// room, leave, and a `member-left` when a socket goes away.
//
//   node server.js [--port 0] [--host 127.0.0.1] [--capacity 10]
//                  [--tls-cert PEM --tls-key PEM]
//
// With a certificate it serves HTTPS (and so `wss`) with Node's own TLS,
// as a Node developer would put socket.io behind HTTPS.
//
// Prints `listening on HOST:PORT` once it accepts connections; with port 0
// the system picks a free one, and the line names it.
'use strict';

const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const { Server } = require('socket.io');

function option(name, fallback) {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}

const host = option('host', '127.0.0.1');
const port = Number(option('port', '0'));
const defaultCapacity = Number(option('capacity', '10'));
const maxCapacity = 50;

const tlsCert = option('tls-cert', null);
const tlsKey = option('tls-key', null);
const httpServer = tlsCert && tlsKey
  ? https.createServer({ cert: fs.readFileSync(tlsCert), key: fs.readFileSync(tlsKey) })
  : http.createServer();
// Both transports stay on: the benchmark drives websocket and long-polling
// clients against this same process.
const io = new Server(httpServer, { transports: ['polling', 'websocket'] });

// The adapter knows who is in a room but not how many it may hold.
const capacities = new Map();

function membersOf(room) {
  return io.sockets.adapter.rooms.get(room);
}

io.on('connection', (socket) => {
  socket.on('join', (request, ack) => {
    const reply = typeof ack === 'function' ? ack : () => {};
    const room = request && typeof request.room === 'string' ? request.room : '';
    if (room.length === 0 || room.length > 64) {
      reply({ error: 'invalid_room_id' });
      return;
    }
    if (socket.data.room !== undefined) {
      reply({ error: 'already_joined' });
      return;
    }
    const present = membersOf(room);
    if (present === undefined) {
      const asked = Number.isInteger(request.capacity) ? request.capacity : defaultCapacity;
      capacities.set(room, Math.max(2, Math.min(asked, maxCapacity)));
    } else if (present.size >= capacities.get(room)) {
      reply({ error: 'room_full' });
      return;
    }
    const others = present === undefined ? [] : [...present];
    socket.join(room);
    socket.data.room = room;
    socket.to(room).emit('member-joined', { id: socket.id });
    reply({ id: socket.id, room, capacity: capacities.get(room), members: others });
  });

  socket.on('signal', (message) => {
    const room = socket.data.room;
    if (room === undefined || message === null || typeof message !== 'object') {
      return;
    }
    const signal = { from: socket.id, to: message.to ?? null, type: message.type, payload: message.payload };
    if (typeof message.to === 'string') {
      // A socket id is also a room of one; refuse ids outside the sender's room.
      if (message.to !== socket.id && membersOf(room)?.has(message.to)) {
        io.to(message.to).emit('signal', signal);
      }
    } else {
      socket.to(room).emit('signal', signal);
    }
  });

  function leave(reason) {
    const room = socket.data.room;
    if (room === undefined) {
      return;
    }
    socket.data.room = undefined;
    socket.leave(room);
    socket.to(room).emit('member-left', { id: socket.id, reason });
    if (membersOf(room) === undefined) {
      capacities.delete(room);
    }
  }

  socket.on('leave', () => leave('left'));
  // `disconnecting` still sees the socket in its rooms; `disconnect` does not.
  socket.on('disconnecting', () => leave('disconnected'));
});

httpServer.listen(port, host, () => {
  const bound = httpServer.address();
  console.log(`listening on ${bound.address}:${bound.port}`);
});

function stop() {
  io.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
