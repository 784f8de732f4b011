/**
 * The fuzz's request generators: each family makes one kind of hostile request against the routes
 * of the running server (taken from its OpenAPI document). A case is a pure function of the seed,
 * its number and the target, so any case of a run can be made again (`--case N`).
 */
import type { RawHttpRequest } from './fuzz-client.ts';
import { Random } from './fuzz-random.ts';

/** A route of the server, as the OpenAPI document lists it. */
export interface FuzzRoute {
  method: string;
  /** The path template, e.g. `/admin/partners/{id}`. */
  path: string;
  /** Served without credentials. */
  public: boolean;
}

/** What the generators aim at. */
export interface FuzzTarget {
  routes: FuzzRoute[];
  /** The admin token most requests carry. */
  token: string;
  maxBodyBytes: number;
  /** Resources the fuzz created, so that requests reach handlers and not only 404s. */
  known: { domain: string; event: string; version: number; partnerId: string; subscriptionId: string };
  /** Where the fuzz's subscriptions deliver (the receiver). */
  hookUrl: string;
  /** The server's own base URL (a subscription pointing back at it is one of the hostile URLs). */
  selfUrl: string;
}

export const FAMILIES = [
  'oversized-body',
  'bad-path',
  'header-abuse',
  'invalid-utf8',
  'method-abuse',
  'query',
  'json-shape',
  'deep-json',
  'huge-json',
  'batch',
  'schema-abuse',
  'evil-events',
  'subscription-abuse',
  'rotation',
  'events-abuse',
] as const;

export type Family = (typeof FAMILIES)[number];

/**
 * The families whose defences are the HTTP server's and the edge's own (body limit, path
 * parameters, headers, UTF-8, methods): what the fuzz smoke test runs.
 */
export const TRANSPORT_FAMILIES: readonly Family[] = [
  'oversized-body',
  'bad-path',
  'header-abuse',
  'invalid-utf8',
  'method-abuse',
];

/** One generated request. */
export interface FuzzCase extends RawHttpRequest {
  family: Family;
  /** The route aimed at, "METHOD /template" (the request itself may stray from it on purpose). */
  route: string;
}

/** How often each family comes up, relative to the others. */
const WEIGHTS: Record<Family, number> = {
  'oversized-body': 5,
  'bad-path': 8,
  'header-abuse': 8,
  'invalid-utf8': 6,
  'method-abuse': 4,
  query: 8,
  'json-shape': 10,
  'deep-json': 7,
  'huge-json': 4,
  batch: 4,
  'schema-abuse': 6,
  'evil-events': 1,
  'subscription-abuse': 7,
  rotation: 3,
  'events-abuse': 9,
};

/** Case `index` of the run seeded with `seed`, drawn from `families`. */
export function generateCase(
  seed: number,
  index: number,
  target: FuzzTarget,
  families: readonly Family[] = FAMILIES,
): FuzzCase {
  const rng = new Random(seed, index);
  const family = rng.weighted(families.map((f) => [f, WEIGHTS[f]] as const));
  const made: FuzzCase = { family, ...GENERATORS[family](rng, target) };
  // The fuzz's own subscription stays: deleting it would leave the rotations nothing to rotate.
  if (made.method === 'DELETE' && made.target.includes(target.known.subscriptionId))
    made.target = made.target.replace(target.known.subscriptionId, UNKNOWN_ID);
  return made;
}

/** A short, printable account of a case: method, target, notable headers, body size and start. */
export function describeCase(c: FuzzCase): string {
  const cut = (text: string, n: number) =>
    text.length > n ? `${text.slice(0, n)}… (${text.length} chars)` : text;
  const headers = (c.headers ?? []).map(([n, v]) =>
    n === 'authorization' ? `${n}: ${cut(v, 12)}` : `${cut(n, 40)}: ${cut(v, 60)}`,
  );
  const shown = headers.length > 6 ? [...headers.slice(0, 6), `… ${headers.length} headers`] : headers;
  let body = '';
  if (c.body !== undefined) {
    const bytes = typeof c.body === 'string' ? Buffer.from(c.body) : c.body;
    const framing = `${c.chunked ? ' chunked' : ''}${c.expectContinue ? ' expect-100' : ''}`;
    const start = JSON.stringify(bytes.subarray(0, 300).toString('latin1'));
    body = ` body ${bytes.length} B${framing}: ${start}${bytes.length > 300 ? '…' : ''}`;
  }
  return `${c.method} ${cut(c.target, 160)} [${shown.join('; ')}]${body}`;
}

type Generator = (rng: Random, target: FuzzTarget) => Omit<FuzzCase, 'family'>;

// ---------------------------------------------------------------------------------------------
// Building blocks

