/** Array rules of the compatibility check: items by position, counts, uniqueness and `contains`. */

import { extremeOf } from './compatibility-bounds.ts';
import { type Ctx, compareNodes } from './compatibility-compare.ts';
import { changed, type Issue, issue, subject } from './compatibility-facts.ts';
import {
  childNode,
  isFalse,
  isTrivial,
  type SchemaNode,
  type SchemaObject,
  sameSchema,
} from './compatibility-nodes.ts';

/** Item schemas by position (`prefixItems`, or draft-07 array `items`) and for the rest. */
interface Layout {
  prefix: SchemaNode[];
  rest?: SchemaNode;
}

function layoutOf(node: SchemaNode): Layout {
  const schema = node.value as SchemaObject;
  const [prefixKey, restKey] = Array.isArray(schema.prefixItems)
    ? ['prefixItems', 'items']
    : Array.isArray(schema.items)
      ? ['items', 'additionalItems']
      : [undefined, 'items'];
  const prefix = prefixKey
    ? (schema[prefixKey] as unknown[]).map((_, i) => childNode(node, prefixKey, i))
    : [];
  return restKey in schema ? { prefix, rest: childNode(node, restKey) } : { prefix };
}

/** All array rules of one reader conjunct against one writer case. */
export function checkArray(ctx: Ctx, ws: SchemaNode[], rc: SchemaNode, data: string): Issue[] {
  const schema = rc.value as SchemaObject;
  const writers = ws.map(layoutOf);
  const reader = layoutOf(rc);
  const maxItems = Math.min(
    extremeOf(ws, 'maxItems', 'min') ?? Number.POSITIVE_INFINITY,
    ...writers.map((l) => (l.rest && isFalse(l.rest) ? l.prefix.length : Number.POSITIVE_INFINITY)),
  );
  const minItems = extremeOf(ws, 'minItems', 'max') ?? 0;
  const out: Issue[] = [];
  const positions = Math.max(reader.prefix.length, ...writers.map((l) => l.prefix.length));
  for (let i = 0; i < positions && i < maxItems; i++) {
    const target = reader.prefix[i] ?? reader.rest;
    if (!target || isTrivial(target)) continue;
    const sources = writers.flatMap((l) => l.prefix[i] ?? l.rest ?? []);
    out.push(...compareNodes(ctx, sources, target, `${data}[${i}]`));
  }
  if (reader.rest && !isTrivial(reader.rest) && maxItems > positions) {
    out.push(
      ...compareNodes(
        ctx,
        writers.flatMap((l) => l.rest ?? []),
        reader.rest,
        `${data}[]`,
      ),
    );
  }
  if (typeof schema.minItems === 'number' && schema.minItems > minItems) {
    out.push(
      changed(
        childNode(rc, 'minItems').pointer,
        `minItems of ${subject(data)}`,
        String(minItems),
        String(schema.minItems),
      ),
    );
  }
  if (typeof schema.maxItems === 'number' && schema.maxItems < maxItems) {
    const before = Number.isFinite(maxItems) ? String(maxItems) : undefined;
    out.push(
      changed(
        childNode(rc, 'maxItems').pointer,
        `maxItems of ${subject(data)}`,
        before,
        String(schema.maxItems),
      ),
    );
  }
  if (
    schema.uniqueItems === true &&
    maxItems > 1 &&
    !ws.some((w) => (w.value as SchemaObject).uniqueItems === true)
  ) {
    out.push(
      issue(
        childNode(rc, 'uniqueItems').pointer,
        `items of ${subject(data)} must now be unique (uniqueItems)`,
        `items of ${subject(data)} no longer have to be unique, but the previous schema requires it (uniqueItems)`,
      ),
    );
  }
  if ('contains' in schema && !containsHolds(ctx, ws, writers, minItems, rc, data)) {
    out.push(
      issue(
        childNode(rc, 'contains').pointer,
        `${subject(data)} must now contain items matching \`contains\`, which the previous schema did not guarantee`,
        `the previous schema requires ${subject(data)} to contain items matching \`contains\`, which the new schema does not guarantee`,
      ),
    );
  }
  return out;
}

const CONTAINS_GROUP = ['contains', 'minContains', 'maxContains'];

function containsHolds(
  ctx: Ctx,
  ws: SchemaNode[],
  writers: Layout[],
  minItems: number,
  rc: SchemaNode,
  data: string,
): boolean {
  const schema = rc.value as SchemaObject;
  const min = typeof schema.minContains === 'number' ? schema.minContains : 1;
  const bounded = typeof schema.maxContains === 'number';
  if (min === 0 && !bounded) return true;
  const same = ws.some((w) =>
    CONTAINS_GROUP.every((k) => {
      const here = k in (w.value as SchemaObject);
      return here === k in schema && (!here || sameSchema(childNode(w, k), childNode(rc, k)));
    }),
  );
  if (same) return true;
  if (bounded) return false; // an upper count needs both item sets to be equal: not attempted
  const target = childNode(rc, 'contains');
  const itemsFit = (sources: SchemaNode[]): boolean =>
    compareNodes(ctx, sources, target, `${data}[]`).length === 0;
  // Enough items all matching: the writer's items fit and it has at least `min` of them.
  if (
    minItems >= min &&
    writers.every((l) => l.prefix.length === 0) &&
    itemsFit(writers.flatMap((l) => l.rest ?? []))
  ) {
    return true;
  }
  return ws.some((w) => {
    const s = w.value as SchemaObject;
    const writerMin = typeof s.minContains === 'number' ? s.minContains : 1;
    return 'contains' in s && writerMin >= min && itemsFit([childNode(w, 'contains')]);
  });
}
