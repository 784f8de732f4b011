/**
 * Changing the at-rest encryption key (WEBHOOKS_SECRET_KEY) without breaking deliveries. A platform
 * restarted with another key would start fine and then fail every delivery when the dispatcher
 * cannot open the secrets; so the start checks the key against what the store has sealed, and
 * refuses, naming both keys. Values sealed under a previous key (WEBHOOKS_SECRET_KEY_PREVIOUS) are
 * re-sealed under the configured one, so the previous key can be dropped afterwards.
 *
 * Only the SubscriptionRepository port is used (paged listing, revision-checked update): every store
 * engine gets this without code of its own.
 */
import { ConfigError, isWebhooksError } from '../common/errors.ts';
import type { Logger } from '../common/log.ts';
import type { SubscriptionRecord } from '../common/model.ts';
import type { Store, SubscriptionRepository } from '../common/ports/store.ts';
import { SecretBox } from '../common/secret-box.ts';
import { authAd, signingAd } from './secrets.ts';

const PAGE_LIMIT = 500;
/** Concurrent changes tolerated per subscription while re-sealing it (each one re-reads it). */
const MAX_TRIES = 10;
/** Stands for the keyId of values that have the sealed prefix but not the sealed format. */
const MALFORMED = 'malformed';
/**
 * What a value found damaged while re-sealing is kept as: still in sealed form (never mistaken for
 * a plaintext secret; opening it fails), no longer naming a key.
 */
const DAMAGED_PREFIX = 'enc:damaged:';

/** The keys a store is checked and re-sealed with. */
export interface SecretKeys {
  subscriptions: SubscriptionRepository;
  /** The configured key: every value ends up sealed under it. */
  box: SecretBox;
  /** Keys that sealed values before a rotation. */
  previous: readonly SecretBox[];
}

/** What the store holds, by key. */
export interface SealedKeysReport {
  /** How many sealed values name each keyId. */
  keyIds: Map<string, number>;
  /** Subscriptions holding a value sealed under a previous key (to re-seal), in listing order. */
  stale: string[];
  /**
   * Values found damaged (not in the sealed format, or not opening under the key they name): each
   * breaks its own subscription's deliveries, not the platform's start. At most MAX_DAMAGED listed.
   */
  damaged: ConfigError[];
}

/** Values opened per key at start: one damaged value does not decide for its key. */
const SAMPLES_PER_KEY = 3;
/** Damaged values listed in a report (all are counted in the store's own checks at delivery). */
const MAX_DAMAGED = 100;

/** One sealed value of a subscription, with the associated data it was sealed with. */
interface SealedValue {
  subscriptionId: string;
  field: string;
  sealed: string;
  ad: string;
}

function sealedValues(sub: SubscriptionRecord): SealedValue[] {
  const values = sub.signing.secrets.map((s, i) => ({
    subscriptionId: sub.id,
    field: `signing.secrets[${i}]`,
    sealed: s.sealed,
    ad: signingAd(sub.id),
  }));
  if (sub.auth)
    values.push({ subscriptionId: sub.id, field: 'auth', sealed: sub.auth.sealed, ad: authAd(sub.id) });
  // A value not in sealed form (legacy plaintext) names no key: nothing to check or re-seal.
  return values.filter((v) => SecretBox.isSealed(v.sealed));
}

/** The usable boxes by keyId, the configured one first (a previous key equal to it adds nothing). */
function boxesById(keys: SecretKeys): Map<string, SecretBox> {
  const boxes = new Map([[keys.box.keyId, keys.box]]);
  for (const box of keys.previous) if (!boxes.has(box.keyId)) boxes.set(box.keyId, box);
  return boxes;
}

/**
 * Reads every subscription, and opens a few values per keyId; ConfigError when a value names a key
 * the platform does not have (the wrong key: every delivery would fail). A damaged value is
 * reported, not refused: it breaks its own subscription, which can then be deleted through the API
 * of a platform that runs.
 */
