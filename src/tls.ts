import { X509Certificate } from 'node:crypto';
import type { Stats } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { ServerCredentials } from '@grpc/grpc-js';
import { ChatFlowError } from './domain/errors';

/** This server's certificate (chain) and key (CHATFLOW_TLS_CERT_FILE, CHATFLOW_TLS_KEY_FILE), read and checked at start and again when the files change (TlsFiles). */
export interface ServerTls {
  cert: Buffer;
  key: Buffer;
  /** The leaf certificate's subject and last day, for the start-up log. */
  subject: string;
  notAfter: Date;
  /** Signed by itself: clients must be given it to trust it (the CLI's --ca). */
  selfSigned: boolean;
  /** The two files as they were read (device, inode, size, mtime): TlsFiles reads them again once this changes. */
  stamp: string;
}

/** A certificate chain of a dozen certificates is ~20 KB: anything this large is some other file. */
const MAX_PEM_BYTES = 1024 * 1024;

/** A TLS setting that cannot work, in words an operator can act on (the process refuses to start). */
export class TlsConfigError extends ChatFlowError {
  constructor(message: string) {
    super('FAILED_PRECONDITION', message);
  }
}

/**
 * Reads the PEM files and checks that they are a certificate and its key
 * before any listener opens: a typo in a path, a DER file, or a key of
 * another certificate is told at start, not as a failed handshake later.
 */
