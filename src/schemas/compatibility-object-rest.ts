/**
 * The open content model for property names that neither schema declares: the writer's
 * `additionalProperties`/`patternProperties` against the reader's.
 */
import { type Ctx, compareNodes } from './compatibility-compare.ts';
import { type Issue, issue, propertyPath, subject } from './compatibility-facts.ts';
import { childNode, isFalse, isTrivial, type SchemaNode, type SchemaObject } from './compatibility-nodes.ts';
import { closedBy } from './compatibility-object-extras.ts';
import { patternEntries } from './compatibility-objects.ts';

/** Properties neither side names: what `patternProperties` and `additionalProperties` say about them. */
export function checkRest(ctx: Ctx, ws: SchemaNode[], rc: SchemaNode, data: string): Issue[] {
  const readerPatterns = patternEntries(rc);
  const constrained = readerPatterns.filter(([, node]) => !isTrivial(node));
  const readerAp =
    'additionalProperties' in (rc.value as SchemaObject) ? childNode(rc, 'additionalProperties') : undefined;
  const apConstrains = readerAp !== undefined && !isTrivial(readerAp);
  if (constrained.length === 0 && !apConstrains) return [];
  // Dropping writer conjuncts only widens the writer, so proving it for any single one suffices.
  const candidates = [
    ...ws.filter((w) => 'additionalProperties' in (w.value as SchemaObject) || patternEntries(w).length > 0),
    undefined,
  ];
  let first: Issue[] | undefined;
  for (const candidate of candidates) {
    const found = restAgainst(ctx, candidate, rc, data, constrained, apConstrains ? readerAp : undefined);
    if (found.length === 0) return [];
    first ??= found;
  }
  return first ?? [];
}

function restAgainst(
  ctx: Ctx,
  writer: SchemaNode | undefined,
  rc: SchemaNode,
  data: string,
  constrained: Array<[string, SchemaNode]>,
  readerAp: SchemaNode | undefined,
): Issue[] {
  const writerPatterns = writer ? patternEntries(writer) : [];
  const writerAp =
    writer && 'additionalProperties' in (writer.value as SchemaObject)
      ? childNode(writer, 'additionalProperties')
      : undefined;
  const out: Issue[] = [];
  // `names` describes which property names the writer schema `from` governs.
  const into = (from: SchemaNode, target: SchemaNode, names: string): Issue[] => {
    if (isFalse(from)) return [];
    if (!isFalse(target)) return compareNodes(ctx, [from], target, propertyPath(data, '*'));
    const what = `${names} of ${subject(data)}`;
    return [
      issue(
        target.pointer,
        `${what} are no longer allowed`,
        `${what} are now allowed, but the previous schema does not allow them`,
      ),
    ];
  };
  const fromUnnamed = (target: SchemaNode, pattern?: string): Issue[] => {
    if (writerAp && isFalse(writerAp)) return [];
    if (!writerAp || isTrivial(writerAp)) return [openContentIssue(rc, target, data, pattern)];
    return into(writerAp, target, 'additional properties');
  };
  const matching = (pattern: string): string => `properties matching \`${pattern}\``;
  for (const [pattern, node] of constrained) {
    const same = writerPatterns.find(([p]) => p === pattern);
    if (same) {
      out.push(...into(same[1], node, matching(pattern)));
      continue;
    }
    out.push(...fromUnnamed(node, pattern));
    for (const [p, writerNode] of writerPatterns) out.push(...into(writerNode, node, matching(p)));
  }
  if (readerAp) {
    out.push(...fromUnnamed(readerAp));
    const readerPatterns = new Set(patternEntries(rc).map(([p]) => p));
    for (const [p, writerNode] of writerPatterns) {
      if (!readerPatterns.has(p)) out.push(...into(writerNode, readerAp, matching(p)));
    }
  }
  return out;
}

function openContentIssue(rc: SchemaNode, target: SchemaNode, data: string, pattern?: string): Issue {
  const subj = subject(data);
  if (pattern !== undefined) {
    return issue(
      target.pointer,
      `properties of ${subj} matching \`${pattern}\` are now constrained by patternProperties, but the previous schema allowed any value for them (open content model)`,
      `properties of ${subj} matching \`${pattern}\` may now have any value, but the previous schema constrains them with patternProperties`,
    );
  }
  const keyword = closedBy(rc);
  if (isFalse(target)) {
    return issue(
      keyword === 'unevaluatedProperties' ? rc.pointer : target.pointer,
      `${subj} no longer allows additional properties (${keyword}: false), but the previous schema allowed them (open content model)`,
      `${subj} now allows additional properties, but the previous schema does not (${keyword}: false)`,
    );
  }
  return issue(
    target.pointer,
    `additional properties of ${subj} must now match additionalProperties, but the previous schema allowed any value for them (open content model)`,
    `additional properties of ${subj} may now have any value, but the previous schema constrains them with additionalProperties`,
  );
}
