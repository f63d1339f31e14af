import { type SimSev } from './sim-sev.js';
import { type SimVmSpec } from './sim-vm.js';

/** The SEV side of a simulated VM, on the host's software secure processor in `stateDir`. */
export function openSimSev(_spec: SimVmSpec, stateDir: string | undefined): SimSev {
  throw new Error(
    `SEV guests need the software secure processor (state dir ${stateDir ?? 'not configured'})`,
  );
}
