/**
 * The rarer object keywords (property counts, `propertyNames`, dependencies) and the reading of
 * `unevaluatedProperties: false` as a closed object for the compatibility check.
 */
import { isJsonObject, pointerTo } from '../common/json.ts';
import { extremeOf } from './compatibility-bounds.ts';
import { type Ctx, compareNodes } from './compatibility-compare.ts';
import { changed, type Issue, issue, propertyPath, subject } from './compatibility-facts.ts';
import {
  childNode,
  isFalse,
  isTrivial,
  resolveRef,
  type SchemaNode,
  type SchemaObject,
  standaloneNode,
} from './compatibility-nodes.ts';
import { patternEntries, propertySchemas, requiredOf } from './compatibility-objects.ts';

const ORIGINS = new WeakMap<object, SchemaNode>();

/** For a closed object built from `unevaluatedProperties: false`, the schema that declared it. */
export function unevaluatedOrigin(node: SchemaNode): SchemaNode | undefined {
  return isJsonObject(node.value) ? ORIGINS.get(node.value) : undefined;
}

/** Which keyword closes this reader conjunct's content model. */
export function closedBy(node: SchemaNode): 'additionalProperties' | 'unevaluatedProperties' {
  return unevaluatedOrigin(node) ? 'unevaluatedProperties' : 'additionalProperties';
}

/** Writer side: names an instance may have are at most those declared anywhere in place (a looser schema). */
export function closeWriterUnevaluated(node: SchemaNode): SchemaNode | undefined {
  return closeUnevaluated(node, 'may');
}

/** Reader side: names declared unconditionally (own, `allOf`, `$ref`) are surely evaluated (a stricter schema). */
export function closeReaderUnevaluated(node: SchemaNode): SchemaNode | undefined {
  return closeUnevaluated(node, 'sure');
}

function closeUnevaluated(node: SchemaNode, mode: 'may' | 'sure'): SchemaNode | undefined {
  const names = new Set<string>();
  const patterns = new Set<string>();
  const seen = new Set<string>();
  let everything = false;
  const visit = (n: SchemaNode, top: boolean): void => {
    const v = n.value;
    if (everything || seen.has(n.id) || !isJsonObject(v)) return;
    seen.add(n.id);
    // Any in-place additionalProperties or nested unevaluatedProperties evaluates every name.
    if (
      'additionalProperties' in v ||
      (!top && 'unevaluatedProperties' in v) ||
      (mode === 'may' && '$dynamicRef' in v)
    ) {
      everything = true;
      return;
    }
    if (isJsonObject(v.properties)) for (const k of Object.keys(v.properties)) names.add(k);
    for (const [p] of patternEntries(n)) patterns.add(p);
    if (typeof v.$ref === 'string') {
      const target = resolveRef(n.doc, v.$ref);
      if (target) visit(target, false);
      else if (mode === 'may') everything = true;
    }
    const arrays = mode === 'sure' ? ['allOf'] : ['allOf', 'anyOf', 'oneOf'];
    for (const kw of arrays)
      if (Array.isArray(v[kw])) for (let i = 0; i < v[kw].length; i++) visit(childNode(n, kw, i), false);
    if (mode === 'sure') return;
    for (const kw of ['if', 'then', 'else']) if (kw in v) visit(childNode(n, kw), false);
    for (const kw of ['dependentSchemas', 'dependencies']) {
      const deps = v[kw];
      if (isJsonObject(deps)) for (const k of Object.keys(deps)) visit(childNode(n, kw, k), false);
    }
  };
  visit(node, true);
  if (everything) return undefined;
  const value = {
    properties: Object.fromEntries([...names].map((k) => [k, true])),
    patternProperties: Object.fromEntries([...patterns].map((p) => [p, true])),
    additionalProperties: false,
  };
  ORIGINS.set(value, node);
  const pointer = pointerTo(node.pointer, 'unevaluatedProperties');
  return { doc: node.doc, value, pointer, id: `${node.id}~unevaluated-${mode}` };
}

/** Property counts, `propertyNames` and dependencies. */
export function checkObjectExtras(ctx: Ctx, ws: SchemaNode[], rc: SchemaNode, data: string): Issue[] {
  return [
    ...checkCounts(ws, rc, data),
    ...checkPropertyNames(ctx, ws, rc, data),
    ...checkDependencies(ctx, ws, rc, data),
  ];
}

/** Names a closed conjunct (no patterns, additionalProperties false) allows; undefined when open. */
function closedNames(ws: readonly SchemaNode[]): string[] | undefined {
  for (const w of ws) {
    const schema = w.value as SchemaObject;
    if (!('additionalProperties' in schema) || !isFalse(childNode(w, 'additionalProperties'))) continue;
    if (patternEntries(w).length > 0) continue;
    const properties = isJsonObject(schema.properties) ? Object.keys(schema.properties) : [];
    return properties.filter((name) => !isFalse(childNode(w, 'properties', name)));
  }
  return undefined;
}

