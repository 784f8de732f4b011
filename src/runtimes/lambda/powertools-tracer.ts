/**
 * X-Ray tracing of the Lambda runtime with the Powertools `Tracer`: a `DeliveryClient` decorator
 * recording each partner request as a subsegment, and a helper opening a subsegment around a batch.
 * The components know nothing of it: the handler wraps the delivery client it gives the dispatcher.
 *
 * Each `send` becomes a remote subsegment named after the partner's host (X-Ray's convention for
 * HTTP calls: one node per host on the service map), with
 * - `http`: `{ request: { method: 'POST', url: <scheme://host> }, response: { status } }` — the
 *   origin only: a webhook URL's path or query may carry a credential;
 * - annotations (searchable): `host`, `http_status` or `error_kind`, `webhook_id`, `correlation_id`,
 *   and `partner` when `partnerOf` tells it;
 * - metadata (under the service name): `latency_ms`, and the error message of a failed request;
 * - flags: 4xx error (429 also throttle), 5xx fault; a request that got no response is a fault with
 *   the error recorded as a remote exception, an address the SSRF policy refused an error.
 * The request goes to the wrapped client as it came (the same object: `traceparent` and every other
 * header untouched). Tracing failures never fail a delivery.
 *
 * The tracer is created with `captureHTTPsRequests: false`: with it on, Powertools would trace every
 * undici request by itself and add an `X-Amzn-Trace-Id` header to the requests to partners.
 */
import { Tracer } from '@aws-lambda-powertools/tracer';
import { redact } from '../../common/log.ts';
import type { DeliveryClient, DeliveryRequest, DeliveryResult } from '../../common/ports/delivery-client.ts';
import { serviceNameFrom } from './powertools-env.ts';

/** The current X-Ray segment (Lambda's facade) or subsegment. */
type XraySegment = NonNullable<ReturnType<Tracer['getSegment']>>;
/** An X-Ray subsegment. */
export type XraySubsegment = ReturnType<XraySegment['addNewSubsegment']>;
/** An X-Ray annotation value. */
export type AnnotationValue = string | number | boolean;

export interface LambdaTracerOptions {
  /** Default: `POWERTOOLS_SERVICE_NAME`, else `webhooks`. */
  serviceName?: string;
}

/**
 * The function's Powertools tracer; create it once per container, at module scope. Tracing is on in
 * Lambda (`AWS_EXECUTION_ENV`) unless `POWERTOOLS_TRACE_ENABLED=false`; off, every helper here
 * passes straight through.
 */
export function createLambdaTracer(options: LambdaTracerOptions = {}): Tracer {
  return new Tracer({ serviceName: serviceNameFrom(options.serviceName), captureHTTPsRequests: false });
}

export interface TracedDeliveryClientOptions {
  /** The partner of a request, for the `partner` annotation (the request does not name it). */
  partnerOf?: (request: DeliveryRequest) => string | undefined;
  /** Namespace of the metadata (Powertools puts it under the service name). Default: as `createLambdaTracer`. */
  serviceName?: string;
}

/** A `DeliveryClient` recording each `send` as an X-Ray subsegment. */
export class TracedDeliveryClient implements DeliveryClient {
  readonly #inner: DeliveryClient;
  readonly #tracer: Tracer;
  readonly #partnerOf: ((request: DeliveryRequest) => string | undefined) | undefined;
  readonly #namespace: string;

  constructor(inner: DeliveryClient, tracer: Tracer, options: TracedDeliveryClientOptions = {}) {
    this.#inner = inner;
    this.#tracer = tracer;
    this.#partnerOf = options.partnerOf;
    this.#namespace = serviceNameFrom(options.serviceName);
  }

