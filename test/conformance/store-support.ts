/** What the store conformance suites share: the harness, the open store, and assertion helpers. */
import assert from 'node:assert/strict';
import type { Page, PageRequest, Store } from '../../src/common/ports/store.ts';

export interface StoreHarness {
  open(): Promise<Store>;
  cleanup(): Promise<void>;
}

/** The store under test, as seen by one suite: `reopen` is a restart over the same storage. */
export interface StoreContext {
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
