/**
 * The second door of libs/saga, for sibling specs only (e.g. the saga-coordinator's unit tests): a
 * driver that plays the participants around a machine. Not part of the public contract.
 */
export { SagaDriver, type Awaited, deepFreeze } from './test-driver.js';
export { SPEC_SAGA } from './test-saga.js';
