/**
 * Prints the SPIRE binaries the SPIRE tests and `npm start -- --spire` will use, building them first when missing
 * (see `binary.ts`). CI runs it before the tests so the build's time shows as a step of its own:
 *
 *   node --import tsx dev/spire/install.ts
 */
import { findSpire, spireBinaryVersion } from "./binary.ts";

try {
  const { server, agent, source } = await findSpire();
  console.log(`spire-server: ${server} (${await spireBinaryVersion(server)}, from ${source})`);
  console.log(`spire-agent: ${agent} (${await spireBinaryVersion(agent)}, from ${source})`);
} catch (err) {
  console.error(`spiffe-authz: ${(err as Error).message}`);
  process.exitCode = 1;
}
