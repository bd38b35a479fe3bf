// Writes a vars file for `make dev` with fresh local secrets, when there is none: the API
// token, sandbox keys for every provider (served by sandbox/server.mjs), the ARGOS webhook
// token and a notification signing secret. Never overwrites an existing file.
//
//   node sandbox/init-vars.mjs .dev.vars
import { randomBytes } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";

const path = process.argv[2] ?? ".dev.vars";
if (existsSync(path)) process.exit(0);

const hex = (bytes) => randomBytes(bytes).toString("hex");
const file = `# Local variables for \`make dev\`, generated on first run (git ignores this file).
# Keys that start with "sandbox_" (Sumsub: an app token "sbx:sandbox_…") are served by the local sandbox (sandbox/server.mjs): put a real
# key in their place to call that provider's real API instead. See .dev.vars.example for every
# variable. Delete this file to start again with fresh secrets.
API_TOKEN=dev_${hex(16)}
ALIGN_API_KEY=sandbox_align_${hex(16)}
ARGOS_API_KEY=sandbox_argos_${hex(16)}
ARGOS_WEBHOOK_TOKEN=${hex(16)}
SUMSUB_APP_TOKEN=sbx:sandbox_${hex(16)}
SUMSUB_SECRET_KEY=sandbox_sumsub_${hex(16)}
SUMSUB_WEBHOOK_SECRET=${hex(16)}
PERSONA_API_KEY=sandbox_persona_${hex(16)}
PERSONA_WEBHOOK_SECRET=wbhsec_${hex(16)}
APP_WEBHOOK_SECRET=whsec_${randomBytes(32).toString("base64")}
`;
writeFileSync(path, file, { mode: 0o600 });
process.stdout.write(`wrote ${path} with fresh local secrets and sandbox keys\n`);
