/** API Gateway proxy events (REST 1.0, HTTP 2.0) as the edge's requests: the adapter on its own. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RawRequest } from '../../src/runtimes/http/edge.ts';
import {
  type ApiGatewayEvent,
  isApiGatewayEvent,
  toProxyResult,
  toRawRequest,
} from '../../src/runtimes/lambda/api-gateway.ts';
import { httpApiEvent, restApiEvent } from '../support/lambda.ts';

const OPTIONS = { maxBodyBytes: 1024, trustAuthorizer: true };
const request = (event: unknown, options = OPTIONS) => {
  const raw = toRawRequest(event as ApiGatewayEvent, options);
  assert.ok(!('status' in raw), JSON.stringify(raw));
  return raw as RawRequest;
};

describe('API Gateway events', () => {
  it('tells proxy events of both versions from anything else', () => {
    assert.ok(isApiGatewayEvent(httpApiEvent({ method: 'GET', path: '/x' })));
    assert.ok(isApiGatewayEvent(restApiEvent({ method: 'GET', path: '/x' })));
    for (const other of [null, 'x', {}, { version: '2.0' }, { records: {} }])
      assert.ok(!isApiGatewayEvent(other));
  });

  it('repeated query keys keep every value, in both versions', () => {
    const v2 = httpApiEvent({ method: 'GET', path: '/admin/dlq' }) as { rawQueryString: string };
    v2.rawQueryString = 'stage=processor&stage=dispatcher';
    assert.equal(request(v2).url, '/admin/dlq?stage=processor&stage=dispatcher');
    const v1 = restApiEvent({ method: 'GET', path: '/admin/dlq' }) as Record<string, unknown>;
    v1.multiValueQueryStringParameters = { stage: ['processor', 'dispatcher'] };
    v1.queryStringParameters = { stage: 'dispatcher' };
    assert.equal(request(v1).url, '/admin/dlq?stage=processor&stage=dispatcher');
  });

  it('header names are lower case; repeated REST API headers are joined', () => {
    const v1 = restApiEvent({ method: 'GET', path: '/x', headers: { 'X-Request-Id': 'abc' } }) as Record<
      string,
      unknown
    >;
    v1.multiValueHeaders = { 'X-Forwarded-For': ['1.2.3.4', '5.6.7.8'], 'X-Request-Id': ['abc'] };
    const raw = request(v1);
    assert.equal(raw.headers['x-forwarded-for'], '1.2.3.4, 5.6.7.8');
    assert.equal(raw.headers['x-request-id'], 'abc');
  });

  it('a named stage is taken off an HTTP API raw path; $default has none', () => {
    assert.equal(
      request(httpApiEvent({ method: 'GET', path: '/admin/partners', stage: 'prod' })).url,
      '/admin/partners',
    );
    assert.equal(request(httpApiEvent({ method: 'GET', path: '/admin/partners' })).url, '/admin/partners');
  });

  it('base64 bodies are decoded; too large is 413, not UTF-8 is 400', () => {
    assert.equal(
      request(httpApiEvent({ method: 'POST', path: '/events', raw: '{"é":1}', base64: true })).body,
      '{"é":1}',
    );
    const big = toRawRequest(
      httpApiEvent({ method: 'POST', path: '/events', raw: 'x'.repeat(1025) }) as ApiGatewayEvent,
      OPTIONS,
    );
    assert.equal('status' in big && big.status, 413);
    const bad = {
      ...(httpApiEvent({ method: 'POST', path: '/events' }) as object),
      body: Buffer.from([0xc3]).toString('base64'),
      isBase64Encoded: true,
    };
    const refused = toRawRequest(bad as ApiGatewayEvent, OPTIONS);
    assert.equal('status' in refused && refused.status, 400);
  });

  it('only an IAM authorizer names an admin, and only where trusted; a JWT subject never does', () => {
    const iam = 'arn:aws:iam::123456789012:role/ops';
    assert.deepEqual(request(httpApiEvent({ method: 'GET', path: '/x', iamUser: iam })).principal, {
      kind: 'gateway',
      role: 'admin',
      id: iam,
    });
    assert.deepEqual(request(restApiEvent({ method: 'GET', path: '/x', iamUser: iam })).principal, {
      kind: 'gateway',
      role: 'admin',
      id: iam,
    });
    assert.equal(
      request(httpApiEvent({ method: 'GET', path: '/x', iamUser: iam }), {
        ...OPTIONS,
        trustAuthorizer: false,
      }).principal,
      undefined,
    );
    const jwt = httpApiEvent({ method: 'GET', path: '/x' }) as { requestContext: Record<string, unknown> };
    jwt.requestContext.authorizer = { jwt: { claims: { sub: 'partner-user-1' }, scopes: [] } };
    assert.equal(request(jwt).principal, undefined);
    const v1 = restApiEvent({ method: 'GET', path: '/x' }) as { requestContext: Record<string, unknown> };
    v1.requestContext.authorizer = { claims: { sub: 'partner-user-1' }, principalId: 'partner-user-1' };
    assert.equal(request(v1).principal, undefined);
  });

  it('responses: JSON bodies with their content type and the contract headers', () => {
    const result = toProxyResult({ status: 201, body: { id: 'p1' }, headers: { 'x-request-id': 'r1' } });
    assert.deepEqual(result, {
      statusCode: 201,
      headers: {
        'x-request-id': 'r1',
        'content-type': 'application/json',
        'x-content-type-options': 'nosniff',
        'cache-control': 'no-store',
      },
      body: '{"id":"p1"}',
      isBase64Encoded: false,
    });
  });
});
