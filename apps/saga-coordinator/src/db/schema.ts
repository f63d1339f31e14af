import { schemaFor } from '@ccm/contracts';

/** The coordinator's own Postgres schema, quoted for SQL. */
export const SCHEMA = `"${schemaFor('saga-coordinator')}"`;
/** One row per migration (request, saga state, admission, lease). */
export const MIGRATION = `${SCHEMA}.migration`;
/** One row per attempt of a step's action or compensation (a projection of the saga state). */
export const STEP_ATTEMPT = `${SCHEMA}.step_attempt`;
/** Logical clock: intake order, admission and release ticks share it so they can be compared. */
export const CLOCK = `${SCHEMA}.clock`;