function checkCounts(ws: readonly SchemaNode[], rc: SchemaNode, data: string): Issue[] {
  const schema = rc.value as SchemaObject;
  const out: Issue[] = [];
  const min = schema.minProperties;
  if (typeof min === 'number' && min > 0) {
    const writer = Math.max(extremeOf(ws, 'minProperties', 'max') ?? 0, requiredOf(ws).size);
    if (writer < min) {
      out.push(
        changed(
          childNode(rc, 'minProperties').pointer,
          `minProperties of ${subject(data)}`,
          String(writer),
          String(min),
        ),
      );
    }
  }
  const max = schema.maxProperties;
  if (typeof max === 'number') {
    const limits = [extremeOf(ws, 'maxProperties', 'min'), closedNames(ws)?.length].filter(
      (n) => n !== undefined,
    );
    const writer = limits.length > 0 ? Math.min(...limits) : undefined;
    if (writer === undefined || writer > max) {
      out.push(
        changed(
          childNode(rc, 'maxProperties').pointer,
          `maxProperties of ${subject(data)}`,
          writer?.toString(),
          String(max),
        ),
      );
    }
  }
  return out;
}

function checkPropertyNames(ctx: Ctx, ws: readonly SchemaNode[], rc: SchemaNode, data: string): Issue[] {
  if (!('propertyNames' in (rc.value as SchemaObject))) return [];
  const reader = childNode(rc, 'propertyNames');
  if (isTrivial(reader)) return [];
  const names = closedNames(ws);
  const writer = [
    standaloneNode(names ? { type: 'string', enum: names } : { type: 'string' }, `names:${names?.join(',')}`),
    ...ws
      .filter((w) => 'propertyNames' in (w.value as SchemaObject))
      .map((w) => childNode(w, 'propertyNames')),
  ];
  const found = compareNodes(ctx, writer, reader, propertyPath(data, '<name>'));
  const first = found[0];
  if (!first) return [];
  return [
    issue(
      reader.pointer,
      `propertyNames of ${subject(data)} may reject property names the previous schema allowed (${first.back})`,
      `property names of ${subject(data)} allowed now may be rejected by the previous propertyNames (${first.fwd})`,
    ),
  ];
}

interface Dependencies {
  required: Map<string, string[]>;
  schemas: Map<string, SchemaNode>;
}

function dependenciesOf(node: SchemaNode): Dependencies {
  const result: Dependencies = { required: new Map(), schemas: new Map() };
  for (const keyword of ['dependentRequired', 'dependentSchemas', 'dependencies']) {
    const deps = (node.value as SchemaObject)[keyword];
    if (!isJsonObject(deps)) continue;
    for (const [name, dep] of Object.entries(deps)) {
      if (Array.isArray(dep))
        result.required.set(name, [...(result.required.get(name) ?? []), ...dep.map(String)]);
      else result.schemas.set(name, childNode(node, keyword, name));
    }
  }
  return result;
}

function checkDependencies(ctx: Ctx, ws: SchemaNode[], rc: SchemaNode, data: string): Issue[] {
  const reader = dependenciesOf(rc);
  if (reader.required.size === 0 && reader.schemas.size === 0) return [];
  const writer = ws.map(dependenciesOf);
  const required = requiredOf(ws);
  const out: Issue[] = [];
  const mayHave = (name: string): boolean => !propertySchemas(ws, name).nodes.some(isFalse);
  for (const [trigger, names] of reader.required) {
    if (!mayHave(trigger)) continue;
    for (const name of names) {
      if (required.has(name) || writer.some((d) => d.required.get(trigger)?.includes(name))) continue;
      const prop = `property \`${propertyPath(data, name)}\``;
      const when = `\`${propertyPath(data, trigger)}\``;
      out.push(
        issue(
          rc.pointer,
          `${prop} became required when ${when} is present`,
          `${prop} is no longer required when ${when} is present, but the previous schema requires it`,
        ),
      );
    }
  }
  for (const [trigger, schema] of reader.schemas) {
    if (!mayHave(trigger)) continue;
    const extra = writer.flatMap((d) => {
      const s = d.schemas.get(trigger);
      return s ? [s] : [];
    });
    const when = `when \`${propertyPath(data, trigger)}\` is present, `;
    for (const found of compareNodes(ctx, [...ws, ...extra], schema, data)) {
      out.push(issue(found.path, when + found.back, when + found.fwd));
    }
  }
  return out;
}
