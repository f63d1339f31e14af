export { auditEvents, mayPublish } from './verify.js';
export {
  buildTimeline,
  type Timeline,
  type TimelineStep,
  type TimelinePhase,
  type ParticipantEvent,
} from './timeline.js';
export {
  exportTranscript,
  verifyTranscript,
  TranscriptSchema,
  TRANSCRIPT_FORMAT,
  type Transcript,
  type TranscriptCheck,
} from './transcript.js';
export type {
  StoredEvent,
  Finding,
  FindingKind,
  AuditedEvent,
  ChainSummary,
  MigrationRecord,
  Verdict,
  AuditOptions,
} from './types.js';
