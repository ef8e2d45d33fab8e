/**
 * Checks that docker-compose.yml's k6 services and the files `npm run bench -- --prepare-compose` writes agree
 * (Docker is not needed):
 *
 *   node --import tsx bench/compose-check.ts
 *
 * Exit 0 when consistent, 1 with one line per problem otherwise.
 */
import { checkCompose } from "./compose.ts";

const problems = checkCompose();
if (problems.length === 0) {
  process.stdout.write("docker-compose.yml: the k6 services are consistent with bench/compose.ts\n");
} else {
  for (const p of problems) process.stderr.write(`docker-compose.yml: ${p}\n`);
  process.exitCode = 1;
}
