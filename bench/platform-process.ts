/** Running the platform as child processes for the benchmark, and sampling their memory. */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const CLI = join(import.meta.dirname, '../src/runtimes/cli/main.ts');

export interface PlatformProcess {
  child: ChildProcess;
  url: string;
  role: string;
  peakRss: number;
  stop(): Promise<void>;
}

/**
 * Node options for the platform alone, not the benchmark's own processes: `BENCH_NODE_OPTIONS` (V8
 * flags to try), and the CPU profiler for the role named by `BENCH_PROFILE`.
 */
function platformNodeOptions(role: string): { NODE_OPTIONS?: string } {
  const options = [process.env.BENCH_NODE_OPTIONS ?? ''];
  if (process.env.BENCH_PROFILE && role === process.env.BENCH_PROFILE)
    options.push(`--cpu-prof --cpu-prof-dir=${process.env.BENCH_PROFILE_DIR ?? '/tmp'}`);
  const joined = options.filter(Boolean).join(' ');
  return joined ? { NODE_OPTIONS: joined } : {};
}

/** Starts `webhooks start --role <role>` on a data dir and waits for its banner. */
export function startPlatformProcess(
  role: string,
  dataDir: string,
  env: Record<string, string>,
): Promise<PlatformProcess> {
  const child = spawn(
    process.execPath,
    [CLI, 'start', '--role', role, '--port', '0', '--data-dir', dataDir],
    {
      env: {
        ...process.env,
        ...env,
        ...platformNodeOptions(role),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
    process.stderr.write(d);
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`platform (${role}) did not start:\n${out}`)), 30_000);
    const started = (): void => {
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (!m || !out.includes('OpenAPI document:')) return;
      child.stdout!.off('data', started);
      clearTimeout(timer);
      const proc: PlatformProcess = {
        child,
        url: m[1]!,
        role,
        peakRss: 0,
        stop: () =>
          new Promise((done) => {
            clearInterval(sampler);
            child.once('exit', () => done());
            child.kill('SIGTERM');
          }),
      };
      const sampler = setInterval(() => {
        proc.peakRss = Math.max(proc.peakRss, rssOf(child.pid));
      }, 250);
      resolve(proc);
    };
    child.stdout!.on('data', started);
    child.once('exit', (code) => reject(new Error(`platform (${role}) exited ${code}:\n${out}`)));
  });
}

/** CPU time (user + system) a process has used so far, in ms (Linux /proc), 0 when unknown. */
export function cpuMsOf(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    // Fields 14 and 15 of /proc/<pid>/stat, after the parenthesised command name, in clock ticks (100/s).
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return 0;
  }
}

/** Resident memory of a process in bytes (Linux /proc), 0 when unknown. */
export function rssOf(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}
