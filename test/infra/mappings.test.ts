/**
 * The Kafka event source mappings: the static ones of the stack (processor ← retry.processor.30s,
 * dispatcher ← retry.dispatcher.due) with every setting the admin also gives the mappings it makes
 * at runtime (`mappingRequest`), and the shared settings themselves.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DLQ_TOPICS } from '../../src/common/dead-letter-sink.ts';
import { PROCESSOR_RETRY_TOPIC } from '../../src/processor/retry.ts';
import { DISPATCHER_DUE_TOPIC } from '../../src/runtimes/lambda/lambda-bus.ts';
import {
  consumerGroupId,
  MAPPING_SETTINGS,
  mappingRequest,
  STATIC_MAPPINGS,
  staticPollerGroup,
} from '../../src/runtimes/lambda/mapping-settings.ts';
import { logicalId, resourcesOf, synthesized } from './support.ts';

const { stack, json } = synthesized();
const mappings = Object.values(resourcesOf(json, 'AWS::Lambda::EventSourceMapping'));
const mappingOf = (topic: string) =>
  mappings.find((m) => (m.Properties!.Topics as string[])[0] === topic)?.Properties;

describe('event source mappings in the stack', () => {
  it('two static mappings: the processor on its retry topic, the dispatcher on the due-retry topic', () => {
    assert.equal(mappings.length, 2);
    assert.deepStrictEqual(mappings.map((m) => m.Properties!.Topics).toSorted(), [
      ['retry.dispatcher.due'],
      ['retry.processor.30s'],
    ]);
  });

  for (const [stage, topic, dlq] of [
    ['processor', 'retry.processor.30s', 'kafka://dlq.processor'],
    ['dispatcher', 'retry.dispatcher.due', 'kafka://dlq.dispatcher'],
  ] as const) {
    it(`${stage} ← ${topic}: batch 100, partial batch response, provisioned pollers, bounded retries, DLQ topic`, () => {
      const p = mappingOf(topic);
      assert.ok(p, `a mapping on ${topic}`);
      assert.deepStrictEqual(p, {
        EventSourceArn: { Ref: 'MskClusterArn' },
        FunctionName: { 'Fn::GetAtt': [logicalId(stack, stack.functions[stage]), 'Arn'] },
        Topics: [topic],
        BatchSize: 100,
        MaximumBatchingWindowInSeconds: 1,
        StartingPosition: 'TRIM_HORIZON',
        FunctionResponseTypes: ['ReportBatchItemFailures'],
        ProvisionedPollerConfig: {
          MinimumPollers: 1,
          MaximumPollers: 2,
          PollerGroupName: staticPollerGroup('webhooks'),
        },
        MaximumRetryAttempts: 5,
        MaximumRecordAgeInSeconds: 86_400,
        DestinationConfig: { OnFailure: { Destination: dlq } },
        AmazonManagedKafkaEventSourceConfig: { ConsumerGroupId: `webhooks-${stage}-${topic}` },
      });
    });

    it(`${stage} ← ${topic}: the very request the admin sends for a runtime topic`, () => {
      const { EventSourceArn: _arn, FunctionName: _fn, ...settings } = mappingOf(topic)!;
      assert.deepStrictEqual(settings, { ...mappingRequest(stage, topic, staticPollerGroup('webhooks')) });
    });
  }

  it('MSK IAM auth: no SASL/SCRAM secret, no self-managed source', () => {
    for (const m of mappings) {
      assert.equal(m.Properties!.SourceAccessConfigurations, undefined);
      assert.equal(m.Properties!.SelfManagedEventSource, undefined);
    }
  });
});

describe('mapping settings (shared with the admin function)', () => {
  it('the static topics are the pipeline’s constants, and each mapping’s DLQ is its stage’s DLQ topic', () => {
    assert.deepStrictEqual(STATIC_MAPPINGS, [
      { stage: 'processor', topic: PROCESSOR_RETRY_TOPIC },
      { stage: 'dispatcher', topic: DISPATCHER_DUE_TOPIC },
    ]);
    for (const stage of ['processor', 'dispatcher'] as const) {
      assert.equal(
        mappingRequest(stage, 'ingress.a.b.v1', 'g').DestinationConfig.OnFailure.Destination,
        `kafka://${DLQ_TOPICS[stage]}`,
      );
    }
  });

  it('values within what Lambda accepts for Kafka in provisioned mode', () => {
    const s = MAPPING_SETTINGS;
    assert.ok(s.batchSize >= 1 && s.batchSize <= 10_000);
    assert.ok(s.provisionedPollers.minimum >= 1 && s.provisionedPollers.minimum <= 200);
    assert.ok(
      s.provisionedPollers.maximum >= s.provisionedPollers.minimum && s.provisionedPollers.maximum <= 2000,
    );
    assert.ok(s.maximumRetryAttempts >= 0 && s.maximumRetryAttempts <= 10_000, 'bounded retries');
    assert.ok(s.maximumRecordAgeSeconds >= 60 && s.maximumRecordAgeSeconds <= 604_800, 'bounded record age');
  });

  it('consumer group ids: webhooks-<stage>-<topic>, unique, at most 200 characters of the allowed alphabet', () => {
    const part = 'p'.repeat(64);
    const longTopic = `egress.${part}.${part}.${part}`;
    const other = `egress.${part}.${part}.${'q'.repeat(64)}`;
    assert.equal(
      consumerGroupId('processor', 'ingress.orders.created.v1'),
      'webhooks-processor-ingress.orders.created.v1',
    );
    for (const id of [consumerGroupId('dispatcher', longTopic), consumerGroupId('dispatcher', other)]) {
      assert.ok(id.length <= 200, `${id.length} characters`);
      assert.match(id, /^webhooks-dispatcher-[a-zA-Z0-9\-/*:_+=.@]+$/);
    }
    assert.notEqual(consumerGroupId('dispatcher', longTopic), consumerGroupId('dispatcher', other));
    assert.notEqual(consumerGroupId('processor', 'retry.x'), consumerGroupId('dispatcher', 'retry.x'));
  });

  it('mappingRequest returns a fresh object each time (callers add the cluster and the function)', () => {
    const a = mappingRequest('dispatcher', 'egress.p.d.e', 'g');
    a.Topics.push('other');
    assert.deepStrictEqual(mappingRequest('dispatcher', 'egress.p.d.e', 'g').Topics, ['egress.p.d.e']);
  });
});
