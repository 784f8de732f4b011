/**
 * The core of the compatibility check: is every instance valid under the writer schemas also valid
 * under the reader schema? A sound approximation: it reports an issue whenever it cannot prove it.
 */
import { checkArray } from './compatibility-arrays.ts';
import { checkCombinators } from './compatibility-combinators.ts';
import { type Issue, issue, subject, writerFacts } from './compatibility-facts.ts';
import {
  childNode,
  expand,
  isAnnotation,
  type SchemaNode,
  type SchemaObject,
  sameSchema,
} from './compatibility-nodes.ts';
import {
  checkObject,
  closeReaderUnevaluated,
  closeWriterUnevaluated,
  unevaluatedOrigin,
} from './compatibility-objects.ts';
import { checkEnum, checkScalars, checkType } from './compatibility-scalars.ts';

/** State of one check: recursion guard and a work budget for pathological schemas. */
export interface Ctx {
  steps: number;
  active: Set<string>;
  exhausted: boolean;
}

const STEP_LIMIT = 20_000;
const CASE_LIMIT = 64;
const TOO_COMPLEX = issue(
  '',
  'the schemas are too complex to compare completely, so the change is treated as breaking',
);

/** A fresh context for one writer/reader comparison. */
export function newContext(): Ctx {
  return { steps: 0, active: new Set(), exhausted: false };
}

/** Problems with reading data valid under all `writer` schemas with `reader`; `data` names the value. */
export function compareNodes(
  ctx: Ctx,
  writer: readonly SchemaNode[],
  reader: SchemaNode,
  data: string,
): Issue[] {
  if (ctx.exhausted || ++ctx.steps > STEP_LIMIT) {
    ctx.exhausted = true;
    return [TOO_COMPLEX];
  }
  // Revisiting a pair under comparison means a recursive schema: assume it holds (coinduction).
  const key = `${writer
    .map((n) => n.id)
    .sort()
    .join(',')}|${reader.id}`;
  if (ctx.active.has(key)) return [];
  ctx.active.add(key);
  try {
    return dedupe(compareExpanded(ctx, writer, reader, data));
  } finally {
    ctx.active.delete(key);
  }
}

/** `compareNodes` against several reader schemas that all apply. */
export function compareAll(
  ctx: Ctx,
  writer: readonly SchemaNode[],
  readers: readonly SchemaNode[],
  data: string,
) {
  return dedupe(readers.flatMap((r) => compareNodes(ctx, writer, r, data)));
}

function compareExpanded(ctx: Ctx, writer: readonly SchemaNode[], reader: SchemaNode, data: string): Issue[] {
  const w = expand(writer, closeWriterUnevaluated);
  if (w.empty) return [];
  const r = expand([reader], closeReaderUnevaluated);
  const out: Issue[] = [];
  for (const u of r.unresolved) {
    if (u.ref.startsWith('#') || !w.unresolved.some((x) => x.ref === u.ref)) {
      out.push(
        issue(
          u.pointer,
          `${subject(data)} refers to \`${u.ref}\`, which cannot be resolved within the document, so it is treated as breaking`,
        ),
      );
    }
  }
  if (r.empty) {
    if (writerFacts(w.conjuncts).kinds.size > 0) {
      out.push(
        issue(
          reader.pointer,
          `${subject(data)} no longer accepts any value (schema \`false\`)`,
          `${subject(data)} now accepts values, but the previous schema accepts none (schema \`false\`)`,
        ),
      );
    }
    return out;
  }
  let cases: SchemaNode[][] | undefined | null = null;
  for (const rc of r.conjuncts) {
    const origin = unevaluatedOrigin(rc) ?? rc;
    if (w.conjuncts.some((wc) => sameSchema(wc, origin))) continue;
    if (cases === null) cases = distribute(w.conjuncts, 0);
    if (!cases) {
      out.push(
        issue(
          rc.pointer,
          `the alternatives (anyOf/oneOf) of ${subject(data)} are too many to compare, so the change is treated as breaking`,
        ),
      );
      continue;
    }
    for (const c of cases) out.push(...checkConjunct(ctx, c, rc, data));
  }
  return out;
}

