/**
 * Dotted paths into JSON values (`customer.tier`, `items.0.sku`), shared by the filter and mapping
 * languages. Reads see own properties only and writes refuse prototype keys, so a path coming from a
 * subscription document can never reach `Object.prototype`.
 */
import type { JsonObject, JsonValue } from './json.ts';
import { isJsonObject } from './json.ts';

/** Segments that would reach or replace an object's prototype. */
export const FORBIDDEN_SEGMENTS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

export const MAX_PATH_LENGTH = 512;
export const MAX_PATH_SEGMENTS = 32;

export type ParsedPath = { ok: true; segments: readonly string[] } | { ok: false; problem: string };

/** Splits a dotted path into segments, or says why it cannot be used. */
export function parsePath(path: string): ParsedPath {
  // Filters and mappings resolve the same few paths for every event: parse each once.
  let parsed = PARSED.get(path);
  if (!parsed) {
    parsed = parseUncached(path);
    if (PARSED.size >= MAX_CACHED_PATHS) PARSED.delete(PARSED.keys().next().value as string);
    PARSED.set(path, parsed);
  }
  return parsed;
}

const MAX_CACHED_PATHS = 10_000;
const PARSED = new Map<string, ParsedPath>();

function parseUncached(path: string): ParsedPath {
  if (path === '') return { ok: false, problem: 'path is empty' };
  if (path.length > MAX_PATH_LENGTH) {
    return { ok: false, problem: `path is longer than ${MAX_PATH_LENGTH} characters` };
  }
  const segments = path.split('.');
  if (segments.length > MAX_PATH_SEGMENTS) {
    return { ok: false, problem: `path has more than ${MAX_PATH_SEGMENTS} segments` };
  }
  for (const segment of segments) {
    if (segment === '') return { ok: false, problem: `path "${path}" has an empty segment` };
    if (FORBIDDEN_SEGMENTS.has(segment)) {
      return { ok: false, problem: `path segment "${segment}" is not allowed` };
    }
  }
  return { ok: true, segments };
}

/** True for a canonical array index segment ("0", "12"; not "01" or "-1"). */
export function isArrayIndex(segment: string): boolean {
  return /^(0|[1-9][0-9]{0,8})$/.test(segment);
}

export type PathLookup = { found: true; value: unknown } | { found: false };

/** The value at exactly this path; `undefined` counts as absent. */
export function getPath(root: unknown, segments: readonly string[]): PathLookup {
  let current: unknown = root;
  for (const segment of segments) {
    const next = child(current, segment);
    if (!next.found) return next;
    current = next.value;
  }
  return current === undefined ? { found: false } : { found: true, value: current };
}

/**
 * Every value the path reaches, Mongo-style: a named segment applied to an array continues into each
 * element, so `items.sku` yields the `sku` of every item.
 */
export function collectPath(root: unknown, segments: readonly string[]): unknown[] {
  let current: unknown[] = root === undefined ? [] : [root];
  for (const segment of segments) {
    const next: unknown[] = [];
    for (const value of current) {
      if (Array.isArray(value) && !isArrayIndex(segment)) {
        for (const element of value) pushChild(next, element, segment);
      } else {
        pushChild(next, value, segment);
      }
    }
    current = next;
  }
  return current;
}

function pushChild(into: unknown[], value: unknown, segment: string): void {
  const next = child(value, segment);
  if (next.found) into.push(next.value);
}

function child(value: unknown, segment: string): PathLookup {
  if (Array.isArray(value)) {
    if (!isArrayIndex(segment)) return { found: false };
    const element: unknown = value[Number(segment)];
    return element === undefined ? { found: false } : { found: true, value: element };
  }
  if (isJsonObject(value) && Object.hasOwn(value, segment)) {
    const property: unknown = value[segment];
    return property === undefined ? { found: false } : { found: true, value: property };
  }
  return { found: false };
}

/**
 * Writes `value` at the path, creating objects on the way. An array is entered by index (up to its
 * length, which appends); anything else in the way is replaced by an object, so later writes win.
 */
export function setPath(root: JsonObject, segments: readonly string[], value: JsonValue): void {
  let container: JsonObject | JsonValue[] = root;
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    assertSafeSegment(segment);
    const last = i === segments.length - 1;
    if (Array.isArray(container)) {
      const index = isArrayIndex(segment) ? Number(segment) : -1;
      if (index < 0 || index > container.length) {
        throw new RangeError('setPath: array container must be replaced by its parent');
      }
      if (last) {
        container[index] = value;
        return;
      }
      container = enter(container, index, segments[i + 1]!);
    } else {
      if (last) {
        defineOwn(container, segment, value);
        return;
      }
      container = enter(container, segment, segments[i + 1]!);
    }
  }
}

/** The container stored under `key`, made writable for `nextSegment` (replaced when it is not). */
function enter(
  parent: JsonObject | JsonValue[],
  key: string | number,
  nextSegment: string,
): JsonObject | JsonValue[] {
  const existing = (parent as Record<string | number, JsonValue | undefined>)[key];
  const own = Array.isArray(parent) || Object.hasOwn(parent, key as string);
  if (own && isJsonObject(existing)) return existing;
  if (own && Array.isArray(existing) && isArrayIndex(nextSegment) && Number(nextSegment) <= existing.length) {
    return existing;
  }
  const created: JsonObject = {};
  if (Array.isArray(parent)) parent[key as number] = created;
  else defineOwn(parent, key as string, created);
  return created;
}

/** Removes the value at the path if present; an array element is spliced out (JSON has no holes). */
export function removePath(root: JsonValue, segments: readonly string[]): void {
  const parentPath = segments.slice(0, -1);
  const key = segments[segments.length - 1];
  if (key === undefined) return;
  const parent = getPath(root, parentPath);
  if (!parent.found) return;
  const container = parent.value;
  if (Array.isArray(container)) {
    if (isArrayIndex(key) && Number(key) < container.length) container.splice(Number(key), 1);
  } else if (isJsonObject(container) && Object.hasOwn(container, key)) {
    delete container[key];
  }
}

function defineOwn(target: JsonObject, key: string, value: JsonValue): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function assertSafeSegment(segment: string): void {
  if (FORBIDDEN_SEGMENTS.has(segment)) throw new RangeError(`path segment "${segment}" is not allowed`);
}
