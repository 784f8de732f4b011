/**
 * The Kafka consumer when the broker fails at the wrong moment, with the client's calls replaced
 * (a broker cannot be made to fail exactly between a rebalance and the offsets read after it):
 * errors are reported to onError, never left as a rejection nobody handles — which would end the
 * process.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Consumer } from '@platformatic/kafka';
import { KafkaConsumer } from '../../src/engines/kafka/consumer.ts';
import { waitFor } from '../support/wait.ts';

const prototype = Consumer.prototype as unknown as Record<string, unknown>;
const original = {
  ...Object.fromEntries(
    ['joinGroup', 'listCommittedOffsets', 'metadata', 'close'].map((k) => [k, prototype[k]]),
  ),
};
after(() => Object.assign(prototype, original));

test('offsets that cannot be read after a rebalance, then a join that fails too: reported, and the process goes on', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  let joins = 0;
  prototype.joinGroup = function (this: Consumer) {
    joins += 1;
    if (joins === 1) {
      setImmediate(() =>
        this.emit('consumer:group:join', { assignments: [{ topic: 't.a', partitions: [0] }] }),
      );
      return Promise.resolve('member');
    }
    return Promise.reject(new Error('broker down (joinGroup)'));
  };
  prototype.listCommittedOffsets = () => Promise.reject(new Error('coordinator not available'));
  prototype.close = () => Promise.resolve();
  // One partition, without a leader (so nothing is fetched).
  prototype.metadata = () =>
    Promise.resolve({ topics: new Map([['t.a', { partitionsCount: 1, partitions: [{ leader: -1 }] }]]) });
  const errors: string[] = [];
  const consumer = new KafkaConsumer(
    {
      settings: { brokers: ['127.0.0.1:1'] },
      listTopics: async () => ['t.a'],
      watchTopics: () => () => {},
      finished() {},
    } as unknown as ConstructorParameters<typeof KafkaConsumer>[0],
    {
      group: 'g',
      topicPrefixes: ['t.'],
      handler: async () => undefined,
      onError: (e) => errors.push(String(e)),
    },
  );
  await waitFor('the second join', () => joins >= 2 && errors.some((e) => e.includes('joinGroup')));
  // Turns for a rejection nobody handles to be reported.
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  process.off('unhandledRejection', onUnhandled);
  consumer.kill();
  assert.deepEqual(unhandled, []);
  assert.ok(
    errors.some((e) => e.includes('coordinator not available')),
    errors.join('\n'),
  );
});
