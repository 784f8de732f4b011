/** The CLI's calls to a running platform's HTTP API, with a bearer token. */

const TIMEOUT_MS = 30_000;

/**
 * One call; resolves with the status and the body parsed as JSON (or as it came, when it is not:
 * a proxy's error page, say). Rejects when the platform cannot be reached.
 */
export async function callApi(
  url: string,
  token: string,
  method: string,
  path: string,
  body?: { text: string; contentType: string },
): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${url.replace(/\/+$/, '')}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': body.contentType } : {}) },
    ...(body ? { body: body.text } : {}),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const text = await res.text();
  try {
    return { status: res.status, body: text === '' ? null : JSON.parse(text) };
  } catch {
    return { status: res.status, body: text };
  }
}
