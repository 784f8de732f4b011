/**
 * The subscription filter language: a Mongo-style JSON document matched against each event
 * (see docs/filters-and-mappings.md). Validated once when a subscription is written, then matched
 * by the event processor; both halves are pure.
 */
import type { ErrorDetail } from './errors.ts';
import { ValidationError } from './errors.ts';
import type { JsonObject } from './json.ts';
import { canonicalJson, isJsonObject, jsonDepthProblem } from './json.ts';
import { collectPath, parsePath } from './json-path.ts';

/** What a filter sees: the event's `data` and its CloudEvents attributes (`$event.` paths). */
export interface FilterContext {
  data: unknown;
  event: Record<string, unknown>;
}

export const MAX_FILTER_DEPTH = 16;
export const MAX_FILTER_CONDITIONS = 256;
export const MAX_IN_VALUES = 1000;

const COMPARISONS = new Set(['$eq', '$neq', '$in', '$nin', '$gt', '$gte', '$lt', '$lte', '$exists']);
const LOGICALS = new Set(['$and', '$or', '$not']);
const EVENT_ROOT = '$event';

/** Where a node of the filter applies: the data or the event attributes, plus a path within it. */
interface Scope {
  root: 'data' | 'event';
  segments: string[];
}

/** Problems with a filter document; empty when valid. `field` paths are prefixed with `fieldPrefix`. */
export function validateFilter(filter: unknown, fieldPrefix = 'filter'): ErrorDetail[] {
  if (!isJsonObject(filter)) return [{ field: fieldPrefix, message: 'must be a JSON object' }];
  const state: ValidationState = { details: [], conditions: 0, stopped: false };
  validateNode(filter, { root: 'data', segments: [] }, fieldPrefix, 1, state);
  if (
    state.conditions > MAX_FILTER_CONDITIONS &&
    !state.details.some((d) => d.code === 'too_many_conditions')
  ) {
    state.details.push({ field: fieldPrefix, message: `has more than ${MAX_FILTER_CONDITIONS} conditions` });
  }
  return state.details;
}

/** Returns the filter typed as a document, or throws `invalid_filter` with every problem. */
export function assertValidFilter(filter: unknown, fieldPrefix = 'filter'): JsonObject {
  const details = validateFilter(filter, fieldPrefix);
  if (details.length > 0) {
    throw new ValidationError('invalid_filter', `${fieldPrefix} is not a valid filter`, { details });
  }
  return filter as JsonObject;
}

interface ValidationState {
  details: ErrorDetail[];
  conditions: number;
  /** Set once the filter is found too large: nothing more is read, and no more problems are reported. */
  stopped: boolean;
}

/**
 * True once the filter is past MAX_FILTER_CONDITIONS conditions (`adding` more about to be read), or
 * past as many problems: the first time, reports it at `field`; after that the rest is not read.
 */
function overLimit(state: ValidationState, field: string, adding: number): boolean {
  if (state.stopped) return true;
  if (
    state.conditions + adding <= MAX_FILTER_CONDITIONS * 4 &&
    state.details.length < MAX_FILTER_CONDITIONS
  ) {
    return false;
  }
  state.stopped = true;
  state.details.push({
    field,
    message: `has more than ${MAX_FILTER_CONDITIONS} conditions`,
    code: 'too_many_conditions',
  });
  return true;
}

function validateNode(node: JsonObject, scope: Scope, field: string, depth: number, state: ValidationState) {
  if (depth > MAX_FILTER_DEPTH) {
    state.details.push({ field, message: `nests deeper than ${MAX_FILTER_DEPTH} levels` });
    return;
  }
  const keys = Object.keys(node);
  // A filter has at most MAX_FILTER_CONDITIONS conditions: once past them, or past as many problems,
  // the rest is not read (a filter of 100,000 keys would otherwise hold the event loop for a while,
  // and a $or of 100,000 elements would be answered with 100,000 details).
  if (overLimit(state, field, keys.length)) return;
  const hasComparison = keys.some((key) => COMPARISONS.has(key));
  const hasField = keys.some((key) => !key.startsWith('$') || isEventKey(key));
  if (hasComparison && hasField) {
    state.details.push({ field, message: 'cannot mix operators and field names in one object' });
    return;
  }
  for (const key of keys) {
    if (state.stopped) return;
    const value = node[key];
    const at = `${field}.${key}`;
    if (COMPARISONS.has(key)) {
      if (scope.segments.length === 0) state.details.push({ field: at, message: `${key} needs a field` });
      else validateComparison(key, value, at, state);
    } else if (LOGICALS.has(key)) {
      validateLogical(key, value, scope, field, depth, state);
    } else if (key.startsWith('$') && !isEventKey(key)) {
      state.details.push({ field: at, message: `unknown operator ${key}` });
    } else {
      validateFieldKey(key, value, scope, at, depth, state);
    }
  }
}

