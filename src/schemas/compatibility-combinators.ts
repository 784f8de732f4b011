/**
 * Reader-side `anyOf`, `oneOf`, `not` and `if`/`then`/`else` for the compatibility check, and a
 * small prover of disjointness (no instance valid under both) that `oneOf` and `not` need.
 */
import { jsonEqual } from '../common/json.ts';
import { evaluateScalar, SCALAR_KEYWORDS } from './compatibility-bounds.ts';
import { type Ctx, compareNodes } from './compatibility-compare.ts';
import { type Issue, issue, kindOf, subject, type WriterFacts, writerFacts } from './compatibility-facts.ts';
import {
  childNode,
  expand,
  type SchemaNode,
  type SchemaObject,
  sameSchema,
  standaloneNode,
} from './compatibility-nodes.ts';
import { closeWriterUnevaluated, propertySchemas, requiredOf } from './compatibility-objects.ts';

/** The combinator keywords of one reader conjunct against one writer case. */
export function checkCombinators(ctx: Ctx, ws: SchemaNode[], rc: SchemaNode, data: string): Issue[] {
  const schema = rc.value as SchemaObject;
  const out: Issue[] = [];
  for (const keyword of ['anyOf', 'oneOf'] as const) {
    const branches = schema[keyword];
    if (Array.isArray(branches) && branches.length > 0)
      out.push(...checkAlternatives(ctx, ws, rc, data, keyword));
  }
  if ('not' in schema) out.push(...checkNot(ctx, ws, rc, data));
  if ('if' in schema) out.push(...checkConditional(ctx, ws, rc, data));
  return out;
}

function checkAlternatives(
  ctx: Ctx,
  ws: SchemaNode[],
  rc: SchemaNode,
  data: string,
  keyword: 'anyOf' | 'oneOf',
) {
  const count = ((rc.value as SchemaObject)[keyword] as unknown[]).length;
  const branches = Array.from({ length: count }, (_, i) => childNode(rc, keyword, i));
  let closest: Issue | undefined;
  let closestCount = Number.POSITIVE_INFINITY;
  const fits = (writer: SchemaNode[]): boolean =>
    branches.some((branch, i) => {
      const found = compareNodes(ctx, writer, branch, data);
      if (found.length > 0) {
        // Prefer the branch at the same place as the writer's own branch: it is the one that evolved.
        const score = found.length - (writer.some((w) => w.pointer === branch.pointer) ? 0.5 : 0);
        if (score < closestCount) [closest, closestCount] = [found[0], score];
        return false;
      }
      return (
        keyword === 'anyOf' || branches.every((other, j) => j === i || provablyDisjoint(ctx, writer, [other]))
      );
    });
  if (fits(ws)) return [];
  // A value of the writer may fit different branches depending on its type or value: split it.
  const parts = splitWriter(ws);
  if (parts.length > 1 && parts.every(fits)) return [];
  const what = keyword === 'anyOf' ? 'any branch of anyOf' : 'exactly one branch of oneOf';
  const hint = (text?: string): string => (text ? ` (closest branch: ${text})` : '');
  return [
    issue(
      childNode(rc, keyword).pointer,
      `${subject(data)} may no longer match ${what}${hint(closest?.back)}`,
      `${subject(data)} may not match ${what} of the previous schema${hint(closest?.fwd)}`,
    ),
  ];
}

const SPLIT_LIMIT = 32;

function splitWriter(ws: SchemaNode[]): SchemaNode[][] {
  const facts = writerFacts(ws);
  if (facts.values && facts.values.length > 1 && facts.values.length <= SPLIT_LIMIT) {
    return facts.values.map((v) => [...ws, standaloneNode({ const: v }, `const:${JSON.stringify(v)}`)]);
  }
  const types = new Set([...facts.kinds].map((k) => (k === 'integer' || k === 'fraction' ? 'number' : k)));
  if (types.size <= 1) return [ws];
  return [...types].map((t) => [...ws, standaloneNode({ type: t }, `type:${t}`)]);
}

