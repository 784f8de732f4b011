/** Scalar keyword evaluation and numeric bounds for the compatibility check. */
import { matchesPattern } from '../common/safe-regex.ts';
import type { SchemaNode, SchemaObject } from './compatibility-nodes.ts';

/** Scalar keywords a finite set of values can be checked against directly. */
export const SCALAR_KEYWORDS = [
  'minimum',
  'exclusiveMinimum',
  'maximum',
  'exclusiveMaximum',
  'multipleOf',
  'minLength',
  'maxLength',
  'pattern',
  'format',
] as const;

/** Whether `value` meets one scalar keyword; undefined when the checker cannot tell (e.g. `format`). */
export function evaluateScalar(keyword: string, limit: unknown, value: unknown): boolean | undefined {
  if (typeof value === 'number' && typeof limit === 'number') {
    if (keyword === 'minimum') return value >= limit;
    if (keyword === 'exclusiveMinimum') return value > limit;
    if (keyword === 'maximum') return value <= limit;
    if (keyword === 'exclusiveMaximum') return value < limit;
    if (keyword === 'multipleOf') return isMultiple(value, limit);
  }
  if (typeof value === 'string') {
    const length = [...value].length;
    if (keyword === 'minLength' && typeof limit === 'number') return length >= limit;
    if (keyword === 'maxLength' && typeof limit === 'number') return length <= limit;
    if (keyword === 'pattern' && typeof limit === 'string') return matchesPattern(limit, value);
    if (keyword === 'format') return undefined;
  }
  const appliesTo =
    keyword.endsWith('Length') || keyword === 'pattern' || keyword === 'format' ? 'string' : 'number';
  return typeof value === appliesTo ? undefined : true;
}

/**
 * True when the validator takes `value` for a multiple of `step`: as Ajv tests it (without
 * `multipleOfPrecision`), `value / step` computed in floating point must be a whole number. So
 * 0.35 is not a multiple of 0.001 (0.35 / 0.001 = 349.99999999999994), nor 0.3 of 0.1.
 */
export function isMultiple(value: number, step: number): boolean {
  if (step <= 0) return false;
  const quotient = value / step;
  return quotient === Number.parseInt(String(quotient), 10);
}

/**
 * True when every number the validator takes for a multiple of `writer` it also takes for a
 * multiple of `reader`: proven only for equal steps, and for whole steps (safe integers) where the
 * reader's divides the writer's. Decimal steps in floating point are not exact (0.3 is a multiple
 * of 0.3 but not of 0.1), so any other pair is unproven, hence breaking.
 */
export function stepIncluded(writer: number, reader: number): boolean {
  if (writer === reader) return true;
  return Number.isSafeInteger(writer) && Number.isSafeInteger(reader) && reader > 0 && writer % reader === 0;
}

/**
 * True when every integer is proven a multiple of `step` for the validator: 1, or a power-of-two
 * fraction (an integer divided by 0.5 or 0.25 is exact). Other steps are left unproven, hence
 * breaking, even where floating point happens to agree.
 */
export function integersAreMultiples(step: number): boolean {
  return step > 0 && step <= 1 && Number.isInteger(Math.log2(1 / step));
}

/** A numeric bound; `exclusive` means the limit itself is not allowed. */
export interface Bound {
  value: number;
  exclusive: boolean;
}

/** The tightest bound the conjuncts put on numbers, on one side; integers round it inward. */
export function numberBound(conjuncts: readonly SchemaNode[], side: 'lower' | 'upper', integers: boolean) {
  const [inclusive, exclusive] =
    side === 'lower' ? ['minimum', 'exclusiveMinimum'] : ['maximum', 'exclusiveMaximum'];
  const tighter = (a: Bound, b: Bound): boolean =>
    side === 'lower'
      ? a.value > b.value || (a.value === b.value && a.exclusive)
      : a.value < b.value || (a.value === b.value && a.exclusive);
  let best: Bound | undefined;
  for (const { value } of conjuncts) {
    const schema = value as SchemaObject;
    for (const [keyword, isExclusive] of [
      [inclusive, false],
      [exclusive, true],
    ] as const) {
      const limit = schema[keyword];
      if (typeof limit !== 'number') continue;
      const bound = { value: limit, exclusive: isExclusive };
      if (!best || tighter(bound, best)) best = bound;
    }
  }
  if (!best || !integers) return best;
  if (side === 'lower')
    return { value: best.exclusive ? Math.floor(best.value) + 1 : Math.ceil(best.value), exclusive: false };
  return { value: best.exclusive ? Math.ceil(best.value) - 1 : Math.floor(best.value), exclusive: false };
}

/** Renders a bound as `>= 0`, `< 10`. */
export function describeBound(bound: Bound | undefined, side: 'lower' | 'upper'): string | undefined {
  if (!bound) return undefined;
  const op = side === 'lower' ? (bound.exclusive ? '>' : '>=') : bound.exclusive ? '<' : '<=';
  return `${op} ${bound.value}`;
}

/** The largest (`max`) or smallest (`min`) numeric value of a keyword across the conjuncts. */
export function extremeOf(
  conjuncts: readonly SchemaNode[],
  keyword: string,
  pick: 'max' | 'min',
): number | undefined {
  let best: number | undefined;
  for (const { value } of conjuncts) {
    const n = (value as SchemaObject)[keyword];
    if (typeof n !== 'number') continue;
    if (best === undefined || (pick === 'max' ? n > best : n < best)) best = n;
  }
  return best;
}
