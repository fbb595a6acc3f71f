/**
 * Local etcd clusters on 127.0.0.1 for development, tests and CI: N members in
 * a temporary folder, started, waited for, stopped by process id. Optionally
 * one TLS member (with etcd auth for user `root`, or with client certificates
 * required), its CA and certificates made with openssl.
 *
 * ```sh
 * deno task etcd:dev                      # 3 members in the foreground; Ctrl-C stops them
 * deno run -A scripts/etcd_cluster.ts start --members 3 --dir /tmp/c3 --detach   # prints env lines
 * deno run -A scripts/etcd_cluster.ts start --tls auth --dir /tmp/tls --detach   # https + user root
 * deno run -A scripts/etcd_cluster.ts start --tls mtls --dir /tmp/mtls --detach  # client certificates
 * deno run -A scripts/etcd_cluster.ts stop --dir /tmp/c3   # by pid file; waits until each has exited
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";

/** One running member. */
export interface EtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly args: readonly string[];
  pid: number;
  child: Deno.ChildProcess | undefined;
}

/** TLS material of a TLS cluster (paths and PEM text). */
export interface EtcdTlsFiles {
  readonly dir: string;
  readonly caCert: string;
  readonly cert: string;
  readonly key: string;
}

/** A running cluster. */
export interface EtcdCluster extends AsyncDisposable {
  readonly dir: string;
  readonly members: EtcdMember[];
  readonly endpoints: string[];
  readonly tls: EtcdTlsFiles | undefined;
  readonly user: string | undefined;
  readonly password: string | undefined;
  /** The name of the member that is leader now. */
  leader(): Promise<string>;
  /** SIGKILLs a member. */
  kill(name: string): void;
  /** Starts a killed member again with its data. */
  restart(name: string): Promise<void>;
  /** Stops every member (SIGTERM, then SIGKILL) and removes the folder unless `keep`. */
  stop(): Promise<void>;
}

/** Options of {@linkcode startCluster}. */
export interface StartClusterOptions {
  readonly members?: number;
  /** Folder for data, logs and pid files (default: a new temporary folder). */
  readonly dir?: string;
  /**
   * One-member TLS cluster. `"auth"`: https verified against our CA, etcd auth
   * enabled for user `root`. `"mtls"`: https with `--client-cert-auth` (a
   * client certificate required), no etcd auth: etcd 3.4's JSON gateway
   * refuses `authenticate` when `--client-cert-auth` is on.
   */
  readonly tls?: "auth" | "mtls" | undefined;
  /** etcd's `--auth-token-ttl` in seconds (TLS cluster only). */
  readonly authTokenTtl?: number;
  /** Let members outlive this process (CI starts them, tests use them, `stop` ends them). */
  readonly detach?: boolean;
  /** Keep the folder on stop. */
  readonly keep?: boolean;
  /** Client and peer ports per member (default: free ports). */
  readonly ports?: readonly (readonly [number, number])[];
}

const ETCD = Deno.env.get("OXIDE_ETCD_BIN") ?? "etcd";