function validateFieldKey(
  key: string,
  value: unknown,
  scope: Scope,
  at: string,
  depth: number,
  state: ValidationState,
) {
  const inner = childScope(scope, key);
  if (typeof inner === 'string') {
    state.details.push({ field: at, message: inner });
    return;
  }
  if (!isJsonObject(value)) {
    state.conditions += 1;
    const tooDeep = jsonDepthProblem(value, at);
    if (tooDeep) state.details.push(tooDeep);
    return;
  }
  if (Object.keys(value).length === 0) {
    const message = 'is an empty object; use {"$eq": {}} to match an empty object';
    state.details.push({ field: at, message });
    return;
  }
  validateNode(value, inner, at, depth + 1, state);
}

function validateComparison(op: string, operand: unknown, at: string, state: ValidationState) {
  state.conditions += 1;
  const tooDeep = jsonDepthProblem(operand, at);
  if (tooDeep) {
    state.details.push(tooDeep);
  } else if (op === '$exists' && typeof operand !== 'boolean') {
    state.details.push({ field: at, message: '$exists expects true or false' });
  } else if ((op === '$in' || op === '$nin') && !Array.isArray(operand)) {
    state.details.push({ field: at, message: `${op} expects an array` });
  } else if ((op === '$in' || op === '$nin') && (operand as unknown[]).length > MAX_IN_VALUES) {
    state.details.push({ field: at, message: `${op} expects at most ${MAX_IN_VALUES} values` });
  } else if (/^\$(gt|gte|lt|lte)$/.test(op) && typeof operand !== 'number' && typeof operand !== 'string') {
    state.details.push({ field: at, message: `${op} expects a number or string` });
  }
}

function validateLogical(
  op: string,
  value: unknown,
  scope: Scope,
  field: string,
  depth: number,
  state: ValidationState,
) {
  const at = `${field}.${op}`;
  if (op === '$not') {
    if (isJsonObject(value) && Object.keys(value).length > 0)
      validateNode(value, scope, at, depth + 1, state);
    else state.details.push({ field: at, message: '$not expects a non-empty filter object' });
    return;
  }
  if (!Array.isArray(value) || value.length === 0) {
    state.details.push({ field: at, message: `${op} expects a non-empty array of filters` });
    return;
  }
  for (const [index, element] of value.entries()) {
    const elementField = `${at}[${index}]`;
    if (overLimit(state, elementField, 0)) return;
    if (isJsonObject(element)) validateNode(element, scope, elementField, depth + 1, state);
    else state.details.push({ field: elementField, message: 'expects a filter object' });
  }
}

/** True when the event matches the (already validated) filter. */
export function matchesFilter(filter: JsonObject, context: FilterContext): boolean {
  return matchNode(filter, { root: 'data', segments: [] }, context);
}

function matchNode(node: JsonObject, scope: Scope, context: FilterContext): boolean {
  for (const [key, operand] of Object.entries(node)) {
    if (!matchKey(key, operand, scope, context)) return false;
  }
  return true;
}

function matchKey(key: string, operand: unknown, scope: Scope, context: FilterContext): boolean {
  if (COMPARISONS.has(key)) return compare(key, operand, resolve(scope, context));
  if (key === '$not') return !matchNode(asNode(operand, key), scope, context);
  if (key === '$and') return asNodes(operand, key).every((node) => matchNode(node, scope, context));
  if (key === '$or') return asNodes(operand, key).some((node) => matchNode(node, scope, context));
  const inner = childScope(scope, key);
  if (typeof inner === 'string') throw invalid(`${key}: ${inner}`);
  if (isJsonObject(operand)) return matchNode(operand, inner, context);
  return compare('$eq', operand, resolve(inner, context));
}

function resolve(scope: Scope, context: FilterContext): unknown[] {
  return collectPath(scope.root === 'event' ? context.event : context.data, scope.segments);
}

