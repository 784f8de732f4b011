/**
 * Schema locations for the compatibility check: a subschema with its document (for local `$ref`s),
 * its JSON pointer, and the flattening of `$ref`/`allOf` into a list of conjuncts.
 */
import { isJsonObject, pointerSegments, pointerTo } from '../common/json.ts';

export type SchemaObject = Record<string, unknown>;

/** One schema document; local `$ref`s resolve against its root. */
export interface SchemaDoc {
  readonly root: unknown;
  readonly tag: string;
  anchors?: Map<string, string>;
}

/** A subschema, where it lives, and an `id` that identifies it for cycle detection. */
export interface SchemaNode {
  readonly doc: SchemaDoc;
  readonly value: unknown;
  readonly pointer: string;
  readonly id: string;
}

/** Keywords that never reject an instance. */
const ANNOTATIONS = new Set([
  '$schema',
  '$id',
  '$anchor',
  '$dynamicAnchor',
  '$comment',
  '$defs',
  'definitions',
  '$vocabulary',
  'title',
  'description',
  'default',
  'examples',
  'example',
  'deprecated',
  'readOnly',
  'writeOnly',
  'contentEncoding',
  'contentMediaType',
  'contentSchema',
  'discriminator',
  'externalDocs',
  'xml',
]);

/** True for keywords that only annotate (including `x-` extensions). */
export function isAnnotation(keyword: string): boolean {
  return ANNOTATIONS.has(keyword) || keyword.startsWith('x-');
}

/** The root node of a whole document; `tag` must differ between the documents of one check. */
export function rootNode(schema: unknown, tag: string): SchemaNode {
  return { doc: { root: schema, tag }, value: schema, pointer: '', id: `${tag}:` };
}

/** A node for a schema the checker builds itself, outside any document. */
export function standaloneNode(value: SchemaObject, label: string): SchemaNode {
  return { doc: { root: value, tag: `syn-${label}` }, value, pointer: '', id: `syn:${label}` };
}

/** The subschema at `path` under `node`. */
export function childNode(node: SchemaNode, ...path: Array<string | number>): SchemaNode {
  let { value, pointer, id } = node;
  for (const segment of path) {
    if (Array.isArray(value)) value = value[Number(segment)];
    else value = isJsonObject(value) ? value[String(segment)] : undefined;
    pointer = pointerTo(pointer, segment);
    id = pointerTo(id, segment);
  }
  return { doc: node.doc, value, pointer, id };
}

/** Resolves a `$ref` within the node's own document; undefined when it points elsewhere. */
export function resolveRef(doc: SchemaDoc, ref: string): SchemaNode | undefined {
  const hash = ref.indexOf('#');
  const base = hash < 0 ? ref : ref.slice(0, hash);
  if (base !== '' && !(isJsonObject(doc.root) && doc.root.$id === base)) return undefined;
  let fragment: string;
  try {
    fragment = decodeURIComponent(hash < 0 ? '' : ref.slice(hash + 1));
  } catch {
    return undefined;
  }
  const located: SchemaNode = { doc, value: doc.root, pointer: '', id: `${doc.tag}:` };
  if (fragment === '') return located;
  if (!fragment.startsWith('/')) {
    const pointer = anchorsOf(doc).get(fragment);
    return pointer === undefined ? undefined : resolveRef(doc, `#${pointer}`);
  }
  const segments = pointerSegments(fragment);
  const target = childNode(located, ...segments);
  return target.value === undefined ? undefined : target;
}

function anchorsOf(doc: SchemaDoc): Map<string, string> {
  if (doc.anchors) return doc.anchors;
  const anchors = new Map<string, string>();
  const walk = (value: unknown, pointer: string): void => {
    if (Array.isArray(value))
      value.forEach((v, i) => {
        walk(v, pointerTo(pointer, i));
      });
    if (!isJsonObject(value)) return;
    if (typeof value.$anchor === 'string') anchors.set(value.$anchor, pointer);
    for (const [key, v] of Object.entries(value))
      if (key !== 'enum' && key !== 'const') walk(v, pointerTo(pointer, key));
  };
  walk(doc.root, '');
  doc.anchors = anchors;
  return anchors;
}