/** Client and peer ports of `deno task etcd:dev` (etcd's Procfile): clients on 2379, 22379, 32379. */
export const DEV_PORTS: readonly (readonly [number, number])[] = [[2379, 2380], [22379, 22380], [32379, 32380]];

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function run(cmd: string, args: string[], cwd?: string): Promise<string> {
  const out = await new Deno.Command(cmd, { args, ...(cwd ? { cwd } : {}), stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/** Makes a CA, a server certificate for 127.0.0.1 and a client certificate with openssl. */
async function makeCertificates(dir: string): Promise<EtcdTlsFiles> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await run("openssl", [
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "2",
    "-subj",
    "/CN=oxide-test-ca",
  ], dir);
  for (
    const [name, cn, ext] of [
      ["server", "127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth"],
      ["client", "oxide-client", "extendedKeyUsage=clientAuth"],
    ] as const
  ) {
    await Deno.writeTextFile(`${dir}/${name}.ext`, ext + "\n");
    await run("openssl", ["req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`], dir);
    await run("openssl", [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      "2",
      "-extfile",
      `${name}.ext`,
    ], dir);
  }
  return {
    dir,
    caCert: `${dir}/ca.pem`,
    cert: `${dir}/client.pem`,
    key: `${dir}/client.key`,
  };
}

function spawnMember(member: EtcdMember, detach: boolean): void {
  const child = new Deno.Command(ETCD, { args: [...member.args], stdin: "null", stdout: "null", stderr: "null" })
    .spawn();
  member.pid = child.pid;
  member.child = child;
  Deno.writeTextFileSync(`${member.dataDir}.pid`, `${child.pid}\n`);
  if (detach) child.unref();
}

async function healthy(url: string, http: Deno.HttpClient | undefined): Promise<boolean> {
  try {
    const init: RequestInit & { client?: Deno.HttpClient } = { signal: AbortSignal.timeout(1000) };
    if (http) init.client = http;
    const r = await fetch(`${url}/health`, init);
    const body = await r.text();
    return r.status === 200 && body.includes('"health":"true"');
  } catch {
    return false;
  }
}

async function waitHealthy(members: EtcdMember[], http: Deno.HttpClient | undefined, ms = 30_000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const states = await Promise.all(members.map((m) => healthy(m.clientUrl, http)));
    if (states.every(Boolean)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`etcd members did not become healthy within ${ms} ms (logs in ${members[0]?.dataDir}/..)`);
}

/**
 * Starts a cluster and waits until every member is healthy.
 *
 * @param options Members, folder, TLS, detach.
 * @returns The running cluster.
 */
export async function startCluster(options: StartClusterOptions = {}): Promise<EtcdCluster> {
  const tls = options.tls !== undefined;
  const count = tls ? 1 : options.members ?? 3;
  const dir = options.dir ?? await Deno.makeTempDir({ prefix: "oxide-etcd-" });
  await Deno.mkdir(dir, { recursive: true });
  const files = tls ? await makeCertificates(dir) : undefined;
  const scheme = tls ? "https" : "http";
  const ports: (readonly [number, number])[] = options.ports ? [...options.ports] : [];
  for (let i = ports.length; i < count; i++) ports.push([freePort(), freePort()] as const);
  const names = ports.map((_, i) => `m${i}`);
  const initial = names.map((n, i) => `${n}=http://127.0.0.1:${ports[i]![1]}`).join(",");
  const token = `oxide-${crypto.randomUUID().slice(0, 8)}`;
  const members: EtcdMember[] = names.map((name, i) => {
    const [client, peer] = ports[i]!;
    const dataDir = `${dir}/${name}`;
    const clientUrl = `${scheme}://127.0.0.1:${client}`;
    const args = [
      "--name",
      name,
      "--data-dir",
      dataDir,
      "--listen-client-urls",
      clientUrl,
      "--advertise-client-urls",
      clientUrl,
      "--listen-peer-urls",
      `http://127.0.0.1:${peer}`,
      "--initial-advertise-peer-urls",
      `http://127.0.0.1:${peer}`,
      "--initial-cluster",
      initial,
      "--initial-cluster-token",
      token,
      "--initial-cluster-state",
      "new",
      "--logger",
      "zap",
      "--log-outputs",
      `${dataDir}.log`,
      // Loopback members on a loaded 2-core machine: keep elections quick but not flappy.
      "--heartbeat-interval",
      "100",
      "--election-timeout",
      "1000",
    ];
    if (files) {
      args.push(
        "--cert-file",
        `${dir}/server.pem`,
        "--key-file",
        `${dir}/server.key`,
      );
      // A trusted CA makes etcd require client certificates (and then its gateway refuses authenticate).
      if (options.tls === "mtls") args.push("--trusted-ca-file", files.caCert, "--client-cert-auth");
      if (options.authTokenTtl) args.push("--auth-token-ttl", String(options.authTokenTtl));
    }
    return { name, clientUrl, peerUrl: `http://127.0.0.1:${peer}`, dataDir, args, pid: 0, child: undefined };
  });
  const detach = options.detach === true;
  for (const m of members) spawnMember(m, detach);
  const tlsText = files
    ? {
      caCert: await Deno.readTextFile(files.caCert),
      cert: await Deno.readTextFile(files.cert),
      key: await Deno.readTextFile(files.key),
    }
    : undefined;
  const http = tlsText
    ? Deno.createHttpClient({ caCerts: [tlsText.caCert], cert: tlsText.cert, key: tlsText.key })
    : undefined;
  const password = options.tls === "auth" ? `pw-${crypto.randomUUID()}` : undefined;
  const cluster: EtcdCluster = {
    dir,
    members,
    endpoints: members.map((m) => m.clientUrl),
    tls: files,
    user: password ? "root" : undefined,
    password,
    async leader() {
      for (const m of members) {
        try {
          const init: RequestInit & { client?: Deno.HttpClient } = {
            method: "POST",
            body: "{}",
            signal: AbortSignal.timeout(2000),
          };
          if (http) init.client = http;
          const r = await fetch(`${m.clientUrl}/v3/maintenance/status`, init);
          const s = await r.json() as { header?: { member_id?: string }; leader?: string };
          if (s.leader !== undefined && s.leader === s.header?.member_id) return m.name;
        } catch {
          // not answering: try the next
        }
      }
      throw new Error("no etcd member reports itself leader");
    },
    kill(name) {
      const m = members.find((x) => x.name === name);
      if (!m) throw new Error(`no member ${name}`);
      // child.kill needs only --allow-run=etcd; Deno.kill (a bare pid) needs --allow-run for everything.
      if (m.child) m.child.kill("SIGKILL");
      else Deno.kill(m.pid, "SIGKILL");
    },
    async restart(name) {
      const m = members.find((x) => x.name === name);
      if (!m) throw new Error(`no member ${name}`);
      if (m.child) await m.child.status;
      const args = m.args.map((a) => a === "new" ? "existing" : a);
      const fresh: EtcdMember = { ...m, args };
      spawnMember(fresh, detach);
      // The new process is the member now: stop() must end it (it used to end only the killed one).
      m.pid = fresh.pid;
      m.child = detach ? undefined : fresh.child;
      await waitHealthy([m], http);
    },
    async stop() {
      await stopChildren(members.flatMap((m) => m.child ? [m.child] : []));
      const left = await stopPids(members.filter((m) => !m.child).map((m) => m.pid));
      if (left.length > 0) throw new Error(`etcd member(s) still running after SIGKILL: ${left.join(" ")}`);
      http?.close();
      if (!options.keep) await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
    [Symbol.asyncDispose]() {
      return this.stop();
    },
  };
  try {
    await waitHealthy(members, http);
    if (password) {
      // Through the gateway, so only etcd-server is needed (no etcdctl): root user, root role, auth on.
      for (
        const [path, body] of [
          ["/v3/auth/role/add", { name: "root" }],
          ["/v3/auth/user/add", { name: "root", password }],
          ["/v3/auth/user/grant", { user: "root", role: "root" }],
          ["/v3/auth/enable", {}],
        ] as const
      ) {
        const init: RequestInit & { client?: Deno.HttpClient } = { method: "POST", body: JSON.stringify(body) };
        if (http) init.client = http;
        const r = await fetch(`${members[0]!.clientUrl}${path}`, init);
        const text = await r.text();
        if (r.status !== 200) throw new Error(`etcd ${path} failed: ${text}`);
      }
    }
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  // Members spawned by tests are children: track them so stop() can await them.
  if (detach) { for (const m of members) m.child = undefined; }
  return cluster;
}

/** SIGTERMs each child process, waits up to 5 s for each, then SIGKILLs what is left. */
export async function stopChildren(children: readonly Deno.ChildProcess[]): Promise<void> {
  await Promise.all(children.map(async (child) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      child.kill("SIGTERM");
    } catch {
      // already exited
    }
    const exited = await Promise.race([
      child.status.then(() => true),
      new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), 5000)),
    ]);
    clearTimeout(timer);
    if (!exited) {
      try {
        child.kill("SIGKILL");
      } catch {
        // exited meanwhile
      }
      await child.status;
    }
  }));
}

/**
 * Whether process `pid` still runs. A zombie (exited, not yet reaped by its parent) does not. Deno.kill needs
 * --allow-run for everything: without it this throws, and the caller must not read that as "gone".
 */
export function running(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT"); // harmless to a running etcd; fails with ESRCH once the pid is gone
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    if (err instanceof Deno.errors.NotCapable) {
      throw new Error(`stopping etcd members by process id needs --allow-run (Deno.kill of pid ${pid})`, {
        cause: err,
      });
    }
    throw err;
  }
  const state = ps(pid, "stat");
  return !(state?.startsWith("Z") || state?.startsWith("X"));
}

