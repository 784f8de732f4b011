/**
 * JSON Schema utilities (draft 2020-12): the checks a schema document passes before it is
 * registered, and a cache of compiled validators so each schema version is compiled once per process.
 *
 * A registered schema runs on the processor's thread for every event, so the checks refuse what
 * would stall or crash it: documents too large or too deep to compile quickly (limits below, checked
 * without recursion before anything else looks at the document), regular expressions the linear-time
 * engine cannot run (every `pattern` is matched by RE2, see safe-regex.ts), and `$ref` cycles that
 * never move into the data (validation would recurse until the stack overflows).
 */
import { createHash } from 'node:crypto';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import formatsPlugin from 'ajv-formats';
import { type ErrorDetail, UnprocessableError, type WebhooksErrorOptions } from './errors.ts';
import {
  canonicalJson,
  exceedsJsonDepth,
  isJsonObject,
  type JsonObject,
  pointerSegments,
  pointerTo,
} from './json.ts';
import { getPath } from './json-path.ts';
import {
  estimatePatternSize,
  linearRegExp,
  MAX_PATTERN_PROGRAM_SIZE,
  PatternError,
  patternProblem,
} from './safe-regex.ts';

const DRAFT_2020_12 = 'https://json-schema.org/draft/2020-12/schema';

/**
 * The deepest nesting of objects and arrays in a schema document. A subschema under `properties`
 * sits two levels below its parent, so this allows about 60 levels of nested objects: schemas for
 * event data nested up to the 64 levels accepted in events, and nowhere near the ~4,000 levels
 * where meta-validation overflowed the stack.
 */
export const MAX_SCHEMA_DEPTH = 128;

/**
 * The most values in a schema document: every keyword, subschema and value inside them counts
 * (`{"type":"string"}` is 2). Large event schemas have a few thousand. Ajv compiles about 10 to 20
 * per millisecond (the check at registration; the processor's compilation, once per version, takes
 * about twice as long) and validation grows with the schema too: 5,000 keeps the worst shapes
 * measured at about 0.25 s to register, 0.5 s to compile and 1 ms per event.
 */
export const MAX_SCHEMA_NODES = 5_000;

/** The largest schema document, as compact JSON (UTF-8). Real schemas are tens of kilobytes. */
export const MAX_SCHEMA_BYTES = 256 * 1024;

/**
 * The most regular expressions (`pattern` values and `patternProperties` keys) in a schema document;
 * each costs a compilation at registration.
 */
export const MAX_SCHEMA_PATTERNS = 256;

/**
 * The most `patternProperties` keys in a schema document. Each is tested against every property name
 * of the objects it applies to, for every event (about 0.4 µs a test): 16 of them against an event
 * of 1 MB with 100,000 property names take about 0.65 s, 256 took 6 s.
 */
export const MAX_SCHEMA_PATTERN_PROPERTIES = 16;

/**
 * The most RE2 instructions all the distinct patterns of a document compile to together: about
 * 1.5 µs each to compile, so about 30 ms at registration.
 */
export const MAX_SCHEMA_PATTERN_PROGRAM = 2 * MAX_PATTERN_PROGRAM_SIZE;

/**
 * The most subschemas in one `allOf`, `anyOf` or `oneOf`. Ajv's code for `oneOf` nests one level per
 * branch, and compiling it grows with the square of their number: 100 branches take 0.04 s, 1,000
 * take 3 s and 5,000 overflow the stack.
 */
export const MAX_SCHEMA_BRANCHES = 128;

/**
 * Event data could not be checked against its registered schema, and never will be: the schema does
 * not compile on this platform (e.g. a pattern the linear-time engine cannot run, in a version
 * registered before patterns were checked), it has a `$ref` cycle that never moves into the data, or
 * validating overflowed the stack (a recursive schema and data nested deep enough). Retrying cannot
 * help: `permanent` says so, and it is an `unprocessable` error, which every consumer dead-letters at once.
 */
