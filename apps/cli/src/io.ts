/** Where `ccm` writes: standard output and standard error (tests capture both). */
export interface CliIo {
  out: (s: string) => void;
  err: (s: string) => void;
}
