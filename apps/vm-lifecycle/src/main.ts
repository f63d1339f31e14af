import { runService } from '@ccm/runtime';
import { vmLifecycle } from './app.js';

await runService(vmLifecycle);
