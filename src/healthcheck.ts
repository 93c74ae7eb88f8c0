// The image's HEALTHCHECK: `node dist/src/healthcheck.js` exits 0 when this
// container's /healthz answers 200 (serving), 1 otherwise (starting, draining,
// down). Reads the port from CHATFLOW_HTTP_ADDR like the server does.
const addr = process.env.CHATFLOW_HTTP_ADDR ?? '127.0.0.1:8080';
const port = addr.slice(addr.lastIndexOf(':') + 1);

fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2500) }).then(
  async (res) => {
    if (!res.ok) process.stderr.write(`unhealthy: ${res.status} ${await res.text()}\n`);
    process.exit(res.ok ? 0 : 1);
  },
  (err: Error) => {
    process.stderr.write(`unhealthy: ${err.message}\n`);
    process.exit(1);
  },
);
