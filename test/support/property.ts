/**
 * fast-check for the property tests, seeded so that every run (CI included) tries the same cases:
 * `FC_SEED=<n>` replays another seed, `FC_SEED=random` explores (a failure prints its seed).
 */
import fc from 'fast-check';

const seed = process.env.FC_SEED;
if (seed !== 'random') fc.configureGlobal({ seed: seed === undefined ? 20261206 : Number(seed) });

export default fc;
