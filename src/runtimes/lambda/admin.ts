/** The admin function (API Gateway): schemas, partners, subscriptions, API keys, operations. */
import { httpHandler } from './http-handler.ts';

export const handler = httpHandler('admin');