function checkNot(ctx: Ctx, ws: SchemaNode[], rc: SchemaNode, data: string): Issue[] {
  const excluded = childNode(rc, 'not');
  if (provablyDisjoint(ctx, ws, [excluded])) return [];
  // The writer excluding a superset of what the reader excludes is enough.
  const covered = ws.some(
    (w) =>
      'not' in (w.value as SchemaObject) &&
      compareNodes(ctx, [excluded], childNode(w, 'not'), data).length === 0,
  );
  if (covered) return [];
  return [
    issue(
      excluded.pointer,
      `${subject(data)} must now not match the schema under \`not\`, which the checker cannot prove for the previous schema`,
      `the previous schema requires ${subject(data)} not to match the schema under \`not\`, which the checker cannot prove for the new schema`,
    ),
  ];
}

const CONDITIONAL = ['if', 'then', 'else'];

function checkConditional(ctx: Ctx, ws: SchemaNode[], rc: SchemaNode, data: string): Issue[] {
  const schema = rc.value as SchemaObject;
  const same = ws.some((w) =>
    CONDITIONAL.every((k) => {
      const here = k in (w.value as SchemaObject);
      return here === k in schema && (!here || sameSchema(childNode(w, k), childNode(rc, k)));
    }),
  );
  if (same) return [];
  const condition = childNode(rc, 'if');
  const holds = (keyword: string): boolean =>
    !(keyword in schema) || compareNodes(ctx, ws, childNode(rc, keyword), data).length === 0;
  if (holds('then') && (holds('else') || compareNodes(ctx, ws, condition, data).length === 0)) return [];
  if (holds('else') && provablyDisjoint(ctx, ws, [condition])) return [];
  return [
    issue(
      condition.pointer,
      `the conditional (if/then/else) of ${subject(data)} changed and the checker cannot prove it accepts the previous data, so it is treated as breaking`,
      `the conditional (if/then/else) of ${subject(data)} in the previous schema may reject new data, and the checker cannot prove otherwise, so it is treated as breaking`,
    ),
  ];
}

/** True when no instance can be valid under both schema lists (sound: false means "could not prove"). */
export function provablyDisjoint(
  ctx: Ctx,
  as: readonly SchemaNode[],
  bs: readonly SchemaNode[],
  depth = 0,
): boolean {
  if (depth > 4 || ctx.exhausted) return false;
  ctx.steps++;
  const a = expand(as, closeWriterUnevaluated);
  const b = expand(bs, closeWriterUnevaluated);
  if (a.empty || b.empty) return true;
  const fa = writerFacts(a.conjuncts);
  const fb = writerFacts(b.conjuncts);
  const overlap = [...fa.kinds].filter((k) => fb.kinds.has(k));
  if (overlap.length === 0) return true;
  if (valuesExcluded(fa, fb, b.conjuncts) || valuesExcluded(fb, fa, a.conjuncts)) return true;
  if (overlap.some((k) => k !== 'object')) return false;
  // Objects: a property one side requires whose values the two sides cannot share (a discriminator).
  for (const name of new Set([...requiredOf(a.conjuncts), ...requiredOf(b.conjuncts)])) {
    const left = propertySchemas(a.conjuncts, name).nodes;
    const right = propertySchemas(b.conjuncts, name).nodes;
    if (provablyDisjoint(ctx, left, right, depth + 1)) return true;
  }
  return false;
}

function valuesExcluded(
  mine: WriterFacts,
  other: WriterFacts,
  otherConjuncts: readonly SchemaNode[],
): boolean {
  if (!mine.values) return false;
  return mine.values.every(
    (v) =>
      !other.kinds.has(kindOf(v)) ||
      (other.values !== undefined && !other.values.some((x) => jsonEqual(x, v))) ||
      otherConjuncts.some((c) => {
        const schema = c.value as SchemaObject;
        return SCALAR_KEYWORDS.some((k) => k in schema && evaluateScalar(k, schema[k], v) === false);
      }),
  );
}
