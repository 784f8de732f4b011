/**
 * Secrets at rest sealed by AWS KMS envelope encryption. Each value has a data key of its own (KMS
 * GenerateDataKey, AES_256), bound to the value's associated data by the encryption context
 * `{ purpose: <associated data> }`; the secret is encrypted here with AES-256-GCM under the
 * plaintext data key (the associated data again as GCM's AAD), and only the *encrypted* data key is
 * stored. The plaintext data key is never stored nor logged: it is dropped (and its buffer zeroed)
 * once the value is sealed.
 *
 * Sealed form: `kms:v1:<key fingerprint>:<encrypted data key>:<iv>:<ciphertext>:<tag>` (base64url),
 * the fingerprint being the first 8 hex chars of sha256 of the configured key id / ARN / alias.
 *
 * Cost on AWS — KMS bills and throttles per request:
 * - seal: 1 GenerateDataKey (a subscription created with delivery credentials: 2; a rotation: 1);
 * - open: 1 Decrypt when the value's data key is not in the cache, 0 when it is (the plaintext data
 *   keys are kept in memory, at most `cacheMaxEntries` (1,000) for `cacheTtlMs` (5 min), least
 *   recently used dropped first; concurrent opens of one value share one Decrypt);
 * - a delivery: 0. The dispatcher's CredentialCache keeps the opened values per subscription
 *   revision, so only the first delivery of a revision in a process opens them: 1 Decrypt per sealed
 *   value (signing secrets + credentials) whose data key is not cached, 0 when they are.
 */
import { createHash } from 'node:crypto';
import { DecryptCommand, GenerateDataKeyCommand, KMSClient, type KMSClientConfig } from '@aws-sdk/client-kms';
import { TransientError, WebhooksError } from '../../common/errors.ts';
import {
  aesGcmOpen,
  aesGcmParts,
  aesGcmSeal,
  decodeBase64url,
  decryptFailed,
  type SecretSealer,
  sealedKindOf,
  wrongSealerKind,
} from '../../common/secret-box.ts';
import { TtlCache } from '../../common/ttl-cache.ts';
import { awsClientBase } from './client-config.ts';

const PREFIX = 'kms';
const VERSION = 'v1';
const DATA_KEY_BYTES = 32;
/** How long a decrypted data key is kept, by default. */
const CACHE_TTL_MS = 5 * 60_000;
/** How many decrypted data keys are kept, by default. */
const CACHE_MAX_ENTRIES = 1000;

export interface KmsSealerOptions {
  /** The key new values are sealed under: key id, key ARN, alias name (`alias/…`) or alias ARN. */
  keyId: string;
  /** A client to use (tests add middleware to it); otherwise one is made from the options below. */
  client?: KMSClient;
  region?: string;
  /** An endpoint of its own (an emulator); dummy credentials then unless the environment has some. */
  endpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** How long a decrypted data key stays in memory (default 5 min). */
  cacheTtlMs?: number;
  /** How many decrypted data keys stay in memory (default 1,000). */
  cacheMaxEntries?: number;
  now?: () => number;
}

/** Seals and opens secrets with KMS envelope encryption, caching decrypted data keys. */
export class KmsSecretSealer implements SecretSealer {
  readonly kind = 'kms' as const;
  /** Fingerprint of the configured key (sealed values name it). */
  readonly keyId: string;
  readonly #kmsKeyId: string;
  readonly #client: KMSClient;
  readonly #ownsClient: boolean;
  /** Decrypted data keys by associated data and encrypted key. */
  readonly #dataKeys: TtlCache<string, Buffer>;

