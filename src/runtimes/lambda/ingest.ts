/** The ingest function (API Gateway): producers publish events with their API key. */
import { httpHandler } from './http-handler.ts';

export const handler = httpHandler('ingest');
