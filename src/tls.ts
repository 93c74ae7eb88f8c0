import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { ChatFlowError } from './domain/errors';

/** This server's certificate (chain) and key, read and checked once at start (CHATFLOW_TLS_CERT_FILE, CHATFLOW_TLS_KEY_FILE). */
export interface ServerTls {
  cert: Buffer;
  key: Buffer;
  /** The leaf certificate's subject and last day, for the start-up log. */
  subject: string;
  notAfter: Date;
  /** Signed by itself: clients must be given it to trust it (the CLI's --ca). */
  selfSigned: boolean;
}

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
      return await readFile(file);
    } catch (err) {
      throw new TlsConfigError(`${name}=${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  };
  const cert = await read('CHATFLOW_TLS_CERT_FILE', files.certFile);
  const key = await read('CHATFLOW_TLS_KEY_FILE', files.keyFile);
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
  return { cert, key, subject: leaf.subject.replace(/\n/g, ', '), notAfter: new Date(leaf.validTo), selfSigned: leaf.checkIssued(leaf) };
}