export class SchemaEvaluationError extends UnprocessableError {
  readonly permanent = true;

  constructor(message: string, options: WebhooksErrorOptions = {}) {
    super('schema_evaluation_failed', message, options);
    this.name = 'SchemaEvaluationError';
  }
}

/**
 * A new Ajv instance configured the way the platform validates event data: every regular expression
 * runs on the linear-time engine. `metaValidates: false` for instances that only compile documents
 * already meta-validated (it spares them compiling the meta-schema); `optimize: false` for a
 * compilation that is only a check (2 to 8 times faster to compile, slower to validate).
 */
function createAjv(options: { metaValidates?: boolean; optimize?: boolean } = {}): Ajv2020 {
  // strict: false because unknown keywords are legal annotations in 2020-12; allErrors to report every problem.
  const ajv = new Ajv2020({
    strict: false,
    // Event data is plain JSON: `properties` and `required` look at its own members only (a schema
    // naming `constructor` or `toString` would otherwise find Object.prototype's), and a number is
    // finite (strict: false would let Infinity pass as a number).
    ownProperties: true,
    strictNumbers: true,
    allErrors: true,
    validateFormats: true,
    loadSchema: undefined,
    validateSchema: options.metaValidates ?? true,
    code: { regExp: linearRegExp, optimize: options.optimize ?? true },
    // Ajv's own warnings (an unknown `format` is ignored, as 2020-12 allows) would go to stderr unformatted.
    logger: false,
  });
  (formatsPlugin as unknown as (a: Ajv2020) => void)(ajv);
  // Ajv compares array items pairwise (a 20,000-item array of objects took 7 s of the processor's
  // thread): the same check, in one pass over the items' canonical texts.
  ajv.removeKeyword('uniqueItems');
  ajv.addKeyword({
    keyword: 'uniqueItems',
    type: 'array',
    schemaType: 'boolean',
    errors: true,
    validate: uniqueItems,
  });
  return ajv;
}

/** `uniqueItems`: no two items equal as JSON (key order ignored), with Ajv's own error on the first pair. */
function uniqueItems(this: unknown, unique: boolean, data: unknown[]): boolean {
  if (!unique) return true;
  // Scalars keyed as they are (1 and 1.0 are one number; "1" is not 1), objects and arrays by their
  // canonical text, each in a map of its own.
  const scalars = new Map<unknown, number>();
  const objects = new Map<string, number>();
  for (let j = 0; j < data.length; j++) {
    const item = data[j];
    const scalar = item === null || typeof item !== 'object';
    const seen: Map<unknown, number> = scalar ? scalars : objects;
    const text = scalar ? item : canonicalJson(item);
    const i = seen.get(text);
    if (i !== undefined) {
      (uniqueItems as { errors?: Partial<ErrorObject>[] }).errors = [
        {
          keyword: 'uniqueItems',
          message: `must NOT have duplicate items (items ## ${i} and ${j} are identical)`,
          params: { i, j },
        },
      ];
      return false;
    }
    seen.set(text, j);
  }
  return true;
}

/**
 * Meta-validates documents (it never compiles them: Ajv keeps everything an instance compiled for as
 * long as the instance lives, so compiling happens in short-lived instances).
 */
const metaAjv = createAjv();

/** SHA-256 of the canonical JSON text of a schema document. */
export function schemaFingerprint(schema: unknown): string {
  return createHash('sha256').update(canonicalJson(schema)).digest('hex');
}

/**
 * The first checks of a document, cheap and without recursion: a boolean or an object, draft
 * 2020-12, and within the size, depth and byte limits. A document that passes them can be handed
 * to another thread (a structured clone recurses) and checked further there.
 */