const EVIL_PATTERNS = [
  '^(a+)+$',
  '^(a|a)+$',
  '^(a|aa)+$',
  '^(a*)*$',
  '^(a+)*b$',
  '(.*a){12}$',
  '^(\\w+\\s?)*$',
];
const MALFORMED_ESCAPES = [
  '%',
  '%f',
  '%ff',
  '%zz',
  '%ed%a0%80',
  '%ed%b0%80',
  '%c0%af',
  '%e0%80%af',
  '%f8%88%80%80%80',
  '%fe%ff',
  'a%',
  '%%',
  '%e2%82',
  '%c3',
];
const ODD_BUT_VALID_PARAMS = [
  '%00',
  '..',
  '%2e%2e',
  '%2f',
  '%20',
  '%f0%9f%98%80',
  '%e2%80%a8',
  'null',
  'undefined',
  '__proto__',
  'constructor',
  '0',
  '-1',
  '1e309',
  '9007199254740993',
];
const NON_LATIN1 = ['ü€', '😀', 'Ωμέγα', '中文', '\u2028', 'a\u0000b', '\ud800', 'e\u0301', 'ﷺ'];
const INVALID_UTF8: readonly number[][] = [
  [0xff],
  [0xc0, 0xaf],
  [0xed, 0xa0, 0x80],
  [0xe2, 0x82],
  [0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0xf4, 0x90, 0x80, 0x80],
  [0xfe, 0xfe, 0xff],
];
const CONNECTION_HEADERS = [
  'connection',
  'keep-alive',
  'expect',
  'upgrade',
  'te',
  'trailer',
  'transfer-encoding',
  'content-length',
  'host',
  'proxy-authorization',
  'webhook-signature',
  'webhook-id',
  'x-correlation-id',
  'traceparent',
  'Content-Type',
];

/** A JSON text placed verbatim where a value goes (nesting far deeper than JSON.stringify should be asked to build). */
class RawJson {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
}

/** JSON.stringify, with RawJson values spliced in as they are. */
function toJson(value: unknown): string {
  const raws: string[] = [];
  const text = JSON.stringify(value, (_key, v: unknown) => {
    if (v instanceof RawJson) {
      raws.push(v.text);
      return `\u0000raw${raws.length - 1}\u0000`;
    }
    return v;
  });
  return text.replace(/"\\u0000raw(\d+)\\u0000"/g, (_m, i: string) => raws[Number(i)]!);
}

/** JSON nested `levels` deep: arrays, objects or both in turn. */
function deepJson(rng: Random, levels: number): RawJson {
  const kind = rng.pick(['array', 'object', 'mixed'] as const);
  if (kind === 'array') return new RawJson(`${'['.repeat(levels)}1${']'.repeat(levels)}`);
  if (kind === 'object') return new RawJson(`${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`);
  const pairs = Math.ceil(levels / 2);
  return new RawJson(`${'[{"a":'.repeat(pairs)}1${'}]'.repeat(pairs)}`);
}

function uuidLike(rng: Random): string {
  const hex = '0123456789abcdef';
  return `${rng.string(8, hex)}-${rng.string(4, hex)}-7${rng.string(3, hex)}-8${rng.string(3, hex)}-${rng.string(12, hex)}`;
}

/** A value that is wrong, extreme or odd for almost any field (not deeply nested). */
function hostileValue(rng: Random): unknown {
  switch (rng.int(0, 13)) {
    case 0:
      return null;
    case 1:
      return rng.pick([true, false, 0, -1, 1e308, -1e308, 5e-324, 0.1]);
    case 2:
      return new RawJson(
        rng.pick(['1e309', '-1e309', '-0', '1E400', '9007199254740993', '123456789012345678901234567890']),
      );
    case 3:
      return 'x'.repeat(rng.pick([0, 1, 256, 4097, 70_000]));
    case 4:
      return rng.pick(NON_LATIN1).repeat(rng.int(1, 50));
    case 5:
      return [];
    case 6:
      return {};
    case 7:
      return new RawJson('{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}');
    case 8:
      return Array.from({ length: rng.pick([100, 10_000]) }, (_, i) => i);
    case 9:
      return Object.fromEntries(Array.from({ length: rng.pick([100, 5_000]) }, (_, i) => [`k${i}`, i]));
    case 10:
      return `\r\n${rng.string(8)}\t\u0007`;
    case 11:
      return rng.string(rng.int(1, 40), 'abcXYZ./-_$:*?[]{}()^\\|+');
    case 12:
      return uuidLike(rng);
    default:
      return rng.string(rng.int(1, 20));
  }
}

/** The credentials of a request: mostly the admin token, sometimes none or wrong ones. */
function credentials(rng: Random, target: FuzzTarget): [string, string][] {
  return rng.weighted<[string, string][]>([
    [[['authorization', `Bearer ${target.token}`]], 88],
    [[], 4],
    [[['authorization', `Bearer ${target.token}x`]], 4],
    [[['authorization', rng.pick(['Bearer', 'Basic YWRtaW46YWRtaW4=', `bearer ${target.token}`, 'x'])]], 4],
  ]);
}

function routeName(route: FuzzRoute): string {
  return `${route.method} ${route.path}`;
}

function pickRoute(rng: Random, target: FuzzTarget, keep: (r: FuzzRoute) => boolean = () => true): FuzzRoute {
  const routes = target.routes.filter(keep);
  return rng.pick(routes.length > 0 ? routes : target.routes);
}

const withBody = (r: FuzzRoute) => r.method === 'POST' || r.method === 'PATCH';
const withParams = (r: FuzzRoute) => r.path.includes('{');

/** The value of a path parameter naming a resource the fuzz created. */
function knownParam(path: string, name: string, target: FuzzTarget): string {
  const { known } = target;
  if (name === 'domain') return known.domain;
  if (name === 'event') return known.event;
  if (name === 'version') return String(known.version);
  if (path.startsWith('/admin/partners/')) return known.partnerId;
  if (path.startsWith('/admin/subscriptions/')) return known.subscriptionId;
  return UNKNOWN_ID;
}

