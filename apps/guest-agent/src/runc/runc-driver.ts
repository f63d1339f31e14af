import {
  type FileHandle,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import {
  CcmError,
  type ContainerInfo,
  type ContainerState,
  type ContainerNetwork,
  ContainerNetworkSchema,
  ErrorCodes,
  GuestErrorCodes,
} from '@ccm/contracts';
import { CriuFailedError, CriuTimeoutError, execRunner, isCriuError, Runc } from '@ccm/criu';
import { Phases } from '@ccm/runtime';
import { z } from 'zod';
import { type GuestAgentConfig } from '../config.js';
import {
  type ContainerDriver,
  type ContainerSpec,
  type RoundImage,
  type RoundStager,
} from '../driver/driver.js';
import {
  type ArchivePiece,
  ArchiveUnpacker,
  archiveStream,
  listImageDir,
  unpackArchive,
  writeImageDir,
} from './archive.js';
import { COUNTER_PATH, makeBundle } from './bundle.js';
import { ContainerNetns } from './netns.js';
import { containerDirtyPages, softDirtyWorks } from './soft-dirty.js';

const PAGE_BYTES = 4096;

/** What each round's archive says besides its files (checked on the target before anything is written). */
export const RoundMetaSchema = z.object({
  containerId: z.string().min(1),
  round: z.number().int().min(1),
  final: z.boolean(),
  /** The round whose images this one's pagemap refers to (CRIU's `parent` link), if any. */
  parentRound: z.number().int().min(1).optional(),
  spec: z.object({
    pages: z.number().int().min(1).max(262_144),
    dirtyPagesPerSec: z.number().int().min(0).max(1_000_000),
    /** The container's network: the target makes the same namespace before the restore. */
    network: ContainerNetworkSchema.optional(),
  }),
});
export type RoundMeta = z.infer<typeof RoundMetaSchema>;

/**
 * Checks round `round` of container `id`'s images by its meta: the meta itself, that it is this
 * container's round, and its parent link (only the round before). `last` (known to the restore, which
 * has every round) checks that the final dump, and only it, comes last. Returns the meta, or what is wrong.
 */
export function roundMetaProblem(
  meta: unknown,
  id: string,
  round: number,
  last?: boolean,
): { meta: RoundMeta; problem?: undefined } | { problem: string } {
  const m = RoundMetaSchema.safeParse(meta);
  if (!m.success) return { problem: `carries no valid round meta: ${m.error.issues[0]?.message ?? ''}` };
  if (m.data.containerId !== id || m.data.round !== round)
    return { problem: 'holds another container or round' };
  if (last !== undefined && m.data.final !== last)
    return { problem: m.data.final ? 'is a final dump before the last round' : 'is not a final dump' };
  if (m.data.parentRound !== undefined && m.data.parentRound !== round - 1)
    return { problem: 'names a parent round it cannot have' };
  return { meta: m.data };
}

interface Held {
  readonly spec: ContainerSpec;
  state: ContainerState;
  migrationId?: string;
  counter: number;
  /** How long `runc restore` took, on a container restored here. */
  restoreMs?: number;
  /** The parts of the restore or resume that last changed it (answered once, by that command). */
  phasesMs?: Record<string, number>;
}

/** A runc/CRIU failure as the typed reply error, with CRIU's own reason. */
export function runtimeError(e: unknown): unknown {
  if (!isCriuError(e)) return e;
  const details: Record<string, unknown> = { criuCode: e.code };
  if (e instanceof CriuFailedError || e instanceof CriuTimeoutError) {
    details['action'] = e.action;
    if (e.diagnosis) {
      details['reason'] = e.diagnosis.reason;
      if (e.diagnosis.record) details['log'] = e.diagnosis.record.message;
    }
  }
  return new CcmError(GuestErrorCodes.ContainerRuntimeFailed, e.message, {
    retryable: e.retryable,
    effect: 'maybe',
    details,
    cause: e,
  });
}

const rethrow = (e: unknown): never => {
  throw runtimeError(e);
};

/**
 * The runc driver: containers are runc bundles ({@link makeBundle}); pre-dump rounds are `runc
 * checkpoint --pre-dump` with the previous round as parent (CRIU's memory tracking), the final dump
 * freezes the container (`runc pause`: the cgroup freezer) and dumps it with `--leave-running
 * --tcp-established`, so the source stays frozen — `thaw` is `runc resume`, instant and with nothing
 * to restore — until `kill` removes it. Each round's image directory travels as an archive
 * ({@link archiveStream}, read as it is sent); the target unpacks each round into its own directory, links `parent` as the source had
 * it, `runc restore`s from the last with CRIU's `leave-stopped` (through the bundle's CRIU
 * configuration file: runc has no flag for it), and `resume` sends the stopped tasks SIGCONT. A
 * container with a network lives in a namespace the driver makes ({@link ContainerNetns}): the
 * target makes the same one before the restore, and the driver's lock keeps the frozen source and the
 * not yet resumed target silent, so the established connections CRIU carries stay whole.
 */
export class RuncDriver implements ContainerDriver {
  readonly kind = 'runc';
  private readonly runc: Runc;
  private readonly netns: ContainerNetns;
  private readonly held = new Map<string, Held>();
  /**
   * Target: pre-dump rounds written to their image directories as they arrived (`stage`), by
   * `<migration>:<container>` and round; `written` is false when the round could not be staged (the
   * restore then writes it).
   */
  private readonly staged = new Map<string, Map<number, { image: Buffer; written: Promise<boolean> }>>();
  /**
   * Target: the container's network namespace made (locked) when its first pre-dump round was staged,
   * by `<migration>:<container>`, with the network it was made for: the restore, inside the frozen
   * time, then has nothing to make.
   */
  private readonly netPrepared = new Map<string, { net: ContainerNetwork; made: Promise<boolean> }>();
  /**
   * Target: a container of the id runc still knew (left from an earlier run) removed when the
   * migration's first round was staged, by `<migration>:<container>`: the restore then has no `runc
   * state` to ask inside the frozen time, unless this agent has held a container of that id since.
   */
  private readonly cleared = new Map<string, Promise<boolean>>();
  private readonly dir: string;
  /** Staging directories made so far (each reception's own name). */
  private stagings = 0;
  private kernelReady: Promise<void> | undefined;
  /** Whether the kernel keeps soft-dirty bits (checked once, on the first pre-dump's count). */
  private softDirty: Promise<boolean> | undefined;

  constructor(private readonly config: GuestAgentConfig) {
    this.dir = config.CCM_GUEST_RUNC_DIR;
    this.runc = new Runc({
      runner: execRunner(),
      root: join(this.dir, 'runc'),
      log: join(this.dir, 'runc.log'),
      timeoutMs: config.CCM_GUEST_RUNC_TIMEOUT_MS,
    });
    this.netns = new ContainerNetns(execRunner(), config.CCM_GUEST_RUNC_TIMEOUT_MS, join(this.dir, 'net'));
  }

  private bundle(id: string): string {
    return join(this.dir, 'bundles', id);
  }

  /**
   * The CRIU configuration file of a container's bundle. It exists only while the agent restores the
   * container and then says `leave-stopped` (runc restore has no such flag): the restored tasks wait
   * stopped until `resume` sends SIGCONT. At any other time it is absent, and a later checkpoint of the
   * same container runs with CRIU's defaults.
   */
  private criuConfig(id: string): string {
    return join(this.dir, 'criu', `${id}.conf`);
  }

  private images(migrationId: string, id: string): string {
    return join(this.dir, 'images', migrationId, id);
  }

  /** Once, before the first container runs here: transparent huge pages off (CCM_GUEST_RUNC_THP). */
  private prepareKernel(): Promise<void> {
    this.kernelReady ??= (async () => {
      if (this.config.CCM_GUEST_RUNC_THP !== 'madvise') return;
      const thp = '/sys/kernel/mm/transparent_hugepage/enabled';
      if ((await readFile(thp, 'utf8').catch(() => '')).includes('[always]'))
        await writeFile(thp, 'madvise').catch(() => undefined);
    })();
    return this.kernelReady;
  }

  async run(id: string, spec: ContainerSpec): Promise<ContainerInfo> {
    await this.prepareKernel();
    // A leftover being removed for a migration's restore (`cleared`) is gone before the id is made anew.
    for (const [key, c] of this.cleared) if (key.endsWith(`:${id}`)) await c;
    await this.clear(id);
    if (spec.network) await this.netns.create(id, spec.network, false);
    await makeBundle(this.bundle(id), id, spec, this.criuConfig(id));
    await this.runc.run(id, this.bundle(id)).catch(async (e: unknown) => {
      await this.netns.remove(id);
      rethrow(e);
    });
    this.held.set(id, { spec, state: 'running', counter: 0 });
    return this.info(id);
  }

  /**
   * Removes a container of this id that runc still knows (killed, or left from an earlier run). Its
   * network namespace went with `kill`; one made for the restore stays.
   */
  private async clear(id: string): Promise<void> {
    if ((await this.runc.initPid(id)) !== undefined)
      await this.runc.lifecycle('delete-force', id).catch(rethrow);
    await rm(this.bundle(id), { recursive: true, force: true });
  }

  spec(id: string): ContainerSpec | undefined {
    return this.held.get(id)?.spec;
  }

  async list(): Promise<ContainerInfo[]> {
    return Promise.all([...this.held.keys()].map((id) => this.info(id)));
  }

  async describe(id: string): Promise<ContainerInfo | undefined> {
    return this.held.has(id) ? this.info(id) : undefined;
  }

  private get(id: string): Held {
    const h = this.held.get(id);
    if (!h) throw new CcmError(ErrorCodes.NotFound, `no container ${id}`, { retryable: false });
    return h;
  }

  /**
   * The held state, checked against runc's (a container whose process died is `killed`), read from
   * runc's state file and /proc ({@link Runc.initPid}): no runc to spawn inside the frozen window.
   */
  private async info(id: string): Promise<ContainerInfo> {
    const h = this.get(id);
    if (h.state !== 'killed') {
      const pid = await this.runc.initPid(id).catch(() => undefined);
      if (!pid) h.state = 'killed';
      else {
        const n = Number((await readFile(`/proc/${pid}/root${COUNTER_PATH}`, 'utf8').catch(() => '')).trim());
        if (Number.isSafeInteger(n) && n > 0) h.counter = n;
      }
    }
    return {
      id,
      state: h.state,
      pages: h.spec.pages,
      counter: h.counter,
      ...(h.migrationId ? { migrationId: h.migrationId } : {}),
      ...(h.restoreMs !== undefined ? { restoreMs: h.restoreMs } : {}),
    };
  }

  /** The container's info with the parts of the command that just changed it. */
  private async answer(id: string, p: Phases): Promise<ContainerInfo> {
    const info = await p.time('info', () => this.info(id));
    return { ...info, phasesMs: p.ms };
  }

  async checkpoint(migrationId: string, id: string, round: number, final: boolean): Promise<RoundImage> {
    const h = this.get(id);
    h.migrationId = migrationId;
    const p = new Phases();
    const base = this.images(migrationId, id);
    const dir = join(base, `round-${round}`);
    const done = join(base, `round-${round}.done`);
    const parentRound =
      round > 1 && (await exists(join(base, `round-${round - 1}.done`))) ? round - 1 : undefined;
    // A round already dumped (its stream failed and is retried) is sent again as it is.
    let runtimeMs: number | undefined;
    if (!(await exists(done))) {
      await rm(dir, { recursive: true, force: true });
      await rm(join(base, `work-${round}`), { recursive: true, force: true });
      if (final && h.state === 'running') {
        // Locked before the freeze and until thaw or kill (see ContainerNetns): CRIU's own lock
        // ends with the dump (--leave-running), and the frozen socket must stay silent after it.
        if (h.spec.network) await p.time('lock', () => this.netns.lock(id));
        await p.time('pause', () => this.runc.lifecycle('pause', id).catch(rethrow));
        h.state = 'frozen';
      }
      await p.time('criuDump', () =>
        this.runc
          .checkpoint({
            id,
            imagePath: dir,
            workPath: join(base, `work-${round}`),
            ...(parentRound ? { parentPath: `../round-${parentRound}` } : {}),
            preDump: !final,
            ...(final ? { leaveRunning: true, tcpEstablished: true } : {}),
          })
          .catch(rethrow),
      );
      runtimeMs = p.ms['criuDump'];
      await writeFile(done, '');
    }
    const files = await p.time('list', () => listImageDir(dir));
    const meta: RoundMeta = {
      containerId: id,
      round,
      final,
      ...(parentRound ? { parentRound } : {}),
      spec: {
        pages: h.spec.pages,
        dirtyPagesPerSec: h.spec.dirtyPagesPerSec,
        ...(h.spec.network ? { network: h.spec.network } : {}),
      },
    };
    const pages = files
      .filter((f) => /^pages-\d+\.img$/.test(f.name))
      .reduce((sum, f) => sum + Math.ceil(f.size / PAGE_BYTES), 0);
    // Read file by file as the stream seals and sends it: no whole archive in memory first.
    const image = archiveStream(dir, { meta, files }, this.config.CCM_GUEST_STREAM_CHUNK_BYTES);
    return {
      image,
      pages,
      ...(runtimeMs !== undefined ? { runtimeMs } : {}),
      phasesMs: p.ms,
      dirtyPages: () => (final ? Promise.resolve(0) : this.dirtySince(id, pages)),
      failed: () => undefined,
    };
  }

  /**
   * Pages the container dirtied since its last pre-dump (soft-dirty bits: {@link containerDirtyPages}),
   * read when asked, after the round's stream: what a round started now would send. Where the pagemap
   * cannot be read (no process) or the kernel keeps no soft-dirty bits, the round's own page count
   * stands in.
   */
  private async dirtySince(id: string, roundPages: number): Promise<number> {
    this.softDirty ??= softDirtyWorks();
    if (!(await this.softDirty)) return roundPages;
    const pid = await this.runc.initPid(id).catch(() => undefined);
    if (!pid) return roundPages;
    return containerDirtyPages(pid).catch(() => roundPages);
  }

  /**
   * Target: a round is written as its chunks are opened, into a staging directory of its own (the
   * archive checked as {@link ArchiveUnpacker} reads it, the meta as soon as the header is whole); at
   * the round's OK verdict the staging directory becomes the round's directory, `parent` linked as the
   * source had it: a pre-dump round while the source still runs, the final dump while it streams, so
   * the restore (inside the frozen time) has no image to write. A refused or abandoned round's staging
   * directory goes; a round whose archive or meta is not what the restore would accept is left for the
   * restore to refuse (it checks every round again, and uses a staged directory only for the very
   * buffer that was staged).
   */
  stager(migrationId: string, id: string, round: number): RoundStager {
    const key = `${migrationId}:${id}`;
    const rounds = this.staged.get(key) ?? new Map<number, { image: Buffer; written: Promise<boolean> }>();
    this.staged.set(key, rounds);
    const base = this.images(migrationId, id);
    const staging = join(base, `staging-${round}-${++this.stagings}`);
    const unpacker = new ArchiveUnpacker();
    let meta: RoundMeta | undefined;
    let ok = true;
    let file: FileHandle | undefined;
    let queue = Promise.resolve();
    const drop = async () => {
      ok = false;
      await file?.close().catch(() => undefined);
      file = undefined;
      await rm(staging, { recursive: true, force: true });
    };
    /** Disk work in order; the first failure stops it (the restore then writes the round). */
    const inOrder = (work: () => Promise<void>) => {
      queue = queue.then(() => (ok ? work() : undefined)).catch(drop);
    };
    return {
      push: (plaintext) => {
        if (!ok) return;
        let pieces: ArchivePiece[];
        try {
          pieces = unpacker.push(plaintext);
        } catch {
          ok = false;
          return;
        }
        for (const piece of pieces) {
          if (piece.kind === 'header') {
            const m = roundMetaProblem(piece.header.meta, id, round);
            if (m.problem !== undefined) {
              ok = false;
              return;
            }
            meta = m.meta;
            inOrder(() => mkdir(staging, { recursive: true }).then(() => undefined));
            continue;
          }
          inOrder(async () => {
            file ??= await open(join(staging, piece.name), 'wx');
            for (let off = 0; off < piece.data.length;)
              off += (await file.write(piece.data, off)).bytesWritten;
            if (piece.end) {
              await file.close();
              file = undefined;
            }
          });
        }
      },
      complete: (image) => {
        const before = rounds.get(round)?.written ?? Promise.resolve(false);
        const written = Promise.all([before, queue])
          .then(async () => {
            if (!ok || !unpacker.complete || !meta) {
              await drop();
              return false;
            }
            const dir = join(base, `round-${round}`);
            await rm(dir, { recursive: true, force: true });
            await rename(staging, dir);
            if (meta.parentRound) await symlink(`../round-${meta.parentRound}`, join(dir, 'parent'));
            if (meta.spec.network) this.prepareNet(migrationId, id, meta.spec.network);
            if (!this.cleared.has(key) && !this.held.has(id))
              this.cleared.set(
                key,
                this.clear(id).then(
                  () => true,
                  () => false,
                ),
              );
            return true;
          })
          .catch(() =>
            drop().then(
              () => false,
              () => false,
            ),
          );
        rounds.set(round, { image, written });
        return written;
      },
      abort: () => {
        ok = false;
        queue = queue.then(drop).catch(() => undefined);
      },
    };
  }

  /** A round that arrived whole, staged at once ({@link stager} with the round in one piece). */
  stage(migrationId: string, id: string, round: number, image: Buffer): Promise<boolean> {
    const s = this.stager(migrationId, id, round);
    s.push(image);
    return s.complete(image);
  }

  /**
   * Makes the network namespace a container arriving here will be restored into, locked, once per
   * migration (never over a container of that id this agent runs).
   */
  private prepareNet(migrationId: string, id: string, net: ContainerNetwork): void {
    const key = `${migrationId}:${id}`;
    const held = this.held.get(id);
    if (this.netPrepared.has(key) || (held && held.state !== 'killed')) return;
    const made = this.netns.create(id, net, true).then(
      () => true,
      () => false,
    );
    this.netPrepared.set(key, { net, made });
  }

  /** The namespace for the restore: the one staged for this migration if made for the same network, else made now. */
  private async restoreNet(migrationId: string, id: string, net: ContainerNetwork): Promise<void> {
    const key = `${migrationId}:${id}`;
    const p = this.netPrepared.get(key);
    this.netPrepared.delete(key);
    if (p && p.net.address === net.address && p.net.port === net.port && (await p.made)) return;
    await this.netns.create(id, net, true);
  }

  /** The rounds of `images` staged from these very buffers and written whole. */
  private async stagedRounds(
    migrationId: string,
    id: string,
    images: readonly Buffer[],
  ): Promise<Set<number>> {
    const out = new Set<number>();
    const rounds = this.staged.get(`${migrationId}:${id}`);
    for (const [round, s] of rounds ?? [])
      if (images[round - 1] === s.image && (await s.written)) out.add(round);
    return out;
  }

  async restore(migrationId: string, id: string, images: readonly Buffer[]): Promise<ContainerInfo> {
    const p = new Phases();
    const base = this.images(migrationId, id);
    const rounds = await p.time('validate', () =>
      images.map((b, i) => {
        const a = unpackArchive(b);
        const m = roundMetaProblem(a.meta, id, i + 1, i === images.length - 1);
        if (m.problem !== undefined) {
          throw new CcmError(GuestErrorCodes.ImagesIncomplete, `round ${i + 1} ${m.problem}`, {
            retryable: false,
            details: { round: i + 1 },
          });
        }
        return { ...a, meta: m.meta };
      }),
    );
    // Rounds staged as they arrived stay; anything else under the migration's directory goes.
    const ready = await p.time('staged', () => this.stagedRounds(migrationId, id, images));
    await p.time('write', async () => {
      for (const entry of await readdir(base).catch(() => [] as string[])) {
        if (!ready.has(Number(/^round-(\d+)$/.exec(entry)?.[1])))
          await rm(join(base, entry), { recursive: true, force: true });
      }
      for (const r of rounds) {
        if (ready.has(r.meta.round)) continue;
        const dir = join(base, `round-${r.meta.round}`);
        await writeImageDir(dir, r.files);
        if (r.meta.parentRound) await symlink(`../round-${r.meta.parentRound}`, join(dir, 'parent'));
      }
    });
    const spec = rounds[rounds.length - 1].meta.spec;
    await p.time('prepare', async () => {
      await this.prepareKernel();
      const cleared = this.cleared.get(`${migrationId}:${id}`);
      this.cleared.delete(`${migrationId}:${id}`);
      if (!cleared || this.held.has(id) || !(await cleared)) await this.clear(id);
      // The source's namespace made again (when the first round was staged, or now), locked until the resume.
      if (spec.network) await this.restoreNet(migrationId, id, spec.network);
      await makeBundle(this.bundle(id), id, spec, this.criuConfig(id));
      await mkdir(join(this.dir, 'criu'), { recursive: true });
      await writeFile(this.criuConfig(id), 'leave-stopped\n');
    });
    await p.time('criuRestore', async () => {
      try {
        await this.runc
          .restore({
            id,
            bundle: this.bundle(id),
            imagePath: join(base, `round-${rounds.length}`),
            workPath: join(base, 'restore-work'),
            tcpEstablished: true,
          })
          .catch(async (e: unknown) => {
            if (spec.network) await this.netns.remove(id);
            rethrow(e);
          });
      } finally {
        await rm(this.criuConfig(id), { force: true });
      }
    });
    const restoreMs = p.ms['criuRestore'];
    this.held.set(id, { spec, state: 'restored', migrationId, counter: 0, restoreMs });
    return this.answer(id, p);
  }

  /** A restored container's tasks get SIGCONT (CRIU left them stopped); a frozen one is thawed. */
  async resume(id: string): Promise<ContainerInfo> {
    const h = this.get(id);
    const p = new Phases();
    await p.time('continue', () =>
      this.runc.lifecycle(h.state === 'restored' ? 'continue' : 'resume', id).catch(rethrow),
    );
    if (h.spec.network && (h.state === 'restored' || h.state === 'frozen'))
      await p.time('unlock', () => this.netns.unlock(id));
    if (h.state === 'frozen') h.migrationId = undefined;
    h.state = 'running';
    return this.answer(id, p);
  }

  async kill(id: string): Promise<ContainerInfo> {
    const h = this.get(id);
    await this.info(id);
    if ((await this.runc.initPid(id)) !== undefined)
      await this.runc.lifecycle('delete-force', id).catch(rethrow);
    // Still locked if it was frozen: its sockets' FIN or RST never leave the namespace.
    if (h.spec.network) await this.netns.remove(id);
    h.state = 'killed';
    return this.info(id);
  }

  async discard(migrationId: string): Promise<void> {
    for (const [key, rounds] of this.staged) {
      if (!key.startsWith(`${migrationId}:`)) continue;
      for (const s of rounds.values()) await s.written;
      this.staged.delete(key);
    }
    for (const [key, c] of this.cleared) {
      if (!key.startsWith(`${migrationId}:`)) continue;
      this.cleared.delete(key);
      await c;
    }
    // A namespace made for a container that was never restored here.
    for (const [key, p] of this.netPrepared) {
      if (!key.startsWith(`${migrationId}:`)) continue;
      this.netPrepared.delete(key);
      await p.made;
      const id = key.slice(migrationId.length + 1);
      const held = this.held.get(id);
      if (!held || held.state === 'killed') await this.netns.remove(id);
    }
    await rm(join(this.dir, 'images', migrationId), { recursive: true, force: true });
  }

  async close(): Promise<void> {
    for (const [id, h] of this.held) {
      if (h.state !== 'killed') await this.runc.lifecycle('delete-force', id).catch(() => undefined);
      if (h.spec.network) await this.netns.remove(id);
    }
  }
}

const exists = (p: string): Promise<boolean> =>
  readFile(p).then(
    () => true,
    () => false,
  );
