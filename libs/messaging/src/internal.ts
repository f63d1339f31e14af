/**
 * The second door of libs/messaging, for specs and benchmarks only: signing identities made in memory
 * and a scripted, correctly chained migration record, to feed the audit without running services.
 * Not part of the public contract.
 */
export { memoryIdentity, trustOf, ScriptedRecord } from './audit/testing.js';
