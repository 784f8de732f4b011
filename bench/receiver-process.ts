/** The benchmark receiver (`receiver.ts`) as a child process of its own, and how to talk to it. */
import { type ChildProcess, fork } from 'node:child_process';
import { join } from 'node:path';

export interface ReceiverProcess {
  child: ChildProcess;
  url: string;
  /** Sends a command ({ cmd: 'reset' | 'count' | 'stats' | 'series' }) and resolves with the answer. */
  ask<T>(message: object): Promise<T>;
  stop(): Promise<void>;
}

/** Starts the receiver and resolves once it listens. */
export async function startReceiverProcess(): Promise<ReceiverProcess> {
  const child = fork(join(import.meta.dirname, 'receiver.ts'), {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const { port } = await new Promise<{ port: number }>((resolve) =>
    child.once('message', (m) => resolve(m as { port: number })),
  );
  return {
    child,
    url: `http://127.0.0.1:${port}`,
    ask: <T>(message: object) =>
      new Promise<T>((resolve) => {
        child.once('message', (m) => resolve(m as T));
        child.send(message);
      }),
    stop: async () => {
      child.send({ cmd: 'exit' });
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}