/** A schema flattened into the conjuncts an instance must all satisfy. */
export interface Expansion {
  conjuncts: SchemaNode[];
  empty: boolean; // some conjunct is `false`: nothing is valid
  unresolved: Array<{ ref: string; pointer: string }>;
}

/**
 * Flattens `$ref` and `allOf`. `closeUnevaluated` turns `unevaluatedProperties: false` into an
 * equivalent-or-looser closed object (writer side) or an equivalent-or-stricter one (reader side).
 */
export function expand(
  nodes: readonly SchemaNode[],
  closeUnevaluated?: (node: SchemaNode) => SchemaNode | undefined,
): Expansion {
  const result: Expansion = { conjuncts: [], empty: false, unresolved: [] };
  const seen = new Set<string>();
  const visit = (node: SchemaNode): void => {
    if (seen.has(node.id)) return;
    seen.add(node.id);
    const value = node.value;
    if (value === false) result.empty = true;
    if (!isJsonObject(value)) return;
    result.conjuncts.push(node);
    if (typeof value.$ref === 'string') {
      const target = resolveRef(node.doc, value.$ref);
      if (target) visit(target);
      else result.unresolved.push({ ref: value.$ref, pointer: pointerTo(node.pointer, '$ref') });
    }
    if (Array.isArray(value.allOf))
      for (let i = 0; i < value.allOf.length; i++) visit(childNode(node, 'allOf', i));
    if (value.unevaluatedProperties === false && closeUnevaluated) {
      const closed = closeUnevaluated(node);
      if (closed) result.conjuncts.push(closed);
    }
  };
  for (const node of nodes) visit(node);
  return result;
}

/** True when the schema accepts every instance (only `true`, `{}` or annotations, through refs). */
export function isTrivial(node: SchemaNode): boolean {
  const e = expand([node]);
  if (e.empty || e.unresolved.length > 0) return false;
  return e.conjuncts.every((c) =>
    Object.entries(c.value as SchemaObject).every(
      ([k, v]) =>
        isAnnotation(k) || k === '$ref' || k === 'allOf' || (v === true && k.startsWith('unevaluated')),
    ),
  );
}

/** True when the schema provably accepts nothing. */
export function isFalse(node: SchemaNode): boolean {
  return expand([node]).empty;
}

/** Structural equality of two schema values, following local `$ref`s on both sides. */
export function sameSchema(a: SchemaNode, b: SchemaNode): boolean {
  return sameValue(a.doc, a.value, b.doc, b.value, new Set());
}

function sameValue(ad: SchemaDoc, a: unknown, bd: SchemaDoc, b: unknown, seen: Set<string>): boolean {
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((x, i) => sameValue(ad, x, bd, b[i], seen));
  }
  if (!isJsonObject(a)) return a === b;
  if (!isJsonObject(b)) return false;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const key of keys) {
    if (!(key in b)) return false;
    if (key === '$ref' && typeof a.$ref === 'string') {
      if (a.$ref !== b.$ref || !sameTarget(ad, bd, a.$ref, seen)) return false;
    } else if (!sameValue(ad, a[key], bd, b[key], seen)) return false;
  }
  return true;
}

function sameTarget(ad: SchemaDoc, bd: SchemaDoc, ref: string, seen: Set<string>): boolean {
  const ta = resolveRef(ad, ref);
  const tb = resolveRef(bd, ref);
  if (!ta || !tb) return !ta && !tb && !ref.startsWith('#');
  const key = `${ta.id}|${tb.id}`;
  if (seen.has(key)) return true; // coinductive: a cycle of equal steps is equal
  seen.add(key);
  return sameValue(ad, ta.value, bd, tb.value, seen);
}
