/** The pipeline suite (`pipeline-suite.ts`) on the embedded engines: the embedded log and SQLite. */
import { runPipelineSuite } from './pipeline-suite.ts';

runPipelineSuite('embedded engine', async () => ({}));