/**
 * A field of `ps -o FIELD= -p PID` (Deno reads another process's /proc files only with --allow-all), or
 * `undefined` when ps is missing or says nothing.
 */
function ps(pid: number, field: "stat" | "args"): string | undefined {
  try {
    const out = new Deno.Command("ps", {
      args: ["-o", `${field}=`, "-p", String(pid)],
      stdout: "piped",
      stderr: "null",
    })
      .outputSync();
    const text = new TextDecoder().decode(out.stdout).trim();
    return out.success && text !== "" ? text : undefined;
  } catch {
    return undefined;
  }
}

async function waitExit(pids: readonly number[], ms: number): Promise<number[]> {
  const until = Date.now() + ms;
  let left = pids.filter(running);
  while (left.length > 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 50));
    left = left.filter(running);
  }
  return left;
}

/**
 * SIGTERMs each pid, waits up to 5 s for them to exit, SIGKILLs what is left and waits for that too (needs
 * --allow-run for everything).
 *
 * @returns The pids still running after all that (empty when every one exited).
 * @throws {Error} when Deno may not signal processes (--allow-run missing), instead of reporting them stopped.
 */
export async function stopPids(pids: readonly number[]): Promise<number[]> {
  const signal = (pid: number, sig: Deno.Signal) => {
    try {
      Deno.kill(pid, sig);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err; // NotCapable: say so (running() words it)
    }
  };
  const alive = pids.filter(running);
  for (const pid of alive) signal(pid, "SIGTERM");
  const stubborn = await waitExit(alive, 5000);
  for (const pid of stubborn) signal(pid, "SIGKILL");
  return await waitExit(stubborn, 5000);
}

