/**
 * What the compatibility check knows about a writer schema (its possible JSON types, a finite set of
 * values when it has one, numeric bounds), plus the wording of the problems it reports.
 */
import { jsonEqual } from '../common/json.ts';
import { evaluateScalar, SCALAR_KEYWORDS } from './compatibility-bounds.ts';
import type { SchemaNode, SchemaObject } from './compatibility-nodes.ts';

/** JSON types, with numbers split so that `integer` is a subset of `number`. */
export type Kind = 'object' | 'array' | 'string' | 'integer' | 'fraction' | 'boolean' | 'null';
export const ALL_KINDS: readonly Kind[] = [
  'object',
  'array',
  'string',
  'integer',
  'fraction',
  'boolean',
  'null',
];

/** One problem found, worded for both directions: `back` (writer = older) and `fwd` (writer = newer). */
export interface Issue {
  path: string;
  back: string;
  fwd: string;
}

/** An issue whose wording does not depend on which side is the newer one. */
export function issue(path: string, back: string, fwd: string = back): Issue {
  return { path, back, fwd };
}

/** A change of a described constraint; `before` is the writer's, `after` the reader's (undefined = none). */
export function changed(path: string, what: string, before?: string, after?: string, note = ''): Issue {
  const text = (from?: string, to?: string): string => {
    if (from === undefined) return `${what} was added (${to})${note}`;
    if (to === undefined) return `${what} was removed (was ${from})${note}`;
    return `${what} changed from ${from} to ${to}${note}`;
  };
  return { path, back: text(before, after), fwd: text(after, before) };
}

/** How a message names the value at a data path. */
export function subject(data: string): string {
  return data === '' ? 'the root value' : `\`${data}\``;
}

/** The data path of a property. */
export function propertyPath(data: string, name: string): string {
  return data === '' ? name : `${data}.${name}`;
}

/** How a message shows a JSON value: strings bare, everything else as JSON. */
export function show(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** The kind of a JSON value. */
export function kindOf(value: unknown): Kind {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'fraction';
  if (typeof value === 'string') return 'string';
  if (typeof value === 'boolean') return 'boolean';
  return 'object';
}

/** The kinds a `type` keyword (and OpenAPI `nullable`) allow; undefined when the schema has no `type`. */
export function declaredKinds(schema: SchemaObject): Set<Kind> | undefined {
  const type = schema.type;
  if (type === undefined) return undefined;
  const names = Array.isArray(type) ? type : [type];
  const kinds = new Set<Kind>();
  for (const name of names) {
    if (name === 'number') kinds.add('integer').add('fraction');
    else if (
      typeof name === 'string' &&
      (ALL_KINDS as readonly string[]).includes(name) &&
      name !== 'fraction'
    ) {
      kinds.add(name as Kind);
    } else return new Set(ALL_KINDS); // not a JSON Schema type: assume nothing
  }
  if (schema.nullable === true) kinds.add('null');
  return kinds;
}

/** Names kinds the way a schema author writes them, e.g. `string|null`. */
export function describeKinds(kinds: ReadonlySet<Kind>): string {
  if (ALL_KINDS.every((k) => kinds.has(k))) return 'any type';
  const names: string[] = [];
  for (const kind of ALL_KINDS) {
    if (!kinds.has(kind)) continue;
    if (kind === 'integer') names.push(kinds.has('fraction') ? 'number' : 'integer');
    else if (kind === 'fraction') {
      if (!kinds.has('integer')) names.push('non-integer number');
    } else names.push(kind);
  }
  return names.join('|');
}

/** The finite set of values a schema list allows, when enum/const or the types make it finite. */
export interface WriterFacts {
  kinds: Set<Kind>;
  values?: unknown[];
  scalarValues: boolean; // every value is a string, number, boolean or null
}

/** Facts about the intersection of the given (expanded) conjuncts. */
export function writerFacts(conjuncts: readonly SchemaNode[]): WriterFacts {
  let kinds = new Set(ALL_KINDS);
  let values: unknown[] | undefined;
  for (const { value } of conjuncts) {
    const schema = value as SchemaObject;
    const declared = declaredKinds(schema);
    if (declared) kinds = new Set([...kinds].filter((k) => declared.has(k)));
    const allowed = allowedValues(schema);
    if (allowed) values = values ? values.filter((v) => allowed.some((a) => jsonEqual(a, v))) : [...allowed];
  }
  if (!values && [...kinds].every((k) => k === 'null' || k === 'boolean')) {
    values = [...(kinds.has('null') ? [null] : []), ...(kinds.has('boolean') ? [true, false] : [])];
  }
  if (!values) return { kinds, scalarValues: false };
  const kept = values
    .filter((v, i) => values.findIndex((x) => jsonEqual(x, v)) === i && kinds.has(kindOf(v)))
    .filter((v) => conjuncts.every((c) => satisfiesScalarKeywords(c.value as SchemaObject, v) !== false));
  return {
    kinds: new Set(kept.map(kindOf)),
    values: kept,
    scalarValues: kept.every((v) => v === null || typeof v !== 'object'),
  };
}

/** The values `enum` and `const` of one schema allow together; undefined when neither is present. */
export function allowedValues(schema: SchemaObject): unknown[] | undefined {
  let values = Array.isArray(schema.enum) ? [...schema.enum] : undefined;
  if ('const' in schema) values = (values ?? [schema.const]).filter((v) => jsonEqual(v, schema.const));
  return values;
}

function satisfiesScalarKeywords(schema: SchemaObject, value: unknown): boolean | undefined {
  let result: boolean | undefined = true;
  for (const keyword of SCALAR_KEYWORDS) {
    if (!(keyword in schema)) continue;
    const ok = evaluateScalar(keyword, schema[keyword], value);
    if (ok === false) return false;
    if (ok === undefined) result = undefined;
  }
  return result;
}
