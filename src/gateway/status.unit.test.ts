import { status } from '@grpc/grpc-js';
import { ChatFlowError } from '../domain/errors';
import { carryError, toChatError, toStatus, uncarryError } from './status';

const logger = () => {
  const logged: unknown[] = [];
  return { logged, error: (o: unknown) => void logged.push(o) };
};

describe('toStatus / toChatError: the one mapping of errors', () => {
  const refused = new ChatFlowError('UNAVAILABLE', 'server shutting down; send it again', { 'retry-after-ms': '250' });

  it('given a domain error, then its kind, message and trailers reach the client, nothing is logged', () => {
    const log = logger();
    const st = toStatus(refused, log);
    expect({ code: st.code, details: st.details, retry: st.metadata.get('retry-after-ms') }).toEqual({ code: status.UNAVAILABLE, details: 'server shutting down; send it again', retry: ['250'] });
    expect(toChatError('c1', refused, log)).toEqual({ inReplyTo: 'c1', code: 'UNAVAILABLE', message: 'server shutting down; send it again', seq: 0, retryAfterMs: 250 });
    expect(log.logged).toEqual([]);
  });

  it('given any other error, then it is logged once and the client gets INTERNAL (or the fallback) without its detail', () => {
    const log = logger();
    const st = toStatus(new Error('secret stack detail'), log);
    expect([st.code, st.details]).toEqual([status.INTERNAL, 'internal error; it has been logged']);
    const e = toChatError('c2', new TypeError('secret'), log, new ChatFlowError('UNAVAILABLE', 'the message could not be stored; send it again'));
    expect(e).toMatchObject({ code: 'UNAVAILABLE', message: 'the message could not be stored; send it again', retryAfterMs: 0 });
    expect(log.logged).toHaveLength(2);
  });

  it('given an error carried back from the gateway that answered a forwarded Send, then it is the same error, trailers included', () => {
    const log = logger();
    const back = uncarryError(JSON.parse(JSON.stringify(carryError(refused, log, refused))));
    expect(back).toBeInstanceOf(ChatFlowError);
    expect({ kind: back.kind, message: back.message, trailers: back.trailers }).toEqual({ kind: 'UNAVAILABLE', message: refused.message, trailers: { 'retry-after-ms': '250' } });
    expect(uncarryError({ code: 'NOPE' as never, message: 'from a newer gateway' }).kind).toBe('UNAVAILABLE');
  });
});
