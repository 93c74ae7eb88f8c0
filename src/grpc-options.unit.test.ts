import { grpcServerOptions } from './app';
import { loadConfig } from './config/config';

describe('gRPC server options', () => {
  it('given the defaults, then the server pings every 30 s and sets no connection age', () => {
    const o = grpcServerOptions(loadConfig({}));
    expect(o).toMatchObject({ 'grpc.keepalive_time_ms': 30_000, 'grpc.keepalive_timeout_ms': 10_000, 'grpc.keepalive_permit_without_calls': 1, 'grpc-node.flow_control_window': 1 << 20 });
    expect(o['grpc.max_connection_age_ms']).toBeUndefined();
  });

  it('given a max connection age, then GOAWAY after it and the streams get the grace', () => {
    const o = grpcServerOptions(loadConfig({ CHATFLOW_GRPC_MAX_CONNECTION_AGE_MS: '600000', CHATFLOW_GRPC_MAX_CONNECTION_AGE_GRACE_MS: '60000' }));
    expect(o).toMatchObject({ 'grpc.max_connection_age_ms': 600_000, 'grpc.max_connection_age_grace_ms': 60_000 });
  });
});
