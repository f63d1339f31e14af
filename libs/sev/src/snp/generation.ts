import { SnpUnknownGenerationError } from './errors.js';

/**
 * EPYC product lines that run SEV-SNP: the SNP subset of `SevGeneration`, one lowercase spelling for
 * SEV and SNP alike (CCM's contracts' `ProductLine` too). AMD's own spelling (`Milan`: KDS URLs,
 * certificate names) is {@link snpProductName}; {@link snpGenerationOf} accepts either.
 */
export type SnpGeneration = 'milan' | 'genoa' | 'turin';

/** Every SNP product line, oldest first. */
export const SNP_GENERATIONS: readonly SnpGeneration[] = ['milan', 'genoa', 'turin'];

const PRODUCT_NAMES: Readonly<Record<SnpGeneration, string>> = {
  milan: 'Milan',
  genoa: 'Genoa',
  turin: 'Turin',
};

/** AMD's spelling of a product line, as KDS URLs and certificate common names (`ARK-Milan`) carry it. */
export function snpProductName(generation: SnpGeneration): string {
  return PRODUCT_NAMES[generation];
}

/**
 * The product line a string names in either spelling (`milan` or AMD's `Milan`, as files written
 * before the spellings were unified hold it), or undefined.
 */
export function snpGenerationOf(name: string): SnpGeneration | undefined {
  const g = name.toLowerCase();
  return (SNP_GENERATIONS as readonly string[]).includes(g) ? (g as SnpGeneration) : undefined;
}

/**
 * Byte layout of an 8-byte TCB_VERSION: Milan and Genoa share one, Turin moved the fields to make room
 * for the FMC SPL (spec 9.2).
 */
export type TcbLayout = 'milan-genoa' | 'turin';

/** The TCB_VERSION layout a product line uses. */
export function tcbLayoutOf(generation: SnpGeneration): TcbLayout {
  return generation === 'turin' ? 'turin' : 'milan-genoa';
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
    if (model <= 0x0f) return 'milan';
    if ((model >= 0x10 && model <= 0x1f) || (model >= 0xa0 && model <= 0xaf)) return 'genoa';
    return undefined;
  }
  if (family === CPUID_FAMILY_ZEN5 && model <= 0x1f) return 'turin';
  return undefined;
}

/**
 * The product line named by a VCEK/VLEK productName extension (`Milan-B0`, `Genoa`, `Turin`, `Milan`):
 * the part before the first `-` (the stepping suffix).
 */
export function generationFromProductName(productName: string): SnpGeneration {
  const line = productName.split('-')[0];
  const found = SNP_GENERATIONS.find((g) => snpProductName(g) === line);
  if (!found) throw new SnpUnknownGenerationError(`productName "${productName}"`);
  return found;
}
