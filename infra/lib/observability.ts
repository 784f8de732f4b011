/**
 * Alarms and the dashboard. The platform's metrics are CloudWatch EMF from Powertools Metrics in
 * namespace `Webhooks` with the `service` dimension (POWERTOOLS_SERVICE_NAME); the offset lag is
 * Lambda's own `OffsetLag` for Kafka event sources, per function (every mapping of it, static or
 * made at runtime). Every alarm notifies one SNS topic (emailed when AlarmEmail is set).
 *
 * The metric names are the Lambda runtime's EMF contract (`EMF_METRICS`). What goes to a DLQ topic:
 * the processor counts `events_to_dlq`; the dispatcher dead-letters every delivery it fails
 * (`deliveries_failed`) and counts no `events_to_dlq` today, so its DLQ alarm adds the two.
 */

import type { CfnCondition } from 'aws-cdk-lib';
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import type { FunctionKind } from '../../src/runtimes/lambda/container.ts';
import type { MappedStage } from '../../src/runtimes/lambda/mapping-settings.ts';
import { DEFAULT_METRICS_NAMESPACE } from '../../src/runtimes/lambda/powertools-env.ts';
import { EMF_METRICS } from '../../src/runtimes/lambda/powertools-metrics.ts';

/** The functions' POWERTOOLS_METRICS_NAMESPACE. */
export const METRICS_NAMESPACE = DEFAULT_METRICS_NAMESPACE;
/** Share of failed deliveries above which the failure-rate alarm fires (3 periods of 5 min). */
export const FAILURE_RATE_THRESHOLD = 0.2;
const PERIOD = Duration.minutes(5);

export interface ObservabilityProps {
  functions: Record<FunctionKind, lambda.Function>;
  tables: Record<string, dynamodb.Table>;
  alarmEmail: string;
  hasAlarmEmail: CfnCondition;
  offsetLagThreshold: number;
}

export class WebhooksObservability extends Construct {
  readonly topic: sns.Topic;
  readonly dlqAlarms: Record<MappedStage, cloudwatch.Alarm>;
  readonly failureRateAlarm: cloudwatch.Alarm;
  readonly offsetLagAlarms: Record<MappedStage, cloudwatch.Alarm>;
  /** The scheduler failing, or not running: due retries and held tasks would wait for ever, unseen. */
  readonly schedulerAlarms: { failing: cloudwatch.Alarm; notRunning: cloudwatch.Alarm };
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    this.topic = new sns.Topic(this, 'AlarmTopic', { displayName: 'Webhooks platform alarms' });
    const email = new sns.CfnSubscription(this, 'AlarmEmail', {
      topicArn: this.topic.topicArn,
      protocol: 'email',
      endpoint: props.alarmEmail,
    });
    email.cfnOptions.condition = props.hasAlarmEmail;
    const notify = new actions.SnsAction(this.topic);

