/**
 * Read-through caches the processor reads through: schema versions, subscriptions of an event,
 * partners. TTLs bound staleness across processes; same-process admin changes invalidate at once.
 */
import type { PartnerRecord, SchemaRecord, SubscriptionRecord } from '../common/model.ts';
import type { PartnerDirectory } from '../common/ports/partner-directory.ts';
import type { SchemaRepository, SubscriptionRepository } from '../common/ports/store.ts';
import { TtlCache } from '../common/ttl-cache.ts';

/** What the processor needs to look up. */
export interface ProcessorLookups {
  schema(domain: string, event: string, version: number): Promise<SchemaRecord | undefined>;
  /** Subscriptions of an event that should receive it (not DISABLED). */
  subscriptions(domain: string, event: string): Promise<SubscriptionRecord[]>;
  partner(id: string): Promise<PartnerRecord | undefined>;
}

export interface CachedLookupsOptions {
  schemas: SchemaRepository;
  subscriptions: SubscriptionRepository;
  directory: PartnerDirectory;
  schemaTtlMs?: number;
  subscriptionTtlMs?: number;
  partnerTtlMs?: number;
}

/** ProcessorLookups over the store and the partner directory, with TTL caches. */
export class CachedLookups implements ProcessorLookups {
  readonly #opts: CachedLookupsOptions;
  readonly #schemas: TtlCache<string, SchemaRecord | undefined>;
  readonly #versions: TtlCache<string, SchemaRecord[]>;
  readonly #subscriptions: TtlCache<string, SubscriptionRecord[]>;
  readonly #partners: TtlCache<string, PartnerRecord | undefined>;

  constructor(opts: CachedLookupsOptions) {
    this.#opts = opts;
    this.#schemas = new TtlCache({ ttlMs: opts.schemaTtlMs ?? 30_000 });
    this.#versions = new TtlCache({ ttlMs: opts.schemaTtlMs ?? 30_000 });
    this.#subscriptions = new TtlCache({ ttlMs: opts.subscriptionTtlMs ?? 5_000 });
    this.#partners = new TtlCache({ ttlMs: opts.partnerTtlMs ?? 30_000 });
  }

  schema(domain: string, event: string, version: number): Promise<SchemaRecord | undefined> {
    return this.#schemas.get(`${domain}.${event}.v${version}`, () =>
      this.#opts.schemas.get(domain, event, version),
    );
  }

  /** Every version of an event's schema, ascending (ingest picks the version from it). */
  versions(domain: string, event: string): Promise<SchemaRecord[]> {
    return this.#versions.get(`${domain}.${event}`, () => this.#opts.schemas.listVersions(domain, event));
  }

  subscriptions(domain: string, event: string): Promise<SubscriptionRecord[]> {
    return this.#subscriptions.get(`${domain}.${event}`, async () => {
      const out: SubscriptionRecord[] = [];
      let cursor: string | undefined;
      do {
        const page = await this.#opts.subscriptions.list(
          { domain, event },
          { limit: 1000, ...(cursor ? { cursor } : {}) },
        );
        out.push(...page.items.filter((s) => s.status !== 'DISABLED'));
        cursor = page.next;
      } while (cursor);
      return out;
    });
  }

  partner(id: string): Promise<PartnerRecord | undefined> {
    return this.#partners.get(id, () => this.#opts.directory.getPartner(id));
  }

  /** A schema version changed (registered or status changed). */
  schemaChanged(domain: string, event: string, version: number): void {
    this.#schemas.invalidate(`${domain}.${event}.v${version}`);
    this.#versions.invalidate(`${domain}.${event}`);
  }

  /** A partner changed (its status, its delivery settings). */
  partnerChanged(id: string): void {
    this.#partners.invalidate(id);
  }

  /** A subscription of this event changed. */
  subscriptionsChanged(domain: string, event: string): void {
    this.#subscriptions.invalidate(`${domain}.${event}`);
  }
}
