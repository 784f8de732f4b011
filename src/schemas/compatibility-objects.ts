/**
 * Object rules of the compatibility check: properties added/removed, `required`, and the open
 * content model (`additionalProperties` absent/true = open, `false` = closed, a schema = partly open).
 */
import { isJsonObject } from '../common/json.ts';
import { matchesPattern } from '../common/safe-regex.ts';
import { type Ctx, compareAll } from './compatibility-compare.ts';
import { type Issue, issue, propertyPath, subject } from './compatibility-facts.ts';
import { childNode, isFalse, isTrivial, type SchemaNode, type SchemaObject } from './compatibility-nodes.ts';
import { checkObjectExtras, closedBy } from './compatibility-object-extras.ts';
import { checkRest } from './compatibility-object-rest.ts';

export {
  closeReaderUnevaluated,
  closeWriterUnevaluated,
  unevaluatedOrigin,
} from './compatibility-object-extras.ts';

/** The schemas that apply to one property name; `unknown` when a pattern could not be evaluated. */
export interface PropertySchemas {
  nodes: SchemaNode[];
  declared: boolean; // named in some `properties`
  unknown: boolean;
}

/** The schemas conjuncts apply to property `name`: `properties`, matching `patternProperties`, else `additionalProperties`. */
export function propertySchemas(conjuncts: readonly SchemaNode[], name: string): PropertySchemas {
  const result: PropertySchemas = { nodes: [], declared: false, unknown: false };
  for (const c of conjuncts) {
    const schema = c.value as SchemaObject;
    const own: SchemaNode[] = [];
    if (isJsonObject(schema.properties) && Object.hasOwn(schema.properties, name)) {
      own.push(childNode(c, 'properties', name));
      result.declared = true;
    }
    let unsure = false;
    for (const [pattern] of patternEntries(c)) {
      const matches = matchesPattern(pattern, name);
      if (matches === undefined) unsure = true;
      else if (matches) own.push(childNode(c, 'patternProperties', pattern));
    }
    result.unknown ||= unsure;
    // When a pattern cannot be evaluated we cannot tell whether additionalProperties applies.
    if (own.length === 0 && !unsure && 'additionalProperties' in schema)
      own.push(childNode(c, 'additionalProperties'));
    result.nodes.push(...own);
  }
  return result;
}

/** The `patternProperties` of a schema as [pattern, node] pairs. */
export function patternEntries(node: SchemaNode): Array<[string, SchemaNode]> {
  const patterns = (node.value as SchemaObject).patternProperties;
  if (!isJsonObject(patterns)) return [];
  return Object.keys(patterns).map((p) => [p, childNode(node, 'patternProperties', p)]);
}

/** Property names every instance must have under the conjuncts. */
export function requiredOf(conjuncts: readonly SchemaNode[]): Set<string> {
  const names = new Set<string>();
  for (const { value } of conjuncts) {
    const required = (value as SchemaObject).required;
    if (Array.isArray(required)) for (const name of required) if (typeof name === 'string') names.add(name);
  }
  return names;
}

/** All object rules of one reader conjunct against one writer case. */
export function checkObject(ctx: Ctx, ws: SchemaNode[], rc: SchemaNode, data: string): Issue[] {
  const names = new Set<string>();
  for (const node of [rc, ...ws]) {
    const properties = (node.value as SchemaObject).properties;
    if (isJsonObject(properties)) for (const name of Object.keys(properties)) names.add(name);
  }
  return [
    ...[...names].flatMap((name) => checkProperty(ctx, ws, rc, data, name)),
    ...checkRest(ctx, ws, rc, data),
    ...checkRequired(ws, rc, data),
    ...checkObjectExtras(ctx, ws, rc, data),
  ];
}

function propertyPointer(rc: SchemaNode, name: string): string {
  return closedBy(rc) === 'unevaluatedProperties' ? rc.pointer : childNode(rc, 'properties', name).pointer;
}

function checkProperty(ctx: Ctx, ws: SchemaNode[], rc: SchemaNode, data: string, name: string): Issue[] {
  const writer = propertySchemas(ws, name);
  if (writer.nodes.some(isFalse)) return []; // writer data never has this property
  const reader = propertySchemas([rc], name);
  const path = propertyPointer(rc, name);
  const label = propertyPath(data, name);
  const prop = `property \`${label}\``;
  if (reader.unknown) {
    return [
      issue(
        path,
        `patternProperties of ${subject(data)} cannot be evaluated for ${prop}, so it is treated as breaking`,
      ),
    ];
  }
  if (reader.nodes.every(isTrivial)) return [];
  if (reader.nodes.some(isFalse)) {
    if (writer.declared && !reader.declared) {
      return [
        issue(
          path,
          `${prop} was removed and the schema does not allow additional properties`,
          `${prop} was added, but the previous schema does not allow additional properties`,
        ),
      ];
    }
    return [
      issue(
        path,
        `${prop} is no longer allowed`,
        `${prop} is now allowed, but the previous schema does not allow it`,
      ),
    ];
  }
  if (!writer.declared && writer.nodes.every(isTrivial)) {
    return [
      issue(
        path,
        `${prop} was added with constraints, but the previous schema allowed any value for it (open content model)`,
        `${prop} was removed, but the previous schema constrains it and the new schema allows any value for it (open content model)`,
      ),
    ];
  }
  return compareAll(ctx, writer.nodes, reader.nodes, label);
}

function checkRequired(ws: readonly SchemaNode[], rc: SchemaNode, data: string): Issue[] {
  const writerRequired = requiredOf(ws);
  const out: Issue[] = [];
  for (const name of requiredOf([rc])) {
    if (writerRequired.has(name)) continue;
    const path = propertyPointer(rc, name);
    const prop = `property \`${propertyPath(data, name)}\``;
    const declared = ws.some((w) => {
      const properties = (w.value as SchemaObject).properties;
      return isJsonObject(properties) && Object.hasOwn(properties, name);
    });
    out.push(
      declared
        ? issue(
            path,
            `${prop} became required`,
            `${prop} is no longer required, but the previous schema requires it`,
          )
        : issue(
            path,
            `${prop} was added as required, so data valid under the previous schema may lack it`,
            `required ${prop} was removed, but the previous schema requires it`,
          ),
    );
  }
  return out;
}