  async send(request: DeliveryRequest): Promise<DeliveryResult> {
    const subsegment = this.#open(request);
    let result: DeliveryResult;
    try {
      result = await this.#inner.send(request);
    } catch (err) {
      settle(() => subsegment?.close(errorOf(err), true));
      throw err;
    }
    if (subsegment) settle(() => this.#close(subsegment, result));
    return result;
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  #open(request: DeliveryRequest): XraySubsegment | undefined {
    if (!this.#tracer.isTracingEnabled()) return undefined;
    try {
      const parent = this.#tracer.getSegment();
      if (parent === undefined) return undefined;
      const url = new URL(request.url);
      const subsegment = parent.addNewSubsegment(url.host);
      subsegment.addAttribute('namespace', 'remote');
      subsegment.addAttribute('http', { request: { method: 'POST', url: url.origin } });
      subsegment.addAnnotation('host', url.host);
      annotate(subsegment, 'webhook_id', request.headers['webhook-id']);
      annotate(subsegment, 'correlation_id', request.headers['x-correlation-id']);
      annotate(subsegment, 'partner', this.#partnerOf?.(request));
      return subsegment;
    } catch {
      return undefined;
    }
  }

  #close(subsegment: XraySubsegment, result: DeliveryResult): void {
    const namespace = this.#namespace;
    subsegment.addMetadata('latency_ms', Math.round(result.latencyMs * 1000) / 1000, namespace);
    if (result.ok) {
      const http = (subsegment as unknown as { http?: Record<string, unknown> }).http ?? {};
      subsegment.addAttribute('http', { ...http, response: { status: result.status } });
      subsegment.addAnnotation('http_status', result.status);
      if (result.status === 429) subsegment.addThrottleFlag();
      if (result.status >= 400 && result.status < 500) subsegment.addErrorFlag();
      else if (result.status >= 500) subsegment.addFaultFlag();
      subsegment.close();
      return;
    }
    const message = String(redact(result.message));
    subsegment.addAnnotation('error_kind', result.kind);
    subsegment.addMetadata('error', `${result.kind}: ${message}`, namespace);
    if (result.kind === 'forbidden_address') {
      // Our own policy refused the address before any packet: a client-side error, not the partner's fault.
      subsegment.addErrorFlag();
      subsegment.close();
    } else {
      // No response: the remote end (or the way to it) failed.
      subsegment.close({ name: result.kind, message }, true);
    }
  }
}

/** Wraps `client` so each `send` is traced (a no-op wrapper when tracing is off). */
export function traceDeliveryClient(
  client: DeliveryClient,
  tracer: Tracer,
  options: TracedDeliveryClientOptions = {},
): DeliveryClient {
  return new TracedDeliveryClient(client, tracer, options);
}

/**
 * Runs `fn` inside a subsegment named `name` (e.g. `### dispatch batch`), with `annotations`; the
 * subsegments opened within it (the delivery client's) nest under it. An error `fn` throws is
 * recorded on the subsegment, then thrown on. With tracing off, just runs `fn`.
 */
export async function traceBatch<T>(
  tracer: Tracer,
  name: string,
  fn: () => Promise<T>,
  annotations: Record<string, AnnotationValue | undefined> = {},
): Promise<T> {
  if (!tracer.isTracingEnabled()) return fn();
  const run = async (subsegment?: XraySubsegment): Promise<T> => {
    if (subsegment) settle(() => annotateAll(subsegment, annotations));
    try {
      return await fn();
    } catch (err) {
      if (subsegment) settle(() => subsegment.addError(errorOf(err)));
      throw err;
    } finally {
      if (subsegment) settle(() => subsegment.close());
    }
  };
  return (await tracer.provider.captureAsyncFunc(name, run)) as T;
}

function annotateAll(
  subsegment: XraySubsegment,
  annotations: Record<string, AnnotationValue | undefined>,
): void {
  for (const [key, value] of Object.entries(annotations)) annotate(subsegment, key, value);
}

/** Adds an annotation when there is a value; strings are redacted and cut to X-Ray's 1,000 characters. */
function annotate(subsegment: XraySubsegment, key: string, value: AnnotationValue | undefined): void {
  if (value === undefined || value === '') return;
  subsegment.addAnnotation(key, typeof value === 'string' ? String(redact(value)).slice(0, 1000) : value);
}

/** What X-Ray records of a thrown value: its name and redacted message, no stack (as the project logger outside debug). */
function errorOf(err: unknown): Error {
  const { name, message } = err instanceof Error ? err : { name: 'Error', message: String(err) };
  return { name, message: String(redact(message)) };
}

/** Runs a tracing step; its failure is dropped (tracing must never break the work traced). */
function settle(step: () => void): void {
  try {
    step();
  } catch {
    // Deliberately ignored: see above.
  }
}