export function schemaShapeProblems(schema: unknown, fieldPrefix = 'schema'): ErrorDetail[] {
  if (typeof schema !== 'boolean' && !isJsonObject(schema)) {
    return [{ field: fieldPrefix, message: 'a JSON Schema must be an object or a boolean', code: 'type' }];
  }
  if (typeof schema === 'object' && '$schema' in schema && schema.$schema !== DRAFT_2020_12) {
    const given = schema.$schema;
    return [
      {
        field: `${fieldPrefix}.$schema`,
        message: `only draft 2020-12 (${DRAFT_2020_12}) is supported, got ${JSON.stringify(given)}`,
        code: 'schema_draft_unsupported',
      },
    ];
  }
  const tooLarge = sizeProblem(schema, fieldPrefix);
  return tooLarge ? [tooLarge] : [];
}

/**
 * Problems with a JSON Schema document, each naming where it is (`<fieldPrefix>.<path>`) and with a
 * `code`. Empty when the document is a valid draft 2020-12 schema within the limits above, whose
 * patterns the linear-time engine runs, without a `$ref` cycle that consumes no data, and that
 * compiles (all `$ref`s resolve locally). Its size and depth are checked first, without recursion, so
 * no document overflows the stack.
 */
export function validateSchemaDocument(schema: unknown, fieldPrefix = 'schema'): ErrorDetail[] {
  const shape = schemaShapeProblems(schema, fieldPrefix);
  if (shape.length > 0) return shape;
  const document = schema as boolean | Record<string, unknown>;
  if (!metaAjv.validateSchema(document)) {
    return (metaAjv.errors ?? []).map((e) => toDetail(e, fieldPrefix));
  }
  const index = indexSchema(schema);
  if (index.oversized.length > 0)
    return index.oversized.map((pointer) => branchesProblem(pointer, fieldPrefix));
  const patterns = patternProblems(index, fieldPrefix);
  if (patterns.length > 0) return patterns;
  const cycle = refCycleProblem(index, fieldPrefix);
  if (cycle) return [cycle];
  let validator: ValidateFunction;
  try {
    // A fresh instance: it and everything it compiled are dropped after the check.
    validator = createAjv({ metaValidates: false, optimize: false }).compile(document);
  } catch (err) {
    return [
      {
        field: fieldPrefix,
        message: `the schema does not compile: ${(err as Error).message}`,
        code: 'schema_invalid',
      },
    ];
  }
  return trialProblems(validator, fieldPrefix);
}

/** Compiles each schema once (keyed by the caller, e.g. "orders.created.v3@fingerprint") and reuses it. */
export class ValidatorCache {
  #ajv = createAjv({ metaValidates: false });
  /** Compilations made by the current Ajv instance. */
  #compiled = 0;
  /** Validators, or why the schema cannot be evaluated (cached too: it will not change). */
  readonly #validators = new Map<string, ValidateFunction | SchemaEvaluationError>();
  readonly #maxEntries: number;

  constructor(maxEntries = 1000) {
    this.#maxEntries = maxEntries;
  }

  /**
   * Problems with `data` under `schema` (empty = valid), each naming the data path as `<fieldPrefix><path>`.
   * Throws a SchemaEvaluationError (permanent) when the schema cannot be evaluated for this data.
   */
  validate(key: string, schema: unknown, data: unknown, fieldPrefix = 'data'): ErrorDetail[] {
    const validator = this.#get(key, schema);
    if (validator instanceof SchemaEvaluationError) throw validator;
    let valid: boolean;
    try {
      valid = validator(data) as boolean;
    } catch (err) {
      // A stack overflow (RangeError) or anything else a validator throws happens again with the same
      // schema and data: permanent.
      throw new SchemaEvaluationError(
        err instanceof RangeError
          ? `validating the data against the schema overflowed the stack (${err.message}): the schema recurses without end or the data is nested too deeply for it`
          : `validating the data against the schema failed: ${(err as Error).message}`,
        { cause: err },
      );
    }
    if (valid) return [];
    return (validator.errors ?? []).map((e) => toDetail(e, fieldPrefix));
  }

