/** What the emulator fronts (tools/dynamodb/dynalite.ts, tools/aws/moto.ts) share: passing a request through. */
import { type IncomingMessage, request, type ServerResponse } from 'node:http';

/** Passes a request to the server on `port` of 127.0.0.1 as it came, and its answer back as it went. */
export function forwardRequest(
  req: IncomingMessage,
  body: Buffer,
  res: ServerResponse,
  port: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const headers = { ...req.headers, host: `127.0.0.1:${port}` };
    const out = request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers }, (answer) => {
      const parts: Buffer[] = [];
      answer.on('data', (chunk: Buffer) => parts.push(chunk));
      answer.on('error', reject);
      answer.on('end', () => {
        res.writeHead(answer.statusCode ?? 500, answer.headers);
        res.end(Buffer.concat(parts));
        resolve();
      });
    });
    out.on('error', reject);
    out.end(body);
  });
}