export async function checkSealedKeys(keys: SecretKeys): Promise<SealedKeysReport> {
  const boxes = boxesById(keys);
  const counts = new Map<string, number>();
  const samples = new Map<string, SealedValue[]>();
  const damaged: ConfigError[] = [];
  const stale: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await keys.subscriptions.list({}, { limit: PAGE_LIMIT, ...(cursor ? { cursor } : {}) });
    for (const sub of page.items) {
      let isStale = false;
      for (const value of sealedValues(sub)) {
        const keyId = SecretBox.keyIdOf(value.sealed) ?? MALFORMED;
        counts.set(keyId, (counts.get(keyId) ?? 0) + 1);
        if (keyId === MALFORMED) {
          if (damaged.length < MAX_DAMAGED)
            damaged.push(
              unreadable(value, 'it is not in the sealed format "enc:v1:<keyId>:…", so it was damaged'),
            );
          continue;
        }
        const some = samples.get(keyId) ?? [];
        if (some.length < SAMPLES_PER_KEY) samples.set(keyId, [...some, value]);
        if (keyId !== keys.box.keyId && boxes.has(keyId)) isStale = true;
      }
      if (isStale) stale.push(sub.id);
    }
    cursor = page.next;
  } while (cursor);

  const unknown = [...counts.keys()].filter((k) => k !== MALFORMED && !boxes.has(k));
  if (unknown.length > 0) throw keyMismatch(keys, unknown, counts, samples);
  // The keyId is only a fingerprint: opening a few values per key shows the key opens what names it,
  // and a damaged one found here is reported at start rather than met later by a delivery.
  for (const [keyId, some] of samples) {
    for (const sample of some) {
      try {
        openOrExplain(boxes.get(keyId)!, sample);
      } catch (err) {
        if (damaged.length < MAX_DAMAGED) damaged.push(err as ConfigError);
      }
    }
  }
  return { keyIds: counts, stale, damaged };
}

/** Told of a value that does not open under the key it names (kept as it is). */
type OnDamaged = (err: ConfigError) => void;

/**
 * Re-seals under the configured key what previous keys sealed, in `ids` (else all); returns the
 * count. A value that does not open is kept as it is and told to `onDamaged`.
 */
export async function resealSubscriptions(
  keys: SecretKeys,
  ids?: readonly string[],
  onDamaged: OnDamaged = () => {},
): Promise<number> {
  const boxes = boxesById(keys);
  let changed = 0;
  if (ids) {
    for (const id of ids) if (await resealOne(keys, boxes, id, onDamaged)) changed++;
    return changed;
  }
  let cursor: string | undefined;
  do {
    const page = await keys.subscriptions.list({}, { limit: PAGE_LIMIT, ...(cursor ? { cursor } : {}) });
    for (const sub of page.items) if (await resealOne(keys, boxes, sub.id, onDamaged, sub)) changed++;
    cursor = page.next;
  } while (cursor);
  return changed;
}

export interface PrepareSecretKeysOptions {
  store: Pick<Store, 'subscriptions'>;
  /** The configured key (WEBHOOKS_SECRET_KEY or `<data dir>/secret.key`). */
  box: SecretBox;
  /** WEBHOOKS_SECRET_KEY_PREVIOUS (and a key left by an interrupted `webhooks rotate-secret-key`). */
  previous: readonly SecretBox[];
  logger: Logger;
}

/** At start, before any worker: refuses a key the store does not open, then re-seals; returns the count. */
export async function prepareSecretKeys(options: PrepareSecretKeysOptions): Promise<number> {
  const keys = { subscriptions: options.store.subscriptions, box: options.box, previous: options.previous };
  const report = await checkSealedKeys(keys);
  const told = new Set<string | undefined>();
  const damaged = (err: ConfigError) => {
    const field = err.details[0]?.field;
    if (told.has(field)) return; // met by the check and again by the re-seal
    told.add(field);
    options.logger.error('a sealed secret cannot be opened: its subscription cannot deliver', {
      field,
      reason: err.message,
    });
  };
  for (const err of report.damaged) damaged(err);
  const fields = { keyId: options.box.keyId, previousKeyIds: options.previous.map((b) => b.keyId) };
  if (report.stale.length === 0) {
    if (options.previous.length > 0) {
      options.logger.info(
        'nothing is sealed under a previous key: WEBHOOKS_SECRET_KEY_PREVIOUS can be removed',
        fields,
      );
    }
    return 0;
  }
  const resealed = await resealSubscriptions(keys, report.stale, damaged);
  options.logger.info('re-sealed subscription secrets under the configured key', {
    ...fields,
    subscriptions: resealed,
  });
  return resealed;
}

