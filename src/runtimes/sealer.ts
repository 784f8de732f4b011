/**
 * The sealer of secrets at rest that the configuration names: AWS KMS envelope encryption with
 * WEBHOOKS_KMS_KEY_ID, else the local key box. With KMS, values the local key sealed before
 * (`enc:v1:…`) still open with the local key, so a store moves to KMS without a migration step: new
 * and changed secrets are sealed by KMS, the others keep opening locally until they are replaced.
 */
import type { Config } from '../common/config.ts';
import { type SealedKind, type SecretBox, type SecretSealer, sealedKindOf } from '../common/secret-box.ts';

/** The sealer for this configuration; `local` is the local key box (`loadSecretBox`). */
export async function openSealer(config: Pick<Config, 'kms'>, local: SecretBox): Promise<SecretSealer> {
  if (!config.kms) return local;
  // Loaded only when used: the AWS SDK is large, and the embedded default never needs it.
  const { KmsSecretSealer } = await import('../engines/aws/kms-sealer.ts');
  const kms = new KmsSecretSealer({
    keyId: config.kms.keyId,
    ...(config.kms.region ? { region: config.kms.region } : {}),
    ...(config.kms.endpoint ? { endpoint: config.kms.endpoint } : {}),
  });
  return new MigratingSealer(kms, [local]);
}

/**
 * Seals with `primary`; opens each value with the sealer of the kind that sealed it (the primary
 * when none is of that kind, which then says which kind the value is and which it is not).
 */
export class MigratingSealer implements SecretSealer {
  readonly kind: SealedKind;
  readonly keyId: string;
  readonly #primary: SecretSealer;
  readonly #byKind = new Map<SealedKind, SecretSealer>();

  constructor(primary: SecretSealer, others: readonly SecretSealer[]) {
    this.#primary = primary;
    this.kind = primary.kind;
    this.keyId = primary.keyId;
    for (const sealer of others) this.#byKind.set(sealer.kind, sealer);
    this.#byKind.set(primary.kind, primary);
  }

  seal(plaintext: string, associatedData?: string): string | Promise<string> {
    return this.#primary.seal(plaintext, associatedData);
  }

  open(sealed: string, associatedData?: string): string | Promise<string> {
    const kind = sealedKindOf(sealed);
    const sealer = (kind && this.#byKind.get(kind)) ?? this.#primary;
    return sealer.open(sealed, associatedData);
  }
}
