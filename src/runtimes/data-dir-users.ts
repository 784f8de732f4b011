/**
 * Who is using a data dir: each platform (and a running `webhooks rotate-secret-key`) leaves a file
 * `in-use.<pid>.<n>.<what>` in it for as long as it runs (`n` tells apart the platforms of one
 * process, as tests build them). The key rotation re-seals the
 * store and deletes the old key: a platform running meanwhile would keep the old key in memory, fail
 * every delivery, and seal what it writes next under a key that no longer exists anywhere. So each
 * side marks its use first, then looks for the other's, and refuses while that one is alive (both
 * refusing at worst, never both going ahead).
 *
 * A file whose process is gone (a crash, SIGKILL) is stale: it is removed when found. Processes are
 * told apart by pid on this host; a data dir shared between machines is not something SQLite allows.
 */
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../common/errors.ts';

export type DataDirUse = 'platform' | 'rotation';

const PREFIX = 'in-use.';
/** Marks made by this process so far. */
let marks = 0;

/** Marks this process as using the data dir; returns the function that takes the mark away. */
export function markDataDirUse(dataDir: string, what: DataDirUse): () => void {
  marks += 1;
  const path = join(dataDir, `${PREFIX}${process.pid}.${marks}.${what}`);
  writeFileSync(path, `${hostname()}\n`, { mode: 0o600 });
  let removed = false;
  const remove = () => {
    if (removed) return;
    removed = true;
    process.off('exit', remove);
    rmSync(path, { force: true });
  };
  // A process that exits without closing (process.exit after a fatal error) still takes it away.
  process.on('exit', remove);
  return remove;
}

/** The pids of other live processes using the data dir for `what`; stale marks are removed. */
export function otherDataDirUsers(dataDir: string, what: DataDirUse): number[] {
  const pids: number[] = [];
  let names: string[];
  try {
    names = readdirSync(dataDir);
  } catch {
    return pids;
  }
  for (const name of names) {
    // (`in-use.<pid>.<what>`: a mark of a process of the build before, still running.)
    const match = /^in-use\.(\d+)\.(?:\d+\.)?([a-z]+)$/.exec(name);
    if (!match || match[2] !== what) continue;
    const pid = Number(match[1]);
    if (pid === process.pid) continue;
    if (alive(pid)) pids.push(pid);
    else rmSync(join(dataDir, name), { force: true });
  }
  return pids;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, under another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Marks this process's use of the data dir, then refuses (taking the mark away) while a process of
 * the other kind is alive on it; returns the function that takes the mark away.
 */
export function claimDataDir(dataDir: string, what: DataDirUse): () => void {
  const unmark = markDataDirUse(dataDir, what);
  const other: DataDirUse = what === 'platform' ? 'rotation' : 'platform';
  const pids = otherDataDirUsers(dataDir, other);
  if (pids.length === 0) return unmark;
  unmark();
  const who = `${pids.length === 1 ? 'process' : 'processes'} ${pids.join(', ')}`;
  const message =
    what === 'platform'
      ? `a secret key rotation (${who}) is under way on ${dataDir}: start the platform once it has finished`
      : `the platform is running on ${dataDir} (${who}): stop every process of it first, or it would keep the old key and seal new secrets under a key that no longer exists`;
  throw new ConfigError(message, { details: [{ field: 'dataDir', message }] });
}
