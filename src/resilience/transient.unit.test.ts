import { createServer, connect } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { S3Client, GetObjectCommand, S3ServiceException } from '@aws-sdk/client-s3';
import { Kafka, KafkaJSProtocolError, KafkaJSNonRetriableError, KafkaJSNumberOfRetriesExceeded, KafkaJSConnectionError, logLevel } from 'kafkajs';
import { MongoBulkWriteError, MongoClient, MongoServerError, MongoNetworkError, MongoNetworkTimeoutError, MongoParseError } from 'mongodb';
import { isTransient } from './transient';
import { ChatFlowError, StorageUnavailableError } from '../domain/errors';

/** A port on 127.0.0.1 where nothing listens (refused at once). */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

async function caught(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('isTransient: real errors of the engines', () => {
  let port: number;
  beforeAll(async () => (port = await closedPort()));

  it('node: connection refused', async () => {
    const err = await caught(new Promise((res, rej) => connect(port, '127.0.0.1').once('error', rej).once('connect', res)));
    expect((err as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
    expect(isTransient(err)).toBe(true);
  });

  it('kafkajs: a broker that refuses connections', async () => {
    const kafka = new Kafka({ brokers: [`127.0.0.1:${port}`], logLevel: logLevel.NOTHING, retry: { retries: 1, initialRetryTime: 10 } });
    const admin = kafka.admin();
    const err = await caught(admin.connect());
    expect((err as Error).name).toMatch(/^KafkaJS/);
    expect(isTransient(err)).toBe(true);
  });

  it('mongodb: no server to select', async () => {
    const client = new MongoClient(`mongodb://127.0.0.1:${port}/x`, { serverSelectionTimeoutMS: 200, connectTimeoutMS: 200 });
    const err = await caught(client.db('x').collection('y').findOne({}));
    await client.close();
    expect((err as Error).name).toBe('MongoServerSelectionError');
    expect(isTransient(err)).toBe(true);
  });

  describe('aws-sdk S3', () => {
    let server: ReturnType<typeof createHttpServer>;
    let httpPort: number;
    let answer: { status: number; code: string };
    beforeAll(async () => {
      server = createHttpServer((req, res) => {
        res.writeHead(answer.status, { 'content-type': 'application/xml' });
        res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${answer.code}</Code><Message>m</Message></Error>`);
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      httpPort = (server.address() as { port: number }).port;
    });
    afterAll(() => new Promise((r) => server.close(r)));
    const s3 = (p: number) => new S3Client({ endpoint: `http://127.0.0.1:${p}`, region: 'us-east-1', forcePathStyle: true, maxAttempts: 1, credentials: { accessKeyId: 'a', secretAccessKey: 'b' } });
    const get = (p: number) => s3(p).send(new GetObjectCommand({ Bucket: 'b', Key: 'k' }));

    it('refused socket', async () => {
      const err = await caught(get(port));
      expect(isTransient(err)).toBe(true);
    });
    it('503 SlowDown / 500 InternalError (a MinIO that is restarting)', async () => {
      answer = { status: 503, code: 'SlowDown' };
      expect(isTransient(await caught(get(httpPort)))).toBe(true);
      answer = { status: 500, code: 'InternalError' };
      expect(isTransient(await caught(get(httpPort)))).toBe(true);
    });
    it('403 AccessDenied and 404 NoSuchKey are not transient', async () => {
      answer = { status: 403, code: 'AccessDenied' };
      const denied = await caught(get(httpPort));
      expect(denied).toBeInstanceOf(S3ServiceException);
      expect(isTransient(denied)).toBe(false);
      answer = { status: 404, code: 'NoSuchKey' };
      expect(isTransient(await caught(get(httpPort)))).toBe(false);
    });
  });
});

describe('isTransient: error shapes', () => {
  it('kafkajs: retriable protocol errors (leader changes) yes, authorization no', () => {
    expect(isTransient(new KafkaJSProtocolError({ message: 'There is no leader for this topic-partition', type: 'LEADER_NOT_AVAILABLE', code: 5, retriable: true } as never))).toBe(true);
    expect(isTransient(new KafkaJSProtocolError({ message: 'not authorized', type: 'TOPIC_AUTHORIZATION_FAILED', code: 29, retriable: false } as never))).toBe(false);
  });
  it('kafkajs: retries exhausted on a retriable error is still transient; a non-retriable error alone is not', () => {
    const cause = new KafkaJSConnectionError('Connection error: connect ECONNREFUSED', { code: 'ECONNREFUSED' } as never);
    expect(isTransient(new KafkaJSNumberOfRetriesExceeded(cause, { retryCount: 5, retryTime: 1000 }))).toBe(true);
    expect(isTransient(new KafkaJSNonRetriableError('Invalid message without value'))).toBe(false);
  });
  it('mongodb: network errors, stepped-down primaries and retryable labels yes; a duplicate key or a bad URI no', () => {
    expect(isTransient(new MongoNetworkError('connection 4 to 127.0.0.1:27017 closed'))).toBe(true);
    expect(isTransient(new MongoServerError({ code: 189, errmsg: 'PrimarySteppedDown' }))).toBe(true);
    expect(isTransient(new MongoServerError({ code: 1, errmsg: 'x', errorLabels: ['RetryableWriteError'] }))).toBe(true);
    expect(isTransient(new MongoServerError({ code: 11000, errmsg: 'E11000 duplicate key error' }))).toBe(false);
    expect(isTransient(new MongoParseError('Invalid scheme'))).toBe(false);
  });
  it('mongodb: a bulk write cut by a socket timeout (the driver wraps it) yes; one refused for a duplicate key no', () => {
    const result = {} as ConstructorParameters<typeof MongoBulkWriteError>[1];
    expect(isTransient(new MongoBulkWriteError(new MongoNetworkTimeoutError('connection 3 to 127.0.0.1:27017 timed out') as never, result))).toBe(true);
    expect(isTransient(new MongoBulkWriteError({ message: 'E11000 duplicate key error', code: 11000, writeErrors: [] } as never, result))).toBe(false);
  });
  it('ours: a full disk and anything already UNAVAILABLE yes, a client error no', () => {
    expect(isTransient(new StorageUnavailableError('disk full', 1000))).toBe(true);
    expect(isTransient(new ChatFlowError('UNAVAILABLE', 'x'))).toBe(true);
    expect(isTransient(new ChatFlowError('INVALID_ARGUMENT', 'x'))).toBe(false);
  });
  it('timeouts yes; aborts, bugs and non-errors no', () => {
    expect(isTransient(new DOMException('timed out', 'TimeoutError'))).toBe(true);
    expect(isTransient(new DOMException('aborted', 'AbortError'))).toBe(false);
    expect(isTransient(new TypeError("Cannot read properties of undefined (reading 'x')"))).toBe(false);
    expect(isTransient(undefined)).toBe(false);
    expect(isTransient('ECONNREFUSED')).toBe(false);
  });
  it('follows causes (wrapped errors, AggregateError of a dual-stack connect)', () => {
    expect(isTransient(new Error('upload failed', { cause: Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }) }))).toBe(true);
    expect(isTransient(new AggregateError([Object.assign(new Error('x'), { code: 'ECONNREFUSED' })]))).toBe(true);
  });
});

