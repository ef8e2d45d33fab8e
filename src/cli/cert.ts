// `spiffe-authz cert`: a client certificate for a chosen SPIFFE ID, signed by the demo CA (what `npm start`
// makes), so a policy can be tried with curl as any identity. The certificate has the X509-SVID shape: the ID as
// its only URI SAN, clientAuth.

import { existsSync } from "node:fs";
import path from "node:path";

import { formatFlags, parseArgs, UsageError } from "./args.ts";
import type { FlagSpec } from "./args.ts";
import type { CliIO } from "./io.ts";
import { issueClientCertificate } from "../envoy/pki.ts";
import { spiffeIdProblem } from "../policy/spiffe.ts";

export const CERT_FLAGS: FlagSpec[] = [
  { name: "id", kind: "value", metavar: "SPIFFE_ID", help: "the certificate's URI SAN, e.g. spiffe://demo.example.com/app/billing/env/prod" },
  { name: "out", short: "o", kind: "value", metavar: "DIR", help: "where to write <name>.crt and <name>.key (default: the CA directory)" },
  { name: "name", kind: "value", metavar: "NAME", help: "file stem (default client)" },
  { name: "ca-dir", kind: "value", metavar: "DIR", help: "the CA's directory, with ca.crt and ca.key (default out/demo/certs)" },
  { name: "days", kind: "value", metavar: "N", help: "validity in days (default 7)" },
  { name: "help", short: "h", kind: "boolean", help: "show this help" },
];

export const CERT_USAGE = `usage: spiffe-authz cert --id SPIFFE_ID [--out DIR] [--name NAME] [--ca-dir DIR] [--days N]

Makes a client certificate whose only URI SAN is SPIFFE_ID, signed by the demo CA that \`npm start\` made (its
listener trusts it), and prints the curl command that presents it. Needs the openssl command.

flags:
${formatFlags(CERT_FLAGS)}
`;

/** Entry point of `spiffe-authz cert`. 0 ok, 2 usage error, 1 anything else. */
export async function runCert(argv: string[], io: CliIO): Promise<number> {
  try {
    const args = parseArgs(argv, CERT_FLAGS);
    if (args.flag("help")) {
      io.stdout.write(CERT_USAGE);
      return 0;
    }
    if (args.positionals.length > 0) throw new UsageError(`unexpected argument "${args.positionals[0]}"`);
    const id = args.value("id");
    if (id === undefined) throw new UsageError("--id SPIFFE_ID is required");
    const problem = spiffeIdProblem(id);
    if (problem !== null) throw new UsageError(`--id "${id}" is not a valid SPIFFE ID: ${problem}`);
    const caDir = path.resolve(args.value("ca-dir") ?? "out/demo/certs");
    if (!existsSync(path.join(caDir, "ca.crt")) || !existsSync(path.join(caDir, "ca.key"))) {
      throw new UsageError(`no CA in "${caDir}" (ca.crt and ca.key): run \`npm start\` in the repository first, or pass --ca-dir`);
    }
    const name = args.value("name") ?? "client";
    if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) throw new UsageError(`--name "${name}" must be lower-case letters, digits and "-"`);
    const daysText = args.value("days") ?? "7";
    const days = Number(daysText);
    if (!/^\d+$/.test(daysText) || days < 1 || days > 365) throw new UsageError(`--days "${daysText}" must be an integer from 1 to 365`);
    const outDir = path.resolve(args.value("out") ?? caDir);
    const cert = await issueClientCertificate(caDir, { name, uri: id, outDir, days });
    const show = (p: string): string => {
      const r = path.relative(process.cwd(), p);
      return r.startsWith("..") || path.isAbsolute(r) ? p : r;
    };
    io.stdout.write(`wrote ${show(cert.cert)} and ${show(cert.key)} (${id}, ${days} day${days === 1 ? "" : "s"})\n`);
    io.stdout.write(`  curl -i --cacert ${show(path.join(caDir, "ca.crt"))} --cert ${show(cert.cert)} --key ${show(cert.key)} https://localhost:20443/\n`);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`spiffe-authz cert: ${err.message}\nrun "spiffe-authz cert --help" for usage\n`);
      return 2;
    }
    io.stderr.write(`spiffe-authz cert: ${(err as Error).message}\n`);
    return 1;
  }
}
