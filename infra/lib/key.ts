/**
 * The customer-managed KMS key: it encrypts the DynamoDB tables and seals the platform's secrets
 * (signing secrets, partner credentials: `src/engines/aws/kms-sealer.ts`). Its policy names every
 * action instead of CDK's default `kms:*`: the account may administer the key and may let IAM
 * policies use it; the functions' own policies then grant each one what it uses.
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import type { Construct } from 'constructs';

/** Key administration, for the account (its administrators' IAM policies decide who). */
export const KEY_ADMIN_ACTIONS = [
  'kms:DescribeKey',
  'kms:GetKeyPolicy',
  'kms:PutKeyPolicy',
  'kms:GetKeyRotationStatus',
  'kms:EnableKeyRotation',
  'kms:DisableKeyRotation',
  'kms:EnableKey',
  'kms:DisableKey',
  'kms:UpdateKeyDescription',
  'kms:ListResourceTags',
  'kms:TagResource',
  'kms:UntagResource',
  'kms:ListGrants',
  'kms:RevokeGrant',
  'kms:ScheduleKeyDeletion',
  'kms:CancelKeyDeletion',
];

/**
 * Use of the key, which IAM policies in the account may grant: the functions (GenerateDataKey,
 * Decrypt, Encrypt), and CloudFormation creating the tables (DynamoDB needs CreateGrant).
 */
export const KEY_USE_ACTIONS = [
  'kms:Encrypt',
  'kms:Decrypt',
  'kms:ReEncryptFrom',
  'kms:ReEncryptTo',
  'kms:GenerateDataKey',
  'kms:GenerateDataKeyWithoutPlaintext',
  'kms:CreateGrant',
];

export function webhooksKey(scope: Construct): kms.Key {
  const account = new iam.AccountRootPrincipal();
  // In a key policy `Resource: "*"` means this key (a key policy can name nothing else).
  const policy = new iam.PolicyDocument({
    statements: [
      new iam.PolicyStatement({
        sid: 'KeyAdministration',
        principals: [account],
        actions: KEY_ADMIN_ACTIONS,
        resources: ['*'],
      }),
      new iam.PolicyStatement({
        sid: 'KeyUseThroughIam',
        principals: [account],
        actions: KEY_USE_ACTIONS,
        resources: ['*'],
      }),
    ],
  });
  return new kms.Key(scope, 'Key', {
    description: 'Webhooks platform: DynamoDB tables and sealed secrets',
    enableKeyRotation: true,
    policy,
    removalPolicy: RemovalPolicy.RETAIN,
  });
}
