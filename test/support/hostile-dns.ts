/**
 * A tiny authoritative DNS server on loopback (UDP, node:dgram) whose answers a test scripts: a name
 * can answer a public address to one lookup and loopback to the next (DNS rebinding, TTL 0), answer
 * a mix, or never answer. Lookups go through a real `dns.Resolver` (c-ares) pointed at it, shaped as
 * the two seams of the platform: `lookup` for the delivery client (under its SSRF guard) and
 * `lookupAll` for `createDnsResolver` (the check when a subscription is saved).
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { LookupAll } from '../../src/engines/dns-resolver.ts';
import { type AddressLookup, resolverLookup } from '../../src/engines/http/guarded-lookup.ts';

const TYPE_A = 1;
const TYPE_AAAA = 28;
const RCODE_NXDOMAIN = 3;

interface Question {
  id: number;
  flags: number;
  name: string;
  type: number;
  /** The question section as received, echoed in the answer. */
  section: Buffer;
}

/** A scripted DNS server; `close()` it when done. */
export class HostileDns {
  readonly #socket: Socket;
  readonly #resolver: Resolver;
  readonly #lookup: AddressLookup;
  readonly #rounds = new Map<string, string[][]>();
  readonly #silent = new Set<string>();
  /** Queries per `name type`: the Nth query of a type gets the Nth round. */
  readonly #queries = new Map<string, number>();

  private constructor(socket: Socket) {
    this.#socket = socket;
    this.#resolver = new Resolver({ timeout: 5000, tries: 1 });
    this.#resolver.setServers([`127.0.0.1:${socket.address().port}`]);
    this.#lookup = resolverLookup(this.#resolver);
    socket.on('message', (msg, from) => this.#answer(msg, from));
  }

  /** Starts a server on an ephemeral loopback port. */
  static async start(): Promise<HostileDns> {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    return new HostileDns(socket);
  }

  /**
   * Answers successive lookups of `name` with `rounds` in turn, the last one repeating; a round lists
   * IPv4 and IPv6 addresses together (A and AAAA queries each get theirs). Unknown names: NXDOMAIN.
   * Counting starts again: `lookups(name)` counts from here.
   */
  answer(name: string, ...rounds: string[][]): void {
    const key = name.toLowerCase();
    this.#rounds.set(key, rounds);
    this.#silent.delete(key);
    for (const type of [TYPE_A, TYPE_AAAA]) this.#queries.delete(`${key} ${type}`);
  }

  /** The server's address, for a resolver of one's own (`Resolver.setServers`). */
  get server(): string {
    return `127.0.0.1:${this.#socket.address().port}`;
  }

  /** Never answers `name`: its queries are dropped, as by a partner's dead name server. Counting starts again. */
  silence(name: string): void {
    const key = name.toLowerCase();
    this.#silent.add(key);
    for (const type of [TYPE_A, TYPE_AAAA]) this.#queries.delete(`${key} ${type}`);
  }

  /** Lookups of `name` since it was last scripted (each lookup sends exactly one A query). */
  lookups(name: string): number {
    return this.#queries.get(`${name.toLowerCase()} ${TYPE_A}`) ?? 0;
  }

  /**
   * A `dns.lookup`-shaped function resolving through this server, as the platform asks DNS
   * (`resolverLookup`): the delivery client's seam.
   */
  readonly lookup: AddressLookup = (hostname, options, callback) => this.#lookup(hostname, options, callback);

  /** Every address of a name through this server: the seam of `createDnsResolver`. */
  readonly lookupAll: LookupAll = (hostname) =>
    new Promise((resolve, reject) =>
      this.#lookup(hostname, { all: true }, (err, addresses) => (err ? reject(err) : resolve(addresses))),
    );

  /** Stops the server; lookups still waiting fail with ECANCELLED. */
  async close(): Promise<void> {
    this.#resolver.cancel();
    await new Promise<void>((resolve) => this.#socket.close(() => resolve()));
  }

  #answer(msg: Buffer, from: RemoteInfo): void {
    const question = parseQuestion(msg);
    if (question === undefined) return;
    const name = question.name.toLowerCase();
    const key = `${name} ${question.type}`;
    const count = this.#queries.get(key) ?? 0;
    this.#queries.set(key, count + 1);
    if (this.#silent.has(name)) return;
    const rounds = this.#rounds.get(name);
    const round = rounds?.[Math.min(count, rounds.length - 1)];
    const wanted = question.type === TYPE_A ? 4 : question.type === TYPE_AAAA ? 6 : 0;
    const addresses = (round ?? []).filter((a) => isIP(a) === wanted);
    const reply = encodeReply(question, rounds === undefined ? RCODE_NXDOMAIN : 0, addresses);
    this.#socket.send(reply, from.port, from.address);
  }
}

/** The first question of a query; undefined for anything this server does not understand. */
function parseQuestion(msg: Buffer): Question | undefined {
  if (msg.length < 12 || msg.readUInt16BE(4) < 1) return undefined;
  const labels: string[] = [];
  let at = 12;
  while (at < msg.length && msg[at] !== 0) {
    const length = msg[at]!;
    labels.push(msg.toString('latin1', at + 1, at + 1 + length));
    at += 1 + length;
  }
  const end = at + 5; // the root label, QTYPE, QCLASS
  if (end > msg.length) return undefined;
  return {
    id: msg.readUInt16BE(0),
    flags: msg.readUInt16BE(2),
    name: labels.join('.'),
    type: msg.readUInt16BE(at + 1),
    section: msg.subarray(12, end),
  };
}

/** An authoritative answer with TTL 0 (nothing may cache it, as a rebinding attacker wants). */
function encodeReply(question: Question, rcode: number, addresses: string[]): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(question.id, 0);
  // QR, the query's opcode and RD, AA, RA, and the response code.
  header.writeUInt16BE(0x8000 | (question.flags & 0x7900) | 0x0400 | 0x0080 | rcode, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(addresses.length, 6);
  const records = addresses.map((address) => {
    const data = addressBytes(address);
    const record = Buffer.alloc(12);
    record.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
    record.writeUInt16BE(isIP(address) === 4 ? TYPE_A : TYPE_AAAA, 2);
    record.writeUInt16BE(1, 4); // class IN
    record.writeUInt32BE(0, 6); // TTL 0
    record.writeUInt16BE(data.length, 10);
    return Buffer.concat([record, data]);
  });
  return Buffer.concat([header, question.section, ...records]);
}

/** The 4 or 16 bytes of an address; IPv6 may end in dotted IPv4 (`::ffff:127.0.0.1`). */
function addressBytes(address: string): Buffer {
  if (isIP(address) === 4) return Buffer.from(address.split('.').map(Number));
  let text = address;
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = Array<string>(8 - headGroups.length - tailGroups.length).fill('0');
  const groups = tail === undefined ? headGroups : [...headGroups, ...zeros, ...tailGroups];
  const bytes = Buffer.alloc(16);
  for (const [i, group] of groups.entries()) bytes.writeUInt16BE(Number.parseInt(group, 16), i * 2);
  return bytes;
}
