/** The crash loop (`crash-loop-suite.ts`) on the embedded engines: the embedded log and SQLite. */
import { consumerLag } from '../support/crash-loop.ts';
import { runCrashLoop } from './crash-loop-suite.ts';

runCrashLoop('embedded engines', { env: async () => ({}), lag: async (dataDir) => consumerLag(dataDir) });
