export * from './services.js';
export * from './subjects.js';
export * from './errors.js';
export * from './canonical.js';
export * from './envelope.js';
export * from './ping.js';
export * from './permissions.js';
