import type { ServiceDefinition } from '@grpc/grpc-js';
import type { DescService } from '@bufbuild/protobuf';
import { ChatServiceService } from './gen/chatflow/v1/chat';
import { HistoryServiceService } from './gen/chatflow/v1/history';
import { ChatService } from '../gateway/web/gen/chatflow/v1/chat_pb';
import { HistoryService } from '../gateway/web/gen/chatflow/v1/history_pb';

/**
 * The public gRPC services, in one list: the gRPC server, its health names
 * and reflection files, the embedded gRPC-Web endpoint and (checked by
 * services.unit.test.ts) Envoy's routes are all derived from it. A new
 * service is added to proto/, to `npm run gen`'s inputs, and here.
 */
export interface PublicService {
  /** Fully qualified, e.g. `chatflow.v1.ChatService`: the gRPC path prefix and the health service name. */
  name: string;
  /** Its file under proto/, served by reflection. */
  protoFile: string;
  /** ts-proto definition for the grpc-js server. */
  definition: ServiceDefinition;
  /** protobuf-es descriptor for gRPC-Web (the page and the embedded endpoint). */
  web: DescService;
}

const service = (definition: ServiceDefinition, web: DescService): PublicService => ({
  name: web.typeName,
  protoFile: `${web.file.name}.proto`,
  definition,
  web,
});

export const PUBLIC_SERVICES = {
  chat: service(ChatServiceService, ChatService),
  history: service(HistoryServiceService, HistoryService),
} as const;

export type PublicServiceKey = keyof typeof PUBLIC_SERVICES;

export const PUBLIC_SERVICE_LIST: readonly PublicService[] = Object.values(PUBLIC_SERVICES);

const PUBLIC_PREFIXES = PUBLIC_SERVICE_LIST.map((s) => `/${s.name}/`);

/** Whether a gRPC path (`/package.Service/Method`) is a method of a public service: its callers must be identified. */
export function isPublicPath(path: string): boolean {
  return PUBLIC_PREFIXES.some((p) => path.startsWith(p));
}

/**
 * The methods whose request may carry an upload (up to the transport limit);
 * every other request is small (src/gateway/request-guard.ts), on gRPC and on
 * the embedded gRPC-Web endpoint alike.
 */
export const MEDIA_METHOD_PATHS: ReadonlySet<string> = new Set([ChatServiceService.chat.path, ChatServiceService.send.path]);

/** Names the gRPC health service answers for: the whole server ('') and each public service. */
export const HEALTH_SERVICE_NAMES: readonly string[] = ['', ...PUBLIC_SERVICE_LIST.map((s) => s.name)];
