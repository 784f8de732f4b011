/**
 * AWS AppConfig: an application, an environment and a freeform JSON profile (per-partner delivery
 * overrides and feature flags, read by the functions through `WEBHOOKS_APPCONFIG_*`), deployed once
 * with an empty document so the functions always find a configuration to read. Later documents are
 * deployed by the operators (console or `aws appconfig`), with the strategy they choose.
 */
import { Aws, Duration, Fn } from 'aws-cdk-lib';
import * as appconfig from 'aws-cdk-lib/aws-appconfig';
import { Construct } from 'constructs';

export class WebhooksAppConfig extends Construct {
  readonly applicationId: string;
  readonly environmentId: string;
  readonly profileId: string;
  /** The profile's ARN, the resource of StartConfigurationSession and GetLatestConfiguration. */
  readonly profileArn: string;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    const application = new appconfig.Application(this, 'Application', {
      description: 'Webhooks platform runtime configuration',
    });
    const environment = new appconfig.Environment(this, 'Environment', {
      application,
      description: 'The stack’s functions',
    });
    const profile = new appconfig.HostedConfiguration(this, 'Profile', {
      application,
      description: 'Per-partner delivery overrides and feature flags (JSON)',
      type: appconfig.ConfigurationType.FREEFORM,
      content: appconfig.ConfigurationContent.fromInlineJson('{}'),
      deployTo: [environment],
      // The initial empty document at once: AWS's AllAtOnce bakes 10 minutes, holding the stack.
      deploymentStrategy: new appconfig.DeploymentStrategy(this, 'Immediate', {
        description: 'All at once, no bake time (the initial empty document)',
        rolloutStrategy: appconfig.RolloutStrategy.linear({
          growthFactor: 100,
          deploymentDuration: Duration.minutes(0),
          finalBakeTime: Duration.minutes(0),
        }),
      }),
    });
    this.applicationId = application.applicationId;
    this.environmentId = environment.environmentId;
    this.profileId = profile.configurationProfileId;
    this.profileArn = Fn.join('', [
      'arn:',
      Aws.PARTITION,
      ':appconfig:',
      Aws.REGION,
      ':',
      Aws.ACCOUNT_ID,
      ':application/',
      this.applicationId,
      '/environment/',
      this.environmentId,
      '/configuration/',
      this.profileId,
    ]);
  }
}