/** Re-seals one subscription, re-reading it after each concurrent change; false when nothing was to do. */
async function resealOne(
  keys: SecretKeys,
  boxes: Map<string, SecretBox>,
  id: string,
  onDamaged: OnDamaged,
  read?: SubscriptionRecord,
): Promise<boolean> {
  let current = read ?? (await keys.subscriptions.get(id));
  // The damaged values of the last try (a conflict re-reads and tries again), told once at the end.
  let found: ConfigError[] = [];
  try {
    for (let tries = 1; ; tries++) {
      if (!current) return false; // deleted meanwhile: nothing left to re-seal
      found = [];
      const next = resealed(keys.box, boxes, current, (err) => found.push(err));
      if (!next) return false; // someone re-sealed it meanwhile (another process starting)
      try {
        await keys.subscriptions.update(next);
        return true;
      } catch (err) {
        const code = isWebhooksError(err) ? err.code : undefined;
        if (code === 'not_found') return false;
        if (code !== 'revision_conflict' || tries >= MAX_TRIES) throw err;
      }
      current = await keys.subscriptions.get(id);
    }
  } finally {
    for (const err of found) onDamaged(err);
  }
}

/** The subscription with its values under previous keys re-sealed; undefined when it has none. */
function resealed(
  box: SecretBox,
  boxes: Map<string, SecretBox>,
  sub: SubscriptionRecord,
  onDamaged: OnDamaged,
): SubscriptionRecord | undefined {
  let changed = false;
  const reseal = (value: SealedValue): string => {
    const keyId = SecretBox.keyIdOf(value.sealed);
    // Under the configured key, under an unknown one (the check reports those) or not sealed: kept.
    const from = keyId === undefined || keyId === box.keyId ? undefined : boxes.get(keyId);
    if (!from) return value.sealed;
    let plain: string;
    try {
      plain = openOrExplain(from, value);
    } catch (err) {
      onDamaged(err as ConfigError);
      // Damaged: marked so, not left naming the previous key. Once that key is gone (the rotation
      // done), a value naming it would read as "sealed under a key the platform does not have" and
      // refuse every start; marked, it is reported as damaged and breaks only its subscription.
      changed = true;
      return `${DAMAGED_PREFIX}${value.sealed}`;
    }
    changed = true;
    return box.seal(plain, value.ad);
  };
  const secrets = sub.signing.secrets.map((s, i) => ({
    ...s,
    sealed: reseal({
      subscriptionId: sub.id,
      field: `signing.secrets[${i}]`,
      sealed: s.sealed,
      ad: signingAd(sub.id),
    }),
  }));
  const auth = sub.auth && {
    ...sub.auth,
    sealed: reseal({ subscriptionId: sub.id, field: 'auth', sealed: sub.auth.sealed, ad: authAd(sub.id) }),
  };
  if (!changed) return undefined;
  // updatedAt stays: nothing the API shows has changed. The revision moves, so credential caches refresh.
  return { ...sub, signing: { ...sub.signing, secrets }, ...(auth ? { auth } : {}) };
}

function openOrExplain(box: SecretBox, value: SealedValue): string {
  try {
    return box.open(value.sealed, value.ad);
  } catch (err) {
    // The platform has the key this value names, so the value itself is at fault.
    const reason = `${(err as Error).message}; the key is right, so the stored value was altered or copied from another subscription`;
    throw unreadable(value, reason, err);
  }
}

function keyMismatch(
  keys: SecretKeys,
  unknown: string[],
  counts: Map<string, number>,
  samples: Map<string, SealedValue[]>,
): ConfigError {
  const found = unknown
    .map(
      (k) =>
        `${k} (${counts.get(k)} value${counts.get(k) === 1 ? '' : 's'}, e.g. subscription ${samples.get(k)![0]!.subscriptionId})`,
    )
    .join(', ');
  const previous =
    keys.previous.length > 0 ? ` (previous keys: ${keys.previous.map((b) => b.keyId).join(', ')})` : '';
  const message =
    `the secret key does not match the store: the configured key has fingerprint ${keys.box.keyId}${previous}, ` +
    `but the store holds secrets sealed under key ${found}. Set WEBHOOKS_SECRET_KEY (or <data dir>/secret.key) ` +
    'to the key they were sealed with, ' +
    `or, to rotate to key ${keys.box.keyId}, give that old key in WEBHOOKS_SECRET_KEY_PREVIOUS: ` +
    'its secrets are then re-sealed under the configured key at start';
  return new ConfigError(message, {
    details: [{ field: 'WEBHOOKS_SECRET_KEY', message, code: 'secret_key_mismatch' }],
  });
}

function unreadable(value: SealedValue, reason: string, cause?: unknown): ConfigError {
  const message =
    `the ${value.field} of subscription ${value.subscriptionId} cannot be opened: ${reason}. ` +
    'Restore the subscription from a backup, or delete it (DELETE /admin/subscriptions/{id}) and subscribe again';
  return new ConfigError(message, {
    details: [
      { field: `subscriptions.${value.subscriptionId}.${value.field}`, message, code: 'secret_unreadable' },
    ],
    cause,
  });
}
