// A tree of many small files both ways, beside `tar c | ssh host tar x` (and back).
import { spawn } from "node:child_process";
import { readdir, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { GuestClient } from "@guestkit/host";
import type { OpenSsh } from "./openssh.js";
import { type Measurement, measured, since, skipped } from "./stats.js";
import type { Workspace } from "./workspace.js";

/** What the tree section needs. */
export interface TreeSetup {
  client: GuestClient;
  ssh: OpenSsh | Error;
  workspace: Workspace;
  /** The local tree. */
  hostTree: string;
  /** The same tree in the guest. */
  guestTree: string;
  files: number;
  reps: number;
}

/** Times (seconds) of the tree both ways. */
export async function measureTree(setup: TreeSetup): Promise<Measurement[]> {
  const { client, ssh, workspace, hostTree, guestTree, files } = setup;
  const to = `${files} x 1 KiB files to guest`;
  const from = `${files} x 1 KiB files from guest`;
  const up = join(workspace.guest, "tree-up");
  const down = join(workspace.host, "tree-down");
  const seconds = (ms: number[]) => ms.map((value) => value / 1000);
  const rows: Measurement[] = [];
  // Only the transfer is timed: counting what arrived and removing it (a recursive
  // readdir and an rm of the whole tree, about as long as a transfer) come after the clock.
  const timeTransfers = async (reps: number, dir: string, fn: () => Promise<unknown>): Promise<number[]> => {
    const times: number[] = [];
    for (let i = 0; i < reps; i++) {
      const start = performance.now();
      await fn();
      times.push(since(start));
      const count = await countFiles(dir);
      if (count !== files) throw new Error(`${dir}: ${count} files, expected ${files}`);
      await rm(dir, { recursive: true, force: true });
    }
    return times;
  };
  rows.push(
    measured(
      to,
      "guestkit copyTo",
      "s",
      seconds(await timeTransfers(setup.reps, up, () => client.copyTo(hostTree, up))),
    ),
  );
  rows.push(
    measured(
      from,
      "guestkit copyFrom",
      "s",
      seconds(await timeTransfers(setup.reps, down, () => client.copyFrom(guestTree, down))),
    ),
  );
  if (ssh instanceof Error) {
    rows.push(skipped(to, "tar c | ssh host tar x", "s", ssh.message));
    rows.push(skipped(from, "ssh host tar c | tar x", "s", ssh.message));
    return rows;
  }
  const sshLine = ssh.multiplexed.map(quote).join(" ");
  const tarUp = `mkdir -p ${quote(up)} && tar c -C ${quote(dirname(hostTree))} ${quote(basename(hostTree))} | ssh ${sshLine} ${quote(`tar x -C ${quote(up)}`)}`;
  const tarDown = `mkdir -p ${quote(down)} && ssh ${sshLine} ${quote(`tar c -C ${quote(dirname(guestTree))} ${quote(basename(guestTree))}`)} | tar x -C ${quote(down)}`;
  rows.push(
    measured(to, "tar c | ssh host tar x", "s", seconds(await timeTransfers(setup.reps, up, () => shell(tarUp))), {
      note: "ControlMaster connection",
    }),
  );
  rows.push(
    measured(
      from,
      "ssh host tar c | tar x",
      "s",
      seconds(await timeTransfers(setup.reps, down, () => shell(tarDown))),
      {
        note: "ControlMaster connection",
      },
    ),
  );
  return rows;
}

async function countFiles(dir: string): Promise<number> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((entry) => entry.isFile()).length;
}

function shell(script: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("sh", ["-c", script], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.setEncoding("utf8").on("data", (text: string) => {
      err += text;
    });
    child.once("error", reject);
    child.once("close", (code) =>
      code === 0 ? resolve() : reject(new Error(`sh -c ${script}: exit ${code}: ${err.trim()}`)),
    );
  });
}

function quote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}
