/** What the store conformance suites share: the harness, the open store, and assertion helpers. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Page, PageRequest, Store } from '../../src/common/ports/store.ts';

export interface StoreHarness {
  open(): Promise<Store>;
  cleanup(): Promise<void>;
}

/**
 * How an engine removes expired history and ledger entries: `purge` — the repositories' purge
 * methods, which the suites test; `ttl` — by itself (DynamoDB's TTL): the methods are absent, which
 * the suites check (the purge worker calls only those present).
 */
export type Expiry = 'purge' | 'ttl';

/** The store under test, as seen by one suite: `reopen` is a restart over the same storage. */
export interface StoreContext {
  expiry: Expiry;
  store(): Store;
  /** Closes the store and opens it again; later `store()` calls return the new one. */
  reopen(): Promise<Store>;
  /** Opens a second store over the same storage (another process, another Lambda); caller closes it. */
  openAnother(): Promise<Store>;
}

/** Matches a ConflictError with the given code. */
export const conflict = (code: string) => (err: unknown) => {
  assert.equal((err as { kind?: string }).kind, 'conflict');
  assert.equal((err as { code?: string }).code, code);
  return true;
};

/** Matches a NotFoundError. */
export const notFound = (err: unknown) => {
  assert.equal((err as { kind?: string }).kind, 'not_found');
  return true;
};

/** Matches the validation error for a cursor the store did not issue. */
export const invalidCursor = (err: unknown) => {
  assert.equal((err as { code?: string }).code, 'cursor_invalid');
  return true;
};

/** Walks every page of a listing with `limit`, checking each page's size; returns all items in order. */
export async function readAllPages<T>(
  limit: number,
  list: (page: PageRequest) => Promise<Page<T>>,
): Promise<T[]> {
  const all: T[] = [];
  let cursor: string | undefined;
  do {
    const page = await list({ limit, ...(cursor ? { cursor } : {}) });
    assert.ok(page.items.length <= limit, `a page holds at most ${limit} items`);
    all.push(...page.items);
    cursor = page.next;
  } while (cursor);
  return all;
}

/**
 * Registers `purgeTest` for an engine that purges; for one that expires by TTL, a test that the
 * method is absent (`method` reads it from the open store).
 */
export function describePurge(
  ctx: StoreContext,
  name: string,
  method: () => unknown,
  purgeTest: () => Promise<void>,
): void {
  if (ctx.expiry === 'purge') test(name, purgeTest);
  else
    test(`the engine expires by itself (TTL), so it has no such method, instead of: ${name}`, () => {
      assert.equal(method(), undefined);
    });
}
