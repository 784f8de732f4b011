/**
 * The CPU-heavy part of a schema registration: checking the document (meta-validation, limits,
 * patterns, a trial compile), its fingerprint, and its compatibility with the earlier versions. A
 * large legal schema takes a few hundred milliseconds of them; the standalone runtime runs them in
 * a worker thread (`src/runtimes/schema-check-thread.ts`) so that the API's thread never waits, and
 * elsewhere (AWS Lambda, tests) they run inline.
 */
import type { ErrorDetail } from '../common/errors.ts';
import { schemaFingerprint, validateSchemaDocument } from '../common/json-schema.ts';
import { type BreakingChange, type CompatibilityMode, checkCompatibility } from './compatibility.ts';

/** What the document check finds: its problems, or its fingerprint when it has none. */
export interface DocumentCheck {
  problems: ErrorDetail[];
  fingerprint?: string;
}

export interface SchemaChecks {
  /** Problems of a JSON Schema document (`fieldPrefix` names where it is), or its fingerprint. */
  document(schema: unknown, fieldPrefix: string): Promise<DocumentCheck>;
  /** The breaking changes of a candidate against earlier versions (ascending) under a mode. */
  compatibility(
    candidate: unknown,
    previous: ReadonlyArray<{ version: number; schema: unknown }>,
    mode: CompatibilityMode,
  ): Promise<BreakingChange[]>;
}

/** The document check itself (what a worker runs). */
export function checkDocument(schema: unknown, fieldPrefix: string): DocumentCheck {
  const problems = validateSchemaDocument(schema, fieldPrefix);
  return problems.length > 0 ? { problems } : { problems, fingerprint: schemaFingerprint(schema) };
}

/** The checks on the caller's thread. */
export const inlineSchemaChecks: SchemaChecks = {
  document: async (schema, fieldPrefix) => checkDocument(schema, fieldPrefix),
  compatibility: async (candidate, previous, mode) => checkCompatibility(candidate, previous, mode),
};
