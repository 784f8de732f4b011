/**
 * Encryption of short secrets at rest (signing secrets, partner credentials) with AES-256-GCM.
 * The sealed form names the key that sealed it, so a value sealed under another key fails with a
 * message that says so instead of a bare authentication error.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { ConfigError, WebhooksError } from './errors.ts';

const ALGORITHM = 'aes-256-gcm';
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const SEALED_PREFIX = 'enc:';
const VERSION = 'v1';
const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** Who sealed a value: the local key (`enc:v1:…`) or AWS KMS envelope encryption (`kms:v1:…`). */
export type SealedKind = 'local' | 'kms';

const KIND_NAMES: Record<SealedKind, string> = {
  local: 'the local key (enc:v1)',
  kms: 'AWS KMS (kms:v1)',
};

/**
 * Seals and opens short secrets at rest, whatever holds the key. The local box answers at once,
 * KMS after a round trip (or from its cache of data keys): callers await either.
 */
export interface SecretSealer {
  /** What kind of sealed value `seal` makes. */
  readonly kind: SealedKind;
  /** Fingerprint of the key new values are sealed under (named in sealed values and in errors). */
  readonly keyId: string;
  /** Seals `plaintext`, bound to `associatedData` (opening with any other fails). */
  seal(plaintext: string, associatedData?: string): string | Promise<string>;
  /** Opens a sealed value; throws `secret_decrypt_failed` on tampering, another record, or another kind. */
  open(sealed: string, associatedData?: string): string | Promise<string>;
}

/** The kind a stored value was sealed by, from its prefix; undefined when it is not in a sealed form. */
export function sealedKindOf(value: string): SealedKind | undefined {
  if (typeof value !== 'string') return undefined;
  if (value.startsWith(SEALED_PREFIX)) return 'local';
  if (value.startsWith('kms:')) return 'kms';
  return undefined;
}

/** The error of a value given to a sealer of another kind, naming both. */
export function wrongSealerKind(found: SealedKind, sealer: SealedKind): WebhooksError {
  const hint =
    found === 'kms'
      ? 'set WEBHOOKS_KMS_KEY_ID (values sealed by KMS open only through KMS)'
      : 'it opens with the local key (WEBHOOKS_SECRET_KEY or <data dir>/secret.key)';
  return decryptFailed(
    `the value was sealed by ${KIND_NAMES[found]}, but was given to ${KIND_NAMES[sealer]} to open: ${hint}`,
  );
}

/** Encrypts/decrypts short secrets with AES-256-GCM under a 32-byte key. Sealed form: "enc:v1:<keyId>:<iv b64url>:<ciphertext b64url>:<tag b64url>" where keyId = first 8 hex chars of sha256(key). */
export class SecretBox implements SecretSealer {
  readonly kind = 'local' as const;
  readonly keyId: string;
  // Private so the key never shows up in logs, inspection or JSON of the box.
  readonly #key: Buffer;

  /** Takes a copy of the raw 32-byte key; throws ConfigError otherwise. */
  constructor(key: Buffer) {
    if (!Buffer.isBuffer(key) || key.length !== KEY_BYTES) {
      const message = `the secret encryption key must be ${KEY_BYTES} bytes`;
      throw new ConfigError(message, { details: [{ field: 'key', message }] });
    }
    this.#key = Buffer.from(key);
    this.keyId = createHash('sha256').update(key).digest('hex').slice(0, 8);
  }

  /** A box from a key given as base64 (44 chars) or hex (64 chars); ConfigError otherwise. */
  static fromString(encoded: string): SecretBox {
    const text = typeof encoded === 'string' ? encoded.trim() : '';
    if (/^[0-9a-fA-F]{64}$/.test(text)) return new SecretBox(Buffer.from(text, 'hex'));
    if (/^[A-Za-z0-9+/]{43}=$/.test(text)) {
      const key = Buffer.from(text, 'base64');
      if (key.toString('base64') === text) return new SecretBox(key);
    }
    // The value itself is never echoed: it is (nearly) a key.
    const message = `the secret encryption key must be ${KEY_BYTES} bytes as base64 (44 chars) or hex (64 chars), got ${text.length} chars`;
    throw new ConfigError(message, { details: [{ field: 'key', message }] });
  }

  /** A new random key in the base64 form `fromString` accepts. */
  static generateKey(): string {
    return randomBytes(KEY_BYTES).toString('base64');
  }

  /** True when a stored value is in sealed form (so must be opened), rather than legacy plaintext. */
  static isSealed(value: string): boolean {
    // Any `enc:` prefix counts, so a corrupt or future-version value fails loudly in `open`
    // instead of being mistaken for a plaintext secret.
    return typeof value === 'string' && value.startsWith(SEALED_PREFIX);
  }

