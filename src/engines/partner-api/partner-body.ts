/**
 * Reading the Partner Info API's JSON answers into `PartnerRecord`s. The API is someone else's
 * system: unknown fields are ignored (it may grow), but a field we use with the wrong type makes the
 * whole answer unusable, reported as field details so an operator can see what the API got wrong.
 */
import type { ErrorDetail } from '../../common/errors.ts';
import { InputReader } from '../../common/input.ts';
import { isJsonObject, MAX_JSON_DEPTH } from '../../common/json.ts';
import type { PartnerRecord, PartnerStatus } from '../../common/model.ts';
import type { Page } from '../../common/ports/store.ts';
import { readDeliverySettings } from '../../common/retry.ts';

const STATUSES: readonly PartnerStatus[] = ['ACTIVE', 'INACTIVE'];

/** The outcome of reading an answer: the value, or the problems that make it unusable. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; details: ErrorDetail[] };

/** Reads a single-partner answer: the partner object itself or `{ partner: {...} }`. */
export function parsePartnerAnswer(body: unknown, fetchedAt: string): Parsed<PartnerRecord> {
  const unwrapped = isJsonObject(body) && isJsonObject(body.partner) ? body.partner : body;
  const details: ErrorDetail[] = [];
  const record = readPartner(unwrapped, '', fetchedAt, details);
  return finish(record, details);
}

/** Reads a listing answer: `{ items: [...], next?: string }` or a bare array of partners. */
export function parsePartnerPage(body: unknown, fetchedAt: string): Parsed<Page<PartnerRecord>> {
  const details: ErrorDetail[] = [];
  let rawItems: unknown = body;
  let next: string | undefined;
  if (!Array.isArray(body)) {
    const input = new InputReader(body, [], '', details);
    rawItems = input.raw('items');
    next = input.string('next');
    if (!Array.isArray(rawItems)) input.problem('items', 'must be an array of partners', 'type');
  }
  const items: PartnerRecord[] = [];
  if (Array.isArray(rawItems)) {
    rawItems.forEach((raw, i) => {
      const record = readPartner(raw, `items[${i}]`, fetchedAt, details);
      if (record) items.push(record);
    });
  }
  return finish(next === undefined ? { items } : { items, next }, details);
}

function finish<T>(value: T | undefined, all: ErrorDetail[]): Parsed<T> {
  // Unknown fields are the API evolving, not a fault; everything else is.
  const details = all.filter((d) => d.code !== 'unknown_field');
  if (details.length > 0 || value === undefined) return { ok: false, details };
  return { ok: true, value };
}

/** One partner object; `createdAt`/`updatedAt` default to the fetch time, `revision` is always 0. */
function readPartner(
  value: unknown,
  prefix: string,
  fetchedAt: string,
  details: ErrorDetail[],
): PartnerRecord | undefined {
  const before = details.length;
  const input = new InputReader(value, [], prefix, details);
  const id = input.string('id', { required: true });
  const name = input.string('name', { required: true });
  const status = input.oneOf('status', STATUSES) ?? 'ACTIVE';
  const contactEmail = input.string('contactEmail');
  // The processor hands metadata to mappings: nested no deeper than the admin API allows.
  const metadata = input.object('metadata', { maxDepth: MAX_JSON_DEPTH }) ?? {};
  // The same checks as the admin API, so the dispatcher can trust the settings either way.
  const delivery = readDeliverySettings(input, false) ?? {};
  const createdAt = readTime(input, 'createdAt') ?? fetchedAt;
  const updatedAt = readTime(input, 'updatedAt') ?? createdAt;
  const faults = details.slice(before).filter((d) => d.code !== 'unknown_field');
  if (faults.length > 0 || id === undefined || name === undefined) return undefined;
  return {
    id,
    name,
    status,
    ...(contactEmail !== undefined ? { contactEmail } : {}),
    metadata,
    delivery,
    createdAt,
    updatedAt,
    revision: 0,
  };
}

/** A timestamp the API may send in any format `Date` reads; stored as ISO 8601 like our own records. */
function readTime(input: InputReader, key: string): string | undefined {
  const text = input.string(key);
  if (text === undefined) return undefined;
  const time = new Date(text);
  if (Number.isNaN(time.getTime())) return input.problem(key, 'must be a date-time');
  return time.toISOString();
}
