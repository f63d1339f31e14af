import { runService } from '@ccm/runtime';
import { containerCheckpoint } from './app.js';

await runService(containerCheckpoint);
