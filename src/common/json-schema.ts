/**
 * JSON Schema utilities (draft 2020-12): meta-validation of schema documents with precise paths,
 * and a cache of compiled validators so each schema version is compiled once per process.
 */
import { createHash } from 'node:crypto';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import formatsPlugin from 'ajv-formats';
import type { ErrorDetail } from './errors.ts';
import { canonicalJson, isJsonObject, pointerSegments } from './json.ts';

const DRAFT_2020_12 = 'https://json-schema.org/draft/2020-12/schema';

/** A new Ajv instance configured the way the platform validates event data. */
function createAjv(): Ajv2020 {
  // strict: false because unknown keywords are legal annotations in 2020-12; allErrors to report every problem.
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true, loadSchema: undefined });
  (formatsPlugin as unknown as (a: Ajv2020) => void)(ajv);
  return ajv;
}

const metaAjv = createAjv();

/** SHA-256 of the canonical JSON text of a schema document. */
export function schemaFingerprint(schema: unknown): string {
  return createHash('sha256').update(canonicalJson(schema)).digest('hex');
}

/**
 * Problems with a JSON Schema document, each naming where it is (`<fieldPrefix><json pointer>`).
 * Empty when the document is a valid draft 2020-12 schema that compiles (all `$ref`s resolve locally).
 */
export function validateSchemaDocument(schema: unknown, fieldPrefix = 'schema'): ErrorDetail[] {
  if (typeof schema !== 'boolean' && !isJsonObject(schema)) {
    return [{ field: fieldPrefix, message: 'a JSON Schema must be an object or a boolean' }];
  }
  if (typeof schema === 'object' && '$schema' in schema && schema.$schema !== DRAFT_2020_12) {
    const given = schema.$schema;
    return [
      {
        field: `${fieldPrefix}.$schema`,
        message: `only draft 2020-12 (${DRAFT_2020_12}) is supported, got ${JSON.stringify(given)}`,
      },
    ];
  }
  if (!metaAjv.validateSchema(schema)) {
    return (metaAjv.errors ?? []).map((e) => toDetail(e, fieldPrefix));
  }
  try {
    metaAjv.compile(schema as object);
  } catch (err) {
    return [{ field: fieldPrefix, message: `the schema does not compile: ${(err as Error).message}` }];
  } finally {
    // Only a check: the document must not stay registered (its $id would clash with the next version's).
    metaAjv.removeSchema(schema as object);
  }
  return [];
}

/** Compiles each schema once (keyed by the caller, e.g. "orders.created.v3@fingerprint") and reuses it. */
export class ValidatorCache {
  readonly #ajv = createAjv();
  readonly #validators = new Map<string, ValidateFunction>();
  readonly #maxEntries: number;

  constructor(maxEntries = 1000) {
    this.#maxEntries = maxEntries;
  }

  /** Problems with `data` under `schema` (empty = valid), each naming the data path as `<fieldPrefix><path>`. */
  validate(key: string, schema: unknown, data: unknown, fieldPrefix = 'data'): ErrorDetail[] {
    const validator = this.#get(key, schema);
    if (validator(data)) return [];
    return (validator.errors ?? []).map((e) => toDetail(e, fieldPrefix));
  }

  #get(key: string, schema: unknown): ValidateFunction {
    let validator = this.#validators.get(key);
    if (validator) {
      // Refresh recency: Map iteration order is insertion order, so re-insert to keep LRU order.
      this.#validators.delete(key);
      this.#validators.set(key, validator);
      return validator;
    }
    validator = this.#ajv.compile(schema as object);
    this.#ajv.removeSchema(schema as object);
    this.#validators.set(key, validator);
    if (this.#validators.size > this.#maxEntries) {
      const oldest = this.#validators.keys().next().value;
      if (oldest !== undefined) this.#validators.delete(oldest);
    }
    return validator;
  }
}

/**
 * One Ajv error as a detail: the instance path as a dotted field (for meta-validation the instance
 * is the schema document itself), and a readable message.
 */
function toDetail(error: ErrorObject, fieldPrefix: string): ErrorDetail {
  const path = pointerSegments(error.instancePath).join('.');
  let message = error.message ?? 'is invalid';
  if (error.keyword === 'required')
    message = `must have required property \`${String(error.params.missingProperty)}\``;
  if (error.keyword === 'additionalProperties') {
    message = `must not have additional property \`${String(error.params.additionalProperty)}\``;
  }
  if (error.keyword === 'enum') message = `must be one of ${JSON.stringify(error.params.allowedValues)}`;
  return { field: path ? `${fieldPrefix}.${path}` : fieldPrefix, message, code: error.keyword };
}
