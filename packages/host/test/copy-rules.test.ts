// The `docker cp` destination rules, in both directions, against the real agent. The
// agent runs on this machine, so both sides are paths in one temp dir.
import { chmod, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { beforeEach, describe, expect, it } from "vitest";
import { CopyError } from "../src/copy/copy-error.js";
import { copyFrom } from "../src/copy/copy-from.js";
import { copyTo } from "../src/copy/copy-to.js";
import type { GuestErrorReason } from "../src/guest-error.js";
import { useCopyAgent } from "./copy-fixture.js";

const suite = useCopyAgent("guestkit-copy-rules-");

beforeEach(async () => {
  // A source file and a source directory with one file and one subdirectory.
  await mkdir(join(suite.work, "src", "dir", "sub"), { recursive: true });
  await writeFile(join(suite.work, "src", "file"), "new contents");
  await writeFile(join(suite.work, "src", "dir", "a"), "a");
  await writeFile(join(suite.work, "src", "dir", "sub", "b"), "b");
  await mkdir(join(suite.work, "dst"));
});

const directions = {
  copyTo: (source: string, destination: string) => copyTo(suite.client, source, destination),
  copyFrom: (source: string, destination: string) => copyFrom(suite.client, source, destination),
};

/** Every path under `dir`, sorted. */
async function tree(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).map(String).sort();
}

for (const [name, copy] of Object.entries(directions)) {
  describe(`${name} follows the docker cp rules`, () => {
    const src = (path: string) => join(suite.work, "src", path);
    const dst = (path = "") => join(suite.work, "dst", path);
    const fails = async (source: string, destination: string, kind: GuestErrorReason, message: RegExp) => {
      const error = await copy(source, destination).catch((reason: unknown) => reason);
      expect(error).toBeInstanceOf(CopyError);
      expect((error as CopyError).reason).toBe(kind);
      expect((error as CopyError).message).toMatch(message);
    };

    it("a file onto an existing directory goes inside it under its own name", async () => {
      await copy(src("file"), dst());
      expect(await readFile(dst("file"), "utf8")).toBe("new contents");
    });

    it("a file onto an existing file overwrites it", async () => {
      await writeFile(dst("existing"), "old contents that are longer");
      await copy(src("file"), dst("existing"));
      expect(await readFile(dst("existing"), "utf8")).toBe("new contents");
      expect(await tree(dst())).toEqual(["existing"]);
    });

    it("a file onto a missing path creates it", async () => {
      await copy(src("file"), dst("renamed"));
      expect(await readFile(dst("renamed"), "utf8")).toBe("new contents");
    });

    it("a file onto a missing path ending in / is an error", async () => {
      await fails(src("file"), `${dst("missing")}/`, "destination", /destination directory .*missing\/ does not exist/);
      expect(await tree(dst())).toEqual([]);
    });

    it("a file onto an existing file written with a trailing / is an error", async () => {
      await writeFile(dst("existing"), "old");
      await fails(src("file"), `${dst("existing")}/`, "destination", /existing is not a directory/);
      expect(await readFile(dst("existing"), "utf8")).toBe("old");
    });

    it("a directory onto a missing path creates it with the contents", async () => {
      await copy(src("dir"), dst("made"));
      expect(await tree(dst())).toEqual(["made", "made/a", "made/sub", "made/sub/b"]);
    });

    it("a directory onto an existing directory goes inside it", async () => {
      await copy(src("dir"), dst());
      expect(await tree(dst())).toEqual(["dir", "dir/a", "dir/sub", "dir/sub/b"]);
    });

    it("SRC/. onto an existing directory copies the contents and leaves the directory's own mode", async () => {
      await chmod(dst(), 0o750);
      await writeFile(dst("kept"), "kept");
      await copy(`${src("dir")}/.`, dst());
      expect(await tree(dst())).toEqual(["a", "kept", "sub", "sub/b"]);
      expect((await stat(dst())).mode & 0o7777).toBe(0o750);
    });

    it("SRC/. onto a missing path creates it with the contents", async () => {
      await copy(`${src("dir")}/.`, dst("made"));
      expect(await tree(dst())).toEqual(["made", "made/a", "made/sub", "made/sub/b"]);
    });

    it("a directory onto an existing file is an error", async () => {
      await writeFile(dst("existing"), "old");
      await fails(src("dir"), dst("existing"), "destination", /cannot copy a directory onto a file/);
      expect(await readFile(dst("existing"), "utf8")).toBe("old");
    });

    it("a file source written with a trailing / or /. is an error", async () => {
      await fails(`${src("file")}/`, dst(), "source", /is not a directory/);
      await fails(`${src("file")}/.`, dst(), "source", /is not a directory/);
      expect(await tree(dst())).toEqual([]);
    });

    it("a destination whose parent does not exist is an error", async () => {
      await fails(src("file"), dst("no/such/place"), "destination", /no\/such.* does not exist/);
      await fails(src("dir"), dst("no/such/place"), "destination", /no\/such.* does not exist/);
      expect(await tree(dst())).toEqual([]);
    });
  });
}
