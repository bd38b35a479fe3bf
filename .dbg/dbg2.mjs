import { chromium } from "playwright-core";
import { API_TOKEN, startStack } from "/work/wt-persona/tests/support/kit.mjs";
const stack = await startStack({});
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--headless", "--no-sandbox", "--disable-gpu"] });
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await page.goto(`${stack.url}/dashboard`);
  await page.getByTestId("token").fill(API_TOKEN);
  await page.getByTestId("sign-in").click();
  await page.getByTestId("updated").getByText("Updated").waitFor();
  console.log(await page.evaluate(() => {
    const t = document.getElementById("providers");
    const card = t.closest(".card");
    return { card: [card.scrollWidth, card.clientWidth], table: [t.scrollWidth, t.offsetWidth], cells: [...t.rows[0].cells].map((c) => [c.textContent, c.offsetWidth]), row1: [...t.rows[1].cells].map((c) => [c.textContent, c.offsetWidth]) };
  }));
} finally { await browser.close(); await stack.stop(); }
