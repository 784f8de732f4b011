/** Compatibility rules for `type`, `enum`/`const`, and the number and string keywords. */
import { jsonEqual } from '../common/json.ts';
import {
  describeBound,
  evaluateScalar,
  extremeOf,
  integersAreMultiples,
  numberBound,
  SCALAR_KEYWORDS,
  stepIncluded,
} from './compatibility-bounds.ts';
import {
  allowedValues,
  changed,
  declaredKinds,
  describeKinds,
  type Issue,
  issue,
  show,
  subject,
  type WriterFacts,
} from './compatibility-facts.ts';
import { childNode, type SchemaNode, type SchemaObject } from './compatibility-nodes.ts';

/** `type`: every kind the writer allows must be allowed by the reader (integer ⊂ number). */
export function checkType(rc: SchemaNode, data: string, facts: WriterFacts): Issue[] {
  const readerKinds = declaredKinds(rc.value as SchemaObject);
  if (!readerKinds || [...facts.kinds].every((k) => readerKinds.has(k))) return [];
  const path = childNode(rc, 'type').pointer;
  return [changed(path, `type of ${subject(data)}`, describeKinds(facts.kinds), describeKinds(readerKinds))];
}

/** `enum`/`const`: every value the writer allows must be listed; adding an enum breaks open values. */
export function checkEnum(rc: SchemaNode, data: string, facts: WriterFacts): Issue[] {
  const schema = rc.value as SchemaObject;
  const allowed = allowedValues(schema);
  if (!allowed) return [];
  const isEnum = Array.isArray(schema.enum);
  const path = childNode(rc, isEnum ? 'enum' : 'const').pointer;
  const subj = subject(data);
  if (facts.values) {
    const missing = facts.values.filter((v) => !allowed.some((a) => jsonEqual(a, v)));
    return missing.map((v) =>
      isEnum
        ? issue(
            path,
            `enum value \`${show(v)}\` of ${subj} was removed`,
            `enum value \`${show(v)}\` of ${subj} was added, but the previous schema does not accept it`,
          )
        : issue(
            path,
            `${subj} must now be \`${show(schema.const)}\`, so value \`${show(v)}\` is no longer accepted`,
            `${subj} may now be \`${show(v)}\`, but the previous schema requires \`${show(schema.const)}\``,
          ),
    );
  }
  const list = allowed.map((v) => `\`${show(v)}\``).join(', ');
  const what = isEnum ? `enum values ${list}` : `the constant ${list}`;
  return [
    issue(
      path,
      `${subj} is now restricted to ${what}, but the previous schema allowed other values`,
      `${subj} is no longer restricted to ${what}, which the previous schema requires`,
    ),
  ];
}

/** Number and string keywords, evaluated value by value when the writer's values are finite. */
export function checkScalars(
  ws: readonly SchemaNode[],
  rc: SchemaNode,
  data: string,
  facts: WriterFacts,
): Issue[] {
  const schema = rc.value as SchemaObject;
  if (facts.values && facts.scalarValues) return checkFiniteValues(ws, rc, data, facts.values);
  const out: Issue[] = [];
  if (facts.kinds.has('integer') || facts.kinds.has('fraction')) {
    out.push(...checkNumbers(ws, rc, data, !facts.kinds.has('fraction')));
  }
  if (facts.kinds.has('string')) {
    out.push(
      ...checkLength(ws, rc, data, 'minLength', 'max'),
      ...checkLength(ws, rc, data, 'maxLength', 'min'),
    );
    for (const keyword of ['pattern', 'format'] as const) {
      if (typeof schema[keyword] === 'string') out.push(...checkSameString(ws, rc, data, keyword));
    }
  }
  return out;
}

