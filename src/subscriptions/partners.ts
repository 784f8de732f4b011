/**
 * Partners: who receives webhooks. Managed here when the directory is the built-in `partner`
 * table; read-only when an external Partner Info API is the directory.
 */
import { ConflictError, NotFoundError } from '../common/errors.ts';
import { InputReader } from '../common/input.ts';
import { MAX_JSON_DEPTH } from '../common/json.ts';
import type { PartnerRecord, PartnerStatus } from '../common/model.ts';
import type { PartnerDirectory } from '../common/ports/partner-directory.ts';
import type { Page, PageRequest, PartnerRepository } from '../common/ports/store.ts';
import { readDeliverySettings } from '../common/retry.ts';
import { NAME_PATTERN, NAME_RULE } from '../common/topics.ts';

export const PARTNER_STATUSES: readonly PartnerStatus[] = ['ACTIVE', 'INACTIVE'];
const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,255}$/;

/** The built-in directory: the store's `partner` table. */
export class StorePartnerDirectory implements PartnerDirectory {
  readonly kind = 'builtin';
  readonly #partners: PartnerRepository;

  constructor(partners: PartnerRepository) {
    this.#partners = partners;
  }

  getPartner(id: string): Promise<PartnerRecord | undefined> {
    return this.#partners.get(id);
  }

  listPartners(page?: PageRequest): Promise<Page<PartnerRecord>> {
    return this.#partners.list(page);
  }
}

export interface PartnerAdminDeps {
  partners: PartnerRepository;
  directory: PartnerDirectory;
  clock: () => Date;
  /**
   * Told of every partner created or changed, with what it was before a change (caches drop their
   * copy; a reactivation releases what was held).
   */
  onPartnerChanged?: (partner: PartnerRecord, previous?: PartnerRecord) => void | Promise<void>;
}

/** Use cases of partner administration. */
export class PartnerAdmin {
  readonly #deps: PartnerAdminDeps;

  constructor(deps: PartnerAdminDeps) {
    this.#deps = deps;
  }

  /** Adds a partner (POST /admin/partners). */
  async create(body: unknown): Promise<PartnerRecord> {
    this.#assertWritable();
    const input = new InputReader(body, ['id', 'name', 'status', 'contactEmail', 'metadata', 'delivery']);
    const id = input.string('id', { required: true, pattern: NAME_PATTERN, rule: NAME_RULE });
    const fields = readPartnerFields(input, true);
    input.done('the partner is invalid');
    const now = this.#deps.clock().toISOString();
    const record: PartnerRecord = {
      id: id!,
      name: fields.name!,
      status: fields.status ?? 'ACTIVE',
      ...(fields.contactEmail !== undefined ? { contactEmail: fields.contactEmail } : {}),
      metadata: fields.metadata ?? {},
      delivery: fields.delivery ?? {},
      createdAt: now,
      updatedAt: now,
      revision: 1,
    };
    try {
      await this.#deps.partners.insert(record);
    } catch (err) {
      if ((err as { code?: string }).code === 'already_exists') {
        throw new ConflictError('partner_exists', `partner \`${record.id}\` already exists`, {
          details: [{ field: 'id', message: 'a partner with this id already exists' }],
          cause: err,
        });
      }
      throw err;
    }
    await this.#deps.onPartnerChanged?.(record);
    return record;
  }

  /** One partner, from whichever directory is configured. */
  async get(id: string): Promise<PartnerRecord> {
    const partner = await this.#deps.directory.getPartner(id);
    if (!partner) {
      throw new NotFoundError('partner_not_found', `no partner \`${id}\``, {
        details: [{ field: 'partnerId', message: 'no such partner' }],
      });
    }
    return partner;
  }

  list(page: PageRequest): Promise<Page<PartnerRecord>> {
    return this.#deps.directory.listPartners(page);
  }

  /** Changes a partner's name, status, contact, metadata or delivery settings (PATCH). */
  async update(id: string, body: unknown): Promise<PartnerRecord> {
    this.#assertWritable();
    const input = new InputReader(body, ['name', 'status', 'contactEmail', 'metadata', 'delivery']);
    const fields = readPartnerFields(input, false);
    input.done('the partner update is invalid');
    const current = await this.get(id);
    const updated = await this.#deps.partners.update({
      ...current,
      ...Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)),
      updatedAt: this.#deps.clock().toISOString(),
    });
    await this.#deps.onPartnerChanged?.(updated, current);
    return updated;
  }

  #assertWritable(): void {
    if (this.#deps.directory.kind !== 'builtin') {
      throw new ConflictError(
        'partner_directory_external',
        'partners are managed by the external Partner Info API (WEBHOOKS_PARTNER_API_URL); change them there',
      );
    }
  }
}

/** Reads the mutable partner fields; `name` is required on create. */
function readPartnerFields(input: InputReader, creating: boolean) {
  const name = input.string('name', { required: creating, max: 200 });
  const status = input.oneOf('status', PARTNER_STATUSES);
  const contactEmail = input.string('contactEmail', { max: 320, pattern: EMAIL, rule: 'an e-mail address' });
  const metadata = input.object('metadata', { maxDepth: MAX_JSON_DEPTH });
  if (metadata && JSON.stringify(metadata).length > 16_384)
    input.problem('metadata', 'must be at most 16 KiB of JSON');
  const delivery = readDeliverySettings(input, true);
  return { name, status, contactEmail, metadata, delivery };
}

/** The API view of a partner. */
export function partnerView(record: PartnerRecord): Omit<PartnerRecord, 'revision'> {
  const { revision: _revision, ...view } = record;
  return view;
}