    const toDlq = (stage: MappedStage) => dlqRecords(stage);
    const dlqAlarm = (stage: MappedStage) =>
      new cloudwatch.Alarm(this, `DlqGrowth${title(stage)}`, {
        alarmDescription: `Records sent to dlq.${stage} in the last 5 minutes: look at /admin/dlq and redrive`,
        metric: toDlq(stage),
        threshold: 0,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 1,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    this.dlqAlarms = { processor: dlqAlarm('processor'), dispatcher: dlqAlarm('dispatcher') };

    const failureRate = new cloudwatch.MathExpression({
      expression: 'failed / (succeeded + failed)',
      usingMetrics: {
        failed: platformMetric(EMF_METRICS.deliveriesFailed, 'dispatcher', 'Sum'),
        succeeded: platformMetric(EMF_METRICS.deliveriesSucceeded, 'dispatcher', 'Sum'),
      },
      label: 'Delivery failure rate',
      period: PERIOD,
    });
    this.failureRateAlarm = new cloudwatch.Alarm(this, 'DeliveryFailureRate', {
      alarmDescription: `More than ${FAILURE_RATE_THRESHOLD * 100}% of deliveries failed for 15 minutes`,
      metric: failureRate,
      threshold: FAILURE_RATE_THRESHOLD,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 3,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    const offsetLag = (stage: MappedStage) =>
      props.functions[stage].metric('OffsetLag', { statistic: 'Maximum', period: PERIOD });
    const lagAlarm = (stage: MappedStage) =>
      new cloudwatch.Alarm(this, `OffsetLag${title(stage)}`, {
        alarmDescription: `The ${stage}'s event source mappings are falling behind their topics`,
        metric: offsetLag(stage),
        threshold: props.offsetLagThreshold,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 3,
        datapointsToAlarm: 3,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    this.offsetLagAlarms = { processor: lagAlarm('processor'), dispatcher: lagAlarm('dispatcher') };

    // The scheduler runs every minute: retries due later than a batch can wait, held tasks released.
    // When it fails, nothing else notices — deliveries stay PENDING (no failure rate, no DLQ) and no
    // offset lag grows.
    const scheduler = props.functions.scheduler;
    this.schedulerAlarms = {
      failing: new cloudwatch.Alarm(this, 'SchedulerFailing', {
        alarmDescription:
          'The scheduler failed in two 5-minute periods in a row: due retries and held tasks are not being published',
        metric: scheduler.metricErrors({ period: PERIOD, statistic: 'Sum' }),
        threshold: 0,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: 2,
        datapointsToAlarm: 2,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      }),
      notRunning: new cloudwatch.Alarm(this, 'SchedulerNotRunning', {
        alarmDescription:
          'The scheduler was not invoked for 10 minutes (it runs every minute): check its schedule rule and throttles',
        metric: scheduler.metricInvocations({ period: PERIOD, statistic: 'Sum' }),
        threshold: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: 2,
        datapointsToAlarm: 2,
        // No invocations at all is no data: that is exactly what this alarm is for.
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      }),
    };

    const alarms = [
      ...Object.values(this.dlqAlarms),
      this.failureRateAlarm,
      ...Object.values(this.offsetLagAlarms),
      this.schedulerAlarms.failing,
      this.schedulerAlarms.notRunning,
    ];
    for (const alarm of alarms) {
      alarm.addAlarmAction(notify);
      alarm.addOkAction(notify);
    }

    const fns = Object.entries(props.functions);
    const tables = Object.entries(props.tables);
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.hours(3),
      widgets: [
        [new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms, width: 24, height: 3 })],
        [
          graph('Records to the DLQ topics', [toDlq('processor'), toDlq('dispatcher')]),
          graph('Delivery failure rate', [failureRate]),
          graph('Offset lag (max)', [offsetLag('processor'), offsetLag('dispatcher')]),
        ],
        [
          graph(
            'Lambda errors',
            fns.map(([kind, fn]) => fn.metricErrors({ period: PERIOD, label: kind })),
          ),
          graph(
            'Lambda duration (p99)',
            fns.map(([kind, fn]) => fn.metricDuration({ period: PERIOD, statistic: 'p99', label: kind })),
          ),
          graph(
            'Lambda throttles',
            fns.map(([kind, fn]) => fn.metricThrottles({ period: PERIOD, label: kind })),
          ),
        ],
        [
          graph(
            'DynamoDB consumed read capacity',
            tables.map(([name, t]) => t.metricConsumedReadCapacityUnits({ period: PERIOD, label: name })),
            12,
          ),
          graph(
            'DynamoDB consumed write capacity',
            tables.map(([name, t]) => t.metricConsumedWriteCapacityUnits({ period: PERIOD, label: name })),
            12,
          ),
        ],
      ],
    });
  }
}

/** Records a stage sent to its DLQ topic per 5 minutes (see the top). */
function dlqRecords(stage: MappedStage): cloudwatch.IMetric {
  const toDlq = platformMetric(EMF_METRICS.eventsToDlq, stage, 'Sum');
  if (stage === 'processor') return toDlq;
  return new cloudwatch.MathExpression({
    expression: 'FILL(dlq, 0) + FILL(failed, 0)',
    usingMetrics: { dlq: toDlq, failed: platformMetric(EMF_METRICS.deliveriesFailed, stage, 'Sum') },
    label: `Records to dlq.${stage}`,
    period: PERIOD,
  });
}

function platformMetric(name: string, service: string, statistic: string): cloudwatch.Metric {
  return new cloudwatch.Metric({
    namespace: METRICS_NAMESPACE,
    metricName: name,
    dimensionsMap: { service },
    statistic,
    period: PERIOD,
  });
}

function graph(title: string, metrics: cloudwatch.IMetric[], width = 8): cloudwatch.GraphWidget {
  return new cloudwatch.GraphWidget({ title, left: metrics, width, height: 6 });
}

function title(stage: string): string {
  return stage.charAt(0).toUpperCase() + stage.slice(1);
}
