/**
 * gateway/envoy.yaml (what the local stack runs) and gateway/envoy.compose.yaml
 * (docker-compose): real Envoy validates both, and they say what a browser
 * chat needs. The browser flow through a running Envoy is in
 * browser.e2e.test.ts.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeWhen } from './engines';
import { ALLOWED_HEADERS } from '../src/http/grpc-web';
import { EXPOSED_HEADERS } from '../src/http/cors';
import { ENVOY_COMPOSE_CONFIG, ENVOY_CONFIG, ENVOY_MISSING, envoyBinary, envoyConfigFor, replaceEndpoints, validateEnvoyConfig } from './web-helpers';

jest.setTimeout(30_000);

const local = readFileSync(ENVOY_CONFIG, 'utf8');
const withoutComments = (yaml: string) => yaml.split('\n').filter((l) => !/^\s*#/.test(l)).join('\n');

/** The documented differences of the compose file: listen on 0.0.0.0, gateways by DNS name. */
function composeFrom(text: string): string {
  const rewritten = withoutComments(text)
    .replace('socket_address: { address: 127.0.0.1, port_value: 8081 }', 'socket_address: { address: 0.0.0.0, port_value: 8081 }')
    .replace(/\n(\s*)type: STATIC\n/, '\n$1type: STRICT_DNS\n$1dns_lookup_family: V4_ONLY\n');
  return replaceEndpoints(rewritten, [{ host: 'gateway', port: 50051 }]);
}

describe('Envoy configuration (text)', () => {
  const listOf = (key: string) => new RegExp(`${key}: "([^"]+)"`).exec(local)?.[1].split(',').map((s) => s.trim()) ?? [];
  const seconds = (key: string) => Number(new RegExp(`${key}: (\\d+)s`).exec(local)?.[1]);

  it('lets a browser send the connection metadata and read the refusal details', () => {
    // The same CORS lists as the embedded endpoint's (every header it forwards), so a page behaves the same behind Envoy.
    expect(listOf('allow_headers').sort()).toEqual([...ALLOWED_HEADERS].sort());
    expect(listOf('expose_headers').sort()).toEqual([...EXPOSED_HEADERS].sort());
    expect(local).toContain('envoy.filters.http.grpc_web');
    expect(local).toContain('envoy.filters.http.cors');
  });

  it('never cuts a chat stream on a timer: no route timeout, idle timeout above the keepalive', () => {
    expect(local).toMatch(/^\s*timeout: 0s$/m);
    const keepalive = Number(/connection_keepalive:\s*\n\s*interval: (\d+)s/.exec(local)?.[1]);
    expect(keepalive).toBeGreaterThan(0);
    expect(seconds('stream_idle_timeout')).toBeGreaterThan(keepalive);
    expect(seconds('stream_idle_timeout')).toBeGreaterThanOrEqual(600);
  });

  it('listens on 127.0.0.1:8081 (admin 9901) in front of the local gateways 50051 and 50052', () => {
    expect(local).toContain('socket_address: { address: 127.0.0.1, port_value: 8081 }');
    expect(local).toContain('socket_address: { address: 127.0.0.1, port_value: 9901 }');
    expect(local).toMatch(/address: 127\.0\.0\.1, port_value: 50051/);
    expect(local).toMatch(/address: 127\.0\.0\.1, port_value: 50052/);
    expect(local).toContain('name: chatflow_gateways');
  });

  it('has a compose twin that differs only where it listens and how it finds the gateways', () => {
    expect(withoutComments(readFileSync(ENVOY_COMPOSE_CONFIG, 'utf8'))).toBe(composeFrom(local));
  });
});

describeWhen(envoyBinary() !== undefined, 'Envoy configuration (validated by Envoy)', ENVOY_MISSING, () => {
  const bin = envoyBinary()!;

  it.each([['gateway/envoy.yaml', ENVOY_CONFIG], ['gateway/envoy.compose.yaml', ENVOY_COMPOSE_CONFIG]])('%s validates', async (_name, file) => {
    const { code, output } = await validateEnvoyConfig(bin, file);
    expect({ code, output: output.split('\n').filter((l) => /error|warn|critical/i.test(l)) }).toEqual({ code: 0, output: [] });
  });

  it('validates the test variant and refuses a broken config (the check checks)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'chatflow-envoy-validate-'));
    try {
      const good = join(dir, 'good.yaml');
      await writeFile(good, envoyConfigFor({ listenPort: 18081, adminPort: 19901, upstreams: [{ host: '127.0.0.1', port: 15051 }] }));
      expect((await validateEnvoyConfig(bin, good)).code).toBe(0);
      const bad = join(dir, 'bad.yaml');
      await writeFile(bad, local.replace('stream_idle_timeout: 3600s', 'stream_idle_timeout: soon'));
      expect((await validateEnvoyConfig(bin, bad)).code).not.toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