  constructor(options: KmsSealerOptions) {
    this.#kmsKeyId = options.keyId;
    this.keyId = fingerprint(options.keyId);
    this.#ownsClient = options.client === undefined;
    this.#client = options.client ?? new KMSClient(clientConfig(options));
    this.#dataKeys = new TtlCache({
      ttlMs: options.cacheTtlMs ?? CACHE_TTL_MS,
      maxEntries: options.cacheMaxEntries ?? CACHE_MAX_ENTRIES,
      ...(options.now ? { now: options.now } : {}),
    });
  }

  /** Seals under a fresh data key: 1 GenerateDataKey. */
  async seal(plaintext: string, associatedData?: string): Promise<string> {
    let generated: { CiphertextBlob?: Uint8Array; Plaintext?: Uint8Array };
    try {
      generated = await this.#client.send(
        new GenerateDataKeyCommand({
          KeyId: this.#kmsKeyId,
          KeySpec: 'AES_256',
          ...encryptionContext(associatedData),
        }),
      );
    } catch (err) {
      throw kmsFailure(err, 'GenerateDataKey', this.#kmsKeyId);
    }
    const dataKey = generated.Plaintext;
    const encryptedKey = generated.CiphertextBlob;
    try {
      if (dataKey?.length !== DATA_KEY_BYTES || !encryptedKey || encryptedKey.length === 0) {
        throw new WebhooksError(
          'internal',
          'kms_failed',
          `KMS GenerateDataKey under key ${this.#kmsKeyId} answered without a 256-bit data key`,
        );
      }
      return [
        PREFIX,
        VERSION,
        this.keyId,
        Buffer.from(encryptedKey).toString('base64url'),
        ...aesGcmSeal(dataKey, plaintext, associatedData),
      ].join(':');
    } finally {
      // The plaintext data key is not kept: what opens the value again is KMS (or the cache).
      dataKey?.fill(0);
    }
  }

  /** Opens a sealed value: 1 Decrypt of its data key, or 0 when the data key is cached. */
  async open(sealed: string, associatedData?: string): Promise<string> {
    const kind = sealedKindOf(sealed);
    if (kind === 'local') throw wrongSealerKind('local', 'kms');
    const parts = typeof sealed === 'string' ? sealed.split(':') : [];
    if (kind !== 'kms' || parts.length !== 7) throw decryptFailed('the value is not in the KMS sealed form');
    const [, version, keyId, encryptedKeyText, ivText, ciphertextText, tagText] = parts as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    if (version !== VERSION) throw decryptFailed(`unsupported KMS sealed format version "${version}"`);
    const encryptedKey = decodeBase64url(encryptedKeyText);
    const gcm = aesGcmParts(ivText, ciphertextText, tagText);
    if (!/^[0-9a-f]{8}$/.test(keyId) || !encryptedKey?.length || !gcm) {
      throw decryptFailed('the KMS sealed value is malformed');
    }
    const cacheKey = `${associatedData === undefined ? '-' : `+${associatedData}`}\u0000${encryptedKeyText}`;
    const dataKey = await this.#dataKeys.get(cacheKey, () =>
      this.#decryptDataKey(encryptedKey, keyId, associatedData),
    );
    return aesGcmOpen(dataKey, gcm, associatedData, `the KMS data key of key ${keyId}`);
  }

  /** Closes the client made here (a client given is left open). */
  destroy(): void {
    this.#dataKeys.invalidate();
    if (this.#ownsClient) this.#client.destroy();
  }

  async #decryptDataKey(
    encryptedKey: Buffer,
    keyId: string,
    associatedData: string | undefined,
  ): Promise<Buffer> {
    // Under the configured key, KMS is told which key to use (as AWS recommends); a value sealed
    // under a key configured before names only its fingerprint, and KMS finds the key in the blob.
    const ours = keyId === this.keyId;
    let answer: { Plaintext?: Uint8Array };
    try {
      answer = await this.#client.send(
        new DecryptCommand({
          CiphertextBlob: encryptedKey,
          ...(ours ? { KeyId: this.#kmsKeyId } : {}),
          ...encryptionContext(associatedData),
        }),
      );
    } catch (err) {
      const which = ours
        ? this.#kmsKeyId
        : `with fingerprint ${keyId} (the configured key is ${this.#kmsKeyId})`;
      throw kmsFailure(err, 'Decrypt', which);
    }
    const plaintext = answer.Plaintext;
    if (plaintext?.length !== DATA_KEY_BYTES) {
      plaintext?.fill(0);
      throw new WebhooksError('internal', 'kms_failed', 'KMS Decrypt answered without a 256-bit data key');
    }
    const dataKey = Buffer.from(plaintext);
    plaintext.fill(0);
    return dataKey;
  }
}

/** First 8 hex chars of sha256 of the key identifier, as the local box names its key. */
export function fingerprint(keyId: string): string {
  return createHash('sha256').update(keyId).digest('hex').slice(0, 8);
}

function encryptionContext(associatedData: string | undefined): {
  EncryptionContext?: Record<string, string>;
} {
  return associatedData ? { EncryptionContext: { purpose: associatedData } } : {};
}

function clientConfig(options: KmsSealerOptions): KMSClientConfig {
  return {
    ...awsClientBase(options),
    // A delivery waits on a Decrypt that is not cached: KMS that hangs fails it in seconds, not minutes.
    requestHandler: { connectionTimeout: 2_000, requestTimeout: 5_000 },
  };
}

/** KMS errors that pass: throttling, KMS's own faults, a timeout, no connection. */
const TRANSIENT = new Set([
  'ThrottlingException',
  'KMSInternalException',
  'DependencyTimeoutException',
  'KeyUnavailableException',
  'TimeoutError',
  'RequestTimeout',
]);

/** A KMS failure as the platform's error, saying what to do about the key when it is at fault. */
function kmsFailure(err: unknown, operation: string, key: string): WebhooksError {
  const e = err as { name?: string; message?: string; $fault?: string; $metadata?: unknown };
  const name = e.name ?? 'Error';
  const detail = e.message ? `${name}: ${e.message}` : name;
  const options = { cause: err };
  switch (name) {
    case 'DisabledException':
      return new WebhooksError(
        'internal',
        'kms_key_disabled',
        `KMS key ${key} is disabled, so ${operation} was refused: enable the key, or set WEBHOOKS_KMS_KEY_ID to an enabled key (${detail})`,
        options,
      );
    case 'KMSInvalidStateException':
      return new WebhooksError(
        'internal',
        'kms_key_unusable',
        `KMS key ${key} cannot be used in its current state (pending deletion or import), so ${operation} was refused (${detail})`,
        options,
      );
    case 'InvalidKeyUsageException':
      return new WebhooksError(
        'internal',
        'kms_key_unusable',
        `KMS key ${key} is not a symmetric encryption key, so ${operation} was refused (${detail})`,
        options,
      );
    case 'NotFoundException':
      return new WebhooksError(
        'internal',
        'kms_key_not_found',
        `KMS key ${key} does not exist in this account and region (${operation}: ${detail})`,
        options,
      );
    case 'AccessDeniedException':
    case 'IncorrectKeyException':
      return new WebhooksError(
        'internal',
        'kms_access_denied',
        `KMS refused ${operation} with key ${key}: this role may not use the key, or the value was sealed under another key (${detail})`,
        options,
      );
    case 'InvalidCiphertextException':
      return decryptFailed(
        `KMS refused to decrypt the data key (key ${key}): the value was tampered with, or belongs to another record (its encryption context differs)`,
        err,
      );
  }
  if (TRANSIENT.has(name) || e.$fault === 'server' || e.$metadata === undefined) {
    return new TransientError(
      'kms_unavailable',
      `KMS ${operation} failed and may pass later (${detail})`,
      options,
    );
  }
  return new WebhooksError(
    'internal',
    'kms_failed',
    `KMS ${operation} with key ${key} failed (${detail})`,
    options,
  );
}
