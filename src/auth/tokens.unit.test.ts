import { mkdir, mkdtemp, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { enospc, fileHandlePrototype } from '../../test/disk-writes';
import { TokenAuthority, loadOrCreateSecret } from './tokens';

const secret = new TextEncoder().encode('s'.repeat(40));
const md = (m: Record<string, string>) => (k: string) => m[k];

describe('bearer tokens', () => {
  const auth = new TokenAuthority(secret, false);
  it('given a minted token, when identifying, then the client id is its subject', async () => {
    const token = await auth.mint('alice');
    await expect(auth.identify(md({ authorization: `Bearer ${token}` }))).resolves.toBe('alice');
  });
  it('given no token, then UNAUTHENTICATED with a hint', async () => {
    await expect(auth.identify(md({}))).rejects.toMatchObject({ kind: 'UNAUTHENTICATED', message: expect.stringMatching(/missing authorization/) });
  });
  it('given an expired token, then UNAUTHENTICATED "token expired"', async () => {
    const token = await auth.mint('alice', 10, Date.now() - 3600_000);
    await expect(auth.identify(md({ authorization: `Bearer ${token}` }))).rejects.toMatchObject({ kind: 'UNAUTHENTICATED', message: /expired/ });
  });
  it('given a token signed with another secret, then UNAUTHENTICATED', async () => {
    const other = await new TokenAuthority(new TextEncoder().encode('x'.repeat(40)), false).mint('alice');
    await expect(auth.identify(md({ authorization: `Bearer ${other}` }))).rejects.toMatchObject({ kind: 'UNAUTHENTICATED' });
  });
  it('given a token with another algorithm, then UNAUTHENTICATED', async () => {
    const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"alice"}').toString('base64url')}.`;
    await expect(auth.identify(md({ authorization: `Bearer ${none}` }))).rejects.toMatchObject({ kind: 'UNAUTHENTICATED' });
  });
  it('given a token without subject, then UNAUTHENTICATED', async () => {
    const t = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(secret);
    await expect(auth.identify(md({ authorization: `Bearer ${t}` }))).rejects.toMatchObject({ kind: 'UNAUTHENTICATED' });
  });
  it.each([
    ['an array', ['alice'], /must be a string client id, not an array/],
    ['a number', 12345, /not number/],
    ['a boolean', true, /not boolean/],
  ])('given a token whose sub is %s, then UNAUTHENTICATED (never an identity)', async (_, sub, message) => {
    const t = await new SignJWT({ sub } as never).setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(secret);
    await expect(auth.identify(md({ authorization: `Bearer ${t}` }))).rejects.toMatchObject({ kind: 'UNAUTHENTICATED', message });
  });
  it('given a token without exp, then UNAUTHENTICATED (a token that never expires is refused)', async () => {
    const t = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').sign(secret);
    await expect(auth.identify(md({ authorization: `Bearer ${t}` }))).rejects.toMatchObject({ kind: 'UNAUTHENTICATED', message: /exp/ });
  });
  it('given x-client-id while the insecure switch is off, then it is ignored', async () => {
    await expect(auth.identify(md({ 'x-client-id': 'alice' }))).rejects.toMatchObject({ kind: 'UNAUTHENTICATED' });
  });
  it('given x-client-id while the insecure switch is on, then it is the identity', async () => {
    const insecure = new TokenAuthority(secret, true);
    await expect(insecure.identify(md({ 'x-client-id': 'load-1' }))).resolves.toBe('load-1');
    await expect(insecure.identify(md({ 'x-client-id': 'bad id!' }))).rejects.toMatchObject({ kind: 'UNAUTHENTICATED' });
  });
  it('given a token identified before, when it has expired since, then UNAUTHENTICATED "token expired" (a remembered token still expires)', async () => {
    let now = Date.UTC(2026, 10, 27, 12, 0, 0);
    const clocked = new TokenAuthority(secret, false, () => now);
    const token = await clocked.mint('alice', 10, now);
    const bearer = md({ authorization: `Bearer ${token}` });
    await expect(clocked.identify(bearer)).resolves.toBe('alice');
    now += 9_999;
    await expect(clocked.identify(bearer)).resolves.toBe('alice');
    now += 1;
    await expect(clocked.identify(bearer)).rejects.toMatchObject({ kind: 'UNAUTHENTICATED', message: /expired/ });
  });
  it('given a token identified before, when the same claims come with another signature, then UNAUTHENTICATED', async () => {
    const token = await auth.mint('mallory');
    await expect(auth.identify(md({ authorization: `Bearer ${token}` }))).resolves.toBe('mallory');
    const [header, payload] = token.split('.');
    const forged = `${header}.${payload}.${Buffer.alloc(32, 7).toString('base64url')}`;
    await expect(auth.identify(md({ authorization: `Bearer ${forged}` }))).rejects.toMatchObject({ kind: 'UNAUTHENTICATED', message: /bad signature/ });
  });
  it('refuses to mint for an invalid client id', async () => {
    await expect(auth.mint('')).rejects.toMatchObject({ kind: 'INVALID_ARGUMENT' });
  });
});