/** Splits writer alternatives into cases: W = own ∩ (B1 ∪ B2) ⊆ R iff own ∩ Bi ⊆ R for each i. */
function distribute(conjuncts: SchemaNode[], depth: number): SchemaNode[][] | undefined {
  const index = conjuncts.findIndex((c) =>
    ['anyOf', 'oneOf'].some((k) => nonEmptyArray((c.value as SchemaObject)[k])),
  );
  if (index < 0) return [conjuncts];
  if (depth > 8) return undefined;
  const holder = conjuncts[index]!;
  const keyword = nonEmptyArray((holder.value as SchemaObject).anyOf) ? 'anyOf' : 'oneOf';
  const { [keyword]: branches, ...rest } = holder.value as SchemaObject;
  // oneOf is treated as anyOf here: a superset of the writer's instances keeps the check sound.
  const stripped: SchemaNode = { ...holder, value: rest, id: `${holder.id}~${keyword}` };
  const others = conjuncts.filter((_, i) => i !== index);
  const out: SchemaNode[][] = [];
  for (let i = 0; i < (branches as unknown[]).length; i++) {
    const branch = expand([childNode(holder, keyword, i)], closeWriterUnevaluated);
    if (branch.empty) continue;
    const sub = distribute([...others, stripped, ...branch.conjuncts], depth + 1);
    if (!sub) return undefined;
    out.push(...sub);
    if (out.length > CASE_LIMIT) return undefined;
  }
  return out;
}

function nonEmptyArray(value: unknown): value is unknown[] {
  return Array.isArray(value) && value.length > 0;
}

/** Checks one writer case (a flat list of conjuncts) against one reader conjunct. */
export function checkConjunct(ctx: Ctx, ws: SchemaNode[], rc: SchemaNode, data: string): Issue[] {
  const facts = writerFacts(ws);
  if (facts.kinds.size === 0) return []; // the writer case accepts nothing
  return [
    ...checkType(rc, data, facts),
    ...checkEnum(rc, data, facts),
    ...checkScalars(ws, rc, data, facts),
    ...(facts.kinds.has('object') ? checkObject(ctx, ws, rc, data) : []),
    ...(facts.kinds.has('array') ? checkArray(ctx, ws, rc, data) : []),
    ...checkCombinators(ctx, ws, rc, data),
    ...checkUnknownKeywords(ws, rc, data),
  ];
}

const HANDLED = new Set([
  ...['type', 'nullable', 'enum', 'const', 'minimum', 'maximum', 'multipleOf'],
  ...['minLength', 'maxLength', 'pattern', 'format', '$ref', 'allOf'],
  ...[
    'properties',
    'patternProperties',
    'additionalProperties',
    'required',
    'minProperties',
    'maxProperties',
  ],
  ...['propertyNames', 'dependentRequired', 'dependentSchemas', 'dependencies'],
  ...['items', 'prefixItems', 'additionalItems', 'minItems', 'maxItems', 'uniqueItems'],
  ...['contains', 'minContains', 'maxContains', 'anyOf', 'oneOf', 'not', 'if', 'then', 'else'],
]);

// Their meaning depends on sibling keywords, so an equal value alone proves nothing.
const CONTEXTUAL = new Set(['unevaluatedProperties', 'unevaluatedItems', '$dynamicRef']);

function isHandled(keyword: string, value: unknown): boolean {
  if (HANDLED.has(keyword)) return true;
  if (keyword === 'exclusiveMinimum' || keyword === 'exclusiveMaximum') return typeof value === 'number';
  if (keyword === 'unevaluatedProperties') return typeof value === 'boolean';
  if (keyword === 'unevaluatedItems') return value === true;
  return false;
}

function checkUnknownKeywords(ws: readonly SchemaNode[], rc: SchemaNode, data: string): Issue[] {
  const out: Issue[] = [];
  for (const [keyword, value] of Object.entries(rc.value as SchemaObject)) {
    if (isAnnotation(keyword) || isHandled(keyword, value)) continue;
    const same =
      !CONTEXTUAL.has(keyword) &&
      ws.some(
        (w) =>
          keyword in (w.value as SchemaObject) && sameSchema(childNode(w, keyword), childNode(rc, keyword)),
      );
    if (same) continue;
    out.push(
      issue(
        childNode(rc, keyword).pointer,
        `keyword \`${keyword}\` of ${subject(data)} differs between the versions and cannot be compared, so it is treated as breaking`,
      ),
    );
  }
  return out;
}

/** Drops repeated issues (the same problem found through several writer cases). */
export function dedupe(issues: readonly Issue[]): Issue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const key = `${i.path}\n${i.back}\n${i.fwd}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
