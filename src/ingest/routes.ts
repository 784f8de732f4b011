/** HTTP route of event ingest: `POST /events` (CloudEvents structured, binary or batch mode). */
import { json, type Route } from '../common/http.ts';
import type { EventIngest } from './service.ts';

export function ingestRoutes(ingest: EventIngest): Route[] {
  return [
    {
      method: 'POST',
      path: '/events',
      access: 'publish',
      tag: 'events',
      rawBody: true,
      summary:
        'Publish CloudEvents: structured (application/cloudevents+json or application/json), binary (ce-* headers) or batch (application/cloudevents-batch+json); 202 without waiting for delivery',
      responses: {
        '202': 'accepted',
        '400': 'not a valid CloudEvent',
        '403': 'a publisher key publishing a source (or type) it does not have',
        '413':
          'the body is over the size limit, or an event is larger than the log takes once in its record (`record_too_large`, Kafka)',
        '422': 'no ACTIVE schema for the event type',
        '503':
          'the event log did not take it (`bus_unavailable`, or a topic made with a smaller record limit: `record_too_large`); send it again',
      },
      handler: async (req) => {
        const accepted = await ingest.ingest(
          req.headers['content-type'],
          req.headers,
          req.rawBody,
          req.principal,
        );
        return json(202, { accepted });
      },
    },
  ];
}
