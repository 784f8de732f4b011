/**
 * The partner directory port: where partners are looked up. Either the built-in `partner` table
 * (read/write through the admin API) or an external Partner Info API (read-only, HTTP, cached).
 * The processor also uses it to enrich events (issue: pipeline).
 */

import type { PartnerRecord } from '../model.ts';
import type { Page, PageRequest } from './store.ts';

export interface PartnerDirectory {
  /** `builtin` (the store's partner table) or `http` (an external Partner Info API). */
  readonly kind: 'builtin' | 'http';
  /** The partner, or undefined when the directory does not know it. Transient failures throw TransientError. */
  getPartner(id: string): Promise<PartnerRecord | undefined>;
  listPartners(page?: PageRequest): Promise<Page<PartnerRecord>>;
}
