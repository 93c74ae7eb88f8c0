import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { devTokenRoute } from './dev-token';

/** POST /dev/token as a careless or hostile page would call it: every refusal says what was wrong. */
describe('development tokens (POST /dev/token)', () => {
  let server: http.Server;
  let url: string;
  beforeAll(async () => {
    const route = devTokenRoute({ enabled: true, auth: { mint: async (id: string) => `token-of-${id}` }, logger: pino({ level: 'silent' }), now: () => 0 });
    server = http.createServer((req, res) => void Promise.resolve(route(req, res)).then((done) => done || res.writeHead(404).end()));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/dev/token`;
  });
  afterAll(() => new Promise((r) => server.close(r)));

  const post = async (body: string, type = 'application/json') => {
    const res = await fetch(url, { method: 'POST', headers: { 'content-type': type }, body });
    return { status: res.status, body: (await res.json()) as Record<string, string> };
  };

  it('given a client id, then a token for it', async () => {
    expect(await post('{"clientId":"alice"}')).toEqual({ status: 200, body: { token: 'token-of-alice', clientId: 'alice', expiresAt: '1970-01-01T12:00:00.000Z' } });
  });

  it.each([
    ['no client id', '{}', 'clientId is required'],
    ['a client id that is an object', '{"clientId":{"a":1}}', 'clientId must be a string, not object'],
    ['a client id that is a number', '{"clientId":42}', 'clientId must be a string, not number'],
    ['a body that is JSON but no object', 'null', 'body must be JSON {"clientId": "..."} (at most 1 KiB)'],
    ['a body that is no JSON', 'clientId=alice', 'body must be JSON {"clientId": "..."} (at most 1 KiB)'],
  ])('given %s, then 400 saying so', async (_what, body, error) => {
    expect(await post(body)).toEqual({ status: 400, body: { error } });
  });
});
