/** The handler of an HTTP function (admin, ingest): an API Gateway proxy event through the edge. */
import {
  isApiGatewayEvent,
  notAnApiGatewayEvent,
  type ProxyResult,
  toProxyResult,
  toRawRequest,
} from './api-gateway.ts';
import { container } from './container.ts';
import type { LambdaContextLike } from './invocation.ts';

/**
 * The admin function serves the API behind IAM authorization, whose caller it takes as an
 * admin; the ingest function serves producers, who bring their API key as on the server.
 */
export function httpHandler(
  kind: 'admin' | 'ingest',
): (event: unknown, context?: LambdaContextLike) => Promise<ProxyResult> {
  return async (event, context) => {
    if (!isApiGatewayEvent(event)) return notAnApiGatewayEvent();
    const c = await container(kind);
    const request = toRawRequest(event, {
      maxBodyBytes: c.config.maxBodyBytes,
      trustAuthorizer: kind === 'admin',
    });
    if ('status' in request) return toProxyResult(request);
    return c.observe(context, `### ${kind} request`, async () =>
      toProxyResult(await c.platform.handle(request)),
    );
  };
}