function checkFiniteValues(
  ws: readonly SchemaNode[],
  rc: SchemaNode,
  data: string,
  values: unknown[],
): Issue[] {
  const schema = rc.value as SchemaObject;
  const out: Issue[] = [];
  for (const keyword of SCALAR_KEYWORDS) {
    if (!(keyword in schema)) continue;
    const limit = schema[keyword];
    const path = childNode(rc, keyword).pointer;
    for (const v of values) {
      const ok = evaluateScalar(keyword, limit, v);
      if (ok === undefined && typeof limit === 'string') out.push(...checkSameString(ws, rc, data, keyword));
      else if (ok === undefined)
        out.push(
          issue(path, `${keyword} of ${subject(data)} cannot be compared, so it is treated as breaking`),
        );
      else if (!ok) {
        out.push(
          issue(
            path,
            `value \`${show(v)}\` of ${subject(data)} no longer satisfies ${keyword} ${show(limit)}`,
            `value \`${show(v)}\` of ${subject(data)} is now allowed, but the previous schema requires ${keyword} ${show(limit)}`,
          ),
        );
      }
    }
  }
  return out;
}

function checkNumbers(ws: readonly SchemaNode[], rc: SchemaNode, data: string, integers: boolean): Issue[] {
  const schema = rc.value as SchemaObject;
  const out: Issue[] = [];
  for (const side of ['lower', 'upper'] as const) {
    const writer = numberBound(ws, side, integers);
    const keywords = side === 'lower' ? ['minimum', 'exclusiveMinimum'] : ['maximum', 'exclusiveMaximum'];
    for (const keyword of keywords) {
      const limit = schema[keyword];
      if (typeof limit !== 'number') continue;
      const exclusive = keyword.startsWith('exclusive');
      const inside = side === 'lower' ? writer && writer.value > limit : writer && writer.value < limit;
      const ok = inside || (writer?.value === limit && (!exclusive || writer.exclusive));
      if (ok) continue;
      const what = `${side} bound of ${subject(data)}`;
      const after = describeBound({ value: limit, exclusive }, side);
      out.push(changed(childNode(rc, keyword).pointer, what, describeBound(writer, side), after));
    }
  }
  const step = schema.multipleOf;
  if (typeof step === 'number') {
    const steps = ws.map((w) => (w.value as SchemaObject).multipleOf).filter((s) => typeof s === 'number');
    const ok = steps.some((s) => stepIncluded(s, step)) || (integers && integersAreMultiples(step));
    if (!ok) {
      const path = childNode(rc, 'multipleOf').pointer;
      out.push(changed(path, `multipleOf of ${subject(data)}`, steps[0]?.toString(), String(step)));
    }
  }
  return out;
}

function checkLength(
  ws: readonly SchemaNode[],
  rc: SchemaNode,
  data: string,
  keyword: 'minLength' | 'maxLength',
  pick: 'max' | 'min',
): Issue[] {
  const limit = (rc.value as SchemaObject)[keyword];
  if (typeof limit !== 'number') return [];
  const writer = extremeOf(ws, keyword, pick);
  const ok = writer !== undefined && (pick === 'max' ? writer >= limit : writer <= limit);
  if (ok || (keyword === 'minLength' && limit <= 0)) return [];
  return [
    changed(
      childNode(rc, keyword).pointer,
      `${keyword} of ${subject(data)}`,
      writer?.toString(),
      String(limit),
    ),
  ];
}

function checkSameString(ws: readonly SchemaNode[], rc: SchemaNode, data: string, keyword: string): Issue[] {
  const wanted = (rc.value as SchemaObject)[keyword];
  const writers = ws.map((w) => (w.value as SchemaObject)[keyword]).filter((v) => typeof v === 'string');
  if (writers.includes(wanted as string)) return [];
  const note =
    writers.length > 0
      ? `; the checker cannot compare two different ${keyword}s, so the change is treated as breaking`
      : '';
  return [
    changed(
      childNode(rc, keyword).pointer,
      `${keyword} of ${subject(data)}`,
      writers[0],
      String(wanted),
      note,
    ),
  ];
}