export async function loadServerTls(files: { certFile: string; keyFile: string }): Promise<ServerTls> {
  const read = async (name: string, file: string) => {
    try {
      // Looked at before it is read: a FIFO would block the read for good, and a file of gigabytes fill the heap.
      const what = await stat(file);
      if (!what.isFile()) throw new TlsConfigError(`${name}=${file}: not a file`);
      if (what.size > MAX_PEM_BYTES) throw new TlsConfigError(`${name}=${file}: ${what.size} bytes, too large for a certificate or key (at most ${MAX_PEM_BYTES})`);
      return { bytes: await readFile(file), stamp: stampOf(what) };
    } catch (err) {
      if (err instanceof TlsConfigError) throw err;
      throw new TlsConfigError(`${name}=${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  };
  const certRead = await read('CHATFLOW_TLS_CERT_FILE', files.certFile);
  const keyRead = await read('CHATFLOW_TLS_KEY_FILE', files.keyFile);
  const [cert, key] = [certRead.bytes, keyRead.bytes];
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch {
    throw new TlsConfigError(`CHATFLOW_TLS_CERT_FILE=${files.certFile}: not a PEM certificate (it should begin with -----BEGIN CERTIFICATE-----)`);
  }
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    const why = /mismatch/i.test((err as Error).message) ? 'not the key of the certificate in CHATFLOW_TLS_CERT_FILE' : `not a PEM private key (${(err as Error).message})`;
    throw new TlsConfigError(`CHATFLOW_TLS_KEY_FILE=${files.keyFile}: ${why}`);
  }
  return { cert, key, subject: leaf.subject.replace(/\n/g, ', '), notAfter: new Date(leaf.validTo), selfSigned: leaf.checkIssued(leaf), stamp: `${certRead.stamp}|${keyRead.stamp}` };
}

/** What TlsFiles is told of: each certificate it starts serving, each renewal it refuses (the one served stays), and a listener that could not take a renewal the others took. */
export interface TlsEvents {
  renewed(tls: ServerTls, previous: ServerTls): void;
  refused(error: TlsConfigError): void;
  listenerFailed(error: Error): void;
}

/**
 * The certificate and key the listeners serve, read again when their files
 * change: a renewed certificate (certbot, cert-manager's symlink swap, a copy
 * over the old files) is served to new connections within `everyMs`, without
 * a restart; connections already open keep the one they shook hands with.
 * A renewal is checked as at start (loadServerTls): a pair caught half
 * written (the new certificate beside the old key), a file gone or not PEM,
 * or a certificate expired while the one served is not, is refused, said
 * once, and the certificate served stays until the files change again.
 * Files are compared by their stat (inode, size, mtime), so a check of
 * unchanged files reads nothing.
 */
export class TlsFiles {
  private served: ServerTls;
  private stamp: string;
  private readonly listeners = new Set<(tls: ServerTls) => void>();
  private timer?: NodeJS.Timeout;
  private checking?: Promise<void>;

  private constructor(
    private readonly files: { certFile: string; keyFile: string },
    first: ServerTls,
    stamp: string,
    private readonly events: TlsEvents,
    private readonly now: () => number,
  ) {
    this.served = first;
    this.stamp = stamp;
  }

  /** Reads and checks the files (TlsConfigError if they cannot serve), then checks them again every `everyMs` (0: never). */
  static async open(files: { certFile: string; keyFile: string }, everyMs: number, events: TlsEvents, now: () => number = Date.now): Promise<TlsFiles> {
    const first = await loadServerTls(files);
    const source = new TlsFiles(files, first, first.stamp, events, now);
    if (everyMs > 0) source.timer = setInterval(() => void source.check(), everyMs).unref();
    return source;
  }

  /** The certificate and key served to the next connection. */
  current(): ServerTls {
    return this.served;
  }

  /** `listener` hears each certificate served from now on; the returned function stops that. */
  onRenewed(listener: (tls: ServerTls) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Reads the files again if they changed since they were last read (one check at a time). */
  check(): Promise<void> {
    this.checking ??= this.checkNow().finally(() => (this.checking = undefined));
    return this.checking;
  }

  close(): void {
    clearInterval(this.timer);
  }

  private async checkNow(): Promise<void> {
    const { certFile, keyFile } = this.files;
    const stamp = await Promise.all([stat(certFile), stat(keyFile)]).then(
      (both) => both.map(stampOf).join('|'),
      (err: NodeJS.ErrnoException) => `unreadable: ${err.code ?? err.message}`,
    );
    if (stamp === this.stamp) return;
    this.stamp = stamp; // refused or not, these files are not read again until they change
    let next: ServerTls;
    try {
      next = await loadServerTls(this.files);
    } catch (err) {
      this.events.refused(err instanceof TlsConfigError ? err : new TlsConfigError(String(err)));
      return;
    }
    this.stamp = next.stamp; // as read: a change between the two looks is read on the next check
    if (next.cert.equals(this.served.cert) && next.key.equals(this.served.key)) return;
    const now = this.now();
    if (next.notAfter.getTime() < now && this.served.notAfter.getTime() >= now) {
      // An old certificate copied in by mistake: clients would refuse it, and the one served still works.
      this.events.refused(new TlsConfigError(`CHATFLOW_TLS_CERT_FILE=${this.files.certFile}: this certificate expired on ${next.notAfter.toISOString()}; the one served is valid until ${this.served.notAfter.toISOString()}`));
      return;
    }
    const previous = this.served;
    this.served = next;
    this.events.renewed(next, previous);
    for (const listener of this.listeners) {
      try {
        listener(next);
      } catch (err) {
        // Checked like the first pair, so not expected; said, and the timer's checks go on (a throw here would end the process).
        this.events.listenerFailed(err instanceof Error ? err : new Error(String(err)));
      }
    }
  }
}

/** What changes when a file is replaced or written: its inode (a rename, a symlink swapped), size and mtime. */
function stampOf(s: Stats): string {
  return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}`;
}

/**
 * gRPC server credentials that follow a TlsFiles: grpc-js gives each renewal
 * to its listeners (`setSecureContext`), so new connections get the renewed
 * certificate. Built on ServerCredentials' own hook for credentials whose
 * certificates change; `createSsl`'s are fixed at bind.
 */
export class RenewingServerCredentials extends ServerCredentials {
  private readonly unsubscribe: () => void;

  /** `handshakeTimeoutMs`: a TLS handshake not done by then is dropped (Node's default: 120 s). */
  constructor(source: TlsFiles, handshakeTimeoutMs?: number) {
    const { cert, key } = source.current();
    super({ requestCert: false, ...(handshakeTimeoutMs ? { handshakeTimeout: handshakeTimeoutMs } : {}) }, { cert, key });
    this.unsubscribe = source.onRenewed((tls) => this.updateSecureContextOptions({ cert: tls.cert, key: tls.key }));
  }

  /** Stops following the files (the server is shut down). */
  close(): void {
    this.unsubscribe();
  }

  _equals(other: ServerCredentials): boolean {
    return other === this;
  }
}