describe('secret', () => {
  it('is generated once into the data dir, private, and reused', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cf-secret-'));
    const a = await loadOrCreateSecret(dir);
    const b = await loadOrCreateSecret(dir);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect(a.length).toBeGreaterThanOrEqual(32);
    expect((await stat(join(dir, 'secret'))).mode & 0o777).toBe(0o600);
    expect((await readFile(join(dir, 'secret'), 'utf8')).trim().length).toBeGreaterThanOrEqual(32);
  });
  it('given a secret file left empty (its creation cut short by a full disk or a kill), when loaded, then a new secret is made: never an empty key, with which anyone could sign a token', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cf-secret-'));
    await writeFile(join(dir, 'secret'), '', { mode: 0o600 });
    const s = await loadOrCreateSecret(dir);
    expect(s.length).toBeGreaterThanOrEqual(32);
    expect((await readFile(join(dir, 'secret'), 'utf8')).trim()).toBe(Buffer.from(s).toString());
  });
  it('given a secret file shorter than 32 characters (written by hand), when loaded, then it is refused in words, as CHATFLOW_AUTH_SECRET is', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cf-secret-'));
    await writeFile(join(dir, 'secret'), 'hunter2\n');
    await expect(loadOrCreateSecret(dir)).rejects.toMatchObject({ kind: 'FAILED_PRECONDITION', message: expect.stringMatching(/secret in .*secret is 7 characters long; it must be at least 32/) });
  });
  it('given a folder where the secret file should be, when loaded, then it says so in words', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cf-secret-'));
    await mkdir(join(dir, 'secret'));
    await expect(loadOrCreateSecret(dir)).rejects.toMatchObject({ kind: 'FAILED_PRECONDITION', message: `cannot read the secret ${join(dir, 'secret')}: it is a folder, not a file (remove it and ChatFlow makes one)` });
  });
  it('given a full disk, when the secret is made, then it fails in words and leaves no secret file behind; once there is room, one is made', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cf-secret-'));
    const proto = await fileHandlePrototype();
    const full = jest.spyOn(proto, 'writeFile').mockRejectedValue(enospc());
    try {
      await expect(loadOrCreateSecret(dir)).rejects.toMatchObject({ kind: 'FAILED_PRECONDITION', message: expect.stringMatching(/cannot write the server.s secret into .*secret: no space left on device/) });
    } finally {
      full.mockRestore();
    }
    expect(await readdir(dir)).toEqual([]);
    expect((await loadOrCreateSecret(dir)).length).toBeGreaterThanOrEqual(32);
  });
  it('given drafts left by a process killed while it made the secret, when loaded, then the old ones are removed (a draft lives milliseconds) and a young one, maybe another process\'s, stays', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cf-secret-'));
    await loadOrCreateSecret(dir);
    const old = join(dir, '.secret.4242.0badf00d');
    await writeFile(old, 'x'.repeat(43) + '\n');
    await utimes(old, new Date(Date.now() - 120_000), new Date(Date.now() - 120_000));
    await writeFile(join(dir, '.secret.4243.12345678'), '');
    await loadOrCreateSecret(dir);
    expect((await readdir(dir)).sort()).toEqual(['.secret.4243.12345678', 'secret']);
  });
  it('given two processes making the secret at once, then they agree on one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cf-secret-'));
    const [a, b] = await Promise.all([loadOrCreateSecret(dir), loadOrCreateSecret(dir)]);
    expect(Buffer.from(a).toString()).toBe(Buffer.from(b).toString());
    expect(await readdir(dir)).toEqual(['secret']);
  });
  it('prefers the configured secret', async () => {
    const s = await loadOrCreateSecret('/nonexistent', 'c'.repeat(32));
    expect(Buffer.from(s).toString()).toBe('c'.repeat(32));
  });
});