/** An id no resource has. */
const UNKNOWN_ID = '0190a000-0000-7000-8000-000000000000';

/** A path from a template: parameters known, plausible, odd, or (`hostile`) not decodable. */
function fillPath(route: FuzzRoute, rng: Random, target: FuzzTarget, hostile = false): string {
  return route.path.replace(/\{(\w+)\}/g, (_m, name: string) => {
    if (hostile && rng.chance(0.7)) {
      const bad = rng.pick(MALFORMED_ESCAPES);
      return rng.pick([bad, `${knownParam(route.path, name, target)}${bad}`, `${bad}${rng.string(3)}`]);
    }
    return rng.weighted<() => string>([
      [() => knownParam(route.path, name, target), 5],
      [
        () =>
          name === 'version' ? String(rng.int(0, 5)) : rng.pick([uuidLike(rng), rng.string(rng.int(1, 12))]),
        3,
      ],
      [() => rng.pick(ODD_BUT_VALID_PARAMS), 2],
      [() => encodeURIComponent(rng.pick(NON_LATIN1).replace('\ud800', '')), 1],
      [() => 'a'.repeat(rng.pick([300, 4000, 20_000])), 1],
    ])();
  });
}

/** A body the route would take, or nearly: the starting point the families bend. */
function plausibleBody(route: FuzzRoute, rng: Random, target: FuzzTarget): Record<string, unknown> {
  const { known } = target;
  switch (routeName(route)) {
    case 'POST /admin/schemas':
      return {
        domain: rng.pick([known.domain, 'fuzzevil', `fz${rng.int(0, 4)}`]),
        event: rng.pick([known.event, `e${rng.int(0, 4)}`]),
        schema: rng.pick([
          { type: 'object' },
          { type: 'object', properties: { a: { type: 'string' } } },
          { type: 'object', required: ['n'], properties: { n: { type: 'number' } } },
        ]),
        compatibility: rng.pick(['NONE', 'BACKWARD', 'FORWARD', 'FULL']),
      };
    case 'PATCH /admin/schemas/{domain}/{event}/{version}':
      return rng.pick([
        { status: rng.pick(['ACTIVE', 'DEPRECATED', 'RETIRED', 'DRAFT']) },
        { compatibility: 'NONE' },
        { description: rng.string(20) },
      ]);
    case 'POST /admin/partners':
      return { id: `fuzz-${rng.string(6)}`, name: rng.string(10), metadata: { tier: rng.string(4) } };
    case 'PATCH /admin/partners/{id}':
      return rng.pick([
        { name: rng.string(8) },
        { metadata: { k: rng.string(5) } },
        { delivery: { maxConcurrency: rng.int(1, 64), rateLimitPerSecond: rng.int(1, 1000) } },
        { status: 'ACTIVE' },
      ]);
    case 'POST /admin/subscriptions':
      return {
        partnerId: known.partnerId,
        domain: known.domain,
        event: known.event,
        url: `${target.hookUrl}?v=${rng.int(0, 3)}`,
      };
    case 'PATCH /admin/subscriptions/{id}':
      return rng.pick([
        { status: rng.pick(['ACTIVE', 'PAUSED', 'ACTIVE']) },
        { filter: { n: { $gte: rng.int(0, 10) } } },
        { mapping: { rules: [{ to: 'copy', from: 'n' }] } },
        { retry: { maxAttempts: rng.int(1, 10) } },
        { filter: null, mapping: null },
      ]);
    case 'POST /admin/subscriptions/{id}/rotate-secret':
      return rng.pick([{}, { overlapSeconds: rng.int(0, 86400) }]);
    case 'POST /events':
      return cloudEvent(rng, target);
    case 'POST /admin/dlq/redrive':
      return rng.pick([{ all: true }, { subscriptionId: known.subscriptionId }, { eventId: rng.string(8) }]);
    case 'POST /admin/api-keys':
      return {
        name: rng.string(8),
        role: rng.pick(['admin', 'operator', 'publisher', 'root']),
        sources: ['/fuzz'],
      };
    default:
      return { [rng.string(5)]: rng.string(5) };
  }
}

/** A structured CloudEvent of the fuzz's event type (valid unless the caller bends it). */
function cloudEvent(
  rng: Random,
  target: FuzzTarget,
  data: unknown = { n: rng.int(0, 100) },
): Record<string, unknown> {
  return {
    specversion: '1.0',
    id: `fz-${rng.string(12)}`,
    source: '/fuzz',
    type: `${target.known.domain}.${target.known.event}`,
    data,
  };
}

/** A copy of the body with one of its fields (now and then a new one) set to `value`. */
function setRandomField(rng: Random, body: Record<string, unknown>, value: unknown): Record<string, unknown> {
  const keys = Object.keys(body);
  const key = keys.length > 0 && rng.chance(0.85) ? rng.pick(keys) : rng.string(6);
  return { ...body, [key]: value };
}

const JSON_TYPE: [string, string] = ['content-type', 'application/json'];

