/** Names of things that become topic names, and the topic names derived from them. */

/** Domains, events and partner ids become parts of topic names, so they use a safe alphabet. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/** What a valid name looks like, for error messages. */
export const NAME_RULE = '1 to 64 characters of A-Z a-z 0-9 _ -, starting with a letter or digit';

/** `ingress.<domain>.<event>.v<version>`: where producers' events of one schema version land. */
export function ingressTopic(domain: string, event: string, version: number): string {
  return `ingress.${domain}.${event}.v${version}`;
}

/** `egress.<partnerId>.<domain>.<event>`: delivery tasks for one partner and event. */
export function egressTopic(partnerId: string, domain: string, event: string): string {
  return `egress.${partnerId}.${domain}.${event}`;
}
