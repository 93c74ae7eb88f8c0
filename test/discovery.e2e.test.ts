import { credentials, loadPackageDefinition, Metadata, type GrpcObject, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProto } from 'grpc-health-check';
import { startTestApp, type TestApp } from './harness';

/** Tools that have no .proto (grpcurl, ghz, load balancers) can find and probe the services. */
describe('health and reflection', () => {
  let t: TestApp;
  beforeAll(async () => (t = await startTestApp()));
  afterAll(async () => t.close());

  it('answers grpc.health.v1.Health/Check with SERVING for the server and each service', async () => {
    const pkg = loadPackageDefinition(loadSync(healthProto, { enums: String })) as GrpcObject;
    const Health = ((pkg.grpc as GrpcObject).health as GrpcObject).v1 as GrpcObject;
    const client = new (Health.Health as ServiceClientConstructor)(t.app.grpcAddress, credentials.createInsecure());
    for (const service of ['', 'chatflow.v1.ChatService', 'chatflow.v1.HistoryService']) {
      const res = await new Promise<{ status: string }>((resolve, reject) =>
        client.Check({ service }, (err: Error | null, r: { status: string }) => (err ? reject(err) : resolve(r))),
      );
      expect(res.status).toBe('SERVING');
    }
    client.close();
  });

  it('lists the chatflow services over server reflection', async () => {
    const proto = require.resolve('@grpc/reflection/build/proto/grpc/reflection/v1alpha/reflection.proto');
    const pkg = loadPackageDefinition(loadSync(proto)) as GrpcObject;
    const Reflection = ((pkg.grpc as GrpcObject).reflection as GrpcObject).v1alpha as GrpcObject;
    const client = new (Reflection.ServerReflection as ServiceClientConstructor)(t.app.grpcAddress, credentials.createInsecure());
    const call = client.ServerReflectionInfo(new Metadata());
    const names = await new Promise<string[]>((resolve, reject) => {
      call.on('data', (r: { listServicesResponse?: { service: { name: string }[] } }) => {
        resolve(r.listServicesResponse?.service.map((s) => s.name) ?? []);
        call.end();
      });
      call.on('error', reject);
      call.write({ listServices: '' });
    });
    expect(names).toEqual(expect.arrayContaining(['chatflow.v1.ChatService', 'chatflow.v1.HistoryService']));
    client.close();
  });
});
