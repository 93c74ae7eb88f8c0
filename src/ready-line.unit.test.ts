import { loadConfig } from './config/config';
import { readyLines } from './ready-line';

describe('the lines after "ChatFlow ready"', () => {
  it('given npm start, then they name the page and the CLI command, and how the page gets a token', () => {
    const r = readyLines(loadConfig({}), { grpcAddress: '127.0.0.1:50051', httpUrl: 'http://127.0.0.1:8080' });
    expect(r.next).toBe('Chat in the browser: http://127.0.0.1:8080/ (it asks for a token: npm run client -- token <your-name>) · in a terminal: npm run client -- chat --client-id <your-name>');
    expect(r.warnings).toEqual([]);
  });

  it('given another address and data dir, then the CLI command carries --server and --data-dir', () => {
    const r = readyLines(loadConfig({ CHATFLOW_GRPC_ADDR: '127.0.0.1:0', CHATFLOW_DATA_DIR: '/srv/chatflow' }), { grpcAddress: '127.0.0.1:40123', httpUrl: 'http://127.0.0.1:8080' });
    expect(r.next).toMatch(/npm run client -- chat --client-id <your-name> --server 127\.0\.0\.1:40123 --data-dir \/srv\/chatflow$/);
  });

  it('given TLS, then the CLI command trusts a self-signed certificate with --ca, any other with --tls', () => {
    const config = loadConfig({ CHATFLOW_TLS_CERT_FILE: '/etc/chatflow/cert.pem', CHATFLOW_TLS_KEY_FILE: '/etc/chatflow/key.pem' });
    const where = { grpcAddress: '127.0.0.1:50051', httpUrl: 'https://127.0.0.1:8080' };
    expect(readyLines(config, { ...where, selfSigned: true }).next).toMatch(/chat --client-id <your-name> --ca \/etc\/chatflow\/cert\.pem$/);
    expect(readyLines(config, { ...where, selfSigned: false }).next).toMatch(/^Chat in the browser: https:\/\/127\.0\.0\.1:8080\/ .* chat --client-id <your-name> --tls$/);
  });

  it('given development tokens, then a loud warning says anyone gets a token for any client id', () => {
    const r = readyLines(loadConfig({ CHATFLOW_DEV_TOKENS: 'true' }), { grpcAddress: '127.0.0.1:50051', httpUrl: 'http://127.0.0.1:8080' });
    expect(r.warnings).toEqual([expect.stringMatching(/^CHATFLOW_DEV_TOKENS=true: ANYONE who can reach http:\/\/127\.0\.0\.1:8080\/ gets a token for ANY client id/)]);
    expect(r.next).not.toMatch(/asks for a token/);
  });

  it('given a worker (no gRPC address), then there is nothing to open', () => {
    expect(readyLines(loadConfig({}), { grpcAddress: '', httpUrl: 'http://127.0.0.1:8091' }).next).toBeUndefined();
  });
});
