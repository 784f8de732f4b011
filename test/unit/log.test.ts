import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ValidationError } from '../../src/common/errors.ts';
import type { LogLevel, LogSink } from '../../src/common/log.ts';
import {
  currentCorrelationId,
  Logger,
  redact,
  registerSecret,
  withCorrelationId,
} from '../../src/common/log.ts';

const FIXED = new Date('2025-01-02T03:04:05.678Z');

function capture(level: LogLevel = 'info', bindings?: Record<string, unknown>) {
  const written: string[] = [];
  const sink: LogSink = { write: (line) => written.push(line) };
  const logger = new Logger({ level, sink, clock: () => FIXED, ...(bindings ? { bindings } : {}) });
  const entries = () => written.map((l) => JSON.parse(l) as Record<string, unknown>);
  return { logger, written, entries };
}

describe('Logger', () => {
  it('writes one JSON object per line with level, time and msg first', () => {
    const { logger, written } = capture();

    logger.info('delivered', { status: 200 });

    assert.deepEqual(written, [
      '{"level":"info","time":"2025-01-02T03:04:05.678Z","msg":"delivered","status":200}',
    ]);
  });

  it('drops lines below its level', () => {
    const { logger, entries } = capture('warn');

    logger.debug('d');
    logger.info('i');
    logger.warn('w');
    logger.error('e');

    assert.deepEqual(
      entries().map((e) => e.level),
      ['warn', 'error'],
    );
  });

  it('defaults to level info', () => {
    const written: string[] = [];
    const logger = new Logger({ sink: { write: (l) => written.push(l) } });

    logger.debug('hidden');
    logger.info('shown');

    assert.equal(written.length, 1);
  });

  it('does not let fields overwrite level, time or msg', () => {
    const { logger, entries } = capture();

    logger.info('real', { level: 'error', time: 'never', msg: 'fake', extra: 1 });

    assert.deepEqual(entries()[0], { level: 'info', time: FIXED.toISOString(), msg: 'real', extra: 1 });
  });

  it('adds child bindings to every line, the child winning on a clash', () => {
    const { logger, entries } = capture('info', { component: 'dispatcher', region: 'eu' });

    logger.child({ partnerId: 'acme', region: 'us' }).info('sent', { attempt: 2 });

    assert.deepEqual(entries()[0], {
      level: 'info',
      time: FIXED.toISOString(),
      msg: 'sent',
      component: 'dispatcher',
      region: 'us',
      partnerId: 'acme',
      attempt: 2,
    });
  });

  it('leaves the parent unchanged when a child is made', () => {
    const { logger, entries } = capture();

    logger.child({ partnerId: 'acme' });
    logger.info('plain');

    assert.equal(entries()[0]?.partnerId, undefined);
  });
});

describe('correlation ids', () => {
  it('are carried across await inside withCorrelationId', async () => {
    const { logger, entries } = capture();

    await withCorrelationId('corr-1', async () => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      logger.info('after await');
    });

    assert.equal(entries()[0]?.correlationId, 'corr-1');
  });

  it('are isolated between concurrent contexts', async () => {
    const { logger, entries } = capture();

    // a is suspended until b has logged: both contexts are live at once, and they interleave.
    let bLogged!: () => void;
    const afterB = new Promise<void>((resolve) => {
      bLogged = resolve;
    });
    await Promise.all([
      withCorrelationId('a', async () => {
        await afterB;
        logger.info('from a');
      }),
      withCorrelationId('b', async () => {
        await new Promise((resolve) => setImmediate(resolve));
        logger.info('from b');
        bLogged();
      }),
    ]);

    const byMsg = Object.fromEntries(entries().map((e) => [e.msg, e.correlationId]));
    assert.deepEqual(byMsg, { 'from a': 'a', 'from b': 'b' });
  });

  it('are absent outside any context', () => {
    const { logger, entries } = capture();

    logger.info('outside');

    assert.equal(currentCorrelationId(), undefined);
    assert.equal('correlationId' in entries()[0]!, false);
  });

  it('return the value of the wrapped function', () => {
    assert.equal(
      withCorrelationId('x', () => currentCorrelationId()),
      'x',
    );
  });
});

