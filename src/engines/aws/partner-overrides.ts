/**
 * A partner directory whose partners' delivery settings are overridden by AppConfig (or any
 * settings source): each partner's `delivery` is its record's with the source's overrides merged
 * over it, field by field — the source wins; what it does not set comes from the record. The
 * dispatcher reads the result as it reads any partner, so its core needs no change.
 *
 * Meant for the directory the pipeline reads (the processor's and dispatcher's lookups). Not for
 * the partner admin API: it would show, and on a PATCH store, the overrides as the record's own.
 */
import type { PartnerDeliverySettings, PartnerRecord } from '../../common/model.ts';
import type { PartnerDirectory } from '../../common/ports/partner-directory.ts';
import type { Page, PageRequest } from '../../common/ports/store.ts';
import type { PartnerSettingsSource } from './appconfig.ts';

/** `base` with `override` merged over it; timeouts and retry field by field. */
export function mergeDeliverySettings(
  base: PartnerDeliverySettings,
  override: PartnerDeliverySettings | undefined,
): PartnerDeliverySettings {
  if (!override) return base;
  const merged: PartnerDeliverySettings = { ...base, ...override };
  if (base.timeouts || override.timeouts) merged.timeouts = { ...base.timeouts, ...override.timeouts };
  if (base.retry || override.retry) merged.retry = { ...base.retry, ...override.retry };
  return merged;
}

/** Decorates a directory with a settings source's per-partner delivery overrides. */
export class PartnerOverridesDirectory implements PartnerDirectory {
  readonly kind: PartnerDirectory['kind'];
  readonly #inner: PartnerDirectory;
  readonly #settings: PartnerSettingsSource;

  constructor(inner: PartnerDirectory, settings: PartnerSettingsSource) {
    this.#inner = inner;
    this.#settings = settings;
    this.kind = inner.kind;
  }

  async getPartner(id: string): Promise<PartnerRecord | undefined> {
    const partner = await this.#inner.getPartner(id);
    return partner && this.#apply(partner);
  }

  async listPartners(page?: PageRequest): Promise<Page<PartnerRecord>> {
    const listed = await this.#inner.listPartners(page);
    return { ...listed, items: await Promise.all(listed.items.map((p) => this.#apply(p))) };
  }

  async #apply(partner: PartnerRecord): Promise<PartnerRecord> {
    const override = await this.#settings.partnerDelivery(partner.id);
    // Without overrides the record is handed on as it is (the same object).
    return override ? { ...partner, delivery: mergeDeliverySettings(partner.delivery, override) } : partner;
  }
}
