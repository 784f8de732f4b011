/** The conformance suite of the bus port's topic administration; every bus engine runs it. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { TopicAdmin } from '../../src/common/ports/bus.ts';

export interface TopicAdminHarness {
  open(): Promise<TopicAdmin>;
  cleanup(): Promise<void>;
}

/** Registers the topic-administration suite for one engine. */
export function runTopicAdminConformance(
  engine: string,
  makeHarness: () => Promise<TopicAdminHarness>,
): void {
  describe(`bus topic admin conformance: ${engine}`, () => {
    let harness: TopicAdminHarness;
    let admin: TopicAdmin;
    const unique = `t${Date.now().toString(36)}`;
    before(async () => {
      harness = await makeHarness();
      admin = await harness.open();
    });
    after(async () => {
      await admin.close();
      await harness.cleanup();
    });

    test('ensureTopic creates a topic with the partitions asked for', async () => {
      const t = await admin.ensureTopic(`ingress.${unique}.created.v1`, { partitions: 3 });
      assert.deepEqual(t, { name: `ingress.${unique}.created.v1`, partitions: 3 });
      assert.deepEqual(await admin.describeTopic(t.name), t);
    });

    test('ensureTopic is idempotent and never shrinks a topic', async () => {
      const name = `ingress.${unique}.idem.v1`;
      await admin.ensureTopic(name, { partitions: 4 });
      const again = await admin.ensureTopic(name, { partitions: 2 });
      assert.equal(again.partitions, 4);
    });

    test('ensureTopic adds partitions when asked for more', async () => {
      const name = `ingress.${unique}.grow.v1`;
      await admin.ensureTopic(name, { partitions: 1 });
      assert.equal((await admin.ensureTopic(name, { partitions: 3 })).partitions, 3);
    });

    test('an illegal topic name is refused with a validation error', async () => {
      await assert.rejects(admin.ensureTopic('bad topic/name'), (err: unknown) => {
        assert.equal((err as { code?: string }).code, 'topic_name_invalid');
        return true;
      });
    });

    test('listTopics includes ensured topics in sorted order; unknown topics describe as undefined', async () => {
      const topics = (await admin.listTopics()).filter((n) => n.includes(unique));
      assert.deepEqual(topics, [...topics].sort());
      assert.ok(topics.includes(`ingress.${unique}.created.v1`));
      assert.equal(await admin.describeTopic(`missing.${unique}`), undefined);
    });

    test('topics survive closing and opening again', async () => {
      await admin.close();
      admin = await harness.open();
      assert.equal((await admin.describeTopic(`ingress.${unique}.created.v1`))?.partitions, 3);
    });
  });
}
