import { SnpUnknownGenerationError } from './errors.js';

/** EPYC product lines that run SEV-SNP, spelled as AMD's KDS and certificate names spell them. */
export type SnpGeneration = 'Milan' | 'Genoa' | 'Turin';

/** Every SNP product line, oldest first. */
export const SNP_GENERATIONS: readonly SnpGeneration[] = ['Milan', 'Genoa', 'Turin'];

/**
 * Byte layout of an 8-byte TCB_VERSION: Milan and Genoa share one, Turin moved the fields to make room
 * for the FMC SPL (spec 9.2).
 */
export type TcbLayout = 'milan-genoa' | 'turin';

/** The TCB_VERSION layout a product line uses. */
export function tcbLayoutOf(generation: SnpGeneration): TcbLayout {
  return generation === 'Turin' ? 'turin' : 'milan-genoa';
}

/** CPUID combined family of Zen 3 / Zen 4 parts (Milan, Genoa, Bergamo, Siena). */
export const CPUID_FAMILY_ZEN3_ZEN4 = 0x19;
/** CPUID combined family of Zen 5 parts (Turin). */
export const CPUID_FAMILY_ZEN5 = 0x1a;

/**
 * The product line of a CPU from the CPUID_FAM_ID / CPUID_MOD_ID bytes of a v3+ report, or undefined
 * for parts that do not run SNP. Model ranges: Milan 19h/00–0Fh; Genoa 19h/10–1Fh and Bergamo/Siena
 * 19h/A0–AFh (both certified under the Genoa ARK); Turin 1Ah/00–1Fh.
 */
export function generationFromCpuid(family: number, model: number): SnpGeneration | undefined {
  if (family === CPUID_FAMILY_ZEN3_ZEN4) {
    if (model <= 0x0f) return 'Milan';
    if ((model >= 0x10 && model <= 0x1f) || (model >= 0xa0 && model <= 0xaf)) return 'Genoa';
    return undefined;
  }
  if (family === CPUID_FAMILY_ZEN5 && model <= 0x1f) return 'Turin';
  return undefined;
}

/**
 * The product line named by a VCEK/VLEK productName extension (`Milan-B0`, `Genoa`, `Turin`, `Milan`):
 * the part before the first `-` (the stepping suffix).
 */
export function generationFromProductName(productName: string): SnpGeneration {
  const line = productName.split('-')[0];
  const found = SNP_GENERATIONS.find((g) => g === line);
  if (!found) throw new SnpUnknownGenerationError(`productName "${productName}"`);
  return found;
}
