/** The bus messages and records the dispatcher makes from a task, and the reason of a final failure. */
import { HEADERS } from '../common/bus-headers.ts';
import { type DeliveryTask, serializeDeliveryTask } from '../common/delivery-task.ts';
import type { DeliveryRecord } from '../common/model.ts';
import type { BusMessage, ConsumedMessage } from '../common/ports/bus.ts';
import type { DeliveryResult } from '../common/ports/delivery-client.ts';
import { egressTopic } from '../common/topics.ts';
import { retryPlacement, retryTopicName } from './retry-math.ts';

/** Where tasks wait for a retry (or a deferral); the dispatcher reads these and the egress topics. */
export const RETRY_TOPIC_PREFIX = 'retry.dispatcher.';

/** The dead-letter reason of a final failure. */
export function failureReason(klass: string, result: DeliveryResult): string {
  if (klass === 'retry') return 'retries_exhausted';
  if (klass === 'gone') return 'endpoint_gone';
  return result.ok ? `http_${result.status}` : result.kind;
}

/** A new (PENDING) delivery record for a task. */
export function newDelivery(task: DeliveryTask, now: Date): DeliveryRecord {
  return {
    id: task.deliveryId,
    eventId: task.event.id,
    eventSource: task.event.source,
    eventType: task.event.type,
    subscriptionId: task.subscriptionId,
    partnerId: task.partnerId,
    status: 'PENDING',
    attempts: task.attempt,
    correlationId: task.event.correlationId,
    createdAt: now.toISOString(),
    updatedAt: now.toISOString(),
  };
}

/** The egress topic a task came from: its header once it has been on a retry tier, else the topic it was read from. */
export function originTopicOf(message: ConsumedMessage, task: DeliveryTask): string {
  const fromHeader = message.headers[HEADERS.originTopic];
  if (fromHeader) return fromHeader;
  if (!message.topic.startsWith('retry.')) return message.topic;
  const [domain, event] = task.event.type.split('.');
  return egressTopic(task.partnerId, domain ?? '', event ?? '');
}

/** The message that parks `task` on a retry tier until `delayMs` from now (see `retryPlacement`). */
export function retryMessage(
  message: ConsumedMessage,
  task: DeliveryTask,
  delayMs: number,
  now: number,
): BusMessage {
  const { tierMs, notBefore, dueAt } = retryPlacement(delayMs, now);
  return {
    topic: retryTopicName('dispatcher', tierMs),
    key: task.subscriptionId,
    value: serializeDeliveryTask(task),
    headers: { [HEADERS.originTopic]: originTopicOf(message, task), [HEADERS.dueAt]: String(dueAt) },
    notBefore,
  };
}
