import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ValidationError } from '../../src/common/errors.ts';
import { isUuid, positionalRecordId, uuidv7, uuidv7From, uuidv7Time } from '../../src/common/ids.ts';

describe('uuidv7', () => {
  it('sets version 7 and the RFC 9562 variant', () => {
    const id = uuidv7();

    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('gives strictly increasing ids over 10,000 made in a tight loop', () => {
    const ids: string[] = [];

    for (let i = 0; i < 10_000; i++) ids.push(uuidv7());

    for (let i = 1; i < ids.length; i++) {
      assert.ok(ids[i - 1]! < ids[i]!, `id ${i} (${ids[i]}) does not sort after ${ids[i - 1]}`);
    }
  });

  it('encodes the current time in milliseconds', () => {
    const before = Date.now();

    const time = uuidv7Time(uuidv7());

    const after = Date.now();
    // The counter may borrow a millisecond or two from the future when many ids share one.
    assert.ok(time >= before && time <= after + 5, `${time} not within [${before}, ${after}]`);
  });

  it('varies the random part between ids', () => {
    const a = uuidv7();
    const b = uuidv7();

    assert.notEqual(a.slice(19), b.slice(19));
  });
});

describe('uuidv7Time', () => {
  it('reads the timestamp of a known id', () => {
    // 0x017f22e279b0 = 1645557742000 (RFC 9562 appendix A.6 example).
    assert.equal(uuidv7Time('017F22E2-79B0-7CC3-98C4-DC0C0C07398F'), 1645557742000);
  });

  it('rejects a UUID of another version', () => {
    assert.throws(
      () => uuidv7Time('6ba7b810-9dad-41d1-80b4-00c04fd430c8'),
      (err) => err instanceof ValidationError && err.code === 'invalid_uuid',
    );
  });
});

describe('isUuid', () => {
  it('accepts UUIDs of any version in either case', () => {
    assert.equal(isUuid('6ba7b810-9dad-11d1-80b4-00c04fd430c8'), true);
    assert.equal(isUuid('6BA7B810-9DAD-41D1-80B4-00C04FD430C8'), true);
    assert.equal(isUuid(uuidv7()), true);
  });

  it('rejects malformed strings and non-strings', () => {
    for (const value of [
      '',
      'not-a-uuid',
      '6ba7b8109dad11d180b400c04fd430c8',
      '6ba7b810-9dad-11d1-80b4-00c04fd430cg',
      42,
      null,
      undefined,
    ]) {
      assert.equal(isUuid(value), false, String(value));
    }
  });
});

describe('uuidv7From', () => {
  it('gives the same UUIDv7 for the same time and key, another for another key', () => {
    const at = Date.parse('2026-12-01T10:00:00.000Z');
    const a = uuidv7From(at, 'processor\ningress.x\n0\n17\n');
    assert.equal(a, uuidv7From(at, 'processor\ningress.x\n0\n17\n'));
    assert.notEqual(a, uuidv7From(at, 'processor\ningress.x\n0\n18\n'));
    assert.equal(uuidv7Time(a), at, 'a valid v7 carrying the time');
  });

  it('sorts by time', () => {
    const ids = [3, 1, 2].map((s) => uuidv7From(Date.parse('2026-12-01T10:00:00Z') + s * 1000, 'k'));
    assert.deepEqual([...ids].sort(), [ids[1], ids[2], ids[0]]);
  });
});

describe('positionalRecordId', () => {
  it('sorts records of one millisecond by offset, across the bit boundaries, and stays a UUIDv7 of that time', () => {
    const at = Date.UTC(2026, 11, 7);
    const offsets = [0, 1, 4095, 4096, 2 ** 30 - 1, 2 ** 30, 2 ** 31 + 5, 2 ** 41 + 3];
    const ids = offsets.map((offset) =>
      positionalRecordId('held', { topic: 't', partition: 0, offset, timestamp: at }),
    );
    assert.deepEqual([...ids].sort(), ids);
    for (const id of ids) {
      assert.ok(isUuid(id));
      assert.equal(id[14], '7', 'version 7');
      assert.equal(uuidv7Time(id), at);
    }
  });

  it('is the same for every read of a record, and differs for another record at the same offset', () => {
    const record = { topic: 't', partition: 2, offset: 9, timestamp: 1_700_000_000_000 };
    assert.equal(positionalRecordId('held', record), positionalRecordId('held', { ...record }));
    assert.notEqual(
      positionalRecordId('held', record),
      positionalRecordId('held', { ...record, partition: 3 }),
    );
    assert.notEqual(
      positionalRecordId('held', record),
      positionalRecordId('held', { ...record, topic: 'u' }),
    );
  });
});
