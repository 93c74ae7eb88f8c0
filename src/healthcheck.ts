// The image's HEALTHCHECK: `node dist/src/healthcheck.js` exits 0 when this
// container's /healthz answers 200 (serving), 1 otherwise (starting, draining,
// down). Reads the port from CHATFLOW_HTTP_ADDR like the server does, and asks
// over https when the server speaks TLS (CHATFLOW_TLS_CERT_FILE): its own
// listener on loopback, so the certificate (issued for the public name) is
// not checked.
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { setValue } from './config/set-value';

const addr = setValue(process.env, 'CHATFLOW_HTTP_ADDR') ?? '127.0.0.1:8080';
const port = addr.slice(addr.lastIndexOf(':') + 1);
const tls = setValue(process.env, 'CHATFLOW_TLS_CERT_FILE') !== undefined;

const unhealthy = (why: string) => {
  process.stderr.write(`unhealthy: ${why}\n`);
  process.exit(1);
};
const request = tls
  ? httpsGet(`https://127.0.0.1:${port}/healthz`, { rejectUnauthorized: false, timeout: 2500 }, answered)
  : httpGet(`http://127.0.0.1:${port}/healthz`, { timeout: 2500 }, answered);
request.on('timeout', () => request.destroy(new Error('no answer within 2500 ms')));
request.on('error', (err) => unhealthy(err.message));

function answered(res: import('node:http').IncomingMessage): void {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (d: string) => (body += d));
  res.on('end', () => {
    if (res.statusCode === 200) process.exit(0);
    unhealthy(`${res.statusCode} ${body}`);
  });
}
