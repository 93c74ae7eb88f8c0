import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProto } from 'grpc-health-check';
import { FileDescriptorProto, type IFileDescriptorProto } from 'protobufjs/ext/descriptor';
import { PROTO_DIR } from './paths';
import { linkedDescriptors } from './reflection';

function files(definition: ReturnType<typeof loadSync>): Map<string, IFileDescriptorProto> {
  const out = new Map<string, IFileDescriptorProto>();
  for (const entry of Object.values(definition)) {
    for (const b of (entry as { fileDescriptorProtos?: Buffer[] }).fileDescriptorProtos ?? []) {
      const f = FileDescriptorProto.decode(b) as IFileDescriptorProto;
      out.set(f.name!, f);
    }
  }
  return out;
}

describe('reflection descriptors', () => {
  const loaded = loadSync(['chatflow/v1/chat.proto', 'chatflow/v1/history.proto', healthProto], { includeDirs: [PROTO_DIR], keepCase: true });

  it('given proto-loader output, then the chatflow file declares the file defining google.protobuf.Timestamp as a dependency', () => {
    expect(files(loaded).get('chatflow_v1.proto')!.dependency ?? []).toEqual([]); // the grpc-node#2958 starting point
    const linked = files(linkedDescriptors(loaded));
    const chat = linked.get('chatflow_v1.proto')!;
    expect(chat.dependency).toEqual(['google_protobuf.proto']);
    const pong = chat.messageType!.find((m) => m.name === 'Pong')!;
    expect(pong.field!.find((f) => f.name === 'server_time')!.typeName).toBe('.google.protobuf.Timestamp');
    const frame = chat.messageType!.find((m) => m.name === 'ClientFrame')!;
    expect(frame.field!.map((f) => f.typeName)).toEqual(['.chatflow.v1.UserMessage', '.chatflow.v1.Ping']);
  });

  it('names map entries as protoc does (HealthListResponse.statuses → StatusesEntry)', () => {
    const health = files(linkedDescriptors(loaded)).get('grpc_health_v1.proto')!;
    const list = health.messageType!.find((m) => m.name === 'HealthListResponse')!;
    expect(list.nestedType!.map((n) => n.name)).toEqual(['StatusesEntry']);
    expect(list.field![0]!.typeName).toBe('.grpc.health.v1.HealthListResponse.StatusesEntry');
  });
});
