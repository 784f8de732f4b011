/**
 * Stopping the server while a client keeps its keep-alive connection busy: the answers given
 * meanwhile close their connections, and the stop ends (so the platform behind it is closed) instead
 * of waiting for as long as the client keeps sending.
 */
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { test } from 'node:test';
import { Logger } from '../../src/common/log.ts';
import { close, createNodeServer, listen } from '../../src/runtimes/server/http-server.ts';
import { startTestServer } from '../support/server.ts';

test('a stop while a publisher keeps its one keep-alive connection busy ends, and its answer during it says close', {
  timeout: 60_000,
}, async () => {
  const server = await startTestServer();
  const { port } = new URL(server.url);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  let sent = 0;
  let stopped: Promise<void> | undefined;
  // One request after the other on the one pooled connection. Each asks `100-continue`, so the
  // server's 100 says it has the request (the connection is busy, not idle) before the body goes.
  const one = () =>
    new Promise<string>((resolve) => {
      const req = request(
        {
          host: '127.0.0.1',
          port,
          agent,
          method: 'POST',
          path: '/events',
          headers: { 'content-length': '2', expect: '100-continue' },
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(String(res.headers.connection)));
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code}`));
      req.on('continue', () => {
        sent += 1;
        if (sent === 3) stopped = server.running.stop(); // while this request is in progress
        req.end('{}');
      });
    });
  const answers: string[] = [];
  do answers.push(await one());
  while (answers.at(-1) === 'keep-alive'); // before: the answers kept saying keep-alive, and the stop never ended
  await stopped;
  agent.destroy();
  assert.deepEqual(answers, ['keep-alive', 'keep-alive', 'close']);
});

test('a stop waits for a handler still at work after its connection was closed, before what follows closes under it', async () => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  let handling!: () => void;
  const started = new Promise<void>((resolve) => {
    handling = resolve;
  });
  const server = createNodeServer({
    handle: async () => {
      handling();
      await gate; // e.g. a registration waiting for its event's claim
      return { status: 204, headers: {}, body: undefined };
    },
    maxBodyBytes: 1024,
    logger: new Logger({ level: 'error', sink: { write: () => {} } }),
  });
  const port = await listen(server, 0, '127.0.0.1');
  const answer = fetch(`http://127.0.0.1:${port}/x`).then(
    () => 'answered',
    () => 'cut off',
  );
  await started;
  let closed = false;
  const closing = close(server, 50).then(() => {
    closed = true;
  });
  assert.equal(await answer, 'cut off', 'the connection was closed after the grace');
  assert.equal(closed, false, 'the close waits for the handler');
  release();
  await closing;
  assert.equal(closed, true);
});
