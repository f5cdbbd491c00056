// SPDX-License-Identifier: MIT
// npm redlock v5 (ioredis, one client per server) under the load lockkit-bench makes: C
// concurrent loops of try-acquire + release for S seconds, each on its own keys or all on
// N hot keys; a refused attempt (retryCount 0) is counted apart. Prints "pairs/s=... refused/s=...".
//   node redlock_npm_bench.js PORT1,PORT2,PORT3 CLIENTS SECONDS [HOT_KEYS]
"use strict";
const path = require("path");
const modules = path.join(__dirname, "../../tests/redis/node/node_modules");
const Redis = require(path.join(modules, "ioredis"));
const Redlock = require(path.join(modules, "redlock")).default;

async function main() {
  const [ports, clientsArg, secondsArg, hotArg] = process.argv.slice(2);
  const clients = Number(clientsArg), seconds = Number(secondsArg), hot = Number(hotArg || 0);
  const servers = ports.split(",").map((p) => new Redis({ host: "127.0.0.1", port: Number(p) }));
  const redlock = new Redlock(servers, { retryCount: 0 });
  redlock.on("error", () => {});  // refused attempts on hot keys are expected
  const run = `npm${process.pid}/`;
  let pairs = 0, refused = 0, errors = 0, stop = false;
  const loop = async (c) => {
    for (let i = c; !stop; i++) {
      const key = hot > 0 ? `${run}hot/${i % hot}` : `${run}${c}/${i % 1000}`;
      let lock;
      try {
        lock = await redlock.acquire([key], 30000);
      } catch (e) {
        if (e.name === "ExecutionError") refused++; else errors++;
        continue;
      }
      try {
        await lock.release();
        pairs++;
      } catch (e) {
        errors++;
      }
    }
  };
  const begin = process.hrtime.bigint();
  const loops = [];
  for (let c = 0; c < clients; c++) loops.push(loop(c));
  setTimeout(() => { stop = true; }, seconds * 1000);
  await Promise.all(loops);
  const secs = Number(process.hrtime.bigint() - begin) / 1e9;
  console.log(`npm-redlock clients=${clients} pairs/s=${(pairs / secs).toFixed(0)} ` +
              `refused/s=${(refused / secs).toFixed(0)} errors=${errors}`);
  servers.forEach((s) => s.disconnect());
}
main();
