/**
 * What every AWS SDK client of the platform is given besides its own settings: the region, and an
 * endpoint of its own (an emulator: dynalite, moto, a test's fake) — with which, unless credentials
 * are given or the environment names some, the client signs with dummy credentials (an emulator
 * checks none, and the SDK's default chain would otherwise look for them, slowly, and fail).
 */

/** Environment variables through which the SDK's default chain may find credentials. */
const CREDENTIAL_VARIABLES = [
  'AWS_ACCESS_KEY_ID',
  'AWS_PROFILE',
  'AWS_WEB_IDENTITY_TOKEN_FILE',
  'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI',
  'AWS_CONTAINER_CREDENTIALS_FULL_URI',
];

export interface AwsClientOptions {
  region?: string | undefined;
  endpoint?: string | undefined;
  credentials?: { accessKeyId: string; secretAccessKey: string } | undefined;
}

/** The region, endpoint and credentials of a client (spread into its configuration). */
export function awsClientBase(
  options: AwsClientOptions,
  env: NodeJS.ProcessEnv = process.env,
): { region?: string; endpoint?: string; credentials?: { accessKeyId: string; secretAccessKey: string } } {
  const emulator = options.endpoint !== undefined;
  const region =
    options.region ?? (emulator && !env.AWS_REGION && !env.AWS_DEFAULT_REGION ? 'us-east-1' : undefined);
  const credentials =
    options.credentials ??
    (emulator && !CREDENTIAL_VARIABLES.some((name) => env[name])
      ? { accessKeyId: 'local', secretAccessKey: 'local' }
      : undefined);
  return {
    ...(region ? { region } : {}),
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    ...(credentials ? { credentials } : {}),
  };
}
