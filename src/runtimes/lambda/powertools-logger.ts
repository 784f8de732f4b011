/**
 * The project's logger writing through a Powertools `Logger`, for the Lambda handlers: the
 * components keep logging with `src/common/log.ts` (they import nothing of Powertools), and each of
 * their lines goes out as a Powertools JSON line (`level`, `message`, `timestamp`, `service`, the
 * Lambda context once `addContext` ran, `xray_trace_id`), with the line's own fields.
 *
 * How a project line becomes a Powertools one:
 * - The project logger has already redacted the line (registered secrets, secret-looking keys,
 *   `whsec_`/bearer credentials) before the sink sees it: the sink only re-emits redacted JSON.
 *   (What a handler adds on the Powertools logger itself — `appendKeys`, `addContext` — is not
 *   redacted by the project.)
 * - `level` picks the Powertools method (debug/info/warn/error; warn and error go to stderr, as
 *   Powertools writes them); `msg` becomes `message`; the project's `time` is dropped (Powertools
 *   stamps `timestamp`).
 * - The ambient correlation id (`withCorrelationId`, written by the project logger as
 *   `correlationId`) stays as `correlationId` and is also set as Powertools' `correlation_id` of that
 *   line alone — passed with the line rather than through `setCorrelationId`, which would leave it
 *   on the logger for lines of other, concurrent work.
 * - Fields named like a key Powertools reserves (`level`, `message`, `timestamp`, `service`,
 *   `sampling_rate`) would be dropped by Powertools with a warning line each; they go out as
 *   `app_<name>` instead, except a `service` binding equal to the Powertools service (dropped).
 */
import { Logger as PowertoolsLogger } from '@aws-lambda-powertools/logger';
import type { Context } from 'aws-lambda';
import { Logger, type LogLevel, type LogSink } from '../../common/log.ts';
import { serviceNameFrom } from './powertools-env.ts';

type PowertoolsMethod = 'debug' | 'info' | 'warn' | 'error';

const METHODS: Readonly<Record<string, PowertoolsMethod>> = {
  debug: 'debug',
  info: 'info',
  warn: 'warn',
  error: 'error',
};
/** Keys the Powertools formatter reserves (its `ReservedKeys`). */
const POWERTOOLS_RESERVED = new Set(['level', 'message', 'timestamp', 'service', 'sampling_rate']);
/** Prefix of a project field whose name Powertools reserves. */
export const RENAMED_FIELD_PREFIX = 'app_';

/** A `LogSink` that writes each project log line through a Powertools logger. Never throws. */
export class PowertoolsLogSink implements LogSink {
  readonly #logger: PowertoolsLogger;
  readonly #serviceName: string | undefined;

  /** `serviceName`: the Powertools logger's service, so a `service` binding repeating it is dropped. */
  constructor(logger: PowertoolsLogger, options: { serviceName?: string } = {}) {
    this.#logger = logger;
    this.#serviceName = options.serviceName;
  }

  write(line: string): void {
    try {
      let entry: unknown;
      try {
        entry = JSON.parse(line);
      } catch {
        entry = undefined;
      }
      if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
        // Not a project line (nothing writes one today): kept whole as the message.
        this.#logger.info({ message: line });
        return;
      }
      const { level, msg, time: _time, ...fields } = entry as Record<string, unknown>;
      const method = (typeof level === 'string' ? METHODS[level] : undefined) ?? 'info';
      const attributes: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(fields)) {
        if (!POWERTOOLS_RESERVED.has(key)) attributes[key] = value;
        else if (!(key === 'service' && value === this.#serviceName))
          attributes[`${RENAMED_FIELD_PREFIX}${key}`] = value;
      }
      if (typeof fields.correlationId === 'string') attributes.correlation_id = fields.correlationId;
      this.#logger[method]({ ...attributes, message: typeof msg === 'string' ? msg : String(msg ?? '') });
    } catch {
      // A logging failure must not become a failure of the work being logged.
    }
  }
}

export interface LambdaLoggerOptions {
  /** Default: `POWERTOOLS_SERVICE_NAME`, else `webhooks`. */
  serviceName?: string;
  /**
   * The lowest level written. Default: the Powertools logger's level (`POWERTOOLS_LOG_LEVEL`, or
   * Lambda's advanced logging controls `AWS_LAMBDA_LOG_LEVEL`, which win over everything; INFO by
   * default). When given, the Powertools logger created here gets it too, and the project logger
   * never writes below what Powertools would print.
   */
  level?: LogLevel;
  /** Bindings of the project logger (every line carries them). */
  bindings?: Record<string, unknown>;
  /** A Powertools logger to write through instead of a new one (the handler's own, a test's). */
  powertools?: PowertoolsLogger;
}

/** The project logger of a Lambda function, and the Powertools logger under it. */
export interface LambdaLogger {
  /** For the components (`deps.logger`). */
  readonly logger: Logger;
  readonly powertools: PowertoolsLogger;
  /** Adds the invocation's Lambda context (request id, function name, cold start) to every line; call first in the handler. */
  addContext(context: Context): void;
}

/** The project `Logger` writing through Powertools; create it once, at module scope. */
export function createLambdaLogger(options: LambdaLoggerOptions = {}): LambdaLogger {
  const serviceName = serviceNameFrom(options.serviceName);
  const powertools =
    options.powertools ??
    new PowertoolsLogger({ serviceName, ...(options.level ? { logLevel: options.level } : {}) });
  const level = stricter(options.level ?? 'debug', fromPowertoolsLevel(powertools.getLevelName()));
  const logger = new Logger({
    level,
    sink: new PowertoolsLogSink(powertools, { serviceName }),
    ...(options.bindings ? { bindings: options.bindings } : {}),
  });
  return { logger, powertools, addContext: (context) => powertools.addContext(context) };
}

const ORDER: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

function stricter(a: LogLevel, b: LogLevel): LogLevel {
  return ORDER.indexOf(a) >= ORDER.indexOf(b) ? a : b;
}

/** A Powertools level as the project's: TRACE and DEBUG are debug; CRITICAL and SILENT print at most errors. */
export function fromPowertoolsLevel(name: string): LogLevel {
  switch (name.toUpperCase()) {
    case 'TRACE':
    case 'DEBUG':
      return 'debug';
    case 'INFO':
      return 'info';
    case 'WARN':
      return 'warn';
    default:
      return 'error';
  }
}
