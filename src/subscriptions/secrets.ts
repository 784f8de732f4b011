/**
 * Sealing a subscription's secrets at rest and rotating signing secrets. Each ciphertext is bound
 * to its subscription (AES-GCM associated data), so ciphertexts cannot be swapped between rows.
 */
import type { SealedDeliveryAuth, SigningSecretRecord, SubscriptionRecord } from '../common/model.ts';
import type { SecretBox } from '../common/secret-box.ts';
import type { DeliveryAuthInput } from './input.ts';

/**
 * The most signing secrets a subscription has at once: the current one and nine rotated out but
 * still in their overlap. Every one signs each delivery (`v1,<sig>` ≈ 48 bytes apiece), so without a
 * cap a burst of rotations grew `webhook-signature` past the 16 KiB a Node.js server accepts in
 * headers (401 secrets: 19.5 KB), and every delivery failed.
 */
export const MAX_SIGNING_SECRETS = 10;

/** The associated data binding a sealed signing secret to its subscription. */
export const signingAd = (subscriptionId: string) => `subscription:${subscriptionId}:signing`;
/** The associated data binding sealed delivery credentials to their subscription. */
export const authAd = (subscriptionId: string) => `subscription:${subscriptionId}:auth`;

/** A sealed signing-secret record. */
export function sealSigningSecret(
  box: SecretBox,
  subscriptionId: string,
  secret: string,
  now: Date,
): SigningSecretRecord {
  return { sealed: box.seal(secret, signingAd(subscriptionId)), createdAt: now.toISOString() };
}

/** Sealed delivery credentials; the type (and header name) stay readable. */
export function sealAuth(
  box: SecretBox,
  subscriptionId: string,
  auth: DeliveryAuthInput,
): SealedDeliveryAuth {
  return {
    type: auth.type,
    ...(auth.type === 'header' ? { headerName: auth.name } : {}),
    sealed: box.seal(JSON.stringify(auth), authAd(subscriptionId)),
  };
}

/** The delivery credentials of a subscription, decrypted (for the dispatcher). */
export function openAuth(box: SecretBox, subscription: SubscriptionRecord): DeliveryAuthInput | undefined {
  if (!subscription.auth) return undefined;
  return JSON.parse(box.open(subscription.auth.sealed, authAd(subscription.id))) as DeliveryAuthInput;
}

/** The signing secrets valid at `now`, newest first, decrypted (uncached; the dispatcher uses CredentialCache). */
export function activeSigningSecrets(box: SecretBox, subscription: SubscriptionRecord, now: Date): string[] {
  return new CredentialCache(box, 1).secrets(subscription, now);
}

/**
 * The secret list after a rotation: the new secret first; secrets still valid keep working until
 * `now + overlapSeconds` (or their own earlier expiry); expired ones are dropped. Beyond
 * `MAX_SIGNING_SECRETS` the oldest are retired at once: a rotation always succeeds — it is what
 * answers a leaked secret — and a partner still verifying with a secret older than the newest ten
 * has missed ten rotations already.
 */
export function rotateSecrets(
  current: readonly SigningSecretRecord[],
  fresh: SigningSecretRecord,
  now: Date,
  overlapSeconds: number,
): SigningSecretRecord[] {
  const overlapEnd = now.getTime() + overlapSeconds * 1000;
  const kept = current
    .filter((s) => s.expiresAt === undefined || Date.parse(s.expiresAt) > now.getTime())
    .map((s) => {
      const expires = Math.min(s.expiresAt === undefined ? overlapEnd : Date.parse(s.expiresAt), overlapEnd);
      return { ...s, expiresAt: new Date(expires).toISOString() };
    })
    .filter((s) => Date.parse(s.expiresAt) > now.getTime());
  return [fresh, ...kept].slice(0, MAX_SIGNING_SECRETS);
}

/**
 * Decrypted credentials per subscription version, so the dispatcher does not run AES-GCM on every
 * delivery. Keyed by id and revision: any change to a subscription (rotation included) is a new entry.
 */
export class CredentialCache {
  readonly #box: SecretBox;
  readonly #entries = new Map<
    string,
    { secrets: Array<{ secret: string; expiresAt?: number }>; auth?: DeliveryAuthInput }
  >();
  readonly #max: number;

  constructor(box: SecretBox, max = 10_000) {
    this.#box = box;
    this.#max = max;
  }

  /**
   * The signing secrets valid at `now`, newest first; at most `MAX_SIGNING_SECRETS` (a subscription
   * rotated more often before the cap existed signs with its newest ones only).
   */
  secrets(sub: SubscriptionRecord, now: Date): string[] {
    if (!sub.signing.enabled) return [];
    return this.#entry(sub)
      .secrets.filter((s) => s.expiresAt === undefined || s.expiresAt > now.getTime())
      .slice(0, MAX_SIGNING_SECRETS)
      .map((s) => s.secret);
  }

  auth(sub: SubscriptionRecord): DeliveryAuthInput | undefined {
    return this.#entry(sub).auth;
  }

  #entry(sub: SubscriptionRecord) {
    const key = `${sub.id}:${sub.revision}`;
    let entry = this.#entries.get(key);
    if (!entry) {
      entry = {
        secrets: sub.signing.secrets.map((s) => ({
          secret: this.#box.open(s.sealed, signingAd(sub.id)),
          ...(s.expiresAt ? { expiresAt: Date.parse(s.expiresAt) } : {}),
        })),
        ...(sub.auth ? { auth: openAuth(this.#box, sub) } : {}),
      };
      if (this.#entries.size >= this.#max) this.#entries.delete(this.#entries.keys().next().value as string);
      this.#entries.set(key, entry);
    }
    return entry;
  }
}
