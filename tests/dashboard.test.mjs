// The dashboard in a real browser: Debian's Chromium, driven by playwright-core, against the
// compiled worker with seeded data. Nothing but the sign-in form before signing in (and after
// signing out); sign in, see the numbers the API serves and which providers are set up, open a
// subject's history from the stuck list or by searching for it (an untracked one says so),
// redeliver a dead notification; a screenshot is saved to test-artifacts/.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { chromium } from "playwright-core";
import { API_TOKEN, startStack } from "./support/stack.mjs";
import { eventually, kycsUpdated, startSink } from "../sandbox/kit.mjs";

const SECRET = "whsec_R4mMtD8u9t0mMX3bqm1Q7ugO8hbRdeuCqkzFgVDBo4E=";
const ARTIFACTS = new URL("../test-artifacts/", import.meta.url);
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

describe("the dashboard", () => {
  let stack;
  let app;
  let alertEndpoint;
  let browser;
  let page;
  const consoleErrors = [];
  // Paths a test asks for knowing the API answers 404 (a subject that is not tracked).
  const expected404 = new Set();
  // What only a signed-in operator may see or use.
  const SIGNED_IN_ONLY = ["interval", "refresh", "signout", "search", "search-provider", "search-ref", "provider-setup", "statuses"];
  const visibility = () => Promise.all(SIGNED_IN_ONLY.map(async (id) => [id, await page.getByTestId(id).isVisible()]));
  const allVisible = (visible) => SIGNED_IN_ONLY.map((id) => [id, visible]);

  before(async () => {
    app = await startSink({ secrets: [SECRET] });
    // The alert endpoint is down: the dashboard must say so.
    alertEndpoint = await startSink({ secrets: [] });
    alertEndpoint.respondAlways(500);
    // Sumsub and Persona stay without their secrets (startStack's default): not configured.
    stack = await startStack({
      sumsub: false,
      persona: false,
      vars: {
        APP_WEBHOOK_URL: app.url,
        APP_WEBHOOK_SECRET: SECRET,
        NOTIFY_MAX_AGE_SECONDS: "1",
        FIRST_CHECKS_PER_RUN: "1",
        ALERT_WEBHOOK_URL: alertEndpoint.url,
      },
    });
    // Seed: approved and pending subjects, a stuck one, a webhook repeat, a drift, a dead
    // notification, two cron runs.
    for (const [id, status] of [
      ["dash-approved-1", "approved"],
      ["dash-approved-2", "approved"],
      ["dash-pending-1", "pending"],
      ["dash-pending-2", "pending"],
    ]) {
      stack.standIn.setAlign(id, { status });
      assert.equal((await stack.alignWebhook(kycsUpdated(id, { withObject: false }))).status, 200);
    }
    const repeat = JSON.stringify(kycsUpdated("dash-approved-1", { withObject: false }));
    await stack.alignWebhook(repeat);
    await stack.alignWebhook(repeat);
    for (const id of ["dash-pending-1", "dash-pending-2"]) {
      await eventually(`${id} pending`, async () => (await stack.row("align", id)).status === "pending");
    }
    await stack.api("PUT", "/v1/subjects/align/dash-stuck-1", { body: { external_id: "user-stuck" } });
    await stack.cron(Date.now() - 60_000);
    // The three first statuses were told; then the app is down and the next change's
    // notification dies.
    await eventually("four notifications delivered", () => app.received().filter((r) => r.status === 200).length === 4);
    app.respondAlways(503);
    stack.standIn.setAlign("dash-pending-1", { status: "rejected" });
    await stack.api("POST", "/v1/subjects/align/dash-pending-1/refresh");
    await eventually("one dead notification", async () => (await stack.api("GET", "/v1/notifications?state=dead")).json.notifications.length === 1, {
      timeoutMs: 20_000,
    });
    app.respondAlways(null);
    await stack.cron(Date.now());
    // An import waiting for its first checks (paced an hour apart) and a backfill started.
    const imported = await stack.api("POST", "/v1/subjects/batch", {
      body: ["dash-import-1", "dash-import-2", "dash-import-3"].map((ref) => ({ provider: "align", ref })),
    });
    assert.equal(imported.json.created, 3);
    assert.equal((await stack.api("POST", "/v1/backfill/argos")).status, 202);
    // The dead notification's alert was sent and refused.
    await eventually("the refused alert counted as failing", async () => (await stack.stats()).alerts.failing >= 1);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
    // Script errors and policy violations; failed requests are the test's own (a wrong token).
    page.on("console", (message) => {
      if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
        consoleErrors.push(message.text());
      }
    });
    page.on("response", (response) => {
      if (response.status() === 404 && !expected404.has(new URL(response.url()).pathname)) consoleErrors.push(`404 for ${response.url()}`);
    });
    page.on("pageerror", (error) => consoleErrors.push(error.message));
  });

  after(async () => {
    await browser?.close();
    await stack?.stop();
    await app?.stop();
    await alertEndpoint?.stop();
  });

  test("asks for the token, keeps it out of the URL, and shows what the API serves", async () => {
    await page.goto(`${stack.url}/dashboard`);
    await page.getByTestId("login").waitFor();
    assert.deepEqual(await visibility(), allVisible(false), "only the sign-in form before signing in");
    // The API's answers are held back: nothing shows while the token is being checked.
    let release;
    const held = new Promise((resolve) => (release = resolve));
    let arrived;
    const asked = new Promise((resolve) => (arrived = resolve));
    await page.route("**/v1/**", async (route) => {
      arrived();
      await held;
      await route.continue();
    });
    await page.getByTestId("token").fill("not-the-token");
    await page.getByTestId("sign-in").click();
    await asked;
    assert.deepEqual(await visibility(), allVisible(false), "nothing while the token is checked");
    release();
    await page.getByTestId("login-error").getByText("refused").waitFor();
    await page.unroute("**/v1/**");
    assert.deepEqual(await visibility(), allVisible(false), "a refused token shows nothing more");

    await page.getByTestId("token").fill(API_TOKEN);
    await page.getByTestId("sign-in").click();
    await page.getByTestId("updated").getByText("Updated").waitFor();
    assert.ok(!page.url().includes(API_TOKEN), "never in the URL");
    assert.equal(await page.evaluate(() => sessionStorage.getItem("kyc-edge-token")), API_TOKEN);
    assert.deepEqual(await visibility(), allVisible(true), "the controls once signed in");
    assert.equal(await page.getByTestId("login").isVisible(), false);

    // The dead notification is an open alert (raised by the last cron run), shown first.
    const openAlert = page.getByTestId("alerts").locator("tr[data-state=open][data-alert=notification_dead]");
    await openAlert.waitFor();
    assert.match(await openAlert.textContent(), /1 notification\(s\) to the app are dead/);
    const delivery = page.getByTestId("alert-delivery");
    assert.match(await delivery.textContent(), /alert endpoint is failing: 1 retrying, 0 dead \(last answer: HTTP 500\)/);
    assert.equal(await delivery.getAttribute("class"), "warn");

    const stats = (await stack.api("GET", "/v1/stats")).json;
    const cell = (table, rowSelector, column) =>
      page.getByTestId(table).locator(`${rowSelector} td`).nth(column).textContent();
    assert.equal(await cell("statuses", "tr[data-status=approved]", 1), String(stats.subjects.align.approved));
    assert.equal(stats.subjects.align.approved, 2);
    assert.equal(await cell("statuses", "tr[data-status=rejected]", 1), "1");
    assert.equal(await cell("webhooks", "tr[data-provider=align]", 1), String(stats.webhooks.align.accepted));
    assert.equal(await cell("webhooks", "tr[data-provider=align]", 2), String(stats.webhooks.align.duplicate));
    assert.equal(stats.webhooks.align.duplicate, 1, "the repeated body");
    assert.equal(await page.getByTestId("delivery").locator("[data-field=dead]").textContent(), "1");
    assert.ok((await page.getByTestId("chart").locator("polyline").count()) >= 2, "a line per status over the runs");
    assert.ok((await page.getByTestId("runs").locator("tbody tr").count()) >= 2);
    const adoption = page.getByTestId("adoption");
    assert.match(await adoption.locator("[data-field=align-waiting]").textContent(), /^3, all by /);
    assert.equal(await adoption.locator("[data-field=argos-backfill]").textContent(), "running: 0 pages, 0 found");
    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: new URL("dashboard.png", ARTIFACTS).pathname, fullPage: true });
  });

  test("opens a stuck subject's history", async () => {
    const row = page.getByTestId("stuck").locator("tr[data-ref=dash-stuck-1]");
    await row.waitFor();
    await row.click();
    const history = page.getByTestId("history");
    await history.waitFor();
    assert.match(await history.locator("h2").textContent(), /align\/dash-stuck-1/);
    await page.getByTestId("close-history").click();
    await page.getByTestId("stuck").locator("tr[data-ref]").first().waitFor();
    // A subject with changes shows them.
    const pendingRow = await page.getByTestId("stuck").locator("tr[data-ref]").count();
    assert.ok(pendingRow >= 1);
    await page.evaluate(() => window.scrollTo(0, 0));
  });

  test("lists the enabled providers, and for each other one the variables to set", async () => {
    const health = (await stack.api("GET", "/healthz")).json.providers;
    assert.deepEqual(health.enabled, ["align", "argos"]);
    assert.deepEqual(health.not_configured, {
      sumsub: ["SUMSUB_APP_TOKEN", "SUMSUB_SECRET_KEY", "SUMSUB_WEBHOOK_SECRET"],
      persona: ["PERSONA_API_KEY", "PERSONA_WEBHOOK_SECRET"],
    });
    const setup = page.getByTestId("provider-setup");
    const providersIn = (state) => setup.locator(`tr[data-setup=${state}]`).evaluateAll((rows) => rows.map((r) => r.dataset.provider));
    assert.deepEqual(await providersIn("enabled"), health.enabled);
    assert.deepEqual((await providersIn("not_configured")).sort(), Object.keys(health.not_configured).sort());
    for (const [provider, variables] of Object.entries(health.not_configured)) {
      const names = await setup.locator(`tr[data-provider=${provider}] code`).allTextContents();
      assert.deepEqual(names, variables, `${provider}: the variables it lacks`);
      assert.match(await setup.locator(`tr[data-provider=${provider}]`).textContent(), /not configured/);
    }
    // The search offers the enabled providers.
    const options = await page.getByTestId("search-provider").locator("option").evaluateAll((os) => os.map((o) => o.value));
    assert.deepEqual(options, health.enabled);
  });

  test("a search opens a tracked subject's history", async () => {
    // Approved, so not among the stuck: only the search can open it.
    assert.equal(await page.getByTestId("stuck").locator("tr[data-ref=dash-approved-1]").count(), 0);
    const api = (await stack.api("GET", "/v1/subjects/align/dash-approved-1/events?limit=100")).json.events;
    assert.ok(api.some((e) => e.type === "change") && api.some((e) => e.type === "webhook"), "seeded with a webhook and a change");
    assert.equal(await page.getByTestId("history").isVisible(), false);
    await page.getByTestId("search-provider").selectOption("align");
    await page.getByTestId("search-ref").fill("dash-approved-1");
    await page.getByTestId("search-open").click();
    const history = page.getByTestId("history");
    await history.locator("h2").getByText("align/dash-approved-1").waitFor();
    assert.equal(await history.locator("dd[data-field=status]").textContent(), "approved");
    const shown = await page.getByTestId("history-events").locator("tr[data-event]").evaluateAll((rows) => rows.map((r) => r.dataset.event));
    assert.deepEqual(shown, api.map((e) => e.type), "every event the API serves, in its order");
    assert.equal(await page.getByTestId("history-missing").isVisible(), false);
    assert.ok(!page.url().includes(API_TOKEN) && !page.url().includes("dash-approved-1"), "nothing in the URL");
  });

  test("a search for a subject that is not tracked says so", async () => {
    const ref = "dash-never-tracked";
    assert.equal((await stack.subject("align", ref)).status, 404);
    expected404.add(`/v1/subjects/align/${ref}`).add(`/v1/subjects/align/${ref}/events`);
    // Searched while the previous history is still open: none of it may stay.
    await page.getByTestId("search-ref").fill(ref);
    await page.getByTestId("search-open").click();
    const missing = page.getByTestId("history-missing");
    await missing.waitFor();
    assert.match(await missing.textContent(), /^Not tracked: kyc-edge has no align subject with this reference/);
    assert.equal(await page.getByTestId("history").locator("h2").textContent(), `align/${ref}`);
    assert.equal(await page.getByTestId("history-events").isVisible(), false, "no empty history table");
    assert.equal(await page.getByTestId("history").locator("dl").isVisible(), false, "no facts of another subject");
    assert.equal(await page.getByTestId("problem").isVisible(), false, "not reported as a failure");
    // The provider chosen is the one asked: dash-approved-1 is tracked for Align, not for ARGOS.
    expected404.add("/v1/subjects/argos/dash-approved-1").add("/v1/subjects/argos/dash-approved-1/events");
    await page.getByTestId("search-provider").selectOption("argos");
    await page.getByTestId("search-ref").fill("dash-approved-1");
    await page.getByTestId("search-open").click();
    await page.getByTestId("history").locator("h2").getByText("argos/dash-approved-1").waitFor();
    assert.match(await missing.textContent(), /^Not tracked: kyc-edge has no argos subject/);
    // A tracked one afterwards is shown whole again.
    await page.getByTestId("search-provider").selectOption("align");
    await page.getByTestId("search-ref").fill("dash-approved-1");
    await page.getByTestId("search-open").click();
    await page.getByTestId("history").locator("h2").getByText("align/dash-approved-1").waitFor();
    await page.getByTestId("history-events").locator("tr[data-event=change]").first().waitFor();
    assert.equal(await missing.isVisible(), false);
    await page.getByTestId("close-history").click();
    assert.equal(await page.getByTestId("history").isVisible(), false);
  });

  test("redelivers a dead notification from its row", async () => {
    const dead = (await stack.api("GET", "/v1/notifications?state=dead")).json.notifications[0];
    const before = app.received().filter((r) => r.id === dead.id && r.status === 200).length;
    const button = page.getByTestId("notifications").locator(`[data-redeliver="${dead.id}"]`);
    await button.waitFor();
    await button.click();
    await eventually("the redelivered notification answered 200", () => app.received().filter((r) => r.id === dead.id && r.status === 200).length > before);
    await eventually("no dead notification after the redelivery", async () => (await stack.api("GET", "/v1/notifications?state=dead")).json.notifications.length === 0);
    await page.getByTestId("refresh").click();
    await page.getByTestId("delivery").locator("[data-field=dead]").getByText("0").waitFor();
  });

  // What an operator's laptop shows: every panel's content within its panel (no clipped
  // column, no scroll bar inside a panel) and nothing wider than the window.
  async function overflows() {
    return page.evaluate(() => {
      const found = [];
      const root = document.documentElement;
      if (root.scrollWidth > root.clientWidth) found.push(`page ${root.scrollWidth} > ${root.clientWidth}`);
      for (const node of document.querySelectorAll("#board .card, #board table, #board dl, #board figure")) {
        if (node.offsetParent === null) continue;
        const name = node.id || node.querySelector("h2")?.textContent || node.tagName;
        if (node.scrollWidth > node.clientWidth + 1) found.push(`${name}: ${node.scrollWidth} > ${node.clientWidth}`);
        const box = node.getBoundingClientRect();
        if (box.right > root.clientWidth + 1) found.push(`${name} ends at ${box.right}`);
      }
      return found;
    });
  }

  test("fits a 1280×800 screen: no panel scrolls or clips sideways", async () => {
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.getByTestId("refresh").click();
    await page.getByTestId("updated").getByText("Updated").waitFor();
    assert.deepEqual(await overflows(), []);
    // The first screen starts with what needs attention, then the counts.
    const alertsTop = await page.getByTestId("alerts").evaluate((n) => n.getBoundingClientRect().top);
    assert.ok(alertsTop < 200, `alerts panel at ${alertsTop}`);
    await page.screenshot({ path: new URL("dashboard-1280.png", ARTIFACTS).pathname });
  });

  test("stays usable 390 px wide: nothing wider than the phone", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    const wide = await page.evaluate(() => {
      const root = document.documentElement;
      const found = [];
      if (root.scrollWidth > root.clientWidth) found.push(`page ${root.scrollWidth} > ${root.clientWidth}`);
      for (const node of document.querySelectorAll("#board .card, header")) {
        const box = node.getBoundingClientRect();
        if (box.right > root.clientWidth + 1 || box.left < 0) found.push(`${node.id || node.tagName} spans ${box.left}..${box.right}`);
      }
      return found;
    });
    assert.deepEqual(wide, []);
    assert.ok(await page.getByTestId("refresh").isVisible());
    await page.screenshot({ path: new URL("dashboard-390.png", ARTIFACTS).pathname, fullPage: true });
    await page.setViewportSize({ width: 1400, height: 1100 });
  });

  test("renders a subject's history and keeps a screenshot", async () => {
    await page.getByTestId("stuck").locator("tr[data-ref=dash-pending-2]").click();
    const events = page.getByTestId("history-events");
    await events.locator("tr[data-event=change]").first().waitFor();
    assert.equal(await events.locator("tr[data-event=webhook]").count(), 1);
    await page.screenshot({ path: new URL("dashboard-history.png", ARTIFACTS).pathname, fullPage: true });
    assert.deepEqual(consoleErrors, [], "no script error and no Content-Security-Policy violation");
  });

  test("signing out hides the controls again and forgets the token", async () => {
    await page.getByTestId("signout").click();
    await page.getByTestId("login").waitFor();
    assert.deepEqual(await visibility(), allVisible(false));
    assert.equal(await page.evaluate(() => sessionStorage.getItem("kyc-edge-token")), null);
    await page.reload();
    await page.getByTestId("login").waitFor();
    assert.deepEqual(await visibility(), allVisible(false), "still signed out after a reload");
    assert.deepEqual(consoleErrors, []);
  });
});
