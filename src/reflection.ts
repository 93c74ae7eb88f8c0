import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import type { Server, ServerDuplexStream, ServiceDefinition, UntypedHandleCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { protoPath as healthProto } from 'grpc-health-check';
import { FileDescriptorProto, type IDescriptorProto, type IFileDescriptorProto } from 'protobufjs/ext/descriptor';
import { PROTO_DIR } from './paths';
import { PUBLIC_SERVICE_LIST } from './services';

/** The files served by reflection: the public contract and the health service. */
const FILES = [...PUBLIC_SERVICE_LIST.map((s) => s.protoFile), healthProto];

/**
 * Server reflection for tools that have no .proto (grpcurl, ghz, Postman).
 *
 * proto-loader merges the files of one package into one descriptor
 * (`chatflow_v1.proto`, `google_protobuf.proto`, ...) and leaves their
 * `dependency` lists empty, so a client cannot resolve the
 * `google.protobuf.Timestamp` fields (grpc/grpc-node#2958). Here every
 * reference is resolved to the file that defines it, written as a fully
 * qualified name, and that file is declared as a dependency.
 */
export function reflectionService(): ReflectionService {
  return new ReflectionService(linkedDescriptors(loadSync(FILES, { includeDirs: [PROTO_DIR], keepCase: true })));
}

/**
 * Adds reflection (v1 and v1alpha) to `server`, its streams paced: a stream's
 * requests are not read while its answers wait for the client. The library
 * answers every request it reads, whether the client reads or not, so a
 * client that sent requests and never read kept the server reading and
 * holding answers without end (5,000 requests of 1 KiB: all read and answered
 * into memory within a second; one stream, no token).
 */
export function addReflection(server: Server): void {
  const reflection = reflectionService();
  const paced: Pick<Server, 'addService'> = {
    addService: (definition: ServiceDefinition, implementation: UntypedServiceImplementation) =>
      server.addService(definition, Object.fromEntries(Object.entries(implementation).map(([name, handler]) => [name, pacedDuplex(handler)]))),
  };
  reflection.addToServer(paced as Server);
}

/** A bidi handler whose stream stops being read while its writes wait (write() said so) and is read again once they drained. */
function pacedDuplex(handler: UntypedHandleCall): UntypedHandleCall {
  return ((call: ServerDuplexStream<unknown, unknown>) => {
    const write = call.write.bind(call) as (chunk: unknown) => boolean;
    call.write = ((chunk: unknown) => {
      const flowing = write(chunk);
      if (!flowing && !call.isPaused()) {
        call.pause();
        call.once('drain', () => call.resume());
      }
      return flowing;
    }) as typeof call.write;
    (handler as (call: ServerDuplexStream<unknown, unknown>) => void)(call);
  }) as UntypedHandleCall;
}

export function linkedDescriptors(definition: PackageDefinition): PackageDefinition {
  const files = new Map<string, IFileDescriptorProto>();
  for (const entry of Object.values(definition)) {
    for (const bytes of (entry as { fileDescriptorProtos?: Buffer[] }).fileDescriptorProtos ?? []) {
      const file = FileDescriptorProto.decode(bytes) as IFileDescriptorProto;
      if (file.name && !files.has(file.name)) files.set(file.name, file);
    }
  }
  for (const f of files.values()) nameMapEntries(f.messageType ?? []);
  // Every message and enum by its fully qualified name (no leading dot) → the file defining it.
  const symbols = new Map<string, string>();
  const index = (prefix: string, file: string, messages: IDescriptorProto[] = [], enums: { name?: string | null }[] = []) => {
    for (const e of enums) symbols.set(`${prefix}${e.name}`, file);
    for (const m of messages) {
      symbols.set(`${prefix}${m.name}`, file);
      index(`${prefix}${m.name}.`, file, m.nestedType ?? [], m.enumType ?? []);
    }
  };
  for (const [name, f] of files) index(f.package ? `${f.package}.` : '', name, f.messageType ?? [], f.enumType ?? []);

  for (const [name, f] of files) {
    const deps = new Set<string>();
    // protobuf scoping: a relative name is looked up from the innermost scope outwards.
    const resolve = (ref: string | null | undefined, scope: string): string | undefined => {
      if (!ref) return undefined;
      let fqn: string | undefined;
      if (ref.startsWith('.')) fqn = ref.slice(1);
      else {
        for (let s = scope; fqn === undefined; s = s.includes('.') ? s.slice(0, s.lastIndexOf('.')) : '') {
          const candidate = s ? `${s}.${ref}` : ref;
          if (symbols.has(candidate)) fqn = candidate;
          else if (!s) break;
        }
      }
      if (fqn === undefined || !symbols.has(fqn)) return ref;
      if (symbols.get(fqn) !== name) deps.add(symbols.get(fqn)!);
      return `.${fqn}`;
    };
    const visit = (scope: string, messages: IDescriptorProto[] = []) => {
      for (const m of messages) {
        const inner = scope ? `${scope}.${m.name}` : m.name!;
        for (const field of m.field ?? []) field.typeName = resolve(field.typeName, inner) ?? field.typeName;
        visit(inner, m.nestedType ?? []);
      }
    };
    visit(f.package ?? '', f.messageType ?? []);
    for (const s of f.service ?? []) {
      for (const m of s.method ?? []) {
        m.inputType = resolve(m.inputType, f.package ?? '');
        m.outputType = resolve(m.outputType, f.package ?? '');
      }
    }
    f.dependency = [...deps];
  }
  const linked = [...files.values()].map((f) => Buffer.from(FileDescriptorProto.encode(f as never).finish()));
  return { 'chatflow.reflection': { format: 'Protocol Buffer 3 FileDescriptorProto', type: {}, fileDescriptorProtos: linked } } as unknown as PackageDefinition;
}

/**
 * protobufjs names a map field's entry type after the field (`Statuses`);
 * protoc, and so every reflection client, expects `StatusesEntry`.
 */
function nameMapEntries(messages: IDescriptorProto[]): void {
  for (const m of messages) {
    for (const entry of m.nestedType ?? []) {
      if (!entry.options?.mapEntry) continue;
      const field = m.field?.find((f) => f.typeName === entry.name || f.typeName?.endsWith(`.${entry.name}`));
      if (!field?.name) continue;
      const expected = `${field.name.replace(/(?:^|_)([a-z0-9])/g, (_, c: string) => c.toUpperCase())}Entry`;
      field.typeName = field.typeName!.slice(0, -entry.name!.length) + expected;
      entry.name = expected;
    }
    nameMapEntries(m.nestedType ?? []);
  }
}