function compare(op: string, operand: unknown, values: unknown[]): boolean {
  switch (op) {
    case '$exists':
      return operand === true ? values.length > 0 : values.length === 0;
    case '$eq':
    case '$neq': {
      let found: boolean;
      if (isScalar(operand)) {
        found = values.some(
          (value) => value === operand || (Array.isArray(value) && value.includes(operand)),
        );
      } else {
        const candidates = candidatesOf([operand], operand as object);
        found = values.some((value) => equalsOrContains(value, candidates));
      }
      return op === '$eq' ? found : !found;
    }
    case '$in':
    case '$nin': {
      const candidates = candidatesOf(asArray(operand, op));
      const found = values.some((value) => equalsOrContains(value, candidates));
      return op === '$in' ? found : !found;
    }
    case '$gt':
    case '$gte':
    case '$lt':
    case '$lte':
      return values.some((value) => orderedAnyElement(op, value, operand));
    default:
      throw invalid(`unknown operator ${op}`);
  }
}

/** A list of operands, sorted for lookups: scalars as they are, objects and arrays as canonical text. */
interface Candidates {
  scalars: Set<unknown>;
  objects: Set<string>;
  arrays: Set<string>;
}

/** Per operand (a `$in` list, an `$eq` object) of a stored filter: worked out once, not per event. */
const candidateCache = new WeakMap<object, Candidates>();

function isScalar(value: unknown): boolean {
  return value === null || typeof value !== 'object';
}

function candidatesOf(list: unknown[], key: object = list): Candidates {
  let candidates = candidateCache.get(key);
  if (!candidates) {
    candidates = { scalars: new Set(), objects: new Set(), arrays: new Set() };
    for (const candidate of list) {
      if (isScalar(candidate)) candidates.scalars.add(candidate);
      else (Array.isArray(candidate) ? candidates.arrays : candidates.objects).add(canonicalJson(candidate));
    }
    candidateCache.set(key, candidates);
  }
  return candidates;
}

/**
 * Whether the value equals one of the candidates (JSON equality, key order ignored), or, Mongo
 * semantics, is an array with an element equal to a candidate that is not an array. Scalars are
 * looked up as they are; objects and arrays by their canonical text, made once per value (a 15 KB
 * `$in` compared against 20,000 array elements one by one took 31 s of one thread).
 */
function equalsOrContains(value: unknown, candidates: Candidates): boolean {
  if (isScalar(value)) return candidates.scalars.has(value);
  if (!Array.isArray(value))
    return candidates.objects.size > 0 && candidates.objects.has(canonicalJson(value));
  if (candidates.arrays.size > 0 && candidates.arrays.has(canonicalJson(value))) return true;
  for (const element of value) {
    if (isScalar(element)) {
      if (candidates.scalars.has(element)) return true;
    } else if (!Array.isArray(element) && candidates.objects.size > 0) {
      if (candidates.objects.has(canonicalJson(element))) return true;
    }
  }
  return false;
}

function orderedAnyElement(op: string, value: unknown, operand: unknown): boolean {
  if (Array.isArray(value)) return value.some((element) => ordered(op, element, operand));
  return ordered(op, value, operand);
}

/** Numbers compare with numbers and strings with strings (so ISO times compare); nothing else does. */
function ordered(op: string, value: unknown, operand: unknown): boolean {
  const comparable =
    (typeof value === 'number' && typeof operand === 'number') ||
    (typeof value === 'string' && typeof operand === 'string');
  if (!comparable) return false;
  const a = value as number | string;
  const b = operand as number | string;
  if (op === '$gt') return a > b;
  if (op === '$gte') return a >= b;
  if (op === '$lt') return a < b;
  return a <= b;
}

function isEventKey(key: string): boolean {
  return key === EVENT_ROOT || key.startsWith(`${EVENT_ROOT}.`);
}

/** The scope a field key points to, or why it cannot be used there. */
function childScope(scope: Scope, key: string): Scope | string {
  let root = scope.root;
  let path = key;
  if (isEventKey(key)) {
    if (scope.root !== 'data' || scope.segments.length > 0)
      return '$event paths are only allowed at the top level';
    if (key === EVENT_ROOT) return { root: 'event', segments: [] };
    root = 'event';
    path = key.slice(EVENT_ROOT.length + 1);
  }
  const parsed = parsePath(path);
  if (!parsed.ok) return parsed.problem;
  return { root, segments: [...scope.segments, ...parsed.segments] };
}

function asNode(value: unknown, op: string): JsonObject {
  if (!isJsonObject(value)) throw invalid(`${op} expects a filter object`);
  return value;
}

function asNodes(value: unknown, op: string): JsonObject[] {
  return asArray(value, op).map((element) => asNode(element, op));
}

function asArray(value: unknown, op: string): unknown[] {
  if (!Array.isArray(value)) throw invalid(`${op} expects an array`);
  return value;
}

function invalid(message: string): ValidationError {
  return new ValidationError('invalid_filter', `filter is not valid: ${message}`);
}
