/**
 * The HTTP API (API Gateway v2) in front of the admin and ingest functions. The routes are the
 * platform's own HTTP contract (`src/*\/routes.ts`): `POST /events` goes to the ingest function,
 * whose producers authenticate with the platform's publisher API keys (`Authorization: Bearer
 * whk_…`, checked in the function); the admin API (`/admin/…`) and the system routes go to the
 * admin function behind IAM authorization (SigV4: who may call which route is an IAM policy on
 * `execute-api:Invoke`). Unknown routes are answered 404 by the gateway without invoking anything.
 * One `$default` stage, throttled, with JSON access logs. Why an HTTP API: `docs/aws.md`.
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpIamAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';

/** The routes to the admin function: the admin API and the system routes (`src/runtimes/system-routes.ts`). */
export const ADMIN_ROUTES: ReadonlyArray<{ path: string; methods: apigwv2.HttpMethod[] }> = [
  { path: '/admin/{proxy+}', methods: [apigwv2.HttpMethod.ANY] },
  { path: '/healthz', methods: [apigwv2.HttpMethod.GET] },
  { path: '/readyz', methods: [apigwv2.HttpMethod.GET] },
  { path: '/metrics', methods: [apigwv2.HttpMethod.GET] },
  { path: '/openapi.json', methods: [apigwv2.HttpMethod.GET] },
];

/** The routes to the ingest function (`src/ingest/routes.ts`). */
export const INGEST_ROUTES: ReadonlyArray<{ path: string; methods: apigwv2.HttpMethod[] }> = [
  { path: '/events', methods: [apigwv2.HttpMethod.POST] },
];

const ACCESS_LOG = {
  requestId: '$context.requestId',
  ip: '$context.identity.sourceIp',
  caller: '$context.identity.userArn',
  requestTime: '$context.requestTime',
  routeKey: '$context.routeKey',
  status: '$context.status',
  protocol: '$context.protocol',
  responseLength: '$context.responseLength',
  latency: '$context.responseLatency',
  integrationLatency: '$context.integrationLatency',
  integrationError: '$context.integrationErrorMessage',
  authorizerError: '$context.authorizer.error',
};

export interface WebhooksApiProps {
  admin: lambda.IFunction;
  ingest: lambda.IFunction;
  rateLimit: number;
  burstLimit: number;
}

export class WebhooksApi extends Construct {
  readonly api: apigwv2.HttpApi;
  readonly stage: apigwv2.HttpStage;
  readonly accessLogs: logs.LogGroup;

  constructor(scope: Construct, id: string, props: WebhooksApiProps) {
    super(scope, id);
    this.api = new apigwv2.HttpApi(this, 'HttpApi', {
      description: 'Webhooks platform: admin API (IAM) and event ingest (API keys)',
      createDefaultStage: false,
    });
    const iam = new HttpIamAuthorizer();
    const admin = new HttpLambdaIntegration('Admin', props.admin);
    for (const route of ADMIN_ROUTES) {
      this.api.addRoutes({ path: route.path, methods: route.methods, integration: admin, authorizer: iam });
    }
    const ingest = new HttpLambdaIntegration('Ingest', props.ingest);
    for (const route of INGEST_ROUTES) {
      this.api.addRoutes({ path: route.path, methods: route.methods, integration: ingest });
    }
    this.accessLogs = new logs.LogGroup(this, 'AccessLogs', {
      retention: logs.RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.stage = new apigwv2.HttpStage(this, 'DefaultStage', {
      httpApi: this.api,
      stageName: '$default',
      autoDeploy: true,
      throttle: { rateLimit: props.rateLimit, burstLimit: props.burstLimit },
      accessLogSettings: {
        destination: new apigwv2.LogGroupLogDestination(this.accessLogs),
        format: apigateway.AccessLogFormat.custom(JSON.stringify(ACCESS_LOG)),
      },
    });
  }
}
