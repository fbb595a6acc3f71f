// The README's front door, as a newcomer walks through it: a fresh project folder with the README's import map entry
// pointing at a checkout, the quick-start example saved as main.ts, run with the README's own `deno run` command line.
import assert from "node:assert/strict";
import { runDeno, tempDir } from "./_helpers.ts";

const ROOT = new URL("../", import.meta.url);
const README = await Deno.readTextFile(new URL("README.md", ROOT));

/** The body of the section `## title`, up to the next `## ` heading. */
function section(title: string): string {
  const start = README.indexOf(`\n## ${title}\n`);
  assert.notEqual(start, -1, `README has no section '${title}'`);
  const end = README.indexOf("\n## ", start + 1);
  return README.slice(start, end === -1 ? undefined : end);
}

/** The first fenced code block of a section whose info string starts with `lang`. */
function codeBlock(text: string, lang: string): string {
  const match = new RegExp("```" + lang + "[^\\n]*\\n([\\s\\S]*?)\\n```").exec(text);
  assert.ok(match?.[1] !== undefined, `no \`\`\`${lang} block`);
  return match[1];
}

Deno.test("the README's quick start runs in a fresh project that imports the package through the README's import map entry", async (t) => {
  const importMap = JSON.parse(codeBlock(section("Install"), "json"));
  const target: string = importMap.imports["@oxide/registry"];
  assert.match(target, /^\.\.\/[\w-]+\/mod\.ts$/, "the entry points at a sibling checkout's mod.ts");
  const quickStart = section("Quick start");
  const example = codeBlock(quickStart, "ts");
  const command = /`(deno run [^`]+ main\.ts)`/.exec(quickStart)?.[1];
  assert.ok(command !== undefined, "the quick start names its deno run command");
  const args = command.split(" ").slice(1);

  await using dir = await tempDir();
  // The checkout the entry points at: a link to this one, as `git clone` would leave it.
  const checkout = `${dir.path}/${target.split("/")[1]}`;
  await Deno.symlink(new URL(".", ROOT).pathname, checkout);
  const app = `${dir.path}/app`;
  await Deno.mkdir(app);
  await Deno.writeTextFile(`${app}/deno.json`, JSON.stringify(importMap, null, 2));
  await Deno.writeTextFile(`${app}/main.ts`, example);

  for (const [engine, flags] of [["ffi", args], ["node", args.filter((a) => a !== "--allow-ffi")]] as const) {
    await t.step(`${engine} engine: ${flags.join(" ")}`, async () => {
      await Deno.remove(`${app}/data`, { recursive: true }).catch(() => {});
      const run = await runDeno(flags, { cwd: app });
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout, '[ "echo: running" ]\nHello, agent.\n');
      assert.ok((await Deno.stat(`${app}/data/registry.db`)).isFile);
    });
  }

  await t.step("without the import map entry the example fails as the issue saw it", async () => {
    await Deno.writeTextFile(`${app}/deno.json`, "{}");
    const run = await runDeno(args, { cwd: app });
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /@oxide\/registry/);
  });
});

Deno.test("every deno.json task has a description, and `deno task` lists it", async () => {
  const tasks: Record<string, unknown> = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))).tasks;
  const listing = await runDeno(["task"], { cwd: new URL(".", ROOT).pathname, env: { NO_COLOR: "1" } });
  assert.equal(listing.code, 0, listing.stderr);
  for (const [name, task] of Object.entries(tasks)) {
    assert.ok(typeof task === "object" && task !== null, `task '${name}' is not in object form`);
    const { description, command } = task as { description?: unknown; command?: unknown };
    assert.ok(typeof description === "string" && description.length > 0, `task '${name}' has no description`);
    assert.ok(typeof command === "string", `task '${name}' has no command`);
    assert.ok(listing.stdout.includes(`- ${name}\n    // ${description}\n`), `deno task does not list '${name}'`);
  }
});

Deno.test("README.md stays a front door: under 16 KB, and every relative link in it and in docs/ resolves", async () => {
  assert.ok(new TextEncoder().encode(README).length < 16 * 1024, "README.md is 16 KB or more");
  const files = ["README.md"];
  for await (const entry of Deno.readDir(new URL("docs/", ROOT))) {
    if (entry.name.endsWith(".md")) files.push(`docs/${entry.name}`);
  }
  for (const file of files) {
    const text = await Deno.readTextFile(new URL(file, ROOT));
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target!)) continue;
      const [path, anchor] = target!.split("#") as [string, string | undefined];
      const resolved = path === "" ? new URL(file, ROOT) : new URL(path, new URL(file, ROOT));
      const linked = await Deno.readTextFile(resolved).catch(() => undefined);
      assert.ok(linked !== undefined, `${file}: link to missing ${target}`);
      if (anchor === undefined) continue;
      const slugs = [...linked.matchAll(/^#+ (.+)$/gm)].map(([, h]) =>
        h!.toLowerCase().replace(/[^\w\- ]/g, "").replaceAll(" ", "-")
      );
      assert.ok(slugs.includes(anchor), `${file}: link to missing anchor ${target}`);
    }
  }
});

Deno.test("the README's newcomer commands name real tasks, and npx fetches the Deno version CI uses", async () => {
  const tryIt = codeBlock(section("Try it"), "sh");
  const ci = await Deno.readTextFile(new URL(".ci/run", ROOT));
  const version = /^DENO_VERSION=(\S+)$/m.exec(ci)?.[1];
  assert.ok(version !== undefined, ".ci/run names its Deno version");
  const tasks: Record<string, unknown> = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))).tasks;
  for (const task of ["demo", "test"]) {
    assert.ok(task in tasks, `deno.json has a '${task}' task`);
    assert.match(
      tryIt,
      new RegExp(`^deno task ${task} +# or: npx -y deno@${RegExp.escape(version)} task ${task}$`, "m"),
    );
  }
});

Deno.test("no example that deno test --doc runs (README.md, docs/*.md) names ./data: running the tests leaves the demo's state alone", async () => {
  const files = ["README.md"];
  for await (const entry of Deno.readDir(new URL("docs/", ROOT))) {
    if (entry.name.endsWith(".md")) files.push(`docs/${entry.name}`);
  }
  for (const file of files) {
    const text = await Deno.readTextFile(new URL(file, ROOT));
    for (const match of text.matchAll(/```(?:ts|typescript|js|javascript)([^\n]*)\n([\s\S]*?)\n```/g)) {
      const [, info = "", body = ""] = match;
      if (/\bignore\b/.test(info)) continue;
      assert.doesNotMatch(body, /["'`]\.\/data\b/, `${file}: an example run by the tests names ./data`);
    }
  }
});