  #get(key: string, schema: unknown): ValidateFunction | SchemaEvaluationError {
    let validator = this.#validators.get(key);
    if (validator) {
      // Refresh recency: Map iteration order is insertion order, so re-insert to keep LRU order.
      this.#validators.delete(key);
      this.#validators.set(key, validator);
      return validator;
    }
    validator = this.#compile(schema);
    this.#validators.set(key, validator);
    if (this.#validators.size > this.#maxEntries) {
      const oldest = this.#validators.keys().next().value;
      if (oldest !== undefined) this.#validators.delete(oldest);
    }
    return validator;
  }

  #compile(schema: unknown): ValidateFunction | SchemaEvaluationError {
    // Ajv keeps every validator an instance compiled for as long as the instance lives: a new one
    // after as many compilations as the cache holds bounds that (the old one goes when its validators do).
    if (this.#compiled >= this.#maxEntries) {
      this.#ajv = createAjv({ metaValidates: false });
      this.#compiled = 0;
    }
    try {
      if (typeof schema !== 'boolean' && !isJsonObject(schema)) {
        return new SchemaEvaluationError('the registered schema is not an object or a boolean');
      }
      // Versions registered before cycles were refused are caught here, once, rather than by a stack
      // overflow for each of their events. Only as deep as registration accepts (the index holds a
      // pointer per subschema): a deeper one is left to Ajv, whose stack overflows are caught too.
      const walkable = !exceedsJsonDepth(schema, MAX_SCHEMA_DEPTH);
      const cycle = walkable ? refCycleProblem(indexSchema(schema), 'schema') : undefined;
      if (cycle) {
        return new SchemaEvaluationError(`the registered schema cannot be evaluated: ${cycle.message}`);
      }
      this.#compiled += 1;
      const validator = this.#ajv.compile(schema);
      if (typeof schema === 'object') this.#ajv.removeSchema(schema); // its $id would clash with the next version's
      return validator;
    } catch (err) {
      return new SchemaEvaluationError(`the registered schema does not compile: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
}

/** How large a document may be: nesting of objects and arrays, number of values, bytes of JSON. */
interface SizeLimits {
  depth: number;
  nodes: number;
  bytes: number;
}

const REGISTRATION_LIMITS: SizeLimits = {
  depth: MAX_SCHEMA_DEPTH,
  nodes: MAX_SCHEMA_NODES,
  bytes: MAX_SCHEMA_BYTES,
};

/**
 * The first size limit a document crosses, or undefined. Iterative, with a stack of its own, so no
 * depth overflows it; it stops at the first limit crossed.
 */
function sizeProblem(schema: unknown, field: string, limits = REGISTRATION_LIMITS): ErrorDetail | undefined {
  const pending: unknown[] = [schema];
  const depths: number[] = [0];
  let nodes = 0;
  let bytes = 0;
  while (pending.length > 0) {
    const value = pending.pop();
    const depth = depths.pop()!;
    nodes += 1;
    if (nodes > limits.nodes) {
      return {
        field,
        message: `exceeds the limit of ${limits.nodes} values (keywords, subschemas and what they hold)`,
        code: 'schema_too_complex',
      };
    }
    if (typeof value === 'object' && value !== null) {
      if (depth >= limits.depth) {
        return {
          field,
          message: `nests objects and arrays deeper than the limit of ${limits.depth} levels`,
          code: 'schema_too_deep',
        };
      }
      const entries = Array.isArray(value) ? value.entries() : Object.entries(value);
      bytes += 1;
      for (const [key, child] of entries) {
        bytes += 1 + (typeof key === 'string' ? Buffer.byteLength(key) + 3 : 0);
        pending.push(child);
        depths.push(depth + 1);
      }
    } else {
      bytes += typeof value === 'string' ? Buffer.byteLength(value) + 2 : String(value).length;
    }
    if (bytes > limits.bytes) {
      return {
        field,
        message: `exceeds the limit of ${limits.bytes} bytes of JSON`,
        code: 'schema_too_large',
      };
    }
  }
  return undefined;
}

/** How an applicator keyword holds subschemas, and whether they apply to the same instance as their parent. */
interface Applicator {
  shape: 'one' | 'array' | 'map';
  sameInstance: boolean;
}

/**
 * The keywords whose values are subschemas (as Ajv's draft 2020-12 vocabularies know them, plus
 * `$defs`/`definitions`, which only hold them). `sameInstance`: evaluated against the instance
 * itself rather than a part of it, so a cycle through them never ends.
 */
const APPLICATORS: ReadonlyMap<string, Applicator> = new Map<string, Applicator>([
  ['allOf', { shape: 'array', sameInstance: true }],
  ['anyOf', { shape: 'array', sameInstance: true }],
  ['oneOf', { shape: 'array', sameInstance: true }],
  ['not', { shape: 'one', sameInstance: true }],
  ['if', { shape: 'one', sameInstance: true }],
  ['then', { shape: 'one', sameInstance: true }],
  ['else', { shape: 'one', sameInstance: true }],
  ['dependentSchemas', { shape: 'map', sameInstance: true }],
  ['dependencies', { shape: 'map', sameInstance: true }],
  ['properties', { shape: 'map', sameInstance: false }],
  ['patternProperties', { shape: 'map', sameInstance: false }],
  ['additionalProperties', { shape: 'one', sameInstance: false }],
  ['propertyNames', { shape: 'one', sameInstance: false }],
  ['unevaluatedProperties', { shape: 'one', sameInstance: false }],
  ['items', { shape: 'one', sameInstance: false }],
  ['prefixItems', { shape: 'array', sameInstance: false }],
  ['contains', { shape: 'one', sameInstance: false }],
  ['unevaluatedItems', { shape: 'one', sameInstance: false }],
  ['contentSchema', { shape: 'one', sameInstance: false }],
  ['$defs', { shape: 'map', sameInstance: false }],
  ['definitions', { shape: 'map', sameInstance: false }],
]);

/** The base URI of a document without `$id` (hierarchical, so relative references resolve against it). */
const DEFAULT_BASE = 'https://schema.invalid/root.json';

/** An object subschema (booleans apply nothing; its pointer is its key in the index) and the base URI of its references. */
interface SchemaSite {
  value: JsonObject;
  base: string;
}

/** The object subschemas of a document by JSON pointer, and what its references can point to. */
interface SchemaIndex {
  root: unknown;
  sites: Map<string, SchemaSite>;
  /** Schema resources (the root and every `$id`) by URI, to their pointer. */
  resources: Map<string, string>;
  /** `<resource URI>#<name>` of every `$anchor` and `$dynamicAnchor`, to its pointer. */
  anchors: Map<string, string>;
  /** The pointers of the `$dynamicAnchor`s of each name, wherever they are. */
  dynamicAnchors: Map<string, string[]>;
  /** The pointers of the schemas with `$recursiveAnchor: true`. */
  recursiveAnchors: string[];
  /** Every `pattern` value and `patternProperties` key, with the pointer to report it at. */
  patterns: Array<{ pointer: string; pattern: string; keyword: 'pattern' | 'patternProperties' }>;
  /** The pointers of the `allOf`, `anyOf` and `oneOf` with more than MAX_SCHEMA_BRANCHES subschemas. */
  oversized: string[];
}

/** Indexes the subschemas of a document (whose depth the caller has checked: each holds its pointer). */
function indexSchema(root: unknown): SchemaIndex {
  const index: SchemaIndex = {
    root,
    sites: new Map(),
    resources: new Map([[DEFAULT_BASE, '']]),
    anchors: new Map(),
    dynamicAnchors: new Map(),
    recursiveAnchors: [],
    patterns: [],
    oversized: [],
  };
  addSubschemas(index, root, '', DEFAULT_BASE);
  return index;
}

/** Adds the subschema at `pointer` and every subschema under it to the index. */
function addSubschemas(index: SchemaIndex, value: unknown, pointer: string, base: string): void {
  const pending = [{ value, pointer, base }];
  while (pending.length > 0) {
    const { value, pointer, base: parentBase } = pending.pop()!;
    if (!isJsonObject(value) || index.sites.has(pointer)) continue;
    let base = parentBase;
    if (typeof value.$id === 'string') {
      base = resolveUri(value.$id, parentBase) ?? parentBase;
      index.resources.set(withoutFragment(base), pointer);
    }
    const resource = withoutFragment(base);
    if (typeof value.$anchor === 'string') index.anchors.set(`${resource}#${value.$anchor}`, pointer);
    if (typeof value.$dynamicAnchor === 'string') {
      index.anchors.set(`${resource}#${value.$dynamicAnchor}`, pointer);
      const named = index.dynamicAnchors.get(value.$dynamicAnchor) ?? [];
      named.push(pointer);
      index.dynamicAnchors.set(value.$dynamicAnchor, named);
    }
    if (value.$recursiveAnchor === true) index.recursiveAnchors.push(pointer);
    if (typeof value.pattern === 'string') {
      index.patterns.push({ pointer: `${pointer}/pattern`, pattern: value.pattern, keyword: 'pattern' });
    }
    if (isJsonObject(value.patternProperties)) {
      for (const key of Object.keys(value.patternProperties)) {
        const at = pointerTo(pointer, 'patternProperties', key);
        index.patterns.push({ pointer: at, pattern: key, keyword: 'patternProperties' });
      }
    }
    for (const keyword of ['allOf', 'anyOf', 'oneOf']) {
      const branches = value[keyword];
      if (Array.isArray(branches) && branches.length > MAX_SCHEMA_BRANCHES) {
        index.oversized.push(pointerTo(pointer, keyword));
      }
    }
    index.sites.set(pointer, { value, base });
    for (const [keyword, children] of Object.entries(value)) {
      for (const child of subschemasOf(keyword, children, pointer)) pending.push({ ...child, base });
    }
  }
}

/** The subschemas a keyword holds (none for a keyword that is no applicator), with their pointers. */
function subschemasOf(
  keyword: string,
  value: unknown,
  pointer: string,
): Array<{ value: unknown; pointer: string }> {
  const applicator = APPLICATORS.get(keyword);
  if (!applicator) return [];
  if (applicator.shape === 'one') return [{ value, pointer: pointerTo(pointer, keyword) }];
  if (applicator.shape === 'array') {
    return Array.isArray(value)
      ? value.map((v, i) => ({ value: v, pointer: pointerTo(pointer, keyword, i) }))
      : [];
  }
  return isJsonObject(value)
    ? Object.entries(value).map(([k, v]) => ({ value: v, pointer: pointerTo(pointer, keyword, k) }))
    : [];
}

function branchesProblem(pointer: string, prefix: string): ErrorDetail {
  const keyword = pointerSegments(pointer).at(-1);
  return {
    field: fieldOf(prefix, pointer),
    message: `has more than the limit of ${MAX_SCHEMA_BRANCHES} subschemas in one \`${keyword}\``,
    code: 'schema_too_many_branches',
  };
}

/**
 * The problems with a document's regular expressions: too many, too large together, or one the
 * linear-time engine cannot run (named at its `pattern` or `patternProperties` key).
 */
function patternProblems(index: SchemaIndex, prefix: string): ErrorDetail[] {
  const { patterns } = index;
  if (patterns.length > MAX_SCHEMA_PATTERNS) {
    return [
      {
        field: prefix,
        message: `has ${patterns.length} regular expressions (\`pattern\` values and \`patternProperties\` keys), more than the limit of ${MAX_SCHEMA_PATTERNS}`,
        code: 'schema_too_many_patterns',
      },
    ];
  }
  const keys = patterns.filter((p) => p.keyword === 'patternProperties').length;
  if (keys > MAX_SCHEMA_PATTERN_PROPERTIES) {
    return [
      {
        field: prefix,
        message: `has ${keys} \`patternProperties\` keys, more than the limit of ${MAX_SCHEMA_PATTERN_PROPERTIES}`,
        code: 'schema_too_many_pattern_properties',
      },
    ];
  }
  const problems: ErrorDetail[] = [];
  const sizes = new Map<string, number>();
  const problem = (pointer: string, pattern: string, err: PatternError): ErrorDetail => ({
    field: fieldOf(prefix, pointer),
    message: `the regular expression ${JSON.stringify(pattern)} ${err.message}`,
    code: err.reason === 'invalid' ? 'pattern_invalid' : `pattern_${err.reason}`,
  });
  for (const { pointer, pattern } of patterns) {
    if (sizes.has(pattern)) continue;
    try {
      sizes.set(pattern, estimatePatternSize(pattern));
    } catch (err) {
      if (!(err instanceof PatternError)) throw err;
      problems.push(problem(pointer, pattern, err));
    }
  }
  if (problems.length > 0) return problems;
  const total = [...sizes.values()].reduce((a, b) => a + b, 0);
  if (total > MAX_SCHEMA_PATTERN_PROGRAM) {
    return [
      {
        field: prefix,
        message: `has regular expressions that compile to about ${total} instructions of the linear-time engine together, more than the limit of ${MAX_SCHEMA_PATTERN_PROGRAM}`,
        code: 'schema_patterns_too_large',
      },
    ];
  }
  const reported = new Set<string>();
  for (const { pointer, pattern } of patterns) {
    if (reported.has(pattern)) continue;
    reported.add(pattern);
    const err = patternProblem(pattern);
    if (err) problems.push(problem(pointer, pattern, err));
  }
  return problems;
}

/** One step of evaluation that stays on the same instance: to the subschema at `to`, by the keyword at `via`. */
interface Step {
  to: string;
  via: string;
}

/**
 * A `$ref` cycle that never moves into the data — `{"$ref": "#"}`, `allOf: [{"$ref": "#"}]`, two
 * `$defs` referring to each other — found statically (validation would recurse until the stack
 * overflows), as a problem at the reference that closes it; undefined when there is none.
 */
function refCycleProblem(index: SchemaIndex, prefix: string): ErrorDetail | undefined {
  const cycle = findSameInstanceCycle(index);
  if (!cycle) return undefined;
  const refs = cycle.filter((s) => /\/\$(ref|dynamicRef|recursiveRef)$/.test(s.via));
  const closing = refs.at(-1) ?? cycle.at(-1)!;
  const start = cycle.at(-1)!.to;
  const path = [start, ...cycle.map((s) => s.to)].map((p) => fieldOf(prefix, p)).join(' → ');
  return {
    field: fieldOf(prefix, closing.via),
    message: `a \`$ref\` cycle that never moves into the data (${path}): validating would recurse forever`,
    code: 'schema_ref_cycle',
  };
}

/** A cycle of same-instance steps (a depth-first search with a stack of its own), or undefined. */
function findSameInstanceCycle(index: SchemaIndex): Step[] | undefined {
  const state = new Map<string, 'active' | 'done'>();
  // sites grows while references to unindexed places are followed; a Map's iterator sees the additions.
  for (const start of index.sites.keys()) {
    if (state.has(start)) continue;
    state.set(start, 'active');
    const stack: Array<{ pointer: string; steps: Step[]; next: number; via?: Step }> = [
      { pointer: start, steps: sameInstanceSteps(index, start), next: 0 },
    ];
    while (stack.length > 0) {
      const top = stack.at(-1)!;
      const step = top.steps[top.next++];
      if (!step) {
        state.set(top.pointer, 'done');
        stack.pop();
        continue;
      }
      const seen = state.get(step.to);
      if (seen === 'done') continue;
      if (seen === 'active') {
        const from = stack.findIndex((f) => f.pointer === step.to);
        return [...stack.slice(from + 1).map((f) => f.via!), step];
      }
      state.set(step.to, 'active');
      stack.push({ pointer: step.to, steps: sameInstanceSteps(index, step.to), next: 0, via: step });
    }
  }
  return undefined;
}

/** Where evaluating the subschema at `pointer` goes next without moving into the data. */
function sameInstanceSteps(index: SchemaIndex, pointer: string): Step[] {
  const site = index.sites.get(pointer);
  if (!site) return [];
  const steps: Step[] = [];
  const add = (to: string | undefined, via: string): void => {
    if (to !== undefined && index.sites.has(to)) steps.push({ to, via });
  };
  for (const [keyword, value] of Object.entries(site.value)) {
    if (APPLICATORS.get(keyword)?.sameInstance) {
      for (const child of subschemasOf(keyword, value, pointer)) add(child.pointer, child.pointer);
    }
  }
  const { $ref, $dynamicRef, $recursiveRef } = site.value;
  if (typeof $ref === 'string') add(resolveRef(index, $ref, site.base), `${pointer}/$ref`);
  if (typeof $dynamicRef === 'string') {
    // Resolved dynamically: any `$dynamicAnchor` of that name may be the target.
    const via = `${pointer}/$dynamicRef`;
    add(resolveRef(index, $dynamicRef, site.base), via);
    const name = $dynamicRef.slice($dynamicRef.indexOf('#') + 1);
    for (const target of index.dynamicAnchors.get(name) ?? []) add(target, via);
  }
  if (typeof $recursiveRef === 'string') {
    const via = `${pointer}/$recursiveRef`;
    add(resolveRef(index, $recursiveRef, site.base), via);
    for (const target of index.recursiveAnchors) add(target, via);
  }
  return steps;
}

/**
 * The pointer a reference resolves to within the document (a JSON pointer or an anchor in one of
 * its resources), indexing what it points to when that is no subschema yet; undefined when it
 * points outside (Ajv then fails to compile, unless it is a schema Ajv knows, like the meta-schema).
 */
function resolveRef(index: SchemaIndex, ref: string, base: string): string | undefined {
  const uri = resolveUri(ref, base);
  if (uri === undefined) return undefined;
  const resource = withoutFragment(uri);
  const root = index.resources.get(resource);
  if (root === undefined) return undefined;
  let fragment: string;
  try {
    fragment = decodeURIComponent(uri.slice(resource.length + 1));
  } catch {
    return undefined;
  }
  if (fragment === '') return root;
  if (!fragment.startsWith('/')) return index.anchors.get(`${resource}#${fragment}`);
  const pointer = root + fragment;
  if (!index.sites.has(pointer)) {
    const target = getPath(index.root, pointerSegments(pointer));
    if (target.found) addSubschemas(index, target.value, pointer, resource);
  }
  return pointer;
}

function resolveUri(ref: string, base: string): string | undefined {
  try {
    return new URL(ref, base).href;
  } catch {
    return undefined;
  }
}

function withoutFragment(uri: string): string {
  const hash = uri.indexOf('#');
  return hash < 0 ? uri : uri.slice(0, hash);
}

/** A JSON pointer into the document as a dotted field under `prefix`. */
function fieldOf(prefix: string, pointer: string): string {
  return [prefix, ...pointerSegments(pointer)].join('.');
}

/**
 * Values of every JSON type, validated once after compiling: a safety net for recursion the static
 * cycle check cannot see (a validation that throws on one of these would throw on events too).
 */
const TRIAL_VALUES: readonly unknown[] = [null, true, 0, '', [], {}];

function trialProblems(validator: ValidateFunction, field: string): ErrorDetail[] {
  for (const value of TRIAL_VALUES) {
    try {
      validator(value);
    } catch (err) {
      const reason =
        err instanceof RangeError
          ? 'recursed without end (does a `$ref` cycle never move into the data?)'
          : `failed: ${(err as Error).message}`;
      return [
        {
          field,
          message: `validating ${JSON.stringify(value)} against the schema ${reason}`,
          code: 'schema_not_evaluable',
        },
      ];
    }
  }
  return [];
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
