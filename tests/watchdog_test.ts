// The tests' watchdog (tests/_watchdog.ts): a wait that never ends fails its test with a message naming it, in
// bounded time; a wait that ends leaves no timer behind (the sanitizers are on).
import assert from "node:assert/strict";
import { StateRegistry } from "@oxide/registry";
import { DeadlineError, take, within } from "./_watchdog.ts";

Deno.test("a watch that never delivers fails the waiting test with a DeadlineError naming what it waited for", async () => {
  await using reg = await StateRegistry.inMemory();
  const watch = reg.watch({ prefix: "never." });
  await reg.setConfig("seen.elsewhere", 1);
  const error = await take(watch, 1, "watch({ prefix: 'never.' })", 200).catch((e) => e);
  assert.ok(error instanceof DeadlineError, String(error));
  assert.equal(
    error.message,
    "watchdog: value 1 of 1 from watch({ prefix: 'never.' }) (none before it) did not come within 0.2 s",
  );
  await watch.return();
});

Deno.test("within() settles as its promise does, and take() names an early end", async () => {
  assert.equal(await within(Promise.resolve(7), "seven", 60_000), 7);
  await assert.rejects(within(Promise.reject(new RangeError("inner")), "a failure", 60_000), RangeError);
  async function* two() {
    yield 1;
    yield 2;
  }
  await assert.rejects(take(two(), 3, "two()"), /^Error: two\(\) ended after 2 of 3 values$/);
  assert.deepEqual(await take(two(), 2), [1, 2]);
});
