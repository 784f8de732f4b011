/**
 * The project's own Kafka broker (tools/kafka/broker.ts) against the client the Kafka bus will use
 * (@platformatic/kafka): a real Apache Kafka 4.4 broker in KRaft mode takes an idempotent produce
 * and hands it to a consumer group; its SASL_SSL listener accepts SCRAM-SHA-256 and -512 with the
 * right password and refuses a wrong one with an authentication error.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Admin, Consumer, Producer, stringDeserializers, stringSerializers } from '@platformatic/kafka';
import { type KafkaBroker, startKafkaBroker } from '../../tools/kafka/broker.ts';

const USER = { username: 'webhooks', password: 'scram-test-password' };

describe('the test Kafka broker', () => {
  let broker: KafkaBroker;
  before(async () => {
    broker = await startKafkaBroker({ scram: [USER] });
  });
  after(() => broker?.stop());

  test('an idempotent produce (acks=all) is consumed by a group from the committed start', async () => {
    const admin = new Admin({ clientId: 'smoke-admin', bootstrapBrokers: [broker.bootstrap] });
    await admin.createTopics({ topics: ['smoke'], partitions: 2, replicas: 1 });
    await admin.close();
    const producer = new Producer({
      clientId: 'smoke-producer',
      bootstrapBrokers: [broker.bootstrap],
      idempotent: true,
      retries: 3,
      serializers: stringSerializers,
    });
    await producer.send({ messages: [{ topic: 'smoke', key: 'k', value: 'hello' }] });
    await producer.close();
    const consumer = new Consumer({
      clientId: 'smoke-consumer',
      groupId: 'smoke-group',
      bootstrapBrokers: [broker.bootstrap],
      autocommit: false,
      deserializers: stringDeserializers,
    });
    const stream = await consumer.consume({ topics: ['smoke'], mode: 'committed', fallbackMode: 'earliest' });
    let value: string | undefined;
    for await (const message of stream) {
      value = message.value;
      await message.commit();
      break;
    }
    await stream.close();
    await consumer.close();
    assert.equal(value, 'hello');
  });

  for (const mechanism of ['SCRAM-SHA-256', 'SCRAM-SHA-512'] as const) {
    test(`SASL_SSL with ${mechanism}: the right password connects, a wrong one is refused`, async () => {
      const sasl = broker.sasl!;
      const admin = (password: string) =>
        new Admin({
          clientId: 'smoke-sasl',
          bootstrapBrokers: [sasl.bootstrap],
          tls: { ca: sasl.caPem },
          sasl: { mechanism, username: USER.username, password },
          retries: 0,
        });
      const good = admin(USER.password);
      const topics = await good.listTopics();
      assert.ok(Array.isArray(topics));
      await good.close();
      const bad = admin('wrong-password');
      await assert.rejects(bad.listTopics(), (err: Error) => {
        const text = `${err.message} ${JSON.stringify((err as { errors?: unknown }).errors ?? '')} ${String((err as { cause?: unknown }).cause ?? '')}`;
        return /authentica|SASL|credentials/i.test(text);
      });
      await bad.close();
    });
  }
});
