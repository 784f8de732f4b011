/**
 * Sealing a subscription's secrets at rest and rotating signing secrets. Each ciphertext is bound
 * to its subscription (AES-GCM associated data; with KMS also the data key's encryption context),
 * so ciphertexts cannot be swapped between rows. Sealing is asynchronous: the sealer may be KMS.
 */
import type { SealedDeliveryAuth, SigningSecretRecord, SubscriptionRecord } from '../common/model.ts';
import type { SecretSealer } from '../common/secret-box.ts';
import { TtlCache } from '../common/ttl-cache.ts';
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
export async function sealSigningSecret(
  sealer: SecretSealer,
  subscriptionId: string,
  secret: string,
  now: Date,
): Promise<SigningSecretRecord> {
  return { sealed: await sealer.seal(secret, signingAd(subscriptionId)), createdAt: now.toISOString() };
}

/** Sealed delivery credentials; the type (and header name) stay readable. */
export async function sealAuth(
  sealer: SecretSealer,
  subscriptionId: string,
  auth: DeliveryAuthInput,
): Promise<SealedDeliveryAuth> {
  return {
    type: auth.type,
    ...(auth.type === 'header' ? { headerName: auth.name } : {}),
    sealed: await sealer.seal(JSON.stringify(auth), authAd(subscriptionId)),
  };
}

/** The delivery credentials of a subscription, decrypted (for the dispatcher). */
export async function openAuth(
  sealer: SecretSealer,
  subscription: SubscriptionRecord,
): Promise<DeliveryAuthInput | undefined> {
  if (!subscription.auth) return undefined;
  return JSON.parse(
    await sealer.open(subscription.auth.sealed, authAd(subscription.id)),
  ) as DeliveryAuthInput;
}

/** The signing secrets valid at `now`, newest first, decrypted (uncached; the dispatcher uses CredentialCache). */
export function activeSigningSecrets(
  sealer: SecretSealer,
  subscription: SubscriptionRecord,
  now: Date,
): Promise<string[]> {
  return new CredentialCache(sealer, 1).secrets(subscription, now);
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

/** The opened credentials of one subscription version. */
interface OpenedCredentials {
  secrets: Array<{ secret: string; expiresAt?: number }>;
  auth?: DeliveryAuthInput;
}

/**
 * Decrypted credentials per subscription version, so the dispatcher does not run AES-GCM (or call
 * KMS) on every delivery. Keyed by id and revision: any change to a subscription (rotation included)
 * is a new entry. Concurrent deliveries of a version not opened yet share one opening; a failed one
 * (KMS unreachable, a damaged value) is not kept, so the next delivery tries again.
 */
export class CredentialCache {
  readonly #sealer: SecretSealer;
  /** Never stale (a change is a new revision, so a new key): kept until pushed out. */
  readonly #entries: TtlCache<string, OpenedCredentials>;

  constructor(sealer: SecretSealer, max = 10_000) {
    this.#sealer = sealer;
    this.#entries = new TtlCache({ ttlMs: Number.POSITIVE_INFINITY, maxEntries: max });
  }

  /**
   * The signing secrets valid at `now`, newest first; at most `MAX_SIGNING_SECRETS` (a subscription
   * rotated more often before the cap existed signs with its newest ones only).
   */
  async secrets(sub: SubscriptionRecord, now: Date): Promise<string[]> {
    if (!sub.signing.enabled) return [];
    return (await this.#entry(sub)).secrets
      .filter((s) => s.expiresAt === undefined || s.expiresAt > now.getTime())
      .slice(0, MAX_SIGNING_SECRETS)
      .map((s) => s.secret);
  }

  async auth(sub: SubscriptionRecord): Promise<DeliveryAuthInput | undefined> {
    return (await this.#entry(sub)).auth;
  }

  #entry(sub: SubscriptionRecord): Promise<OpenedCredentials> {
    return this.#entries.get(`${sub.id}:${sub.revision}`, () => this.#open(sub));
  }

  async #open(sub: SubscriptionRecord): Promise<OpenedCredentials> {
    const secrets = await Promise.all(
      sub.signing.secrets.map(async (s) => ({
        secret: await this.#sealer.open(s.sealed, signingAd(sub.id)),
        ...(s.expiresAt ? { expiresAt: Date.parse(s.expiresAt) } : {}),
      })),
    );
    const auth = await openAuth(this.#sealer, sub);
    return { secrets, ...(auth ? { auth } : {}) };
  }
}
