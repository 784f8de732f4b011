/** Running the `webhooks` CLI as a child process, as a user would. */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';

export const CLI = join(import.meta.dirname, '../../src/runtimes/cli/main.ts');

const children = new Set<ChildProcess>();

/** The test process's environment without WEBHOOKS_* settings, plus `extra`. */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith('WEBHOOKS_') && v !== undefined) env[k] = v;
  return { ...env, WEBHOOKS_LOG_LEVEL: 'warn', ...extra };
}

export interface StartedCli {
  child: ChildProcess;
  url: string;
  output: () => string;
}

/** Runs `webhooks <args>` and waits for the end of the start banner (the OpenAPI line). */
export function startCli(args: string[], env: Record<string, string> = {}): Promise<StartedCli> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: cleanEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no start banner in time:\n${out}`)), 20_000);
    const check = () => {
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m && out.includes('OpenAPI document:')) {
        clearTimeout(timer);
        child.stdout!.off('data', check);
        resolve({ child, url: m[1]!, output: () => out });
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before listening:\n${out}`));
    });
  });
}

/** Resolves with the exit code once the child has exited. */
export function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** Kills every child still running (call from `after`). */
export function killAll(): void {
  for (const child of children) child.kill('SIGKILL');
}

/** A JSON call to the admin API with a bearer token. */
export async function api(
  url: string,
  token: string,
  method: string,
  path: string,
  body?: unknown,
  contentType = 'application/json',
) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': contentType },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as any };
}
