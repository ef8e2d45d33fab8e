/**
 * Prints the Envoy that tests and `npm start` will use, installing it first when missing (see `binary.ts`):
 *
 *   node --import tsx dev/envoy/install.ts
 */
import { envoyVersion, findEnvoy } from "./binary.ts";

try {
  const envoy = await findEnvoy();
  console.log(`envoy: ${envoy}\n${await envoyVersion(envoy)}`);
} catch (err) {
  console.error(`spiffe-authz: ${(err as Error).message}`);
  process.exitCode = 1;
}
