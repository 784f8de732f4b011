/** JSON value types and small helpers shared by every part. */
import type { ErrorDetail } from './errors.ts';

export type JsonPrimitive = string | number | boolean | null;
export type JsonValue = JsonPrimitive | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** True for a plain JSON object (not null, not an array). */
export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The deepest nesting of arrays and objects accepted in a JSON value that comes from outside: an
 * event's `data`, a partner's `metadata`, the operands of a filter, the values of a mapping. Deep
 * enough for any business document (they rarely pass 10 levels), and low enough that whatever the
 * platform builds around such a value — the envelope on the bus, a mapping's output, which may put
 * it under a path of up to 32 segments — stays within the 128 levels common JSON parsers accept by
 * default (serde_json), and far from the thousands of levels where the platform's own recursive
 * code (JSON.stringify, canonical JSON, schema validation) overflows the stack.
 */
export const MAX_JSON_DEPTH = 64;

/** The `code` of the error detail that reports a value nested too deeply. */
export const TOO_DEEP = 'too_deep';

/**
 * True when `value` nests arrays and objects more than `maxDepth` levels deep (a scalar is at
 * depth 0, `[]` and `{}` at 1, `[[1]]` at 2). Iterative, with a stack of its own, so it cannot
 * overflow however deep the value is; it stops at the first container beyond the limit.
 */
export function exceedsJsonDepth(value: unknown, maxDepth = MAX_JSON_DEPTH): boolean {
  if (!isContainer(value)) return false;
  if (maxDepth < 1) return true;
  // Two parallel stacks used in place (no allocation per node): it runs on every event's data, and
  // a megabyte of small objects is hundreds of thousands of nodes.
  const nodes: object[] = [value];
  const depths: number[] = [1];
  let top = 1;
  while (top > 0) {
    top -= 1;
    const node = nodes[top]!;
    const depth = depths[top]!;
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const child: unknown = node[i];
        if (!isContainer(child)) continue;
        if (depth >= maxDepth) return true;
        nodes[top] = child;
        depths[top] = depth + 1;
        top += 1;
      }
    } else {
      for (const key in node) {
        const child: unknown = (node as Record<string, unknown>)[key];
        if (!isContainer(child)) continue;
        if (depth >= maxDepth) return true;
        nodes[top] = child;
        depths[top] = depth + 1;
        top += 1;
      }
    }
  }
  return false;
}

/**
 * How deep JSON text nests arrays and objects, read from the text (brackets outside strings), or
 * `limit + 1` as soon as it is deeper than `limit`. About a millisecond per megabyte: an upper bound
 * on the depth of any value inside, without walking the parsed tree (tens of ms for a megabyte of
 * small objects).
 */
export function jsonTextDepth(text: string, limit: number): number {
  let depth = 0;
  let deepest = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      i = stringEnd(text, i);
      if (i === -1) return deepest;
    } else if (c === 0x5b || c === 0x7b) {
      depth += 1;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > limit) return limit + 1;
      }
    } else if (c === 0x5d || c === 0x7d) depth -= 1;
  }
  return deepest;
}

/** The index of the quote that closes the string opened at `start` (the first not escaped), or -1. */
function stringEnd(text: string, start: number): number {
  let end = text.indexOf('"', start + 1);
  while (end !== -1) {
    let slashes = 0;
    while (text.charCodeAt(end - 1 - slashes) === 0x5c) slashes++;
    if (slashes % 2 === 0) return end;
    end = text.indexOf('"', end + 1);
  }
  return -1;
}

/**
 * True when JSON text holds more than `limit` values, counted from its text before it is parsed:
 * each `[` and `{` and each `,` outside strings (an upper bound on the values less one per
 * container, and what parsing costs: a megabyte of `[{},{},…]` is 262,144 objects, 12–50 ms of
 * JSON.parse and its garbage). A text shorter than `limit` cannot hold more, and is not scanned.
 */
export function jsonTextExceeds(text: string, limit: number): boolean {
  return jsonTextComplexity(text, limit, Number.POSITIVE_INFINITY) === 'values';
}

/**
 * What makes JSON text too costly to parse, counted from its text: more than `maxValues` values (as
 * `jsonTextExceeds` counts them), or an object with more than `maxMembers` members (a megabyte of
 * `"keyN":N` is one object of 60,000 members, 17–45 ms of JSON.parse: V8 builds such an object
 * as a hash table, key by key). Undefined when neither; invalid JSON is left to JSON.parse.
 */
export function jsonTextComplexity(
  text: string,
  maxValues: number,
  maxMembers: number,
): 'values' | 'members' | undefined {
  // Shorter texts cannot hold more (members: one comma each, but the first).
  if (text.length <= maxValues && text.length <= maxMembers) return undefined;
  let count = 0;
  // Per open container: the commas seen in it so far, or -1 for an array (its elements are not members).
  const commas: number[] = [];
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // A string: on to its closing quote.
      i = stringEnd(text, i);
      if (i === -1) return undefined; // not valid JSON: JSON.parse will say so
    } else if (c === 0x2c || c === 0x5b || c === 0x7b) {
      count += 1;
      if (count > maxValues) return 'values';
      if (c === 0x7b) commas.push(0);
      else if (c === 0x5b) commas.push(-1);
      else {
        const top = commas.length - 1;
        if (top >= 0 && commas[top]! >= 0 && ++commas[top]! >= maxMembers) return 'members';
      }
    } else if (c === 0x5d || c === 0x7d) commas.pop();
  }
  return undefined;
}

/** The error detail (`too_deep`) for a value at `field` that nests deeper than `maxDepth`; else undefined. */
export function jsonDepthProblem(
  value: unknown,
  field: string,
  maxDepth = MAX_JSON_DEPTH,
): ErrorDetail | undefined {
  if (!exceedsJsonDepth(value, maxDepth)) return undefined;
  return { field, message: `nests arrays and objects more than ${maxDepth} levels deep`, code: TOO_DEEP };
}

function isContainer(value: unknown): value is object {
  return typeof value === 'object' && value !== null;
}

/** JSON text with object keys sorted at every level: equal documents give equal strings. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (isJsonObject(value)) {
    // Without a prototype, a `__proto__` key is a member like any other (on a plain object the
    // assignment would set the prototype, and the key would vanish from the text).
    const out: Record<string, unknown> = Object.create(null);
    for (const key of Object.keys(value).sort()) out[key] = sortKeys(value[key]);
    return out;
  }
  return value;
}

/** Deep equality of two JSON values (key order ignored). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  // Strings, numbers, booleans and null compare directly; only objects and arrays need the canonical form.
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return a === b;
  return canonicalJson(a) === canonicalJson(b);
}

/** A JSON pointer extended by segments, each escaped (`~` → `~0`, `/` → `~1`). */
export function pointerTo(pointer: string, ...segments: Array<string | number>): string {
  let out = pointer;
  for (const segment of segments) out += `/${String(segment).replaceAll('~', '~0').replaceAll('/', '~1')}`;
  return out;
}

/** The unescaped segments of a JSON pointer ("/a~1b/0" → ["a/b", "0"]; "" → []). */
export function pointerSegments(pointer: string): string[] {
  if (pointer === '' || pointer === '/') return pointer === '/' ? [''] : [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'));
}
