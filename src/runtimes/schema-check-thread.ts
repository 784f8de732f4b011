/**
 * Entry point of the schema-check thread (see `schema-checks.ts`): runs the document and
 * compatibility checks of schema registrations, one request at a time, off the API's thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { checkDocument } from '../schemas/checks.ts';
import { checkCompatibility } from '../schemas/compatibility.ts';
import type { CheckReply, CheckRequest } from './schema-checks.ts';
import { lowerThreadPriority } from './thread-host.ts';

const port = parentPort;
if (!port) throw new Error('schema-check-thread.ts runs as a worker thread only');
lowerThreadPriority((workerData as { nice: number }).nice);

port.on('message', (request: CheckRequest) => {
  let reply: CheckReply;
  try {
    reply =
      request.kind === 'document'
        ? { id: request.id, result: checkDocument(request.schema, request.fieldPrefix) }
        : { id: request.id, result: checkCompatibility(request.candidate, request.previous, request.mode) };
  } catch (err) {
    reply = { id: request.id, error: (err as Error).message };
  }
  port.postMessage(reply);
});
