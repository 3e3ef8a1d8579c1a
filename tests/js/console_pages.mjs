// Drives headless Chromium (Debian's, through playwright-core: no browser download) over the web
// console's pages for tests/e2e/test_console.py. Input: a JSON file named on the command line:
//   { chromium, base, user, password, shots, pages: [{name, path, expect: [text...]}],
//     publish: {path, subject, payload} | null }
// For each page: load it, wait (up to 10 s) until every expected text is in the rendered page, let
// its scripts poll once more, record console errors and uncaught exceptions, take a full-page
// screenshot, and fetch every console link on it (status per link). Then, if asked, fill the page's
// "Publish a test message" form and submit it as a user would. Prints one JSON object.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const spec = JSON.parse(readFileSync(process.argv[2], "utf8"));
const browser = await chromium.launch({
  executablePath: spec.chromium,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const result = { pages: [], published: null };
try {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 900 },
    httpCredentials: spec.user ? { username: spec.user, password: spec.password } : undefined,
  });
  for (const want of spec.pages) {
    const page = await context.newPage();
    const errors = [];
    page.on("console", (msg) => { if (msg.type() === "error") errors.push(`console: ${msg.text()}`); });
    page.on("response", (r) => { if (r.status() >= 400) errors.push(`http ${r.status()}: ${r.url()}`); });
    page.on("requestfailed", (r) => errors.push(`failed: ${r.url()} ${r.failure()?.errorText}`));
    page.on("pageerror", (err) => errors.push(`exception: ${err.message}`));
    const response = await page.goto(spec.base + want.path, { waitUntil: "load" });
    let missing = [];
    try {
      await page.waitForFunction(
        (texts) => texts.every((t) => document.body.innerText.includes(t)),
        want.expect, { timeout: 10000, polling: 100 });
    } catch {
      const text = await page.evaluate(() => document.body.innerText);
      missing = want.expect.filter((t) => !text.includes(t));
    }
    await page.waitForTimeout(2500); // the pages' scripts poll every 2-5 s: one round at least
    const shot = `${spec.shots}/console-${want.name}.png`;
    await page.screenshot({ path: shot, fullPage: true });
    const hrefs = await page.evaluate(() => [...new Set([...document.querySelectorAll("a[href]")]
      .map((a) => a.getAttribute("href")).filter((h) => h.startsWith("/console")))]);
    const links = {};
    for (const href of hrefs) {
      links[href] = (await context.request.get(spec.base + href)).status();
    }
    result.pages.push({ name: want.name, status: response.status(), missing, errors, links, shot });
    await page.close();
  }
  if (spec.publish) {
    const page = await context.newPage();
    await page.goto(spec.base + spec.publish.path, { waitUntil: "load" });
    const form = page.locator("form", { has: page.locator('input[name="payload"]') }).first();
    await form.locator('input[name="subject"]').fill(spec.publish.subject);
    await form.locator('input[name="payload"]').fill(spec.publish.payload);
    await Promise.all([page.waitForURL(/done=published/, { timeout: 10000 }), form.locator("button").click()]);
    result.published = { url: page.url(), status: await page.locator('[role="status"]').innerText() };
    await page.close();
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