/** A JSON request to a route with credentials. */
function jsonRequest(
  rng: Random,
  target: FuzzTarget,
  route: FuzzRoute,
  body: unknown,
): Omit<FuzzCase, 'family'> {
  const type: [string, string] =
    route.path === '/events' ? ['content-type', 'application/cloudevents+json'] : JSON_TYPE;
  return {
    method: route.method,
    target: fillPath(route, rng, target),
    headers: [...credentials(rng, target), type],
    body: typeof body === 'string' || Buffer.isBuffer(body) ? body : toJson(body),
    route: routeName(route),
  };
}

// ---------------------------------------------------------------------------------------------
// The families

const GENERATORS: Record<Family, Generator> = {
  /** Bodies at, just over, well over and twelve times the limit; content-length, chunked, or expect-100. */
  'oversized-body'(rng, target) {
    const route = rng.chance(0.9) ? pickRoute(rng, target, withBody) : pickRoute(rng, target);
    const limit = target.maxBodyBytes;
    const size = rng.weighted([
      [limit - rng.int(0, 64), 3],
      [limit + 1, 3],
      [limit + rng.int(2, limit), 3],
      [limit * 12, 1],
    ]);
    const base = rng.chance(0.05)
      ? { ...jsonRequest(rng, target, route, ''), body: Buffer.alloc(0), declaredLength: 10 * 1024 ** 3 }
      : jsonRequest(rng, target, route, padded(size));
    const framing = rng.weighted([
      ['content-length', 6],
      ['chunked', 3],
      ['expect', 1],
    ] as const);
    return {
      ...base,
      ...(framing === 'chunked' ? { chunked: rng.pick([1024, 16 * 1024, 64 * 1024]) } : {}),
      ...(framing === 'expect' ? { expectContinue: true } : {}),
    };
  },

  /** Path parameters that are not %-encoded UTF-8, and paths that stray from every route. */
  'bad-path'(rng, target) {
    const route = pickRoute(rng, target, withParams);
    const base = jsonRequest(rng, target, route, withBody(route) ? plausibleBody(route, rng, target) : '');
    if (!withBody(route)) delete base.body;
    if (rng.chance(0.75)) return { ...base, target: fillPath(route, rng, target, true) };
    const any = pickRoute(rng, target);
    const stray = rng.pick([
      `${any.path}${rng.pick(MALFORMED_ESCAPES)}`,
      any.path.replace('/admin/', '/admin//'),
      `${fillPath(any, rng, target)}/`,
      any.path.toUpperCase(),
      `${fillPath(any, rng, target)};jsessionid=${rng.string(8)}`,
      `${fillPath(any, rng, target)}/${rng.string(3)}/${rng.string(3)}`,
      `/${'a/'.repeat(rng.pick([100, 3000]))}`,
      `${fillPath(any, rng, target)}#${rng.string(4)}`,
      `/%2e%2e/%2e%2e/etc/passwd`,
    ]);
    return { ...base, target: stray };
  },

  /** Request ids of every size and alphabet, hundreds or thousands of headers, bad credentials, odd content types. */
  'header-abuse'(rng, target) {
    const route = rng.chance(0.7)
      ? pickRoute(rng, target, (r) => r.method === 'GET')
      : pickRoute(rng, target);
    const base = jsonRequest(rng, target, route, withBody(route) ? plausibleBody(route, rng, target) : '');
    if (!withBody(route)) delete base.body;
    const headers = [...(base.headers ?? [])];
    switch (rng.int(0, 5)) {
      case 0: {
        const name = rng.pick(['x-request-id', 'x-correlation-id']);
        const length = rng.pick([129, 1000, 10_000, 20_000, 1024 * 1024]);
        const value = rng.chance(0.5)
          ? 'a'.repeat(length)
          : rng.pick([
              'two words',
              '<script>alert(1)</script>',
              'a,b',
              '\xe9\xff',
              '../../etc',
              `${'-'.repeat(64)}\t`,
            ]);
        headers.push([name, value]);
        break;
      }
      case 1: {
        const count = rng.pick([50, 500, 1200, 3000]);
        for (let i = 0; i < count; i++) headers.push([`x-fuzz-${i}`, rng.string(rng.int(0, 6))]);
        break;
      }
      case 2: {
        const auth = rng.pick([
          'Bearer',
          'Bearer ',
          `Bearer  ${target.token}`,
          `Bearer ${target.token} extra`,
          `Bearer\t${target.token}`,
          `Bearer ${'x'.repeat(10_000)}`,
          'Bearer \xff\xfe\xe9',
          `Basic ${Buffer.from(`admin:${target.token}`).toString('base64')}`,
          `Digest username="admin"`,
          `${target.token}`,
        ]);
        const others = headers.filter(([n]) => n !== 'authorization');
        headers.length = 0;
        headers.push(...others, ['authorization', auth]);
        if (rng.chance(0.3)) headers.push(['authorization', `Bearer ${target.token}`]);
        break;
      }
      case 3: {
        const others = headers.filter(([n]) => n !== 'content-type');
        headers.length = 0;
        headers.push(...others);
        const type = rng.pick([
          'application/json; charset=utf-16',
          'application/json, text/plain',
          'APPLICATION/JSON',
          'application/cloudevents+json; charset=latin1',
          '',
          'a'.repeat(5000),
          'multipart/form-data; boundary=x',
          'application/x-www-form-urlencoded',
          'text/plain',
          'application/cloudevents-batch+json',
        ]);
        headers.push(['content-type', type]);
        if (rng.chance(0.3)) headers.push(['content-type', 'text/plain']);
        break;
      }
      case 4:
        headers.push(
          rng.pick<[string, string]>([
            ['content-encoding', 'gzip'],
            ['transfer-encoding', 'chunked, chunked'],
            ['x-forwarded-for', '1.2.3.4, '.repeat(1000)],
            ['cookie', `a=${'b'.repeat(12_000)}`],
            ['connection', 'keep-alive, upgrade'],
            ['upgrade', 'websocket'],
            ['x-a b', 'space in the name'],
            ['traceparent', '00-zzzz-yyyy-01'],
            ['host', 'evil.example'],
            ['x-nul', 'a\u0000b'],
          ]),
        );
        break;
      default:
        headers.push(['x-request-id', `ok-${rng.string(8)}`], ['x-correlation-id', rng.string(200)]);
    }
    return { ...base, headers };
  },

  /** Bodies that are not UTF-8: a bad sequence inside a string or a key, truncated at the end, or noise. */
  'invalid-utf8'(rng, target) {
    const route = pickRoute(rng, target, withBody);
    const base = jsonRequest(rng, target, route, plausibleBody(route, rng, target));
    const bad = Buffer.from(rng.pick(INVALID_UTF8));
    const text = Buffer.from(base.body as string);
    let body: Buffer;
    if (rng.chance(0.15)) {
      body = Buffer.from(Array.from({ length: rng.int(1, 2000) }, () => rng.int(0, 255)));
    } else if (rng.chance(0.2)) {
      body = Buffer.concat([text.subarray(0, text.length - 2), bad]);
    } else {
      // Inside the first string literal (after its opening quote).
      const at = text.indexOf('"', text.indexOf(':')) + 1 || 1;
      body = Buffer.concat([text.subarray(0, at), bad, text.subarray(at)]);
    }
    return { ...base, body };
  },

  /** Methods no route has, methods of other routes, CONNECT, absolute-form and `*` targets. */
  'method-abuse'(rng, target) {
    const route = pickRoute(rng, target);
    const method = rng.pick([
      'HEAD',
      'OPTIONS',
      'PUT',
      'TRACE',
      'CONNECT',
      'PROPFIND',
      'DELETE',
      'PATCH',
      'POST',
      'GET',
    ]);
    const path = fillPath(route, rng, target);
    const requestTarget =
      method === 'CONNECT'
        ? rng.pick(['example.com:443', '127.0.0.1:22', path])
        : rng.weighted([
            [path, 8],
            ['*', 1],
            [`http://evil.example${path}`, 1],
          ]);
    return {
      method,
      target: requestTarget,
      headers: credentials(rng, target),
      ...(method === 'POST' || method === 'PATCH' || method === 'PUT' ? { body: '{}' } : {}),
      route: routeName(route),
    };
  },

  /** Query strings: wrong and extreme values, malformed escapes, repeated and unknown keys, 8 KB. */
  query(rng, target) {
    const route = pickRoute(rng, target, (r) => r.method === 'GET');
    const keys = ['limit', 'cursor', 'domain', 'event', 'status', 'partnerId', 'subscriptionId', 'eventId'];
    const more = ['stage', 'reason', 'pending', 'role', 'since', '__proto__', 'constructor', rng.string(4)];
    const values = [
      '-1',
      '0',
      '1e9',
      '101',
      'abc',
      '',
      '%zz',
      '%ff',
      'x'.repeat(8000),
      encodeURIComponent('ü😀'),
      'ACTIVE%00',
      uuidLike(rng),
      'true',
      '[]',
      Buffer.from(JSON.stringify({ k: 'x'.repeat(50) })).toString('base64url'),
    ];
    const pairs = Array.from({ length: rng.int(1, 6) }, () => {
      const key = rng.pick(rng.chance(0.8) ? keys : more);
      return rng.chance(0.05) ? key : `${key}=${rng.pick(values)}`;
    });
    const separator = rng.chance(0.9) ? '&' : rng.pick([';', '&&', '&=&']);
    return {
      method: 'GET',
      target: `${fillPath(route, rng, target)}?${pairs.join(separator)}`,
      headers: credentials(rng, target),
      route: routeName(route),
    };
  },

  /** Wrong content types, malformed JSON, wrong top-level types, fields of the wrong type or unknown. */
  'json-shape'(rng, target) {
    const route = pickRoute(rng, target, withBody);
    const body = plausibleBody(route, rng, target);
    switch (rng.int(0, 4)) {
      case 0: {
        const base = jsonRequest(rng, target, route, body);
        const type = rng.pick([
          'text/plain',
          'application/xml',
          'application/x-www-form-urlencoded',
          'image/png',
        ]);
        const headers = (base.headers ?? []).filter(([n]) => n !== 'content-type');
        return { ...base, headers: rng.chance(0.2) ? headers : [...headers, ['content-type', type]] };
      }
      case 1:
        return jsonRequest(
          rng,
          target,
          route,
          rng.pick([
            '{',
            '{"a":}',
            'nul',
            '[1,]',
            '{"a":1}{"b":2}',
            '\ufeff{}',
            '{"a":NaN}',
            '{"a":"\\ud800"}',
            "{'a':1}",
            '{"a":1,"a":2}',
            ' ',
            '0x10',
            '{"a":"\u2028"}',
          ]),
        );
      case 2:
        return jsonRequest(rng, target, route, rng.pick([[body], 42, 'text', null, true, [], {}]));
      case 3:
        return jsonRequest(rng, target, route, setRandomField(rng, body, hostileValue(rng)));
      default:
        return jsonRequest(rng, target, route, { ...body, [rng.string(6)]: hostileValue(rng) });
    }
  },

  /** JSON nested thousands of levels deep, in every field that takes JSON: data, metadata, filters, mappings, schemas. */
  'deep-json'(rng, target) {
    const levels = rng.pick([500, 1500, 3000, 5000, 10_000, 50_000]);
    const deep = deepJson(rng, levels);
    const route = pickRoute(rng, target, withBody);
    const body = plausibleBody(route, rng, target);
    switch (routeName(route)) {
      case 'POST /events':
        return jsonRequest(rng, target, route, { ...body, data: { n: 1, deep } });
      case 'POST /admin/partners':
      case 'PATCH /admin/partners/{id}':
        return jsonRequest(rng, target, route, { ...body, metadata: { deep } });
      case 'POST /admin/subscriptions':
      case 'PATCH /admin/subscriptions/{id}':
        return jsonRequest(
          rng,
          target,
          route,
          rng.pick([
            { ...body, filter: { n: { $eq: deep } } },
            { ...body, filter: { n: { $in: [deep] } } },
            { ...body, mapping: { rules: [{ to: 'x', value: deep }] } },
            { ...body, filter: new RawJson(`${'{"$not":'.repeat(levels)}{"n":1}${'}'.repeat(levels)}`) },
          ]),
        );
      case 'POST /admin/schemas':
        return jsonRequest(rng, target, route, {
          ...body,
          schema: rng.pick([
            new RawJson(`${'{"properties":{"a":'.repeat(levels / 2)}{}${'}}'.repeat(levels / 2)}`),
            new RawJson(`${'{"not":'.repeat(levels)}{}${'}'.repeat(levels)}`),
            new RawJson(`${'{"allOf":['.repeat(levels / 2)}{}${']}'.repeat(levels / 2)}`),
            { type: 'object', default: deep },
          ]),
        });
      default:
        return jsonRequest(rng, target, route, rng.chance(0.5) ? deep : setRandomField(rng, body, deep));
    }
  },

  /** Large but legal JSON near the limit: long arrays, many keys, one huge string. */
  'huge-json'(rng, target) {
    const route = pickRoute(rng, target, withBody);
    const budget = Math.floor(target.maxBodyBytes * rng.pick([0.5, 0.9, 0.98]));
    const list = (count: number, item: (i: number) => string) =>
      new RawJson(Array.from({ length: count }, (_, i) => item(i)).join(','));
    const value = rng.pick([
      () => new RawJson(`[${list(Math.floor(budget / 8), String).text}]`),
      () => new RawJson(`{${list(Math.floor(budget / 16), (i) => `"key${i}":${i}`).text}}`),
      () => 'x'.repeat(budget - 200),
      () => new RawJson(`[${'{},'.repeat(Math.floor(budget / 3) - 1)}{}]`),
    ])();
    const body = plausibleBody(route, rng, target);
    if (route.path === '/events')
      return jsonRequest(rng, target, route, { ...body, data: { n: 1, big: value } });
    return jsonRequest(rng, target, route, setRandomField(rng, body, value));
  },

  /** Batches on /events: empty, enormous, of non-objects, with one bad event, of unknown types, or valid. */
  batch(rng, target) {
    const route = target.routes.find((r) => r.path === '/events') ?? pickRoute(rng, target);
    const count = rng.pick([0, 1, 100, 1000, 5000, 20_000]);
    const events: Record<string, unknown>[] = Array.from({ length: count }, (_, i) => ({
      ...cloudEvent(rng, target),
      id: `fzb-${rng.string(10)}-${i}`,
    }));
    const kind = rng.weighted([
      ['one-bad', 4],
      ['non-objects', 1],
      ['unknown-type', 2],
      ['valid', 1],
      ['not-array', 1],
    ] as const);
    let body: unknown = events;
    if (kind === 'one-bad' && count > 0) events[rng.int(0, count - 1)] = { specversion: '1.0', id: 'x' };
    if (kind === 'non-objects')
      body = Array.from({ length: Math.max(1, count) }, () => rng.pick([1, 'x', null, [], true, [{}]]));
    if (kind === 'unknown-type') for (const e of events) e.type = 'fuzz.nothing';
    if (kind === 'valid') body = events.slice(0, 200);
    if (kind === 'not-array') body = rng.pick([{ events }, 'x', 12]);
    return {
      method: 'POST',
      target: '/events',
      headers: [...credentials(rng, target), ['content-type', 'application/cloudevents-batch+json']],
      body: toJson(body),
      route: routeName(route),
    };
  },

  /** Hostile JSON Schemas: boolean, evil regular expressions, $ref cycles, huge but legal, remote refs. */
  'schema-abuse'(rng, target) {
    const route = target.routes.find((r) => r.method === 'POST' && r.path === '/admin/schemas');
    if (!route) return GENERATORS['json-shape'](rng, target);
    const evil = rng.pick(EVIL_PATTERNS);
    const schema = rng.pick<() => unknown>([
      () => rng.pick([true, false]),
      () => ({ type: 'object', properties: { s: { type: 'string', pattern: evil } } }),
      () => ({ type: 'object', patternProperties: { [evil]: { type: 'string' } } }),
      () => ({ $ref: '#' }),
      () => ({ type: 'object', properties: { a: { $ref: '#' } } }),
      () => ({ $defs: { a: { $ref: '#/$defs/b' }, b: { $ref: '#/$defs/a' } }, $ref: '#/$defs/a' }),
      () => ({
        type: 'object',
        patternProperties: Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`^p${i}(a+)+$`, {}])),
      }),
      () => ({ anyOf: Array.from({ length: 20_000 }, () => ({ type: 'string' })) }),
      () => ({ enum: Array.from({ length: 50_000 }, (_, i) => i) }),
      () => ({
        $ref: rng.pick([
          'http://169.254.169.254/latest/meta-data',
          'file:///etc/passwd',
          'https://example.com/s.json',
        ]),
      }),
      () => ({ type: 'string', pattern: rng.pick(['[', '(?<=a)b', '\\p{L}+', '(a)\\1', '(?=a)', '\\']) }),
      () => ({ type: 'number', multipleOf: rng.pick([5e-324, 1e-320, 0.1]), minimum: -1e308 }),
      () => ({ type: 'string', minLength: 1e308, format: rng.pick(['regex', 'email', 'uri', 'nonsense']) }),
      () => ({ $schema: rng.pick(['http://json-schema.org/draft-04/schema#', 'https://evil.example/s']) }),
      () => ({ $dynamicRef: '#meta', $dynamicAnchor: 'meta' }),
      () => hostileValue(rng),
    ])();
    return jsonRequest(rng, target, route, {
      domain: rng.pick(['fuzzevil', target.known.domain, `fz${rng.int(0, 4)}`]),
      event: `e${rng.int(0, 4)}`,
      schema,
      compatibility: rng.pick(['NONE', 'NONE', 'BACKWARD']),
    });
  },

  /** Events aimed at the hostile schemas: strings the evil patterns backtrack on, deep data for $ref cycles. */
  'evil-events'(rng, target) {
    const route = target.routes.find((r) => r.path === '/events') ?? pickRoute(rng, target);
    const n = rng.int(12, 24);
    const evilText = `${'a'.repeat(n)}!`;
    const data = rng.pick<() => unknown>([
      () => ({ s: evilText }),
      () => ({ [evilText]: 'x' }),
      () => ({ s: `${'a'.repeat(n)}`, a: { a: { a: { a: {} } } } }),
      () => ({ a: deepJson(rng, 200) }),
    ])();
    return jsonRequest(rng, target, route, {
      ...cloudEvent(rng, target, data),
      type: `fuzzevil.e${rng.int(0, 4)}`,
    });
  },

  /** Subscriptions with reserved auth header names, amplifying mappings, huge filters, hostile URLs and secrets. */
  'subscription-abuse'(rng, target) {
    const routes = target.routes.filter(
      (r) => r.path.startsWith('/admin/subscriptions') && withBody(r) && !r.path.endsWith('rotate-secret'),
    );
    const route = routes.length > 0 ? rng.pick(routes) : pickRoute(rng, target, withBody);
    const body = plausibleBody(route, rng, target);
    const abuse = rng.pick<() => Record<string, unknown>>([
      () => ({ auth: { type: 'header', name: rng.pick(CONNECTION_HEADERS), value: rng.string(8) } }),
      () => ({
        auth: {
          type: 'header',
          name: 'x-api-key',
          value: rng.pick(['a\r\nb', ' padded ', 'ü€', 'x'.repeat(5000)]),
        },
      }),
      () => ({ auth: { type: 'bearer', token: rng.pick(['', 'x'.repeat(10_000), 'a\nb']) } }),
      () => ({ auth: { type: 'basic', username: 'a:b', password: rng.pick(['', 'ü€', 'x'.repeat(5000)]) } }),
      () => ({
        mapping: {
          mode: 'merge',
          rules: Array.from({ length: 200 }, (_, i) => ({ to: `k${i}`, from: '$data' })),
        },
      }),
      () => ({
        mapping: {
          rules: Array.from({ length: rng.pick([201, 5000]) }, (_, i) => ({ to: `k${i}`, value: i })),
        },
      }),
      () => ({
        mapping: { rules: [{ to: rng.pick(['__proto__.x', 'a..b', '', 'a.'.repeat(40)]), from: 'n' }] },
      }),
      () => ({
        filter: { n: { $in: Array.from({ length: rng.pick([1000, 1001, 100_000]) }, (_, i) => i) } },
      }),
      () => ({ filter: Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`f${i}`, i])) }),
      () => ({ filter: { $or: Array.from({ length: 300 }, (_, i) => ({ n: i })) } }),
      () => ({ filter: { 'a.b.c': { $regex: '^(a+)+$' } } }),
      () => ({
        url: rng.pick([
          'file:///etc/passwd',
          'http://169.254.169.254/latest/meta-data',
          'https://user:pass@hooks.example',
          'http://[::1]:80/x',
          'http://0x7f.1/x',
          'http://127.1/x',
          `${target.selfUrl}/events`,
          `https://${'a'.repeat(70)}.example/`,
          `https://example.com/${'x'.repeat(10_000)}`,
          'javascript:alert(1)',
          'https://ex😀.example/',
          'http://127.0.0.1:1/x',
          `${target.hookUrl}\r\nx: y`,
        ]),
      }),
      () => ({
        signing: { secret: rng.pick(['whsec_', 'whsec_!!!', `whsec_${'A'.repeat(10_000)}`, 'nope', '']) },
      }),
      () => ({
        retry: {
          maxAttempts: rng.pick([1e9, -1, 0.5]),
          scheduleSeconds: Array.from({ length: 1000 }, () => 1),
        },
      }),
      () => ({ version: rng.pick([0, -1, 1e9, '1', null]) }),
    ])();
    return jsonRequest(rng, target, route, { ...body, ...abuse });
  },

  /** Secret rotations, one after another, on the fuzz's subscription. */
  rotation(rng, target) {
    const route =
      target.routes.find((r) => r.path.endsWith('/rotate-secret')) ?? pickRoute(rng, target, withBody);
    const body = rng.weighted<unknown>([
      [{}, 6],
      [{ overlapSeconds: rng.pick([0, 1, 86400 * 365, -1, 1e12, 0.5]) }, 2],
      [{ secret: `whsec_${Buffer.from(rng.string(32)).toString('base64')}` }, 1],
      [{ secret: rng.pick(['whsec_x', 'x'.repeat(5000)]) }, 1],
    ]);
    const request = jsonRequest(rng, target, route, body);
    return rng.chance(0.95)
      ? { ...request, target: `/admin/subscriptions/${target.known.subscriptionId}/rotate-secret` }
      : request;
  },

  /** CloudEvents with non-Latin-1 and huge ids, odd types and sources, a thousand extensions, binary mode with odd headers. */
  'events-abuse'(rng, target) {
    const route = target.routes.find((r) => r.path === '/events') ?? pickRoute(rng, target);
    const event = cloudEvent(rng, target);
    if (rng.chance(0.3)) {
      // Binary mode: the attributes in ce-* headers, the data as the body.
      const headers: [string, string][] = [
        ...credentials(rng, target),
        ['content-type', rng.pick(['application/json', 'application/octet-stream', 'text/plain'])],
        ['ce-specversion', rng.pick(['1.0', '0.3', ''])],
        ['ce-id', rng.pick([`fz-${rng.string(10)}`, '\xfc\xe9', 'x'.repeat(3000), ''])],
        ['ce-source', rng.pick(['/fuzz', '', '\xff'])],
        ['ce-type', rng.pick([`${target.known.domain}.${target.known.event}`, 'fuzz', '..', '\xe9.\xe9'])],
      ];
      if (rng.chance(0.3))
        for (let i = 0; i < rng.pick([10, 300]); i++) headers.push([`ce-x${rng.string(6)}`, rng.string(10)]);
      return {
        method: 'POST',
        target: '/events',
        headers,
        body: rng.pick(['{"n":1}', '', 'not json', '[]']),
        route: routeName(route),
      };
    }
    const bend = rng.pick<() => Record<string, unknown>>([
      () => ({ id: `${rng.pick(NON_LATIN1)}-${rng.string(6)}` }),
      () => ({ id: 'x'.repeat(rng.pick([256, 10_000])) }),
      () => ({ source: rng.pick(['', 'x'.repeat(5000), '😀', 'http://[::1', '\u0000']) }),
      () => ({
        type: rng.pick(['fuzz', 'fuzz.created.v1', '..', `${'a.'.repeat(500)}b`, 'FUZZ.CREATED', '😀.x']),
      }),
      () => ({ time: rng.pick(['yesterday', '2024-13-45T99:99:99Z', '', 12]) }),
      () => ({ specversion: rng.pick(['0.3', '2.0', 1, null]) }),
      () => ({
        dataschema: rng.pick(['::', 'x'.repeat(5000), 'urn:fuzz:v99']),
        schemaversion: rng.pick([-1, 1e9, 'x']),
      }),
      () => ({ data_base64: rng.pick(['!!!', 'AAAA', '']), data: undefined }),
      () =>
        Object.fromEntries(
          Array.from({ length: rng.pick([100, 1000]) }, (_, i) => [`ext${i}`, rng.string(8)]),
        ),
      () => ({ [rng.pick(['Bad-Name', 'x'.repeat(100), 'ü'])]: 'v' }),
      () => ({ traceparent: rng.pick(['00-zz-yy-01', 'x'.repeat(5000)]), tracestate: 'a=1,'.repeat(500) }),
      () => ({ correlationid: rng.pick(['ü€', 'x'.repeat(5000), '\r\n']) }),
      () => ({
        datacontenttype: rng.pick(['text/xml', 'application/json; charset=ebcdic', '']),
        data: rng.string(20),
      }),
      () => ({ data: hostileValue(rng) }),
      () => ({}),
    ])();
    return jsonRequest(rng, target, route, { ...event, ...bend });
  },
};

/** Valid JSON of exactly `size` bytes (at least 10): `{"pad":"xxxx…"}`. */
function padded(size: number): Buffer {
  const body = Buffer.alloc(Math.max(size, 10), 'x');
  body.write('{"pad":"', 0);
  body.write('"}', body.length - 2);
  return body;
}
