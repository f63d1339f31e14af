import { runService } from '@ccm/runtime';
import { hostAgent } from './app.js';

await runService(hostAgent);
