/**
 * The mapping language: a declarative table of rules that turns an event into the payload a partner
 * receives (see docs/filters-and-mappings.md). Validated when a subscription is written, applied by
 * the event processor; both halves are pure.
 */
import type { ErrorDetail } from './errors.ts';
import { UnprocessableError, ValidationError } from './errors.ts';
import type { JsonObject, JsonValue } from './json.ts';
import { isJsonObject, jsonDepthProblem } from './json.ts';
import { getPath, parsePath, removePath, setPath } from './json-path.ts';
import type { TransformName } from './mapping-transforms.ts';
import { applyTransform, TRANSFORMS } from './mapping-transforms.ts';

export type { TransformName } from './mapping-transforms.ts';

/** What a mapping reads: the event's data, its CloudEvents attributes and, when known, the partner. */
export interface MappingContext {
  data: unknown;
  event: Record<string, unknown>;
  partner?: Record<string, unknown>;
}

export type MappingMode = 'replace' | 'merge';
export interface CopyRule {
  to: string;
  from: string;
  default?: JsonValue;
  transform?: TransformName;
}
export interface ConstantRule {
  to: string;
  value: JsonValue;
}
export interface RemoveRule {
  remove: string;
}
export type MappingRule = CopyRule | ConstantRule | RemoveRule;
export interface MappingDocument {
  mode?: MappingMode;
  rules: MappingRule[];
}

/** How `applyMapping` is bounded. */
export interface MappingOptions {
  /** The largest output allowed, in bytes of JSON text (UTF-8); `MAX_MAPPING_OUTPUT_BYTES` by default. */
  maxOutputBytes?: number;
}

export const MAX_MAPPING_RULES = 200;
/**
 * The largest payload a mapping may build, in bytes of JSON (UTF-8): by default the request body
 * limit of the platform (`WEBHOOKS_MAX_BODY_BYTES`, 1 MiB), so that a mapped payload is never larger
 * than the largest event the platform takes in, which is what an unmapped payload can be. Without a
 * limit, rules that each copy `$data` multiply the event: 200 of them made 40 MB of a 200 KB event.
 */
export const MAX_MAPPING_OUTPUT_BYTES = 1024 * 1024;

const SOURCE_ROOTS = ['$data', '$event', '$partner'] as const;
type SourceRoot = (typeof SOURCE_ROOTS)[number];
const RULE_KEYS = new Set(['to', 'from', 'value', 'default', 'transform', 'remove']);

/** Problems with a mapping document; empty when valid (fields prefixed with `fieldPrefix`). */
export function validateMapping(mapping: unknown, fieldPrefix = 'mapping'): ErrorDetail[] {
  if (!isJsonObject(mapping)) return [{ field: fieldPrefix, message: 'must be a JSON object' }];
  const details: ErrorDetail[] = [];
  for (const key of Object.keys(mapping)) {
    if (key !== 'mode' && key !== 'rules')
      details.push({ field: `${fieldPrefix}.${key}`, message: 'unknown property' });
  }
  if (mapping.mode !== undefined && mapping.mode !== 'replace' && mapping.mode !== 'merge') {
    details.push({ field: `${fieldPrefix}.mode`, message: 'must be "replace" or "merge"' });
  }
  const rules = mapping.rules;
  if (!Array.isArray(rules)) {
    details.push({ field: `${fieldPrefix}.rules`, message: 'must be an array of rules' });
  } else if (rules.length > MAX_MAPPING_RULES) {
    details.push({ field: `${fieldPrefix}.rules`, message: `must have at most ${MAX_MAPPING_RULES} rules` });
  } else {
    rules.forEach((rule, index) => {
      details.push(...validateRule(rule, `${fieldPrefix}.rules[${index}]`));
    });
  }
  return details;
}

/** Returns the mapping typed as a document, or throws `invalid_mapping` with every problem. */
export function assertValidMapping(mapping: unknown, fieldPrefix = 'mapping'): MappingDocument {
  const details = validateMapping(mapping, fieldPrefix);
  if (details.length > 0) {
    throw new ValidationError('invalid_mapping', `${fieldPrefix} is not a valid mapping`, { details });
  }
  return mapping as unknown as MappingDocument;
}

function validateRule(rule: JsonValue, field: string): ErrorDetail[] {
  if (!isJsonObject(rule)) return [{ field, message: 'must be a JSON object' }];
  const details: ErrorDetail[] = [];
  const problem = (key: string, message: string) => details.push({ field: `${field}.${key}`, message });
  for (const key of Object.keys(rule)) if (!RULE_KEYS.has(key)) problem(key, 'unknown property');
  const has = (key: string) => Object.hasOwn(rule, key);
  if (has('remove')) {
    for (const key of ['to', 'from', 'value', 'default', 'transform']) {
      if (has(key)) problem(key, 'is not allowed in a remove rule');
    }
    const targetProblem = checkTarget(rule.remove);
    if (targetProblem) problem('remove', targetProblem);
    return details;
  }
  const targetProblem = checkTarget(rule.to);
  if (targetProblem) problem('to', targetProblem);
  if (has('from') === has('value')) {
    details.push({ field, message: 'needs exactly one of "from" or "value" (or "remove")' });
  }
  if (has('from')) {
    const sourceProblem = checkSource(rule.from);
    if (sourceProblem) problem('from', sourceProblem);
  } else {
    if (has('default')) problem('default', 'is only allowed with "from"');
    if (has('transform')) problem('transform', 'is only allowed with "from"');
  }
  if (has('transform') && !TRANSFORMS.includes(rule.transform as TransformName)) {
    problem('transform', `must be one of ${TRANSFORMS.join(', ')}`);
  }
  for (const key of ['value', 'default']) {
    const tooDeep = has(key) ? jsonDepthProblem(rule[key], `${field}.${key}`) : undefined;
    if (tooDeep) details.push(tooDeep);
  }
  return details;
}

