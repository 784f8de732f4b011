/**
 * Schema Registration Admin (plan §1): validate a JSON Schema document, version it, check its
 * compatibility with earlier versions, store it in `event_schema` and ensure its ingress topic.
 */
import { ConflictError, NotFoundError } from '../common/errors.ts';
import { InputReader } from '../common/input.ts';
import { type JsonValue, pointerSegments } from '../common/json.ts';
import type { SchemaRecord, SchemaStatus } from '../common/model.ts';
import type { TopicAdmin } from '../common/ports/bus.ts';
import type { IdempotencyLedger, Page, PageRequest, SchemaRepository } from '../common/ports/store.ts';
import { ingressTopic, NAME_PATTERN, NAME_RULE } from '../common/topics.ts';
import { inlineSchemaChecks, type SchemaChecks } from './checks.ts';
import { COMPATIBILITY_MODES, DEFAULT_COMPATIBILITY_MODE } from './compatibility.ts';

export const SCHEMA_STATUSES: readonly SchemaStatus[] = ['ACTIVE', 'INACTIVE'];
const MAX_VERSION = 1_000_000;

/** What the schema admin needs from the outside world. */
export interface SchemaAdminDeps {
  schemas: SchemaRepository;
  topics: Pick<TopicAdmin, 'ensureTopic'>;
  newId: () => string;
  clock: () => Date;
  /** Partitions of new ingress topics. */
  partitions: number;
  /** Where the document and compatibility checks run (default: inline, on the caller's thread). */
  checks?: SchemaChecks;
  /** Told after a schema version is added or changed (read-through caches invalidate on it); awaited before the change is answered. */
  onSchemaChanged?: (domain: string, event: string, version: number) => void | Promise<void>;
  /**
   * Serialises the registrations of one event across processes (a claim on
   * `schema-registration:<domain>.<event>`): without it, two versions registered at once are each
   * checked against the versions before both, never against each other.
   */
  ledger?: Pick<IdempotencyLedger, 'claim' | 'release'>;
}

/** How long a registration's claim on its event lasts: its checks (up to 10 s) and writes. */
const REGISTRATION_LEASE_MS = 30_000;
/** The claim must have this much of its lease left when the version is stored. */
const REGISTRATION_MARGIN_MS = 5_000;
/** How long a registration waits for another one of the same event before it answers 409. */
const REGISTRATION_WAIT_MS = 15_000;

/** The result of a registration: the version, and whether it was new (201) or already there (200). */
export interface Registration {
  record: SchemaRecord;
  created: boolean;
}

/** Use cases of the Schema Registration Admin. */
export class SchemaAdmin {
  readonly #deps: SchemaAdminDeps;

  constructor(deps: SchemaAdminDeps) {
    this.#deps = deps;
  }

  /** Registers a schema version (POST /admin/schemas). Idempotent for an identical document. */
  async register(body: unknown): Promise<Registration> {
    const input = new InputReader(body, [
      'domain',
      'event',
      'version',
      'schema',
      'status',
      'compatibility',
      'description',
    ]);
    const domainInput = input.string('domain', { required: true, pattern: NAME_PATTERN, rule: NAME_RULE });
    const eventInput = input.string('event', { required: true, pattern: NAME_PATTERN, rule: NAME_RULE });
    const version = input.integer('version', { min: 1, max: MAX_VERSION });
    const status = input.oneOf('status', SCHEMA_STATUSES) ?? 'ACTIVE';
    const compatibility = input.oneOf('compatibility', COMPATIBILITY_MODES);
    const description = input.string('description', { max: 1000 });
    const checks = this.#deps.checks ?? inlineSchemaChecks;
    let fingerprint = '';
    if (!input.has('schema')) input.problem('schema', 'is required', 'required');
    else {
      const checked = await checks.document(input.raw('schema'), 'schema');
      input.add(checked.problems);
      fingerprint = checked.fingerprint ?? '';
    }
    input.done('the schema registration is invalid');
    const schema = input.raw('schema') as JsonValue;
    const domain = domainInput!;
    const event = eventInput!;
    const claim = await this.#claimEvent(domain, event);
    try {
      const existing = await this.#deps.schemas.listVersions(domain, event);
      const latest = existing.at(-1);
      const identical = existing.find(
        (r) => r.fingerprint === fingerprint && (version === undefined || r.version === version),
      );
      if (identical) return { record: identical, created: false };
      if (version !== undefined && latest && version <= latest.version) {
        const taken = existing.some((r) => r.version === version);
        throw new ConflictError(
          taken ? 'schema_version_exists' : 'schema_version_not_increasing',
          taken
            ? `${domain}.${event} v${version} already exists with a different document`
            : `${domain}.${event} versions must increase: the latest is v${latest.version}`,
          { details: [{ field: 'version', message: `must be greater than ${latest.version}` }] },
        );
      }

      const mode = compatibility ?? latest?.compatibility ?? DEFAULT_COMPATIBILITY_MODE;
      const breaking = await checks.compatibility(
        schema,
        existing.map((r) => ({ version: r.version, schema: r.schema })),
        mode,
      );
      if (breaking.length > 0) {
        throw new ConflictError(
          'schema_incompatible',
          `the schema is not ${mode} compatible with ${domain}.${event}: ${breaking.map((b) => b.message).join('; ')}`,
          {
            details: breaking.map((b) => ({
              field: ['schema', ...pointerSegments(b.path)].join('.'),
              message: `${b.message} (${b.direction} incompatible with v${b.againstVersion})`,
              code: `${b.direction}_incompatible`,
            })),
          },
        );
      }

      const newVersion = version ?? (latest ? latest.version + 1 : 1);
      const topic = ingressTopic(domain, event, newVersion);
      // Ensure the topic first: a stored version always has its topic (ensureTopic is idempotent).
      await this.#deps.topics.ensureTopic(topic, { partitions: this.#deps.partitions });
      const now = this.#deps.clock().toISOString();
      const record: SchemaRecord = {
        id: this.#deps.newId(),
        domain,
        event,
        version: newVersion,
        status,
        schema,
        fingerprint,
        compatibility: mode,
        ingressTopic: topic,
        ...(description !== undefined ? { description } : {}),
        createdAt: now,
        updatedAt: now,
        revision: 1,
      };
      // Past its lease, the claim may be another registration's by now: this one was checked against
      // versions that may no longer be the latest.
      if (
        claim !== undefined &&
        this.#deps.clock().getTime() - claim.at > REGISTRATION_LEASE_MS - REGISTRATION_MARGIN_MS
      ) {
        throw new ConflictError(
          'schema_registration_busy',
          `the registration of ${domain}.${event} took longer than its claim lasts; try again`,
        );
      }
      try {
        await this.#deps.schemas.insert(record);
      } catch (err) {
        // A concurrent registration of the same version: idempotent if it is the same document.
        const winner = await this.#deps.schemas.get(domain, event, newVersion);
        if (winner?.fingerprint === fingerprint) return { record: winner, created: false };
        throw err;
      }
      await this.#deps.onSchemaChanged?.(domain, event, newVersion);
      return { record, created: true };
    } finally {
      if (claim) await this.#deps.ledger!.release(claim.key, claim.token).catch(() => false);
    }
  }

