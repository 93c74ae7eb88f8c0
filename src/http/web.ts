import type { Logger } from 'pino';
import type { TokenAuthority } from '../auth/tokens';
import type { RequestPlaces } from '../resilience/request-places';
import { devTokenRoute } from './dev-token';
import { grpcWebRoute } from './grpc-web';
import type { HttpRoute } from './server';
import { webPageRoute } from './web-page';
import type { WebSettings } from './web-settings';

/**
 * Everything a browser needs from the HTTP server: the chat page at `/`, the
 * embedded gRPC-Web endpoint (same origin) and, when enabled, `POST /dev/token`.
 */
export function webRoutes(opts: {
  /** The native gRPC address the gRPC-Web calls are forwarded to (read per call). */
  upstream: () => string | undefined;
  auth: Pick<TokenAuthority, 'mint' | 'identify'>;
  maxMediaBytes: number;
  /** The places the embedded endpoint reads Sends in (see grpcWebRoute). */
  sends: RequestPlaces;
  calls: RequestPlaces;
  logger: Logger;
  settings: WebSettings;
}): { routes: HttpRoute[]; close(): void } {
  const { settings } = opts;
  const logger = opts.logger.child({ component: 'web' });
  // A Send carries one media file (plus a little framing); in text mode its base64 is decoded before it is counted.
  const grpcWeb = grpcWebRoute({ upstream: opts.upstream, identify: (header) => opts.auth.identify(header), sends: opts.sends, calls: opts.calls, maxMessageBytes: opts.maxMediaBytes + 1024 * 1024, origins: settings.origins, logger });
  return {
    routes: [grpcWeb, devTokenRoute({ enabled: settings.devTokens, auth: opts.auth, logger }), webPageRoute({ settings, logger })],
    /** Closes the embedded gRPC-Web endpoint's connection to the gRPC server. */
    close: () => grpcWeb.close(),
  };
}
