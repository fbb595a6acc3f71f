/**
 * A TCP proxy in front of a real etcd member that can lose answers or
 * requests on purpose, so tests see what a client sees when a member dies
 * mid-call: a request that may or may not have been applied.
 */

/** What the proxy does with traffic now. */
export type FaultMode =
  /** Forward both ways. */
  | "pass"
  /** Forward requests; cut the connection when the answer comes (the write applied, the client never knows). */
  | "drop-answers"
  /** Swallow requests and cut the connection (nothing applied, the client cannot know that either). */
  | "drop-requests"
  /**
   * Deliver each request twice: first a copy on a connection of its own (its answer thrown away), then the
   * request itself, whose answer the client gets, as when a client resends a request after a broken connection.
   */
  | "deliver-twice";

/** The proxy; `close()` ends the listener and every connection. */
export class FaultProxy implements AsyncDisposable {
  mode: FaultMode = "pass";
  /** Connections cut on purpose so far. */
  cuts = 0;
  readonly url: string;
  readonly #listener: Deno.TcpListener;
  readonly #conns = new Set<Deno.Conn>();
  readonly #tasks = new Set<Promise<void>>();
  readonly #accepting: Promise<void>;

  constructor(target: string) {
    const { hostname, port } = new URL(target);
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.url = `http://127.0.0.1:${(this.#listener.addr as Deno.NetAddr).port}`;
    this.#accepting = this.#accept(hostname, Number(port));
  }

  async #accept(hostname: string, port: number): Promise<void> {
    try {
      for await (const client of this.#listener) {
        this.#conns.add(client);
        const task = this.#serve(client, hostname, port).finally(() => this.#tasks.delete(task));
        this.#tasks.add(task);
      }
    } catch {
      // listener closed
    }
  }

  #cut(a: Deno.Conn, b: Deno.Conn | undefined): void {
    this.cuts++;
    for (const c of [a, b]) {
      if (!c) continue;
      try {
        c.close();
      } catch {
        // already closed
      }
      this.#conns.delete(c);
    }
  }

  async #serve(client: Deno.Conn, hostname: string, port: number): Promise<void> {
    let upstream: Deno.Conn | undefined;
    try {
      upstream = await Deno.connect({ hostname, port });
      this.#conns.add(upstream);
      const up = upstream;
      const forward = async (from: Deno.Conn, to: Deno.Conn, direction: "request" | "answer") => {
        const buf = new Uint8Array(64 * 1024);
        while (true) {
          const n = await from.read(buf);
          if (n === null) break;
          if (direction === "answer" && this.mode === "drop-answers") return this.#cut(client, up);
          if (direction === "request" && this.mode === "drop-requests") return this.#cut(client, up);
          if (direction === "request" && this.mode === "deliver-twice") {
            this.cuts++;
            await this.#deliverCopy(buf.slice(0, n), hostname, port);
          }
          let off = 0;
          while (off < n) off += await to.write(buf.subarray(off, n));
        }
      };
      await Promise.race([forward(client, up, "request"), forward(up, client, "answer")]);
    } catch {
      // a side closed
    } finally {
      for (const c of [client, upstream]) {
        if (!c) continue;
        try {
          c.close();
        } catch {
          // closed
        }
        this.#conns.delete(c);
      }
    }
  }

  /** Sends one request on a fresh upstream connection and waits for the start of its answer. */
  async #deliverCopy(request: Uint8Array, hostname: string, port: number): Promise<void> {
    const copy = await Deno.connect({ hostname, port });
    try {
      let off = 0;
      while (off < request.length) off += await copy.write(request.subarray(off));
      await copy.read(new Uint8Array(64 * 1024));
    } finally {
      copy.close();
    }
  }

  async close(): Promise<void> {
    try {
      this.#listener.close();
    } catch {
      // closed
    }
    for (const c of this.#conns) {
      try {
        c.close();
      } catch {
        // closed
      }
    }
    this.#conns.clear();
    await this.#accepting;
    await Promise.allSettled([...this.#tasks]);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
