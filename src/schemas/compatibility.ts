/**
 * Confluent-style compatibility of JSON Schema versions. BACKWARD: the new schema accepts every
 * instance the previous one accepted; FORWARD: the previous schema accepts every instance the new one
 * accepts; FULL: both; `_TRANSITIVE`: against every earlier version, not only the latest.
 * The inclusion check is a sound approximation: what it cannot prove is reported as breaking.
 * See docs/schema-compatibility.md for the rules.
 */

import { ValidationError } from '../common/errors.ts';
import { isJsonObject, jsonEqual, pointerTo } from '../common/json.ts';
import type { SchemaCompatibility } from '../common/model.ts';
import { compareNodes, newContext } from './compatibility-compare.ts';
import { type Issue, issue } from './compatibility-facts.ts';
import { rootNode } from './compatibility-nodes.ts';

export const COMPATIBILITY_MODES: readonly SchemaCompatibility[] = [
  'NONE',
  'BACKWARD',
  'BACKWARD_TRANSITIVE',
  'FORWARD',
  'FORWARD_TRANSITIVE',
  'FULL',
  'FULL_TRANSITIVE',
];

/** The same modes as the stored record's `compatibility` (model.ts is the one definition). */
export type CompatibilityMode = SchemaCompatibility;

/** The mode used when a subject has none configured (as in Confluent Schema Registry). */
export const DEFAULT_COMPATIBILITY_MODE: CompatibilityMode = 'BACKWARD';

/** True when `value` is one of the compatibility mode names. */
export function isCompatibilityMode(value: unknown): value is CompatibilityMode {
  return typeof value === 'string' && (COMPATIBILITY_MODES as readonly string[]).includes(value);
}

/** One reason a candidate schema is incompatible with an earlier version. */
export interface BreakingChange {
  againstVersion: number; // the earlier version the candidate conflicts with
  direction: 'backward' | 'forward'; // backward: old data fails new schema; forward: new data fails old schema
  path: string; // JSON pointer into the reader schema (backward: the candidate; forward: the earlier version)
  message: string; // names the property by its dotted path, e.g. "property `customer.email` became required"
}

/** What a mode checks: which directions, and against every earlier version or only the latest. */
export function modeChecks(mode: CompatibilityMode): {
  backward: boolean;
  forward: boolean;
  transitive: boolean;
} {
  return {
    backward: mode.startsWith('BACKWARD') || mode.startsWith('FULL'),
    forward: mode.startsWith('FORWARD') || mode.startsWith('FULL'),
    transitive: mode.endsWith('_TRANSITIVE'),
  };
}

/** Checks a candidate schema against earlier versions (ascending by version) under a mode. */
export function checkCompatibility(
  candidate: unknown,
  previous: ReadonlyArray<{ version: number; schema: unknown }>,
  mode: CompatibilityMode,
): BreakingChange[] {
  if (!isCompatibilityMode(mode)) {
    throw new ValidationError(
      'compatibility_mode_invalid',
      `unknown compatibility mode ${JSON.stringify(mode)}`,
      {
        details: [{ field: 'compatibility', message: `must be one of ${COMPATIBILITY_MODES.join(', ')}` }],
      },
    );
  }
  if (mode === 'NONE' || previous.length === 0) return [];
  const { backward, forward, transitive } = modeChecks(mode);
  const ordered = [...previous].sort((a, b) => a.version - b.version);
  const targets = transitive ? ordered : ordered.slice(-1);
  const changes: BreakingChange[] = [];
  for (const { version, schema } of targets) {
    if (backward) {
      for (const i of compareDocuments(schema, candidate)) {
        changes.push({ againstVersion: version, direction: 'backward', path: i.path, message: i.back });
      }
    }
    if (forward) {
      for (const i of compareDocuments(candidate, schema)) {
        changes.push({ againstVersion: version, direction: 'forward', path: i.path, message: i.fwd });
      }
    }
  }
  return changes;
}

/** Reasons why some instance valid under `writer` may be invalid under `reader` (empty = reader accepts everything writer accepts). */
export function findIncompatibilities(
  writer: unknown,
  reader: unknown,
): Array<{ path: string; message: string }> {
  return compareDocuments(writer, reader).map((i) => ({ path: i.path, message: i.back }));
}

function compareDocuments(writer: unknown, reader: unknown): Issue[] {
  assertSchema(writer, 'writer');
  assertSchema(reader, 'reader');
  try {
    // A subschema with an `$id` of its own is a resource of its own: references inside it and to it
    // resolve against it, which this checker does not model (it would compare the wrong definitions,
    // or take a changed embedded resource for an unchanged external one). Unchanged, it is fine.
    const embedded = embeddedResource(writer) ?? embeddedResource(reader);
    if (embedded !== undefined && !jsonEqual(writer, reader)) {
      return [
        issue(
          embedded,
          `the schema embeds a resource with an \`$id\` of its own (at \`${embedded}\`), whose references cannot be compared, so a change is treated as breaking`,
        ),
      ];
    }
    return compareNodes(newContext(), [rootNode(writer, 'w')], rootNode(reader, 'r'), '');
  } catch (err) {
    // The checker recurses with the documents' nesting: a version stored before registration limited
    // it may be too deep to compare. What cannot be proven compatible is breaking.
    if (err instanceof RangeError) return [TOO_DEEP_TO_COMPARE];
    throw err;
  }
}

/**
 * The pointer of the first object below the root with a string `$id` (an embedded resource), or
 * undefined. Walked iteratively (stored versions may be deep); values of `enum`/`const` are walked
 * too, so an object there with an `$id` member counts (on the conservative side).
 */
function embeddedResource(schema: unknown): string | undefined {
  const stack: Array<{ value: unknown; pointer: string }> = [{ value: schema, pointer: '' }];
  while (stack.length > 0) {
    const { value, pointer } = stack.pop()!;
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) stack.push({ value: value[i], pointer: pointerTo(pointer, i) });
    } else if (isJsonObject(value)) {
      if (pointer !== '' && typeof value.$id === 'string') return pointer;
      for (const [k, v] of Object.entries(value)) stack.push({ value: v, pointer: pointerTo(pointer, k) });
    }
  }
  return undefined;
}

const TOO_DEEP_TO_COMPARE = issue(
  '',
  'the schemas are nested too deeply to compare, so the change is treated as breaking',
);

function assertSchema(schema: unknown, field: string): void {
  if (typeof schema === 'boolean' || isJsonObject(schema)) return;
  throw new ValidationError('schema_invalid', 'a JSON Schema must be an object or a boolean', {
    details: [{ field, message: 'must be an object or a boolean' }],
  });
}