  /** The keyId a sealed value names, without opening it; undefined when the value is not in sealed form. */
  static keyIdOf(sealed: string): string | undefined {
    const parts = typeof sealed === 'string' ? sealed.split(':') : [];
    if (parts.length !== 6 || parts[0] !== 'enc' || parts[1] !== VERSION) return undefined;
    return /^[0-9a-f]{8}$/.test(parts[2]!) ? parts[2] : undefined;
  }

  /** Encrypts under a fresh random IV; `associatedData` binds the result to its row (e.g. its id). */
  seal(plaintext: string, associatedData?: string): string {
    return ['enc', VERSION, this.keyId, ...aesGcmSeal(this.#key, plaintext, associatedData)].join(':');
  }

  /** Decrypts a sealed value; throws `secret_decrypt_failed` on a wrong key, tampering or another associated data. */
  open(sealed: string, associatedData?: string): string {
    if (sealedKindOf(sealed) === 'kms') throw wrongSealerKind('kms', 'local');
    const parts = typeof sealed === 'string' ? sealed.split(':') : [];
    if (parts.length !== 6 || parts[0] !== 'enc') throw decryptFailed('the value is not in sealed form');
    const [, version, keyId, ivText, ciphertextText, tagText] = parts as [
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    if (version !== VERSION) throw decryptFailed(`unsupported sealed format version "${version}"`);
    if (keyId !== this.keyId) {
      throw decryptFailed(`the value was sealed with key ${keyId}, but the configured key is ${this.keyId}`);
    }
    const gcm = aesGcmParts(ivText, ciphertextText, tagText);
    if (!gcm) throw decryptFailed('the sealed value is malformed');
    return aesGcmOpen(this.#key, gcm, associatedData, `key ${this.keyId}`);
  }
}

/**
 * AES-256-GCM under `key` with a fresh random IV, `associatedData` as AAD: the IV, ciphertext and
 * tag as base64url (the last three parts of both sealed forms, the local key's and KMS's).
 */
export function aesGcmSeal(
  key: Uint8Array,
  plaintext: string,
  associatedData?: string,
): [string, string, string] {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv(ALGORITHM, key, iv, { authTagLength: TAG_BYTES });
  if (associatedData !== undefined) cipher.setAAD(Buffer.from(associatedData, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return [
    iv.toString('base64url'),
    ciphertext.toString('base64url'),
    cipher.getAuthTag().toString('base64url'),
  ];
}

/** The IV, ciphertext and tag of a sealed form's last three parts; undefined when malformed. */
export function aesGcmParts(
  ivText: string,
  ciphertextText: string,
  tagText: string,
): { iv: Buffer; ciphertext: Buffer; tag: Buffer } | undefined {
  const iv = decodeBase64url(ivText);
  const ciphertext = decodeBase64url(ciphertextText);
  const tag = decodeBase64url(tagText);
  // GCM accepts truncated tags unless told otherwise; a short tag would weaken authentication.
  if (iv?.length !== IV_BYTES || ciphertext === undefined || tag?.length !== TAG_BYTES) return undefined;
  return { iv, ciphertext, tag };
}

/** Decrypts what `aesGcmSeal` made; `secret_decrypt_failed` naming `under` when it does not authenticate. */
export function aesGcmOpen(
  key: Uint8Array,
  parts: { iv: Buffer; ciphertext: Buffer; tag: Buffer },
  associatedData: string | undefined,
  under: string,
): string {
  try {
    const decipher = createDecipheriv(ALGORITHM, key, parts.iv, { authTagLength: TAG_BYTES });
    if (associatedData !== undefined) decipher.setAAD(Buffer.from(associatedData, 'utf8'));
    decipher.setAuthTag(parts.tag);
    return Buffer.concat([decipher.update(parts.ciphertext), decipher.final()]).toString('utf8');
  } catch (cause) {
    throw decryptFailed(
      `authentication failed under ${under}: the value was tampered with or belongs to another record`,
      cause,
    );
  }
}

/** The bytes of canonical base64url text; undefined for anything else (so a re-encoded value is refused). */
export function decodeBase64url(text: string): Buffer | undefined {
  if (!BASE64URL.test(text)) return undefined;
  const bytes = Buffer.from(text, 'base64url');
  return bytes.toString('base64url') === text ? bytes : undefined;
}

/** The error of a secret that cannot be opened (`secret_decrypt_failed`); exported for the KMS sealer. */
export function decryptFailed(message: string, cause?: unknown): WebhooksError {
  return new WebhooksError('internal', 'secret_decrypt_failed', `cannot decrypt secret: ${message}`, {
    cause,
  });
}
