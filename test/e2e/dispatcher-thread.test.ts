/** The dispatcher in its own worker thread: it is restarted after a crash and nothing is lost. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { orderEvent, publish, startPipelineServer, subscribe } from '../support/pipeline.ts';
import { startReceiver, type TestReceiver } from '../support/receiver.ts';
import type { TestServer } from '../support/server.ts';

describe('dispatcher thread', () => {
  let server: TestServer;
  let receiver: TestReceiver;
  before(async () => {
    server = await startPipelineServer();
    receiver = await startReceiver();
  });
  after(async () => {
    await server.stop();
    await receiver.close();
  });

  test('a crashed dispatcher thread is started again and delivers what was published meanwhile', async () => {
    const thread = server.running.platform.dispatcherThread;
    assert.ok(thread, 'the dispatcher runs in its own thread');
    await subscribe(server, receiver);
    await publish(server, orderEvent({ amount: 1 }));
    await receiver.waitFor(1);
    await thread.kill();
    const ready = await server.request('GET', '/readyz', undefined, { token: null });
    assert.equal(ready.status, 503);
    assert.match(ready.body.checks.dispatcher, /^unavailable/);
    for (let i = 2; i <= 5; i++) await publish(server, orderEvent({ amount: i }));
    const got = await receiver.waitFor(5, 10_000);
    assert.deepEqual(got.map((r) => r.json.amount).sort(), [1, 2, 3, 4, 5]);
    assert.equal(thread.starts, 2);
    assert.equal((await server.request('GET', '/readyz', undefined, { token: null })).status, 200);
  });
});