  /**
   * Claims the event's registrations, waiting (a try every 50 ms, doubling to 1 s) while another one
   * holds them; undefined without a ledger.
   */
  async #claimEvent(
    domain: string,
    event: string,
  ): Promise<{ key: string; token: string; at: number } | undefined> {
    const ledger = this.#deps.ledger;
    if (!ledger) return undefined;
    const key = `schema-registration:${domain}.${event}`;
    const until = Date.now() + REGISTRATION_WAIT_MS;
    for (let pause = 50; ; pause = Math.min(pause * 2, 1000)) {
      const claim = await ledger.claim(key, REGISTRATION_LEASE_MS, this.#deps.clock().getTime());
      if (claim.status === 'claimed') return { key, token: claim.token, at: this.#deps.clock().getTime() };
      if (Date.now() + pause > until) {
        throw new ConflictError(
          'schema_registration_busy',
          `another registration of ${domain}.${event} is under way; try again`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }

  /** One version (GET /admin/schemas/{domain}/{event}/{version}). */
  async get(domain: string, event: string, versionText: string): Promise<SchemaRecord> {
    const version = parseVersion(versionText);
    const record = version === undefined ? undefined : await this.#deps.schemas.get(domain, event, version);
    if (!record) {
      throw new NotFoundError('schema_not_found', `no schema ${domain}.${event} v${versionText}`, {
        details: [{ field: 'version', message: 'no such schema version' }],
      });
    }
    return record;
  }

  /** Schemas, optionally of one domain/event/status (GET /admin/schemas). */
  async list(
    query: { domain?: string; event?: string; status?: string },
    page: PageRequest,
  ): Promise<Page<SchemaRecord>> {
    const input = new InputReader(query, ['domain', 'event', 'status']);
    const status = input.oneOf('status', SCHEMA_STATUSES);
    input.done('the query is invalid');
    return this.#deps.schemas.list({ domain: query.domain, event: query.event, status }, page);
  }

  /** Changes a version's status, compatibility mode or description (PATCH). */
  async update(domain: string, event: string, versionText: string, body: unknown): Promise<SchemaRecord> {
    const input = new InputReader(body, ['status', 'compatibility', 'description']);
    const status = input.oneOf('status', SCHEMA_STATUSES);
    const compatibility = input.oneOf('compatibility', COMPATIBILITY_MODES);
    const description = input.string('description', { max: 1000 });
    input.done('the schema update is invalid');
    const current = await this.get(domain, event, versionText);
    const updated = await this.#deps.schemas.update({
      ...current,
      ...(status !== undefined ? { status } : {}),
      ...(compatibility !== undefined ? { compatibility } : {}),
      ...(description !== undefined ? { description } : {}),
      updatedAt: this.#deps.clock().toISOString(),
    });
    await this.#deps.onSchemaChanged?.(domain, event, current.version);
    return updated;
  }
}

function parseVersion(text: string): number | undefined {
  const m = /^v?(\d{1,7})$/.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** The API view of a schema version (no internal revision counter). */
export function schemaView(record: SchemaRecord): Omit<SchemaRecord, 'revision'> {
  const { revision: _revision, ...view } = record;
  return view;
}
