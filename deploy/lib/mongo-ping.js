// Minimal MongoDB wire-protocol ping (OP_MSG {ping: 1, $db: "admin"}), so the
// stack's health check needs no driver. Exit 0 when the server answers ok: 1.
// Usage: node mongo-ping.js [host] [port]
'use strict';
const net = require('node:net');

const host = process.argv[2] || '127.0.0.1';
const port = Number(process.argv[3] || 27017);

function cstring(s) { return Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]); }
function bsonDoc(parts) {
  const body = Buffer.concat([...parts, Buffer.from([0])]);
  const len = Buffer.alloc(4);
  len.writeInt32LE(body.length + 4);
  return Buffer.concat([len, body]);
}
function int32El(name, v) { const b = Buffer.alloc(4); b.writeInt32LE(v); return Buffer.concat([Buffer.from([0x10]), cstring(name), b]); }
function strEl(name, v) { const s = cstring(v); const l = Buffer.alloc(4); l.writeInt32LE(s.length); return Buffer.concat([Buffer.from([0x02]), cstring(name), l, s]); }

const doc = bsonDoc([int32El('ping', 1), strEl('$db', 'admin')]);
const payload = Buffer.concat([Buffer.alloc(4) /* flagBits */, Buffer.from([0]) /* section kind 0 */, doc]);
const header = Buffer.alloc(16);
header.writeInt32LE(16 + payload.length, 0);
header.writeInt32LE(1, 4);      // requestID
header.writeInt32LE(0, 8);      // responseTo
header.writeInt32LE(2013, 12);  // OP_MSG
const msg = Buffer.concat([header, payload]);

// Reads the top-level "ok" field of a BSON document (double, int32 or int64).
function okField(buf, off) {
  const end = off + buf.readInt32LE(off);
  let p = off + 4;
  while (p < end - 1) {
    const type = buf[p++];
    const nameEnd = buf.indexOf(0, p);
    const name = buf.toString('utf8', p, nameEnd);
    p = nameEnd + 1;
    let value; let size;
    switch (type) {
      case 0x01: value = buf.readDoubleLE(p); size = 8; break;
      case 0x02: size = 4 + buf.readInt32LE(p); break;
      case 0x03: case 0x04: size = buf.readInt32LE(p); break;
      case 0x05: size = 5 + buf.readInt32LE(p); break;
      case 0x07: size = 12; break;
      case 0x08: value = buf[p]; size = 1; break;
      case 0x09: case 0x11: case 0x12: value = Number(buf.readBigInt64LE(p)); size = 8; break;
      case 0x0a: size = 0; break;
      case 0x10: value = buf.readInt32LE(p); size = 4; break;
      case 0x13: size = 16; break;
      default: return undefined;
    }
    if (name === 'ok') return value;
    p += size;
  }
  return undefined;
}

const sock = net.connect({ host, port });
const timer = setTimeout(() => { console.error('timeout'); process.exit(2); }, 5000);
let chunks = Buffer.alloc(0);
sock.on('connect', () => sock.write(msg));
sock.on('data', (d) => {
  chunks = Buffer.concat([chunks, d]);
  if (chunks.length < 4 || chunks.length < chunks.readInt32LE(0)) return;
  clearTimeout(timer);
  sock.destroy();
  // header(16) + flagBits(4) + section kind(1) + document
  const ok = okField(chunks, 21);
  if (ok === 1) { console.log('ok'); process.exit(0); }
  console.error('unexpected reply, ok =', ok);
  process.exit(1);
});
sock.on('error', (e) => { console.error(e.message); process.exit(1); });
