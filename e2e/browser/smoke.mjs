// The plumbing's own test (TestBrowserPlumbing): open PAGE_URL, wait for the page's script to set document.title,
// and return the title and what the page found.
import { connect, result, fail } from './lib.mjs';

try {
  const { browser, context } = await connect();
  const page = await context.newPage();
  await page.goto(process.env.PAGE_URL, { waitUntil: 'load', timeout: 15000 });
  await page.waitForFunction(() => document.title !== 'waiting', { timeout: 10000 });
  const out = await page.evaluate(() => ({ title: document.title, body: document.body.textContent.trim() }));
  await context.close();
  await browser.disconnect();
  result(out);
} catch (e) {
  fail(e);
}