describe('redaction', () => {
  it('replaces secret-looking keys at any depth', () => {
    const input = {
      url: 'https://partner.example/hook',
      headers: { Authorization: 'Bearer abc', 'Set-Cookie': 'sid=1', 'x-api-key': 'k' },
      partner: { auth: [{ clientSecret: 's', apiKey: 'k', api_key: 'k', PASSWORD: 'p', refreshToken: 't' }] },
      credentials: { user: 'u' },
    };

    assert.deepEqual(redact(input), {
      url: 'https://partner.example/hook',
      headers: { Authorization: '[REDACTED]', 'Set-Cookie': '[REDACTED]', 'x-api-key': '[REDACTED]' },
      partner: {
        auth: [
          {
            clientSecret: '[REDACTED]',
            apiKey: '[REDACTED]',
            api_key: '[REDACTED]',
            PASSWORD: '[REDACTED]',
            refreshToken: '[REDACTED]',
          },
        ],
      },
      credentials: '[REDACTED]',
    });
  });

  it('replaces whsec_ strings under any key', () => {
    assert.deepEqual(redact({ note: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', list: ['ok', 'whsec_abc'] }), {
      note: '[REDACTED]',
      list: ['ok', '[REDACTED]'],
    });
  });

  it('replaces whsec_ secrets embedded in longer strings', () => {
    assert.equal(redact('rotated to whsec_abc+/= today'), 'rotated to [REDACTED] today');
  });

  it('replaces admin tokens, API keys and Authorization credentials wherever they appear', () => {
    const adminToken = 'wha_Zk3v0cT9s8d7f6g5h4j3k2l1q0w9e8r7t6y5u4i3o2p';
    const apiKey = 'whk_AAAAbbbbCCCCddddEEEEffffGGGGhhhhIIIIjjjjKKK';
    const out = JSON.stringify(
      redact({
        msg: `request with ${adminToken} failed`,
        list: [`key=${apiKey};`],
        header: 'got "authorization: Bearer abcdefghijklmnop" from the proxy',
        basic: 'Basic dXNlcjpwYXNzd29yZA==',
        url: 'https://x.test/?q=1',
      }),
    );
    for (const secret of [adminToken, apiKey, 'abcdefghijklmnop', 'dXNlcjpwYXNzd29yZA==']) {
      assert.ok(!out.includes(secret), `${secret} redacted in ${out}`);
    }
    assert.ok(out.includes('Bearer [REDACTED]'), 'the scheme stays, to show what was there');
    assert.ok(out.includes('https://x.test/?q=1'), 'ordinary text stays');
  });

  it('replaces credentials right after a percent-escape, as in a logged URL (`%20whk_…`, `Bearer%20…`)', () => {
    const apiKey = `whk_${'A'.repeat(43)}`;
    const secret = `whsec_${'B'.repeat(32)}`;
    const urls = [
      `/admin/deliveries?authorization=Bearer%20${apiKey}`,
      `/admin/deliveries?h=Authorization%3A%20${apiKey}`,
      `/admin/deliveries?k=%22${secret}%22`,
      `/x/${encodeURIComponent(`"${apiKey}`)}`,
      '/admin/deliveries?authorization=Bearer%20opaque-token-1234',
      '/admin/deliveries?authorization=Bearer+opaque-token-1234',
    ];
    const out = JSON.stringify(redact({ urls }));
    for (const value of [apiKey, secret, 'opaque-token-1234'])
      assert.ok(!out.includes(value), `${value} in ${out}`);
    // A letter before the prefix makes it part of another word: not a credential.
    assert.equal(redact('foowhk_bar'), 'foowhk_bar');
  });

  it('replaces a registered secret (a configured admin token of any shape) in any string', () => {
    registerSecret('plain-configured-token-42');
    const { logger, written } = capture();
    logger.warn('token plain-configured-token-42 refused', { echo: ['x plain-configured-token-42 y'] });
    assert.ok(!written[0]!.includes('plain-configured-token-42'), written[0]);
    registerSecret('short');
    assert.equal(redact('a short word'), 'a short word', 'values under 8 characters are not registered');
  });

  it('does not modify its input', () => {
    const input = { token: 't' };

    redact(input);

    assert.deepEqual(input, { token: 't' });
  });

  it('survives cycles', () => {
    const input: Record<string, unknown> = { a: 1 };
    input.self = input;

    assert.deepEqual(redact(input), { a: 1, self: '[Circular]' });
  });

  it('applies to fields, bindings and the message of every line', () => {
    const { logger, written } = capture('info', { password: 'hunter2' });

    logger
      .child({ deep: { apiKey: 'k1' } })
      .info('created whsec_c2VjcmV0', { secret: 'whsec_x', nested: { token: 't' } });

    const line = written[0]!;
    for (const secret of ['hunter2', 'k1', 'whsec_', '"t"'])
      assert.equal(line.includes(secret), false, secret);
    assert.deepEqual(JSON.parse(line), {
      level: 'info',
      time: FIXED.toISOString(),
      msg: 'created [REDACTED]',
      password: '[REDACTED]',
      deep: { apiKey: '[REDACTED]' },
      secret: '[REDACTED]',
      nested: { token: '[REDACTED]' },
    });
  });
});

describe('error serialisation', () => {
  it('writes name, message, code and cause, without stack above debug', () => {
    const { logger, entries } = capture('info');
    const cause = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    const err = new ValidationError('schema_invalid', 'bad schema', { cause });

    logger.error('failed', { err });

    assert.deepEqual(entries()[0]?.err, {
      name: 'ValidationError',
      message: 'bad schema',
      code: 'schema_invalid',
      cause: { name: 'Error', message: 'connect ECONNREFUSED', code: 'ECONNREFUSED' },
    });
  });

  it('includes the stack when the logger is at debug level', () => {
    const { logger, entries } = capture('debug');

    logger.error('failed', { err: new Error('boom') });

    const err = entries()[0]!.err as Record<string, unknown>;
    assert.match(String(err.stack), /^Error: boom\n\s+at /);
  });

  it('keeps the details of platform errors', () => {
    const { logger, entries } = capture();
    const err = new ValidationError('event_invalid', 'bad event', {
      details: [{ field: 'type', message: 'required' }],
    });

    logger.warn('rejected', { err });

    assert.deepEqual((entries()[0]!.err as Record<string, unknown>).details, [
      { field: 'type', message: 'required' },
    ]);
  });

  it('redacts a credential whose +, / and = come percent-encoded or escaped, to its end', () => {
    const url = 'GET /admin/subscriptions?secret=whsec_MfKQ9r8G%2BTwjUPD8%2FILPZIo2La%3D&x=1';
    assert.equal(redact(url), 'GET /admin/subscriptions?secret=[REDACTED]&x=1');
    assert.equal(redact('{"x":"whsec_MfKQ9r8G\\/ILPZIo2LaLaSw"}'), '{"x":"[REDACTED]"}');
    assert.equal(redact('authorization=Bearer%20abc%2Bdef%2Fghijk'), 'authorization=Bearer%20[REDACTED]');
  });

  it('redacts secrets inside error messages', () => {
    const { logger, written } = capture();

    logger.error('failed', { err: new Error('bad secret whsec_abc') });

    assert.equal(written[0]!.includes('whsec_'), false);
  });
});

describe('sink failures', () => {
  it('do not propagate to the caller', () => {
    const logger = new Logger({
      sink: {
        write() {
          throw new Error('disk full');
        },
      },
    });

    assert.doesNotThrow(() => logger.error('still fine'));
  });
});
