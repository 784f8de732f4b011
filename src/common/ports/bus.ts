/**
 * The bus port's topic administration. The embedded log and Kafka implement it; the conformance
 * suite in `test/conformance/bus-admin.ts` runs against each.
 */

export interface TopicDescription {
  name: string;
  partitions: number;
}

export interface TopicAdmin {
  readonly engine: string;
  /**
   * Creates the topic if it does not exist; an existing topic keeps its data. If it exists with
   * fewer partitions than asked, partitions are added (never removed). Returns the topic as it is.
   */
  ensureTopic(name: string, options?: { partitions?: number }): Promise<TopicDescription>;
  describeTopic(name: string): Promise<TopicDescription | undefined>;
  /** Topic names, sorted. */
  listTopics(): Promise<string[]>;
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Kafka's legal topic names: 1..249 chars of [a-zA-Z0-9._-], not "." or "..". */
export function isValidTopicName(name: string): boolean {
  return /^[a-zA-Z0-9._-]{1,249}$/.test(name) && name !== '.' && name !== '..';
}
