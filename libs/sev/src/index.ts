export * from './errors.js';
export * from './sev/index.js';
export * from './snp/index.js';
export * from './kds.js';