/** Whether `pid` is the etcd member `name` of this folder (not a process that got a dead member's pid). */
function isMember(pid: number, name: string): boolean {
  const command = ps(pid, "args");
  if (command === undefined) return true; // No ps here: trust the pid file.
  // etcd ... --data-dir <dir>/<name> ... (the folder's own path, as start gave it).
  return new RegExp(`(^|\\s)--data-dir[ =]\\S*/${name}(\\s|$)`).test(command);
}

/** `stop --dir`: every member of a folder by its pid file, verified gone. Exit code 1 when one still runs. */
async function stopFolder(dir: string): Promise<number> {
  const members: { name: string; pid: number; file: string }[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (!e.name.endsWith(".pid")) continue;
    const file = `${dir}/${e.name}`;
    members.push({ name: e.name.slice(0, -4), pid: Number((await Deno.readTextFile(file)).trim()), file });
  }
  const mine = members.filter((m) => {
    if (!Number.isSafeInteger(m.pid) || m.pid <= 0 || !running(m.pid)) return false;
    if (isMember(m.pid, m.name)) return true;
    console.error(`pid ${m.pid} of ${m.file} is no longer etcd member ${m.name} (it exited; the pid was reused)`);
    return false;
  });
  const left = await stopPids(mine.map((m) => m.pid));
  for (const m of members) if (!left.includes(m.pid)) await Deno.remove(m.file).catch(() => {});
  if (left.length > 0) {
    console.error(`etcd member(s) still running after SIGTERM and SIGKILL: ${left.join(" ")}`);
    return 1;
  }
  console.log(
    `stopped ${mine.length} etcd member(s)${mine.length ? ": " + mine.map((m) => m.pid).join(" ") : ""}` +
      (members.length > mine.length ? ` (${members.length - mine.length} had already exited)` : ""),
  );
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      members: { type: "string", default: "3" },
      dir: { type: "string" },
      tls: { type: "string" },
      detach: { type: "boolean", default: false },
      "auth-token-ttl": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const command = positionals[0] ?? "dev";
  if (values.help) {
    console.log(
      "usage: etcd_cluster.ts [dev|start|stop] [--members N] [--dir DIR] [--tls auth|mtls] [--detach] [--auth-token-ttl S]",
    );
    return 0;
  }
  if (command === "stop") {
    if (!values.dir) throw new Error("stop needs --dir");
    return await stopFolder(values.dir);
  }
  if (command === "dev" && values.dir) await Deno.remove(values.dir, { recursive: true }).catch(() => {});
  const opts: StartClusterOptions = {
    members: Number(values.members),
    tls: values.tls === undefined ? undefined : values.tls === "mtls" ? "mtls" : "auth",
    detach: command === "start" ? values.detach : false,
    keep: command === "start",
    ...(values.dir ? { dir: values.dir } : {}),
    ...(values["auth-token-ttl"] ? { authTokenTtl: Number(values["auth-token-ttl"]) } : {}),
    // etcd's own Procfile ports, so `deno task example:fleet` can name its --allow-net hosts exactly.
    ...(command === "dev" && !values.tls ? { ports: DEV_PORTS.slice(0, Number(values.members)) } : {}),
  };
  const cluster = await startCluster(opts);
  const prefix = values.tls === "mtls" ? "OXIDE_ETCD_MTLS" : values.tls ? "OXIDE_ETCD_TLS" : "OXIDE_ETCD";
  for (const [name, value] of Object.entries(clusterEnv(cluster, prefix))) console.log(`${name}=${value}`);
  if (command === "start") return 0;
  console.error(
    `etcd: ${cluster.members.length} member(s) up; address etcd://${
      cluster.endpoints.map((e) => new URL(e).host).join(",")
    }/dev; Ctrl-C stops them`,
  );
  await new Promise<void>((resolve) => {
    Deno.addSignalListener("SIGINT", () => resolve());
    Deno.addSignalListener("SIGTERM", () => resolve());
  });
  await cluster.stop();
  console.error("etcd: stopped");
  return 0;
}

/**
 * The environment variables that tell tests where a cluster is (`tests/_etcd.ts` reads them): `<prefix>_ENDPOINTS`,
 * the TLS files and etcd user of a TLS cluster, `<prefix>_DIR` and `<prefix>_PIDS`.
 */
export function clusterEnv(cluster: EtcdCluster, prefix: string): Record<string, string> {
  const env: Record<string, string> = { [`${prefix}_ENDPOINTS`]: cluster.endpoints.join(",") };
  if (cluster.tls) {
    env[`${prefix}_CA`] = cluster.tls.caCert;
    env[`${prefix}_CERT`] = cluster.tls.cert;
    env[`${prefix}_KEY`] = cluster.tls.key;
  }
  if (cluster.user) {
    env[`${prefix}_USER`] = cluster.user;
    env[`${prefix}_PASSWORD`] = cluster.password ?? "";
  }
  env[`${prefix}_DIR`] = cluster.dir;
  env[`${prefix}_PIDS`] = cluster.members.map((m) => m.pid).join(",");
  return env;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
