// Run by bench/watch_latency.ts: writes `writes` config values, one every `gapMs` (with jitter, so the writes do not
// beat in step with a poll), and prints {"seq": n, "committed": t} once each commit returned (t:
// performance.timeOrigin + performance.now(), the clock the watcher stamps its events with). Argument: JSON
// {path, engine, writes, gapMs}.
import { type EngineName, StateRegistry } from "@oxide/registry";

const { path, engine, writes, gapMs } = JSON.parse(Deno.args[0]!) as {
  path: string;
  engine: EngineName;
  writes: number;
  gapMs: number;
};
const encoder = new TextEncoder();
await using reg = await StateRegistry.connect(path, { engine });
for (let seq = 0; seq < writes; seq++) {
  await new Promise((resolve) => setTimeout(resolve, gapMs * (0.5 + Math.random())));
  await reg.setConfig("bench.latency", { seq });
  const committed = performance.timeOrigin + performance.now();
  Deno.stdout.writeSync(encoder.encode(`${JSON.stringify({ seq, committed })}\n`));
}
