import { runService } from '@ccm/runtime';
import { guestAgent } from './app.js';

await runService(guestAgent);
