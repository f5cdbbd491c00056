// SPDX-License-Identifier: MIT
// npm redlock v5 (ioredis, one client per server) as a contender of lockkit's redlock://: takes
// the lock `rounds` times and, while holding it, proves nobody else is inside (an O_EXCL marker
// file) and appends "npm" to the shared log.
//   node contend.js PORT1,PORT2,PORT3 KEY ROUNDS DIR  -> exit 0, or 2 not taken, 3 overlap, 4 lost
"use strict";
const fs = require("fs");
const Redis = require("ioredis");
const Redlock = require("redlock").default;

async function main() {
  const [ports, key, rounds, dir] = process.argv.slice(2);
  const clients = ports.split(",").map((p) => new Redis({ host: "127.0.0.1", port: Number(p) }));
  const redlock = new Redlock(clients, { retryCount: 20000, retryDelay: 5, retryJitter: 5 });
  const marker = `${dir}/inside`;
  let code = 0;
  for (let i = 0; i < Number(rounds) && code === 0; i++) {
    let lock;
    try {
      // A short ttl: npm redlock v5 keeps a retry's partial wins (same value) into its next
      // attempts, whose script refuses a key that exists, so wins gathered over several
      // attempts can form a quorum nobody knows it holds; every contender, this one included,
      // then waits for that ttl to run out.
      lock = await redlock.acquire([key], 1000);
    } catch (e) {
      code = 2;
      break;
    }
    let fd;
    try {
      fd = fs.openSync(marker, "wx");
    } catch (e) {
      code = e.code === "EEXIST" ? 3 : 5;
      break;
    }
    fs.appendFileSync(`${dir}/fences`, "npm\n");
    await new Promise((r) => setImmediate(r));  // widen the window a racing holder would need
    fs.closeSync(fd);
    fs.unlinkSync(marker);
    try {
      await lock.release();
    } catch (e) {
      code = 4;
    }
  }
  clients.forEach((c) => c.disconnect());
  process.exit(code);
}
main();
