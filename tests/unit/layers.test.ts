// The TypeScript layers, read from the import statements of src/ and dev/ (static and dynamic `import`, and
// `export ... from`): the package ships src/ only, so the CLI must not reach dev/; the policy readers use the shared
// vocabulary, not the compiler; and no two modules of src/ import each other, directly or around a loop.

import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";

import { PACKAGE_ROOT } from "../../src/paths.ts";

const IMPORT = /(?:^|[;\s])(?:import|export)\s[^;]*?from\s+"(\.{1,2}\/[^"]+)"|import\(\s*"(\.{1,2}\/[^"]+)"\s*\)/gs;

/** Relative imports of `file` (repository-relative paths), in the order written. */
function importsOf(file: string): string[] {
  const text = readFileSync(path.join(PACKAGE_ROOT, file), "utf8");
  const out: string[] = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2];
    out.push(path.posix.normalize(path.posix.join(path.posix.dirname(file), spec)));
  }
  return out;
}

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(path.join(PACKAGE_ROOT, dir), { withFileTypes: true })) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) out.push(...tsFiles(rel));
    else if (e.name.endsWith(".ts")) out.push(rel);
  }
  return out.sort();
}

/** Every module `entry` loads, itself included. */
function closure(entry: string): Set<string> {
  const seen = new Set<string>();
  const todo = [entry];
  while (todo.length > 0) {
    const f = todo.pop() as string;
    if (seen.has(f)) continue;
    seen.add(f);
    todo.push(...importsOf(f));
  }
  return seen;
}

/** The import graph among `files`. */
function importGraph(files: string[]): Map<string, string[]> {
  return new Map(files.map((f) => [f, importsOf(f).filter((d) => files.includes(d))]));
}

/** The loops of a graph, each as the sorted list of its nodes (strongly connected components of 2 or more). */
function cycles(graph: Map<string, string[]>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1) found.push(component.sort());
    }
  };
  for (const f of graph.keys()) if (!index.has(f)) visit(f);
  return found;
}

describe("TypeScript layers", () => {
  it("the CLI loads only modules of src/, which package.json ships, and every one of them exists", () => {
    const pkg = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, "package.json"), "utf8")) as { files: string[] };
    assert.ok(pkg.files.includes("src/"));
    const loaded = [...closure("src/cli/main.ts")].sort();
    // The lazily loaded subcommands count too: an installed package must hold everything any command imports.
    for (const command of ["check", "compile", "test", "diff", "image", "cert"]) {
      assert.ok(loaded.includes(`src/cli/${command}.ts`), `src/cli/${command}.ts is not loaded by main.ts`);
    }
    for (const f of loaded) {
      assert.ok(f.startsWith("src/"), `the CLI loads "${f}", which the package does not ship`);
      assert.ok(existsSync(path.join(PACKAGE_ROOT, f)), `"${f}" does not exist`);
    }
  });

  it("nothing in src/ imports dev/ (the Envoy, SPIRE and demo tooling of the repository)", () => {
    for (const f of tsFiles("src")) {
      for (const d of importsOf(f)) assert.ok(!d.startsWith("dev/"), `${f} imports ${d}`);
    }
  });

  it("the policy readers use src/vocabulary/, not the compiler", () => {
    for (const f of tsFiles("src/policy")) {
      for (const d of importsOf(f)) assert.ok(!d.startsWith("src/compiler/"), `${f} imports ${d}`);
    }
  });

  it("src/ has no import cycles", () => {
    assert.deepEqual(cycles(importGraph(tsFiles("src"))), []);
  });

  it("the folders of src/ depend on each other in one direction, and no other folder imports the CLI", () => {
    const folderOf = (f: string): string => f.split("/").slice(0, 2).join("/");
    const graph = new Map<string, string[]>();
    for (const f of tsFiles("src")) {
      const deps = importsOf(f)
        .map(folderOf)
        .filter((d) => d !== folderOf(f));
      graph.set(folderOf(f), [...new Set([...(graph.get(folderOf(f)) ?? []), ...deps])]);
      if (!f.startsWith("src/cli/")) {
        for (const d of importsOf(f)) assert.ok(!d.startsWith("src/cli/"), `${f} imports ${d}`);
      }
    }
    assert.deepEqual(cycles(graph), []);
  });

  it("the cycle finder reports a loop and only the loop (so the check above can fail)", () => {
    const graph = new Map(Object.entries({ a: ["b"], b: ["c"], c: ["a"], d: ["a"], e: [] }));
    assert.deepEqual(cycles(graph), [["a", "b", "c"]]);
  });

  it("the import reader sees static, dynamic and re-export imports", () => {
    const deps = importsOf("src/cli/main.ts");
    assert.ok(deps.includes("src/cli/check.ts"), deps.join(", "));
    assert.ok(deps.includes("src/cli/compile.ts"), "dynamic import() of the compile command");
    assert.ok(importsOf("src/compiler/ir.ts").includes("src/vocabulary/rule.ts"), "export ... from");
  });
});
