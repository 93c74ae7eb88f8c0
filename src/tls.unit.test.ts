import { X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TlsConfigError, TlsFiles, type ServerTls } from './tls';

// The test-only certificates of test/fixtures/tls: server.crt (valid until 2126-11-04) and renewed.crt (a new key, valid later).
const FIXTURES = join(__dirname, '..', 'test', 'fixtures', 'tls');
const fixture = (name: string) => join(FIXTURES, name);
const notAfter = (name: string) => new Date(new X509Certificate(readFileSync(fixture(name))).validTo).getTime();

describe('TlsFiles: the certificate served, followed as its files change', () => {
  let dir: string;
  let files: { certFile: string; keyFile: string };
  let told: string[];
  const events = {
    renewed: (next: ServerTls, previous: ServerTls) => void told.push(`renewed ${previous.notAfter.toISOString()} → ${next.notAfter.toISOString()}`),
    refused: (err: TlsConfigError) => void told.push(`refused ${err.message}`),
    listenerFailed: (err: Error) => void told.push(`listener failed ${err.message}`),
  };
  const put = (cert: string, key: string) => Promise.all([copyFile(fixture(cert), files.certFile), copyFile(fixture(key), files.keyFile)]);

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'chatflow-tlsfiles-'));
    files = { certFile: join(dir, 'tls.crt'), keyFile: join(dir, 'tls.key') };
    told = [];
    await put('server.crt', 'server.key');
  });
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  test('unchanged files tell nothing; a whole renewal is served and told to each listener once', async () => {
    const tls = await TlsFiles.open(files, 0, events);
    const heard: string[] = [];
    tls.onRenewed((t) => heard.push(t.notAfter.toISOString()));
    await tls.check();
    expect(told).toEqual([]);
    await put('renewed.crt', 'renewed.key');
    await tls.check();
    await tls.check();
    expect(tls.current().cert).toEqual(readFileSync(fixture('renewed.crt')));
    expect(heard).toEqual([new Date(notAfter('renewed.crt')).toISOString()]);
    expect(told).toEqual([`renewed ${new Date(notAfter('server.crt')).toISOString()} → ${new Date(notAfter('renewed.crt')).toISOString()}`]);
  });

  test('half a renewal, a file that is no certificate, a file gone: refused once each, the pair served stays', async () => {
    const tls = await TlsFiles.open(files, 0, events);
    const heard: unknown[] = [];
    tls.onRenewed((t) => heard.push(t));
    await copyFile(fixture('renewed.crt'), files.certFile); // the old key still beside it
    await tls.check();
    await tls.check(); // the same files: not said twice
    await writeFile(files.certFile, 'not a certificate\n');
    await tls.check();
    await rm(files.keyFile);
    await tls.check();
    expect(told).toEqual([
      expect.stringMatching(/^refused CHATFLOW_TLS_KEY_FILE=.*tls\.key: not the key of the certificate in CHATFLOW_TLS_CERT_FILE$/),
      expect.stringMatching(/^refused CHATFLOW_TLS_CERT_FILE=.*tls\.crt: not a PEM certificate/),
      expect.stringMatching(/^refused CHATFLOW_TLS_CERT_FILE=.*tls\.crt: cannot read it|^refused CHATFLOW_TLS_KEY_FILE=.*tls\.key: cannot read it \(ENOENT\)$/),
    ]);
    expect(heard).toEqual([]);
    expect(tls.current().cert).toEqual(readFileSync(fixture('server.crt')));
    // Then the whole renewal: served.
    await put('renewed.crt', 'renewed.key');
    await tls.check();
    expect(heard).toHaveLength(1);
  });

  test('a FIFO or a folder where a file should be, or a file far too large: refused without reading it', async () => {
    const tls = await TlsFiles.open(files, 0, events);
    await rm(files.certFile);
    execFileSync('mkfifo', [files.certFile]); // a read of it would wait for a writer for good
    await tls.check();
    await rm(files.certFile);
    await mkdir(files.certFile);
    await tls.check();
    await rm(files.certFile, { recursive: true });
    await writeFile(files.certFile, Buffer.alloc(2 * 1024 * 1024, 'A'));
    await tls.check();
    expect(told).toEqual([
      expect.stringMatching(/^refused CHATFLOW_TLS_CERT_FILE=.*tls\.crt: not a file$/),
      expect.stringMatching(/^refused CHATFLOW_TLS_CERT_FILE=.*tls\.crt: not a file$/),
      expect.stringMatching(/^refused CHATFLOW_TLS_CERT_FILE=.*tls\.crt: 2097152 bytes, too large for a certificate or key \(at most 1048576\)$/),
    ]);
    expect(tls.current().cert).toEqual(readFileSync(fixture('server.crt')));
  });

  test('a certificate that has expired is refused while the one served has not; served when both have', async () => {
    // Between the two certificates' last days: server.crt has expired, renewed.crt has not.
    let now = notAfter('server.crt') + 1000;
    await put('renewed.crt', 'renewed.key');
    const tls = await TlsFiles.open(files, 0, events, () => now);
    await put('server.crt', 'server.key'); // the old pair copied back by mistake
    await tls.check();
    expect(told).toEqual([expect.stringMatching(/^refused CHATFLOW_TLS_CERT_FILE=.*tls\.crt: this certificate expired on 2126-.*; the one served is valid until 2126-/)]);
    expect(tls.current().cert).toEqual(readFileSync(fixture('renewed.crt')));
    // Once the one served has expired too, nothing better is at hand: the files are served as given.
    now = notAfter('renewed.crt') + 1000;
    await put('renewed.crt', 'renewed.key');
    await put('server.crt', 'server.key');
    await tls.check();
    expect(tls.current().cert).toEqual(readFileSync(fixture('server.crt')));
  });

  test('a listener that throws is told as such, not as a refusal; the renewal is served to the others and the checks go on', async () => {
    const tls = await TlsFiles.open(files, 0, events);
    const heard: string[] = [];
    tls.onRenewed(() => {
      throw new Error('no such context');
    });
    tls.onRenewed((t) => heard.push(t.notAfter.toISOString()));
    await put('renewed.crt', 'renewed.key');
    await expect(tls.check()).resolves.toBeUndefined();
    expect(heard).toHaveLength(1);
    expect(told).toEqual([expect.stringMatching(/^renewed /), 'listener failed no such context']);
    expect(tls.current().notAfter.getTime()).toBe(notAfter('renewed.crt'));
  });

  test('checked every everyMs until closed', async () => {
    const tls = await TlsFiles.open(files, 20, events);
    await put('renewed.crt', 'renewed.key');
    const until = Date.now() + 5000;
    while (tls.current().notAfter.getTime() !== notAfter('renewed.crt') && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(tls.current().notAfter.getTime()).toBe(notAfter('renewed.crt'));
    tls.close();
    await put('server.crt', 'server.key');
    await new Promise((r) => setTimeout(r, 100));
    expect(tls.current().notAfter.getTime()).toBe(notAfter('renewed.crt'));
  });
});
