// The committed OpenAPI document as an oracle: which operation a request reached, and
// whether an answer matches the schema documented for its status code. Schemas are JSON
// Schema 2020-12 (OpenAPI 3.1), checked with Ajv; `$ref`s resolve inside the document.
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

export const DOCUMENT_PATH = new URL("../../openapi.yaml", import.meta.url);
export const document = parse(readFileSync(DOCUMENT_PATH, "utf8"));

const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema(document, "openapi");

const escape = (segment) => segment.replaceAll("~", "~0").replaceAll("/", "~1");

/** Follows a `{ $ref: "#/…" }` inside the document; returns [object, its JSON pointer]. */
function resolve(object, pointer) {
  let [current, at] = [object, pointer];
  while (current?.$ref) {
    at = current.$ref.slice(1);
    current = at
      .split("/")
      .slice(1)
      .reduce((node, key) => node[key.replaceAll("~1", "/").replaceAll("~0", "~")], document);
  }
  return [current, at];
}

/** The documented path template a concrete path matches, e.g. /v1/subjects/{provider}/{ref}. */
export function templateOf(path) {
  const segments = path.split("?")[0].split("/");
  const candidates = Object.keys(document.paths).filter((template) => {
    const parts = template.split("/");
    return parts.length === segments.length && parts.every((p, i) => p.startsWith("{") || p === segments[i]);
  });
  // Literal segments win over parameters.
  const parameters = (template) => template.split("{").length;
  candidates.sort((a, b) => parameters(a) - parameters(b));
  return candidates[0];
}

/** Every documented (method, template). */
export function operations() {
  const found = [];
  for (const [template, item] of Object.entries(document.paths)) {
    for (const method of ["get", "put", "post", "delete", "patch"]) {
      if (item[method]) found.push(`${method.toUpperCase()} ${template}`);
    }
  }
  return found;
}

const validators = new Map();

function validate(pointer, body, label) {
  if (!validators.has(pointer)) validators.set(pointer, ajv.compile({ $ref: `openapi#${pointer}` }));
  const validator = validators.get(pointer);
  if (validator(body)) return [];
  return validator.errors.map((e) => `${label}: ${e.instancePath || "body"} ${e.message}`);
}

/**
 * Checks an answer against the document: the status is documented for the operation, and a
 * JSON body matches its schema. Returns a list of problems (empty when it conforms).
 */
export function check(method, path, status, contentType, body, allow = null) {
  const template = templateOf(path);
  if (!template) return [`${method} ${path}: no documented path`];
  const operation = document.paths[template][method.toLowerCase()];
  if (!operation) {
    // A method the path does not have: 405, an Error, and Allow names the documented ones.
    const documented = ["GET", "PUT", "POST", "DELETE", "PATCH"].filter((m) => document.paths[template][m.toLowerCase()]);
    const problems = validate("/components/schemas/Error", body, `${method} ${template} ${status}`);
    if (status !== 405) problems.push(`${method} ${template}: ${status} for an undocumented method, not 405`);
    if (allow !== documented.join(", ")) problems.push(`${method} ${template}: Allow ${allow}, documented ${documented.join(", ")}`);
    return problems;
  }
  const pointer = `/paths/${escape(template)}/${method.toLowerCase()}/responses/${status}`;
  const [response, at] = resolve(operation.responses[String(status)], pointer);
  if (!response) return [`${method} ${template}: status ${status} not documented`];
  const media = (contentType ?? "").split(";")[0].trim();
  if (!response.content?.[media]) return [`${method} ${template} ${status}: content type ${media} not documented`];
  if (media !== "application/json") return [];
  return validate(`${at}/content/application~1json/schema`, body, `${method} ${template} ${status}`);
}