function checkTarget(path: unknown): string | undefined {
  if (typeof path !== 'string') return 'must be a dotted path string';
  if (path.startsWith('$')) return 'a target path cannot start with $';
  const parsed = parsePath(path);
  return parsed.ok ? undefined : parsed.problem;
}

function checkSource(path: unknown): string | undefined {
  if (typeof path !== 'string') return 'must be a dotted path string';
  const { root, rest } = splitSource(path);
  if (root === undefined) return `unknown source root; use a data path, ${SOURCE_ROOTS.join(', ')}`;
  if (rest === undefined) return undefined;
  const parsed = parsePath(rest);
  return parsed.ok ? undefined : parsed.problem;
}

/** `$event.id` → ($event, "id"); `$partner` → ($partner, none); `order.id` → ($data, "order.id"). */
function splitSource(path: string): { root: SourceRoot | undefined; rest: string | undefined } {
  if (!path.startsWith('$')) return { root: '$data', rest: path };
  const dot = path.indexOf('.');
  const head = dot < 0 ? path : path.slice(0, dot);
  const root = SOURCE_ROOTS.find((candidate) => candidate === head);
  return { root, rest: dot < 0 ? undefined : path.slice(dot + 1) };
}

/**
 * Builds the partner payload from the event under the (already validated) mapping. Throws
 * `UnprocessableError` — permanent for this event: the same event and mapping fail again — with
 * `mapping_failed` when a transform cannot convert a value, and `mapping_output_too_large` as soon
 * as the output is larger than `options.maxOutputBytes`.
 */
export function applyMapping(
  mapping: MappingDocument,
  context: MappingContext,
  options: MappingOptions = {},
): JsonValue {
  const size = new OutputSize(options.maxOutputBytes ?? MAX_MAPPING_OUTPUT_BYTES);
  let output: JsonValue = {};
  if (mapping.mode === 'merge' && context.data !== undefined) {
    const copy = copyJson(context.data as JsonValue);
    output = copy.value;
    size.grow(copy.bytes - 2);
    size.check(output, 'mapping.mode', 'the copy of the event data');
  }
  mapping.rules.forEach((rule, index) => {
    if ('remove' in rule) {
      removePath(output, segmentsOf(rule.remove));
      return;
    }
    const copy = 'from' in rule ? copiedValue(rule, index, context) : copyJson(rule.value);
    if (copy === undefined) return;
    if (!isJsonObject(output)) output = {};
    const segments = segmentsOf(rule.to);
    setPath(output as JsonObject, segments, copy.value);
    size.grow(copy.bytes + pathBytes(rule.to, segments.length));
    size.check(output, `mapping.rules[${index}]`, 'this rule');
  });
  return output;
}

function copiedValue(rule: CopyRule, index: number, context: MappingContext): CopiedJson | undefined {
  const { root, rest } = splitSource(rule.from);
  const base = root === '$event' ? context.event : root === '$partner' ? context.partner : context.data;
  const found = getPath(base, rest === undefined ? [] : segmentsOf(rest));
  if (!found.found) return rule.default === undefined ? undefined : copyJson(rule.default);
  const copy = copyJson(found.value as JsonValue);
  if (rule.transform === undefined) return copy;
  const result = applyTransform(rule.transform, copy.value);
  if (result.ok) return { value: result.value, bytes: jsonBytes(result.value) };
  throw new UnprocessableError('mapping_failed', `mapping rule ${index} failed: ${result.problem}`, {
    details: [{ field: `mapping.rules[${index}].transform`, message: result.problem }],
  });
}

/** A copied value and the bytes of its JSON text. */
interface CopiedJson {
  value: JsonValue;
  bytes: number;
}

/** A deep copy of a JSON value through its text (own `__proto__` keys stay plain data), measured on the way. */
function copyJson(value: JsonValue): CopiedJson {
  const text = JSON.stringify(value);
  return { value: JSON.parse(text) as JsonValue, bytes: Buffer.byteLength(text) };
}

function jsonBytes(value: JsonValue): number {
  return Buffer.byteLength(JSON.stringify(value));
}

/** At most what writing at a path adds around the value: per segment `"key":`, `{}` and a comma. */
function pathBytes(path: string, segments: number): number {
  return jsonBytes(path) + 6 * segments;
}

/**
 * The output's size, kept cheaply: a running upper bound (what each rule wrote, as if nothing were
 * ever overwritten or removed) that is replaced by the exact size, measured by serialising the
 * output, only when it passes the limit — so small outputs are never serialised here, and a large
 * one is caught one rule after it grew too large, before the next rule copies more.
 */
class OutputSize {
  readonly #limit: number;
  #bound = 2; // "{}"

  constructor(limit: number) {
    this.#limit = limit;
  }

  grow(bytes: number): void {
    this.#bound += bytes;
  }

  /** Throws `mapping_output_too_large` naming `field` (what `what` wrote) when the output is over the limit. */
  check(output: JsonValue, field: string, what: string): void {
    if (this.#bound <= this.#limit) return;
    this.#bound = jsonBytes(output);
    if (this.#bound <= this.#limit) return;
    const details = [{ field, message: `the output reached ${this.#bound} bytes with ${what}` }];
    const message = `the mapping's output is larger than ${this.#limit} bytes`;
    throw new UnprocessableError('mapping_output_too_large', message, { details });
  }
}

function segmentsOf(path: string): readonly string[] {
  const parsed = parsePath(path);
  if (!parsed.ok) throw new ValidationError('invalid_mapping', `mapping is not valid: ${parsed.problem}`);
  return parsed.segments;
}
